"""A chapter's experiment, ready to run: :func:`setup` resolves the profile, loads the models the
profile names for the chapter (:data:`lib.profiles.PROFILES`, :data:`lib.models.MODELS`) and
gives the chapter its data in the models' space.

A chapter's set-up cell is then a few lines::

    S = lib.experiment.setup("05_annealing", PROFILE, image_folder=IMAGE_FOLDER)
    STEPS, SPACING, GUIDANCE = S.sampler()
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

import lib.models
import lib.prose
from lib.cache import cache_use
from lib.data import (MIN_CONTENT_STD, image_batches, photo_crops, photo_names, photo_square,
                      with_content)
from lib.models import network_use
from lib.profiles import NETWORK_LOG_ENV, Profile, resolve
from lib.sampling import encode_batched

CONTENT_DRAWS = 3
"""A pixel model's targets are the first with content among this many times as many crops
(:meth:`Setup.targets`, :meth:`Setup.content_images`); about a third of the bundled photos'
crops are near-black or flat sky."""

__all__ = ["Setup", "setup"]


@dataclass
class Setup:
    """A chapter's experiment, ready to run: its profile, models and image source.

    Attributes:
        profile: the resolved :class:`Profile`.
        chapter: the chapter's file stem (``02_correlation``).
        models: ``{name: model}``, loaded on the profile's device in its dtype, in the
            chapter's order.
        size: image side in pixels.
        values: the chapter's profile-dependent settings (:attr:`ChapterSettings.values`).
        folder: the reader's image folder for a latent (Stable Diffusion) model; None for the
            embedded models, which always use the bundled photographs.
    """

    profile: Profile
    chapter: str
    models: dict
    size: int
    values: dict
    folder: str | None = None

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def main(self):
        """The chapter's first model."""
        return next(iter(self.models.values()))

    def spec(self, name: str | None = None):
        """The registry entry of a model (default: the main one)."""

        return lib.models.MODELS[name or self.names[0]]

    def sampler(self, name: str | None = None) -> tuple[int, str, float | None]:
        """``(steps, spacing, guidance)`` the book samples a model with (default: the main one)."""
        spec = self.spec(name)
        return spec.steps, spec.spacing, spec.guidance

    @property
    def latent(self) -> bool:
        """Whether the main model works in a latent space (a VAE's) rather than on pixels."""
        return not self.spec().in_pixels

    @property
    def latent_side(self) -> int:
        """The side of the main model's samples (the image side over the VAE's factor)."""
        return self.size // self.spec().latent_factor

    @property
    def show_side(self) -> int:
        """The side images are displayed at (decoded latents are shrunk to 64 pixels)."""
        return 64 if self.latent else self.size

    def images(self, n: int, *, split: str = "test", seed: int = 0, offset: int = 0,
               half: str | None = None, batch: int = 256):
        """``n`` pixel images in batches (:func:`lib.data.image_batches`): files of
        :attr:`folder` for a latent model, else crops of the bundled photos of ``split``."""

        return image_batches(n, self.size, folder=self.folder, offset=offset, split=split, seed=seed,
                             batch=batch, half=half)

    def model_space(self, n: int, model=None, *, progress: bool = False, **kwargs):
        """``n`` images (:meth:`images`, same keywords) in a model's space, float32 on the CPU:
        pixels for the embedded models, VAE latents for Stable Diffusion."""

        return encode_batched(model or self.main, self.images(n, **kwargs), progress=progress)

    def fit_samples(self, n: int, *, seed: int = 0):
        """``n`` samples in the main model's space to fit a whitening on: one seeded draw of
        training crops for a pixel model; for a latent one, the first ``n`` images of
        :attr:`folder` (or crops of the training photos), encoded batch by batch with a
        progress bar. float32 ``(n, C, H, W)`` on the CPU."""
        if self.latent:
            return self.model_space(n, split="train", seed=seed, progress=True)
        return torch.as_tensor(photo_crops(n, self.size, split="train", seed=seed))

    def whitening_sets(self, *, offset: int = 0):
        """The samples a whitening is fitted on and the held-out ones that choose its ridge
        (:func:`lib.whitening.best_ridge`), each flat ``(N, D)`` float32 numpy.

        Pixel models: ``profile.n_fit`` training crops (seed 3) and ``profile.n_test`` test
        crops (seed 1). A latent model: ``2 D`` latents of :meth:`images` of the training split
        from image ``offset`` on (past a chapter's targets), and a tenth as many of the test
        split after them.
        """
        P = self.profile
        if self.latent:
            D = int(np.prod(self.main.sample_shape))
            fit = self.model_space(2 * D, split="train", seed=3, offset=offset, batch=32)
            held = self.model_space(2 * D // 10, split="test", seed=4, offset=offset + 2 * D,
                                    batch=32)
        else:
            fit, held = (np.concatenate(list(self.images(n, split=split, seed=seed, batch=32)))
                         for n, split, seed in ((P.n_fit, "train", 3), (P.n_test, "test", 1)))
        return (np.asarray(x).reshape(len(x), -1) for x in (fit, held))

    def targets(self, n: int, *, split: str = "test", seed: int = 0,
                min_std: float = MIN_CONTENT_STD):
        """``n`` target images and the photograph each shows: for a pixel model, the first
        ``n`` crops of the bundled photos of ``split`` with content (:func:`lib.data.with_content`:
        pixel standard deviation at least ``min_std``; 0 keeps the first ``n`` drawn); for a
        latent one, the bundled photographs whole.

        Returns:
            ``(images, names)``: float32 ``(n, 3, size, size)`` in [-1, 1] and ``n`` names.
        """
        if self.latent:
            names = photo_names("all")[:n]
            if len(names) < n:
                raise ValueError(f"a latent model's targets are the {len(names)} bundled "
                                 f"photographs; ask for at most {len(names)}, not {n}")
            return torch.stack([torch.as_tensor(photo_square(p, self.size)) for p in names]), names
        crops, idx = photo_crops(CONTENT_DRAWS * n, self.size, split=split, seed=seed,
                                 return_labels=True)
        keep = with_content(crops, n, min_std=min_std)
        return torch.as_tensor(crops[keep]), [photo_names(split)[i] for i in idx[keep]]

    def content_images(self, n: int, *, min_std: float = MIN_CONTENT_STD, **kwargs):
        """``n`` images of :meth:`images` (same keywords) that show something, float32
        ``(n, 3, size, size)`` in [-1, 1]: for a pixel model the first ``n`` with content
        (:func:`lib.data.with_content`) of ``CONTENT_DRAWS * n`` crops, chosen without looking
        at any result; for a latent one the first ``n`` images of :attr:`folder` as they are
        (whole photographs; so that ``offset=n`` stays past them, as :meth:`whitening_sets`
        expects)."""
        drawn = torch.cat([torch.as_tensor(b) for b in
                           self.images(n if self.latent else CONTENT_DRAWS * n, **kwargs)])
        if self.latent:
            return drawn
        return drawn[torch.as_tensor(with_content(drawn, n, min_std=min_std))]


