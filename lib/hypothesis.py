"""Hypothesis 1 end to end (paper Sec. 4, chapter 4): pair sets, maps, decisions, calibration.

:func:`lib.linear_map.decide` decides one map from its pairs. This module supplies what a
chapter needs around it, so that the chapter only narrates:

* :class:`PairSet`: images with the cluster each belongs to (a disjoint region of a
  photograph), fitting and held-out pairs from disjoint clusters; :func:`region_pairs` draws
  one from the models' training photographs (in distribution) or the unseen test photographs.
* :func:`fixed_point_maps` and :func:`inversion_map`: the noises Eq. (7) returns after each
  ``K`` (snapshots of one cached run), and the states DDIM inversion reaches.
* :func:`decide_pairs`: :func:`lib.linear_map.decide` on a pair set.
* :func:`reference_maps`: the planted maps of the calibration table, the Gaussian model's
  closed forms (Picard after each ``K``, DDIM inversion) included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib import checks
from lib.linear_map import Decision, decide, planted_maps
from lib.metrics import standardize

__all__ = ["PairSet", "pair_sets", "region_pairs", "fixed_point_maps", "inversion_map",
           "decide_pairs", "reference_maps", "start_agreement", "chapter_maps", "decide_maps",
           "model_numbers", "reference_covariance"]


@dataclass(frozen=True)
class PairSet:
    """Images for noise/image pairs, with clusters; the first ``n_fit`` are the fitting pairs.

    Attributes:
        name: what the images are (for tables).
        images: ``(n, C, H, W)`` float32 on the CPU, in the models' space.
        clusters: the cluster (region) of each image ``(n,)``; fitting and held-out images come
            from disjoint clusters.
        n_fit: fitting images (the rest are held out).
    """

    name: str
    images: torch.Tensor
    clusters: np.ndarray
    n_fit: int

    @property
    def X(self) -> np.ndarray:
        """The images flattened, float64 ``(n, D)``."""
        return self.images.double().reshape(len(self.images), -1).numpy()

    def head_rows(self, n: int) -> np.ndarray:
        """The rows of :meth:`head` ``(n)`` in this set: the first fitting and held-out images,
        in the set's proportion."""
        n = checks.count(n, "n")
        if n > len(self.images):
            raise ValueError(f"the set has {len(self.images)} images, fewer than {n}")
        n_fit = round(n * self.n_fit / len(self.images))
        return np.r_[0:n_fit, self.n_fit:self.n_fit + n - n_fit]

    def head(self, n: int) -> "PairSet":
        """The first ``n`` images, keeping the fitting share: a smaller set for costlier maps
        (a head of a head is a head of the set)."""
        idx = self.head_rows(n)
        n_fit = int(np.sum(idx < self.n_fit))
        return PairSet(self.name, self.images[idx], self.clusters[idx], n_fit)


def region_pairs(name: str, split: str, n_fit: int, n_test: int, size: int, *, seed: int = 0,
                 holdout: int = 5, block: int = 128) -> PairSet:
    """Crops of the bundled photographs for pairs, each crop inside one region.

    The held-out crops come from every ``holdout``-th region, the fitting crops from the
    others, so that no held-out crop shares a pixel with a fitting one.

    Args:
        name: the set's name; split: ``"train"`` (the models' training photographs, in
            distribution) or ``"test"`` (photographs they never saw).
        n_fit, n_test: fitting and held-out crops; size: their side.
        seed: seed of the crops (the held-out ones use ``seed + 1``).
        holdout, block: see above and :func:`lib.data.photo_regions`.
    """
    from lib.data import photo_regions, region_crops

    holdout = checks.count(holdout, "holdout", 2)
    ids = np.array([r.id for r in photo_regions(split, block=block)])
    fit, c_fit = region_crops(checks.count(n_fit, "n_fit"), size, split=split, seed=seed,
                              block=block, regions=ids[ids % holdout != 0])
    test, c_test = region_crops(checks.count(n_test, "n_test"), size, split=split,
                                seed=seed + 1, block=block, regions=ids[ids % holdout == 0])
    return PairSet(name, torch.from_numpy(np.concatenate([fit, test])),
                   np.concatenate([c_fit, c_test]), n_fit)


