import pickle

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
    a = cache.lookup("pairs", "1", work, log=lines.append, **kw)
    b = cache.lookup("pairs", "1", work, log=lines.append, **kw)
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
    cache.lookup("pairs", "1", work, **kw)
    cache.lookup("pairs", "1", work, **{**kw, **change})
    assert work.calls == 2


def test_miss_on_code_version_and_on_the_floating_point_environment(monkeypatch):
    work = Counter()
    cache.lookup("pairs", "1", work, t=1)
    cache.lookup("pairs", "2", work, t=1)
    monkeypatch.setenv(JITTER_ENV, "8")  # a jittered (test) run never replays a plain result
    cache.lookup("pairs", "2", work, t=1)
    assert work.calls == 3


def test_no_cache_computes_every_time_and_stores_nothing(tmp_cache, monkeypatch):
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    work = Counter()
    cache.lookup("pairs", "1", work, t=1)
    cache.lookup("pairs", "1", work, t=1)
    assert work.calls == 2 and not tmp_cache.exists()


def test_a_broken_entry_is_recomputed(tmp_cache):
    work = Counter()
    cache.lookup("pairs", "1", work, t=1)
    entry = next((tmp_cache / "pairs").glob("*.pkl"))
    entry.write_bytes(b"not a pickle")
    assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 2 and work.calls == 2


def test_fingerprint_follows_the_weights_and_the_dtype():
    a, b = _model(), _model()
    assert cache.fingerprint(a) == cache.fingerprint(b)
    assert cache.fingerprint(a) != cache.fingerprint(_model(scale=2.0))
    c = _model()
    c.dtype = torch.float16
    assert cache.fingerprint(c) != cache.fingerprint(a)


def test_bad_keys_and_names():
    with pytest.raises(TypeError, match="cannot key"):
        cache.lookup("pairs", "1", Counter(), thing=object())
    with pytest.raises(ValueError, match="folder name"):
        cache.lookup("../x", "1", Counter())


def _decorated(version="1", calls=None):
    calls = [] if calls is None else calls

    @cache.cached(version, name="sweep")
    def sweep(model, X, eps_grid, *, shift=0.0, progress=True, log=None, **options):
        calls.append(1)
        return float(np.sum(X)) * len(eps_grid) + shift + len(options)

    return sweep, calls


def test_cached_functions_key_every_argument_by_themselves():
    sweep, calls = _decorated()
    X, m = np.ones((4, 3)), _model()
    first = sweep(m, X, [1e-3, 1e-2])
    # the same call written differently (keywords, defaults spelled out, progress and log,
    # which change what is shown, not what is computed): a hit
    assert sweep(model=m, X=X.copy(), eps_grid=[1e-3, 1e-2], shift=0.0, progress=False,
                 log=None) == first
    assert len(calls) == 1
    # the chapter-4 bug of issue 27: a changed ridge grid must not serve the old sweep
    assert sweep(m, X, [1e-3, 1e-2, 1e-1]) == 36.0 and len(calls) == 2
    for change in (dict(X=2 * X), dict(shift=1.0), dict(mode="x"), dict(model=_model(2.0))):
        sweep(**{"model": m, "X": X, "eps_grid": [1e-3, 1e-2], **change})
    assert len(calls) == 6  # a miss on every argument, keyword extras and the weights


def test_cached_functions_miss_on_a_new_version_and_log_what_they_did():
    calls, lines = [], []
    old, _ = _decorated("1", calls)
    new, _ = _decorated("2", calls)
    old(None, np.ones(2), [1.0], log=lines.append)
    old(None, np.ones(2), [1.0], log=lines.append)
    new(None, np.ones(2), [1.0], log=lines.append)
    assert len(calls) == 2 and new.cache_version == "2" and new.__name__ == "sweep"
    assert ["computed" in lines[0], "reused" in lines[1], "computed" in lines[2]] == [True] * 3


def test_cached_functions_refuse_unkeyable_arguments_before_any_work():
    sweep, calls = _decorated()
    with pytest.raises(TypeError, match="cannot key"):
        sweep(None, np.ones(2), [1.0], rng=np.random.default_rng(0))
    assert not calls


def test_a_model_is_keyed_by_its_own_fingerprint():
    m = _model()
    assert m.cache_fingerprint() == cache.fingerprint(m)
    assert cache.cache_key("x", "1", model=m) != cache.cache_key("x", "1", model=_model(2.0))


def test_min_values_lets_small_calls_past_the_cache(tmp_cache):
    """Arrays with fewer elements than min_values in all: computed every time, nothing stored;
    from that size on (numpy and torch alike), stored once and reused."""
    calls = []

    @cache.cached("1", name="big", min_values=6)
    def total(x, y=None):
        calls.append(1)
        return float(x.sum()) + (0.0 if y is None else float(y.sum()))

    small = np.ones(5)
    assert total(small) == total(small) == 5.0 and len(calls) == 2
    assert not (tmp_cache / "big").exists()
    assert total(small, torch.ones(1)) == total(small, torch.ones(1)) == 6.0  # 5 + 1 elements
    assert len(calls) == 3 and len(list((tmp_cache / "big").glob("*.pkl"))) == 1


