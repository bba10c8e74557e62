"""Prompt- (class-) based editing and how to measure it (paper Sec. 6, Fig. 10).

Three ways to partially revert an image to noise and redo the last part of the DDIM grid under
a new condition, all with the same grid and the same start:

* ``sdedit``: Eq. (1) with fresh Gaussian noise (Meng et al., 2022);
* ``sdedit-annealed``: Eq. (1) with a noise found by simulated annealing to correlate with the
  image (:mod:`lib.annealing`), the paper's proposal;
* ``ddim-inversion``: deterministic DDIM inversion up to the start, then sampling back.

An edit keeps structure (measured by SSIM to the input) and achieves the edit. For the second we
use the model's own opinion: a *diffusion classifier* (Li et al., 2023) scores an image under
each class by the model's noise-prediction error, averaged over fixed timesteps and noises (the
same ones for every class and image, so the comparison is paired); the class with the lowest
error is the one the model finds most plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from lib import checks
from lib.sampling import ddim_edit, sdedit
from lib.schedule import forward_noise

__all__ = ["EDIT_METHODS", "CLASSIFIER_TIMESTEPS", "class_errors", "ClassPreference",
           "class_preference", "edit_sweep"]

EDIT_METHODS = ("sdedit", "sdedit-annealed", "ddim-inversion")

#: Timesteps at which the diffusion classifier compares noise-prediction errors.
CLASSIFIER_TIMESTEPS = (300, 500, 700)


@torch.no_grad()
def class_errors(model, z0, labels, *, timesteps=CLASSIFIER_TIMESTEPS, n_noise: int = 1,
                 generator: torch.Generator | None = None, batch_size: int = 256,
                 progress: bool = False) -> np.ndarray:
    """Noise-prediction error of every image under every label (a diffusion classifier).

    For each image ``z0`` the same ``n_noise`` noises and the same ``timesteps`` are used for all
    labels: ``err[i, k] = mean_{t, eps} ||eps_hat(a_t z0_i + s_t eps, t, label_k) - eps||^2 / D``.

    Args:
        model: a :class:`lib.models.DiffusionModel`.
        z0: images in the model's space ``(N, C, H, W)`` (``model.encode`` for Stable Diffusion).
        labels: the K candidate labels (class names, or prompts for Stable Diffusion).
        timesteps: integer timesteps in [0, T).
        n_noise: noise draws per timestep.
        generator: for the noises (one draw per image, timestep and repeat, shared by labels).

    Returns:
        errors ``(N, K)``; lower means the model finds the label more plausible.
    """
    batch_size = checks.count(batch_size, "batch_size")
    z0 = checks.batch(z0, "z0")
    labels = list(labels)
    if not labels:
        raise ValueError("need at least one label")
    ts = [checks.timestep(t, "timesteps", steps=model.num_train_timesteps) for t in timesteps]
    if not ts:
        raise ValueError(f"timesteps must be a non-empty list in [0, {model.num_train_timesteps})")
    n_noise = checks.count(n_noise, "n_noise")
    N = len(z0)
    eps = torch.randn((N, len(ts), int(n_noise), *z0.shape[1:]), generator=generator)
    abar = model.alphas_cumprod
    # all (image, t, repeat) triples, each to be scored under every label
    idx = [(i, j, r) for i in range(N) for j in range(len(ts)) for r in range(int(n_noise))]
    err = np.zeros((N, len(labels)))
    conds = {}
    for start in tqdm(range(0, len(idx), batch_size), desc="class errors", disable=not progress):
        chunk = idx[start:start + batch_size]
        ii = torch.tensor([c[0] for c in chunk])
        t = torch.tensor([ts[c[1]] for c in chunk])
        e = torch.stack([eps[c] for c in chunk]).to(model.device, model.dtype)
        x_t = forward_noise(z0[ii].to(model.device, model.dtype), e, t, abar)
        for k, label in enumerate(labels):
            if (k, len(chunk)) not in conds:  # encode each label once per chunk size
                conds[k, len(chunk)] = model.cond([label] * len(chunk))
            cond = conds[k, len(chunk)]
            mse = ((model.eps(x_t, t, cond).float() - e.float()) ** 2).flatten(1).mean(1).cpu().numpy()
            np.add.at(err[:, k], ii.numpy(), mse)
    return err / (len(ts) * int(n_noise))


@dataclass(frozen=True)
class ClassPreference:
    """What the diffusion classifier says about images, against a source and a target label.

    Attributes:
        labels: the candidate labels; errors: ``(N, K)`` from :func:`class_errors`.
        predicted: the label with the lowest error per image ``(N,)`` (indices into labels).
        target_rate: the share of images assigned to the target label.
        margin: ``log(err_source / err_target)`` per image ``(N,)``: above 0 the model prefers
            the target; its mean is a scale-free edit score.
    """

    labels: tuple
    errors: np.ndarray
    predicted: np.ndarray
    target_rate: float
    margin: np.ndarray


def class_preference(errors, labels, source, target) -> ClassPreference:
    """Summarize :func:`class_errors` for an edit from ``source`` to ``target``."""
    errors = checks.array(errors, "errors")
    labels = tuple(labels)
    if errors.ndim != 2 or errors.shape[1] != len(labels):
        raise ValueError(f"errors must be (N, {len(labels)}), got {errors.shape}")
    for name, lab in (("source", source), ("target", target)):
        if lab not in labels:
            raise ValueError(f"{name} {lab!r} is not among the labels {labels}")
    ks, kt = labels.index(source), labels.index(target)
    predicted = errors.argmin(1)
    return ClassPreference(labels=labels, errors=errors, predicted=predicted,
                           target_rate=float((predicted == kt).mean()),
                           margin=np.log(errors[:, ks] / errors[:, kt]))


@torch.no_grad()
def edit_sweep(model, z0, strengths, *, source=None, target=None, annealed_noise=None,
               methods=EDIT_METHODS, steps: int = 25, guidance_scale: float | None = None,
               invert_guidance_scale: float | None = None,
               spacing: str = "leading", generator: torch.Generator | None = None,
               batch_size: int = 64, progress: bool = True) -> dict[str, torch.Tensor]:
    """Edit images from ``source`` to ``target`` with each method at each strength.

    Args:
        model: a :class:`lib.models.DiffusionModel`.
        z0: the images in the model's space ``(N, C, H, W)``.
        strengths: fractions of the DDIM grid to redo, each in (0, 1].
        source, target: labels (class names or prompts; ``None``: unconditional). The source
            is used only by DDIM inversion.
        annealed_noise: the correlated noises for ``sdedit-annealed`` ``(N, C, H, W)``.
        methods: a subset of :data:`EDIT_METHODS`.
        steps, guidance_scale, spacing: the DDIM grid and classifier-free guidance.
        invert_guidance_scale: guidance of DDIM inversion's inverting half (default ``None``).
        generator: for the fresh noise of plain SDEdit (one noise per image, the same at every
            strength, so that only the strength changes along a curve).

    Returns:
        ``{method: edited z0 (S, N, C, H, W)}`` in float32 on the CPU.
    """
    batch_size = checks.count(batch_size, "batch_size")
    z0 = checks.batch(z0, "z0")
    strengths = [checks.fraction(s, "each of strengths")
                 for s in checks.numbers(strengths, "strengths", empty=False)]
    methods = [checks.choice(m, "each of methods", EDIT_METHODS)
               for m in ([methods] if isinstance(methods, str) else methods)]
    if not methods:
        raise ValueError(f"methods needs at least one of {EDIT_METHODS}")
    if "sdedit-annealed" in methods:
        if annealed_noise is None:
            raise ValueError("sdedit-annealed needs annealed_noise (from lib.annealing.anneal)")
        annealed_noise = checks.batch(annealed_noise, "annealed_noise")
        if annealed_noise.shape != z0.shape:
            raise ValueError(f"annealed_noise must have the shape of z0 {tuple(z0.shape)}, "
                             f"got {tuple(annealed_noise.shape)}")
    fresh = torch.randn(z0.shape, generator=generator)
    starts = range(0, len(z0), batch_size)
    # each batch's conditions are encoded once, not once per method and strength
    cond_of = {label: [None if label is None else model.cond([label] * len(z0[i:i + batch_size]))
                       for i in starts] for label in {source, target}}
    out = {m: [] for m in methods}
    jobs = [(m, s) for m in methods for s in strengths]
    for m, s in tqdm(jobs, desc="editing", disable=not progress):
        res = []
        for b, i in enumerate(starts):
            z = z0[i:i + batch_size].to(model.device, model.dtype)
            cond_t = cond_of[target][b]
            if m == "ddim-inversion":
                cond_s = cond_of[source][b]
                r = ddim_edit(model, z, s, steps, cond_s, cond_t, guidance_scale,
                              invert_guidance_scale=invert_guidance_scale, spacing=spacing)
            else:
                noise = (fresh if m == "sdedit" else annealed_noise)[i:i + batch_size]
                r = sdedit(model, z, s, noise.to(model.device, model.dtype), steps, cond_t,
                           guidance_scale, spacing=spacing)
            res.append(r.float().cpu())
        out[m].append(torch.cat(res))
    return {m: torch.stack(v) for m, v in out.items()}
