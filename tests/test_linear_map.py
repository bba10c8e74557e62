import numpy as np
import pytest

from lib.linear_map import eigen_gains


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
