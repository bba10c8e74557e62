import numpy as np
import pytest
import scipy.linalg

from lib.whitening import (KINDS, Whitener, covariance, fit_linear_map, linear_fit_metrics,
                           whitening_matrix)


def random_cov(D, seed=0, cond=1e3):
    """A random SPD covariance with a chosen condition number (spread-out spectrum)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.geomspace(1.0, 1.0 / cond, D)
    scales = rng.uniform(0.5, 2.0, D)  # unequal variances so -cor kinds differ from plain ones
    S = (Q * lam) @ Q.T
    return S * scales[:, None] * scales[None, :]


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("D", [2, 17, 128, 512])
@pytest.mark.parametrize("kind", KINDS)
def test_whitening_identities(kind, D):
    S = random_cov(D, seed=D)
    W = whitening_matrix(S, kind)
    S_inv = np.linalg.inv(S)
    assert rel(W.T @ W, S_inv) < 1e-8                  # W^T W = inv(Sigma)
    assert rel(W @ S @ W.T, np.eye(D)) < 1e-8          # cov(X W^T) = I


@pytest.mark.parametrize("D", [17, 512])
def test_zca_symmetric_pca_rows_orthogonal(D):
    S = random_cov(D, seed=1)
    W = whitening_matrix(S, "zca")
    assert np.abs(W - W.T).max() < 1e-8 * np.abs(W).max()
    P = whitening_matrix(S, "pca")
    G = P @ P.T  # rows orthogonal: P P^T diagonal (= Lambda^-1)
    assert np.abs(G - np.diag(np.diag(G))).max() < 1e-8 * np.abs(G).max()
    lam = np.sort(np.linalg.eigvalsh(S))[::-1]
    assert np.allclose(np.diag(G), 1 / lam, rtol=1e-8)
    # ZCA = U^T... the ZCA matrix is the symmetric square root of inv(Sigma)
    assert rel(W @ W, np.linalg.inv(S)) < 1e-8


@pytest.mark.parametrize("D", [17, 512])
def test_cholesky_is_upper_factor_of_inverse(D):
    S = random_cov(D, seed=2)
    W = whitening_matrix(S, "cholesky")
    assert np.allclose(W, np.triu(W))                  # upper-triangular
    L = W.T
    assert rel(L @ L.T, np.linalg.inv(S)) < 1e-8      # L L^T = inv(Sigma), as Kessy et al.
    assert np.all(np.diag(W) > 0)
    # the paper's literal Eq. (5) (Sigma = L L^T, W = L^T) would not whiten:
    L_sigma = np.linalg.cholesky(S)
    assert rel(L_sigma.T @ S @ L_sigma, np.eye(D)) > 0.1


@pytest.mark.parametrize("D", [5, 64])
def test_cor_kinds_match_definition(D):
    S = random_cov(D, seed=3)
    v = np.diag(S)
    V_isqrt = np.diag(v**-0.5)
    P = V_isqrt @ S @ V_isqrt
    theta, G = np.linalg.eigh(P)
    theta, G = theta[::-1], G[:, ::-1]
    G = G * np.where(np.diag(G) < 0, -1, 1)
    zca_cor = G @ np.diag(theta**-0.5) @ G.T @ V_isqrt
    pca_cor = np.diag(theta**-0.5) @ G.T @ V_isqrt
    assert rel(whitening_matrix(S, "zca-cor"), zca_cor) < 1e-10
    assert rel(whitening_matrix(S, "pca-cor"), pca_cor) < 1e-10
    # and they are not the plain kinds (the variances differ)
    assert rel(whitening_matrix(S, "zca"), zca_cor) > 1e-3
    # ZCA-cor is the ZCA whitening of the standardised variables
    assert rel(whitening_matrix(P, "zca") @ V_isqrt, zca_cor) < 1e-10


def test_pca_sign_convention_and_order():
    S = random_cov(30, seed=4)
    W = whitening_matrix(S, "pca")
    cross = W @ S  # cov(z, x) for z = W x
    assert np.all(np.diag(cross) > 0)
    norms = np.linalg.norm(W, axis=1)  # rows scale as lambda^-1/2, eigenvalues decreasing
    assert np.all(np.diff(norms) > 0)


def test_zca_maximises_cross_covariance():
    """Kessy et al.: among whitening matrices, ZCA maximises tr(cov(z, x))."""
    S = random_cov(40, seed=5)
    traces = {k: np.trace(whitening_matrix(S, k) @ S) for k in KINDS}
    assert max(traces, key=traces.get) == "zca"
    # and ZCA-cor maximises the cross-correlation tr(corr(z, x))
    v_isqrt = np.diag(S) ** -0.5
    corr = {k: np.trace(whitening_matrix(S, k) @ S * v_isqrt[None, :]) for k in KINDS}
    assert max(corr, key=corr.get) == "zca-cor"


@pytest.mark.parametrize("kind", KINDS)
def test_whitener_on_samples(kind):
    rng = np.random.default_rng(0)
    N, C, H = 2000, 3, 4
    D = C * H * H
    A = rng.standard_normal((D, D)) / np.sqrt(D) + np.eye(D)
    X = (rng.standard_normal((N, D)) @ A.T + 3.0).reshape(N, C, H, H)
    w = Whitener(kind).fit(X)
    Z = w.transform(X)
    assert Z.shape == X.shape
    Zf = Z.reshape(N, D)
    assert np.abs(Zf.mean(axis=0)).max() < 1e-10
    assert rel(covariance(Zf), np.eye(D)) < 1e-10      # sample whiteness is exact in-sample
    X_back = w.inverse_transform(Z)
    assert np.abs(X_back - X).max() < 1e-10           # round trip
    assert "eps=0" in repr(w)


def test_eps_ridge_is_used_and_reported():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 50))  # N <= D: singular covariance
    with pytest.raises(ValueError, match="eps"):
        Whitener("zca").fit(X)
    w = Whitener("zca", eps=0.1).fit(X)
    assert "eps=0.1" in repr(w)
    S = w.cov_ + 0.1 * np.eye(50)
    assert rel(w.matrix.T @ w.matrix, np.linalg.inv(S)) < 1e-8


def test_errors():
    S = random_cov(6)
    with pytest.raises(ValueError, match="unknown whitening kind"):
        whitening_matrix(S, "zac")
    with pytest.raises(ValueError, match="square"):
        whitening_matrix(S[:5], "zca")
    bad = S.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        whitening_matrix(bad, "zca")
    with pytest.raises(ValueError, match="symmetric"):
        whitening_matrix(S + np.triu(np.ones_like(S), 1), "zca")
    with pytest.raises(np.linalg.LinAlgError, match="eps"):
        whitening_matrix(np.zeros((3, 3)), "pca")
    with pytest.raises(np.linalg.LinAlgError, match="eps"):
        whitening_matrix(np.diag([1.0, 0.0]), "cholesky")
    with pytest.raises(ValueError, match="eps"):
        Whitener("zca", eps=-1)
    w = Whitener("pca")
    with pytest.raises(RuntimeError, match="fit"):
        w.transform(np.zeros((2, 6)))
    w.fit(np.random.default_rng(0).standard_normal((100, 6)))
    with pytest.raises(ValueError, match="D=5"):
        w.transform(np.zeros((2, 5)))
    X = np.random.default_rng(0).standard_normal((100, 6))
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Whitener("zca").fit(X)


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


def test_nearly_singular_covariance_is_refused():
    """A duplicated feature makes Sigma singular up to rounding: refuse, don't return 1e7s."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200, 10))
    X = np.c_[X, X[:, :1]]
    for kind in KINDS:
        with pytest.raises(np.linalg.LinAlgError, match="eps"):
            Whitener(kind).fit(X)
        assert np.all(np.isfinite(Whitener(kind, eps=1e-3).fit(X).matrix))


