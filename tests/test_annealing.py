import numpy as np
import pytest
import torch
from scipy import stats

from lib.annealing import LOSSES, DeWhitening, anneal, anneal_loss, dewhitening
from lib.whitening import Whitener


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def small_data():
    """Correlated 'images' (1, 4, 4) with a known covariance, a fitted ZCA and targets."""
    rng = np.random.default_rng(0)
    D = 16
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = np.geomspace(4.0, 0.01, D)
    L = Q * np.sqrt(lam)
    X = rng.normal(size=(20_000, D)) @ L.T + 0.3  # (N, D), mean 0.3
    w = Whitener("zca").fit(X)
    targets = torch.as_tensor(rng.normal(size=(3, D)) @ L.T + 0.3, dtype=torch.float32).reshape(3, 1, 4, 4)
    return w, targets


def test_dewhitening_from_whitener_and_matrix(small_data):
    w, _ = small_data
    dw = dewhitening(w)
    assert np.allclose(dw.dewhiten @ dw.whiten, np.eye(16), atol=1e-8)
    assert np.allclose(dw.mean, w.mean_)
    # the ZCA de-whitening is the symmetric square root of the covariance: (W^-1)^2 = Sigma
    assert np.allclose(dw.dewhiten @ dw.dewhiten, w.cov_, atol=1e-8)
    dw2 = dewhitening(dw.dewhiten, mean=dw.mean)
    assert np.allclose(dw2.whiten, dw.whiten, atol=1e-6)
    assert dewhitening(dw) is dw


