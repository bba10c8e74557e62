"""Hypothesis 1 end to end (paper Sec. 4, chapter 4): pair sets, maps, decisions, calibration.

:func:`lib.linear_map.decide` decides one map from its pairs. This module supplies what a
chapter needs around it, so that the chapter only narrates:

* :class:`PairSet`: images with the cluster each belongs to (a disjoint region of a
  photograph), fitting and held-out pairs from disjoint clusters; :func:`region_pairs` draws
  one from the models' training photographs (in distribution) or the unseen test photographs,
  :func:`sample_pairs` from a model's own DDIM samples (in distribution, each its own cluster).
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
from lib.cache import cached
from lib.data import image_batches, photo_regions, region_crops
from lib.fixed_point import cached_fixed_point_pairs, gaussian_picard_gain
from lib.linear_map import LAM_MIN, Decision, decide, exponent_difference, planted_maps
from lib.metrics import standardize
from lib.models import GaussianModel
from lib.prose import Words, decision_cells, mark
from lib.sampling import ddim_inversion_pairs, gaussian_ddim_inversion_gain, sample_batched
from lib.whitening import EPS_GRID, covariance, covariance_eigh, heldout_whiteness_vs_eps

__all__ = ["PairSet", "SAMPLES", "pair_sets", "region_pairs", "sample_pairs", "fixed_point_maps",
           "inversion_map", "decide_pairs", "reference_maps", "start_agreement", "chapter_maps",
           "decide_maps", "model_numbers", "reference_covariance", "marks", "calibration_rows",
           "setting", "k_drift", "agreement_rows", "gaussian_gain_errors"]

#: the name of the pair set of a model's own DDIM samples (:func:`sample_pairs`)
SAMPLES = "own samples"


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


def sample_pairs(model, shape, n_fit: int, n_test: int, steps: int, spacing: str = "leading", *,
                 seed: int = 40, batch_size: int = 64) -> PairSet:
    """A model's own samples for pairs: deterministic DDIM (unconditional, no guidance) from
    seeded Gaussian noise, through the disk cache.

    The samples are independent draws of the model's distribution, so each is its own
    cluster, and the held-out ones share nothing with the fitting ones.

    Args:
        model: a :class:`lib.models.DiffusionModel`; shape: one sample's ``(C, H, W)``.
        n_fit, n_test: fitting and held-out samples.
        steps, spacing: the DDIM grid (:func:`lib.sampling.ddim_timesteps`).
        seed: seed of the starting noises.

    Returns:
        a :class:`PairSet` named :data:`SAMPLES`.
    """
    n_fit, n_test = checks.count(n_fit, "n_fit"), checks.count(n_test, "n_test")
    shape = tuple(checks.count(s, "shape") for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be one sample's (C, H, W), got {shape}")
    noise = torch.randn((n_fit + n_test, *shape),
                        generator=torch.Generator().manual_seed(checks.count(seed, "seed", 0)))
    steps = checks.count(steps, "steps")
    images = ddim_samples(model, noise, steps, spacing, checks.count(batch_size, "batch_size"))
    return PairSet(SAMPLES, images, np.arange(n_fit + n_test), n_fit)


#: versions of the code behind the cached results below (bump on any change)
SAMPLES_VERSION, INVERSION_VERSION = "1", "2"


@cached(SAMPLES_VERSION)
def ddim_samples(model, noise, steps: int, spacing: str = "leading",
                 batch_size: int = 64) -> torch.Tensor:
    """:func:`lib.sampling.sample_batched` (unconditional, no guidance), through the disk
    cache."""
    batch_size = checks.count(batch_size, "batch_size")
    return sample_batched(model, noise, steps, spacing=spacing, batch_size=batch_size,
                          progress=False)


@cached(INVERSION_VERSION, name="ddim_inversion_pairs")
def _inversion_states(model, images, steps: int) -> np.ndarray:
    return ddim_inversion_pairs(model, images, steps, progress=False)[1]


def fixed_point_maps(model, pairs: PairSet, t: int, ks, *, init: str = "zero",
                     seed: int | None = None, batch_size: int = 32) -> dict:
    """The noises Eq. (7) returns for a pair set after each ``K`` of ``ks`` (Picard).

    One run to ``max(ks)`` keeps the others as snapshots; the run goes through the disk cache
    (:func:`lib.fixed_point.cached_fixed_point_pairs`).

    Returns:
        ``{K: FixedPointPairs}`` (``.Z`` the noises ``(n, D)``, ``.residuals`` per pair).
    """
    batch_size = checks.count(batch_size, "batch_size")
    ks = sorted({checks.count(k, "K") for k in ks})
    if not ks:
        raise ValueError("give at least one iteration count K")
    run = cached_fixed_point_pairs(model, pairs.images, t, ks[-1], method="picard",
                                   init=init, seed=seed, snapshots=ks[:-1],
                                   batch_size=batch_size, progress=False, log=None)
    return {k: run.snapshots[k] if k != ks[-1] else run for k in ks}


def inversion_map(model, pairs: PairSet, steps: int) -> np.ndarray:
    """The states ``z_T`` DDIM inversion with ``steps`` steps reaches from the images
    ``(n, D)``, through the disk cache."""
    return _inversion_states(model, pairs.images, checks.count(steps, "steps"))


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
    lam, _ = checks.eig(eig)
    abar = checks.schedule(alphas_cumprod)
    abar = float(abar[checks.timestep(t, "t", steps=len(abar))])
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
                 n_agree: int, n_inv: int, inv_steps: int,
                 own: dict | None = None) -> tuple[dict, dict]:
    """Every map chapter 4 decides, and where the iteration converges.

    For each model: Picard from zero at ``t_star`` after each ``K`` of ``ks`` on the first set
    (in distribution) and up to ``k_fit`` on the others and on the model's own set
    ``own[model]`` (e.g. :func:`sample_pairs`; optional); ``k_fit`` iterations at each
    ``t`` of ``t_values`` on the first ``n_t`` images of the first set; DDIM inversion with
    ``inv_steps`` steps on its first ``n_inv``. Convergence: the runs from zero are repeated
    from a random start on the first ``n_agree`` of those images, at every ``t`` and at
    ``t_star`` after ``k_fit`` iterations (:func:`start_agreement`).

    Returns:
        ``maps``: ``{key: (PairSet, Z)}`` with keys ``(model, set name, K)``, ``(model, "t",
        t)`` and ``(model, "inversion")``; ``agreement``: ``{(model, t): float}``.
    """
    own = own or {}
    if set(own) - set(models):
        raise ValueError(f"own sets for unknown models {sorted(set(own) - set(models))}; "
                         f"the models are {list(models)}")
    first = next(iter(sets))
    sweep, inv = sets[first].head(n_t), sets[first].head(n_inv)
    few = sweep.head(n_agree)
    rows = {t_star: sets[first].head_rows(n_agree),
            **{t: sweep.head_rows(n_agree) for t in t_values}}
    maps, agreement = {}, {}
    for name, model in models.items():
        for s, pairs in {**sets, **({own[name].name: own[name]} if name in own else {})}.items():
            decided = ks if s == first else [k for k in ks if k <= k_fit]
            for k, fp in fixed_point_maps(model, pairs, t_star, decided).items():
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

    Keys (``label`` in ``fit``, ``first``, ``last``, ``out``, ``own``, ``inv``: ``k_fit``, the
    fewest and the most iterations in distribution, ``k_fit`` on the ``second`` set and on the
    model's own samples (:data:`SAMPLES`), and DDIM inversion): ``{label}_p`` / ``_p_low`` /
    ``_p_high`` (the law's exponent), ``{label}_gain`` (+ interval, the kernel's gain),
    ``{label}_level_top``, ``{label}_align_top`` (the top bin), ``{label}_points`` (each
    point's outcome, in words); ``drift_in`` / ``drift_out`` / ``drift_own`` (+ interval, on
    ``first``, ``second`` and the own samples, from :func:`k_drift`'s ``drift``);
    ``agree_star``; ``converged_t`` (the timesteps that pass ``agree_min``); ``t_p`` (the
    exponent at each ``t``, in words); ``{label}_mark_{point}`` (✓ or ✗ for ``linear``,
    ``whitening``, ``zca``).
    """
    nan = float("nan")
    out: dict = {}
    keys = {"fit": (name, first, k_fit), "first": (name, first, min(ks)),
            "last": (name, first, max(ks)), "out": (name, second, k_fit),
            "own": (name, SAMPLES, k_fit), "inv": (name, "inversion")}
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
        for point in ("linear", "whitening", "zca"):  # a check or a cross, for the answer's table
            out[f"{label}_mark_{point}"] = Words(mark(d[point].holds) if d else "-")
    for s, tag in ((first, "in"), (second, "out"), (SAMPLES, "own")):
        e = drift[name, s][2] if name and (name, s) in drift else None
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