def test_whiteness_error_and_cross_correlation():
    from lib.whitening import cross_correlation, radial_profile, whiteness_error

    rng = np.random.default_rng(7)
    N, D = 20000, 10
    Z = rng.standard_normal((N, D))
    assert whiteness_error(Z) == pytest.approx(np.sqrt(D / N), rel=0.3)  # sampling noise only
    assert whiteness_error(2 * Z) == pytest.approx(3.0, rel=0.02)           # cov = 4 I
    X = rng.standard_normal((N, D))
    rho = 0.6
    Y = rho * X + np.sqrt(1 - rho**2) * Z
    assert np.allclose(cross_correlation(X, Y), rho, atol=0.02)
    assert np.allclose(cross_correlation(X, -3 * X + 1), -1)
    img = np.zeros((9, 9))
    img[4, 4] = 8.0
    img[3:6, 3:6] -= 1.0
    r, m = radial_profile(img, (4, 4))
    assert r[0] == 0 and m[0] == 7.0 and m[1] == -1.0 and np.all(m[3:] == 0)


def test_whiteness_is_the_same_for_every_kind_and_matches_the_eps_sweep():
    from lib.whitening import heldout_whiteness_vs_eps, whiteness_error

    rng = np.random.default_rng(8)
    D = 12
    A = rng.standard_normal((D, D))
    X_fit = rng.standard_normal((400, D)) @ A.T
    X_test = rng.standard_normal((300, D)) @ (A + 0.3 * rng.standard_normal((D, D))).T
    for eps in (0.0, 0.5):
        errors = [whiteness_error(Whitener(k, eps).fit(X_fit).transform(X_test)) for k in KINDS]
        assert np.ptp(errors) < 1e-9 * errors[0]  # rotation invariance
        sweep = heldout_whiteness_vs_eps(covariance(X_fit), covariance(X_test), [eps])
        assert sweep[0] == pytest.approx(errors[0], rel=1e-9)
    with pytest.raises(ValueError, match="eps"):
        heldout_whiteness_vs_eps(np.diag([1.0, 0.0]), np.eye(2), [0.0])


