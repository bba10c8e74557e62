import numpy as np
import pytest

from lib.linear_map import eigen_gains, fit_linear_map, linear_fit_metrics
from lib.whitening import KINDS, Whitener, covariance, whitening_matrix


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _planted(gain_of_lam, *, N=500, D=256, sigma=0.5, offdiag=0.0, seed=0):
    """Pairs Z = X W^T + sigma eps with W = U (diag(g) + offdiag E) U^T, X ~ N(0, Sigma)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.geomspace(100.0, 1e-2, D)
    g = gain_of_lam(lam)
    M = np.diag(g)
    if offdiag:
        E = rng.standard_normal((D, D)) * np.median(g[:64]) * offdiag
        np.fill_diagonal(E, 0.0)
        M = M + E
    W = U @ M @ U.T
    X = (rng.standard_normal((N, D)) * np.sqrt(lam)) @ U.T + 0.3
    Z = X @ W.T + sigma * rng.standard_normal((N, D))
    return X, Z, (lam, U), g, M


@pytest.mark.parametrize("law, slope", [(lambda l: l ** -0.5, -0.5), (lambda l: 0.1 / l, -1.0),
                                        (lambda l: np.full_like(l, 0.3), 0.0)])
def test_recovers_planted_diagonal_gains_within_intervals(law, slope):
    X, Z, eig, g, _ = _planted(law, sigma=0.05)
    r = eigen_gains(X, Z, eig, n_boot=300, level=0.99, generator=1)
    assert np.all(np.diff(r.lam) <= 0) and r.n_pairs == 500
    top = r.lam > 1.0  # the well-determined directions (N lambda >> sigma^2 / g^2)
    covered = (r.low[top] <= g[top]) & (g[top] <= r.high[top])
    assert covered.mean() > 0.93  # 99 % intervals, a few misses expected
    decades = r.decades(lam_min=1.0)
    assert [(d.lam_lo, d.lam_hi) for d in decades] == [(10.0, 100.0), (1.0, 10.0)]
    for d in decades:
        assert d.slope_low < slope < d.slope_high, d
        others = {-0.5, -1.0, 0.0} - {slope}
        assert not any(d.slope_low < o < d.slope_high for o in others), d
    zca_level = [d.level for d in decades]
    if slope == -0.5:  # ZCA's level is 1 in every decade
        assert all(d.level_low < 1 < d.level_high for d in decades), zca_level


def test_offdiagonal_share_of_a_planted_map():
    X, Z, eig, _, M = _planted(lambda l: l ** -0.5, N=2000, offdiag=0.1, sigma=0.1, seed=3)
    r = eigen_gains(X, Z, eig, n_boot=50, k=64, generator=2)
    block = M[:64, :64]
    true_share = 1 - (np.diag(block) ** 2).sum() / (block ** 2).sum()
    assert 0.2 < true_share < 0.9
    assert r.offdiag_low < true_share < r.offdiag_high
    assert abs(r.offdiag_share - true_share) < 0.1
    X, Z, eig, _, _ = _planted(lambda l: l ** -0.5, N=2000, sigma=0.1, seed=3)
    diag = eigen_gains(X, Z, eig, n_boot=50, k=64, generator=2)
    assert diag.offdiag_share < 0.05 and diag.offdiag_high < true_share / 4


def test_held_out_pairs_centred_with_the_fitting_means():
    X, Z, eig, g, _ = _planted(lambda l: l ** -0.5, N=400)
    shifted = eigen_gains(X[:50] + 5.0, Z[:50], eig, n_boot=0, mean_x=X.mean(0) + 5.0,
                          mean_z=Z.mean(0))
    own = eigen_gains(X[:50], Z[:50], eig, n_boot=0)
    assert np.isnan(shifted.low).all()
    assert not np.allclose(shifted.gain, own.gain)  # the means matter
    assert np.allclose(eigen_gains(X[:50] + 5.0, Z[:50], eig, n_boot=0).gain, own.gain)


def test_bad_input():
    X, Z, eig, _, _ = _planted(lambda l: l ** -0.5, N=20, D=8)
    with pytest.raises(ValueError, match="same number of pairs"):
        eigen_gains(X, Z[:-1], eig)
    with pytest.raises(ValueError, match="eig must be"):
        eigen_gains(X, Z, (eig[0][:-1], eig[1]))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        eigen_gains(bad, Z, eig)
    with pytest.raises(ValueError, match="level"):
        eigen_gains(X, Z, eig, level=1.0)
    with pytest.raises(ValueError, match="k must"):
        eigen_gains(X, Z, eig, k=9)


def test_works_with_far_fewer_pairs_than_dimensions():
    X, Z, eig, g, _ = _planted(lambda l: l ** -0.5, N=300, D=1024, sigma=0.3, seed=5)
    r = eigen_gains(X, Z, eig, n_boot=200, generator=3)
    top = r.decades(lam_min=10.0)
    assert len(top) == 1 and top[0].n > 100
    assert top[0].slope_low < -0.5 < top[0].slope_high
    assert top[0].slope_high < -0.25 and top[0].slope_low > -0.75
    assert top[0].level_low < 1 < top[0].level_high


def test_shape_scores_known_answers():
    from lib.linear_map import shape_scores

    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 10)) + 2.0
    W = rng.standard_normal((10, 10))
    Z = 3.0 * (X - X.mean(0)) @ W.T - 1.0
    exact = shape_scores(X, Z, W)
    assert exact.scale == pytest.approx(3.0) and exact.r2_scaled == pytest.approx(1.0)
    assert exact.pearson == pytest.approx(1.0)
    flipped = shape_scores(X, -Z, 5 * W)  # scale-free: 5 W fits -Z with c = -3/5
    assert flipped.scale == pytest.approx(-0.6) and flipped.r2_scaled == pytest.approx(1.0)
    assert flipped.pearson == pytest.approx(-1.0)
    noisy = Z + 3.0 * rng.standard_normal(Z.shape) * Z.std()
    s = shape_scores(X, noisy, W)
    assert s.r2_scaled == pytest.approx(s.pearson ** 2, abs=0.02) and 0.05 < s.pearson < 0.5
    unrelated = shape_scores(X, rng.standard_normal(Z.shape), W)
    assert abs(unrelated.pearson) < 0.05 and unrelated.r2_scaled < 0.01
    with pytest.raises(ValueError, match="W must have shape"):
        shape_scores(X, Z, W[:, :3])


def test_fit_linear_map_recovers_planted_map():
    rng = np.random.default_rng(2)
    N, D = 3000, 40
    X = rng.standard_normal((N, D)) @ rng.standard_normal((D, D)) + 5.0
    W_true = rng.standard_normal((D, D))
    Z = X @ W_true.T + 1.0
    W = fit_linear_map(X, Z)
    assert rel(W, W_true) < 1e-10
    m = linear_fit_metrics(X, Z, W)
    assert m.mse < 1e-20 and abs(m.r2 - 1) < 1e-12
    # with noise, R^2 matches its closed form 1 - noise_var / var(Z)
    noise = 0.5 * rng.standard_normal((N, D))
    Zn = X @ W_true.T + noise
    Wn = fit_linear_map(Xn := X, Zn)
    assert rel(Wn, W_true) < 0.01
    m = linear_fit_metrics(Xn, Zn, Wn)
    expected_mse = 0.25 * (N - D - 1) / N  # residual dof of least squares with an intercept
    assert abs(m.mse - expected_mse) / expected_mse < 0.05
    assert m["r2"] == pytest.approx(1 - m.mse / np.var(Zn - Zn.mean(0)))
    # the solver agrees with a ridge solve at tiny ridge
    assert rel(fit_linear_map(X, Zn, ridge=1e-9), Wn) < 1e-6


def test_linear_fit_metrics_of_whitening_on_its_own_data():
    """Whitened data Z = (X - mu) W^T is fit exactly by W itself: MSE 0, R^2 1."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    w = Whitener("cholesky").fit(X)
    m = linear_fit_metrics(X, w.transform(X), w.matrix)
    assert m.mse < 1e-24 and m.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        linear_fit_metrics(X, w.transform(X), w.matrix[:4])
    with pytest.raises(ValueError, match="same number of rows"):
        fit_linear_map(X, X[:10])
    with pytest.raises(ValueError, match="too few"):
        fit_linear_map(X[:5], X[:5])
    with pytest.raises(ValueError, match="too few"):  # N == D: rank D - 1 after centring
        fit_linear_map(X[:8], X[:8])
    assert fit_linear_map(X[:8], X[:8], center=False).shape == (8, 8)