def setup(chapter: str, profile: str = "cpu", *, image_folder=None, verbose: bool = True) -> Setup:
    """Resolve a profile and load what one chapter runs under it.

    Also glues the profile's name as ``profile`` for the chapter's figure captions
    (:func:`lib.prose.glue`).

    Args:
        chapter: the chapter's file stem, a key of the profile's ``chapters``.
        profile: a name of :data:`PROFILES` (see :func:`resolve`).
        image_folder: a folder of natural images for the latent models (the paper: ImageNet
            val); without one they use the bundled photographs, with a warning.
    """
    P = resolve(profile, verbose=verbose)
    if chapter not in P.chapters:
        raise ValueError(f"unknown chapter {chapter!r}; profile {P.name!r} has {sorted(P.chapters)}")
    settings = P.chapters[chapter]
    dtype = None if P.dtype is None or settings.float32 else getattr(torch, P.dtype)
    registry = lib.models.MODELS  # read at call time, not at import: tests swap the registry
    latent = not registry[settings.models[0]].in_pixels  # Setup.latent, before loading anything
    size = settings.image_size or (P.sd_image_size if latent else P.image_size)
    models = {name: lib.models.load_model(name, device=P.device, dtype=dtype)
              for name in settings.models}
    out = Setup(P, chapter, models, size, dict(settings.values), image_folder if latent else None)
    if latent and image_folder is None and verbose:
        print(f"profile {P.name} without IMAGE_FOLDER: using the bundled photographs; set "
              "IMAGE_FOLDER to a folder of natural images (the paper: ImageNet val) for a "
              "meaningful test")
    lib.prose.glue("profile", P.name)
    _log_network_use()
    return out


def _log_network_use() -> None:
    """Under the runner (:data:`lib.models.NETWORK_LOG_ENV` set), keep this kernel's network use
    (:func:`lib.models.network_use`) and its cache use (:func:`lib.cache.cache_use`) in that
    file after every cell, so that the runner can report each chapter's network floor and how
    many of its results came from the cache."""
    path = os.environ.get(NETWORK_LOG_ENV)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if not path or shell is None or getattr(shell, "_lib_network_log", None) == path:
        return

    def write(*_):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"network": network_use(), "cache": cache_use()}, f)

    shell.events.register("post_run_cell", write)
    shell._lib_network_log = path
    write()
