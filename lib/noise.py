"""Gaussian noises with structure: a shared low-frequency component (Fig. 2) and the spherical
interpolation of Eq. (11) (the proposal step of simulated annealing, Alg. 1).

Both keep the noise exactly standard normal, which is the point: a diffusion model sees nothing
unusual in any one of these noises, yet they carry a chosen correlation.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

__all__ = ["block_mean", "lowfreq_component", "lowfreq_constrained", "slerp", "slerp_weights"]


def _check_noise(z, name: str) -> torch.Tensor:
    z = torch.as_tensor(z)
    if not torch.is_floating_point(z):
        z = z.float()
    if z.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return z


def _check_factor(shape, factor: int) -> int:
    try:
        factor = operator.index(factor)  # ints of any kind (numpy, torch), not floats
    except TypeError:
        raise ValueError(f"factor must be a positive integer, got {factor!r}") from None
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
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
    factor = _check_factor(torch.as_tensor(z).shape, factor)
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
    z = torch.as_tensor(seed_noise)
    z = _check_noise(z[None] if z.ndim == 3 else z, "seed_noise")
    if z.shape[0] != 1:
        raise ValueError(f"seed_noise must be one noise (C, H, W) or (1, C, H, W), got {tuple(z.shape)}")
    factor = _check_factor(z.shape, factor)
    try:
        n = operator.index(n)
    except TypeError:
        raise ValueError(f"n must be a positive integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    fresh = torch.randn((n, *z.shape[1:]), generator=generator, dtype=torch.float64)
    z64 = z.double().cpu()
    out = fresh - lowfreq_component(fresh, factor) + lowfreq_component(z64, factor)
    return out.to(z.dtype).to(z.device)


def slerp_weights(alpha: float) -> tuple[float, float]:
    """The two weights ``(sin(pi alpha / 2), cos(pi alpha / 2))`` of Eq. (11), for ``alpha`` in
    [0, 1] (Python, numpy or one-element torch scalars)."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:  # NaN fails too
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
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
    z, eps = torch.as_tensor(z), torch.as_tensor(eps)
    if z.shape != eps.shape:
        raise ValueError(f"z {tuple(z.shape)} and eps {tuple(eps.shape)} must have one shape")
    return w_z * z + w_eps * eps  # Eq. (11)