def reference_covariance(setup, *, offset: int = 0, eps_grid=EPS_GRID):
    """The covariance a chapter measures in, from other images than the pairs, with its
    eigendecomposition and the held-out whiteness of its whitening at each ridge of
    ``eps_grid`` (default the book's one grid, :data:`lib.whitening.EPS_GRID`, chapter 1's).

    Pixel models: ``profile.n_fit`` training crops (seed 3) and ``profile.n_test`` test crops
    (seed 1); a latent model: the reader's folder from image ``offset`` on (past the pairs).
    The covariance and its eigendecomposition go through the disk cache, keyed by the images'
    bytes (:func:`lib.whitening.covariance`), so nothing else can serve a stale result.

    Returns:
        ``(cov (D, D), (lam, U), errors per ridge)``.
    """
    P = setup.profile
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


# ---------------------------------------------------------------------------------------------
# Chapter 4's tables: the numbers a table shows, as rows; the chapter displays them.

def marks(decision: Decision) -> str:
    """A decision's three points (linear, whitening, zca) as checks and crosses (``"✓✗✗"``)."""
    return "".join(mark(decision[p].holds) for p in ("linear", "whitening", "zca"))


def calibration_rows(calibration: dict, expected: dict, *, default: str = "\u2713\u2717\u2717",
                     unexpected: str = "inversion") -> tuple[list, list, dict]:
    """The calibration table: each planted map's expected and decided points at each ``N``.

    Args:
        calibration: ``{N label: {map: Decision}}`` (:func:`lib.linear_map.calibrate` at each
            ``N``; the first label's exponents are shown).
        expected: ``{map: marks}`` for the maps that do not have ``default``; a map whose name
            contains ``unexpected`` has no expected answer (``"-"``).

    Returns:
        ``(header, rows, wrong)``; ``wrong`` is ``{N label: [maps that did not come out as
        expected]}``.
    """
    labels = list(calibration)
    names = list(calibration[labels[0]])
    want = {m: "-" if unexpected in m else expected.get(m, default) for m in names}
    got = {label: {m: marks(d) for m, d in calibration[label].items()} for label in labels}
    rows = [[m, want[m], got[labels[0]][m], decision_cells(calibration[labels[0]][m])[3],
             *(got[label][m] for label in labels[1:])] for m in names]
    wrong = {label: [m for m in names if want[m] != "-" and want[m] != got[label][m]]
             for label in labels}
    return ["planted map", "expected", labels[0], "exponent p", *labels[1:]], rows, wrong