def test_matrix_norms_and_eigenbasis_view_of_zca_and_pca():
    from lib.whitening import eigenbasis_view, matrix_norms

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
    from lib.whitening import compare_maps

    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((4000, 6)) @ A.T + 1.0
    X_test = rng.standard_normal((1000, 6)) @ A.T + 1.0
    W_zca = whitening_matrix(covariance(X), "zca")
    Z, Z_test = (X - X.mean(0)) @ W_zca.T, (X_test - X.mean(0)) @ W_zca.T
    W_diff, rows = compare_maps(X, Z, X_test, Z_test)
    by = {r.method: r for r in rows}
    assert [r.method for r in rows] == ["diff", *KINDS]
    assert np.allclose(W_diff, W_zca, atol=1e-8)
    assert by["zca"].in_sample.r2 == pytest.approx(1.0) and by["zca"].diff_fro < 1e-6
    assert by["zca"].held_out.r2 > 0.99
    for kind in ("pca", "pca-cor", "cholesky"):
        assert by[kind].in_sample.r2 < 0.9 and by[kind].diff_fro > 0.1
    assert by["zca"].fro == pytest.approx(by["pca"].fro)  # same norm: rotations of each other
    assert compare_maps(X, Z)[1][0].held_out is None


def test_matrix_norms_fast_path_matches_full_svd_on_a_large_matrix():
    from lib.whitening import matrix_norms

    rng = np.random.default_rng(3)
    W = rng.standard_normal((700, 700)) + np.outer(np.ones(700), rng.standard_normal(700))
    two, fro = matrix_norms(W)
    assert two == pytest.approx(np.linalg.norm(W, 2), rel=1e-9)
    assert fro == pytest.approx(np.linalg.norm(W), rel=1e-12)
    assert matrix_norms(np.zeros((600, 600))) == (0.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        matrix_norms(np.full((3, 3), np.nan))


def _planted(seed=1, n=4000, m=1000):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((6, 6))
    X = rng.standard_normal((n, 6)) @ A.T + 1.0
    X_test = rng.standard_normal((m, 6)) @ A.T + 1.0
    return rng, X, X_test


def test_compare_maps_with_precomputed_whitening_matrices():
    from lib.whitening import compare_maps

    rng, X, X_test = _planted()
    Z, Z_test = rng.standard_normal((4000, 6)), rng.standard_normal((1000, 6))
    cov = covariance(X)
    maps = {k: whitening_matrix(cov, k) for k in KINDS}
    W1, rows1 = compare_maps(X, Z, X_test, Z_test)
    W2, rows2 = compare_maps(X, Z, X_test, Z_test, maps=maps)
    assert np.array_equal(W1, W2) and rows1 == rows2
    with pytest.raises(ValueError, match="diff"):
        compare_maps(X, Z, maps={"diff": np.eye(6)})


def test_ridge_cv_beats_plain_least_squares_when_pairs_are_few():
    """N barely above D, noisy planted map: plain Eq. (9) overfits (in-sample R^2 high,
    held-out low); the validated ridge does better held out. With many clean pairs it picks a
    small ridge and recovers the map."""
    from lib.whitening import compare_maps, fit_linear_map_ridge_cv

    rng = np.random.default_rng(5)
    D = 60
    A = rng.standard_normal((D, D)) / np.sqrt(D)
    W_true = np.diag(np.geomspace(1.0, 0.1, D))

    def pairs(n, noise):
        X = rng.standard_normal((n, D)) @ A.T
        return X, X @ W_true.T + noise * rng.standard_normal((n, D))

    X, Z = pairs(70, 0.5)
    X_test, Z_test = pairs(2000, 0.5)
    _, rows = compare_maps(X, Z, X_test, Z_test, extra={"diff-ridge": fit_linear_map_ridge_cv(X, Z).W})
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
        compare_maps(X, Z, extra={"ridge": fit.W})


def test_hypothesis_verdict_on_planted_relations():
    """ZCA-whitened noises pass all three points; PCA-whitened ones are linear and white but
    not closest to ZCA; noises unrelated to the images fail linearity and whitening."""
    from lib.whitening import compare_maps, hypothesis_verdict, whiteness_error

    rng, X, X_test = _planted()

    def verdict(kind):
        if kind is None:
            Z, Z_test = rng.standard_normal((4000, 6)), rng.standard_normal((1000, 6))
        else:
            W = whitening_matrix(covariance(X), kind)
            Z, Z_test = (X - X.mean(0)) @ W.T, (X_test - X.mean(0)) @ W.T
        W_diff, rows = compare_maps(X, Z, X_test, Z_test)
        return {v.point: v.holds for v in hypothesis_verdict(rows, X @ W_diff.T)}

    assert verdict("zca") == {"linearity": True, "whitening": True, "closest to ZCA": True}
    assert verdict("pca") == {"linearity": True, "whitening": True, "closest to ZCA": False}
    unrelated = verdict(None)
    assert not unrelated["linearity"] and not unrelated["whitening"]
    with pytest.raises(ValueError, match="diff"):
        hypothesis_verdict([], np.zeros((3, 2)))


def test_whitening_verdict_allows_the_sampling_floor_but_not_a_shrunk_map():
    """White samples with N barely above D score about sqrt(D/N) on whiteness error: they pass;
    the same samples scaled by 0.4 (whiteness error below the zero map's 1) fail on variance."""
    from lib.whitening import LinearFitMetrics, MapComparison, hypothesis_verdict, whiteness_error

    rng = np.random.default_rng(2)
    Z = rng.standard_normal((400, 300))  # sqrt(D/N) = 0.87
    assert 0.75 < whiteness_error(Z) < 1.0
    m = LinearFitMetrics(0.1, 0.9)
    rows = [MapComparison(k, m, m, 1.0, 1.0, 0.0 if k == "diff" else 1.0, 0.0 if k == "diff" else 1.0)
            for k in ("diff", *KINDS)]
    by = lambda v: {x.point: x.holds for x in v}  # noqa: E731
    assert by(hypothesis_verdict(rows, Z))["whitening"]
    assert not by(hypothesis_verdict(rows, 0.4 * Z))["whitening"]
    assert by(hypothesis_verdict(rows, Z))["closest to ZCA"]  # all kinds tie: ZCA counts as first
