import numpy as np
import pytest
import torch

from lib.fixed_point import fixed_point_noise, fixed_point_pairs
from lib.data import photo_crops
from lib.models import DiffusionModel, GaussianModel, load_model
from lib.sampling import ddim_scheduler


def _gaussian(eigvals, seed=0):
    """A Gaussian model on (3, 2, 2) samples (D = 12) with the given covariance spectrum."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    cov = U @ np.diag(eigvals) @ U.T
    mu = 0.1 * rng.standard_normal(12)
    return GaussianModel(mu, cov, (3, 2, 2)), cov, mu


def _closed_form(model, cov, mu, z0, t):
    abar = float(model.alphas_cumprod[t])
    a, s = np.sqrt(abar), np.sqrt(1 - abar)
    x = z0.reshape(len(z0), -1).numpy() - mu
    return (s / a) * np.linalg.solve(cov, x.T).T  # eps* = (s / a) Sigma^-1 (z0 - mu)


def _z0(n=3, seed=1):
    return torch.randn(n, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_picard_reaches_the_closed_form_where_it_contracts():
    model, cov, mu = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = _z0()
    res = fixed_point_noise(model, z0, 300, 300, init="zero", tol=1e-10)
    expected = _closed_form(model, cov, mu, z0, 300)
    assert np.allclose(res.noise.reshape(3, -1).numpy(), expected, rtol=1e-7, atol=1e-8)
    assert res.converged.all() and not res.diverged.any() and res.iterations < 300
    assert res.recon_error.max() < 1e-8  # one step of Eq. (3) lands on z0
    assert (np.diff(res.residuals, axis=0) <= 1e-12).all()  # Picard decreases monotonically here


def test_picard_contraction_per_eigendirection():
    eigvals = np.array([300.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    model, cov, mu = _gaussian(eigvals)
    z0, t = _z0(1), 980
    star = _closed_form(model, cov, mu, z0, t)[0]
    e0 = torch.randn(1, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    e1 = fixed_point_noise(model, z0, t, 1, init=e0).noise.reshape(-1).numpy()
    U = model.eigvecs.numpy()  # columns: eigenvectors, eigenvalues ascending
    lam = model.eigvals.numpy()
    ratio = (U.T @ (e1 - star)) / (U.T @ (e0.reshape(-1).numpy() - star))
    abar = float(model.alphas_cumprod[t])
    expected = (1 - abar) / (abar * lam + 1 - abar)
    assert np.allclose(ratio, expected, rtol=1e-6)
    assert expected.min() < 0.4 and expected.max() > 0.9999  # slow exactly in the small directions


def test_anderson_reaches_the_closed_form_at_t_098T_where_picard_crawls():
    """At t = 0.98T Picard contracts by at least 0.98 per step in every direction; Anderson
    (memory >= D, so in effect GMRES on a linear map) reaches the fixed point."""
    eigvals = np.geomspace(1e-3, 2.0, 12)
    model, cov, mu = _gaussian(eigvals)
    z0, t = _z0(), 980
    expected = _closed_form(model, cov, mu, z0, t)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pic = fixed_point_noise(model, z0, t, 100, init="random", generator=gen())
    and_ = fixed_point_noise(model, z0, t, 100, init="random", method="anderson", memory=12,
                             generator=gen())

    def err(r):
        return np.abs(r.noise.reshape(3, -1).numpy() - expected).max() / np.abs(expected).max()

    assert err(and_) < 1e-6
    assert err(pic) > 0.1  # after 100 iterations Picard is still far ...
    assert (np.diff(pic.residuals, axis=0) < 0).all()  # ... though its residual fell at every step
    assert not pic.diverged.any() and not and_.diverged.any()


def test_inputs_and_divergence_are_reported():
    model, _, _ = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = _z0()
    with pytest.raises(ValueError, match="method must be one of"):
        fixed_point_noise(model, z0, 980, 3, method="newton")
    with pytest.raises(ValueError, match="unknown init"):
        fixed_point_noise(model, z0, 980, 3, init="ones")
    with pytest.raises(ValueError, match="shape of z0"):
        fixed_point_noise(model, z0, 980, 3, init=torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        fixed_point_noise(model, z0 * float("nan"), 980, 3)

    class Expanding(GaussianModel):  # f(eps) = 2 eps + c: the iteration runs away
        def _predict(self, x_t, t, cond):
            return 2 * x_t / (1 - self.alphas_cumprod[t].view(-1, 1, 1, 1)).sqrt() + 1

    bad = Expanding(np.zeros(12), np.eye(12), (3, 2, 2))
    res = fixed_point_noise(bad, z0, 980, 30, init="zero")
    assert res.diverged.all() and "diverged 3/3" in res.summary()


def test_pairs_give_the_gaussian_fixed_point_map_by_least_squares():
    """For the Gaussian model Z = (s / a) Sigma^-1 (X - mu): Eq. (9) recovers W = (s / a) Sigma^-1,
    which in Sigma's eigenbasis is diagonal with entries (s / a) / lambda."""
    from lib.linear_map import eigenbasis_view, fit_linear_map

    eigvals = np.linspace(0.5, 2.0, 12)
    model, cov, mu = _gaussian(eigvals)
    X = torch.from_numpy(np.random.default_rng(3).multivariate_normal(mu, cov, 60)).reshape(60, 3, 2, 2)
    pairs = fixed_point_pairs(model, X, 300, 400, method="picard", batch_size=25, progress=False)
    assert pairs.X.shape == pairs.Z.shape == (60, 12) and not pairs.diverged.any()
    W = fit_linear_map(pairs.X, pairs.Z)
    abar = float(model.alphas_cumprod[300])
    expected = np.sqrt((1 - abar) / abar) * np.linalg.inv(cov)
    assert np.allclose(W, expected, atol=1e-6)
    view = eigenbasis_view(W, cov)
    assert view.diagonal_share == pytest.approx(1.0, abs=1e-9)
    assert np.allclose(view.diag, np.sqrt((1 - abar) / abar) / view.lam, rtol=1e-5)


