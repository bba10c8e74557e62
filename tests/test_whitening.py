import numpy as np
import pytest

from lib.whitening import KINDS, Whitener, covariance, whitening_matrix


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
    with pytest.raises(ValueError, match="kind must be one of"):
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


def test_best_ridge_is_the_argmin_of_the_held_out_sweep():
    from lib.whitening import EPS_GRID, best_ridge, heldout_whiteness_vs_eps

    rng = np.random.default_rng(4)
    D = 20
    cov_fit = random_cov(D, seed=1, cond=1e6)
    X_test = rng.multivariate_normal(np.zeros(D), random_cov(D, seed=1, cond=1e6), 60)
    eps, errors = best_ridge(cov_fit, covariance(X_test))
    assert np.array_equal(errors, heldout_whiteness_vs_eps(cov_fit, covariance(X_test), EPS_GRID))
    assert eps == EPS_GRID[int(np.argmin(errors))] and errors.min() < errors[0]
    # held-out data from the fitted distribution itself, many samples: no ridge is best
    X_same = rng.multivariate_normal(np.zeros(D), cov_fit, 200_000)
    eps_same, _ = best_ridge(covariance(X_same), covariance(X_same), [0.0, 1e-2, 1.0])
    assert eps_same == 0.0


def test_fit_whiteners_shares_one_covariance_and_matches_separate_fits():
    from lib.whitening import fit_whiteners, whitening_matrices

    rng = np.random.default_rng(3)
    D = 48
    A = rng.standard_normal((D, D)) / np.sqrt(D) + np.eye(D)
    X = rng.standard_normal((500, D)) @ A.T * rng.uniform(0.5, 2, D)
    together = fit_whiteners(X, eps=1e-6)
    assert list(together) == list(KINDS)
    for kind, w in together.items():
        alone = Whitener(kind, eps=1e-6).fit(X)
        assert np.array_equal(w.matrix, alone.matrix), kind  # the same arithmetic, bit for bit
        assert np.array_equal(w.mean_, alone.mean_) and w.cov_ is together["zca"].cov_
        assert w.eps == 1e-6 and w.n_samples_ == 500
        assert rel(covariance(w.transform(X)), np.eye(D)) < 1e-2  # a tiny ridge: nearly white
    # a subset in its given order, and the one-kind function is the many-kind one
    S = covariance(X)
    some = whitening_matrices(S, ("cholesky", "pca"))
    assert list(some) == ["cholesky", "pca"]
    assert np.array_equal(some["pca"], whitening_matrix(S, "pca"))
    with pytest.raises(ValueError, match="each of kinds must be one of"):
        whitening_matrices(S, ("zca", "nope"))


def test_covariance_is_the_unbiased_estimate():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 20)) * np.arange(1, 21) + 5.0
    S = covariance(X)
    assert np.allclose(S, np.cov(X, rowvar=False), rtol=1e-12, atol=1e-12)
    assert np.array_equal(S, S.T)  # exactly symmetric


def test_large_covariances_and_decompositions_come_from_the_disk_cache(tmp_path, monkeypatch):
    import lib.whitening as wh

    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path))
    assert wh._covariance.min_values == 1 << 22 and wh._eigh.min_values == 1 << 20
    monkeypatch.setattr(wh._covariance, "min_values", 100)  # these small arrays count as large
    monkeypatch.setattr(wh._eigh, "min_values", 64)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    entries = lambda name: len(list((tmp_path / name).glob("*.pkl")))  # noqa: E731
    cov = covariance(X)
    assert np.allclose(cov, np.cov(X, rowvar=False), rtol=1e-12, atol=1e-12)
    assert entries("covariance") == 1
    with monkeypatch.context() as m:
        m.setattr(wh.scipy.linalg.blas, "dsyrk", lambda *_: pytest.fail("a hit must not recompute"))
        assert np.array_equal(covariance(X), cov)  # the same data: the stored result
    X2 = X.copy()
    X2[0, 0] += 1e-9
    assert not np.array_equal(covariance(X2), cov) and entries("covariance") == 2  # new data: a miss
    # one decomposition of Sigma serves every ridge and the held-out sweep, with the same results
    # as decomposing Sigma + eps I afresh
    for eps in (0.0, 1e-3, 1e-1):
        lam, U = np.linalg.eigh(cov + eps * np.eye(12))
        assert rel(whitening_matrix(cov, "zca", eps), (U / np.sqrt(lam)) @ U.T) < 1e-10
    held = covariance(X2)
    sweep = wh.heldout_whiteness_vs_eps(cov, held, (1e-3, 1e-1))
    assert entries("eigh") == 1
    for eps, err in zip((1e-3, 1e-1), sweep):
        W = whitening_matrix(cov, "pca", eps)
        assert np.isclose(err, np.linalg.norm(W @ held @ W.T - np.eye(12)) / np.sqrt(12), rtol=1e-9)
    monkeypatch.setenv("LIB_NO_CACHE", "1")
    covariance(X * 2)
    whitening_matrix(cov * 2, "zca")
    assert entries("covariance") == 2 and entries("eigh") == 1  # cache off: nothing stored


def test_cross_covariance_is_largest_for_zca_and_is_sigma_half_there():
    import scipy.linalg

    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    X = rng.normal(size=(4000, 6)) @ A.T
    cov = covariance(X)
    fitted = {kind: Whitener(kind).fit(X) for kind in KINDS}
    cross = {kind: w.cross_covariance(cov) for kind, w in fitted.items()}
    assert np.allclose(cross["zca"], np.diag(scipy.linalg.sqrtm(cov).real), rtol=1e-6)
    assert np.allclose(cross["pca"], np.diag(fitted["pca"].matrix @ cov))
    assert all(cross["zca"].sum() >= c.sum() - 1e-9 for c in cross.values())  # Kessy et al.
    with pytest.raises(ValueError, match="cov must be"):
        fitted["zca"].cross_covariance(cov[:3, :3])
