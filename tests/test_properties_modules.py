"""Property-based tests, one per public module (the ``hypothesis`` library; settings in
conftest.py): every argument of the module's public functions, replaced by any bad value of its
kind (the classes of issue 28: None, text, bools, complex, NaN and inf, non-integer or negative
counts, empty, object, complex and bool arrays, unknown choices), raises ``ValueError`` or
``TypeError`` whose message names the argument; and valid values drawn at random give finite
results of the documented shape.

Each module's table lists a valid call and, per argument, the strategy of its bad values. The
valid call is made first, so a table that no longer fits its function fails loudly instead of
passing on the first error it meets.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lib import (annealing, correlation, data, fixed_point, hypothesis as hyp, linear_map,
                 metrics, models, noise, plotting, prose, quality, sampling, schedule, whitening)

SHAPE = (4, 3, 4, 4)
RNG = np.random.default_rng(0)
X4 = RNG.uniform(-1, 1, SHAPE).astype(np.float32)
X2 = RNG.standard_normal((40, 5))
Z2 = X2 @ RNG.standard_normal((5, 5)) + 0.1 * RNG.standard_normal((40, 5))
COV = whitening.covariance(X2)
EIG = whitening.covariance_eigh(COV)
ABAR = schedule.sd_alphas_cumprod()


def arrays(shape=SHAPE, *, none: bool = True):
    """What no function takes for an array of shape ``shape``: None (unless ``none`` is
    False: None is a default), text, a dict, complex, bool and object arrays, an array holding
    NaN or inf, and an empty batch."""
    finite = hnp.arrays(np.float64, shape, elements=st.floats(-3, 3))
    first = np.arange(int(np.prod(shape))).reshape(shape) == 0
    return st.one_of(
        st.none() if none else st.nothing(), st.text(max_size=4), st.just({"a": 1}),
        hnp.arrays(np.complex128, shape, elements=st.complex_numbers(max_magnitude=3)),
        hnp.arrays(np.bool_, shape), st.just(np.array([object()] * 3)),
        finite.map(lambda a: np.where(first, np.nan, a)),
        finite.map(lambda a: np.where(first, -np.inf, a)),
        st.just(np.zeros((0, *shape[1:]))))


#: no real number: None, text, bools, complex numbers, NaN, inf, a list, a dict
NOT_NUMBERS = st.one_of(st.none(), st.text(max_size=4), st.booleans(), st.complex_numbers(),
                        st.sampled_from([float("nan"), float("inf"), -float("inf")]),
                        st.lists(st.floats(0, 1), min_size=1, max_size=2), st.just({}))
#: no count: zero or negative, a fraction, and the values of NOT_NUMBERS
NOT_COUNTS = st.one_of(st.integers(-5, 0), st.floats(0.1, 9.9).filter(lambda v: v != int(v)),
                       NOT_NUMBERS)
#: no seed: negative, a fraction, text, bools, None is no seed where one is needed
NOT_SEEDS = st.one_of(st.integers(-9, -1), st.floats(0.1, 9.9).filter(lambda v: v != int(v)),
                      st.text(max_size=3), st.booleans(), st.complex_numbers())
#: no fraction of (0, 1]: outside it, and the values of NOT_NUMBERS
NOT_FRACTIONS = st.one_of(st.floats(1.001, 1e6), st.floats(-1e6, 0.0), NOT_NUMBERS)
#: no flag: numbers, text, None
NOT_FLAGS = st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.none())
#: no list of values: None, a bare number, text, a dict, a 2-D array
NOT_LISTS = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
                      st.just({}), st.just(np.ones((2, 2))))


def not_one_of(choices):
    """Values that are none of the strings ``choices``."""
    return st.one_of(st.text(max_size=6).filter(lambda s: s not in choices), st.none(),
                     st.integers(), st.just(np.array(list(choices))), st.just(list(choices)))


def non_negative(strategy):
    """Negative numbers and NaN where a non-negative number is wanted, with ``strategy``."""
    return st.one_of(st.floats(-1e6, -1e-9), st.just(float("nan")), strategy)


def _raises_naming(call, name):
    with pytest.raises((ValueError, TypeError)) as err:
        call()
    assert name in str(err.value), f"the message does not name {name!r}: {err.value}"


def check_arguments(function, valid: dict, bad: dict, *, names: dict | None = None):
    """``function(**valid)`` works; with any argument of ``bad`` replaced by one of its bad
    values it raises an error naming the argument (or ``names[argument]``)."""
    function(**valid)

    @given(st.data())
    def run(draw):
        argument = draw.draw(st.sampled_from(sorted(bad)), label="argument")
        value = draw.draw(bad[argument], label="value")
        _raises_naming(lambda: function(**{**valid, argument: value}),
                       (names or {}).get(argument, argument))

    run()


def finite(x) -> bool:
    return bool(np.isfinite(np.asarray(torch.as_tensor(x) if torch.is_tensor(x) else x,
                                       dtype=np.float64)).all())


# ---------------------------------------------------------------------------------- annealing
def test_annealing_names_its_bad_arguments():
    check_arguments(annealing.anneal_loss, dict(z=X4, target=X4[:1], loss="forward",
                                                dewhiten=np.eye(48)),
                    dict(z=arrays(), target=arrays(), loss=not_one_of(annealing.LOSSES),
                         dewhiten=arrays((48, 48))))
    check_arguments(annealing.dewhitening, dict(source=np.eye(48), mean=np.zeros(48)),
                    dict(source=arrays((48, 48)), mean=arrays((48,), none=False)))
    check_arguments(annealing.anneal,
                    dict(target=X4[:2], loss="forward", dewhiten=np.eye(48), n_iters=2,
                         t_init=1e-3, t_final=0.0, alpha=0.9, n_chains=2, record_at=(1,),
                         init=np.zeros((2, 2, 3, 4, 4))),
                    dict(target=arrays(), loss=not_one_of(annealing.LOSSES), n_iters=NOT_COUNTS,
                         t_init=non_negative(NOT_NUMBERS), t_final=non_negative(NOT_NUMBERS),
                         alpha=st.one_of(st.floats(1.001, 9), st.floats(-9, -0.001), NOT_NUMBERS),
                         n_chains=NOT_COUNTS, record_at=st.one_of(NOT_LISTS.filter(
                             lambda v: not isinstance(v, np.ndarray)), st.just([1, 99])),
                         init=arrays((2, 2, 3, 4, 4))))


@given(hnp.arrays(np.float64, SHAPE, elements=st.floats(-3, 3)),
       hnp.arrays(np.float64, (1, *SHAPE[1:]), elements=st.floats(-1, 1)),
       st.sampled_from(annealing.LOSSES))
def test_annealing_losses_of_finite_values_are_finite_and_non_negative(z, target, loss):
    out = annealing.anneal_loss(z, target, loss, np.eye(48) * 0.5)
    assert out.shape == (SHAPE[0],) and finite(out) and (out >= 0).all()


# -------------------------------------------------------------------------------- correlation
def test_correlation_names_its_bad_arguments():
    check_arguments(correlation.pairing_stats, dict(noises=X4, images=X4 + 1, n_perm=5, generator=0),
                    dict(noises=arrays(), images=arrays(), n_perm=NOT_COUNTS, generator=NOT_SEEDS))
    check_arguments(correlation.pixel_cross_correlation, dict(noises=X4, images=X4 + 1),
                    dict(noises=arrays(), images=arrays()))
    check_arguments(correlation.progressive_averages, dict(x=X4, counts=[1, 2]),
                    dict(x=arrays(), counts=st.one_of(NOT_LISTS, st.just([0]), st.just([1.5]),
                                                      st.just([]), st.just(["1"]))))


@given(hnp.arrays(np.float64, SHAPE, elements=st.floats(-3, 3)),
       hnp.arrays(np.float64, SHAPE, elements=st.floats(-3, 3)))
def test_cross_correlations_lie_in_minus_one_to_one(noises, images):
    C = correlation.pixel_cross_correlation(noises, images)
    assert C.shape == (16, 16) and finite(C) and np.abs(C).max() <= 1 + 1e-9


# ---------------------------------------------------------------------------------- linear_map
def test_linear_map_names_its_bad_arguments():
    check_arguments(linear_map.fit_linear_map, dict(X=X2, Z=Z2, center=True, ridge=0.1),
                    dict(X=arrays((40, 5)), Z=arrays((40, 5)), center=NOT_FLAGS,
                         ridge=non_negative(NOT_NUMBERS)))
    check_arguments(linear_map.eigen_gains,
                    dict(X=X2, Z=Z2, eig=EIG, n_boot=3, level=0.9, k=2, generator=0),
                    dict(X=arrays((40, 5)), Z=arrays((40, 5)),
                         eig=st.one_of(NOT_LISTS, st.just((EIG[0][:3], EIG[1])),
                                       st.just((np.full(5, np.nan), EIG[1]))),
                         n_boot=st.one_of(st.integers(-5, -1), NOT_NUMBERS),
                         level=NOT_FRACTIONS, k=st.one_of(st.integers(6, 99), NOT_COUNTS.filter(lambda v: v is not None)),
                         generator=NOT_SEEDS))
    check_arguments(linear_map.compare_maps,
                    dict(X=X2, Z=Z2, X_test=X2[:10], Z_test=Z2[:10], maps={"zca": np.eye(5)}),
                    dict(X_test=st.one_of(st.none(), st.just(X2[:10, :3]), arrays((10, 5))),
                         Z_test=st.one_of(st.none(), st.just(Z2[:9]), arrays((10, 5)))))
    check_arguments(linear_map.fit_linear_map_ridge_cv,
                    dict(X=X2, Z=Z2, ridges=[0.1, 1.0], val_fraction=0.2),
                    dict(ridges=st.one_of(NOT_LISTS.filter(lambda v: v is not None),
                                          st.just([]), st.just([-1.0]), st.just(["1"])),
                         val_fraction=st.one_of(st.just(1.0), NOT_FRACTIONS)))
    check_arguments(linear_map.cluster_weights,
                    dict(clusters=np.arange(40) % 4, n_boot=3, generator=0),
                    dict(clusters=st.one_of(st.none(), st.text(max_size=3), st.just(np.zeros(5)),
                                            st.just(np.array([np.nan, 1.0])),
                                            st.just(np.array([object()] * 4))),
                         n_boot=NOT_COUNTS, generator=NOT_SEEDS))
    check_arguments(linear_map.direction_bins, dict(lam=np.geomspace(1, 1e3, 20), min_directions=5),
                    dict(lam=st.one_of(arrays((20,)), st.just(-np.ones(4)), st.just(np.zeros(3))),
                         min_directions=NOT_COUNTS))


@given(hnp.arrays(np.float64, (40, 5), elements=st.floats(-3, 3)).filter(
    lambda X: np.linalg.matrix_rank(X - X.mean(0)) == 5), st.floats(0, 10))
def test_a_fitted_linear_map_is_finite_and_exact_on_exact_pairs(X, ridge):
    A = np.arange(25.0).reshape(5, 5) / 25 + np.eye(5)
    W = linear_map.fit_linear_map(X, X @ A.T, ridge=ridge)
    assert W.shape == (5, 5) and finite(W)
    if ridge == 0:
        np.testing.assert_allclose(W, A, atol=1e-6)


# ---------------------------------------------------------------------------------------- data
def test_data_names_its_bad_arguments():
    image = RNG.uniform(-1, 1, (3, 8, 8))
    check_arguments(data.square_resized, dict(image=image, size=4),
                    dict(image=st.one_of(arrays((3, 8, 8)), st.just(image.transpose(1, 2, 0)),
                                         st.just(image[0])),
                         size=NOT_COUNTS))
    check_arguments(data.photo_crops, dict(n=2, size=16, split="train", seed=0),
                    dict(n=NOT_COUNTS, split=not_one_of(data.SPLITS), seed=NOT_SEEDS))
    check_arguments(data.region_crops, dict(n=2, size=16, split="train", seed=0),
                    dict(n=NOT_COUNTS, split=not_one_of(data.SPLITS), seed=NOT_SEEDS))
    check_arguments(data.with_content, dict(images=RNG.uniform(-1, 1, (4, 3, 8, 8)), k=2),
                    dict(images=arrays((4, 3, 8, 8)), k=NOT_COUNTS,
                         min_std=st.one_of(st.floats(-9, -0.01), NOT_NUMBERS)))


@given(hnp.arrays(np.float64, (3, 9, 13), elements=st.floats(-1, 1)), st.integers(2, 20))
def test_square_resized_keeps_the_range_and_gives_the_size(image, size):
    out = data.square_resized(image, size)
    assert out.shape == (3, size, size) and finite(out) and np.abs(out).max() <= 1


# -------------------------------------------------------------------------------- fixed_point
def test_fixed_point_closed_forms_name_their_bad_arguments():
    check_arguments(fixed_point.gaussian_picard_gain, dict(lam=np.ones(3), abar=0.5, iters=3,
                                                           relaxation=0.5),
                    dict(lam=st.one_of(arrays((3,)), st.just(np.zeros(3)), st.just(-np.ones(3))),
                         abar=st.one_of(st.just(1.0), NOT_FRACTIONS),
                         iters=st.one_of(st.integers(-5, -1), st.floats(0.1, 0.9), st.text(max_size=2)),
                         relaxation=NOT_FRACTIONS))


@given(hnp.arrays(np.float64, (7,), elements=st.floats(1e-4, 1e4)), st.floats(0.01, 0.99),
       st.integers(0, 200))
def test_picard_gains_are_finite_and_approach_the_fixed_point(lam, abar, iters):
    g = fixed_point.gaussian_picard_gain(lam, abar, iters)
    exact = fixed_point.gaussian_picard_gain(lam, abar, None)
    assert g.shape == lam.shape and finite(g) and np.all((0 <= g) & (g <= exact * (1 + 1e-12)))


# ---------------------------------------------------------------------------------- hypothesis
def test_hypothesis_names_its_bad_arguments():
    check_arguments(hyp.start_agreement, dict(from_zero=X2, from_random=Z2),
                    dict(from_zero=arrays((40, 5)), from_random=arrays((40, 5))))
    check_arguments(hyp.reference_maps, dict(eig=EIG, alphas_cumprod=ABAR, t=980, ks=[1],
                                             inversion_steps=5, eps=0.01),
                    dict(eig=st.one_of(NOT_LISTS, st.just((np.zeros(5), EIG[1]))),
                         alphas_cumprod=st.one_of(arrays((1000,)), st.just(np.ones(1000))),
                         t=st.one_of(st.integers(1000, 5000), st.floats(0.5, 998.5).filter(
                             lambda v: v != int(v)), st.text(max_size=2)),
                         inversion_steps=NOT_COUNTS, eps=non_negative(NOT_NUMBERS)),
                    names=dict(eig="eig", alphas_cumprod="alphas_cumprod",
                               inversion_steps="steps", t="t", eps="eps"))
    check_arguments(hyp.region_pairs, dict(name="a", split="train", n_fit=2, n_test=2, size=16),
                    dict(split=not_one_of(data.SPLITS), n_fit=NOT_COUNTS, n_test=NOT_COUNTS))


@given(hnp.arrays(np.float64, (12, 6), elements=st.floats(-3, 3)))
def test_start_agreement_lies_in_minus_one_to_one(A):
    r = hyp.start_agreement(A, A[::-1])
    assert -1 - 1e-9 <= r <= 1 + 1e-9 and hyp.start_agreement(A, 2 * A) <= 1 + 1e-9


# ------------------------------------------------------------------------------------- metrics
def test_metrics_names_its_bad_arguments():
    check_arguments(metrics.similarity, dict(a=X4, b=X4 + 0.1),
                    dict(a=st.one_of(arrays(), st.just(X4[..., :2, :2])), b=arrays()))
    check_arguments(metrics.paired_distance, dict(a=X4, b=X4 + 0.1), dict(a=arrays(), b=arrays()))
    check_arguments(metrics.ring_average,
                    dict(values=np.ones((3, 3)), dy=np.arange(3) - 1, dx=np.arange(3) - 1),
                    dict(values=arrays((3, 3)), dy=st.one_of(arrays((3,)), st.just(np.ones(2))),
                         dx=st.one_of(arrays((3,)), st.just(np.ones(4)))))


@given(hnp.arrays(np.float64, SHAPE, elements=st.floats(-1, 1)),
       hnp.arrays(np.float64, SHAPE, elements=st.floats(-1, 1)))
def test_similarity_scores_lie_in_their_ranges(a, b):
    s = metrics.similarity(a, b)
    assert s.ssim.shape == s.pearson.shape == (SHAPE[0],)
    assert np.all(np.abs(s.ssim) <= 1 + 1e-9) and np.all(np.abs(s.pearson) <= 1 + 1e-9)
    assert np.all(s.psnr >= 10 * np.log10(4 / 4) - 1e-9)  # the largest MSE in [-1, 1] is 4


# -------------------------------------------------------------------------------------- models
def test_models_name_their_bad_arguments():
    tiny = models.load_model("tiny-a")
    check_arguments(tiny.cond, dict(labels=["cat", 1]),
                    dict(labels=st.one_of(st.just([1.7]), st.just([-1]), st.just([99]),
                                          st.just([]), st.just([None]), st.just([True]),
                                          st.just(["sky"]))),
                    names=dict(labels="class"))
    spec = models.ModelSpec("probe", "embedded", "tiny-a")

    def register(**changes):
        import dataclasses
        return models.register(dataclasses.replace(spec, **changes), replace=True)

    try:
        check_arguments(register, {}, dict(
            name=st.one_of(st.none(), st.just(""), st.integers()),
            resolution=NOT_COUNTS, steps=NOT_COUNTS, latent_factor=NOT_COUNTS,
            spacing=not_one_of(sampling.SPACINGS), guidance=NOT_NUMBERS.filter(lambda v: v is not None),
            load=st.one_of(st.integers(), st.text(max_size=2))))
    finally:
        models.MODELS.pop("probe", None)


def test_a_model_names_its_bad_timesteps_and_labels():
    tiny = models.load_model("tiny-a")
    x = torch.zeros(2, 3, 32, 32)
    check_arguments(tiny.eps, dict(x_t=x, t=500, cond=tiny.cond(["cat", "cat"])),
                    dict(x_t=arrays((2, 3, 32, 32)),
                         t=st.one_of(st.integers(1000, 10**5), st.integers(-9, -1),
                                     st.floats(0.5, 998.5).filter(lambda v: v != int(v)),
                                     st.text(max_size=2), st.booleans())))


# --------------------------------------------------------------------------------------- noise
def test_noise_names_its_bad_arguments():
    check_arguments(noise.block_mean, dict(z=X4, factor=2),
                    dict(z=arrays(), factor=st.one_of(NOT_COUNTS, st.just(3))))
    check_arguments(noise.lowfreq_constrained, dict(seed_noise=X4[:1], factor=2, n=3),
                    dict(seed_noise=st.one_of(arrays((1, 3, 4, 4)), st.just(X4)),
                         factor=st.one_of(NOT_COUNTS, st.just(3)), n=NOT_COUNTS))
    check_arguments(noise.normality, dict(z=X4, n_ks=50, central=0.9, seed=0),
                    dict(z=arrays(), n_ks=NOT_COUNTS, central=st.one_of(st.just(1.0), NOT_FRACTIONS),
                         seed=NOT_SEEDS))


@given(hnp.arrays(np.float64, (1, 3, 8, 8), elements=st.floats(-3, 3)), st.sampled_from([1, 2, 4]),
       st.integers(1, 5))
def test_lowfreq_constrained_noises_share_the_seeds_block_means(seed_noise, factor, n):
    out = noise.lowfreq_constrained(seed_noise, factor, n, torch.Generator().manual_seed(0))
    assert out.shape == (n, 3, 8, 8) and finite(out)
    torch.testing.assert_close(noise.block_mean(out, factor),
                               noise.block_mean(torch.as_tensor(seed_noise), factor).expand(n, -1, -1, -1))


# ------------------------------------------------------------------------------------ plotting
def test_plotting_names_its_bad_arguments():
    check_arguments(plotting.image_grid, dict(images=list(X4[:2]), cols=2),
                    dict(images=st.one_of(st.none(), st.just([]), st.integers(), st.just([X4[0, 0, 0]])),
                         cols=NOT_COUNTS.filter(lambda v: v is not None)), names=dict(images="image"))
    check_arguments(plotting.png_bytes, dict(image=X4[0], upscale=2, fmt="png"),
                    dict(image=arrays((3, 4, 4)), upscale=NOT_COUNTS, fmt=not_one_of(("png", "jpeg"))))


@given(hnp.arrays(np.float64, (3, 5, 6), elements=st.floats(-1, 1)), st.integers(1, 3))
def test_png_bytes_round_trip_to_the_uint8_image(image, upscale):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(plotting.png_bytes(image, upscale=upscale))) as im:
        back = np.asarray(im)
    assert back.shape == (5 * upscale, 6 * upscale, 3)
    np.testing.assert_array_equal(back[::upscale, ::upscale], plotting.to_uint8(image))


# --------------------------------------------------------------------------------------- prose
def test_prose_names_its_bad_arguments():
    check_arguments(prose.significant, dict(x=0.123, digits=2, floor=1e-9),
                    dict(x=st.one_of(st.text(max_size=3), st.booleans(), st.none(), st.complex_numbers()),
                         digits=NOT_COUNTS, floor=st.one_of(st.floats(-9, -0.1), NOT_NUMBERS.filter(
                             lambda v: v is not None))))
    check_arguments(prose.span, dict(values=[0.1, 0.2], scale=1.0),
                    dict(values=st.one_of(st.just(["0.1"]), st.just([None]), st.just([1j])),
                         scale=NOT_NUMBERS))


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
       st.integers(1, 6))
def test_significant_keeps_the_value_to_its_digits(x, digits):
    text = prose.significant(x, digits)
    back = float(text.replace(",", ""))
    assert back == pytest.approx(x, rel=10 ** (1 - digits), abs=1e-300)


# ------------------------------------------------------------------------------------- quality
def test_quality_names_its_bad_arguments():
    check_arguments(quality.spectrum_slope, dict(images=X4),
                    dict(images=st.one_of(arrays(), st.just(X4[..., :2, :2]), st.just(np.zeros(SHAPE)))))
    check_arguments(quality.compare_stats, dict(samples=X4, reference=X4 + 0.1),
                    dict(samples=arrays(), reference=arrays(),
                         bar=st.one_of(st.just({}), st.none(), st.just(dict(quality.QUALITY_BAR,
                                                                             slope_abs_diff="x")))))
    gaussian = models.GaussianModel(np.zeros(48), np.eye(48), (3, 4, 4))
    check_arguments(lambda **kw: quality.eps_mse_by_band(gaussian, X4, **kw),
                    dict(per_band=1, bands=((0, 10),), batch_size=4),
                    dict(per_band=NOT_COUNTS, batch_size=NOT_COUNTS,
                         bands=st.one_of(st.just(()), st.just(((10, 5),)), st.just(((0, 2000),)),
                                         st.just(((0.5, 9),)), st.just(("ab",)))))


@given(hnp.arrays(np.float64, (2, 3, 8, 8), elements=st.floats(-1, 1)).filter(
    lambda a: np.ptp(a, axis=(-2, -1)).min() > 0.1))
def test_spectrum_slopes_of_varied_images_are_finite(images):
    assert np.isfinite(quality.spectrum_slope(images))


# ------------------------------------------------------------------------------------ sampling
def test_sampling_closed_forms_name_their_bad_arguments():
    for gain in (sampling.gaussian_ddim_gain, sampling.gaussian_ddim_inversion_gain):
        check_arguments(gain, dict(lam=np.ones(3), alphas_cumprod=ABAR, steps=10, spacing="leading"),
                        dict(lam=st.one_of(arrays((3,)), st.just(-np.ones(3))),
                             alphas_cumprod=st.one_of(arrays((1000,)), st.just(np.ones(1000)),
                                                      st.just(ABAR[:10])),
                             steps=st.one_of(st.just(1000), NOT_COUNTS),
                             spacing=not_one_of(sampling.SPACINGS)))


@given(hnp.arrays(np.float64, (6,), elements=st.floats(1e-3, 1e3)), st.integers(1, 60))
def test_ddim_gains_are_finite_and_positive(lam, steps):
    g, abar = sampling.gaussian_ddim_gain(lam, ABAR, steps)
    inv = sampling.gaussian_ddim_inversion_gain(lam, ABAR, steps)
    assert g.shape == inv.shape == lam.shape and finite(g) and finite(inv)
    assert (g > 0).all() and (inv > 0).all() and 0 < abar < 1


# ------------------------------------------------------------------------------------ schedule
def test_schedule_names_its_bad_arguments():
    check_arguments(schedule.noise_scales, dict(t=5, alphas_cumprod=ABAR),
                    dict(t=st.one_of(st.integers(1000, 10**4), st.floats(0.5, 9.5).filter(
                        lambda v: v != int(v)), st.text(max_size=2)),
                         alphas_cumprod=st.one_of(arrays((1000,), none=False), st.just(np.zeros(1000)),
                                                  st.just(np.ones((2, 2))))),
                    names=dict(t="timestep"))


# ----------------------------------------------------------------------------------- whitening
def test_whitening_names_its_bad_arguments():
    check_arguments(whitening.whitening_matrix, dict(cov=COV, kind="zca", eps=0.1),
                    dict(cov=st.one_of(arrays((5, 5)), st.just(np.ones((5, 4)))),
                         kind=not_one_of(whitening.KINDS), eps=non_negative(NOT_NUMBERS)))
    check_arguments(whitening.fit_whiteners, dict(X=X2, kinds=("zca", "pca"), eps=0.1),
                    dict(X=arrays((40, 5)), eps=non_negative(NOT_NUMBERS),
                         kinds=st.one_of(st.just(()), st.none(), st.just(("zca", "zac")), st.integers())))
    check_arguments(whitening.radial_profile, dict(image=np.ones((4, 4)), center=(1, 1)),
                    dict(image=arrays((4, 4)), center=st.one_of(st.none(), st.just((1,)),
                                                                st.just(("a", 1)), st.just((np.nan, 1)))))
    check_arguments(whitening.best_ridge, dict(cov_fit=COV, cov_test=COV + 0.01 * np.eye(5),
                                               eps_values=(0.1, 1.0)),
                    dict(cov_fit=arrays((5, 5)), cov_test=st.one_of(arrays((5, 5)), st.just(np.eye(4))),
                         eps_values=st.one_of(st.just(()), st.just((-1.0,)), st.just(("0.5",)),
                                              st.just("0.5"), st.none())))


@given(hnp.arrays(np.float64, (30, 4), elements=st.floats(-5, 5)).filter(
    lambda X: np.linalg.eigvalsh(np.cov(X.T)).min() > 1e-3), st.sampled_from(whitening.KINDS))
def test_every_whitening_whitens_its_own_samples(X, kind):
    w = whitening.Whitener(kind).fit(X)
    Z = w.transform(X)
    assert Z.shape == X.shape and finite(Z)
    np.testing.assert_allclose(np.cov(Z.T), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(w.inverse_transform(Z), X, atol=1e-8)
