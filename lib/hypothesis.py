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

__all__ = ["PairSet", "region_pairs", "fixed_point_maps", "inversion_map", "decide_pairs",
           "reference_maps"]


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

    def head(self, n: int) -> "PairSet":
        """The first ``n`` images, keeping the fitting share: a smaller set for costlier maps."""
        n = checks.count(n, "n")
        if n > len(self.images):
            raise ValueError(f"the set has {len(self.images)} images, fewer than {n}")
        n_fit = round(n * self.n_fit / len(self.images))
        idx = np.r_[0:n_fit, self.n_fit:self.n_fit + n - n_fit]
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
                                   batch_size=batch_size, progress=False)
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
