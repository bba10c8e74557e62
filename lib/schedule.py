"""The Stable Diffusion noise schedule and the forward process (paper Eq. 1).

The schedule comes from diffusers (``scaled_linear``, beta from 0.00085 to 0.012 over 1000
steps, as Stable Diffusion 1.x/2.x and the embedded models use), never re-derived by hand.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDPMScheduler

__all__ = ["SD_SCHEDULE", "sd_scheduler", "sd_alphas_cumprod", "forward_noise"]

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                   beta_schedule="scaled_linear")


def sd_scheduler() -> DDPMScheduler:
    """A diffusers scheduler with the Stable Diffusion training schedule."""
    return DDPMScheduler(**SD_SCHEDULE)


def sd_alphas_cumprod() -> torch.Tensor:
    """``abar_t`` for t = 0 .. 999 (float32, shape ``(1000,)``)."""
    return sd_scheduler().alphas_cumprod.clone()


def forward_noise(z0, eps, t) -> torch.Tensor:
    """Eq. (1): ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` with the SD schedule.

    Uses diffusers' ``add_noise``.

    Args:
        z0: clean images ``(B, C, H, W)``.
        eps: noise of the same shape.
        t: integer timesteps in [0, 999], one per image ``(B,)`` or a single int.

    Shapes:
        returns ``(B, C, H, W)``.
    """
    z0 = torch.as_tensor(np.asarray(z0) if not torch.is_tensor(z0) else z0)
    eps = torch.as_tensor(np.asarray(eps) if not torch.is_tensor(eps) else eps)
    if z0.shape != eps.shape:
        raise ValueError(f"z0 and eps must have the same shape, got {tuple(z0.shape)} and {tuple(eps.shape)}")
    t = torch.as_tensor(t, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(z0.shape[0])
    if t.numel() != z0.shape[0]:
        raise ValueError(f"need one timestep per image ({z0.shape[0]}), got {t.numel()}")
    if int(t.min()) < 0 or int(t.max()) >= SD_SCHEDULE["num_train_timesteps"]:
        raise ValueError("timesteps must lie in [0, 999]")
    return sd_scheduler().add_noise(z0, eps, t)
