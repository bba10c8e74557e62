import pytest
import torch

from lib.schedule import forward_noise, sd_alphas_cumprod


def test_sd_schedule_closed_form():
    abar = sd_alphas_cumprod().double()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert torch.allclose(abar, torch.cumprod(1 - betas, 0), rtol=1e-5)
    assert abar[-1] == pytest.approx(0.0047, abs=1e-4)  # SD's abar_T


def test_forward_noise_is_eq1():
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    zt = forward_noise(z0, eps, t)
    abar = sd_alphas_cumprod()[t].view(-1, 1, 1, 1)
    assert torch.allclose(zt, abar.sqrt() * z0 + (1 - abar).sqrt() * eps, atol=1e-6)
    # a single t for the whole batch, numpy input
    assert torch.allclose(forward_noise(z0.numpy(), eps.numpy(), 500), forward_noise(z0, eps, [500] * 4))
    with pytest.raises(ValueError, match="same shape"):
        forward_noise(z0, eps[:2], 3)
    with pytest.raises(ValueError, match="999"):
        forward_noise(z0, eps, 1000)


def test_noise_scales_for_any_schedule_known_answers():
    from lib.schedule import noise_scales

    abar = torch.tensor([0.81, 0.36, 0.04], dtype=torch.float64)  # a three-step schedule
    a, s = noise_scales(1, abar, dtype=torch.float64)
    assert a.shape == () and float(a) == pytest.approx(0.6) and float(s) == pytest.approx(0.8)
    a, s = noise_scales([0, 2], abar, dtype=torch.float64)
    assert a.shape == (2, 1, 1, 1) and torch.allclose(a.flatten(), torch.tensor([0.9, 0.2], dtype=torch.float64))
    assert torch.allclose(a**2 + s**2, torch.ones_like(a))  # sqrt(abar)^2 + sqrt(1 - abar)^2 = 1
    z0, eps = torch.ones(2, 1, 1, 1, dtype=torch.float64), torch.full((2, 1, 1, 1), 2.0, dtype=torch.float64)
    zt = forward_noise(z0, eps, [0, 2], abar)  # the model's own schedule, not SD's
    assert torch.allclose(zt.flatten(), torch.tensor([0.9 + 2 * 0.43589, 0.2 + 2 * 0.97980],
                                                      dtype=torch.float64), atol=1e-5)
    for bad, words in ((1.5, "integers"), (True, "real numeric"), ([], "no timestep"),
                       (3, r"\[0, 2\]"), ("3", "real numeric"), (None, "real numeric")):
        with pytest.raises((ValueError, TypeError), match=words):
            noise_scales(bad, abar)
    with pytest.raises(ValueError, match="integers"):
        forward_noise(z0, eps, torch.tensor([0.9, 1.9]), abar)  # not truncated to [0, 1]
