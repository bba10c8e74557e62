import numpy as np
import pytest
import torch

from lib import cache
from lib.models import GaussianModel
from lib.numerics import JITTER_ENV


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    monkeypatch.delenv(JITTER_ENV, raising=False)
    return tmp_path / "cache"


def _model(scale=1.0):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((12, 12))
    return GaussianModel(rng.standard_normal(12), scale * (A @ A.T / 12 + 0.1 * np.eye(12)), (3, 2, 2))


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return {"value": np.arange(5) * self.calls}


def test_hit_returns_the_stored_result_without_recomputing(tmp_cache):
    work, lines = Counter(), []
    kw = dict(model=_model(), x=torch.ones(3), t=980, iters=20, init="zero")
    a = cache.cached("pairs", "1", work, log=lines.append, **kw)
    b = cache.cached("pairs", "1", work, log=lines.append, **kw)
    assert work.calls == 1 and np.array_equal(a["value"], b["value"])
    assert "computed and cached" in lines[0] and "reused" in lines[1]
    assert len(list((tmp_cache / "pairs").glob("*.pkl"))) == 1


@pytest.mark.parametrize("change", [
    dict(x=torch.tensor([1.0, 1.0, 1.0 + 1e-7])), dict(t=979), dict(iters=21), dict(init="random"),
    dict(model=_model(scale=1.0 + 1e-9)), dict(x=torch.ones(3, dtype=torch.float64)),
])
def test_miss_on_any_argument_or_weight_change(change):
    work = Counter()
    kw = dict(model=_model(), x=torch.ones(3), t=980, iters=20, init="zero")
    cache.cached("pairs", "1", work, **kw)
    cache.cached("pairs", "1", work, **{**kw, **change})
    assert work.calls == 2


def test_miss_on_code_version_and_on_the_floating_point_environment(monkeypatch):
    work = Counter()
    cache.cached("pairs", "1", work, t=1)
    cache.cached("pairs", "2", work, t=1)
    monkeypatch.setenv(JITTER_ENV, "8")  # a jittered (test) run never replays a plain result
    cache.cached("pairs", "2", work, t=1)
    assert work.calls == 3


def test_no_cache_computes_every_time_and_stores_nothing(tmp_cache, monkeypatch):
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    work = Counter()
    cache.cached("pairs", "1", work, t=1)
    cache.cached("pairs", "1", work, t=1)
    assert work.calls == 2 and not tmp_cache.exists()


def test_a_broken_entry_is_recomputed(tmp_cache):
    work = Counter()
    cache.cached("pairs", "1", work, t=1)
    entry = next((tmp_cache / "pairs").glob("*.pkl"))
    entry.write_bytes(b"not a pickle")
    assert cache.cached("pairs", "1", work, t=1)["value"][1] == 2 and work.calls == 2


def test_fingerprint_follows_the_weights_and_the_dtype():
    a, b = _model(), _model()
    assert cache.fingerprint(a) == cache.fingerprint(b)
    assert cache.fingerprint(a) != cache.fingerprint(_model(scale=2.0))
    c = _model()
    c.dtype = torch.float16
    assert cache.fingerprint(c) != cache.fingerprint(a)


def test_bad_keys_and_names():
    with pytest.raises(TypeError, match="cannot key"):
        cache.cached("pairs", "1", Counter(), thing=object())
    with pytest.raises(ValueError, match="folder name"):
        cache.cached("../x", "1", Counter())