def test_matrix_norms_and_eigenbasis_view_of_zca_and_pca():
    from lib.linear_map import eigenbasis_view, matrix_norms

    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    cov = A @ A.T + 0.5 * np.eye(8)
    lam = np.linalg.eigvalsh(cov)
    zca, pca = whitening_matrix(cov, "zca"), whitening_matrix(cov, "pca")
    two, fro = matrix_norms(zca)
    assert two == pytest.approx(lam.min() ** -0.5) and fro == pytest.approx(np.sqrt(np.sum(1 / lam)))
    view = eigenbasis_view(zca, cov)
    assert view.diagonal_share == pytest.approx(1.0) and np.allclose(view.diag, view.lam ** -0.5)
    assert eigenbasis_view(pca, cov).diagonal_share < 0.9  # PCA rotates: not zero-phase
    from lib.whitening import covariance_eigh

    again = eigenbasis_view(zca, eig=covariance_eigh(cov))
    assert np.array_equal(again.diag, view.diag) and np.array_equal(again.lam, view.lam)
    with pytest.raises(ValueError, match="exactly one"):
        eigenbasis_view(zca)
    with pytest.raises(ValueError, match="shape"):
        eigenbasis_view(np.eye(3), cov)


def test_compare_maps_recovers_an_exact_zca_relation():
    """Noises made by ZCA-whitening the images: W_Diff = W_ZCA, so ZCA fits perfectly (R2 = 1,
    zero distance) and every other kind, whitening just as well, fits worse."""
    from lib.linear_map import compare_maps

    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((4000, 6)) @ A.T + 1.0
    X_test = rng.standard_normal((1000, 6)) @ A.T + 1.0
    W_zca = whitening_matrix(covariance(X), "zca")
    Z, Z_test = (X - X.mean(0)) @ W_zca.T, (X_test - X.mean(0)) @ W_zca.T
    maps = {k: whitening_matrix(covariance(X), k) for k in KINDS}
    W_diff, rows = compare_maps(X, Z, X_test, Z_test, maps=maps)
    by = {r.method: r for r in rows}
    assert [r.method for r in rows] == ["diff", *KINDS]
    assert np.allclose(W_diff, W_zca, atol=1e-8)
    assert by["zca"].in_sample.r2 == pytest.approx(1.0) and by["zca"].diff_fro < 1e-6
    assert by["zca"].held_out.r2 > 0.99
    for kind in ("pca", "pca-cor", "cholesky"):
        assert by[kind].in_sample.r2 < 0.9 and by[kind].diff_fro > 0.1
    assert by["zca"].fro == pytest.approx(by["pca"].fro)  # same norm: rotations of each other
    assert compare_maps(X, Z, maps=maps)[1][0].held_out is None
    quick = compare_maps(X, Z, maps=maps, norm2=False)[1]
    assert np.isnan(quick[1].norm2) and quick[1].fro == pytest.approx(by["zca"].fro)
    # the shape scores see through a scale: half of ZCA has R^2 0.75, best-scaled R^2 1
    half = compare_maps(X, Z, X_test, Z_test, maps={"half": 0.5 * W_zca})[1][1]
    assert half.in_sample.r2 == pytest.approx(0.75) and half.in_sample.r2_scaled == pytest.approx(1.0)
    assert half.held_out.pearson > 0.99


