"""Adaptive discriminator augmentation (Karras et al. 2020b, "Training Generative Adversarial
Networks with Limited Data", section 2-3 and appendix B), written from the paper.

Every image the discriminator sees (real and generated, in every phase) goes through the same
pipeline; each augmentation is applied to each image independently with probability p (the
rotations with 1 - sqrt(1 - p), so that some rotation happens with about probability p). All are
differentiable in the images: the geometric ones compose into one 3x3 matrix per image applied by
one bilinear resampling (reflection padding), the colour ones into one 4x4 matrix per image.
Where an image draws no augmentation it is passed through unchanged (torch.where), so p = 0 is
the identity exactly.

The adjustment of p (section 3): r_t = E[sign(D(real))]; every few steps p moves by
sign(r_t - target) * (images in the interval) / ada_speed_images, clamped to [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AUGMENTATIONS

# Strengths (appendix B, table 2's defaults): standard deviations of the log2 scalings, the
# fractional translation and brightness, and the integer translation's range.
XINT_MAX = 0.125
SCALE_STD = 0.2
ROTATE_MAX = 1.0  # x pi
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0  # x pi
SATURATION_STD = 1.0

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
assert set(GEOMETRIC + COLOUR) == set(AUGMENTATIONS)


def _translate(tx, ty):
    m = torch.eye(3, device=tx.device).repeat(len(tx), 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale(sx, sy):
    m = torch.eye(3, device=sx.device).repeat(len(sx), 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate(theta):
    m = torch.eye(3, device=theta.device).repeat(len(theta), 1, 1)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _gate(values: torch.Tensor, identity: float, p, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """values where a per-image draw < p, else the identity value; and the mask of applied images."""
    applied = torch.rand(shape, device=values.device) < p
    return torch.where(applied, values, torch.full_like(values, identity)), applied


def geometric_matrix(n: int, size: int, p, kinds, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 3x3 matrices mapping output pixel coordinates (in units of the image, centred,
    [-1, 1]) to input coordinates, and which images drew any geometric augmentation."""
    g = torch.eye(3, device=device).repeat(n, 1, 1)
    any_applied = torch.zeros(n, dtype=torch.bool, device=device)
    p_rot = 1 - math.sqrt(max(0.0, 1 - float(p))) if not torch.is_tensor(p) else 1 - torch.sqrt((1 - p).clamp(min=0))

    def add(kind, matrix, applied):
        nonlocal g, any_applied
        g = g @ matrix
        any_applied = any_applied | applied

    if "xflip" in kinds:
        flip, applied = _gate(torch.randint(0, 2, (n,), device=device).float(), 0.0, p, (n,))
        add("xflip", _scale(1 - 2 * flip, torch.ones(n, device=device)), applied & (flip > 0))
    if "rotate90" in kinds:
        quarter, applied = _gate(torch.randint(0, 4, (n,), device=device).float(), 0.0, p, (n,))
        add("rotate90", _rotate(quarter * (math.pi / 2)), applied & (quarter > 0))
    if "xint" in kinds:  # integer translation by up to 12.5% of the image, in whole pixels
        t = (torch.rand(n, 2, device=device) * 2 - 1) * XINT_MAX
        t = torch.round(t * size) / size * 2  # pixels -> [-1, 1] units (2 units per image)
        applied = torch.rand(n, device=device) < p
        t = torch.where(applied[:, None], t, torch.zeros_like(t))
        add("xint", _translate(t[:, 0], t[:, 1]), applied & (t.abs().sum(1) > 0))
    if "scale" in kinds:  # isotropic, log-normal
        s, applied = _gate(torch.exp2(torch.randn(n, device=device) * SCALE_STD), 1.0, p, (n,))
        add("scale", _scale(s, s), applied)
    if "rotate" in kinds:  # pre-rotation
        theta, applied = _gate((torch.rand(n, device=device) * 2 - 1) * math.pi * ROTATE_MAX, 0.0, p_rot, (n,))
        add("rotate", _rotate(theta), applied)
    if "aniso" in kinds:
        s, applied = _gate(torch.exp2(torch.randn(n, device=device) * ANISO_STD), 1.0, p, (n,))
        add("aniso", _scale(s, 1 / s), applied)
    if "rotate" in kinds:  # post-rotation (the paper applies rotation before and after the anisotropic scaling)
        theta, applied = _gate((torch.rand(n, device=device) * 2 - 1) * math.pi * ROTATE_MAX, 0.0, p_rot, (n,))
        add("rotate", _rotate(theta), applied)
    if "xfrac" in kinds:  # fractional translation, normal with std 12.5% of the image
        t = torch.randn(n, 2, device=device) * XFRAC_STD * 2
        applied = torch.rand(n, device=device) < p
        t = torch.where(applied[:, None], t, torch.zeros_like(t))
        add("xfrac", _translate(t[:, 0], t[:, 1]), applied)
    return g, any_applied