def pair_sets(setup, n_fit: int, n_test: int) -> dict[str, PairSet]:
    """A chapter's pair sets (:class:`lib.experiment.Setup`): for pixel models, crops of the
    training photographs (in distribution) and of the test photographs (never seen), each
    crop's region its cluster; for a latent model, the first images of the reader's folder
    (or the bundled photographs) encoded by the main model, each image its own cluster."""
    n_fit, n_test = checks.count(n_fit, "n_fit"), checks.count(n_test, "n_test")
    if setup.latent:
        images = setup.model_space(n_fit + n_test, seed=10, batch=64)
        return {"images": PairSet("images", images, np.arange(n_fit + n_test), n_fit)}
    return {"training photographs": region_pairs("training photographs", "train", n_fit,
                                                 n_test, setup.size, seed=10),
            "test photographs": region_pairs("test photographs", "test", n_fit, n_test,
                                             setup.size, seed=20)}


def fixed_point_maps(model, pairs: PairSet, t: int, ks, *, init: str = "zero",
                     seed: int | None = None, batch_size: int = 32) -> dict:
    """The noises Eq. (7) returns for a pair set after each ``K`` of ``ks`` (Picard).

    One run to ``max(ks)`` keeps the others as snapshots; the run goes through the disk cache
    (:func:`lib.fixed_point.cached_fixed_point_pairs`).

    Returns:
        ``{K: FixedPointPairs}`` (``.Z`` the noises ``(n, D)``, ``.residuals`` per pair).
    """
    from lib.fixed_point import cached_fixed_point_pairs

    ks = sorted({checks.count(k, "K") for k in ks})
    if not ks:
        raise ValueError("give at least one iteration count K")
    run = cached_fixed_point_pairs(model, pairs.images, int(t), ks[-1], method="picard",
                                   init=init, seed=seed, snapshots=ks[:-1],
                                   batch_size=batch_size, progress=False, log=None)
    return {k: run.snapshots[k] if k != ks[-1] else run for k in ks}


def inversion_map(model, pairs: PairSet, steps: int) -> np.ndarray:
    """The states ``z_T`` DDIM inversion with ``steps`` steps reaches from the images
    ``(n, D)``, through the disk cache."""
    from lib.cache import cached
    from lib.sampling import ddim_inversion_pairs

    steps = checks.count(steps, "steps")
    return cached("ddim_inversion_pairs", "1",
                  lambda: ddim_inversion_pairs(model, pairs.images, steps, progress=False),
                  model=model, images=pairs.images, steps=steps)[1]


def decide_pairs(pairs: PairSet, Z, eig, **kwargs) -> Decision:
    """:func:`lib.linear_map.decide` on a pair set: its fitting and held-out pairs, resampled
    by cluster. ``Z`` holds the noises of every image of the set ``(n, D)``."""
    Z, _ = checks.samples(Z, "Z")
    if len(Z) != len(pairs.images):
        raise ValueError(f"Z must hold one noise per image of the set ({len(pairs.images)}), "
                         f"got {len(Z)}")
    X, n = pairs.X, pairs.n_fit
    return decide(X[:n], Z[:n], X[n:], Z[n:], eig, clusters=pairs.clusters[:n],
                  clusters_test=pairs.clusters[n:], **kwargs)


def reference_maps(eig, alphas_cumprod, t: int, ks, inversion_steps: int, *,
                   eps: float) -> dict[str, np.ndarray]:
    """The calibration table's planted maps on one covariance: :func:`planted_maps` (with
    ridge ``eps``) and the Gaussian model's closed forms on the same eigenvalues, Picard from
    zero after each ``K`` at ``t`` and DDIM inversion with ``inversion_steps`` steps."""
    from lib.fixed_point import gaussian_picard_gain
    from lib.sampling import gaussian_ddim_inversion_gain

    lam = np.asarray(eig[0], dtype=np.float64)
    abar = float(alphas_cumprod[int(t)])
    extra = {f"Gaussian Picard, K = {k}": gaussian_picard_gain(lam, abar, k) for k in ks}
    extra[f"Gaussian DDIM inversion, {inversion_steps} steps"] = gaussian_ddim_inversion_gain(
        lam, alphas_cumprod, inversion_steps)
    return planted_maps(eig, eps=eps, extra=extra)


