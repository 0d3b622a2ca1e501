"""GAN losses at hand-computed values, and the gradient penalties against autograd done per image."""

from __future__ import annotations

import math

import pytest
import torch

from genforge import losses

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_hinge_known_logits():
    # D: mean(relu(1 - [2, -1])) + mean(relu(1 + [0.5, -3])) = mean(0, 2) + mean(1.5, 0) = 1 + 0.75
    assert losses.discriminator_loss_hinge(REAL, FAKE).item() == pytest.approx(1.75)
    # G: -mean([0.5, -3]) = 1.25
    assert losses.generator_loss_hinge(FAKE).item() == pytest.approx(1.25)


def test_wasserstein_known_logits():
    # D: mean(fake) - mean(real) = -1.25 - 0.5
    assert losses.discriminator_loss_wasserstein(REAL, FAKE).item() == pytest.approx(-1.75)
    assert losses.generator_loss_wasserstein(FAKE).item() == pytest.approx(1.25)


def test_least_squares_known_logits():
    # D: 0.5 * mean((2-1)^2, (-1-1)^2) + 0.5 * mean(0.5^2, 3^2) = 0.5 * 2.5 + 0.5 * 4.625
    assert losses.discriminator_loss_least_squares(REAL, FAKE).item() == pytest.approx(3.5625)
    # G: 0.5 * mean((0.5-1)^2, (-3-1)^2) = 0.5 * 8.125
    assert losses.generator_loss_least_squares(FAKE).item() == pytest.approx(4.0625)


def test_plain_gan_known_logits():
    # D: softplus(-2) and softplus(1) for the reals, softplus(0.5) and softplus(-3) for the fakes.
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    expected = (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2
    for name in ("minimax", "non-saturating"):
        assert losses.DISCRIMINATOR_LOSSES[name](REAL, FAKE).item() == pytest.approx(expected)
    assert losses.GENERATOR_LOSSES["non-saturating"](FAKE).item() == pytest.approx((sp(-0.5) + sp(3)) / 2)
    assert losses.GENERATOR_LOSSES["minimax"](FAKE).item() == pytest.approx(-(sp(0.5) + sp(-3)) / 2)


def test_every_configured_loss_has_both_sides():
    from genforge.errors import GenforgeError
    from genforge.families.gan.config import GANConfig

    # gan.loss is checked against losses.DISCRIMINATOR_LOSSES (GAN_LOSSES is gone): the losses the
    # config accepts are exactly those with both sides, and they are the documented five.
    documented = {"non-saturating", "minimax", "hinge", "wasserstein", "least-squares"}
    assert set(losses.GENERATOR_LOSSES) == set(losses.DISCRIMINATOR_LOSSES) == documented
    for name in documented:
        assert GANConfig(loss=name).loss == name
    with pytest.raises(GenforgeError, match="gan.loss"):
        GANConfig(loss="softmax")


def _critic():
    """A small nonlinear critic with parameters: D(x) = sum(tanh(conv(x))) * a."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, 3)
    scale = torch.nn.Parameter(torch.tensor(1.7))
    return (lambda x: torch.tanh(conv(x)).flatten(1).sum(1) * scale), list(conv.parameters()) + [scale]


def _per_image_gradients(critic, images):
    """grad_x D(x) computed one image at a time, so no image can leak into another's gradient."""
    out = []
    for img in images:
        x = img.unsqueeze(0).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        out.append(g[0])
    return torch.stack(out)


def test_gradient_penalty_matches_per_image_autograd():
    critic, _ = _critic()
    real, fake = torch.randn(5, 1, 6, 6), torch.randn(5, 1, 6, 6)
    eps = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    mixed = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    grads = _per_image_gradients(critic, mixed)
    expected = ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert losses.gradient_penalty(critic, real, fake, epsilon=eps).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_of_linear_critic_and_its_gradient():
    # D(x) = <w, x>: grad_x = w for every x, so GP = (|w| - 1)^2 and d GP / dw = 2 (|w| - 1) w / |w|.
    w = torch.tensor([3.0, 4.0], requires_grad=True)  # |w| = 5
    penalty = losses.gradient_penalty(lambda x: x @ w, torch.randn(7, 2), torch.randn(7, 2))
    assert penalty.item() == pytest.approx(16.0)
    penalty.backward()  # create_graph: the penalty can be minimised through the critic's weights
    assert torch.allclose(w.grad, 2 * 4 * torch.tensor([3.0, 4.0]) / 5)


def test_r1_matches_per_image_autograd():
    critic, params = _critic()
    real = torch.randn(4, 1, 6, 6)
    grads = _per_image_gradients(critic, real)
    expected = grads.flatten(1).pow(2).sum(1).mean()
    r1 = losses.r1_penalty(critic, real)
    assert r1.item() == pytest.approx(expected.item(), rel=1e-5)
    r1.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_r1_of_linear_critic():
    w = torch.tensor([1.0, -2.0, 2.0])  # |w|^2 = 9
    assert losses.r1_penalty(lambda x: x @ w, torch.randn(3, 3)).item() == pytest.approx(9.0)