LUMA = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)


def colour_matrix(n: int, p, kinds, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image 4x4 colour matrices (homogeneous RGB, images in [-1, 1]) and which images drew any."""
    c = torch.eye(4, device=device).repeat(n, 1, 1)
    any_applied = torch.zeros(n, dtype=torch.bool, device=device)
    v = torch.cat([LUMA.to(device), torch.zeros(1, device=device)])  # the luma axis
    vv = torch.outer(v, v)
    eye = torch.eye(4, device=device)
    if "brightness" in kinds:
        b, applied = _gate(torch.randn(n, device=device) * BRIGHTNESS_STD, 0.0, p, (n,))
        m = eye.repeat(n, 1, 1)
        m[:, :3, 3] = b[:, None]
        c, any_applied = m @ c, any_applied | applied
    if "contrast" in kinds:
        s, applied = _gate(torch.exp2(torch.randn(n, device=device) * CONTRAST_STD), 1.0, p, (n,))
        m = eye.repeat(n, 1, 1)
        m[:, :3, :3] = m[:, :3, :3] * s[:, None, None]
        c, any_applied = m @ c, any_applied | applied
    if "lumaflip" in kinds:  # reflect the colour across the grey axis' orthogonal plane: luma -> -luma
        i, applied = _gate(torch.randint(0, 2, (n,), device=device).float(), 0.0, p, (n,))
        m = eye - 2 * vv * i[:, None, None]
        c, any_applied = m @ c, any_applied | (applied & (i > 0))
    if "hue" in kinds:  # rotation about the luma axis (Rodrigues' formula)
        theta, applied = _gate((torch.rand(n, device=device) * 2 - 1) * math.pi * HUE_MAX, 0.0, p, (n,))
        k = torch.zeros(4, 4, device=device)
        x, y, z = v[:3]
        k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -z, y, z, -x, -y, x
        rot = eye + torch.sin(theta)[:, None, None] * k + (1 - torch.cos(theta))[:, None, None] * (k @ k)
        c, any_applied = rot @ c, any_applied | applied
    if "saturation" in kinds:  # scale the components orthogonal to the luma axis
        s, applied = _gate(torch.exp2(torch.randn(n, device=device) * SATURATION_STD), 1.0, p, (n,))
        m = vv + (eye - vv) * s[:, None, None]
        m[:, 3, 3] = 1
        c, any_applied = m @ c, any_applied | applied
    return c, any_applied


def augment(images: torch.Tensor, p, kinds: tuple[str, ...] = AUGMENTATIONS) -> torch.Tensor:
    """ADA's pipeline on images in [-1, 1] (N, C, H, W), C = 1 or 3; p a float or a 0-d tensor.

    Random draws come from the global torch RNG (saved in checkpoints). Differentiable in `images`."""
    if not kinds:
        return images
    n, channels, h, w = images.shape
    device, dtype = images.device, images.dtype
    out = images
    geometric = [k for k in kinds if k in GEOMETRIC]
    if geometric:
        matrix, applied = geometric_matrix(n, h, p, geometric, device)
        theta = matrix[:, :2, :].to(dtype)
        grid = F.affine_grid(theta, [n, channels, h, w], align_corners=False)
        moved = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out = torch.where(applied[:, None, None, None], moved, out)
    colour = [k for k in kinds if k in COLOUR]
    if colour:
        matrix, applied = colour_matrix(n, p, colour, device)
        matrix = matrix.to(dtype)
        if channels == 3:
            flat = out.reshape(n, 3, h * w)
            coloured = (matrix[:, :3, :3] @ flat + matrix[:, :3, 3:]).reshape(n, 3, h, w)
        else:  # grey images: the mean of the RGB rows acting on (x, x, x) (brightness and contrast remain)
            gain = matrix[:, :3, :3].sum(dim=2).mean(dim=1)
            offset = matrix[:, :3, 3].mean(dim=1)
            coloured = out * gain[:, None, None, None] + offset[:, None, None, None]
        out = torch.where(applied[:, None, None, None], coloured, out)
    return out


def adjust_p(p: torch.Tensor, sign_mean: torch.Tensor, target: float, images: int, speed_images: float) -> torch.Tensor:
    """ADA's update (section 3): p += sign(r_t - target) * images / speed_images, clamped to [0, 1]."""
    return (p + torch.sign(sign_mean - target) * (images / speed_images)).clamp(0, 1)