def setting(key: tuple, *, first: str, k_fit: int, inv_steps: int, t_star: int,
            converged: dict) -> tuple[str, str]:
    """How a key of :func:`chapter_maps` was measured, and whether it converged (``"yes"``,
    ``"no"``, or ``"-"`` where the start-agreement test did not run on it)."""
    name, what, value = (*key, None)[:3]
    if what == "t":
        return f"t = {value}, K = {k_fit}", "yes" if converged[name, value] else "no"
    if what == "inversion":
        return f"DDIM inversion, {inv_steps} steps", "-"
    at_fit = what == first and value == k_fit  # the start-agreement test ran on these
    return f"{what}, K = {value}", ("yes" if converged[name, t_star] else "no") if at_fit else "-"


def k_drift(decisions: dict) -> dict:
    """The paired change of the exponent from the fewest to the most iterations decided on
    each model's pair set, ``{(model, set): (k_min, k_max, Estimate)}``, for the sets of
    :func:`chapter_maps`' keys ``(model, set, K)`` decided at two ``K`` or more
    (:func:`lib.linear_map.exponent_difference`)."""
    decided: dict = {}
    for key in decisions:
        if len(key) == 3 and key[1] != "t":
            decided.setdefault(key[:2], []).append(key[2])
    return {(name, s): (min(got), max(got), exponent_difference(decisions[name, s, max(got)],
                                                                decisions[name, s, min(got)]))
            for (name, s), got in decided.items() if len(got) > 1}


def agreement_rows(agreement: dict, models: dict, times, k_fit: int) -> tuple[list, list]:
    """The start-agreement table: each model's agreement at each ``t`` and, for a Gaussian
    model (:class:`lib.models.GaussianModel`), the median share of its exact fixed point that
    ``k_fit`` Picard steps from zero still miss, ``1 - g_K / g_inf`` per direction."""
    gauss = next((m for m in models.values() if isinstance(m, GaussianModel)), None)
    header = ["t", *(f"agreement {n}" for n in models)]
    if gauss is not None:
        header.append("Gaussian: median share of the fixed point still missing")
        lam = gauss.eigvals.double().numpy().clip(1e-12)
    rows = []
    for t in times:
        row = [t, *(agreement[n, t] for n in models)]
        if gauss is not None:
            abar = float(gauss.alphas_cumprod[t])
            row.append(float(np.median(1 - gaussian_picard_gain(lam, abar, k_fit)
                                       / gaussian_picard_gain(lam, abar, None))))
        rows.append(row)
    return header, rows


def gaussian_gain_errors(decisions: dict, name: str, alphas_cumprod, *, t_star: int,
                         inv_steps: int, first: str, lam_min: float = LAM_MIN) -> dict:
    """The largest relative error of the Gaussian model's measured diagonal gains against their
    closed forms, in every direction with ``lambda > lam_min``: ``{key: error}`` for its
    Picard maps on ``first`` (:func:`lib.fixed_point.gaussian_picard_gain`) and its DDIM
    inversion (:func:`lib.sampling.gaussian_ddim_inversion_gain`)."""
    out = {}
    for key, d in decisions.items():
        if key[0] != name or key[1] not in (first, "inversion"):
            continue
        cols = d.columns
        if key[1] == "inversion":
            closed = gaussian_ddim_inversion_gain(cols.lam, alphas_cumprod, inv_steps)
        else:
            closed = gaussian_picard_gain(cols.lam, float(alphas_cumprod[t_star]), key[2])
        keep = cols.lam > lam_min
        out[key] = float(np.max(np.abs(cols.gain[keep] / closed[keep] - 1)))
    return out