# --- a cache that never loses or corrupts a result (issue 28) -------------------------------

def _entry(tmp_cache, name="pairs"):
    (entry,) = (tmp_cache / name).glob("*.pkl")
    return entry


def test_two_hundred_byte_flips_are_each_detected_and_recomputed(tmp_cache):
    """Every flipped byte of an entry (header, key, checksum or payload) is a miss: the value
    comes back right, recomputed, with no exception, and the repaired entry is stored again."""
    value = {"noise": np.arange(64, dtype=np.float32).reshape(4, 16), "name": "pairs", "k": 20}
    calls = []

    def work():
        calls.append(1)
        return value

    cache.lookup("pairs", "1", work, t=1)
    entry = _entry(tmp_cache)
    good = entry.read_bytes()
    rng = np.random.default_rng(0)
    for i in range(200):
        flipped = bytearray(good)
        at = int(rng.integers(len(good)))
        flipped[at] ^= int(rng.integers(1, 256))
        entry.write_bytes(bytes(flipped))
        got = cache.lookup("pairs", "1", work, t=1)
        assert got["name"] == "pairs" and np.array_equal(got["noise"], value["noise"]), at
        assert len(calls) == i + 2, f"a flip at byte {at} of {len(good)} was served"
        assert entry.read_bytes() == good  # recomputed and stored again
    entry.write_bytes(good[:len(good) // 2])  # a truncated write: a miss too
    cache.lookup("pairs", "1", work, t=1)
    assert len(calls) == 202


def test_an_entry_of_another_key_or_a_foreign_pickle_is_a_miss(tmp_cache):
    work = Counter()
    cache.lookup("pairs", "1", work, t=1)
    entry = _entry(tmp_cache)
    entry.write_bytes(pickle.dumps({"value": "someone else's"}))  # a valid pickle, no header
    assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 2
    other = next(p for p in (tmp_cache / "pairs").glob("*.pkl"))
    cache.lookup("pairs", "1", work, t=2)  # another key's entry copied over this one
    (second,) = [p for p in (tmp_cache / "pairs").glob("*.pkl") if p != other]
    other.write_bytes(second.read_bytes())
    assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 4 and work.calls == 4


def test_entries_are_written_0644_and_leave_no_temporary_file(tmp_cache):
    cache.lookup("pairs", "1", Counter(), t=1)
    assert (_entry(tmp_cache).stat().st_mode & 0o777) == 0o644
    assert not list((tmp_cache / "pairs").glob("*.tmp"))


def test_a_cache_that_cannot_be_written_loses_no_result(tmp_path, monkeypatch):
    """A folder that cannot be created (LIB_CACHE_DIR below a file), one whose files cannot be
    renamed into place (as in a read-only folder; these tests may run as root, which chmod does
    not stop), and a value pickle cannot store: each call returns its result, one warning per
    folder says why, and no temporary file is left behind."""
    import warnings

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(blocker / "cache"))
    work = Counter()
    with pytest.warns(RuntimeWarning, match="could not store a result"):
        assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same folder again: no second warning
        assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 2  # no cache: computed

    folder = tmp_path / "read-only"
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(folder))

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(cache.os, "replace", refuse)
    with pytest.warns(RuntimeWarning, match="PermissionError"):
        assert cache.lookup("pairs", "1", work, t=1)["value"][1] == 3
    assert not [p for p in folder.rglob("*") if p.is_file()]  # no entry and no .tmp
    monkeypatch.undo()

    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "third"))
    with pytest.warns(RuntimeWarning, match="pickle|lambda|Can't"):
        assert cache.lookup("fns", "1", lambda: (lambda x: x))(3) == 3  # unpicklable
    assert not [p for p in (tmp_path / "third").rglob("*") if p.is_file()]


def test_keys_keep_the_types_of_dictionary_keys():
    x = np.ones(3)
    assert cache.cache_key("x", "1", a={1: x}) != cache.cache_key("x", "1", a={"1": x})
    assert cache.cache_key("x", "1", a={1: x}) != cache.cache_key("x", "1", a={1.0: x})
    assert cache.cache_key("x", "1", a={True: x}) != cache.cache_key("x", "1", a={1: x})
    assert cache.cache_key("x", "1", a={"b": 1, "a": 2}) == cache.cache_key("x", "1", a={"a": 2, "b": 1})


def test_concurrent_writers_of_one_key_all_get_the_value(tmp_cache):
    from concurrent.futures import ThreadPoolExecutor

    def work():
        return {"value": np.arange(100_000)}

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.lookup("pairs", "1", work, t=1), range(16)))
    assert all(np.array_equal(g["value"], np.arange(100_000)) for g in got)
    assert cache.lookup("pairs", "1", lambda: pytest.fail("a hit"), t=1)["value"][-1] == 99_999
    assert not list((tmp_cache / "pairs").glob("*.tmp"))