def test_matrix_norms_fast_path_matches_full_svd_on_a_large_matrix():
    from lib.linear_map import matrix_norms

    rng = np.random.default_rng(3)
    W = rng.standard_normal((700, 700)) + np.outer(np.ones(700), rng.standard_normal(700))
    two, fro = matrix_norms(W)
    assert two == pytest.approx(np.linalg.norm(W, 2), rel=1e-9)
    assert fro == pytest.approx(np.linalg.norm(W), rel=1e-12)
    assert matrix_norms(np.zeros((600, 600))) == (0.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        matrix_norms(np.full((3, 3), np.nan))


def _planted_images(seed=1, n=4000, m=1000):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((n, 6)) @ A.T + 1.0
    X_test = rng.standard_normal((m, 6)) @ A.T + 1.0
    return rng, X, X_test


def test_compare_maps_scores_held_out_pairs_with_the_fitting_means():
    """A map applied to new images subtracts the means it was fitted with: held-out pairs whose
    own means differ are scored against the fitting means, so an offset shows as error."""
    from lib.linear_map import compare_maps

    rng, X, X_test = _planted_images()
    W = whitening_matrix(covariance(X), "zca")
    Z = (X - X.mean(0)) @ W.T
    Z_test = (X_test - X.mean(0)) @ W.T + 1.0  # the new pairs' noises carry an offset
    _, rows = compare_maps(X, Z, X_test, Z_test, maps={"zca": W}, W_diff=W)
    assert rows[1].held_out.mse == pytest.approx(1.0, rel=1e-9)
    assert linear_fit_metrics(X_test, Z_test, W).mse < 1e-20  # own means would hide it
    with pytest.raises(ValueError, match="diff"):
        compare_maps(X, Z, maps={"diff": np.eye(6)})


def test_ridge_cv_beats_plain_least_squares_when_pairs_are_few():
    """N barely above D, noisy planted map: plain Eq. (9) overfits (in-sample R^2 high,
    held-out low); the validated ridge does better held out. With many clean pairs it picks a
    small ridge and recovers the map."""
    from lib.linear_map import compare_maps, fit_linear_map_ridge_cv

    rng = np.random.default_rng(5)
    D = 60
    A = rng.standard_normal((D, D)) / np.sqrt(D)
    W_true = np.diag(np.geomspace(1.0, 0.1, D))

    def pairs(n, noise):
        X = rng.standard_normal((n, D)) @ A.T
        return X, X @ W_true.T + noise * rng.standard_normal((n, D))

    X, Z = pairs(70, 0.5)
    X_test, Z_test = pairs(2000, 0.5)
    _, rows = compare_maps(X, Z, X_test, Z_test, maps={},
                           extra={"diff-ridge": fit_linear_map_ridge_cv(X, Z).W})
    by = {r.method: r for r in rows}
    assert by["diff"].in_sample.r2 > by["diff"].held_out.r2 + 0.3
    assert by["diff-ridge"].held_out.r2 > by["diff"].held_out.r2 + 0.1
    X, Z = pairs(5000, 1e-3)
    fit = fit_linear_map_ridge_cv(X, Z)
    assert fit.ridge == fit.ridges.min() and np.allclose(fit.W, W_true, atol=1e-2)
    assert fit.val_r2.argmax() == 0 and len(fit.val_r2) == 13
    with pytest.raises(ValueError, match="positive"):
        fit_linear_map_ridge_cv(X, Z, ridges=[0.0, 1.0])
    with pytest.raises(ValueError, match="diff-"):
        compare_maps(X, Z, maps={}, extra={"ridge": fit.W})


# --- Hypothesis 1 decided direction by direction (decide, calibrate) --------------------------

from lib.linear_map import (MARGINS, calibrate, cluster_weights, column_stats, decide,  # noqa: E402
                            direction_bins, exponent_difference, gaussian_images, linearity,
                            planted_maps, planted_pairs)


@pytest.fixture(scope="module")
def cpu_eig():
    """The cpu profile's spectrum and basis: chapter 4's training covariance (20,000 crops,
    32 x 32, D = 3,072)."""
    from lib.data import image_batches
    from lib.whitening import covariance_eigh

    train = np.concatenate(list(image_batches(20_000, 32, split="train", seed=3, batch=2000)))
    return covariance_eigh(covariance(train.reshape(len(train), -1)))


def test_decide_separates_the_planted_maps_at_the_cpu_profile(cpu_eig, n=600):
    # one N here: chapter 4 itself calibrates at its own N (the cpu profile's 300 pairs), and
    # nbval checks that table
    maps = planted_maps(cpu_eig, scaled=0.5)
    res = calibrate(cpu_eig, maps, n=n, n_test=150, noise=0.3, n_boot=60, generator=5,
                    nonlinear={"zca + nonlinear": (maps["zca"], 1.0)})
    held = {name: {p: d[p].holds for p in d} for name, d in res.items()}
    assert held["zca"] == {"linear": True, "whitening": True, "zca": True}, held
    for name in ("pca", "cholesky"):
        assert held[name]["whitening"] and not held[name]["zca"], (name, held[name])
    for name in ("Sigma^-1", "identity", "0.5 x zca"):
        assert not held[name]["whitening"] and not held[name]["zca"], (name, held[name])
    assert not held["zca + nonlinear"]["linear"], held["zca + nonlinear"]
    # the numbers behind the points: ZCA's law is lambda^-1/2 at level 1, half-ZCA's at 1/2
    w = res["zca"]["whitening"].estimates
    assert abs(w["exponent"].value - 0.5) < 0.05 and w["exponent"].low < 0.5 < w["exponent"].high
    half = res["0.5 x zca"]["whitening"].estimates["level"]
    assert all(abs(e.value - 0.5) < 0.1 for e in half)
    assert all(e.value < 0.15 for e in res["pca"]["zca"].estimates["alignment"])
    assert res["zca + nonlinear"]["linear"].estimates["nonlinear_gain"].low > 0


def _diagonal_pairs(gains_of_lam, *, N=400, D=200, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.geomspace(50.0, 0.05, D)
    X = (rng.standard_normal((N, D)) * np.sqrt(lam)) @ U.T
    g = gains_of_lam(lam)
    Z = X @ ((U * g) @ U.T).T + noise * rng.standard_normal((N, D))
    return X, Z, (lam, U), g


def test_column_norms_are_debiased_where_the_plain_regression_is_not():
    # with noise as large as this (D = 200 coordinates of variance 4 against a unit-variance
    # signal) the plain slope's squared norm is several times the column's at N = 400; the
    # distinct-cluster statistic recovers lambda^-1 on average
    X, Z, eig, g = _diagonal_pairs(lambda lam: lam ** -0.5, noise=2.0)
    s = column_stats(X, Z, eig, lam_min=0.0, n_boot=0)
    Xc, Zc = X - X.mean(0), Z - Z.mean(0)
    P = Xc @ eig[1][:, np.argsort(eig[0])[::-1]]
    plain = np.sum((Zc.T @ P) ** 2, axis=0) / np.sum(P * P, axis=0) ** 2
    truth = g[np.argsort(eig[0])[::-1]] ** 2
    assert np.mean(plain / truth) > 2.0
    assert abs(np.mean(s.col2 / truth) - 1) < 0.1
    assert np.allclose(s.gain, g[np.argsort(eig[0])[::-1]], rtol=0.5, atol=0.3)
    assert np.allclose(s.var, s.lam, rtol=0.35)  # the pairs' own variance along each u_i


def test_cluster_weights_resample_whole_clusters_and_repeat_with_a_seed():
    labels = np.repeat(["a", "b", "c", "d"], [1, 2, 3, 4])
    w, counts = cluster_weights(labels, 50, generator=3)
    assert w.shape == (50, 10) and counts.shape == (50, 4)
    assert np.all(counts.sum(1) == 4)
    assert np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 6] == w[:, 9])  # "b" together, "d" too
    w2, _ = cluster_weights(labels, 50, generator=3)
    assert np.array_equal(w, w2)
    with pytest.raises(ValueError, match="one cluster"):
        cluster_weights(np.zeros(5), 10)


