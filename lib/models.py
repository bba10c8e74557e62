"""One interface for every diffusion model in the book: ``DiffusionModel.eps``.

Each backend overrides one hook, ``_predict`` (the raw network output at ``x_t``, ``t``); the
base class turns it into an epsilon prediction whatever the scheduler's ``prediction_type``
(``epsilon``, ``v_prediction`` or ``sample``) and applies classifier-free guidance (Eq. 2).

Backends:

* ``tiny-a``, ``tiny-b``: the embedded class-conditional pixel-space UNets trained by
  :mod:`lib.tooling.train` on the bundled photographs (weights in ``data/models``).
* ``gaussian``: the closed-form optimal denoiser for Gaussian data with the training crops' mean
  ``mu`` and covariance ``Sigma``: ``eps(x_t, t) = s (a^2 Sigma + s^2 I)^-1 (x_t - a mu)`` with
  ``a = sqrt(abar_t)``, ``s = sqrt(1 - abar_t)``.
* ``sd-1.5``, ``sd-2.1-base``, ``sd-turbo``, ``sdxl-turbo``: Stable Diffusion from the Hugging
  Face Hub (``load_model(name, repo=...)`` takes another id or a local folder). Latent space
  through the VAE, prompts through CLIP.

Every model is one entry of the registry :data:`MODELS` (a :class:`ModelSpec`: backend,
weights, native resolution, how the chapters sample it); :func:`register` adds one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lib import checks
from lib.cache import cached, fingerprint
from lib.data import photo_crops
from lib.numerics import rounding_jitter
from lib.sampling import SPACINGS
from lib.schedule import sd_alphas_cumprod
from lib.whitening import covariance, covariance_eigh

__all__ = ["DiffusionModel", "GaussianModel", "UNetModel", "StableDiffusionModel", "ModelSpec",
           "MODELS", "register", "available_models", "load_model", "load_gaussian",
           "load_stable_diffusion", "HubUnavailable", "model_dir", "EMBEDDED", "PROMPTS",
           "PHOTO_PROMPTS"]

#: The repository checkout this package runs from (None when installed from a wheel).
CHECKOUT = (Path(__file__).resolve().parent.parent
            if (Path(__file__).resolve().parent.parent / "pyproject.toml").exists() else None)
#: The committed embedded models: ``data/models`` in a checkout; a wheel carries the same
#: folder as the package data ``lib/embedded/models`` (see pyproject.toml).
DATA_MODELS = (CHECKOUT / "data" / "models" if CHECKOUT is not None
               else Path(__file__).resolve().parent / "embedded" / "models")


def model_dir(name: str) -> Path:
    """The folder of a committed embedded model (``config.json``, weights, ``card.json``)."""
    return DATA_MODELS / name

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


#: network use of this process, ``{model name: [evaluations, seconds]}``: every image through a
#: model's network (a guided call counts its two passes) and the wall time spent in the network
#: (:func:`network_use`; the runner writes it per chapter, :data:`lib.profiles.NETWORK_LOG_ENV`)
_NETWORK: dict = {}


def network_use() -> dict[str, dict]:
    """``{model name: {"evaluations": n, "seconds": s}}`` since this process started: the
    images that went through each model's network and the wall time spent there (on a GPU
    after synchronising, so the time is the network's)."""
    return {name: {"evaluations": int(n), "seconds": round(s, 3)}
            for name, (n, s) in sorted(_NETWORK.items())}


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
        self.alphas_cumprod = checks.schedule(alphas_cumprod)
        self.sample_shape = tuple(sample_shape)
        self.device = torch.device(device)
        self.dtype = dtype

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def cache_fingerprint(self) -> str:
        """The model's identity in disk-cache keys: its class, settings and weights' sha256
        (:func:`lib.cache.fingerprint`, computed once per model object)."""
        return fingerprint(self)

    # -- the one backend hook -------------------------------------------------------------
    def _predict(self, x_t: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        raise NotImplementedError

    # -- public interface -----------------------------------------------------------------
    def _timesteps(self, t, batch: int) -> torch.Tensor:
        """One integer timestep per sample (floats refused, not truncated: :func:`checks.timestep`)."""
        if isinstance(t, (list, tuple, np.ndarray)):
            t = torch.as_tensor(checks.real_values(t, "t"))
        steps = self.num_train_timesteps
        if torch.is_tensor(t) and t.ndim > 0:
            t = checks.timestep(t, "t", steps=steps).to("cpu", torch.long).reshape(-1)
        else:
            t = torch.tensor([checks.timestep(t, "t", steps=steps)])
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"need one timestep or one per sample ({batch}), got {t.numel()}")
        return t

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise unless ``shape`` is a batch of samples this model takes."""
        if len(shape) != 4 or tuple(shape[1:]) != self.sample_shape:
            raise ValueError(f"{self.name} expects x_t of shape (B, {', '.join(map(str, self.sample_shape))}), "
                             f"got {tuple(shape)}")

    def _check_input(self, x_t: torch.Tensor) -> torch.Tensor:
        x_t = checks.real_values(x_t, "x_t")
        if not torch.is_tensor(x_t):
            x_t = torch.as_tensor(x_t)
        self._check_shape(tuple(x_t.shape))  # the model's own shape, before the shared checks
        # an integer x_t is a float image (its prediction is no int64 result)
        return checks.batch(x_t, "x_t", floating=True)

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
        return self.eps_differentiable(x_t, t, cond, guidance_scale)

    def eps_differentiable(self, x_t, t, cond=None, guidance_scale: float | None = None) -> torch.Tensor:
        """:meth:`eps` with autograd left on, for solvers that minimise Eq. (6) by gradient."""
        x_t = self._check_input(x_t)
        t = self._timesteps(t, x_t.shape[0])
        guidance_scale = checks.guidance(guidance_scale)
        start = time.perf_counter()
        if guidance_scale is None or cond is None:
            out, passes = self._predict(x_t, t, cond), 1
        else:
            out_u = self._predict(x_t, t, None)
            out_c = self._predict(x_t, t, cond)
            out, passes = out_u + guidance_scale * (out_c - out_u), 2  # Eq. (2)
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        use = _NETWORK.setdefault(self.name, [0, 0.0])
        use[0] += passes * x_t.shape[0]
        use[1] += time.perf_counter() - start
        return rounding_jitter(self._to_eps(out, x_t, t))  # identity unless testing (lib.numerics)

    def cond(self, labels):
        """Conditioning for ``eps``; unconditional models return None."""
        return None

    #: what :meth:`random_labels` draws from (class names, prompts); empty: unconditional
    label_choices: tuple = ()

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> list | None:
        """One random condition per sample, drawn uniformly from :attr:`label_choices` (class
        names for the embedded UNets, :data:`PROMPTS` for Stable Diffusion); ``None`` for an
        unconditional model.

        Returns:
            a list of ``n`` labels for :func:`lib.sampling.sample_batched`, or ``None``.
        """
        n = checks.count(n, "n")
        if not self.label_choices:
            return None
        idx = torch.randint(0, len(self.label_choices), (n,), generator=generator)
        return [self.label_choices[int(i)] for i in idx]

    def describe(self, photo: str):
        """The condition that describes a bundled photograph (None: unconditional)."""
        return None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] to the model's space (identity for pixel models)."""
        return checks.batch(images, "images")

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """The model's space to images in [-1, 1] (identity for pixel models)."""
        return checks.batch(z0, "z0")


