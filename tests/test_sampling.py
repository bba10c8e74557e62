import numpy as np
import pytest
import torch

from lib.data import photo_crops
from lib.models import DiffusionModel, GaussianModel
from lib.schedule import sd_alphas_cumprod
from lib.sampling import (ddim_invert, ddim_inverse_scheduler, ddim_sample, ddim_scheduler,
                          ddim_step, ddim_timesteps, decode_batched, gaussian_ddim_gain,
                          gaussian_ddim_inversion_gain, sample_batched,
                          ddim_edit, encode_batched, redo_steps, sdedit)


def gaussian_model(D_side=4, seed=0, lam_min=1e-3):
    """A Gaussian model on (3, s, s) samples with a random spread-out covariance."""
    rng = np.random.default_rng(seed)
    D = 3 * D_side * D_side
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    lam = np.geomspace(1.0, lam_min, D)
    return GaussianModel(rng.normal(0, 0.2, D), (Q * lam) @ Q.T, (3, D_side, D_side))


def test_timesteps_match_diffusers():
    s = ddim_scheduler()
    s.set_timesteps(50)
    assert ddim_timesteps(50) == s.timesteps.tolist()
    assert ddim_timesteps(50)[:2] == [981, 961] and ddim_timesteps(50)[-1] == 1
    with pytest.raises(ValueError):
        ddim_timesteps(0)
    with pytest.raises(ValueError, match="999"):
        ddim_timesteps(1000)


def test_trailing_spacing_matches_diffusers_loop():
    assert ddim_timesteps(4, "trailing") == [999, 749, 499, 249]
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(4, "linear")
    model = gaussian_model()
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sched = ddim_scheduler("trailing")
    sched.set_timesteps(4)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    zz = z.clone()
    for t in sched.timesteps.tolist():
        zz = sched.step(model.eps(zz, t), t, zz, eta=0.0).prev_sample
    ours = ddim_sample(model, z, 4, spacing="trailing")
    assert torch.allclose(ours, zz, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(ddim_sample(model, z, 4), zz, atol=1e-3)  # the grids differ


def test_sample_batched_equals_one_call_and_passes_labels():
    model = gaussian_model()
    z = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    whole = ddim_sample(model, z, 10)
    assert torch.allclose(sample_batched(model, z, 10, batch_size=2, progress=False), whole, atol=1e-6)
    seen = []
    model.cond = lambda labels: seen.append(labels)  # the Gaussian ignores cond; record the batches
    sample_batched(model, z, 2, labels=list("abcde"), batch_size=2, progress=False)
    assert seen == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="one label per noise"):
        sample_batched(model, z, 2, labels=["a"], progress=False)


def test_decode_batched_is_the_identity_for_pixel_models_and_shrinks_by_area():
    model = gaussian_model()
    z = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert torch.equal(decode_batched(model, z, batch_size=2), z)
    assert decode_batched(model, 3 * z).abs().max() <= 1  # clamped to the image range
    small = decode_batched(model, z, batch_size=3, size=2)
    assert small.shape == (5, 3, 2, 2)
    assert torch.allclose(small[:, :, 0, 0], z[:, :, :2, :2].mean(dim=(2, 3)), atol=1e-6)


@pytest.mark.parametrize("steps,spacing", [(25, "leading"), (4, "trailing")])
def test_gaussian_ddim_gain_is_the_whole_run_in_closed_form(steps, spacing):
    model = gaussian_model()
    eps = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out = ddim_sample(model, eps, steps, spacing=spacing).reshape(4, -1)
    lam, U = model.eigvals, model.eigvecs
    g, abar_start = gaussian_ddim_gain(lam.numpy(), model.alphas_cumprod, steps, spacing)
    g = torch.as_tensor(g)
    a_T, a_0 = abar_start ** 0.5, model.alphas_cumprod[0].sqrt()
    expected = a_0 * model.mean + ((eps.reshape(4, -1) - a_T * model.mean) @ U * g) @ U.T
    assert torch.allclose(out, expected, rtol=1e-8, atol=1e-8)
    assert abar_start == pytest.approx(float(model.alphas_cumprod[ddim_timesteps(steps, spacing)[0]]))


