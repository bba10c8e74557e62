"""How alike two sets of images or vectors are, and the averages the figures are made of.

* :func:`pearson` (over the pixels of paired images) and :func:`similarity` (PSNR, SSIM and
  Pearson), used to score image variations and edits (chapters 5 and 6);
* :func:`paired_distance`, RMS distance with and without the pairing (appendix);
* :func:`standardize`, the one Pearson normalisation every correlation of the book is built on
  (per-pair, per-dimension and cross-correlation matrices);
* :func:`ring_average`, the mean over rings of equal rounded radius (power spectra, ZCA
  filters, correlation against pixel offset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib import checks

__all__ = ["images", "standardize", "pearson", "ring_average", "paired_distance", "Similarity",
           "similarity", "VariationScores", "variation_scores", "Improvement", "improvement"]


def images(x, name: str = "images", *, min_side: int = 1) -> np.ndarray:
    """A batch of square images ``(N, C, S, S)`` of finite values, as float64 numpy, with
    ``S >= min_side``."""
    x = checks.batch(x, name, layout="(N, C, S, S)", square=True)
    if x.shape[-1] < min_side:
        raise ValueError(f"{name} must be at least {min_side} x {min_side} pixels, got "
                         f"{tuple(x.shape[-2:])}")
    return x.detach().cpu().numpy().astype(np.float64)


def standardize(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` centred along ``axis`` and divided by its norm there (a constant stays zero), so
    that the sum along ``axis`` of the product of two standardized arrays is their Pearson
    correlation."""
    x = x - x.mean(axis=axis, keepdims=True)
    size = np.abs(x).max(axis=axis, keepdims=True)
    if np.any((size > 0) & (size < 1e-100)) or np.any(size > 1e100):
        x = x / np.where(size > 0, size, 1.0)  # else the squares in the norm under/overflow
    return x / np.linalg.norm(x, axis=axis, keepdims=True).clip(1e-300)


def pearson(a, b) -> np.ndarray:
    """Pearson correlation between paired images over their pixels, one number per pair.

    Shapes:
        a, b ``(N, C, S, S)``; returns ``(N,)``.
    """
    a, b = images(a, "a"), images(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} differ in shape")
    return (standardize(a.reshape(len(a), -1), 1) * standardize(b.reshape(len(b), -1), 1)).sum(1)


