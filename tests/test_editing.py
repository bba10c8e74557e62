import numpy as np
import pytest
import torch

from lib.editing import EDIT_METHODS, class_errors, class_preference, edit_sweep
from lib.models import DiffusionModel
from lib.sampling import ddim_edit, ddim_scheduler, sdedit


class PointMasses(DiffusionModel):
    """Class k is the single image mu_k; its exact noise prediction is (x_t - a_t mu_k) / s_t.
    The null class (cond None) predicts as if the image were 0."""

    name = "points"

    def __init__(self, mus):
        super().__init__(ddim_scheduler().alphas_cumprod, tuple(mus.shape[1:]), dtype=torch.float64)
        self.mus = mus.double()
        self.classes = [f"c{k}" for k in range(len(mus))]

    def cond(self, labels):
        return torch.tensor([self.classes.index(lab) for lab in labels])

    def _predict(self, x_t, t, cond):
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x_t.dtype)
        mu = torch.zeros_like(x_t) if cond is None else self.mus[cond].to(x_t.dtype)
        return (x_t - abar.sqrt() * mu) / (1 - abar).sqrt()


@pytest.fixture
def points():
    mus = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return PointMasses(mus)


def test_class_errors_closed_form_and_prediction(points):
    """eps_hat - eps = a_t (z0 - mu_k) / s_t, so the error is mean_t (a_t / s_t)^2 ||z0 - mu_k||^2 / D
    whatever the noises: the classifier names each point's own class with error 0."""
    z0 = torch.cat([points.mus, points.mus[:1] + 0.5])
    ts = (100, 500, 900)
    err = class_errors(points, z0, points.classes, timesteps=ts, n_noise=3, batch_size=5,
                       generator=torch.Generator().manual_seed(1))
    abar = points.alphas_cumprod[list(ts)]
    gain = (abar / (1 - abar)).mean().item()
    dist = ((z0[:, None] - points.mus[None]) ** 2).flatten(2).mean(-1).numpy()
    assert np.allclose(err, gain * dist, rtol=1e-5, atol=1e-9)
    assert list(err.argmin(1)) == [0, 1, 2, 0]
    assert np.allclose(np.diag(err[:3]), 0)
    with pytest.raises(ValueError, match="timesteps"):
        class_errors(points, z0, points.classes, timesteps=(1000,))
    with pytest.raises(ValueError, match="label"):
        class_errors(points, z0, [])


def test_class_errors_share_the_noises_across_labels():
    """A model that predicts eps_hat = 0 scores every label with mean ||eps||^2: the same number
    for all labels only if every label sees the same noises (the paired comparison)."""

    class Zero(PointMasses):
        def _predict(self, x_t, t, cond):
            return torch.zeros_like(x_t)

    m = Zero(torch.zeros(3, 1, 4, 4))
    err = class_errors(m, torch.randn(5, 1, 4, 4, dtype=torch.float64), m.classes, n_noise=2,
                       batch_size=4, generator=torch.Generator().manual_seed(0))
    assert np.allclose(err, err[:, :1], rtol=1e-12)
    assert 0.3 < err.mean() < 3  # and it is the noise's power, about 1
    assert not np.allclose(err[:, 0], err[0, 0])  # different images, different noises


def test_class_preference():
    errors = np.array([[1.0, 2.0, 4.0], [3.0, 1.0, 2.0], [2.0, 2.0, 1.0], [1.0, 1.0, 0.5]])
    cp = class_preference(errors, ["a", "b", "c"], "a", "c")
    assert list(cp.predicted) == [0, 1, 2, 2]
    assert cp.target_rate == 0.5
    assert np.allclose(cp.margin, np.log([1 / 4, 3 / 2, 2 / 1, 1 / 0.5]))
    with pytest.raises(ValueError, match="not among"):
        class_preference(errors, ["a", "b", "c"], "a", "z")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        class_preference(errors, ["a", "b"], "a", "b")


def test_edit_sweep_matches_the_single_edits(points):
    z0 = points.mus[:2] + 0.1
    noise = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    S = [0.3, 1.0]
    out = edit_sweep(points, z0, S, source="c0", target="c2", annealed_noise=noise, steps=10,
                     generator=torch.Generator().manual_seed(3), progress=False, batch_size=1)
    assert set(out) == set(EDIT_METHODS) and out["sdedit"].shape == (2, 2, 1, 4, 4)
    c0, c2 = points.cond(["c0", "c0"]), points.cond(["c2", "c2"])
    fresh = torch.randn(z0.shape, generator=torch.Generator().manual_seed(3))
    for i, s in enumerate(S):
        assert torch.allclose(out["sdedit-annealed"][i], sdedit(points, z0, s, noise, 10, c2).float())
        assert torch.allclose(out["sdedit"][i], sdedit(points, z0, s, fresh.double(), 10, c2).float())
        assert torch.allclose(out["ddim-inversion"][i], ddim_edit(points, z0, s, 10, c0, c2).float())
    # at full strength the target class wins: the exact denoiser of a point mass returns it (up
    # to the last step's s_0 eps_hat, since the grid ends at abar_0 < 1)
    target = points.mus[2:3].float()
    assert (out["sdedit"][1] - target).norm() < 0.1 * (z0.float() - target).norm()
    # weaker edits keep more of the input
    assert (out["sdedit"][0] - z0.float()).norm() < (out["sdedit"][1] - z0.float()).norm()


def test_edit_sweep_errors(points):
    z0 = points.mus[:2]
    with pytest.raises(ValueError, match="annealed_noise"):
        edit_sweep(points, z0, [0.5], target="c1", progress=False)
    with pytest.raises(ValueError, match="methods must be one of"):
        edit_sweep(points, z0, [0.5], methods=("sdedit", "magic"), progress=False)
    with pytest.raises(ValueError, match="shape"):
        edit_sweep(points, z0, [0.5], annealed_noise=torch.zeros(1, 1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="strength"):
        edit_sweep(points, z0, [0.0], methods=("sdedit",), progress=False)