def start_agreement(from_zero, from_random) -> float:
    """How much two runs of Eq. (7) on the same images agree: the median, over images, of the
    Pearson correlation between their end points (1: the same noise; about 0: unrelated).

    Args:
        from_zero, from_random: the noises ``(n, D)`` of the two runs (e.g. from a zero and a
            random start).
    """
    A, _ = checks.samples(from_zero, "from_zero")
    B, _ = checks.samples(from_random, "from_random")
    if A.shape != B.shape:
        raise ValueError(f"the two runs must hold the same images, got {A.shape} and {B.shape}")
    return float(np.median(np.sum(standardize(A, 1) * standardize(B, 1), axis=1)))


def chapter_maps(models: dict, sets: dict, *, t_star: int, ks, k_fit: int, t_values, n_t: int,
                 n_agree: int, n_inv: int, inv_steps: int) -> tuple[dict, dict]:
    """Every map chapter 4 decides, and where the iteration converges.

    For each model: Picard from zero at ``t_star`` after each ``K`` of ``ks`` on the first set
    (in distribution) and up to ``k_fit`` on the others; ``k_fit`` iterations at each
    ``t`` of ``t_values`` on the first ``n_t`` images of the first set; DDIM inversion with
    ``inv_steps`` steps on its first ``n_inv``. Convergence: the runs from zero are repeated
    from a random start on the first ``n_agree`` of those images, at every ``t`` and at
    ``t_star`` after ``k_fit`` iterations (:func:`start_agreement`).

    Returns:
        ``maps``: ``{key: (PairSet, Z)}`` with keys ``(model, set name, K)``, ``(model, "t",
        t)`` and ``(model, "inversion")``; ``agreement``: ``{(model, t): float}``.
    """
    first = next(iter(sets))
    sweep, inv = sets[first].head(n_t), sets[first].head(n_inv)
    few = sweep.head(n_agree)
    rows = {t_star: sets[first].head_rows(n_agree), **{t: sweep.head_rows(n_agree) for t in t_values}}
    maps, agreement = {}, {}
    for name, model in models.items():
        for s, pairs in sets.items():
            for k, fp in fixed_point_maps(model, pairs, t_star,
                                          ks if s == first else [k for k in ks if k <= k_fit]).items():
                maps[name, s, k] = (pairs, fp.Z)
        for t in (*t_values, t_star):
            zero = maps[name, first, k_fit][1] if t == t_star else \
                fixed_point_maps(model, sweep, t, [k_fit])[k_fit].Z
            if t != t_star:
                maps[name, "t", t] = (sweep, zero)
            random = fixed_point_maps(model, few, t, [k_fit], init="random", seed=1)[k_fit].Z
            agreement[name, t] = start_agreement(zero[rows[t]], random)
        maps[name, "inversion"] = (inv, inversion_map(model, inv, inv_steps))
    return maps, agreement


def decide_maps(maps: dict, eigs: dict, **kwargs) -> dict:
    """:func:`decide_pairs` on every map of :func:`chapter_maps`, each model in its own
    eigenbasis ``eigs[model]``; ``kwargs`` go to :func:`lib.linear_map.decide`."""
    return {key: decide_pairs(pairs, Z, eigs[key[0]], **kwargs) for key, (pairs, Z) in maps.items()}


