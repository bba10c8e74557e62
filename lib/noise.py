"""Gaussian noises with structure: a shared low-frequency component (Fig. 2) and the spherical
interpolation of Eq. (11) (the proposal step of simulated annealing, Alg. 1).

Both keep the noise exactly standard normal, which is the point: a diffusion model sees nothing
unusual in any one of these noises, yet they carry a chosen correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lib import checks

__all__ = ["block_mean", "lowfreq_component", "lowfreq_constrained", "slerp", "slerp_weights",
           "Normality", "normality"]


def _check_noise(z, name: str) -> torch.Tensor:
    return checks.batch(z, name, floating=True)


def _check_factor(shape, factor: int) -> int:
    factor = checks.count(factor, "factor")
    if len(shape) < 2:
        raise ValueError(f"need a noise with height and width, got shape {tuple(shape)}")
    H, W = shape[-2:]
    if H % factor or W % factor:
        raise ValueError(f"factor {factor} must divide the noise's height and width {H}x{W}; "
                         f"choose one of {[k for k in range(1, min(H, W) + 1) if not H % k and not W % k]}")
    return factor


def block_mean(z, factor: int) -> torch.Tensor:
    """Means over non-overlapping ``factor x factor`` blocks (the downsampled noise).

    Shapes:
        z ``(B, C, H, W)``; returns ``(B, C, H / factor, W / factor)``.
    """
    z = _check_noise(z, "z")
    return F.avg_pool2d(z, _check_factor(z.shape, factor))


def lowfreq_component(z, factor: int) -> torch.Tensor:
    """The block means of ``z`` spread back over their blocks (same shape as ``z``).

    This is the orthogonal projection of ``z`` onto images that are constant on each block;
    ``z - lowfreq_component(z, k)`` is the complementary projection.
    """
    z = _check_noise(z, "z")
    factor = _check_factor(z.shape, factor)
    return block_mean(z, factor).repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def lowfreq_constrained(seed_noise, factor: int, n: int, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """``n`` standard-normal noises that share the seed's ``factor x factor`` block means exactly.

    Each noise is ``e - Pe + P z`` with ``z`` the seed, ``e`` a fresh ``N(0, I)`` draw and ``P``
    the projection onto block-constant images (:func:`lowfreq_component`): fresh noise with its
    own block means replaced by the seed's.

    Why each is exactly ``N(0, I)`` whenever the seed is: ``P`` and ``I - P`` are complementary
    orthogonal projections. Given the seed, the noise is Gaussian with mean ``P z`` (every pixel
    carries its block's seed mean) and covariance ``(I - P) I (I - P) = I - P``: a pixel has
    variance ``1 - 1/k^2`` (``k = factor``), since ``P`` averages ``k^2`` pixels. Over random
    seeds ``P z`` is Gaussian with covariance ``P`` and independent of ``e``, so the noise has
    mean 0 and covariance ``(I - P) + P = I``.

    Args:
        seed_noise: ``(C, H, W)`` or ``(1, C, H, W)``.
        factor: the block side ``k``; it must divide ``H`` and ``W`` (the paper: 64x64 latents
            down to 8x8, ``k = 8``).
        n: how many noises.
        generator: the fresh draws' generator (on the CPU; the result is moved to the seed's
            device).

    Returns:
        ``(n, C, H, W)`` noises in the seed's dtype and device.
    """
    z = checks.tensor(seed_noise, "seed_noise")
    z = _check_noise(z[None] if z.ndim == 3 else z, "seed_noise")
    if z.shape[0] != 1:
        raise ValueError(f"seed_noise must be one noise (C, H, W) or (1, C, H, W), got {tuple(z.shape)}")
    factor = _check_factor(z.shape, factor)
    n = checks.count(n, "n")
    fresh = torch.randn((n, *z.shape[1:]), generator=generator, dtype=torch.float64)
    z64 = z.double().cpu()
    out = fresh - lowfreq_component(fresh, factor) + lowfreq_component(z64, factor)
    return out.to(z.dtype).to(z.device)


def slerp_weights(alpha: float) -> tuple[float, float]:
    """The two weights ``(sin(pi alpha / 2), cos(pi alpha / 2))`` of Eq. (11), for ``alpha`` in
    [0, 1] (Python, numpy or one-element torch scalars)."""
    alpha = checks.fraction(alpha, "alpha", zero=True)
    angle = math.pi * alpha / 2
    return math.sin(angle), math.cos(angle)


def slerp(z, eps, alpha: float) -> torch.Tensor:
    """Spherical interpolation of Eq. (11): ``sin(pi alpha / 2) z + cos(pi alpha / 2) eps``.

    ``alpha = 1`` keeps ``z``, ``alpha = 0`` replaces it by ``eps``. The two weights satisfy
    ``sin^2 + cos^2 = 1``, so when ``z`` and ``eps`` are independent ``N(0, I)`` the result is
    ``N(0, I)`` too: a proposal that never leaves the noise distribution.

    Args:
        z, eps: tensors of one shape.
        alpha: in [0, 1].
    """
    w_z, w_eps = slerp_weights(alpha)
    z, eps = checks.tensor(z, "z"), checks.tensor(eps, "eps")
    if z.shape != eps.shape:
        raise ValueError(f"z {tuple(z.shape)} and eps {tuple(eps.shape)} must have one shape")
    return w_z * z + w_eps * eps  # Eq. (11)


@dataclass(frozen=True)
class Normality:
    """How plausible a set of noises is as draws of ``N(0, I)`` (chapter 5's searches).

    Attributes:
        std: standard deviation of all their values (1 for Gaussian noise).
        ks_p: Kolmogorov-Smirnov p-value of ``n_ks`` values picked at random across all the
            noises, against ``N(0, 1)``.
        norm_share: share of noises whose squared norm lies in the central ``central`` of its
            ``chi^2(D)`` law (about ``central`` for Gaussian noise).
    """

    std: float
    ks_p: float
    norm_share: float


def normality(z, *, n_ks: int = 20_000, central: float = 0.99, seed: int = 0) -> Normality:
    """Three checks that noises are still standard normal, on ``(B, C, H, W)`` noises.

    The KS test uses a seeded random sample of the values (without replacement, across all
    noises), so that its p-value does not depend on how the values are ordered and a search's
    ``B`` related noises do not count as ``B * D`` independent draws.
    """
    from scipy import stats

    z = _check_noise(z, "z").detach().cpu().double()
    if len(z) == 0:
        raise ValueError("z holds no noise")
    flat = z.flatten().numpy()
    n_ks = min(checks.count(n_ks, "n_ks"), flat.size)
    central = checks.fraction(central, "central", one=False)
    pick = np.random.default_rng(checks.seed(seed)).choice(flat.size, n_ks, replace=False)
    D = z[0].numel()
    lo, hi = stats.chi2.ppf([(1 - central) / 2, (1 + central) / 2], D)
    norm2 = (z.reshape(len(z), -1) ** 2).sum(1).numpy()
    return Normality(std=float(flat.std()), ks_p=float(stats.kstest(flat[pick], "norm").pvalue),
                     norm_share=float(((norm2 > lo) & (norm2 < hi)).mean()))