def test_clustered_pairs_get_wider_intervals_than_independent_ones():
    # 40 clusters of 10 near-copies: as informative as 40 pairs, not 400
    X, Z, eig, _ = _diagonal_pairs(lambda lam: lam ** -0.5, N=40, D=60, noise=0.3, seed=2)
    rng = np.random.default_rng(0)
    Xr = np.repeat(X, 10, axis=0) + 1e-3 * rng.standard_normal((400, 60))
    Zr = np.repeat(Z, 10, axis=0)
    labels = np.repeat(np.arange(40), 10)
    kw = dict(lam_min=0.0, n_boot=200, generator=1)
    alone = column_stats(Xr, Zr, eig, **kw)
    grouped = column_stats(Xr, Zr, eig, clusters=labels, **kw)
    sd_alone, sd_grouped = alone.boot_gain.std(0).mean(), grouped.boot_gain.std(0).mean()
    assert sd_grouped > 2.0 * sd_alone
    # copies inflate the plain statistic (each copy is "another" pair); clusters do not
    truth = 1 / grouped.lam
    assert abs(np.median(grouped.col2 / truth) - 1) < 0.35
    assert np.median(alone.col2 / truth) > np.median(grouped.col2 / truth)


def test_direction_bins_merge_sparse_decades_and_keep_every_direction():
    lam = np.array([500.0, 40.0, 30.0, 9.0, 8.0, 7.0, 6.0, 5.0, 0.5, 0.4, 0.3, 0.2, 0.1])
    bins = direction_bins(lam, min_directions=3)
    assert [list(b) for b in bins] == [[0, 1, 2], [3, 4, 5, 6, 7], [8, 9, 10, 11, 12]]
    # 500 alone joins [10, 100); the decade [1, 10) then stands alone
    assert [list(b) for b in direction_bins(lam[[0, 3, 4, 8, 9, 10]], min_directions=3)] == \
        [[0, 1, 2], [3, 4, 5]]
    assert sorted(np.concatenate(bins)) == list(range(len(lam)))
    assert [list(b) for b in direction_bins(lam[:2], min_directions=3)] == [[0, 1]]
    with pytest.raises(ValueError):
        direction_bins(np.array([1.0, -1.0]))


