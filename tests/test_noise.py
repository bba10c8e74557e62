import math

import numpy as np
import pytest
import torch
from scipy import stats

from lib.noise import block_mean, lowfreq_component, lowfreq_constrained, slerp


def test_block_means_equal_the_seeds_to_float_precision():
    seed = torch.randn(4, 64, 64, generator=torch.Generator().manual_seed(0))
    z = lowfreq_constrained(seed, 8, 50, generator=torch.Generator().manual_seed(1))
    assert z.shape == (50, 4, 64, 64) and z.dtype == seed.dtype
    assert torch.allclose(block_mean(z, 8), block_mean(seed[None], 8).expand(50, -1, -1, -1), atol=1e-6)
    assert block_mean(seed[None], 8).shape == (1, 4, 8, 8)
    # the rest differs between noises: the high frequencies are fresh
    hi = z - lowfreq_component(z, 8)
    assert float(torch.corrcoef(hi.reshape(50, -1)[:2])[0, 1]).__abs__() < 0.05


def test_conditional_mean_and_variance_per_pixel():
    k = 4
    seed = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    z = lowfreq_constrained(seed, k, 40_000, generator=torch.Generator().manual_seed(3)).double()
    mean, var = z.mean(0), z.var(0)
    expected = lowfreq_component(seed, k)[0].double()  # each pixel: its block's seed mean
    se = math.sqrt((1 - 1 / k**2) / 40_000)
    assert (mean - expected).abs().max() < 5 * se
    assert torch.allclose(var, torch.full_like(var, 1 - 1 / k**2), atol=0.03)


def test_over_random_seeds_every_pixel_is_standard_normal():
    g = torch.Generator().manual_seed(4)
    seeds = torch.randn(4000, 1, 3, 8, 8, generator=g)
    z = torch.cat([lowfreq_constrained(s, 4, 1, generator=g) for s in seeds])  # (4000, 3, 8, 8)
    for pixel in (z[:, 0, 0, 0], z[:, 2, 5, 3]):
        assert stats.kstest(pixel.numpy(), "norm").pvalue > 1e-3
    # the block means have variance 1/k^2, as for white noise (adding the seed's means without
    # removing the fresh ones would double it)
    assert float(block_mean(z, 4).var()) * 16 == pytest.approx(1.0, abs=0.08)
    flat = z.reshape(4000, -1).double()
    cov = torch.cov(flat.T)
    assert (cov - torch.eye(cov.shape[0], dtype=cov.dtype)).abs().max() < 0.1  # white: I - P + P


def test_ks_detects_a_wrong_construction():
    # the same test catches the mistake of adding the seed's means without removing the fresh ones
    g = torch.Generator().manual_seed(5)
    seeds = torch.randn(4000, 1, 3, 8, 8, generator=g)
    wrong = torch.stack([(torch.randn(3, 8, 8, generator=g) + lowfreq_component(s, 2)[0]) for s in seeds])
    assert stats.kstest(wrong[:, 0, 0, 0].numpy(), "norm").pvalue < 1e-3  # variance 1 + 1/4
    right = torch.cat([lowfreq_constrained(s, 2, 1, generator=g) for s in seeds])
    assert stats.kstest(right[:, 0, 0, 0].numpy(), "norm").pvalue > 1e-3


def test_bad_arguments():
    seed = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match="must divide"):
        lowfreq_constrained(seed, 5, 2)
    with pytest.raises(ValueError, match="one noise"):
        lowfreq_constrained(torch.randn(2, 3, 32, 32), 4, 2)
    with pytest.raises(ValueError, match="NaN"):
        lowfreq_constrained(torch.full((3, 32, 32), float("nan")), 4, 2)
    with pytest.raises(ValueError, match="positive integer"):
        lowfreq_constrained(seed, 4, 0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        block_mean(torch.randn(32, 32), 4)
    with pytest.raises(ValueError, match="positive integer"):
        lowfreq_constrained(seed, 4.0, 2)
    with pytest.raises(ValueError, match=r"z must have shape \(B, C, H, W\)"):
        lowfreq_component(torch.randn(8), 4)
    assert lowfreq_constrained(seed, np.int64(4), np.int64(2)).shape == (2, 3, 32, 32)


def test_slerp_keeps_unit_variance_and_its_end_points():
    g = torch.Generator().manual_seed(6)
    z, eps = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    for alpha in (0.1, 0.5, 0.9):
        out = slerp(z, eps, alpha)
        assert abs(float(out.var()) - 1) < 0.01 and abs(float(out.mean())) < 0.01
        assert abs(float(np.corrcoef(out, z)[0, 1]) - math.sin(math.pi * alpha / 2)) < 0.01
    assert torch.equal(slerp(z, eps, 1.0), z)
    assert torch.allclose(slerp(z, eps, 0.0), eps)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slerp(z, eps, 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slerp(z, eps, float("nan"))
    with pytest.raises(ValueError, match="one shape"):
        slerp(z, eps[:10], 0.5)
    with pytest.raises(ValueError, match="number in"):
        slerp(z, eps, "half")
    assert torch.allclose(slerp(z, eps, np.float32(0.5)), slerp(z, eps, torch.tensor(0.5)))


def test_normality_known_answers():
    from lib.noise import normality

    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, 16, 16, generator=g)
    ok = normality(z, seed=1)
    assert abs(ok.std - 1) < 0.01 and ok.ks_p > 0.01 and 0.95 <= ok.norm_share <= 1.0
    # 20 % too small: every norm falls below the chi-square band and KS rejects
    small = normality(0.8 * z, seed=1)
    assert abs(small.std - 0.8) < 0.01 and small.ks_p < 1e-6 and small.norm_share == 0.0
    # the KS sample is seeded and drawn across all noises: the same answer for the same seed
    assert normality(z, seed=1) == ok and normality(z, seed=2).ks_p != ok.ks_p
    assert normality(z, n_ks=10 ** 9).ks_p > 0  # capped at the number of values
    with pytest.raises(ValueError, match="central"):
        normality(z, central=1.0)
