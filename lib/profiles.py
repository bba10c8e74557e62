"""Run profiles: ``cpu`` (embedded models, no GPU, CI), ``gpu`` (paper scale), ``sd`` (Hub models).

A profile is every setting of an experiment in one declared place: the sizes, the device and
dtype, and for each chapter which models it runs (:class:`ChapterSettings`); how a model is
loaded and sampled is its entry in :data:`lib.models.MODELS`.

Every chapter has one ``parameters`` cell with ``PROFILE = "cpu"`` (papermill overrides it) and
then calls :func:`lib.experiment.setup`, which resolves the profile (:func:`resolve`: checks the
name, switches a Colab session with a GPU from the default ``cpu`` to ``sd``, checks that a GPU
profile has a GPU) and loads the chapter's models. This module only declares: it loads nothing,
so a page that imports it runs no model.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

__all__ = ["Profile", "PROFILES", "ChapterSettings", "CHAPTER_KEYS", "resolve", "in_colab",
           "FIGURE_DIR_ENV", "NETWORK_LOG_ENV"]

#: where a chapter's kernel saves each figure (plotly JSON and a standalone page,
#: :func:`lib.plotting.show`); the runner sets it per chapter
FIGURE_DIR_ENV = "LIB_FIGURE_DIR"
#: where a chapter's kernel keeps its network use (:func:`lib.models.network_use`); the runner
#: sets it per chapter and reads it back for the floor table
NETWORK_LOG_ENV = "LIB_NETWORK_LOG"


@dataclass(frozen=True, kw_only=True)
class ChapterSettings:
    """What one chapter runs under one profile: its models and its sizes.

    Attributes:
        models: registry names (:data:`lib.models.MODELS`); the first is the chapter's main model.
        image_size: image side in pixels (None: the profile's ``image_size`` for pixel-space
            models, ``sd_image_size`` for latent ones).
        values: the chapter's own sizes and settings under this profile, read as
            ``Setup.values[key]`` (each chapter's keys are listed in :data:`CHAPTER_KEYS`):

            * ``02_correlation``: ``n_noises``, noises of each set (sharing the seed's block
              means, and independent ones);
            * ``03_fixed_point``: ``n_conv``, images of the convergence study, and
              ``conv_evals``, its budget in network evaluations per solver;
            * ``04_whitening``: ``n_pairs``, ``n_pairs_test``, fitting and held-out pairs per
              pair set (crops of disjoint regions of the training photographs and each model's
              own DDIM samples, in distribution, and crops of the test photographs);
              ``fp_iters``, iterations of Eq. (7) behind the pairs and the t-sweep;
              ``sweep_iters``, the iteration counts K decided at (snapshots of one run);
              ``n_sweep``, images of the t-sweep, and ``n_sweep_random``, those whose runs from
              a random start test convergence there; ``n_inversion``, images DDIM-inverted;
            * ``05_annealing``, ``06_applications``: optionally ``n_fit`` (samples the ZCA
              whitening is fitted on; default the profile's), the condition ``label``, prompts;
            * ``90_appendix_models``: ``n_samples``, live samples per model for the spectra.
        parameters: values the runner gives the chapter's ``parameters`` cell under this
            profile (papermill), beside ``PROFILE``.
        float32: run the models in float32 whatever the profile's dtype (the appendix measures
            the embedded models as their cards were made).
    """

    models: tuple[str, ...]
    image_size: int | None = None
    values: dict = field(default_factory=dict, hash=False)
    parameters: dict = field(default_factory=dict, hash=False)
    float32: bool = False


#: the keys every profile must give a chapter's :attr:`ChapterSettings.values`
CHAPTER_KEYS = {
    "02_correlation": {"n_noises"},
    "03_fixed_point": {"n_conv", "conv_evals"},
    "04_whitening": {"n_pairs", "n_pairs_test", "fp_iters", "sweep_iters", "n_sweep",
                     "n_sweep_random", "n_inversion"},
    "90_appendix_models": {"n_samples"},
}

EMBEDDED_TRIO = ("tiny-a", "tiny-b", "gaussian")


def embedded_chapters(*, n_noises: int, n_conv: int, conv_evals: int, whitening: dict,
                      n_samples: int, parameters: dict | None = None) -> dict:
    """The chapters on the embedded models (profiles cpu, gpu and mini), at one set of sizes.

    Args:
        n_noises, n_conv, conv_evals, n_samples: see :class:`ChapterSettings`.
        whitening: chapter 4's sizes (``n_pairs`` ... ``n_inversion``).
        parameters: ``{chapter: {name: value}}`` for the chapters' ``parameters`` cells.
    """
    parameters = parameters or {}
    settings = {
        "02_correlation": ChapterSettings(models=EMBEDDED_TRIO, values={"n_noises": n_noises}),
        "03_fixed_point": ChapterSettings(models=EMBEDDED_TRIO,
                                          values={"n_conv": n_conv, "conv_evals": conv_evals}),
        "04_whitening": ChapterSettings(models=EMBEDDED_TRIO, values=dict(whitening)),
        "05_annealing": ChapterSettings(models=("tiny-a",)),  # the null class, no guidance
        "06_applications": ChapterSettings(models=("tiny-a", "tiny-b"),
                                           values={"edit": ("cat", "flower")}),
        "90_appendix_models": ChapterSettings(models=EMBEDDED_TRIO,
                                              values={"n_samples": n_samples}),
    }
    return {name: replace(s, parameters=dict(parameters.get(name, {})))
            for name, s in settings.items()}


#: chapter 4's sizes on the cpu profile (the sizes its calibration was run at)
CPU_WHITENING = {"n_pairs": 300, "n_pairs_test": 100, "fp_iters": 20, "sweep_iters": (10, 20, 50),
                 "n_sweep": 100, "n_sweep_random": 16, "n_inversion": 400}
CPU_CHAPTERS = embedded_chapters(n_noises=256, n_conv=8, conv_evals=300, whitening=CPU_WHITENING,
                                 n_samples=128)


def sd_chapters() -> dict:
    """The chapters on Stable Diffusion (profile sd): the paper's models for each figure."""
    return {
        # Fig. 2: SDXL-Turbo at 512 px (64x64 latents), 8x8 block means
        "02_correlation": ChapterSettings(models=("sdxl-turbo",), image_size=512,
                                          values={"n_noises": 1_000}),
        "03_fixed_point": ChapterSettings(models=("sd-2.1-base",),
                                          values={"n_conv": 16, "conv_evals": 300}),
        "04_whitening": ChapterSettings(models=("sd-2.1-base",), values={
            "n_pairs": 2_000, "n_pairs_test": 500, "fp_iters": 20, "sweep_iters": (10, 20, 50, 100),
            "n_sweep": 500, "n_sweep_random": 64, "n_inversion": 500}),
        # Figs. 7-8: Stable Diffusion 2.1 decodes the annealed noises
        "05_annealing": ChapterSettings(models=("sd-2.1-base",),
                                        values={"label": "a photograph", "n_fit": 10_000}),
        # Fig. 9: SD 2.1, SD 1.5 and SD-Turbo denoise the same noises; Figs. 10-11: the edits
        "06_applications": ChapterSettings(
            models=("sd-2.1-base", "sd-1.5", "sd-turbo"),
            values={"n_fit": 10_000, "edit": ("a photo of a cat", "a photo of a rabbit"),
                    "candidates": ("a photo of a cat", "a photo of a rabbit"),
                    "other_labels": ("a photo of a dog", "a watercolor painting", "a bronze statue"),
                    "edit_crop_levels": None}),
        # the embedded models run in every profile; here on the profile's GPU
        "90_appendix_models": ChapterSettings(models=EMBEDDED_TRIO, float32=True,
                                              values={"n_samples": 1_000}),
    }


@dataclass(frozen=True, kw_only=True)
class Profile:
    """The device and the shared sizes of one profile; each chapter's own sizes are its
    :class:`ChapterSettings` in ``chapters``.

    Attributes:
        name: ``cpu``, ``gpu``, ``sd`` or ``mini`` (tests).
        device: torch device the chapters use.
        needs_gpu: whether the profile refuses to run without CUDA.
        n_fit: samples used to estimate covariances / fit linear maps.
        n_test: held-out samples for evaluation.
        image_size: side of the image crops for the embedded models (pixels).
        description: one line for the reader.
        sd_image_size: image side for the Hub models (latents are 8x smaller).
        chapters: ``{chapter: ChapterSettings}``: the models and sizes of each chapter.
        dtype: the models' dtype (``"float16"``; None: each model's default, float32 on a CPU).
    """

    name: str
    device: str
    needs_gpu: bool
    n_fit: int
    n_test: int
    image_size: int
    description: str
    sd_image_size: int = 256
    chapters: dict = field(default_factory=lambda: CPU_CHAPTERS, hash=False)
    dtype: str | None = None


PROFILES: dict[str, Profile] = {
    "cpu": Profile(name="cpu", device="cpu", needs_gpu=False, n_fit=20_000, n_test=2_000,
                   image_size=32,
                   description="embedded models on the CPU, sizes for a 2-core laptop or CI"),
    "gpu": Profile(name="gpu", device="cuda", needs_gpu=True, n_fit=50_000, n_test=10_000,
                   image_size=32,
                   description="embedded models at the paper's scale (N = 50,000) on a CUDA GPU",
                   chapters=embedded_chapters(
                       n_noises=2_000, n_conv=64, conv_evals=600, n_samples=1_000, whitening={
                           "n_pairs": 10_000, "n_pairs_test": 2_000, "fp_iters": 20,
                           "sweep_iters": (10, 20, 50, 100, 200), "n_sweep": 2_000,
                           "n_sweep_random": 256, "n_inversion": 2_000})),
    "sd": Profile(name="sd", device="cuda", needs_gpu=True, n_fit=50_000, n_test=10_000,
                  image_size=32,
                  description="Stable Diffusion models from the Hugging Face Hub on a CUDA GPU "
                              "(Colab)",
                  chapters=sd_chapters(), dtype="float16"),
    # not for reading: every chapter in a few minutes, so that the tests can build a whole book
    # from a run of a profile other than cpu and check that its prose shows that run's numbers
    "mini": Profile(name="mini", device="cpu", needs_gpu=False, n_fit=4_000, n_test=500,
                    image_size=32,
                    description="embedded models at toy sizes, for the tests (numbers mean little)",
                    chapters=embedded_chapters(
                        n_noises=48, n_conv=2, conv_evals=30, n_samples=32, whitening={
                            "n_pairs": 96, "n_pairs_test": 48, "fp_iters": 5, "sweep_iters": (5, 10),
                            "n_sweep": 64, "n_sweep_random": 8, "n_inversion": 144},
                        parameters={
                            "03_fixed_point": {"ITERS": 10, "N_ZCA_TARGETS": 8},
                            "05_annealing": {"N_ITERS": 200, "N_TARGETS": 4, "N_CHAINS": 4},
                            "06_applications": {"N_ITERS": 200, "N_TARGETS": 4, "N_EDIT": 4,
                                                "STRENGTHS": [0.5, 0.9, 1.0]}})),
}


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve(name: str, *, verbose: bool = True) -> Profile:
    """Check a profile name and return its sizes.

    In Colab with a GPU the default ``cpu`` becomes ``sd`` (the paper's models). A GPU profile
    without a GPU raises an error that names the ``cpu`` profile.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
                         "(cpu: embedded models, no GPU needed)")
    if name == "cpu" and in_colab() and _cuda_available():
        name = "sd"
        if verbose:
            print("Colab with a GPU: using the 'sd' profile (Stable Diffusion from the Hub); "
                  "set PROFILE = 'cpu' in the parameters cell to keep the embedded models.")
    elif name == "cpu" and in_colab() and verbose:
        print("No GPU in this runtime: the chapter runs the cpu profile (the small embedded "
              "models). For the paper's Stable Diffusion models: Runtime > Change runtime type > "
              "T4 GPU, then Runtime > Run all.")
    profile = PROFILES[name]
    if profile.needs_gpu and not _cuda_available():
        raise RuntimeError(f"profile {name!r} needs a CUDA GPU and none is available; "
                           "run with PROFILE = 'cpu' (the embedded models, no GPU needed)")
    return profile
