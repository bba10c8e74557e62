"""Sample-quality statistics for the embedded models (their model cards report these).

A model's samples are compared with real crops on four statistics:

* the slope of the radially averaged power spectrum in log-log coordinates (natural images:
  about -2; a model that misses fine detail has a steeper slope, one that leaves noise behind a
  flatter one);
* the per-channel mean and standard deviation;
* the relative Frobenius distance between the two pixel covariance matrices,
  ``||Sigma_samples - Sigma_data||_F / ||Sigma_data||_F``;
* the model's epsilon-prediction error on held-out crops, per band of timesteps.

How close two sets of images are (PSNR, SSIM, Pearson) is :mod:`lib.metrics`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from lib import checks
from lib.metrics import images as _images, ring_average
from lib.schedule import forward_noise
from lib.whitening import covariance

__all__ = ["power_spectrum", "spectrum_slope", "channel_stats", "covariance_distance",
           "eps_mse_by_band", "SampleStats", "sample_stats", "Comparison", "compare_stats",
           "QUALITY_BAR", "T_BANDS"]

#: The bar each embedded model's samples must meet against the reference crops.
QUALITY_BAR = dict(slope_abs_diff=0.15, channel_rel_diff=0.10, cov_rel_frobenius=0.25)


def power_spectrum(images) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum, averaged over images and channels.

    Each image channel has its mean removed before the FFT. Frequencies are integer radii in
    cycles per image, 1 .. S/2 (the DC term and the corners beyond Nyquist are left out).

    Shapes:
        images ``(N, C, S, S)``; returns frequencies ``(S/2,)`` and power ``(S/2,)``.
    """
    x = _images(images, min_side=2)  # frequency 1 needs two pixels a side
    S = x.shape[-1]
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=(0, 1))  # (S, S)
    f = np.fft.fftfreq(S) * S
    radii, mean = ring_average(power, f, f)
    freqs = np.arange(1, S // 2 + 1)
    return freqs, mean[np.isin(radii, freqs)]


def spectrum_slope(images) -> float:
    """Least-squares slope of ``log power`` against ``log frequency`` (see :func:`power_spectrum`)."""
    freqs, power = power_spectrum(images)
    if len(freqs) < 2:
        raise ValueError("a spectrum slope needs two frequencies: images of at least 4 x 4 "
                         "pixels")
    if not (power > 0).all():
        raise ValueError("images have no power at some frequency (constant images?): the "
                         "log-log slope is undefined")
    return float(np.polyfit(np.log(freqs), np.log(power), 1)[0])


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over all images and pixels, each ``(C,)``."""
    x = _images(images)
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


def covariance_distance(images, reference) -> float:
    """``||Sigma_images - Sigma_reference||_F / ||Sigma_reference||_F`` over flattened pixels."""
    x, r = _images(images), _images(reference, "reference")
    if x.shape[1:] != r.shape[1:]:
        raise ValueError(f"images {x.shape[1:]} and reference {r.shape[1:]} differ in shape")
    cx, cr = covariance(x.reshape(len(x), -1)), covariance(r.reshape(len(r), -1))
    return float(np.linalg.norm(cx - cr) / np.linalg.norm(cr))


@dataclass
class SampleStats:
    """The statistics of one set of images (see :func:`sample_stats`)."""

    n: int
    slope: float
    mean: list[float]
    std: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def sample_stats(images) -> SampleStats:
    """Spectrum slope and per-channel mean / std of a set of images.

    Args:
        images: ``(N, C, S, S)`` array or tensor.

    Returns:
        a :class:`SampleStats`.
    """
    mean, std = channel_stats(images)
    return SampleStats(len(images), spectrum_slope(images), mean.tolist(), std.tolist())


@dataclass
class Comparison:
    """How far ``samples`` are from ``reference`` on each statistic, and whether the bar is met.

    ``mean_abs_diff`` is in pixel units ([-1, 1] scale); ``mean_rel_diff`` divides it by the
    reference's per-channel standard deviation (a relative error of a mean near zero means
    nothing), ``std_rel_diff`` by the reference's standard deviation.
    """

    slope_abs_diff: float
    mean_abs_diff: list[float]
    mean_rel_diff: list[float]
    std_rel_diff: list[float]
    cov_rel_frobenius: float
    passes: dict[str, bool] = field(default_factory=dict)

    @property
    def meets_bar(self) -> bool:
        return all(self.passes.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "meets_bar": self.meets_bar}


def compare_stats(samples, reference, bar: dict = QUALITY_BAR) -> Comparison:
    """Compare ``samples`` with ``reference`` images on the statistics of :data:`QUALITY_BAR`.

    Shapes:
        samples ``(N, C, S, S)`` and reference ``(M, C, S, S)``.
    """
    if not isinstance(bar, dict) or set(QUALITY_BAR) - set(bar):
        raise ValueError(f"bar must be a dict with the keys {sorted(QUALITY_BAR)} (see "
                         f"QUALITY_BAR), got {bar!r}"[:200])
    bar = {k: checks.number(v, f"bar[{k!r}]", lo=0) for k, v in bar.items()}
    samples, reference = _images(samples, "samples"), _images(reference, "reference")
    s, r = sample_stats(samples), sample_stats(reference)
    ms, mr, ss, sr = map(np.asarray, (s.mean, r.mean, s.std, r.std))
    comp = Comparison(
        slope_abs_diff=abs(s.slope - r.slope),
        mean_abs_diff=np.abs(ms - mr).tolist(),
        mean_rel_diff=(np.abs(ms - mr) / sr).tolist(),
        std_rel_diff=(np.abs(ss - sr) / sr).tolist(),
        cov_rel_frobenius=covariance_distance(samples, reference),
    )
    comp.passes = {
        "slope": comp.slope_abs_diff <= bar["slope_abs_diff"],
        "mean": max(comp.mean_rel_diff) <= bar["channel_rel_diff"],
        "std": max(comp.std_rel_diff) <= bar["channel_rel_diff"],
        "cov": comp.cov_rel_frobenius <= bar["cov_rel_frobenius"],
    }
    return comp


#: Bands of timesteps for the held-out epsilon-MSE.
T_BANDS = ((0, 100), (100, 300), (300, 500), (500, 700), (700, 900), (900, 1000))


def _check_bands(bands, steps: int) -> list[tuple[int, int]]:
    """``bands`` as ``(lo, hi)`` integer pairs with ``0 <= lo < hi <= steps``, at least one."""
    out = []
    for band in bands:
        if isinstance(band, (str, bytes)) or not hasattr(band, "__len__") or len(band) != 2:
            raise ValueError(f"each of bands must be a (lo, hi) pair of timesteps, got {band!r}")
        lo = checks.timestep(band[0], "the lo of bands", steps=steps)
        hi = checks.count(band[1], "the hi of bands")
        if not lo < hi <= steps:
            raise ValueError(f"each of bands (lo, hi) needs lo < hi <= {steps}, got {band!r}")
        out.append((lo, hi))
    if not out:
        raise ValueError("bands needs at least one (lo, hi) pair of timesteps")
    return out


@torch.no_grad()
def eps_mse_by_band(model, images, *, bands=T_BANDS, per_band: int = 4, batch_size: int = 256,
                    generator: torch.Generator | None = None) -> dict[str, float]:
    """Held-out epsilon-prediction MSE, ``E ||eps_hat(z_t, t) - eps||^2 / D``, per band of t.

    Each image is noised ``per_band`` times per band, at timesteps drawn uniformly in the band.

    Args:
        model: a :class:`lib.models.DiffusionModel` (unconditional evaluation).
        images: clean images ``(N, C, H, W)`` in the model's space.
        bands: ``(lo, hi)`` pairs, ``lo <= t < hi``.

    Returns:
        ``{"lo-hi": mse}`` for each band.
    """
    batch_size = checks.count(batch_size, "batch_size")
    per_band = checks.count(per_band, "per_band")
    bands = _check_bands(bands, len(model.alphas_cumprod))
    x0 = torch.as_tensor(_images(images), dtype=torch.float32)
    out = {}
    for lo, hi in bands:
        total, count = 0.0, 0
        for _ in range(per_band):
            for start in range(0, len(x0), batch_size):
                z0 = x0[start:start + batch_size]
                t = torch.randint(lo, hi, (len(z0),), generator=generator)
                eps = torch.randn(z0.shape, generator=generator)
                z_t = forward_noise(z0, eps, t, model.alphas_cumprod)  # the model's schedule
                eps_hat = model.eps(z_t.to(model.device, model.dtype), t)
                total += float((eps_hat.float().cpu() - eps).pow(2).mean(dim=(1, 2, 3)).sum())
                count += len(z0)
        out[f"{lo}-{hi}"] = total / count
    return out
