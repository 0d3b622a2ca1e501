"""Losses against hand-computed values."""

from __future__ import annotations

import math

import torch

from genforge import losses


def test_discriminator_loss_at_zero_logits():
    # D(x) = 0.5 everywhere: -log 0.5 - log 0.5 = 2 log 2
    z = torch.zeros(5)
    assert math.isclose(losses.discriminator_loss(z, z).item(), 2 * math.log(2), rel_tol=1e-6)


def test_discriminator_loss_known_logits():
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    expected = -math.log(1 / (1 + math.exp(-2))) - math.log(1 - 1 / (1 + math.exp(1)))
    assert math.isclose(losses.discriminator_loss(real, fake).item(), expected, rel_tol=1e-6)


def test_generator_losses_values():
    t = torch.tensor([0.5])
    s = 1 / (1 + math.exp(-0.5))
    assert math.isclose(losses.generator_loss_minimax(t).item(), math.log(1 - s), rel_tol=1e-6)
    assert math.isclose(losses.generator_loss_non_saturating(t).item(), -math.log(s), rel_tol=1e-6)


def grad_at(fn, value: float) -> float:
    t = torch.tensor([value], requires_grad=True)
    fn(t).backward()
    return t.grad.item()


def test_generator_gradients():
    """Minimax: d/dt log(1 - sigmoid(t)) = -sigmoid(t); non-saturating: d/dt -log sigmoid(t) = sigmoid(t) - 1.

    At t = -5 (D confidently rejects the fakes) the minimax gradient nearly vanishes, the
    non-saturating one does not: the reason for the variant (Goodfellow et al. 2014, section 3).
    """
    for t in (-5.0, 0.0, 3.0):
        s = 1 / (1 + math.exp(-t))
        assert math.isclose(grad_at(losses.generator_loss_minimax, t), -s, rel_tol=1e-5)
        assert math.isclose(grad_at(losses.generator_loss_non_saturating, t), s - 1, rel_tol=1e-5)
    assert abs(grad_at(losses.generator_loss_minimax, -5.0)) < 0.01
    assert abs(grad_at(losses.generator_loss_non_saturating, -5.0)) > 0.99


def test_losses_stable_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for value in (losses.discriminator_loss(big, -big), losses.generator_loss_minimax(big),
                  losses.generator_loss_non_saturating(big)):
        assert torch.isfinite(value)
    assert math.isclose(losses.discriminator_loss(torch.tensor([1e4]), torch.tensor([-1e4])).item(), 0.0, abs_tol=1e-6)


def test_kl_of_standard_normal_is_zero():
    assert losses.kl_to_standard_normal(torch.zeros(4, 8), torch.zeros(4, 8)).item() == 0.0


def test_kl_known_value():
    # KL(N(1, e^1) || N(0, 1)) per dim = 0.5 * (e + 1 - 1 - 1) = 0.5 * (e - 1); 3 dims
    mean, logvar = torch.ones(2, 3), torch.ones(2, 3)
    assert math.isclose(losses.kl_to_standard_normal(mean, logvar).item(), 3 * 0.5 * (math.e - 1), rel_tol=1e-6)


def test_bernoulli_reconstruction_matches_formula():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    expected = -math.log(0.5) - math.log(1 - 1 / (1 + math.exp(-2)))
    assert math.isclose(losses.bernoulli_reconstruction(logits, target).item(), expected, rel_tol=1e-6)


def test_gaussian_reconstruction_sums_pixels_and_averages_batch():
    mean = torch.zeros(2, 1, 2, 2)
    target = torch.ones(2, 1, 2, 2)
    target[1] = 2.0
    assert losses.gaussian_reconstruction(mean, target).item() == (4 * 1 + 4 * 4) / 2


def test_importance_weight_with_posterior_equal_prior():
    """With q = p(z) = N(0, I), log w reduces to log p(x|z)."""
    z = torch.randn(3, 4)
    out = torch.randn(3, 1, 2, 2)
    x = torch.rand(3, 1, 2, 2)
    w = losses.log_importance_weights(x, out, z, torch.zeros(3, 4), torch.zeros(3, 4), "bernoulli")
    assert torch.allclose(w, losses.reconstruction_log_likelihood(out, x, "bernoulli"))
    assert torch.allclose(-losses.reconstruction_log_likelihood(out, x, "bernoulli").mean(),
                          losses.bernoulli_reconstruction(out, x))
