"""The Stable Diffusion noise schedule and the forward process of paper Eq. (1), for any schedule.

The schedule comes from diffusers (``scaled_linear``, beta from 0.00085 to 0.012 over 1000
steps, as Stable Diffusion 1.x/2.x and the embedded models use), never re-derived by hand.
"""

from __future__ import annotations

import functools

import torch
from diffusers import DDPMScheduler

from lib import checks

__all__ = ["SD_SCHEDULE", "sd_scheduler", "sd_alphas_cumprod", "noise_scales", "forward_noise"]

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                   beta_schedule="scaled_linear")


def sd_scheduler() -> DDPMScheduler:
    """A diffusers scheduler with the Stable Diffusion training schedule."""
    return DDPMScheduler(**SD_SCHEDULE)


@functools.lru_cache(maxsize=1)
def _sd_alphas_cumprod() -> torch.Tensor:
    return sd_scheduler().alphas_cumprod


def sd_alphas_cumprod() -> torch.Tensor:
    """``abar_t`` for t = 0 .. 999 (float32, shape ``(1000,)``)."""
    return _sd_alphas_cumprod().clone()


def _integer_timesteps(t) -> tuple[torch.Tensor, bool]:
    """``t`` as a long CPU tensor ``(n,)`` and whether it was one scalar; refuses floats, bools
    and an empty ``t`` (a float timestep would be truncated without a word)."""
    given = checks.real_values(t, "the timesteps t")  # None, text, complex: refused here
    given = given if torch.is_tensor(given) else torch.as_tensor(given)
    if given.numel() == 0:
        raise ValueError("no timestep given")
    if given.dtype == torch.bool or given.is_floating_point():
        raise ValueError(f"timesteps must be integers, got {t!r}")
    return given.to("cpu", torch.long).reshape(-1), given.ndim == 0


def noise_scales(t, alphas_cumprod=None, *, dtype: torch.dtype = torch.float32,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of Eq. (1), ``sqrt(abar_t)`` and ``sqrt(1 - abar_t)``, for any schedule.

    ``abar_t`` is cast to ``dtype`` before the square roots, as diffusers' ``add_noise`` does.

    Args:
        t: an integer timestep, or one per sample (a sequence or tensor of length B).
        alphas_cumprod: the model's ``abar`` (default: the Stable Diffusion schedule).
        dtype, device: of the returned factors (those of the samples they multiply).

    Returns:
        two scalars for an integer ``t``; otherwise two ``(B, 1, 1, 1)`` tensors.

    Raises:
        ValueError: no timestep, a timestep that is not an integer (a float or a bool), or one
            outside ``[0, T - 1]``.
    """
    abar = _sd_alphas_cumprod() if alphas_cumprod is None else checks.schedule(alphas_cumprod)
    T = abar.numel()
    steps, scalar = _integer_timesteps(t)
    if int(steps.min()) < 0 or int(steps.max()) >= T:
        raise ValueError(f"timesteps must lie in [0, {T - 1}], got {t!r}")
    abar = abar.cpu()[steps].to(dtype)
    abar = abar.reshape(()) if scalar else abar.view(-1, 1, 1, 1)
    if device is not None:
        abar = abar.to(device)
    return abar.sqrt(), (1 - abar).sqrt()


def forward_noise(z0, eps, t, alphas_cumprod=None) -> torch.Tensor:
    """Eq. (1): ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps``, the one place the book noises.

    Args:
        z0: clean samples ``(B, C, H, W)``.
        eps: noise of the same shape.
        t: integer timesteps, one per sample ``(B,)`` or a single int.
        alphas_cumprod: the model's ``abar`` (``model.alphas_cumprod``; default: Stable
            Diffusion's, which diffusers' ``add_noise`` matches).

    Shapes:
        returns ``(B, C, H, W)`` in ``z0``'s dtype and device.
    """
    z0 = checks.batch(z0, "z0", floating=True)
    eps = checks.batch(eps, "eps", floating=True)
    if z0.shape != eps.shape:
        raise ValueError(f"z0 and eps must have the same shape, got {tuple(z0.shape)} and {tuple(eps.shape)}")
    steps, _ = _integer_timesteps(t)
    if steps.numel() == 1:
        steps = steps.expand(z0.shape[0])
    if steps.numel() != z0.shape[0]:
        raise ValueError(f"need one timestep per image ({z0.shape[0]}), got {steps.numel()}")
    a, s = noise_scales(steps, alphas_cumprod, dtype=z0.dtype, device=z0.device)
    return a * z0 + s * eps.to(z0.device, z0.dtype)
