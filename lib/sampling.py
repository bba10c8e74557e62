"""Deterministic DDIM sampling and inversion (paper Eqs. 3-4 with sigma_t = 0), and SDEdit.

The loops are written out over ``model.eps``; diffusers' ``DDIMScheduler`` only supplies the
timestep grid (Stable Diffusion's ``leading`` spacing with ``steps_offset = 1``), and the tests
check each step against ``DDIMScheduler.step`` / ``DDIMInverseScheduler.step``.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from tqdm.auto import tqdm

from lib import checks
from lib.schedule import SD_SCHEDULE, forward_noise

__all__ = ["ddim_timesteps", "ddim_step", "ddim_sample", "ddim_invert", "sdedit", "ddim_edit",
           "redo_steps", "sample_batched", "encode_batched", "ddim_inversion_pairs",
           "decode_batched", "gaussian_ddim_gain", "gaussian_ddim_inversion_gain",
           "ddim_scheduler", "ddim_inverse_scheduler", "SPACINGS"]

#: Timestep grids: ``leading`` (Stable Diffusion 1.x/2.x: 981, 961, ..., 1 for 50 steps) and
#: ``trailing`` (starts at 999: the few-step distilled models, SD-Turbo and SDXL-Turbo).
SPACINGS = ("leading", "trailing")

_DDIM_CONFIG = dict(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                    timestep_spacing="leading")


def ddim_scheduler(spacing: str = "leading") -> DDIMScheduler:
    """diffusers' DDIM scheduler with Stable Diffusion's configuration."""
    checks.choice(spacing, "spacing", SPACINGS)
    return DDIMScheduler(**{**_DDIM_CONFIG, "timestep_spacing": spacing})


def ddim_inverse_scheduler() -> DDIMInverseScheduler:
    """diffusers' DDIM inverse scheduler with Stable Diffusion's configuration."""
    return DDIMInverseScheduler(**_DDIM_CONFIG)


def ddim_timesteps(steps: int, spacing: str = "leading") -> list[int]:
    """The decreasing timesteps of a ``steps``-step DDIM run (e.g. 981, 961, ..., 1 for 50;
    with ``spacing="trailing"`` 999, 979, ..., 19)."""
    # with Stable Diffusion's steps_offset = 1, 1000 steps would ask for timestep 1000
    n = checks.count(steps, "steps")
    if n >= SD_SCHEDULE["num_train_timesteps"]:
        raise ValueError(f"steps must be an integer from 1 to 999, got {steps!r}")
    sched = ddim_scheduler(spacing)
    sched.set_timesteps(n)
    return [int(t) for t in sched.timesteps]


def _abar(model, t: int) -> torch.Tensor:
    """``abar_t``; below 0 (past the last step) it is ``abar_0`` (``set_alpha_to_one=False``)."""
    steps = len(model.alphas_cumprod)
    t = checks.timestep(t, "t", steps=steps) if not (isinstance(t, int) and t < 0) else 0
    return model.alphas_cumprod[t]


def ddim_step(model, z_t: torch.Tensor, t: int, t_prev: int, eps_hat: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM move from ``t`` to ``t_prev`` (either direction).

    ``z0 = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)`` (Eq. 3), then
    ``z_prev = sqrt(abar_prev) z0 + sqrt(1 - abar_prev) eps_hat`` (Eq. 4, sigma = 0).
    """
    z_t, eps_hat = checks.batch(z_t, "z_t"), checks.batch(eps_hat, "eps_hat")
    if eps_hat.shape != z_t.shape:  # no broadcasting of a prediction of the wrong shape
        raise ValueError(f"eps_hat {tuple(eps_hat.shape)} must have z_t's shape {tuple(z_t.shape)}")
    return _ddim_move(model, z_t, t, t_prev, eps_hat)


