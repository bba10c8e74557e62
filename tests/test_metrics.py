import numpy as np
import pytest

from lib.metrics import paired_distance, pearson, ring_average, similarity, standardize
from lib.whitening import cross_correlation, radial_profile


def test_standardize_gives_pearson_along_either_axis():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    y[:, 0] = 3 * x[:, 0] - 2  # an exact linear relation: r = 1
    along0 = (standardize(x, 0) * standardize(y, 0)).sum(0)
    along1 = (standardize(x, 1) * standardize(y, 1)).sum(1)
    assert np.allclose(along0, [np.corrcoef(x[:, j], y[:, j])[0, 1] for j in range(7)])
    assert np.allclose(along1, [np.corrcoef(x[i], y[i])[0, 1] for i in range(50)])
    assert along0[0] == pytest.approx(1.0)
    assert np.allclose(cross_correlation(x, y), along0)  # whitening's per-dimension Pearson
    assert np.all(standardize(np.ones((4, 3)), 0) == 0)  # a constant stays zero, no NaN


def test_ring_average_known_answers():
    # values equal to the rounded radius average to the radius itself on every ring
    dy = dx = np.arange(-3, 4)
    r = np.rint(np.hypot(*np.meshgrid(dy, dx, indexing="ij")))
    radii, mean = ring_average(r, dy, dx)
    assert np.array_equal(radii, np.unique(r)) and np.allclose(mean, radii)
    # counts turn sums into means: ring 0 holds one cell (sum 6 over count 3), ring 1 four cells
    sums, counts = np.zeros((3, 3)), np.ones((3, 3))
    sums[1, 1], counts[1, 1] = 6.0, 3.0
    sums[0, 1] = sums[1, 0] = sums[1, 2] = sums[2, 1] = 2.0
    radii, mean = ring_average(sums, [-1, 0, 1], [-1, 0, 1], counts=counts)
    assert list(radii) == [0, 1] and np.allclose(mean, [2.0, 1.0])  # corners round to radius 1
    # an off-centre origin, as whitening.radial_profile uses it
    radii, mean = radial_profile(np.arange(25.0).reshape(5, 5), (0, 0))
    assert radii[0] == 0 and mean[0] == 0.0
    with pytest.raises(ValueError, match="values must be"):
        ring_average(np.zeros((3, 3)), [0, 1], [0, 1, 2])


def test_paired_distance():
    a = np.random.default_rng(0).standard_normal((10, 3, 4, 4))
    paired, shifted = paired_distance(a, a + 0.1)
    assert paired == pytest.approx(0.1) and shifted == pytest.approx(np.sqrt(2 + 0.01), rel=0.15)
    with pytest.raises(ValueError, match="same shape"):
        paired_distance(a, a[:5])


def test_pearson_known_answers():

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3, 16, 16))
    b = rng.standard_normal((3, 3, 16, 16))
    assert np.allclose(pearson(a, 2 * a + 1), 1.0) and np.allclose(pearson(a, -a), -1.0)
    assert np.all(np.abs(pearson(a, b)) < 4 / np.sqrt(a[0].size))  # independent: ~ N(0, 1/D)
    mixed = pearson(a, a + b)  # corr(a, a + b) = 1 / sqrt(2) for equal variances
    assert np.allclose(mixed, 2 ** -0.5, atol=0.08)
    with pytest.raises(ValueError, match="shape"):
        pearson(a, b[:2])


def test_similarity_known_answers():

    rng = np.random.default_rng(0)
    a = rng.uniform(-0.8, 0.8, size=(3, 3, 16, 16))
    same = similarity(a, a)
    assert np.isinf(same.psnr).all() and np.allclose(same.ssim, 1) and np.allclose(same.pearson, 1)
    shifted = similarity(a, a + 0.1)  # MSE 0.01 on a range of 2: 10 log10(4 / 0.01)
    assert np.allclose(shifted.psnr, 10 * np.log10(400))
    assert np.allclose(shifted.pearson, 1)
    assert (shifted.ssim < 1).all()
    noisy = similarity(a, a + rng.normal(0, 0.3, a.shape))
    noisier = similarity(a, a + rng.normal(0, 0.6, a.shape))
    assert (noisy.ssim > noisier.ssim).all() and (noisy.psnr > noisier.psnr).all()
    # symmetric, and out-of-range values are clipped to the images' range first
    assert np.allclose(similarity(a, -a).ssim, similarity(-a, a).ssim)
    assert np.allclose(similarity(a, np.clip(a * 5, -1, 1)).psnr, similarity(a, a * 5).psnr)
    assert similarity(a[:, :, :5, :5], a[:, :, :5, :5] + 0.1).ssim.shape == (3,)  # small images
    m = shifted.mean()
    assert set(m) == {"psnr", "ssim", "pearson"} and np.isclose(m["psnr"], 10 * np.log10(400))
    with pytest.raises(ValueError, match="differ"):
        similarity(a, a[:2])


def test_variation_scores_known_answers():
    from lib.metrics import variation_scores

    rng = np.random.default_rng(0)
    targets = np.repeat(rng.uniform(-1, 1, (2, 3, 8, 8)), 3, axis=0)  # 2 targets x 3 variations
    exact = targets.copy()
    noisy = targets + rng.normal(0, 0.2, targets.shape)
    sc = variation_scores({"exact": exact, "noisy": noisy}, targets, 2)
    assert sc.to_target["exact"]["ssim"] == pytest.approx(1.0)
    assert np.isinf(similarity(exact, targets).psnr).all() and sc.to_target["noisy"]["ssim"] < 0.99
    assert sc.per_target_ssim["noisy"].shape == (2,)
    assert np.allclose(sc.per_target_ssim["noisy"],
                       similarity(noisy, targets).ssim.reshape(2, 3).mean(1))
    # between models: the one pair's mean similarity to each other
    assert sc.between_models["pearson"] == pytest.approx(similarity(exact, noisy).pearson.mean())
    alone = variation_scores({"exact": exact}, targets, 2)
    assert np.isnan(alone.between_models["ssim"])
    with pytest.raises(ValueError, match="split into 4 targets"):
        variation_scores({"exact": exact}, targets, 4)


def test_improvement_known_answers():
    from lib.metrics import improvement

    a, b = np.arange(1.0, 9.0), np.arange(1.0, 9.0) - 0.5  # a higher on all 8 pairs
    imp = improvement(a, b)
    assert (imp.mean_a, imp.mean_b, imp.n_higher, imp.n) == (4.5, 4.0, 8, 8)
    assert imp.p_value == pytest.approx(1 / 2 ** 8)  # exact signed-rank test: all signs positive
    assert improvement(b, a).p_value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        improvement(a, b[:3])


def test_pearson_does_not_depend_on_the_scale_of_the_images():
    """Standardizing divides by the norm; for values near 1e-180 its squares underflow to 0 and
    for 1e180 overflow, which made Pearson's r 1e91 (found by a property test)."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    r = pearson(a, b)
    for scale in (1e-180, 1e-120, 1e120, 1e180):
        np.testing.assert_allclose(pearson(a * scale, b), r, rtol=1e-12)
        np.testing.assert_allclose(pearson(a, b * scale), r, rtol=1e-12)