def test_gaussian_picard_gain_is_what_the_iteration_does_from_zero():
    """K Picard steps from eps = 0 on the Gaussian model act on each eigen-coordinate of
    z0 - mu by the closed-form gain; K -> inf gives the exact (s/a) lambda^-1 law."""
    from lib.fixed_point import gaussian_picard_gain

    eigvals = np.array([300.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    model, cov, mu = _gaussian(eigvals)
    z0, t, K = _z0(2), 980, 7
    noise = fixed_point_noise(model, z0, t, K, init="zero").noise.reshape(2, -1).numpy()
    U, lam = model.eigvecs.numpy(), model.eigvals.numpy()
    coords = (z0.reshape(2, -1).numpy() - mu) @ U  # (B, D) eigen-coordinates of z0 - mu
    abar = float(model.alphas_cumprod[t])
    assert np.allclose(noise @ U, coords * gaussian_picard_gain(lam, abar, K), rtol=1e-8, atol=1e-12)
    exact = gaussian_picard_gain(lam, abar, None)
    star = _closed_form(model, cov, mu, z0, t)
    assert np.linalg.norm((coords * exact) @ U.T - star) < 1e-6 * np.linalg.norm(star)
    # few steps: flat gain K a / s in the small directions, far below the exact fixed point
    assert gaussian_picard_gain(1e-5, abar, K) == pytest.approx(K * np.sqrt(abar / (1 - abar)), rel=1e-3)
    with pytest.raises(ValueError, match="positive"):
        gaussian_picard_gain([0.0, 1.0], abar, K)


def test_one_step_reconstruction_is_exact_only_at_the_fixed_point():
    from lib.fixed_point import one_step_reconstruction

    model, cov, mu = _gaussian(np.linspace(0.5, 2.0, 12))
    z0, t = _z0(3), 500
    star = torch.as_tensor(_closed_form(model, cov, mu, z0, t)).reshape(z0.shape)
    assert torch.allclose(one_step_reconstruction(model, z0, star, t), z0, atol=1e-10)
    other = one_step_reconstruction(model, z0, torch.zeros_like(z0), t)
    assert (other - z0).abs().max() > 1e-2
    with pytest.raises(ValueError, match="shape"):
        one_step_reconstruction(model, z0, star[:1], t)


def test_sweep_is_the_same_as_one_call_per_t():
    from lib.fixed_point import fixed_point_sweep

    model, _, _ = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = _z0(2)
    sweep = fixed_point_sweep(model, z0, [100, 900], 5, init="zero", method="anderson")
    assert list(sweep) == [100, 900]
    for t, res in sweep.items():
        one = fixed_point_noise(model, z0, t, 5, init="zero", method="anderson")
        assert torch.equal(res.noise, one.noise) and res.t == t


@pytest.mark.parametrize("beta", [0.5, 0.8])
def test_damped_picard_is_its_closed_form_on_the_gaussian_model(beta):
    from lib.fixed_point import gaussian_picard_gain

    eigvals = np.array([300.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    model, cov, mu = _gaussian(eigvals)
    z0, t, K = _z0(2), 700, 9
    noise = fixed_point_noise(model, z0, t, K, init="zero", relaxation=beta).noise.reshape(2, -1).numpy()
    U, lam = model.eigvecs.numpy(), model.eigvals.numpy()
    coords = (z0.reshape(2, -1).numpy() - mu) @ U
    abar = float(model.alphas_cumprod[t])
    gain = gaussian_picard_gain(lam, abar, K, relaxation=beta)
    assert np.allclose(noise @ U, coords * gain, rtol=1e-8, atol=1e-12)
    assert np.all(gain < gaussian_picard_gain(lam, abar, K))  # damping slows the contraction
    with pytest.raises(ValueError, match="relaxation"):
        fixed_point_noise(model, z0, t, K, relaxation=0.0)
    with pytest.raises(ValueError, match="'picard' only"):
        fixed_point_noise(model, z0, t, K, method="anderson", relaxation=0.5)


class _Linear(DiffusionModel):
    """eps_hat(x_t) = A x_t / s_t at one t: Eq. (7) becomes eps <- A eps + (a / s) A z0."""

    def __init__(self, A, t):
        super().__init__(ddim_scheduler().alphas_cumprod, (3, 2, 2), dtype=torch.float64)
        self.A = torch.as_tensor(A)
        self.s = float((1 - self.alphas_cumprod[t]).sqrt())

    def _predict(self, x_t, t, cond):
        return (x_t.reshape(len(x_t), -1) @ self.A.T / self.s).reshape(x_t.shape)


def test_blowup_safeguard_keeps_andersons_history_through_a_non_monotone_stretch():
    """A non-normal contraction (spectral radius 0.6) whose residual first grows by 10^4:
    Anderson with memory D is exact after about D + 1 steps on a linear problem if it keeps its
    history; the "increase" rule drops it at every rise and is left doing Picard steps."""
    rng = np.random.default_rng(0)
    D = 12
    J = np.diag(np.full(D, 0.6)) + np.diag(np.full(D - 1, 1.5), 1)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    model = _Linear(Q @ J @ Q.T, 500)
    z0 = _z0(2)
    kw = dict(init="zero", method="anderson", memory=D, tol=1e-9)
    keep = fixed_point_noise(model, z0, 500, 30, safeguard="blowup", **kw)
    drop = fixed_point_noise(model, z0, 500, 30, safeguard="increase", **kw)
    assert (np.diff(keep.residuals[:, 0]) > 0).any()  # the planted rise
    assert keep.converged.all() and keep.iterations <= D + 4
    assert not drop.converged.any() and drop.residuals[-1].min() > 1.0
    A = model.A.numpy()
    b = np.sqrt(float(model.alphas_cumprod[500])) / model.s * z0.reshape(2, -1).numpy() @ A.T
    exact = np.linalg.solve(np.eye(D) - A, b.T).T  # rows: eps = eps A^T + b
    assert np.allclose(keep.noise.reshape(2, -1).numpy(), exact, atol=1e-8)
    with pytest.raises(ValueError, match="safeguard"):
        fixed_point_noise(model, z0, 500, 3, method="anderson", safeguard="never")


@pytest.mark.parametrize("method, kw", [("picard", {}), ("picard", {"relaxation": 0.7}),
                                        ("anderson", {"safeguard": "increase"}),
                                        ("anderson", {"safeguard": "blowup"})])
def test_every_solver_reaches_the_gaussian_fixed_point_at_t500(method, kw):
    model, cov, mu = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = _z0()
    res = fixed_point_noise(model, z0, 500, 400, init="zero", method=method, tol=1e-7, **kw)
    assert res.converged.all() and res.residuals[-1].max() < 1e-6
    star = _closed_form(model, cov, mu, z0, 500)
    assert np.allclose(res.noise.reshape(3, -1).numpy(), star, atol=1e-5)


def test_minimize_reaches_the_gaussian_fixed_point_and_counts_its_cost():
    model, cov, mu = _gaussian(np.linspace(0.5, 2.0, 12))
    z0 = _z0()
    res = fixed_point_noise(model, z0, 500, 60, init="zero", method="minimize", memory=20, tol=1e-7)
    assert res.converged.all() and res.residuals[-1].max() < 1e-6
    assert np.allclose(res.noise.reshape(3, -1).numpy(), _closed_form(model, cov, mu, z0, 500), atol=1e-5)
    assert res.evaluations[0] == 1 and np.all(np.diff(res.evaluations) >= 3)
    assert len(res.evaluations) == len(res.residuals) == res.iterations + 1
    picard = fixed_point_noise(model, z0, 500, 5, init="zero")
    assert np.array_equal(picard.evaluations, np.arange(1, 7))


def test_eps_differentiable_matches_eps_and_carries_gradients():
    model, cov, mu = _gaussian(np.linspace(0.5, 2.0, 12))
    x = _z0(2).requires_grad_(True)
    out = model.eps_differentiable(x, 500)
    assert torch.equal(out.detach(), model.eps(x.detach(), 500)) and not model.eps(x, 500).requires_grad
    (grad,) = torch.autograd.grad(out.sum(), x)
    abar = float(model.alphas_cumprod[500])
    s = np.sqrt(1 - abar)
    jac = s * np.linalg.inv(abar * cov + (1 - abar) * np.eye(12))  # d eps / d x_t
    assert np.allclose(grad.reshape(2, -1).numpy(), np.tile(jac.sum(0), (2, 1)), atol=1e-10)


def test_snapshots_equal_shorter_runs_and_a_continued_run_equals_a_longer_one():
    """One run with snapshots gives what separate runs of k iterations give; pairs continued
    from an earlier run's iterates (Picard has no memory) equal one longer run, row for row."""
    model, _, _ = _gaussian(np.geomspace(2.0, 1e-3, 12))
    z0 = _z0(5)
    full = fixed_point_noise(model, z0, 900, 12, init="zero", snapshots=(0, 3, 7))
    assert sorted(full.snapshots) == [0, 3, 7] and torch.equal(full.snapshots[0], torch.zeros_like(z0))
    for k in (3, 7):
        assert torch.equal(full.snapshots[k], fixed_point_noise(model, z0, 900, k, init="zero").noise)
    with pytest.raises(ValueError, match="snapshots"):
        fixed_point_noise(model, z0, 900, 5, snapshots=(6,))
    pairs = fixed_point_pairs(model, z0, 900, 12, method="picard", init="zero", batch_size=2,
                              snapshots=(3, 7), progress=False)
    assert pairs.iterations == 12 and sorted(pairs.snapshots) == [3, 7]
    assert np.allclose(pairs.snapshots[7].Z, full.snapshots[7].reshape(5, -1).numpy(), rtol=1e-12)
    assert np.allclose(pairs.snapshots[7].residuals, full.residuals[7])
    assert np.allclose(pairs.residuals, full.residuals[-1]) and np.allclose(pairs.recon_error,
                                                                            full.recon_error)
    start = torch.as_tensor(pairs.snapshots[7].Z).reshape(z0.shape)
    rest = fixed_point_pairs(model, z0, 900, 5, method="picard", init=start, batch_size=2,
                             progress=False)
    assert np.array_equal(rest.Z, pairs.Z)
    with pytest.raises(ValueError, match="shape of images"):
        fixed_point_pairs(model, z0, 900, 5, init=start[:2], progress=False)


def test_cached_pairs_are_reused_only_for_the_same_work(tmp_path, monkeypatch):
    from lib.fixed_point import cached_fixed_point_pairs

    monkeypatch.setenv("LIB_CACHE_DIR", str(tmp_path))
    model, _, _ = _gaussian(np.geomspace(2.0, 1e-3, 12))
    z0 = _z0(4)
    lines = []
    kw = dict(method="picard", init="random", seed=3, log=lines.append, progress=False)
    a = cached_fixed_point_pairs(model, z0, 900, 6, **kw)
    b = cached_fixed_point_pairs(model, z0, 900, 6, **kw)
    c = cached_fixed_point_pairs(model, z0, 900, 6, **{**kw, "seed": 4})
    assert ["computed" in lines[0], "reused" in lines[1], "computed" in lines[2]] == [True] * 3
    assert np.array_equal(a.Z, b.Z) and not np.array_equal(a.Z, c.Z)
    direct = fixed_point_pairs(model, z0, 900, 6, method="picard", init="random",
                               generator=torch.Generator().manual_seed(3), progress=False)
    assert np.array_equal(a.Z, direct.Z)
    with pytest.raises(ValueError, match="seed"):
        cached_fixed_point_pairs(model, z0, 900, 6, method="picard", init="random")


@pytest.mark.parametrize("method", ["picard", "minimize"])
def test_max_evaluations_stops_every_solver_at_the_budget(method):
    model, _, _ = _gaussian(np.geomspace(2.0, 1e-3, 12))
    r = fixed_point_noise(model, _z0(2), 900, 1000, init="zero", method=method, max_evaluations=40)
    assert 40 <= r.evaluations[-1] < 40 + (1 if method == "picard" else 40)
    assert r.evaluations[-2] < 40 and len(r.residuals) == len(r.evaluations)


@pytest.mark.parametrize("kwargs", [dict(method="picard"), dict(method="picard", relaxation=0.5),
                                    dict(method="anderson", safeguard="blowup"),
                                    dict(method="minimize")])
def test_fixed_point_starts_match_separate_runs(kwargs):
    from lib.fixed_point import fixed_point_starts

    model = load_model("gaussian")
    z0 = torch.as_tensor(photo_crops(3, 32, split="test", seed=7))
    start = torch.randn(z0.shape, generator=torch.Generator().manual_seed(3))
    inits = {"zero": "zero", "random": start}
    together = fixed_point_starts(model, z0, 980, 6, inits, snapshots=[2], **kwargs)
    assert list(together) == ["zero", "random"]
    for name, init in inits.items():
        alone = fixed_point_noise(model, z0, 980, 6, init=init, snapshots=[2], **kwargs)
        r = together[name]
        assert r.noise.shape == z0.shape and r.residuals.shape == alone.residuals.shape
        assert torch.allclose(r.noise, alone.noise, rtol=1e-5, atol=1e-6), name
        assert np.allclose(r.residuals, alone.residuals, rtol=1e-5)
        assert np.array_equal(r.evaluations, alone.evaluations)
        assert torch.allclose(r.snapshots[2], alone.snapshots[2], rtol=1e-5, atol=1e-6)
    # the two starts really are different runs
    assert not torch.allclose(together["zero"].noise, together["random"].noise)


def test_lowest_reached_and_input_norm_known_answers():
    from lib.fixed_point import input_norm

    model, _, _ = _gaussian(np.linspace(0.1, 2.0, 12))
    z0 = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = fixed_point_noise(model, z0, 900, 6, init="zero", method="picard")
    # a known history: sample 0 dips to 0.1 and rises again, sample 1 blows up after 0.05
    r.residuals = np.array([[1.0, 1.0], [0.1, 0.05], [0.5, np.nan]])
    assert r.lowest[0] == 0.1 and np.isnan(r.lowest[1])
    assert list(r.reached(0.2)) == [True, False] and not r.reached(0.1).any()
    # Eq. (1) with a zero noise: a ||z0|| / sqrt(D); with a unit noise and no image: s
    abar = float(model.alphas_cumprod[900])
    D = z0[0].numel()
    assert np.allclose(input_norm(model, z0, torch.zeros_like(z0), 900),
                       np.sqrt(abar) * z0.flatten(1).norm(dim=1).numpy() / np.sqrt(D))
    e = torch.ones_like(z0)
    assert np.allclose(input_norm(model, torch.zeros_like(z0), e, 900), np.sqrt(1 - abar))


def test_gaussian_fixed_point_solves_eq6_and_picard_approaches_it():
    import numpy as np
    import torch

    from lib.fixed_point import fixed_point_noise, gaussian_fixed_point
    from lib.models import GaussianModel

    rng = np.random.default_rng(0)
    D = 12
    U, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.geomspace(4.0, 0.5, D)
    model = GaussianModel.from_eigh(np.zeros(D), lam, U, (3, 2, 2), device="cpu",
                                    dtype=torch.float64)
    z0 = torch.as_tensor(rng.standard_normal((2, 3, 2, 2)))
    t = 300
    eps = gaussian_fixed_point(model, z0, t)
    abar = float(model.alphas_cumprod[t])
    z_t = np.sqrt(abar) * z0 + np.sqrt(1 - abar) * eps
    assert torch.allclose(model.eps(z_t, t), eps, atol=1e-10)  # Eq. (6) solved exactly
    run = fixed_point_noise(model, z0, t, 200, init="zero")
    assert torch.allclose(run.noise.double(), eps, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="Gaussian model only"):
        gaussian_fixed_point(object(), z0, t)


def _linear(c):
    """f(e) = c * e + 1 per coordinate (a contraction for |c| < 1); fixed point 1 / (1 - c)."""
    c = torch.as_tensor(c, dtype=torch.float64).reshape(1, -1)
    return lambda e: c * e + 1, c


def test_picard_follows_its_closed_form_and_keeps_snapshots():
    from lib.fixed_point import picard

    f, c = _linear([0.5, 0.9, -0.3])
    run = picard(f, torch.zeros(2, 3, dtype=torch.float64), 6, snapshots=(0, 2))
    for k in (2, 6):  # from zero: e_k = (1 - c^k) / (1 - c)
        got = run.snapshots[k] if k in run.snapshots else run.noise
        assert torch.allclose(got, ((1 - c ** k) / (1 - c)).expand(2, 3), atol=1e-12)
    assert run.residuals.shape == (7, 2) and list(run.evaluations) == list(range(1, 8))
    assert torch.equal(run.snapshots[0], torch.zeros(2, 3, dtype=torch.float64))
    assert torch.allclose(run.residual, f(run.noise) - run.noise)
    half = picard(f, torch.zeros(1, 3, dtype=torch.float64), 1, relaxation=0.5)
    assert torch.allclose(half.noise, torch.full((1, 3), 0.5, dtype=torch.float64))  # 0 + 0.5 * 1


def test_anderson_and_lbfgs_solve_a_linear_fixed_point_and_stop_at_tol():
    from lib.fixed_point import anderson, lbfgs, picard

    f, c = _linear([0.5, 0.9, 0.99])
    exact = (1 / (1 - c)).expand(1, 3)
    start = torch.zeros(1, 3, dtype=torch.float64)
    acc = anderson(f, start, 8, memory=5, tol=1e-9)
    assert torch.allclose(acc.noise, exact, atol=1e-8) and acc.residuals[-1, 0] < 1e-9
    assert len(acc.residuals) <= 6  # a linear map in 3-D: exact after about D + 1 steps
    slow = picard(f, start, 8)
    assert slow.residuals[-1, 0] > 0.5  # Picard at c = 0.99 has barely moved
    g, d = _linear([0.5, 0.9, -0.3])  # L-BFGS (one line search for the batch)
    opt = lbfgs(g, g, torch.zeros(2, 3, dtype=torch.float64), 30, tol=1e-8)
    assert torch.allclose(opt.noise, (1 / (1 - d)).expand(2, 3), atol=1e-6)
    loss = (opt.residuals ** 2).sum(1)
    assert np.all(np.diff(loss) <= 1e-12)  # the strong-Wolfe line search never goes uphill
    assert opt.evaluations[0] == 1 and np.all(np.diff(opt.evaluations) >= 3)  # a gradient: 3
    capped = picard(f, start, 8, max_evaluations=3)
    assert list(capped.evaluations) == [1, 2, 3]
