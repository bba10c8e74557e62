import numpy as np
import pytest
import torch

from lib.annealing import anneal
from lib.models import GaussianModel
import os

from lib.numerics import JITTER_ENV, jitter_ulps, jittered, rounding_jitter


@pytest.fixture
def jitter(monkeypatch):
    def set_ulps(value):
        monkeypatch.setenv(JITTER_ENV, str(value))
    monkeypatch.delenv(JITTER_ENV, raising=False)
    return set_ulps


def _gaussian_model():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((12, 12))
    return GaussianModel(rng.standard_normal(12), A @ A.T / 12 + 0.1 * np.eye(12), (3, 2, 2))


def test_off_by_default_and_the_identity(jitter):
    x = torch.randn(5, 7)
    assert jitter_ulps() == 0 and rounding_jitter(x) is x
    jitter(0)
    assert rounding_jitter(x) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relative_size_is_k_ulps_of_the_dtype(jitter, dtype):
    jitter(8)
    x = torch.rand(200_000, dtype=dtype) + 0.5
    y = rounding_jitter(x)
    assert y.dtype == dtype and y.shape == x.shape
    rel = ((y.double() - x.double()) / x.double()).numpy() / torch.finfo(dtype).eps
    assert abs(rel.mean()) < 0.1 and 7.5 < rel.std() < 8.5  # N(0, 8^2) in ulps
    assert np.abs(rel).max() < 8 * 7  # no outliers beyond 7 sigma (and no NaN)


def test_never_touches_the_callers_random_streams(jitter):
    jitter(8)
    torch.manual_seed(3)
    rounding_jitter(torch.ones(1000))
    a = torch.randn(4)
    torch.manual_seed(3)
    assert torch.equal(a, torch.randn(4))
    ints = torch.arange(5)
    assert rounding_jitter(ints) is ints


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf"])
def test_malformed_setting_is_an_error(jitter, raw):
    jitter(raw)
    with pytest.raises(ValueError, match=JITTER_ENV):
        rounding_jitter(torch.ones(2))


def test_model_noise_prediction_is_jittered_only_when_asked(jitter):
    m = _gaussian_model()
    x = torch.randn(4, 3, 2, 2)
    plain = m.eps(x, 700)
    assert torch.equal(plain, m.eps(x, 700))
    jitter(8)
    shaken = m.eps(x, 700)
    rel = float((shaken - plain).norm() / plain.norm())
    assert 1e-7 < rel < 1e-5, rel


def test_annealing_product_is_jittered_only_when_asked(jitter):
    rng = np.random.default_rng(1)
    W_inv = rng.standard_normal((16, 16)) + 4 * np.eye(16)
    x = torch.randn(2, 1, 4, 4)
    kw = dict(loss="forward", dewhiten=W_inv, n_iters=5, n_chains=3)
    a = anneal(x, generator=torch.Generator().manual_seed(0), **kw)
    b = anneal(x, generator=torch.Generator().manual_seed(0), **kw)
    assert np.array_equal(a.history.loss, b.history.loss)
    jitter(8)
    c = anneal(x, generator=torch.Generator().manual_seed(0), **kw)
    diff = np.abs(c.history.loss[0] - a.history.loss[0]) / a.history.loss[0]
    assert 0 < diff.max() < 1e-4



def test_jittered_block_restores_the_setting(jitter):
    x = torch.ones(10)
    with jittered(8):
        assert jitter_ulps() == 8 and not torch.equal(rounding_jitter(x), x)
    assert JITTER_ENV not in os.environ and rounding_jitter(x) is x
    jitter(3)
    with jittered(0):
        assert rounding_jitter(x) is x
    assert jitter_ulps() == 3
    with pytest.raises(ValueError, match="ulps"), jittered(-1):
        pass
