import numpy as np
import pytest

import torch

from lib.models import DiffusionModel
from lib.quality import (channel_stats, compare_stats, covariance_distance, eps_mse_by_band,
                         power_spectrum, spectrum_slope)
from lib.schedule import sd_alphas_cumprod


def _power_law_images(n, size, exponent, seed=0):
    """Gaussian images whose power spectrum is |f|^exponent (random phases)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size) * size
    r = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    r[0, 0] = 1
    amp = r ** (exponent / 2)
    white = rng.standard_normal((n, 3, size, size))
    return np.real(np.fft.ifft2(np.fft.fft2(white) * amp))


@pytest.mark.parametrize("exponent", [0.0, -2.0, -3.0])
def test_spectrum_slope_recovers_a_power_law(exponent):
    # integer-radius rings on a 32x32 grid flatten the fit by about 4 % of the exponent
    x = _power_law_images(200, 32, exponent)
    assert spectrum_slope(x) == pytest.approx(exponent, abs=0.12)
    assert spectrum_slope(3 * x + 0.5) == pytest.approx(spectrum_slope(x), abs=1e-9)


def test_power_spectrum_of_white_noise_is_flat_at_its_variance():
    x = np.random.default_rng(1).standard_normal((500, 3, 16, 16)) * 0.5
    freqs, power = power_spectrum(x)
    assert freqs.tolist() == list(range(1, 9))
    assert np.allclose(power / (16 * 16), 0.25, rtol=0.05)  # Parseval


def test_channel_stats_and_covariance_distance():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 3, 4, 4)) * np.array([1.0, 2.0, 0.5])[:, None, None] + \
        np.array([0.1, -0.2, 0.3])[:, None, None]
    mean, std = channel_stats(x)
    assert np.allclose(mean, [0.1, -0.2, 0.3], atol=0.02) and np.allclose(std, [1, 2, 0.5], rtol=0.02)
    assert covariance_distance(x, x) == 0
    assert covariance_distance(2 * x, x) == pytest.approx(3.0, rel=1e-9)  # cov scales by 4


def test_compare_stats_flags_each_statistic():
    x = _power_law_images(400, 16, -2.0)
    same = compare_stats(x, x)
    assert same.meets_bar and same.slope_abs_diff == 0
    wide = compare_stats(1.3 * x, x)
    assert wide.passes == {"slope": True, "mean": True, "std": False, "cov": False}
    noisy = compare_stats(x + np.random.default_rng(0).standard_normal(x.shape) * x.std(), x)
    assert not noisy.passes["slope"]
    with pytest.raises(ValueError, match="NaN"):
        compare_stats(np.full_like(x, np.nan), x)


class _Zero(DiffusionModel):
    def _predict(self, x_t, t, cond):
        return torch.zeros_like(x_t)


class _Oracle(DiffusionModel):
    """Knows that every image is the constant 0.3, so it can recover the exact noise."""

    def _predict(self, x_t, t, cond):
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - abar.sqrt() * 0.3) / (1 - abar).sqrt()


def test_eps_mse_by_band_known_answers():
    images = np.full((40, 3, 4, 4), 0.3)
    gen = torch.Generator().manual_seed(0)
    zero = eps_mse_by_band(_Zero(sd_alphas_cumprod(), (3, 4, 4)), images, generator=gen)
    oracle = eps_mse_by_band(_Oracle(sd_alphas_cumprod(), (3, 4, 4)), images, generator=gen)
    assert list(zero) == ["0-100", "100-300", "300-500", "500-700", "700-900", "900-1000"]
    assert all(v == pytest.approx(1.0, abs=0.05) for v in zero.values())  # E eps^2 = 1
    assert all(v < 1e-8 for v in oracle.values())