class GaussianModel(DiffusionModel):
    """The optimal denoiser for data ``N(mu, Sigma)``, in closed form (float64 inside).

    With ``Sigma = U Lambda U^T``: ``eps(x_t, t) = s U diag(1 / (a^2 lambda + s^2)) U^T
    (x_t - a mu)``.
    """

    name = "gaussian"

    def __init__(self, mean, cov, sample_shape, alphas_cumprod=None, **kwargs):
        mean = torch.as_tensor(checks.array(mean, "mean")).reshape(-1)
        cov = torch.as_tensor(checks.array(cov, "cov"))
        D = int(np.prod(sample_shape))
        if mean.numel() != D or cov.shape != (D, D):
            raise ValueError(f"mean must have {D} entries and cov shape ({D}, {D}) for samples "
                             f"of shape {tuple(sample_shape)}")
        lam, U = torch.linalg.eigh((cov + cov.T) / 2)
        self._setup(mean, lam, U, sample_shape, alphas_cumprod, kwargs)

    @classmethod
    def from_eigh(cls, mean, eigvals, eigvecs, sample_shape, alphas_cumprod=None,
                  **kwargs) -> "GaussianModel":
        """The model from ``Sigma``'s eigen-decomposition (eigenvalues in any order, eigenvectors
        as columns in the same order)."""
        model = cls.__new__(cls)
        model._setup(mean, eigvals, eigvecs, sample_shape, alphas_cumprod, kwargs)
        return model

    def _setup(self, mean, eigvals, eigvecs, sample_shape, alphas_cumprod, kwargs) -> None:
        mean = torch.as_tensor(checks.array(mean, "mean")).reshape(-1)
        lam = torch.as_tensor(checks.array(eigvals, "eigvals"))
        U = torch.as_tensor(checks.array(eigvecs, "eigvecs"))
        D = int(np.prod(sample_shape))
        if mean.numel() != D or lam.shape != (D,) or U.shape != (D, D):
            raise ValueError(f"need a mean of {D} entries, {D} eigenvalues and a ({D}, {D}) "
                             f"eigenvector matrix for samples of shape {tuple(sample_shape)}")
        super().__init__(sd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod,
                         sample_shape, **kwargs)
        self.mean, self.eigvals, self.eigvecs = mean, lam.clamp_min(0), U

    def _predict(self, x_t, t, cond):
        B = x_t.shape[0]
        abar = self.alphas_cumprod[t].view(B, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        x = x_t.reshape(B, -1).to(torch.float64).cpu()  # (B, D)
        y = (x - a * self.mean) @ self.eigvecs  # eigen-coordinates (B, D)
        eps = (s / (a**2 * self.eigvals + s**2) * y) @ self.eigvecs.T
        return eps.reshape(x_t.shape).to(x_t.device, x_t.dtype)


class UNetModel(DiffusionModel):
    """An embedded pixel-space model: a class-conditional diffusers ``UNet2DModel``.

    ``cond`` takes photo names (or class indices); ``None`` is the null class, so
    ``eps(x, t, model.cond(["cat"]), guidance_scale=w)`` is classifier-free guidance (Eq. 2).
    """

    #: On the CPU the UNet runs on chunks of at most this many samples, in ``channels_last``
    #: memory format: on this project's 2-core CPU both are faster than one call on the whole
    #: batch in the default format (batch 16 runs 10-40 % more images per second than 32-128,
    #: channels_last 4-15 % more; ``python -m lib bench``), and they change a noise prediction
    #: by about 1e-7 relative (float32 rounding). On a GPU the whole batch goes in one call.
    cpu_chunk: int = 16

    def __init__(self, unet, classes: list[str], null_class: int, name: str = "unet", **kwargs):
        size = unet.config.sample_size
        super().__init__(sd_alphas_cumprod(), (unet.config.in_channels, size, size), **kwargs)
        if self.device.type == "cpu":
            unet = unet.to(memory_format=torch.channels_last)
        self.unet, self.classes, self.null_class, self.name = unet, list(classes), null_class, name
        self.label_choices = tuple(self.classes)

    @classmethod
    def from_folder(cls, folder, device=None, dtype=None, name: str | None = None) -> "UNetModel":
        """Load a model folder written by :func:`lib.tooling.train.export` (fp16 weights, any dtype)."""
        from diffusers import UNet2DModel

        folder = Path(folder)
        card = json.loads((folder / "card.json").read_text())
        device, dtype = torch.device(device or "cpu"), dtype or torch.float32
        unet = UNet2DModel.from_pretrained(folder, torch_dtype=dtype, low_cpu_mem_usage=False)
        unet = unet.to(device).eval()
        return cls(unet, card["classes"], card["null_class"], name=name or card["name"],
                   device=device, dtype=dtype)

    def cond(self, labels):
        """Class indices ``(B,)`` from photo names or integers (see ``self.classes``)."""
        if isinstance(labels, str) or not hasattr(labels, "__iter__"):
            labels = [labels]
        idx = []
        for label in labels:
            if isinstance(label, str):
                if label not in self.classes:
                    raise ValueError(f"unknown class {label!r}; {self.name} knows {self.classes}")
                idx.append(self.classes.index(label))
            else:  # an integer index, never a truncated float (1.7 is no class)
                idx.append(checks.count(label, "class index", lo=0))
                if idx[-1] >= len(self.classes):
                    raise ValueError(f"class index must lie in [0, {len(self.classes) - 1}], "
                                     f"got {label}")
        if not idx:
            raise ValueError(f"labels needs at least one class name or index; {self.name} knows "
                             f"{self.classes}")
        return torch.tensor(idx, dtype=torch.long)

    def describe(self, photo: str) -> str:
        """A photograph's condition is its own name (a class when it was a training photo)."""
        return photo

    def _predict(self, x_t, t, cond):
        B = x_t.shape[0]
        labels = torch.full((B,), self.null_class, dtype=torch.long) if cond is None else cond
        labels = labels.expand(B) if labels.numel() == 1 else labels
        if labels.numel() != B:
            raise ValueError(f"need one class or one per sample ({B}), got {labels.numel()}")
        out = self._forward(x_t.to(self.device, self.dtype), t.to(self.device),
                            labels.to(self.device))
        return out.to(x_t.dtype)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The UNet on prepared inputs (device, dtype, one timestep and label per sample)."""
        if self.device.type != "cpu":
            return self.unet(x, t, class_labels=labels).sample
        x = x.contiguous(memory_format=torch.channels_last)
        outs = [self.unet(x[i:i + self.cpu_chunk], t[i:i + self.cpu_chunk],
                          class_labels=labels[i:i + self.cpu_chunk]).sample
                for i in range(0, x.shape[0], self.cpu_chunk)]
        return torch.cat(outs).contiguous()


class HubUnavailable(ConnectionError):
    """A Hub model was asked for with no network and no cached copy."""


#: Prompts drawn at random for the Stable Diffusion models (the paper: "random prompts"; a
#: model's ``random_labels``).
PROMPTS = [f"a photo of {s}" for s in (
    "a cat", "a dog", "a rabbit", "a horse", "a red car", "a bicycle", "a sailing boat",
    "an airplane in the sky", "a mountain lake", "a city street at night", "a bowl of fruit",
    "a cup of coffee", "a bunch of flowers", "a forest path", "a beach at sunset", "a snowy village",
    "an old castle", "a lighthouse", "a tiger", "an owl", "a parrot", "a butterfly on a leaf",
    "a pizza", "a wooden chair", "a living room", "a library", "a robot", "an astronaut",
    "a portrait of a woman", "a portrait of an old man", "a child playing", "a waterfall")]

#: For Stable Diffusion, a prompt describing each bundled photograph (the embedded models'
#: condition for a photograph is its own name).
PHOTO_PROMPTS = {"astronaut": "a portrait of an astronaut", "cat": "a photo of a cat",
                 "china": "a photo of a Chinese temple", "flower": "a photo of a flower",
                 "motorcycle": "a photo of a motorcycle", "coffee": "a cup of coffee",
                 "grace_hopper": "a portrait of a woman in uniform",
                 "rocket": "a rocket on a launch pad"}


class StableDiffusionModel(DiffusionModel):
    """Stable Diffusion (1.x, 2.x, SDXL) in latent space: UNet, VAE and CLIP text encoder(s).

    ``cond(prompts)`` encodes prompts; ``None`` stands for the empty prompt (SDXL: zeros, as
    diffusers' ``force_zeros_for_empty_prompt``), which is also the unconditional branch of
    classifier-free guidance. The VAE runs in float32 (SDXL's VAE overflows in fp16).
    """

    def __init__(self, components: dict, name: str = "sd", *, device=None, dtype=None):
        sched = components["scheduler"]
        unet = components["unet"]
        vae = components["vae"]
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        size = unet.config.sample_size
        super().__init__(sched.alphas_cumprod, (unet.config.in_channels, size, size),
                         device=device or "cpu", dtype=dtype or torch.float32)
        self.name = name
        self.prediction_type = sched.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"{name}: unsupported prediction_type {self.prediction_type!r}")
        self.unet = unet.to(self.device, self.dtype).eval()
        self.vae = vae.to(self.device, torch.float32).eval()
        self.scaling_factor = vae.config.scaling_factor
        self.tokenizers = [components[k] for k in ("tokenizer", "tokenizer_2") if components.get(k)]
        self.text_encoders = [components[k].to(self.device).eval()
                              for k in ("text_encoder", "text_encoder_2") if components.get(k)]
        self.is_sdxl = unet.config.addition_embed_type == "text_time"
        self._null = None
        self.label_choices = tuple(PROMPTS)

    def describe(self, photo: str) -> str:
        """A prompt for a bundled photograph (:data:`PHOTO_PROMPTS`; else "a photo of ...")."""
        return PHOTO_PROMPTS.get(photo, f"a photo of {photo.replace('_', ' ')}")

    @torch.no_grad()
    def cond(self, prompts):
        """Text conditioning for ``eps``: ``{"encoder_hidden_states", ...}`` for each prompt."""
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, (list, tuple)) or not prompts or not all(
                isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be a string or a non-empty list of strings, got "
                             f"{prompts!r}"[:160])
        states, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.text_encoders):
            ids = tok(prompts, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(self.device)
            out = enc(ids, output_hidden_states=self.is_sdxl)
            if self.is_sdxl:  # penultimate layer of both encoders; pooled from the second
                states.append(out.hidden_states[-2])
                pooled = out[0]
            else:
                states.append(out[0])
        cond = {"encoder_hidden_states": torch.cat(states, dim=-1).to(self.dtype)}
        if self.is_sdxl:
            cond["text_embeds"] = pooled.to(self.dtype)
        return cond

    def _null_cond(self):
        if self._null is None:
            self._null = self.cond([""])
            if self.is_sdxl:
                self._null = {k: torch.zeros_like(v) for k, v in self._null.items()}
        return self._null

    def _predict(self, x_t, t, cond):
        B = x_t.shape[0]
        cond = self._null_cond() if cond is None else cond
        kwargs = {}
        states = cond["encoder_hidden_states"]
        if states.shape[0] not in (1, B):
            raise ValueError(f"need one prompt or one per sample ({B}), got {states.shape[0]}")
        states = states.expand(B, -1, -1)
        if self.is_sdxl:
            H, W = (s * self.vae_scale for s in x_t.shape[-2:])
            time_ids = torch.tensor([[H, W, 0, 0, H, W]], dtype=self.dtype, device=self.device)
            kwargs["added_cond_kwargs"] = {"text_embeds": cond["text_embeds"].expand(B, -1),
                                           "time_ids": time_ids.expand(B, -1)}
        out = self.unet(x_t.to(self.device, self.dtype), t.to(self.device),
                        encoder_hidden_states=states, **kwargs).sample
        return out.to(x_t.dtype)

    def _check_shape(self, shape):
        # latent models accept any spatial size (multiples of the UNet's downsampling)
        if len(shape) != 4 or shape[1] != self.sample_shape[0]:
            raise ValueError(f"{self.name} expects latents of shape (B, {self.sample_shape[0]}, h, w), "
                             f"got {tuple(shape)}")

    @torch.no_grad()
    def encode(self, images):
        """Images ``(B, 3, H, W)`` in [-1, 1] to latents ``z0 = scaling_factor * E(x)`` (mean)."""
        x = checks.batch(images, "images", floating=True).to(self.device, torch.float32)
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] % self.vae_scale or x.shape[-2] % self.vae_scale:
            raise ValueError(f"images must be (B, 3, H, W) with H, W multiples of {self.vae_scale}, "
                             f"got {tuple(x.shape)}")
        return self.vae.encode(x).latent_dist.mean * self.scaling_factor

    @torch.no_grad()
    def decode(self, z0):
        """Latents to images in [-1, 1]."""
        z = checks.batch(z0, "z0", floating=True).to(self.device, torch.float32)
        return self.vae.decode(z / self.scaling_factor).sample.clamp(-1, 1)


#: seconds the Hub check waits for an answer (a server that accepts connections and never
#: answers fails within it), and huggingface_hub's own timeouts for a download's first answer
HUB_TIMEOUT = 3.0


def _hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether the Hugging Face Hub answers an HTTP request within ``timeout`` seconds (any
    answer, an error status included: the server is there). ``HF_HUB_OFFLINE`` means no."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = constants.ENDPOINT.rstrip("/") + "/api/models?limit=1"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:  # it answered, with an error status
        return True
    except (OSError, ValueError):  # refused, unresolvable, timed out, not a URL
        return False


def _in_hub_cache(repo: str) -> bool:
    """Whether the Hugging Face cache holds the repository's ``model_index.json``."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "model_index.json")
    return isinstance(found, str)


def _looks_like_a_path(repo: str) -> bool:
    """A local folder rather than a Hub id (``org/name``)."""
    return repo.startswith(("/", ".", "~")) or repo.count("/") > 1 or "\\" in repo


def _load_components(repo: str, dtype, local_only: bool) -> dict:
    kw = dict(local_files_only=local_only)
    with warnings.catch_warnings():  # diffusers passes hf_hub_download a deprecated argument
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
        return _load_parts(repo, dtype, kw)


def _load_parts(repo: str, dtype, kw: dict) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    comps = {
        "scheduler": DDIMScheduler.from_pretrained(repo, subfolder="scheduler", **kw),
        "unet": UNet2DConditionModel.from_pretrained(repo, subfolder="unet", torch_dtype=dtype, **kw),
        "vae": AutoencoderKL.from_pretrained(repo, subfolder="vae", **kw),
        "tokenizer": CLIPTokenizer.from_pretrained(repo, subfolder="tokenizer", **kw),
        "text_encoder": CLIPTextModel.from_pretrained(repo, subfolder="text_encoder",
                                                      torch_dtype=dtype, **kw),
    }
    if comps["unet"].config.addition_embed_type == "text_time":  # SDXL: a second encoder
        comps["tokenizer_2"] = CLIPTokenizer.from_pretrained(repo, subfolder="tokenizer_2", **kw)
        comps["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            repo, subfolder="text_encoder_2", torch_dtype=dtype, **kw)
    return comps


def load_stable_diffusion(name: str, device=None, dtype=None, repo: str | None = None
                          ) -> StableDiffusionModel:
    """A Stable Diffusion model from a Hub id (cached copy first) or a local folder.

    Args:
        name: the model's name (a registered one: :data:`MODELS`).
        device, dtype: default cuda / float16 when a GPU is there, else cpu / float32.
        repo: a Hub id or a local diffusers folder (default: the registry's ``source``).

    Returns:
        the :class:`StableDiffusionModel`.

    Raises:
        HubUnavailable: no cached copy and the Hub cannot be reached (at once, not after
            minutes of retries).
    """
    repo = repo or MODELS[name].source
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    if Path(repo).expanduser().is_dir():
        return StableDiffusionModel(_load_components(str(Path(repo).expanduser()), dtype, True),
                                    name, device=device, dtype=dtype)
    if _looks_like_a_path(repo):
        raise FileNotFoundError(f"local folder not found: {repo!r} (a diffusers folder with "
                                "model_index.json; a Hub id looks like 'org/name')")
    try:
        if not _in_hub_cache(repo):  # nothing cached: do not import diffusers to find out
            raise FileNotFoundError(repo)
        comps = _load_components(repo, dtype, True)
    except (OSError, ValueError):  # not (fully) cached
        if not _hub_reachable():
            from huggingface_hub import constants

            raise HubUnavailable(
                f"{name} ({repo}) is not cached and the Hugging Face Hub ({constants.ENDPOINT}) "
                f"did not answer within {HUB_TIMEOUT:g} s (or HF_HUB_OFFLINE is set). "
                f"Stable Diffusion models need a network (use the 'sd' profile in Colab); offline, "
                f"run the book with the 'cpu' profile, which uses the embedded models "
                f"{', '.join(n for n, m in MODELS.items() if m.backend != 'stable-diffusion')}."
            ) from None
        with _bounded_hub_timeouts():
            comps = _load_components(repo, dtype, False)
    return StableDiffusionModel(comps, name, device=device, dtype=dtype)


@contextlib.contextmanager
def _bounded_hub_timeouts(seconds: float = 10 * HUB_TIMEOUT):
    """huggingface_hub's timeouts for a download's first answer and for its metadata request,
    bounded while a model downloads (a Hub that stops answering then fails in seconds, not
    after minutes of retries)."""
    from huggingface_hub import constants

    names = ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")
    before = {n: getattr(constants, n) for n in names}
    for n in names:
        setattr(constants, n, min(float(before[n]), seconds))
    try:
        yield
    finally:
        for n, v in before.items():
            setattr(constants, n, v)


#: bump when the crops or the moments behind the ``gaussian`` model change
GAUSSIAN_VERSION = "2"


@functools.lru_cache(maxsize=4)
@cached(GAUSSIAN_VERSION, name="gaussian_model")
def _crop_eigh(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, eigenvalues (descending) and eigenvectors of the training crops' covariance.

    Done once per machine: the result goes to the disk cache (:mod:`lib.cache`), since the
    crops, the covariance and a D = 3,072 eigen-decomposition take 10-15 s on 2 cores and
    every chapter loads this model. The covariance and its decomposition are
    :mod:`lib.whitening`'s, so the chapters that whiten the same crops share them.
    """

    X = photo_crops(n, size, split="train", seed=seed).reshape(n, -1)
    lam, U = covariance_eigh(covariance(X))
    return X.mean(axis=0), lam, U


def load_gaussian(device=None, dtype=None, *, n: int = 20_000, size: int = 32,
                  seed: int = 0) -> GaussianModel:
    """The Gaussian-optimal model of ``n`` training crops of side ``size`` (seeded)."""
    mean, lam, U = _crop_eigh(n, size, seed)
    return GaussianModel.from_eigh(mean, lam, U, (3, size, size), device=device or "cpu",
                                   dtype=dtype or torch.float32)


def _load_embedded(name: str, device, dtype) -> UNetModel:
    folder = model_dir(name)
    if not (folder / "card.json").exists():
        raise FileNotFoundError(f"{folder} holds no model; train it with "
                                f"'python -m lib train --model {name}' and publish it")
    return UNetModel.from_folder(folder, device, dtype, name=name)


@dataclass(frozen=True)
class ModelSpec:
    """What the book needs to know of a model: how to load it and how the chapters sample it.

    Attributes:
        name: the registry name.
        backend: ``embedded`` (a committed UNet), ``gaussian``, ``stable-diffusion`` (the Hub),
            or any word for a model with its own ``load``.
        source: the weights: a folder of ``data/models`` or a Hub id (or a local diffusers
            folder).
        resolution: the native image side in pixels.
        steps, spacing, guidance: the DDIM grid and classifier-free guidance the chapters
            sample it with (:func:`lib.sampling.sample_batched`).
        latent_factor: pixels per side of one latent cell (8 for the SD VAE, 1 in pixel space).
        load: ``load(spec, device, dtype) -> DiffusionModel``; None: the backend's loader.
        description: one line for the reader.
    """

    name: str
    backend: str
    source: str | None = None
    resolution: int = 32
    steps: int = 25
    spacing: str = "leading"
    guidance: float | None = None
    latent_factor: int = 1
    load: Callable | None = field(default=None, compare=False)
    description: str = ""

    @property
    def in_pixels(self) -> bool:
        return self.latent_factor == 1


#: Every model the book can load, by name: one entry per model (see :func:`register`).
MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add a model to :data:`MODELS` (``replace=True`` to change an existing entry, e.g. a
    Stable Diffusion model's ``source`` to a mirror or a fine-tune)."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register takes a ModelSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise ValueError(f"the spec's name must be a non-empty string, got {spec.name!r}")
    if spec.source is not None and not isinstance(spec.source, (str, Path)):
        raise ValueError(f"the spec's source must be a folder, a Hub id or None, got "
                         f"{spec.source!r}")
    checks.count(spec.resolution, "the spec's resolution")
    checks.count(spec.steps, "the spec's steps")
    checks.count(spec.latent_factor, "the spec's latent_factor")
    if spec.resolution % spec.latent_factor:
        raise ValueError(f"the spec's resolution {spec.resolution} is no multiple of its "
                         f"latent_factor {spec.latent_factor}")
    checks.choice(spec.spacing, "the spec's spacing", SPACINGS)
    checks.guidance(spec.guidance, "the spec's guidance")
    if spec.load is not None and not callable(spec.load):
        raise ValueError(f"the spec's load must be a function (spec, device, dtype) -> model, "
                         f"got {spec.load!r}")
    if spec.name in MODELS and not replace:
        raise ValueError(f"a model named {spec.name!r} is registered already; pass replace=True "
                         "to change it")
    if spec.load is None and spec.backend not in _BACKENDS:
        raise ValueError(f"backend {spec.backend!r} has no loader; choose one of "
                         f"{sorted(_BACKENDS)} or give the spec a load function")
    MODELS[spec.name] = spec
    return spec


_BACKENDS = {
    "embedded": lambda spec, device, dtype: _load_embedded(spec.source, device, dtype),
    "gaussian": lambda spec, device, dtype: load_gaussian(device, dtype, size=spec.resolution),
    "stable-diffusion": lambda spec, device, dtype: load_stable_diffusion(spec.name, device, dtype,
                                                                          spec.source),
}

for _spec in (
    ModelSpec("tiny-a", "embedded", "tiny-a", description="embedded UNet, 2.6M parameters"),
    ModelSpec("tiny-b", "embedded", "tiny-b", description="embedded UNet, another seed and width"),
    ModelSpec("gaussian", "gaussian", description="the closed-form optimal denoiser of Gaussian "
              "data with the training crops' mean and covariance"),
    ModelSpec("sd-1.5", "stable-diffusion", "stable-diffusion-v1-5/stable-diffusion-v1-5", 512,
              50, "leading", 7.5, 8),
    ModelSpec("sd-2.1-base", "stable-diffusion", "stabilityai/stable-diffusion-2-1-base", 512,
              50, "leading", 7.5, 8),
    ModelSpec("sd-turbo", "stable-diffusion", "stabilityai/sd-turbo", 512, 4, "trailing", None, 8,
              description="distilled: a few steps from t = 999, no guidance"),
    ModelSpec("sdxl-turbo", "stable-diffusion", "stabilityai/sdxl-turbo", 512, 4, "trailing",
              None, 8, description="distilled: a few steps from t = 999, no guidance"),
):
    register(_spec)

#: The embedded models (weights committed in ``data/models``).
EMBEDDED = tuple(n for n, m in MODELS.items() if m.backend == "embedded")


def available_models() -> list[str]:
    """Names that :func:`load_model` accepts (:data:`MODELS`)."""
    return list(MODELS)


#: the dtypes a model can run in, by name
DTYPES = checks.DTYPES


def load_model(name: str, device=None, dtype=None, *, repo: str | None = None) -> DiffusionModel:
    """Load a registered model by name (see :data:`MODELS`).

    Args:
        name: ``tiny-a``, ``tiny-b``, ``gaussian``, a Stable Diffusion name, or one registered
            with :func:`register`.
        device, dtype: where and how to run it (default: cpu / float32 for the embedded
            models; cuda / float16 for Stable Diffusion when a GPU is there).
        repo: Stable Diffusion only: another Hub id or a local diffusers folder.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; available: {available_models()} (add one with "
                       "lib.models.register)")
    spec = MODELS[name]
    checks.device(device)  # the loader gets the caller's value, checked
    dtype = checks.dtype(dtype)
    if repo is not None:
        if spec.backend != "stable-diffusion":
            raise ValueError(f"repo= applies to the Stable Diffusion models, not {name!r}")
        spec = dataclasses.replace(spec, source=repo)
    return (spec.load or _BACKENDS[spec.backend])(spec, device, dtype)
