"""Property-based tests (the ``hypothesis`` library; settings in conftest.py: derandomized, no
database): for the public functions that take a caller's arrays, numbers and timesteps, any bad
value of the classes issue 28 lists (None, text, bools, complex, object or bool arrays, NaN and
inf, empty batches, fractional timesteps) raises ``ValueError`` or ``TypeError`` whose message
names the argument, and any valid value gives a finite result of the documented shape."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lib import checks
from lib.metrics import pearson
from lib.models import GaussianModel
from lib.noise import slerp
from lib.schedule import forward_noise
from lib.whitening import covariance, whitening_matrix

SHAPE = (2, 3, 4, 4)

#: values that are no real number
NOT_NUMBERS = st.one_of(st.none(), st.text(max_size=6), st.booleans(), st.complex_numbers(),
                        st.lists(st.floats(), max_size=3), st.binary(max_size=4))


def _bad_arrays(shape=SHAPE):
    """Arrays and stand-ins that no function should accept for an array of samples."""
    finite = st.floats(-10, 10, width=32)
    with_nan = hnp.arrays(np.float32, shape, elements=finite).map(
        lambda a: np.where(np.arange(a.size).reshape(shape) == 0, np.nan, a))
    return st.one_of(
        st.none(), st.text(max_size=5), st.just({"a": 1}),
        hnp.arrays(np.complex64, shape, elements=st.complex_numbers(max_magnitude=5, width=64)),
        hnp.arrays(np.bool_, shape), st.just(np.array([object()] * 4)),
        with_nan, with_nan.map(lambda a: np.where(np.isnan(a), np.inf, a)),
        st.just(np.zeros((0, *shape[1:]), np.float32)))


def _raises_naming(fn, name):
    with pytest.raises((ValueError, TypeError)) as err:
        fn()
    assert name in str(err.value), f"the message does not name {name!r}: {err.value}"


@given(NOT_NUMBERS)
def test_numbers_and_fractions_refuse_what_is_no_number(value):
    _raises_naming(lambda: checks.number(value, "scale"), "scale")
    _raises_naming(lambda: checks.fraction(value, "strength"), "strength")


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
       st.floats(0.001, 1.0))
def test_numbers_and_fractions_pass_real_values_through(x, f):
    assert checks.number(x, "x") == x and checks.number(np.float32(f), "x") == np.float32(f)
    assert checks.fraction(f, "f") == f


@given(st.one_of(st.integers(-5, -1), st.integers(1000, 10**6),
                 st.floats(0, 999).filter(lambda v: v != int(v)), st.booleans(), st.text(max_size=4),
                 st.none()))
def test_timesteps_are_integers_within_the_schedule(t):
    _raises_naming(lambda: checks.timestep(t, "t"), "t")


@given(st.integers(0, 999))
def test_every_integer_timestep_of_the_schedule_passes(t):
    assert checks.timestep(t, "t") == t == checks.timestep(np.int64(t), "t")
    assert checks.timestep(torch.tensor(t), "t") == t


@given(_bad_arrays())
def test_forward_noise_names_its_bad_argument(bad):
    good = np.zeros(SHAPE, np.float32)
    _raises_naming(lambda: forward_noise(bad, good, 500), "z0")
    _raises_naming(lambda: forward_noise(good, bad, 500), "eps")


@given(hnp.arrays(np.float32, SHAPE, elements=st.floats(-3, 3, width=32)), st.integers(0, 999))
def test_forward_noise_of_finite_values_is_finite(z0, t):
    out = forward_noise(z0, np.ones(SHAPE, np.float32), t)
    assert out.shape == SHAPE and torch.isfinite(out).all()


@given(_bad_arrays())
def test_pearson_and_slerp_name_their_bad_argument(bad):
    good = np.ones(SHAPE, np.float32)
    _raises_naming(lambda: pearson(bad, good), "a")
    _raises_naming(lambda: pearson(good, bad), "b")
    _raises_naming(lambda: slerp(bad, good, 0.5), "z")
    _raises_naming(lambda: slerp(good, bad, 0.5), "eps")


@given(hnp.arrays(np.float64, SHAPE, elements=st.floats(-1, 1)),
       hnp.arrays(np.float64, SHAPE, elements=st.floats(-1, 1)))
def test_pearson_lies_in_minus_one_to_one(a, b):
    r = pearson(a, b)
    assert r.shape == (2,) and np.all(np.abs(r) <= 1 + 1e-12)


@given(_bad_arrays((6, 4)))
def test_covariance_names_its_bad_argument(bad):
    _raises_naming(lambda: covariance(bad), "X")


@given(hnp.arrays(np.float64, (12, 4), elements=st.floats(-5, 5)), st.floats(0.01, 1.0))
def test_covariance_and_whitening_of_finite_samples(X, eps):
    S = covariance(X)
    assert S.shape == (4, 4) and np.allclose(S, S.T) and np.isfinite(S).all()
    W = whitening_matrix(S, "zca", eps)
    assert W.shape == (4, 4) and np.isfinite(W).all()


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((48, 48)) / 7
    return GaussianModel(np.zeros(48), A @ A.T + 0.05 * np.eye(48), (3, 4, 4))


def test_a_models_eps_names_its_bad_argument(gaussian):
    @given(_bad_arrays((2, 3, 4, 4)), st.one_of(st.floats(0.5, 998.5).filter(lambda v: v != int(v)),
                                                  st.text(max_size=3), st.booleans()))
    def check(bad_x, bad_t):
        _raises_naming(lambda: gaussian.eps(bad_x, 500), "x_t")
        _raises_naming(lambda: gaussian.eps(torch.zeros(2, 3, 4, 4), bad_t), "t")

    check()


BAD_COUNTS = st.one_of(st.integers(-3, 0), st.floats(0.5, 3.5).filter(lambda v: v != int(v)),
                       st.none(), st.text(max_size=2), st.booleans())


def test_batch_sizes_are_positive_integers_everywhere(gaussian):
    from lib.editing import class_errors, edit_sweep
    from lib.fixed_point import fixed_point_pairs
    from lib.quality import eps_mse_by_band
    from lib.sampling import ddim_inversion_pairs, decode_batched, encode_batched

    z = torch.zeros(2, 3, 4, 4)
    calls = {
        "class_errors": lambda b: class_errors(gaussian, z, [None], batch_size=b),
        "edit_sweep": lambda b: edit_sweep(gaussian, z, [0.5], batch_size=b, progress=False),
        "fixed_point_pairs": lambda b: fixed_point_pairs(gaussian, z, 500, 2, batch_size=b),
        "eps_mse_by_band": lambda b: eps_mse_by_band(gaussian, z, batch_size=b),
        "ddim_inversion_pairs": lambda b: ddim_inversion_pairs(gaussian, z, 5, batch_size=b),
        "encode_batched": lambda b: encode_batched(gaussian, z, batch_size=b),
        "decode_batched": lambda b: decode_batched(gaussian, z, batch_size=b),
    }

    @given(BAD_COUNTS)
    def check(bad):
        for name, call in calls.items():
            _raises_naming(lambda: call(bad), "batch_size")

    check()


def test_nan_guidance_and_a_zero_budget_are_refused_before_any_work(gaussian):
    from lib.fixed_point import fixed_point_noise
    from lib.sampling import ddim_invert, ddim_sample

    from lib.models import network_use

    before = network_use()
    z = torch.zeros(2, 3, 4, 4)
    for bad in (float("nan"), float("inf"), "7.5", True):
        _raises_naming(lambda: ddim_sample(gaussian, z, 5, None, bad), "guidance_scale")
        _raises_naming(lambda: ddim_invert(gaussian, z, 5, None, bad), "guidance_scale")
        _raises_naming(lambda: fixed_point_noise(gaussian, z, 500, 3, guidance_scale=bad),
                       "guidance_scale")
        _raises_naming(lambda: gaussian.eps(z, 500, None, bad), "guidance_scale")
    for bad in (0, -1, 2.5):
        _raises_naming(lambda: fixed_point_noise(gaussian, z, 500, 3, max_evaluations=bad),
                       "max_evaluations")
    assert network_use() == before  # refused before the first network evaluation


@given(hnp.arrays(np.float64, (3, 4, 4), elements=st.floats(-1, 1)))
def test_to_uint8_refuses_nan_and_maps_the_range(image):
    from lib.plotting import to_uint8

    out = to_uint8(image)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(float) - (image.transpose(1, 2, 0) + 1) * 127.5).max() <= 0.5 + 1e-9
    bad = image.copy()
    bad[0, 0, 0] = np.nan
    _raises_naming(lambda: to_uint8(bad), "image")


def test_ddim_step_whiteness_and_the_gaussian_model_name_their_arguments(gaussian):
    from lib.sampling import ddim_step
    from lib.whitening import whiteness_error

    z = torch.zeros(2, 3, 4, 4)
    _raises_naming(lambda: ddim_step(gaussian, z, 500, 480, torch.zeros(1, 3, 4, 4)), "eps_hat")
    _raises_naming(lambda: ddim_step(gaussian, z, 500, 480, torch.full_like(z, float("nan"))),
                   "eps_hat")
    _raises_naming(lambda: ddim_step(gaussian, z, 5000, 480, z), "t")
    assert torch.equal(ddim_step(gaussian, z, 500, 480, z), z)  # zero stays zero
    _raises_naming(lambda: whiteness_error(np.full((5, 3), np.nan)), "Z")
    for bad_mean, bad_cov in ((np.full(12, np.nan), np.eye(12)), (np.zeros(12), np.full((12, 12), np.inf)),
                              (None, np.eye(12))):
        name = "mean" if bad_mean is None or np.isnan(bad_mean).any() else "cov"
        _raises_naming(lambda: GaussianModel(bad_mean, bad_cov, (3, 2, 2)), name)


def test_devices_dtypes_and_image_files_are_checked_by_name(tmp_path):
    from PIL import Image

    from lib.data import load_image_folder
    from lib.models import load_model

    for bad in ("bogus", 3.5, object()):
        _raises_naming(lambda: load_model("tiny-a", device=bad), "device")
    for bad in ("float8", "int64", torch.int64, 16):
        _raises_naming(lambda: load_model("tiny-a", dtype=bad), "dtype")
    assert load_model("tiny-a", dtype="float64").dtype == torch.float64
    # a 16-bit PNG is scaled to [-1, 1], not saturated to white
    ramp = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    got = load_image_folder(tmp_path, 16)[0]
    assert got.min() == pytest.approx(-1, abs=0.02) and got.max() == pytest.approx(1, abs=0.02)
    assert 0.3 < (got > 0).mean() < 0.7  # half the ramp lies above mid-grey
    # a truncated JPEG names its file
    Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 90).save(tmp_path / "cut.jpg")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 3])
    (tmp_path / "ramp16.png").unlink()
    _raises_naming(lambda: load_image_folder(tmp_path, 16), "cut.jpg")