def test_exponent_difference_is_paired():
    X, Z, eig, _ = _diagonal_pairs(lambda lam: lam ** -0.5, N=300, D=60, noise=0.2, seed=4)
    Z2 = X @ ((eig[1] * eig[0] ** -0.3) @ eig[1].T).T + 0.2 * np.random.default_rng(1) \
        .standard_normal(X.shape)
    kw = dict(lam_min=0.0, min_directions=5, k_linear=8, n_boot=100, generator=2)
    a = decide(X[:240], Z[:240], X[240:], Z[240:], eig, **kw)
    b = decide(X[:240], Z2[:240], X[240:], Z2[240:], eig, **kw)
    same = exponent_difference(a, a)
    assert same.value == 0 and same.low == 0 and same.high == 0
    d = exponent_difference(a, b)
    assert abs(d.value - 0.2) < 0.05 and d.low < 0.2 < d.high and d.low > 0
    c = decide(X[:240], Z2[:240], X[240:], Z2[240:], eig, **{**kw, "generator": 9})
    with pytest.raises(ValueError, match="resampled alike"):
        exponent_difference(a, c)
    shuffled = np.random.default_rng(0).permutation(240)  # same C, other clusters
    e = decide(X[:240], Z2[:240], X[240:], Z2[240:], eig, clusters=shuffled, **kw)
    with pytest.raises(ValueError, match="resampled alike"):
        exponent_difference(a, e)
    # paired: narrower than the two decisions' own intervals combined independently
    pa, pb = a["whitening"].estimates["exponent"], b["whitening"].estimates["exponent"]
    unpaired = np.hypot(pa.high - pa.low, pb.high - pb.low)
    assert d.high - d.low < unpaired