@pytest.mark.parametrize("steps", [10, 50])
def test_each_step_matches_diffusers_ddim(steps):
    model = gaussian_model()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    sched = ddim_scheduler()
    sched.set_timesteps(steps)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    delta = 1000 // steps
    for t in sched.timesteps.tolist()[:3] + sched.timesteps.tolist()[-2:]:
        eps = model.eps(z, t)
        ours = ddim_step(model, z, t, t - delta, eps)
        theirs = sched.step(eps, t, z, eta=0.0).prev_sample
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_each_inverse_step_matches_diffusers():
    model = gaussian_model()
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inv = ddim_inverse_scheduler()
    inv.set_timesteps(20)
    inv.alphas_cumprod = inv.alphas_cumprod.double()
    inv.initial_alpha_cumprod = inv.initial_alpha_cumprod.double()
    for t in inv.timesteps.tolist()[:2] + inv.timesteps.tolist()[-1:]:
        eps = model.eps(z, t)
        theirs = inv.step(eps, t, z).prev_sample
        assert torch.allclose(ddim_step(model, z, t - 50, t, eps), theirs, rtol=1e-6, atol=1e-6)
    # and the whole loop equals stepping diffusers' scheduler with the same model calls
    zz = z.clone()
    for t in inv.timesteps.tolist():
        zz = inv.step(model.eps(zz, t), t, zz).prev_sample
    assert torch.allclose(ddim_invert(model, z, 20), zz, rtol=1e-6, atol=1e-6)


def test_gaussian_many_step_ddim_matches_the_ode_closed_form():
    """For Gaussian data the probability-flow map keeps (z_t - a mu) / sqrt(a^2 lam + s^2) fixed
    in Sigma's eigenbasis; 500 DDIM steps must land on it."""
    model = gaussian_model()
    zT = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = ddim_sample(model, zT, 500).reshape(3, -1)
    abar = model.alphas_cumprod
    a_T, s_T = abar[999].sqrt(), (1 - abar[999]).sqrt()
    a_0, s_0 = abar[0].sqrt(), (1 - abar[0]).sqrt()
    lam, U = model.eigvals, model.eigvecs
    y = (zT.reshape(3, -1) - a_T * model.mean) @ U
    expected = a_0 * model.mean + (y * ((a_0**2 * lam + s_0**2) / (a_T**2 * lam + s_T**2)).sqrt()) @ U.T
    rel = (out - expected).norm() / expected.norm()
    assert rel < 0.02
    # few steps are visibly worse: the test can tell a DDIM loop from the closed form
    out10 = ddim_sample(model, zT, 10).reshape(3, -1)
    assert (out10 - expected).norm() / expected.norm() > rel


def test_invert_then_sample_round_trip():
    """DDIM inversion is approximate (noise predicted one grid step off); its round-trip error
    is small and shrinks with the number of steps."""
    model = gaussian_model(lam_min=0.05)
    z0 = model.mean.reshape(1, 3, 4, 4) + 0.3 * torch.randn(2, 3, 4, 4, dtype=torch.float64,
                                                            generator=torch.Generator().manual_seed(3))
    errors = []
    for steps in (25, 100, 400):
        back = ddim_sample(model, ddim_invert(model, z0, steps), steps)
        errors.append(float((back - z0).norm() / z0.norm()))
    assert errors[-1] < 0.02
    assert errors[0] > errors[1] > errors[2]
    # partial inversion, then sampling from the same grid point
    mid = ddim_invert(model, z0, 400, end_step=160)
    back = ddim_sample(model, mid, 400, start_step=240)
    assert (back - z0).norm() / z0.norm() < 0.02
    assert not torch.allclose(mid, z0, atol=0.1)  # it did move away and come back