def test_dewhitening_errors(small_data):
    w, _ = small_data
    singular = np.eye(4)
    singular[3, 3] = 0.0
    with pytest.raises(ValueError, match="not invertible"):
        dewhitening(singular)
    with pytest.raises(ValueError, match="square"):
        dewhitening(np.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        dewhitening(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="mean"):
        dewhitening(np.eye(3), mean=np.zeros(2))
    with pytest.raises(ValueError, match="own mean"):
        dewhitening(w, mean=np.zeros(16))
    with pytest.raises(ValueError, match="not fitted"):
        dewhitening(Whitener("zca"))


def test_losses_match_their_definitions(small_data):
    """best_loss is the per-element loss of Eq. (10) evaluated on the returned best noise."""
    w, x = small_data
    dw = dewhitening(w)
    A, W, mu = (torch.as_tensor(m, dtype=torch.float64) for m in (dw.dewhiten, dw.whiten, dw.mean))
    X = x.reshape(3, -1).double()
    for loss in LOSSES:
        r = anneal(x, loss=loss, dewhiten=w, n_iters=50, n_chains=2, generator=_gen())
        z = r.best.reshape(3, 2, -1).double()
        if loss == "baseline":
            expected = ((z - X[:, None]) ** 2).mean(-1)
        elif loss == "forward":
            expected = ((z @ A.T + mu - X[:, None]) ** 2).mean(-1)
        else:
            expected = ((z - ((X - mu) @ W.T)[:, None]) ** 2).mean(-1)
        assert torch.allclose(r.best_loss.double(), expected, rtol=1e-4, atol=1e-5), loss
        scored = anneal_loss(r.flat(), x.repeat_interleave(2, 0), loss, w)
        assert np.allclose(scored, expected.reshape(-1).numpy(), rtol=1e-6), loss
        assert r.best.shape == (3, 2, 1, 4, 4)
        assert r.flat().shape == (6, 1, 4, 4)
        assert np.allclose(r.history.loss[0], r.history.best_loss[0])
        assert np.allclose(r.history.best_loss[-1], r.best_loss.numpy())


def test_non_symmetric_dewhitening_acts_on_rows_as_in_the_paper():
    """With a non-symmetric W^-1 a transpose slip would show: the forward loss is ||A z + mu - x||^2
    with A applied to the column z, the backward one ||z - A^-1 (x - mu)||^2."""
    rng = np.random.default_rng(5)
    A = np.eye(16) + 0.3 * rng.normal(size=(16, 16))
    mu = rng.normal(size=16)
    x = torch.as_tensor(rng.normal(size=(2, 16)), dtype=torch.float32).reshape(2, 1, 4, 4)
    X = x.reshape(2, -1).double().numpy()
    for loss in ("forward", "backward"):
        r = anneal(x, loss=loss, dewhiten=dewhitening(A, mean=mu), n_iters=20, n_chains=2,
                   generator=_gen(9))
        z = r.best.reshape(2, 2, -1).double().numpy()
        if loss == "forward":
            expected = ((np.einsum("ij,bcj->bci", A, z) + mu - X[:, None]) ** 2).mean(-1)
        else:
            expected = ((z - np.linalg.solve(A, (X - mu).T).T[:, None]) ** 2).mean(-1)
        assert np.allclose(r.best_loss.numpy(), expected, rtol=1e-4, atol=1e-5), loss
        assert np.allclose(anneal_loss(r.flat(), x.repeat_interleave(2, 0), loss,
                                       dewhitening(A, mean=mu)), expected.reshape(-1), rtol=1e-6)
        assert r.best.device.type == "cpu" and r.current.device.type == "cpu"


def test_every_accepted_chain_stays_standard_normal():
    """At a huge temperature every proposal is taken: from z = 0 the chain's variance is
    1 - sin^(2k), so after many steps it is N(0, 1) (a wrong interpolation would not be)."""
    x = torch.zeros(2, 3, 8, 8)
    init = torch.zeros(2, 4, 3, 8, 8)
    r = anneal(x, loss="baseline", n_iters=400, t_init=1e9, t_final=1e9, alpha=0.9, n_chains=4,
               init=init, generator=_gen(1))
    assert r.history.acceptance.min() > 0.99
    z = r.current.flatten().numpy()
    assert abs(z.mean()) < 0.06 and abs(z.var() - 1) < 0.08
    assert stats.kstest(z, "norm").pvalue > 0.01
    # and it is not N(0, 1) after a few steps: the variance is still 1 - sin^4 ~ 0.3
    r5 = anneal(x, loss="baseline", n_iters=2, t_init=1e9, t_final=1e9, alpha=0.9, n_chains=4,
                init=init, generator=_gen(1))
    assert abs(r5.current.var().item() - (1 - np.sin(0.45 * np.pi) ** 4)) < 0.05


def test_metropolis_targets_gaussian_times_boltzmann():
    """The slerp proposal is reversible for N(0, I), so at a fixed temperature T the chain's
    stationary law is N(0, 1) exp(-L / T). For the baseline loss in one dimension, (z - x)^2,
    that is a normal with precision 1 + 2 / T and mean (2 x / T) / (1 + 2 / T)."""
    x = torch.ones(1, 1, 1, 1)
    T = 1.0
    r = anneal(x, loss="baseline", n_iters=300, t_init=T, t_final=T, alpha=0.5, n_chains=20_000,
               generator=_gen(2))
    z = r.current.flatten().double()
    prec = 1 + 2 / T
    assert abs(z.mean().item() - (2 / T) / prec) < 0.02
    assert abs(z.var().item() - 1 / prec) < 0.02
    assert 0 < np.nanmean(r.history.uphill_acceptance) < 1


def test_zero_temperature_never_accepts_worse(small_data):
    w, x = small_data
    r = anneal(x, loss="forward", dewhiten=w, n_iters=300, t_init=0.0, t_final=0.0, n_chains=5,
               generator=_gen(3))
    assert (np.diff(r.history.loss, axis=0) <= 0).all()
    assert np.nanmax(r.history.uphill_acceptance) == 0
    assert np.allclose(r.history.loss, r.history.best_loss)
    # with a temperature, some worse proposals are taken
    hot = anneal(x, loss="forward", dewhiten=w, n_iters=300, t_init=1.0, t_final=1.0, n_chains=5,
                 generator=_gen(3))
    assert (np.diff(hot.history.loss, axis=0) > 0).any()


def test_temperature_schedule_is_linear():
    r = anneal(torch.zeros(1, 1, 2, 2), loss="baseline", n_iters=4, t_init=1.0, t_final=0.2,
               generator=_gen())
    assert np.allclose(r.history.temperature, [0.8, 0.6, 0.4, 0.2])


def test_forward_result_far_below_random_noise(small_data):
    w, x = small_data
    r = anneal(x, loss="forward", dewhiten=w, n_iters=1500, alpha=0.9, n_chains=4, generator=_gen(4))
    random = r.history.loss[0].mean()  # the starts are random noises
    assert r.best_loss.mean().item() < 0.1 * random
    # and the found noise is still a plausible N(0, I) draw in scale
    assert 0.6 < r.best.std().item() < 1.4
    assert (np.diff(r.history.best_loss, axis=0) <= 0).all()


def test_same_generator_same_result(small_data):
    w, x = small_data
    kw = dict(loss="forward", dewhiten=w, n_iters=100, n_chains=3, record_at=(0, 50, 100))
    a = anneal(x, generator=_gen(5), **kw)
    b = anneal(x, generator=_gen(5), **kw)
    c = anneal(x, generator=_gen(6), **kw)
    assert torch.equal(a.best, b.best) and np.array_equal(a.history.loss, b.history.loss)
    assert not torch.equal(a.best, c.best)
    assert sorted(a.history.snapshots) == [0, 50, 100]
    assert torch.equal(a.history.snapshots[100], a.best)


def test_bad_arguments(small_data):
    w, x = small_data
    with pytest.raises(ValueError, match="alpha"):
        anneal(x, loss="forward", dewhiten=w, alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        anneal(x, loss="forward", dewhiten=w, alpha=float("nan"))
    with pytest.raises(ValueError, match="loss must be one of"):
        anneal(x, loss="sideways", dewhiten=w)
    with pytest.raises(ValueError, match="needs dewhiten"):
        anneal(x, loss="forward")
    with pytest.raises(ValueError, match="D=48"):
        anneal(torch.zeros(2, 3, 4, 4), loss="forward", dewhiten=w)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        anneal(torch.zeros(16), loss="forward", dewhiten=w)
    with pytest.raises(ValueError, match="NaN"):
        anneal(torch.full((1, 1, 4, 4), float("nan")), loss="baseline")
    with pytest.raises(ValueError, match="not invertible"):
        anneal(x, loss="forward", dewhiten=np.zeros((16, 16)))
    with pytest.raises(ValueError, match="init"):
        anneal(x, loss="baseline", n_chains=2, init=torch.zeros(3, 1, 1, 4, 4))
    with pytest.raises(ValueError, match="t_init"):
        anneal(x, loss="baseline", t_init=-1)
    with pytest.raises(ValueError, match="n_iters"):
        anneal(x, loss="baseline", n_iters=0)
    with pytest.raises(ValueError, match="record_at"):
        anneal(x, loss="baseline", n_iters=10, record_at=(11,))
    assert isinstance(dewhitening(w), DeWhitening)
    with pytest.raises(ValueError, match="one target"):
        anneal_loss(torch.zeros(3, 1, 4, 4), torch.zeros(2, 1, 4, 4), "baseline")
    with pytest.raises(ValueError, match="needs dewhiten"):
        anneal_loss(torch.zeros(3, 1, 4, 4), torch.zeros(1, 1, 4, 4), "backward")


def test_dewhitening_inverts_exactly_and_refuses_ill_conditioned_matrices():
    rng = np.random.default_rng(4)
    Q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    for cond, ok in ((1e6, True), (1e14, False)):
        A = (Q * np.geomspace(1.0, 1.0 / cond, 20)) @ Q.T
        if ok:
            dw = dewhitening(A)
            assert np.allclose(dw.whiten @ A, np.eye(20), atol=1e-8)
        else:
            with pytest.raises(ValueError, match="not invertible"):
                dewhitening(A)
