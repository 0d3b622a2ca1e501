"""The StyleGAN2 step's parts against independent computations: R1 and the path-length penalty
(autograd Jacobians), style mixing's crossover, ADA's p through the step, the lazy-regularisation
learning rates and betas, the EMA schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genforge.conditioning import Batch
from genforge.config import replace
from genforge.families import registry
from genforge.families.stylegan2.family import betas, ema_decay, learning_rates
from genforge.families.stylegan2.networks import Discriminator, Generator
from genforge.families.stylegan2.step import StyleGAN2State, mixed_ws, path_lengths, r1_penalty, stylegan2_step
from genforge.runtime import Precision
from genforge.training.optim import make_optimizers


def small_generator(seed=0):
    torch.manual_seed(seed)
    g = Generator(4, 4, 0, 32, 1, 2, 8, 2)
    for p in g.parameters():
        if p.ndim == 0:
            p.data.fill_(0.3)  # noise strengths: not zero, so noise matters
    return g


def test_r1_matches_an_independent_gradient():
    torch.manual_seed(0)
    d = Discriminator(32, 1, 2, 8)
    x = torch.randn(4, 1, 32, 32)
    penalty, _ = r1_penalty(d, x, (), lambda v: v)
    jac = torch.autograd.functional.jacobian(lambda v: d(v).sum(), x)  # d(sum of logits)/dx
    torch.testing.assert_close(penalty, jac.square().sum(dim=(1, 2, 3)), rtol=1e-4, atol=1e-6)


def test_path_lengths_match_central_differences():
    """J^T y computed without autograd: central differences of <G(w), y> along each w coordinate (float64)."""
    g = small_generator().double()
    ws = torch.randn(2, g.num_ws, 4, dtype=torch.float64).requires_grad_(True)
    images = g.synthesis(ws, "const")
    y = torch.randn_like(images) / math.sqrt(32 * 32)
    lengths = path_lengths(images, ws, y)
    h = 1e-5
    with torch.no_grad():
        for i in range(2):
            jty = torch.zeros(g.num_ws, 4, dtype=torch.float64)
            for layer in range(g.num_ws):
                for k in range(4):
                    step = torch.zeros_like(ws[i])
                    step[layer, k] = h
                    plus = (g.synthesis((ws[i] + step)[None], "const")[0] * y[i]).sum()
                    minus = (g.synthesis((ws[i] - step)[None], "const")[0] * y[i]).sum()
                    jty[layer, k] = (plus - minus) / (2 * h)
            expected = jty.square().sum(dim=1).mean().sqrt()
            assert lengths[i].item() == pytest.approx(expected.item(), rel=1e-6)


def test_style_mixing_switches_w_at_the_crossover_layer():
    g = small_generator()
    z = torch.randn(5, 4)
    torch.manual_seed(3)
    assert torch.equal(mixed_ws(g, z, None, 0.0), g.ws(z))
    for seed in range(5):
        torch.manual_seed(seed)
        ws = mixed_ws(g, z, None, 1.0)
        own = g.ws(z)
        same = (ws == own).all(dim=2).all(dim=0)  # per layer: every sample keeps its own w
        k = int(same.long().argmin())
        assert 1 <= k < g.num_ws and same[:k].all() and not same[k:].any()
        assert (ws[:, k:] == ws[:, k:k + 1]).all()  # from k on one other w per sample


class ConstantD(nn.Module):
    """A discriminator whose logits are a learned constant: its sign on reals drives ADA."""

    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, images, labels=None):
        return self.value + 0 * images.sum(dim=(1, 2, 3))


def tiny_cfg(**stylegan2):
    cfg = registry.resolve_config(overrides=[{
        "model": {"name": "stylegan2", "width": 2, "latent_dim": 4, "image_size": 32, "channels": 1},
        "train": {"batch_size": 4, "lr": 1e-9, "device": "cpu", "precision": "fp32"},
        "stylegan2": {"channel_max": 8, "ada_interval": 1, "ada_speed_images": 40, **stylegan2}}])
    return cfg


@pytest.mark.parametrize("value,direction", [(5.0, 1), (-5.0, -1)])
def test_p_rises_when_d_says_real_and_falls_when_it_says_fake(value, direction):
    cfg = tiny_cfg(augment_p=0.5, r1_gamma=0.0, pl_weight=0.0)
    nets = {"generator": small_generator(), "discriminator": ConstantD(value)}
    opts = make_optimizers(cfg, nets)
    state = StyleGAN2State(0.5)
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    for step in range(3):
        stylegan2_step(nets, opts, Batch(images, step=step), cfg, Precision(torch.device("cpu"), "fp32", list(nets)),
                       state)
    assert float(state.p) == pytest.approx(0.5 + direction * 3 * 4 / 40)


def test_lazy_regularisation_adjusts_learning_rates_and_betas():
    cfg = replace(tiny_cfg(r1_every=16, pl_every=4), train={"lr": 0.0025, "betas": [0.0, 0.99]})
    assert learning_rates(cfg) == {"generator": pytest.approx(0.0025 * 4 / 5),
                                   "discriminator": pytest.approx(0.0025 * 16 / 17)}
    assert betas(cfg)["generator"] == (0.0, pytest.approx(0.99 ** 0.8))
    assert betas(cfg)["discriminator"] == (0.0, pytest.approx(0.99 ** (16 / 17)))
    opts = make_optimizers(cfg, {"generator": nn.Linear(1, 1), "discriminator": nn.Linear(1, 1)})
    assert opts["discriminator"].param_groups[0]["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    no_reg = replace(cfg, stylegan2={"r1_gamma": 0.0, "pl_weight": 0.0})
    assert learning_rates(no_reg) == {"generator": 0.0025, "discriminator": 0.0025}


def test_ema_has_a_half_life_in_images_with_a_ramp_up():
    cfg = replace(tiny_cfg(ema_halflife_images=10_000, ema_rampup=0.05), train={"batch_size": 32})
    assert ema_decay(cfg, "generator", 10**9) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_decay(cfg, "generator", 3200) == pytest.approx(0.5 ** (32 / 160))  # ramp: 5% of 3,200 images
    assert ema_decay(replace(cfg, stylegan2={"ema_rampup": 0.0}), "generator", 3200) == pytest.approx(0.5 ** (32 / 10_000))
