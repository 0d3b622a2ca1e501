"""DiffAugment: shapes, determinism under a seed, each operation doing what it says, and the GAN
step applying it to real and fake images alike."""

from __future__ import annotations

import pytest
import torch

from genforge.families.gan import augment
from genforge.families.gan import step as steps_module
from genforge.families.gan.step import gan_step
from genforge.families.registry import build_networks
from genforge.runtime import Precision
from genforge.training.optim import make_optimizers

from .conftest import gan_config, random_batch


def images(n=6, c=3, size=16, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_shape_and_determinism_under_a_seed(policy):
    x = images()
    a = augment.diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = augment.diff_augment(x, policy, torch.Generator().manual_seed(1))
    c = augment.diff_augment(x, policy, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_empty_policy_is_identity():
    x = images()
    assert augment.diff_augment(x, "") is x


def test_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="flip"):
        augment.parse_policy("color,flip")


def test_translation_shifts_whole_images_within_an_eighth():
    x = images(n=20, c=1, size=16)
    out = augment.translation(x, torch.Generator().manual_seed(0))
    for src, dst in zip(x, out):
        # Find the shift (dy, dx) in [-2, 2] (16 / 8) that reproduces dst, zeros filling the border.
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(src)
                ys, yd = (slice(0, 16 - dy), slice(dy, 16)) if dy >= 0 else (slice(-dy, 16), slice(0, 16 + dy))
                xs, xd = (slice(0, 16 - dx), slice(dx, 16)) if dx >= 0 else (slice(-dx, 16), slice(0, 16 + dx))
                shifted[:, yd, xd] = src[:, ys, xs]
                found |= torch.equal(shifted, dst)
        assert found


def test_cutout_zeroes_one_square_of_half_the_side():
    x = images(n=20, c=2, size=16) + 5  # no zeros in the input
    out = augment.cutout(x, torch.Generator().manual_seed(0))
    for src, dst in zip(x, out):
        zero = (dst == 0).all(0)
        assert torch.equal(dst[:, ~zero], src[:, ~zero])  # untouched outside the square
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert zero.sum() == len(rows) * len(cols)  # a rectangle...
        assert len(rows) <= 8 and len(cols) <= 8 and zero.sum() > 0  # ... of at most 8 x 8, clipped by the border


def test_color_is_a_per_image_affine_change_of_values():
    x = images(n=4, c=1, size=8)
    out = augment.color(x, torch.Generator().manual_seed(0))
    for src, dst in zip(x, out):
        # For gray images, brightness and contrast give dst = a * src + b for one (a, b) per image.
        design = torch.stack([src.flatten(), torch.ones(src.numel())], 1)
        coef = torch.linalg.lstsq(design, dst.flatten().unsqueeze(1)).solution
        assert torch.allclose(design @ coef, dst.flatten().unsqueeze(1), atol=1e-5)
        assert 0.5 - 1e-4 <= coef[0].item() <= 1.5 + 1e-4  # contrast factor range
    assert not torch.allclose(out, x)


def test_gradients_flow_through_the_augmentation():
    x = images(n=3).requires_grad_(True)
    augment.diff_augment(x, "color,translation,cutout").sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("policy,expected", [("", 0), ("translation", 1), ("color,cutout", 1)])
def test_gan_step_augments_real_and_fake_alike(monkeypatch, policy, expected):
    """Every discriminator call sees augmented images: the reals, the detached fakes and the fakes
    of the generator update, each through the configured policy."""
    calls = []
    real_augment = augment.diff_augment

    def spy(x, policy_arg, generator=None):
        calls.append((tuple(x.shape), policy_arg, x.requires_grad))
        return real_augment(x, policy_arg, generator)

    monkeypatch.setattr(steps_module, "diff_augment", spy)
    cfg = gan_config("dcgan", gan={"diffaugment": policy})
    nets = build_networks(cfg)
    gan_step(nets, make_optimizers(cfg, nets), random_batch(), cfg, Precision(torch.device("cpu"), "fp32", list(nets)))
    if not expected:
        assert calls == []
        return
    assert len(calls) == 3  # real, fake for D, fake for G
    assert all(c[0] == (8, 1, 28, 28) and c[1] == cfg.gan.diffaugment for c in calls)
    assert [c[2] for c in calls] == [False, False, True]  # only the generator update's fakes carry gradients