def ring_average(values, dy, dx, counts=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a 2-D array over rings of equal rounded distance from the origin.

    Args:
        values: ``(len(dy), len(dx))``.
        dy, dx: the offset of each row and column from the centre (any real numbers).
        counts: when ``values`` are sums, how many terms each holds: the ring's mean is then
            its sum of ``values`` over its sum of ``counts`` (default: one each).

    Returns:
        the radii that occur ``(R,)`` (integers, ascending) and the mean on each ``(R,)``.
    """
    values = checks.array(values, "values")
    dy, dx = checks.array(dy, "dy").ravel(), checks.array(dx, "dx").ravel()
    if values.shape != (len(dy), len(dx)) or values.size == 0:
        raise ValueError(f"values must be (len(dy), len(dx)) = ({len(dy)}, {len(dx)}), and not "
                         f"empty, got {values.shape}")
    if counts is not None:
        counts = checks.array(counts, "counts")
        if counts.shape != values.shape or (counts < 0).any():
            raise ValueError(f"counts must be non-negative numbers of values' shape "
                             f"{values.shape}, got shape {counts.shape}")
    radius = np.rint(np.hypot(*np.meshgrid(dy, dx, indexing="ij"))).astype(int).ravel()
    sums = np.bincount(radius, weights=values.ravel())
    n = np.bincount(radius) if counts is None else np.bincount(radius, weights=counts.ravel())
    radii = np.flatnonzero(np.bincount(radius))
    return radii, sums[radii] / n[radii]


def paired_distance(a, b) -> tuple[float, float]:
    """RMS pixel distance between two sets of images, paired and with the pairing shifted.

    ``a[i]`` and ``b[i]`` come from the same noise; shifting ``b`` by one pairs every image with
    one from a different noise, the baseline the paired distance is compared with.

    Returns:
        ``(paired, shifted)`` RMS distances over all pixels.
    """
    a, b = images(a, "a"), images(b, "b")
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"need two sets of the same shape with at least 2 images, got {a.shape} "
                         f"and {b.shape}")
    return (float(np.sqrt(((a - b) ** 2).mean())),
            float(np.sqrt(((a - np.roll(b, 1, axis=0)) ** 2).mean())))


@dataclass(frozen=True)
class Similarity:
    """Per-pair similarity of two image sets in [-1, 1] (arrays of length N).

    Attributes:
        psnr: ``10 log10(2^2 / MSE)`` in dB (range 2; ``inf`` for identical images).
        ssim: structural similarity (scikit-image, 7x7 windows, colour channels averaged).
        pearson: Pearson correlation over all pixels (:func:`pearson`).
    """

    psnr: np.ndarray
    ssim: np.ndarray
    pearson: np.ndarray

    def mean(self) -> dict:
        """The three means (finite PSNRs only)."""
        finite = self.psnr[np.isfinite(self.psnr)]
        return dict(psnr=float(finite.mean()) if finite.size else float("inf"),
                    ssim=float(self.ssim.mean()), pearson=float(self.pearson.mean()))


def similarity(a, b) -> Similarity:
    """PSNR, SSIM and Pearson between paired images (``a[i]`` with ``b[i]``).

    Both sets are clipped to [-1, 1] first (the range of the data and of decoded images).

    Shapes:
        a, b ``(N, C, S, S)``.
    """
    from skimage.metrics import structural_similarity

    a = np.clip(images(a, "a", min_side=3), -1, 1)  # SSIM's smallest window is 3 x 3
    b = np.clip(images(b, "b", min_side=3), -1, 1)
    if a.shape != b.shape:
        raise ValueError(f"a {a.shape} and b {b.shape} differ in shape")
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        psnr = 10 * np.log10(4.0 / mse)
    win = min(7, a.shape[-1] - (1 - a.shape[-1] % 2))  # odd, at most the image side
    ssim = np.array([structural_similarity(x, y, data_range=2.0, channel_axis=0, win_size=win)
                     for x, y in zip(a, b)])
    return Similarity(psnr=psnr, ssim=ssim, pearson=pearson(a, b))


@dataclass(frozen=True)
class VariationScores:
    """How close several models' images of the same noises are to their targets and to each
    other (chapter 6's image variations).

    Attributes:
        to_target: ``{model: {"psnr", "ssim", "pearson"}}``, the means over all images.
        per_target_ssim: ``{model: (n_targets,)}``, the mean SSIM of each target's images.
        between_models: ``{"ssim", "pearson"}``, the means over all pairs of models of the
            mean similarity of their images of the same noise (NaN with one model).
    """

    to_target: dict
    per_target_ssim: dict
    between_models: dict


def variation_scores(images: dict, targets, n_targets: int) -> VariationScores:
    """Scores of ``{model: images (N, C, S, S)}`` against ``targets`` (the target of each image,
    ``(N, C, S, S)``, grouped by target: ``N = n_targets x`` variations per target)."""
    names = list(images)
    if not names:
        raise ValueError("no images to score: pass {model: images}")
    n_targets = checks.count(n_targets, "n_targets")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    cross = [similarity(images[a], images[b]).mean() for a, b in pairs]
    to_target, per_target = {}, {}
    for name in names:
        sim = similarity(images[name], targets)
        if len(sim.ssim) % n_targets:
            raise ValueError(f"{len(sim.ssim)} images do not split into {n_targets} targets")
        per_target[name] = sim.ssim.reshape(n_targets, -1).mean(1)
        to_target[name] = sim.mean()
    between = {k: float(np.mean([c[k] for c in cross])) if cross else float("nan")
               for k in ("ssim", "pearson")}
    return VariationScores(to_target, per_target, between)


@dataclass(frozen=True)
class Improvement:
    """Whether scores ``a`` beat paired scores ``b`` (one value per target).

    Attributes:
        mean_a, mean_b: the two means.
        n_higher, n: how many of the ``n`` pairs have ``a > b``.
        p_value: one-sided Wilcoxon signed-rank test of "a is not larger".
    """

    mean_a: float
    mean_b: float
    n_higher: int
    n: int
    p_value: float


def improvement(a, b) -> Improvement:
    """Paired comparison of two score arrays of one length (at least 2)."""
    from scipy import stats

    a, b = checks.array(a, "a"), checks.array(b, "b")
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-D score arrays of one length >= 2, got {a.shape} and {b.shape}")
    return Improvement(float(a.mean()), float(b.mean()), int((a > b).sum()), len(a),
                       float(stats.wilcoxon(a, b, alternative="greater").pvalue))