def test_linearity_sees_a_learnable_nonlinear_part_and_nothing_in_a_linear_map():
    X, Z, eig, _ = _diagonal_pairs(lambda lam: lam ** -0.5, N=700, D=120, noise=0.3, seed=6)
    lin = linearity(X[:550], Z[:550], X[550:], Z[550:], eig, k=12, n_boot=100)
    assert lin.gain.high < MARGINS["nonlinear"] and lin.r2_linear.value > 0.8
    W = (eig[1] * eig[0] ** -0.5) @ eig[1].T
    Zn = planted_pairs(X, W, nonlinear=1.0, eig=eig, noise=0.1)
    non = linearity(X[:550], Zn[:550], X[550:], Zn[550:], eig, k=12, n_boot=100)
    assert non.gain.low > MARGINS["nonlinear"]
    assert non.r2_nonlinear.value > non.r2_linear.value


def test_planted_pairs_noise_share_and_gaussian_images():
    eig = (np.array([4.0, 1.0, 0.25]), np.eye(3))
    X = gaussian_images(eig, 20_000, generator=0)
    assert np.allclose(np.var(X, axis=0), eig[0], rtol=0.05)
    Z = planted_pairs(X, np.eye(3), noise=0.75, generator=1)
    signal = X - X.mean(0)
    share = np.mean((Z - signal) ** 2) / np.mean(Z ** 2)
    assert abs(share - 0.75) < 0.02


