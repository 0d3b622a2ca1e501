"""The objectives: EDM's preconditioning and loss weight against the paper's formulas, the DDPM
schedules, and the eps and v parametrisations giving the same denoiser D(x; sigma)."""

from __future__ import annotations

import math

import pytest
import torch

from genforge.conditioning import Condition
from genforge.families.diffusion.config import DiffusionConfig
from genforge.families.diffusion.objectives import (
    alphas_cumprod,
    denoise,
    edm_loss_weight,
    edm_preconditioning,
    schedule_sigmas,
    sigma_to_t,
    training_loss,
)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 1.0, 80.0])
def test_edm_preconditioning_matches_table_1(sigma):
    """Karras et al. 2022, table 1, written out by hand for sigma_data = 0.5."""
    sd = 0.5
    c_skip, c_out, c_in, c_noise = (v.item() for v in edm_preconditioning(torch.tensor(sigma, dtype=torch.float64), sd))
    assert c_skip == pytest.approx(sd ** 2 / (sigma ** 2 + sd ** 2), rel=1e-12)
    assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma ** 2 + sd ** 2), rel=1e-12)
    assert c_in == pytest.approx(1 / math.sqrt(sd ** 2 + sigma ** 2), rel=1e-12)
    assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-12)
    weight = edm_loss_weight(torch.tensor(sigma, dtype=torch.float64), sd).item()
    assert weight == pytest.approx((sigma ** 2 + sd ** 2) / (sigma * sd) ** 2, rel=1e-12)
    # The point of the weighting (EDM section 5): lambda(sigma) c_out(sigma)^2 = 1 at every level.
    assert weight * c_out ** 2 == pytest.approx(1.0, rel=1e-12)
    # ... and of c_in: the network's input has unit variance for data of std sigma_data.
    assert c_in ** 2 * (sd ** 2 + sigma ** 2) == pytest.approx(1.0, rel=1e-12)


def test_edm_denoiser_is_c_skip_x_plus_c_out_f():
    """D = c_skip x + c_out F(c_in x, c_noise), checked with a network that records its input."""
    seen = {}

    class Net(torch.nn.Module):
        def forward(self, x, noise, *args):
            seen["x"], seen["noise"] = x, noise
            return torch.full_like(x, 0.25)

    x, sigma = torch.randn(3, 1, 4, 4), torch.tensor(2.0)
    out = denoise(Net(), x, sigma, Condition(), DiffusionConfig())
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, 0.5)
    assert torch.allclose(out, c_skip * x + c_out * 0.25)
    assert torch.allclose(seen["x"], c_in * x) and torch.allclose(seen["noise"], c_noise.expand(3))


def test_ddpm_schedules():
    linear = alphas_cumprod("linear", 1000)
    betas = 1 - linear / torch.cat([torch.ones(1, dtype=torch.float64), linear[:-1]])
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    cosine = alphas_cumprod("cosine", 1000)
    assert torch.all(cosine[1:] < cosine[:-1]) and cosine[0] > 0.999 and cosine[-1] < 1e-4
    # Nichol and Dhariwal eq. 17: abar_t = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi / 2).
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert cosine[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)


def test_sigma_to_t_inverts_the_schedule():
    sigmas = schedule_sigmas(DiffusionConfig(objective="eps"))
    t = sigma_to_t(sigmas[[0, 10, 500, 999]], sigmas)
    assert torch.allclose(t, torch.tensor([0.0, 10.0, 500.0, 999.0]), atol=1e-3)
    between = sigma_to_t((sigmas[10] * sigmas[11]).sqrt()[None], sigmas)  # halfway in ln(sigma)
    assert between.item() == pytest.approx(10.5, abs=1e-3)


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_eps_and_v_networks_that_are_exact_give_the_clean_image(objective):
    """A network that returns the true eps (or v) of a noised image makes D return the image."""
    d = DiffusionConfig(objective=objective, schedule="cosine")
    y = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(y)
    sigma = torch.tensor(1.7, dtype=torch.float64)
    x = y + sigma * eps  # variance-exploding form; the VP input is x / sqrt(1 + sigma^2)
    alpha, s = 1 / math.sqrt(1 + 1.7 ** 2), 1.7 / math.sqrt(1 + 1.7 ** 2)

    class Oracle(torch.nn.Module):
        def forward(self, x_vp, t, *args):
            assert torch.allclose(x_vp.double(), alpha * y + s * eps, atol=1e-5)
            return (eps if objective == "eps" else alpha * eps - s * y).float()

    out = denoise(Oracle(), x.float(), sigma, Condition(), d)
    assert torch.allclose(out.double(), y, atol=1e-5)


@pytest.mark.parametrize("objective", ["edm", "eps", "v"])
def test_training_loss_is_finite_and_has_gradients(objective):
    from genforge.families.diffusion.networks import UNet

    torch.manual_seed(0)
    net = UNet(1, 8, 8, (1, 2), 1, (4,), 0.0, embedding="fourier" if objective == "edm" else "positional")
    loss = training_loss(net, torch.rand(4, 1, 8, 8) * 2 - 1, Condition(), DiffusionConfig(objective=objective))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters())