def model_numbers(name: str | None, decisions: dict, *, first: str, second: str, ks, k_fit: int,
                  t_values, t_star: int, drift: dict, agreement: dict, agree_min: float) -> dict:
    """The numbers chapter 4's prose pastes for one model, ``{key: value}`` (NaN or ``"-"``
    for a missing model, so that a profile with fewer models still fills every key).

    Keys (``label`` in ``fit``, ``first``, ``last``, ``out``, ``inv``: ``k_fit``, the fewest
    and the most iterations in distribution, ``k_fit`` on the ``second`` set, and DDIM
    inversion): ``{label}_p`` / ``_p_low`` / ``_p_high`` (the law's exponent), ``{label}_gain``
    (+ interval, the kernel's gain), ``{label}_level_top``, ``{label}_align_top`` (the top bin),
    ``{label}_points`` (each point's outcome, in words); ``drift_in`` / ``drift_out`` (+
    interval, from ``drift[(name, set)]``); ``agree_star``; ``converged_t`` (the timesteps that
    pass ``agree_min``); ``t_p`` (the exponent at each ``t``, in words).
    """
    from lib.plotting import Words

    nan = float("nan")
    out: dict = {}
    keys = {"fit": (name, first, k_fit), "first": (name, first, min(ks)),
            "last": (name, first, max(ks)), "out": (name, second, k_fit),
            "inv": (name, "inversion")}
    for label, key in keys.items():
        d = decisions.get(key) if name else None
        for what, point, stem in (("exponent", "whitening", "p"),
                                  ("nonlinear_gain", "linear", "gain")):
            e = d[point].estimates[what] if d else None
            for part, value in zip(("", "_low", "_high"), (e.value, e.low, e.high) if e else
                                   (nan,) * 3):
                out[f"{label}_{stem}{part}"] = value
        out[f"{label}_level_top"] = d["whitening"].estimates["level"][0].value if d else nan
        out[f"{label}_align_top"] = d["zca"].estimates["alignment"][0].value if d else nan
        out[f"{label}_points"] = Words(", ".join(
            f"{p} {'holds' if d[p].holds else 'fails'}" for p in ("linear", "whitening", "zca"))
            if d else "-")
    for s, tag in ((first, "in"), (second, "out")):
        e = drift.get((name, s)) if name else None
        for part, value in zip(("", "_low", "_high"), (e.value, e.low, e.high) if e else
                               (nan,) * 3):
            out[f"drift_{tag}{part}"] = value
    out["agree_star"] = agreement[name, t_star] if name else nan
    conv = [t for t in t_values if name and agreement[name, t] >= agree_min]
    out["converged_t"] = Words(", ".join(map(str, conv)) if conv else "none")

    def law(t):
        e = decisions[name, "t", t]["whitening"].estimates["exponent"]
        return f"t = {t}: {e.value:.2f} ({e.low:.2f} to {e.high:.2f})"

    out["t_p"] = Words("; ".join(law(t) for t in t_values) if name else "-")
    return out


def reference_covariance(setup, eps_grid, *, offset: int = 0):
    """The covariance a chapter measures in, from other images than the pairs, with its
    eigendecomposition and the held-out whiteness of its whitening at each ridge of
    ``eps_grid`` (chapter 1's choice), through the disk cache.

    Pixel models: ``profile.n_fit`` training crops (seed 3) and ``profile.n_test`` test crops
    (seed 1); a latent model: the reader's folder from image ``offset`` on (past the pairs).

    Returns:
        ``(cov (D, D), (lam, U), errors per ridge)``.
    """
    from lib.cache import cached
    from lib.data import image_batches
    from lib.whitening import covariance, covariance_eigh, heldout_whiteness_vs_eps

    P = setup.profile

    def compute():
        if setup.latent:
            train = setup.model_space(P.n_fit, seed=0, offset=offset, batch=64)
            test = setup.model_space(P.n_test, seed=0, offset=offset + P.n_fit, batch=64)
        else:
            train, test = (np.concatenate(list(image_batches(n, setup.size, split=split, seed=seed,
                                                             batch=2000)))
                           for n, split, seed in ((P.n_fit, "train", 3), (P.n_test, "test", 1)))
        cov = covariance(np.asarray(train).reshape(len(train), -1))
        return cov, covariance_eigh(cov), heldout_whiteness_vs_eps(
            cov, covariance(np.asarray(test).reshape(len(test), -1)), list(eps_grid))

    return cached("reference_covariances", "1", compute, profile=P.name, n=P.n_fit,
                  size=setup.size, folder=str(setup.folder),
                  model=setup.main if setup.latent else None)