def _ddim_move(model, z_t: torch.Tensor, t: int, t_prev: int, eps_hat: torch.Tensor) -> torch.Tensor:
    """:func:`ddim_step` without its input checks, for the samplers' loops (their state was
    checked on entry, and each ``eps_hat`` is the model's own prediction for it)."""
    abar_t = _abar(model, t).to(z_t.dtype)
    abar_prev = _abar(model, t_prev).to(z_t.dtype)
    z0 = (z_t - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()  # Eq. (3)
    return abar_prev.sqrt() * z0 + (1 - abar_prev).sqrt() * eps_hat  # Eq. (4), sigma_t = 0


def ddim_sample(model, noise, steps: int, cond=None, guidance_scale: float | None = None, *,
                start_step: int = 0, spacing: str = "leading", progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM from noise (or an intermediate state) to ``z_0``.

    Args:
        model: a :class:`lib.models.DiffusionModel`.
        noise: ``z_T`` (or, with ``start_step > 0``, the state at ``ddim_timesteps(steps)
            [start_step]``) ``(B, C, H, W)``.
        steps: number of DDIM steps of the full grid.
        cond, guidance_scale: passed to ``model.eps``.
        start_step: index in the timestep grid to start from (SDEdit starts part-way).
        spacing: the timestep grid, one of :data:`SPACINGS`.
        progress: show a progress bar.

    Returns:
        ``z_0`` ``(B, C, H, W)`` in the model's space (``model.decode`` for images).
    """
    z = checks.batch(noise, "noise")
    checks.guidance(guidance_scale)  # before the loop, not as "x_t" at its second step
    ts = ddim_timesteps(steps, spacing)
    if not 0 <= start_step < len(ts):
        raise ValueError(f"start_step must lie in [0, {len(ts) - 1}], got {start_step}")
    delta = SD_SCHEDULE["num_train_timesteps"] // steps
    for t in tqdm(ts[start_step:], desc="DDIM", disable=not progress, leave=False):
        eps_hat = model.eps(z, t, cond, guidance_scale)
        z = _ddim_move(model, z, t, t - delta, eps_hat)
    return z


def ddim_invert(model, z0, steps: int, cond=None, guidance_scale: float | None = None, *,
                end_step: int | None = None, spacing: str = "leading",
                progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM inversion from ``z_0`` towards noise (diffusers' convention: the
    noise is predicted at the current state with the *next* timestep).

    Args:
        end_step: stop after this many inversion steps (default: all ``steps``), so that
            ``ddim_sample(..., start_step=steps - end_step)`` undoes it.
        spacing: the timestep grid, one of :data:`SPACINGS` (as in :func:`ddim_sample`).

    Returns:
        the state at timestep ``ddim_timesteps(steps)[steps - end_step]`` ``(B, C, H, W)``.
    """
    z = checks.batch(z0, "z0")
    checks.guidance(guidance_scale)
    ts = ddim_timesteps(steps, spacing)[::-1]  # increasing
    end_step = steps if end_step is None else end_step
    if not 1 <= end_step <= steps:
        raise ValueError(f"end_step must lie in [1, {steps}], got {end_step}")
    delta = SD_SCHEDULE["num_train_timesteps"] // steps
    for t in tqdm(ts[:end_step], desc="DDIM inversion", disable=not progress, leave=False):
        eps_hat = model.eps(z, t, cond, guidance_scale)
        z = _ddim_move(model, z, t - delta, t, eps_hat)
    return z


def ddim_inversion_pairs(model, images, steps: int, *, spacing: str = "leading",
                         batch_size: int = 64, progress: bool = True):
    """Images and the noises DDIM inversion takes them to, as pairs for the analysis of Sec. 4.

    Args:
        model: a :class:`lib.models.DiffusionModel` (unconditional use).
        images: ``(N, C, H, W)`` in the model's space.
        steps, spacing: the inversion grid (:func:`ddim_invert`, all steps).
        batch_size: images per batch.

    Returns:
        ``(X, Z)``: the images and their inverted states ``z_T``, float64 ``(N, D)``.
    """
    batch_size = checks.count(batch_size, "batch_size")
    images = checks.batch(images, "images")
    out = []
    for batch in tqdm(images.split(batch_size), desc=f"DDIM inversion ({steps} steps)",
                      disable=not progress):
        with torch.no_grad():
            out.append(ddim_invert(model, batch, steps, spacing=spacing).detach().cpu())
    X = images.detach().cpu().double().reshape(len(images), -1).numpy()
    return X, torch.cat(out).double().reshape(len(images), -1).numpy()


def redo_steps(strength: float, steps: int) -> int:
    """How many of the ``steps`` grid steps an edit of ``strength`` redoes: ``strength * steps``
    rounded half up, at least one (so the effective strength is ``redo_steps / steps``)."""
    strength = checks.fraction(strength, "strength")
    return max(1, math.floor(strength * steps + 0.5))


def _redo_start(strength: float, steps: int) -> int:
    """The grid index an edit of ``strength`` starts from."""
    return steps - redo_steps(strength, steps)


def sdedit(model, z0, strength: float, noise=None, steps: int = 50, cond=None,
           guidance_scale: float | None = None, *, generator: torch.Generator | None = None,
           spacing: str = "leading", progress: bool = False) -> torch.Tensor:
    """SDEdit: noise ``z0`` to an intermediate time with Eq. (1), then DDIM back to ``z_0``.

    Args:
        strength: fraction of the DDIM grid to redo, in (0, 1]: 1 starts from pure noise at
            the first grid timestep.
        noise: the noise to add (default: fresh Gaussian noise from ``generator``); pass a
            correlated noise here for the paper's correlated-noise SDEdit.

    Returns:
        the edited ``z_0`` ``(B, C, H, W)``.
    """
    z0 = checks.batch(z0, "z0").to(model.device)
    ts = ddim_timesteps(steps, spacing)
    start = _redo_start(strength, steps)
    t_start = ts[start]
    if noise is None:  # drawn on the CPU, so that a seed gives the same noise on any device
        noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    noise = checks.batch(noise, "noise")
    if noise.shape != z0.shape:
        raise ValueError(f"noise must have the shape of z0 {tuple(z0.shape)}, got {tuple(noise.shape)}")
    z_t = forward_noise(z0, noise, t_start, model.alphas_cumprod)
    return ddim_sample(model, z_t, steps, cond, guidance_scale, start_step=start,
                       spacing=spacing, progress=progress)


def ddim_edit(model, z0, strength: float, steps: int = 50, source_cond=None, target_cond=None,
              guidance_scale: float | None = None, *, invert_guidance_scale: float | None = None,
              spacing: str = "leading", progress: bool = False) -> torch.Tensor:
    """Editing by partial DDIM inversion (Sec. 6): invert ``z0`` under the source condition up
    to the grid step SDEdit of the same ``strength`` would start from, then sample back under
    the target condition. Deterministic: no noise is drawn.

    Args:
        strength: fraction of the DDIM grid to redo, in (0, 1] (as in :func:`sdedit`).
        source_cond, target_cond: ``model.cond(...)`` of the image's description and of the
            edit (``None``: unconditional).
        guidance_scale: classifier-free guidance of the sampling half.
        invert_guidance_scale: guidance of the inversion half (default ``None``: the source
            condition's own prediction; inverting under strong guidance drifts).

    Returns:
        the edited ``z_0`` ``(B, C, H, W)``.
    """
    start = _redo_start(strength, steps)
    z_t = ddim_invert(model, z0, steps, source_cond, invert_guidance_scale, end_step=steps - start,
                      spacing=spacing, progress=progress)
    return ddim_sample(model, z_t, steps, target_cond, guidance_scale, start_step=start,
                       spacing=spacing, progress=progress)


def sample_batched(model, noise, steps: int, labels=None, guidance_scale: float | None = None, *,
                   batch_size: int = 64, spacing: str = "leading", progress: bool = True,
                   desc: str = "sampling") -> torch.Tensor:
    """:func:`ddim_sample` over many noises in batches, each with its own condition.

    Args:
        noise: ``(N, C, H, W)`` on any device (each batch moves to ``model.device``).
        labels: ``None`` (unconditional) or one label per noise, passed batch by batch to
            ``model.cond`` (class names or indices for the embedded models, prompts for
            Stable Diffusion).
        batch_size: noises per model call.

    Returns:
        ``z_0`` ``(N, C, H, W)`` in float32 on the CPU.
    """
    noise = checks.batch(noise, "noise")
    if labels is not None and len(labels) != len(noise):
        raise ValueError(f"need one label per noise ({len(noise)}), got {len(labels)}")
    batch_size = checks.count(batch_size, "batch_size")
    out = []
    for i in tqdm(range(0, len(noise), batch_size), desc=desc, disable=not progress):
        z = noise[i:i + batch_size].to(model.device, model.dtype)
        cond = None if labels is None else model.cond(list(labels[i:i + batch_size]))
        with torch.no_grad():
            out.append(ddim_sample(model, z, steps, cond, guidance_scale, spacing=spacing).float().cpu())
    return torch.cat(out)


def encode_batched(model, images, *, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """``model.encode`` in batches (the VAE for Stable Diffusion, identity for pixel models).

    Args:
        images: ``(N, 3, S, S)`` in [-1, 1], or an iterable of such batches (e.g.
            :func:`lib.data.image_batches`, so that a large image folder never sits in memory).

    Returns:
        ``z_0`` ``(N, C, H, W)`` in float32 on the CPU.
    """
    batch_size = checks.count(batch_size, "batch_size")
    if torch.is_tensor(images) or hasattr(images, "shape"):
        images = [images]
    out = []
    for b in tqdm(images, desc="encoding", disable=not progress):
        b = checks.batch(b, "images")
        out += [model.encode(b[i:i + batch_size].to(model.device)).float().cpu()
                for i in range(0, len(b), batch_size)]
    if not out:
        raise ValueError("no images to encode")
    return torch.cat(out)


def decode_batched(model, z0, *, batch_size: int = 16, size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """``model.decode`` in batches (the VAE for Stable Diffusion, identity for pixel models),
    optionally shrunk to ``size x size`` by area averaging so that many images fit in memory.

    Returns:
        images ``(N, 3, S, S)`` in [-1, 1], float32 on the CPU.
    """
    batch_size = checks.count(batch_size, "batch_size")
    import torch.nn.functional as F

    z0 = checks.batch(z0, "z0")
    out = []
    for i in tqdm(range(0, len(z0), batch_size), desc="decoding", disable=not progress):
        x = model.decode(z0[i:i + batch_size].to(model.device)).float()
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def gaussian_ddim_gain(lam, alphas_cumprod, steps: int, spacing: str = "leading"):
    """The gain of a whole DDIM run in one eigendirection of a Gaussian model, in closed form.

    For data ``N(mu, Sigma)`` with the exact denoiser, write ``z_t = a_t mu + v_t`` (``a_t =
    sqrt(abar_t)``, ``s_t = sqrt(1 - abar_t)``). In an eigendirection of ``Sigma`` with eigenvalue
    ``lam`` one DDIM step (Eqs. 3-4, sigma = 0) from ``t`` to ``p`` multiplies ``v`` by
    ``(a_p a_t lam + s_p s_t) / (a_t^2 lam + s_t^2)``; the run multiplies it by the product ``g``.
    From pure noise ``z_T = eps`` the result is ``z_0 = a_0 mu + g (eps - a_T mu)``: its variance
    is ``g^2`` against the data's ``lam``, and ``g a_T mu`` of the mean is missing.

    Args:
        lam: eigenvalues (array).
        alphas_cumprod: the schedule's ``abar`` (1000 values).
        steps, spacing: the DDIM grid (:func:`ddim_timesteps`).

    Returns:
        ``(g, abar_start)``: the gains (array like ``lam``) and ``abar`` at the first grid step.
    """
    import numpy as np

    lam = checks.eigenvalues(lam, zero=True)
    g = np.ones_like(lam)
    for a_t, s_t, a_p, s_p in _grid_coefficients(alphas_cumprod, steps, spacing):
        g = g * (a_p * a_t * lam + s_p * s_t) / (a_t**2 * lam + s_t**2)
    t_start = ddim_timesteps(steps, spacing)[0]
    return g, float(checks.schedule(alphas_cumprod)[t_start])


def _grid_coefficients(alphas_cumprod, steps: int, spacing: str):
    """``(a_t, s_t, a_p, s_p)`` for each step ``t -> p = t - delta`` of the DDIM grid, in the
    sampler's (decreasing) order; ``p`` below 0 is ``abar_0`` as in :func:`ddim_step`."""
    import numpy as np

    abar = checks.schedule(alphas_cumprod).numpy()
    steps = checks.count(steps, "steps")
    if abar.size != SD_SCHEDULE["num_train_timesteps"]:
        raise ValueError(f"alphas_cumprod must have the DDIM grid's "
                         f"{SD_SCHEDULE['num_train_timesteps']} timesteps, got {abar.size}")
    delta = SD_SCHEDULE["num_train_timesteps"] // steps
    for t in ddim_timesteps(steps, spacing):
        ab_t, ab_p = abar[t], abar[max(t - delta, 0)]
        yield np.sqrt(ab_t), np.sqrt(1 - ab_t), np.sqrt(ab_p), np.sqrt(1 - ab_p)


def gaussian_ddim_inversion_gain(lam, alphas_cumprod, steps: int, spacing: str = "leading"):
    """The gain image -> noise of a whole DDIM inversion, per eigendirection of a Gaussian model.

    :func:`ddim_invert` moves from ``p = t - delta`` to ``t`` with the noise predicted at the
    current state and the *next* timestep ``t``. For the exact denoiser of ``N(mu, Sigma)`` that
    map is affine; along an eigenvector with eigenvalue ``lam`` its linear part multiplies the
    coordinate by ``a_t / a_p + (s_t / (a_t^2 lam + s_t^2)) (s_t - a_t s_p / a_p)``, and the whole
    inversion by the product (the offset from the mean drops out of the gain). For large
    ``lam`` the gain tends to ``a_T / a_0`` (the image, shrunk: about 0.08 on the SD schedule);
    for small ``lam`` to a flat gain (about 5, 9 and 12 for 10, 25 and 50 steps); in between,
    for ``lam`` from about 0.1 to 10, it is within about 15 % of ``lambda^-1/2``, the ZCA
    whitening's law (as the full DDIM map is close to ``lambda^1/2``, its inverse).

    Args:
        lam: eigenvalues (array).
        alphas_cumprod: the schedule's ``abar`` (1000 values).
        steps, spacing: the DDIM grid (:func:`ddim_timesteps`), all ``steps`` inverted.

    Returns:
        the gains, shaped like ``lam``.
    """
    import numpy as np

    lam = checks.eigenvalues(lam, zero=True)
    g = np.ones_like(lam)  # the per-step factors commute: the grid's order does not matter
    for a_t, s_t, a_p, s_p in _grid_coefficients(alphas_cumprod, steps, spacing):
        g = g * (a_t / a_p + s_t / (a_t**2 * lam + s_t**2) * (s_t - a_t * s_p / a_p))
    return g