def test_decide_bad_input():
    X, Z, eig, _ = _diagonal_pairs(lambda lam: lam ** -0.5, N=100, D=30, seed=7)
    kw = dict(lam_min=0.0, min_directions=3, k_linear=4, n_boot=10)
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN|finite"):
        decide(bad[:80], Z[:80], X[80:], Z[80:], eig, **kw)
    with pytest.raises(ValueError, match="eig"):
        decide(X[:80], Z[:80], X[80:], Z[80:], (eig[0][:5], eig[1]), **kw)
    with pytest.raises(ValueError, match="unknown margins"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, margins={"levels": 0.1}, **kw)
    with pytest.raises(ValueError, match="one cluster"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, clusters=np.zeros(80), **kw)
    with pytest.raises(ValueError, match="clusters must hold one label per pair"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, clusters=np.arange(5), **kw)
    with pytest.raises(ValueError, match="k must lie"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, **{**kw, "k_linear": 40})
    with pytest.raises(ValueError, match="n_boot"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, **{**kw, "n_boot": 1})
    with pytest.raises(ValueError, match="lam_min"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, **{**kw, "lam_min": 1e3})
    with pytest.raises(ValueError, match="lam_min"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, **{**kw, "lam_min": -1.0})
    with pytest.raises(ValueError, match="margins"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, margins={"level": float("nan")}, **kw)
    with pytest.raises(ValueError, match="at least 3"):
        decide(X[:80], Z[:80], X[80:], Z[80:], eig, clusters=np.arange(80) % 2, **kw)
    with pytest.raises(ValueError, match="held-out pairs"):
        decide(X[:80], Z[:80], X[80:, :20], Z[80:, :20], eig, **kw)


def test_the_law_fitted_on_bins_recovers_an_exact_power_law():
    from lib.linear_map import _law

    lam = np.geomspace(300.0, 0.02, 400)
    bins = direction_bins(lam, min_directions=10)
    for p, scale in ((0.5, 1.0), (1.0, 0.3), (0.1, 2.0), (2.5, 1.5)):
        col2 = scale**2 * lam ** (-2 * p)
        level, align, p_hat, s_hat = _law(lam, np.sqrt(col2), col2, bins)
        assert abs(p_hat - p) < 1e-3 and abs(s_hat / scale - 1) < 1e-3, (p, p_hat, s_hat)
        if p == 0.5:  # a whitening: level 1 and alignment 1 in every bin
            assert np.allclose(level, 1.0) and np.allclose(align, 1.0)
