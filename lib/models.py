"""One interface for every diffusion model in the book: ``DiffusionModel.eps``.

Each backend overrides one hook, ``_predict`` (the raw network output at ``x_t``, ``t``); the
base class turns it into an epsilon prediction whatever the scheduler's ``prediction_type``
(``epsilon``, ``v_prediction`` or ``sample``) and applies classifier-free guidance (Eq. 2).

Implemented so far: ``gaussian``, the closed-form optimal denoiser for Gaussian data with the
training crops' mean ``mu`` and covariance ``Sigma``:
``eps(x_t, t) = s (a^2 Sigma + s^2 I)^-1 (x_t - a mu)`` with ``a = sqrt(abar_t)``,
``s = sqrt(1 - abar_t)``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from lib.schedule import sd_alphas_cumprod

__all__ = ["DiffusionModel", "GaussianModel", "available_models", "load_model"]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DiffusionModel:
    """Base class: a noise predictor on ``(B, C, H, W)`` tensors with a training schedule.

    Attributes:
        name: registry name.
        alphas_cumprod: ``abar_t`` for t = 0 .. T-1, float64 ``(T,)``.
        prediction_type: what ``_predict`` returns (``epsilon``, ``v_prediction``, ``sample``).
        sample_shape: ``(C, H, W)`` of one sample in the model's space.
    """

    name: str = "base"
    prediction_type: str = "epsilon"

    def __init__(self, alphas_cumprod: torch.Tensor, sample_shape: tuple[int, int, int],
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.sample_shape = tuple(sample_shape)
        self.device = torch.device(device)
        self.dtype = dtype

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    # -- the one backend hook -------------------------------------------------------------
    def _predict(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        raise NotImplementedError

    # -- public interface -----------------------------------------------------------------
    def _timesteps(self, t, batch: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long, device="cpu").reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"need one timestep or one per sample ({batch}), got {t.numel()}")
        if int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps:
            raise ValueError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}]")
        return t

    def _check_input(self, x_t: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x_t):
            x_t = torch.as_tensor(np.asarray(x_t))
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != self.sample_shape:
            raise ValueError(f"{self.name} expects x_t of shape (B, {', '.join(map(str, self.sample_shape))}), "
                             f"got {tuple(x_t.shape)}")
        if not torch.isfinite(x_t).all():
            raise ValueError("x_t contains NaN or inf values")
        return x_t

    def _to_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return out
        abar = self.alphas_cumprod[t].to(x_t.device, x_t.dtype).view(-1, 1, 1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        if self.prediction_type == "v_prediction":  # v = a eps - s x0  =>  eps = a v + s x_t
            return a * out + s * x_t
        if self.prediction_type == "sample":  # x0 predicted: eps = (x_t - a x0) / s
            return (x_t - a * out) / s
        raise ValueError(f"unknown prediction_type {self.prediction_type!r}; "
                         f"expected one of {PREDICTION_TYPES}")

    @torch.no_grad()
    def eps(self, x_t, t, cond=None, guidance_scale: float | None = None) -> torch.Tensor:
        """Predicted noise ``eps_hat`` at ``x_t`` and timestep ``t`` (Eq. 2 with guidance).

        Args:
            x_t: noisy samples ``(B, C, H, W)``.
            t: an int or one integer timestep per sample ``(B,)``.
            cond: conditioning from :meth:`cond` (None: unconditional).
            guidance_scale: classifier-free guidance ``omega``; ``None`` evaluates the model
                once with ``cond``; a number evaluates it with and without ``cond`` and returns
                ``eps_u + omega (eps_c - eps_u)``.

        Shapes:
            returns ``(B, C, H, W)``, same dtype and device as ``x_t``.
        """
        x_t = self._check_input(x_t)
        t = self._timesteps(t, x_t.shape[0])
        if guidance_scale is None or cond is None:
            out = self._predict(x_t, t, cond)
        else:
            out_u = self._predict(x_t, t, None)
            out_c = self._predict(x_t, t, cond)
            out = out_u + guidance_scale * (out_c - out_u)  # Eq. (2)
        return self._to_eps(out, x_t, t)

    def cond(self, labels):
        """Conditioning for ``eps``; unconditional models return None."""
        return None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] to the model's space (identity for pixel models)."""
        return torch.as_tensor(images)

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """The model's space to images in [-1, 1] (identity for pixel models)."""
        return torch.as_tensor(z0)


class GaussianModel(DiffusionModel):
    """The optimal denoiser for data ``N(mu, Sigma)``, in closed form (float64 inside).

    With ``Sigma = U Lambda U^T``: ``eps(x_t, t) = s U diag(1 / (a^2 lambda + s^2)) U^T
    (x_t - a mu)``.
    """

    name = "gaussian"

    def __init__(self, mean, cov, sample_shape, alphas_cumprod=None, **kwargs):
        mean = torch.as_tensor(np.asarray(mean), dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(np.asarray(cov), dtype=torch.float64)
        D = int(np.prod(sample_shape))
        if mean.numel() != D or cov.shape != (D, D):
            raise ValueError(f"mean must have {D} entries and cov shape ({D}, {D}) for samples "
                             f"of shape {tuple(sample_shape)}")
        super().__init__(sd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod,
                         sample_shape, **kwargs)
        lam, U = torch.linalg.eigh((cov + cov.T) / 2)
        self.mean, self.eigvals, self.eigvecs = mean, lam.clamp_min(0), U

    def _predict(self, x_t, t, cond):
        B = x_t.shape[0]
        abar = self.alphas_cumprod[t].view(B, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x = x_t.reshape(B, -1).to(torch.float64).cpu()  # (B, D)
        y = (x - a * self.mean) @ self.eigvecs  # eigen-coordinates (B, D)
        eps = (s / (a**2 * self.eigvals + s**2) * y) @ self.eigvecs.T
        return eps.reshape(x_t.shape).to(x_t.device, x_t.dtype)


@functools.lru_cache(maxsize=4)
def _crop_moments(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from lib.data import photo_crops
    from lib.whitening import covariance

    X = photo_crops(n, size, split="train", seed=seed).reshape(n, -1)
    return X.mean(axis=0), covariance(X)


def _load_gaussian(device, dtype, n: int = 20_000, size: int = 32, seed: int = 0) -> GaussianModel:
    mean, cov = _crop_moments(n, size, seed)
    return GaussianModel(mean, cov, (3, size, size), device=device or "cpu",
                         dtype=dtype or torch.float32)


_REGISTRY = {"gaussian": _load_gaussian}


def available_models() -> list[str]:
    """Names that :func:`load_model` accepts."""
    return list(_REGISTRY)


def load_model(name: str, device=None, dtype=None) -> DiffusionModel:
    """Load a model by name (see :func:`available_models`)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {available_models()}")
    return _REGISTRY[name](device, dtype)
