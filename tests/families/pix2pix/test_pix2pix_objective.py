"""The generator objective's L1 weight, the learning-rate schedule and the paired jitter."""

import pytest
import torch

from genforge.data.paired import jitter_pairs
from genforge.families.pix2pix.step import pix2pix_generator_objective
from genforge.losses import generator_loss_non_saturating
from genforge.nn.schedule import linear_decay_factor
from tests.families.pix2pix.pix2pix_helpers import tiny_config


def _cfg(**pix2pix):
    return tiny_config("pix2pix", pix2pix=pix2pix)


def test_l1_term_has_weight_lambda():
    fake = torch.tensor([[[[0.5, -0.5], [1.0, 0.0]]]])
    target = torch.tensor([[[[0.0, -0.5], [0.0, 1.0]]]])  # |diff| = 0.5, 0, 1, 1 -> mean 0.625
    logits = torch.tensor([[[[0.3, -1.2]]]])
    adversarial = generator_loss_non_saturating(logits)
    total, adv, l1 = pix2pix_generator_objective(logits, fake, target, _cfg())  # lambda 100 by default
    assert l1.item() == pytest.approx(0.625)
    assert adv.item() == pytest.approx(adversarial.item())
    assert total.item() == pytest.approx(adversarial.item() + 100 * 0.625)
    total7, _, _ = pix2pix_generator_objective(logits, fake, target, _cfg(lambda_l1=7.0))
    assert total7.item() == pytest.approx(adversarial.item() + 7 * 0.625)


def test_l1_only_ablation_has_no_adversarial_term():
    fake, target = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    total, adv, l1 = pix2pix_generator_objective(None, fake, target, _cfg(gan_weight=0.0))
    assert adv.item() == 0 and total.item() == pytest.approx(100 * 0.5)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    factors = [linear_decay_factor(s, decay_start=6, decay_steps=4) for s in range(12)]
    assert factors == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0, 0])
    assert linear_decay_factor(5, 0, 0) == 1.0


def test_jitter_and_flip_are_the_same_on_both_halves():
    torch.manual_seed(0)
    source = torch.rand(16, 1, 8, 8)
    target = torch.cat([source, -source], dim=1)  # a 2-channel target tied to the source pixel by pixel
    a, b = jitter_pairs(source, target, jitter=3, flip=True)
    assert a.shape == source.shape and b.shape == target.shape
    assert torch.equal(b[:, :1], a) and torch.equal(b[:, 1:], -a)
    assert not torch.allclose(a, source)  # something moved


def test_flip_mirrors_some_pairs_and_keeps_others():
    torch.manual_seed(1)
    source = torch.arange(64.0).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    a, b = jitter_pairs(source, source.clone(), jitter=0, flip=True)
    flipped = torch.tensor([torch.equal(x, source[0].flip(-1)) for x in a])
    kept = torch.tensor([torch.equal(x, source[0]) for x in a])
    assert (flipped | kept).all() and flipped.any() and kept.any() and torch.equal(a, b)


def test_scores_by_hand():
    from genforge.families.pix2pix.translate import MAX_PSNR, score

    target = torch.zeros(2, 1, 16, 16)
    output = target.clone()
    output[0] += 0.1  # MSE 0.01 -> PSNR 20 dB; image 1 matches exactly
    values = score(output, target)
    assert values["l1"].tolist() == pytest.approx([0.1, 0.0])
    assert values["psnr"].tolist() == pytest.approx([20.0, MAX_PSNR])
    assert values["ssim"][1].item() == pytest.approx(1.0)
