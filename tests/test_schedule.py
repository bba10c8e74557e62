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
