"""ADA's augmentations (augment.py): p = 0 is the identity, every augmentation keeps shapes and is
differentiable, they do change images at p = 1, and p follows the sign of D's outputs on reals."""

from __future__ import annotations

import pytest
import torch

from genforge.families.stylegan2.augment import adjust_p, augment
from genforge.families.stylegan2.config import AUGMENTATIONS


@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_the_identity(channels):
    torch.manual_seed(0)
    x = torch.rand(6, channels, 32, 32) * 2 - 1
    assert torch.equal(augment(x, 0.0), x)
    assert torch.equal(augment(x, torch.tensor(0.0)), x)


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_each_augmentation_keeps_shapes_is_differentiable_and_acts(kind):
    torch.manual_seed(1)
    x = (torch.rand(8, 3, 32, 32) * 2 - 1).requires_grad_(True)
    out = augment(x, 1.0, (kind,))
    assert out.shape == x.shape and out.dtype == x.dtype
    (grad,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not torch.equal(out, x)  # at p = 1 some image changed
    grey = augment(x[:, :1], 1.0, (kind,))
    assert grey.shape == (8, 1, 32, 32)


def test_integer_transforms_move_pixels_exactly():
    torch.manual_seed(2)
    x = torch.rand(16, 1, 8, 8)
    out = augment(x, 1.0, ("xflip", "rotate90"))
    for a, b in zip(x, out):  # each output is one of the 8 flips/rotations of its input, to rounding
        candidates = [torch.rot90(v, k, (1, 2)) for v in (a, a.flip(2)) for k in range(4)]
        assert min((c - b).abs().max().item() for c in candidates) < 1e-5


def test_colour_transforms_keep_grey_pixels_grey_under_hue_and_saturation():
    x = torch.rand(4, 1, 8, 8).expand(4, 3, 8, 8).contiguous()  # grey: on the luma axis
    out = augment(x, 1.0, ("hue", "saturation"))
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-5)


def test_p_rises_when_reals_look_real_and_falls_when_they_look_fake():
    p = torch.tensor(0.5)
    assert adjust_p(p, torch.tensor(1.0), 0.6, 256, 500_000) > p
    assert adjust_p(p, torch.tensor(-1.0), 0.6, 256, 500_000) < p
    assert adjust_p(p, torch.tensor(1.0), 0.6, 256, 500_000) == pytest.approx(0.5 + 256 / 500_000)
    assert adjust_p(torch.tensor(0.0), torch.tensor(-1.0), 0.6, 256, 10) == 0  # clamped
    assert adjust_p(torch.tensor(1.0), torch.tensor(1.0), 0.6, 256, 10) == 1