def test_sdedit():
    model = gaussian_model()
    z0 = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    noise = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a = sdedit(model, z0, 0.5, noise, steps=20)
    b = sdedit(model, z0, 0.5, noise, steps=20)
    assert torch.equal(a, b)
    # strength 1 from pure noise equals plain sampling from the noised state at the first step
    abar = model.alphas_cumprod[ddim_timesteps(20)[0]]
    full = sdedit(model, z0, 1.0, noise, steps=20)
    assert torch.allclose(full, ddim_sample(model, abar.sqrt() * z0 + (1 - abar).sqrt() * noise, 20))
    # weaker edits stay closer to the input
    near = sdedit(model, z0 + 0.3, 0.1, noise, steps=20)
    far = sdedit(model, z0 + 0.3, 0.9, noise, steps=20)
    assert (near - 0.3).norm() < (far - 0.3).norm()
    with pytest.raises(ValueError, match="strength"):
        sdedit(model, z0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        sdedit(model, z0, 0.5, noise[:1])


class ConstantEps(DiffusionModel):
    """eps_hat = cond (or 0): DDIM moves along a straight line in (a, s), so inversion is exact."""

    name = "constant"

    def __init__(self):
        super().__init__(ddim_scheduler().alphas_cumprod, (1, 2, 2))

    def _predict(self, x_t, t, cond):
        return torch.zeros_like(x_t) if cond is None else cond.expand_as(x_t).to(x_t.dtype)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_edit_known_answers(spacing):
    m = ConstantEps()
    z0 = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    c = torch.full((1, 1, 1, 1), 0.4, dtype=torch.float64)
    for strength in (0.25, 0.6, 1.0):
        # same condition both ways: inversion is exact for this model, so the edit is the identity
        same = ddim_edit(m, z0, strength, 8, c, c, spacing=spacing)
        assert torch.allclose(same, z0, atol=1e-10)
        # DDIM with a constant eps keeps (z - s c) / a; inverting with eps = c and sampling back
        # with eps = 0 lands on z0 + c (a_0 s_t / a_t - s_0), where t is the grid step the edit
        # starts from (the same as SDEdit's)
        ts = ddim_timesteps(8, spacing)
        t = ts[8 - max(1, round(strength * 8))]
        abar = m.alphas_cumprod
        a_t, s_t, a_0, s_0 = abar[t].sqrt(), (1 - abar[t]).sqrt(), abar[0].sqrt(), (1 - abar[0]).sqrt()
        edited = ddim_edit(m, z0, strength, 8, c, None, spacing=spacing)
        assert torch.allclose(edited, z0 + 0.4 * (a_0 * s_t / a_t - s_0), atol=1e-10)
    with pytest.raises(ValueError, match="strength"):
        ddim_edit(m, z0, 1.5, 8)


def test_ddim_edit_start_on_a_grid_that_does_not_divide_1000():
    """(Leading grid only: with ``trailing`` and 1000 % steps != 0 the grid's gaps differ from
    1000 // steps, which diffusers' step rule, and so ours, assumes.)"""
    spacing = "leading"
    m = ConstantEps()
    z0 = torch.randn(2, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    c = torch.full((1, 1, 1, 1), 0.4, dtype=torch.float64)
    abar = m.alphas_cumprod
    ts = ddim_timesteps(7, spacing)
    for strength in (0.2, 0.5, 0.9):
        t = ts[7 - redo_steps(strength, 7)]
        a_t, s_t, a_0, s_0 = abar[t].sqrt(), (1 - abar[t]).sqrt(), abar[0].sqrt(), (1 - abar[0]).sqrt()
        edited = ddim_edit(m, z0, strength, 7, c, None, spacing=spacing)
        assert torch.allclose(edited, z0 + 0.4 * (a_0 * s_t / a_t - s_0), atol=1e-10)


def test_redo_steps_rounds_half_up():
    assert [redo_steps(s, 25) for s in (0.3, 0.5, 0.7, 0.9, 1.0)] == [8, 13, 18, 23, 25]
    assert redo_steps(0.01, 25) == 1 and redo_steps(0.875, 4) == 4 and redo_steps(0.5, 3) == 2
    with pytest.raises(ValueError, match="strength"):
        redo_steps(0, 25)


def test_sdedit_trailing_starts_on_the_trailing_grid():
    m = ConstantEps()
    z0 = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    noise = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    # with eps_hat = 0 DDIM keeps z / a, so from z_t = s_t * noise the result is a_0 s_t / a_t *
    # noise; strength 1 on the trailing grid must start at t = 999
    out = sdedit(m, z0, 1.0, noise, steps=4, spacing="trailing")
    abar = m.alphas_cumprod
    expected = ((1 - abar[999]).sqrt() / abar[999].sqrt()) * abar[0].sqrt()
    assert torch.allclose(out, expected * noise)


class Affine(DiffusionModel):
    """A model whose raw output is a known function, to test prediction types and guidance."""

    name = "affine"

    def __init__(self, prediction_type):
        super().__init__(torch.linspace(0.99, 0.01, 1000), (1, 2, 2))
        self.prediction_type = prediction_type

    def _predict(self, x_t, t, cond):
        return 0.5 * x_t + (0.0 if cond is None else cond)


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_return_epsilon(ptype):
    m = Affine(ptype)
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    out = 0.5 * x
    abar = m.alphas_cumprod[t].view(-1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    expected = {"epsilon": out, "v_prediction": a * out + s * x, "sample": (x - a * out) / s}[ptype]
    assert torch.allclose(m.eps(x, t), expected)
    # consistency: the eps returned reconstructs the model's x0 / v
    if ptype == "sample":
        assert torch.allclose((x - s * m.eps(x, t)) / a, out)


def test_guidance_is_eq2_and_input_checks():
    m = Affine("epsilon")
    x = torch.randn(2, 1, 2, 2, dtype=torch.float64)
    c = torch.full((2, 1, 2, 2), 1.0, dtype=torch.float64)
    u = m.eps(x, 10)
    cc = m.eps(x, 10, c)
    assert torch.allclose(m.eps(x, 10, c, guidance_scale=7.5), u + 7.5 * (cc - u))
    assert torch.allclose(m.eps(x, 10, c, guidance_scale=1.0), cc)
    with pytest.raises(ValueError, match="shape"):
        m.eps(torch.zeros(2, 3, 2, 2), 10)
    with pytest.raises(ValueError, match="NaN"):
        m.eps(torch.full((1, 1, 2, 2), float("nan")), 10)
    with pytest.raises(ValueError, match=r"t must be an integer timestep in \[0, 1000\), got 1000"):
        m.eps(x, 1000)
    # floats are refused, not truncated (2.5 is no timestep; int() would make it 2)
    for bad in (2.5, 999.9, "500", True, torch.tensor([1.7, 2.2]), np.array([1.0, 2.0])):
        with pytest.raises(ValueError, match="t must"):
            m.eps(x, bad)
    assert torch.equal(m.eps(x, np.int64(10)), m.eps(x, torch.tensor([10, 10])))


def test_invert_then_sample_round_trip_on_an_embedded_model():
    from lib.models import load_model

    model = load_model("tiny-a")
    z0 = torch.from_numpy(photo_crops(2, 32, split="test", seed=0))
    back = ddim_sample(model, ddim_invert(model, z0, 50), 50)
    err = float((back - z0).norm() / z0.norm())
    assert err < 0.1, err


def test_encode_batched_tensor_and_batches():
    class Halve(DiffusionModel):
        def __init__(self):
            super().__init__(sd_alphas_cumprod(), (3, 2, 2))

        def encode(self, images):
            return images / 2

    m = Halve()
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(encode_batched(m, x, batch_size=2), x / 2)
    assert torch.equal(encode_batched(m, iter([x[:3].numpy(), x[3:].numpy()])), x / 2)
    with pytest.raises(ValueError, match="no images"):
        encode_batched(m, iter([]))
    with pytest.raises(ValueError, match="NaN"):
        encode_batched(m, torch.full((1, 3, 4, 4), float("nan")))


@pytest.mark.parametrize("steps,spacing", [(10, "leading"), (25, "leading"), (7, "trailing")])
def test_gaussian_ddim_inversion_gain_is_the_whole_inversion_in_closed_form(steps, spacing):
    """ddim_invert on the exact Gaussian denoiser is affine; its linear part along each
    eigenvector of Sigma is the closed-form gain (differences of two inputs cancel the offset)."""
    model = gaussian_model()
    g = torch.Generator().manual_seed(7)
    z0 = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    dz = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    diff = (ddim_invert(model, z0 + dz, steps, spacing=spacing)
            - ddim_invert(model, z0, steps, spacing=spacing)).reshape(3, -1)
    U = model.eigvecs
    gain = torch.as_tensor(gaussian_ddim_inversion_gain(model.eigvals.numpy(), model.alphas_cumprod,
                                                        steps, spacing))
    expected = ((dz.reshape(3, -1) @ U) * gain) @ U.T
    assert torch.allclose(diff, expected, rtol=1e-6, atol=1e-9)
    # between the saturations the law is ZCA's lambda^-1/2 (the DDIM map's inverse)
    lam = np.geomspace(0.1, 10, 9)
    g_inv = gaussian_ddim_inversion_gain(lam, model.alphas_cumprod, 50)
    assert np.all(np.abs(g_inv * np.sqrt(lam) - 1) < 0.15)


def test_ddim_inversion_pairs_are_ddim_invert_batch_by_batch():
    from lib.sampling import ddim_inversion_pairs

    model = gaussian_model()
    z0 = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    X, Z = ddim_inversion_pairs(model, z0, 10, batch_size=2, progress=False)
    assert X.shape == Z.shape == (5, 48) and np.array_equal(X, z0.reshape(5, -1).numpy())
    assert np.allclose(Z, ddim_invert(model, z0, 10).reshape(5, -1).numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        ddim_inversion_pairs(model, z0[0], 10)


class _DeviceStrictModel:
    """A model on torch's ``meta`` device (tensors with shapes and no values) whose ``eps``
    asserts that its input lives there in its dtype: a GPU's device path, without a GPU."""

    def __init__(self):
        from lib.schedule import sd_alphas_cumprod

        self.device, self.dtype = torch.device("meta"), torch.float32
        self.alphas_cumprod = sd_alphas_cumprod().double()
        self.calls = 0

    def eps(self, x_t, t, cond=None, guidance_scale=None):
        assert x_t.device == self.device and x_t.dtype == self.dtype, (x_t.device, x_t.dtype)
        self.calls += 1
        return torch.zeros_like(x_t)


@pytest.mark.parametrize("where", ["cpu", "meta"])
def test_sdedit_runs_on_the_models_device(where):
    # the noise is drawn on the CPU (a seed gives the same noise anywhere) and must follow z0
    # onto the model's device; before the fix Eq. (1) mixed a CPU noise with the device's z0
    from lib.sampling import sdedit

    model = _DeviceStrictModel()
    z0 = torch.zeros(2, 3, 8, 8, device=where)
    out = sdedit(model, z0, 0.5, steps=10, generator=torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (2, 3, 8, 8) and model.calls == 5
