"""Pix2Pix (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks").

generator: a U-Net (section 3.2.1 and appendix 6.1.1): an encoder of 4x4 stride-2 convolutions
  C64-C128-C256-C512-C512-..., a mirror decoder of 4x4 stride-2 transposed convolutions, and a skip
  connection from each encoder layer i to decoder layer n-i (channels concatenated). The depth is
  the number of halvings; by default as many as the image size allows, up to 8 (256 -> 1x1).
  Dropout (p = 0.5 in the paper) in the three innermost decoder layers is the model's only noise.
discriminator: a PatchGAN (section 3.2.2, appendix 6.1.2) that classifies overlapping patches of
  the input and output images concatenated along channels; with n_layers = 3 each output logit sees
  a 70x70 patch. It returns a map of logits, one per patch.

Normalisation is 'instance' (no affine parameters, no running statistics: the same in training and
inference, and what the paper's batch-norm-at-batch-size-1 with test-batch statistics amounts to) or
'batch' (running statistics at inference). The innermost encoder layer has no normalisation: it is
1x1 at full depth, where instance statistics are undefined.
"""

from __future__ import annotations

import torch
from torch import nn

from ...config import ModelConfig
from ...errors import GenforgeError
from .config import Pix2PixConfig

MAX_DEPTH = 8  # 256x256 -> 1x1, the paper's encoder


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def unet_depth(image_size: int, depth: int = 0) -> int:
    """The U-Net depth for a square image: `depth`, or (0) as many halvings as divide the size, up to 8.

    Raises GenforgeError when the size is not divisible by 2**depth.
    """
    if depth:
        if image_size % (2 ** depth):
            raise GenforgeError(f"image size {image_size} is not divisible by 2^{depth} = {2 ** depth} (pix2pix.depth); "
                                f"resize with --set data.image_size={max(2 ** depth, image_size // 2 ** depth * 2 ** depth)} "
                                "or lower pix2pix.depth")
        return depth
    auto = 0
    while auto < MAX_DEPTH and image_size % (2 ** (auto + 1)) == 0:
        auto += 1
    if auto < 2:
        raise GenforgeError(f"image size {image_size} is divisible by 2 at most {auto} time(s); pix2pix needs at least "
                            f"4 | size; resize with --set data.image_size={max(4, image_size // 4 * 4)}")
    return auto


class UNetGenerator(nn.Module):
    """U-Net: image (N, in_channels, H, W) in [-1, 1] -> image (N, out_channels, H, W) in [-1, 1].

    H and W must be divisible by 2**depth.
    """

    def __init__(self, in_channels: int, out_channels: int, depth: int, width: int = 64,
                 norm: str = "instance", dropout: float = 0.5):
        super().__init__()
        self.depth = depth
        widths = [width * min(2 ** i, 8) for i in range(depth)]  # C64-C128-C256-C512-C512-...
        self.down = nn.ModuleList()
        previous = in_channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            # No bias where a normalisation follows (it would be subtracted away).
            with_norm = 0 < i < depth - 1
            layers.append(nn.Conv2d(previous, w, 4, stride=2, padding=1, bias=not with_norm))
            if with_norm:
                layers.append(_norm(norm, w))
            self.down.append(nn.Sequential(*layers))
            previous = w
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):  # decoder layer producing the resolution of encoder layer i-1
            innermost, outermost = i == depth - 1, i == 0
            in_w = widths[i] if innermost else 2 * widths[i]  # skip connections double the channels
            if outermost:
                self.up.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(in_w, out_channels, 4, stride=2, padding=1),
                                             nn.Tanh()))
                continue
            layers = [nn.ReLU(), nn.ConvTranspose2d(in_w, widths[i - 1], 4, stride=2, padding=1, bias=False),
                      _norm(norm, widths[i - 1])]
            # Dropout in the three innermost decoder layers (appendix 6.1.1: CD512-CD512-CD512-C512-...).
            if dropout > 0 and depth - 1 - i < 3:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the innermost activation feeds the decoder directly
        for layer in self.up:
            x = layer(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


class PatchDiscriminator(nn.Module):
    """PatchGAN: (input, output) pair -> logits (N, 1, H', W'), one per overlapping patch.

    With n_layers = 3 (C64-C128-C256-C512) the receptive field of each logit is 70x70 and a 256x256
    pair gives a 30x30 map; n_layers = 1 gives 16x16 patches ("PixelGAN" is n_layers = 0 in the paper's
    terms, not offered here).
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_layers: int = 3,
                 norm: str = "instance"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels + out_channels, width, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2)]
        previous = width
        for n in range(1, n_layers + 1):
            w = width * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last feature layer keeps the resolution
            layers += [nn.Conv2d(previous, w, 4, stride=stride, padding=1, bias=False), _norm(norm, w),
                       nn.LeakyReLU(0.2)]
            previous = w
        layers.append(nn.Conv2d(previous, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([source, image], dim=1))


def receptive_field(n_layers: int) -> int:
    """Receptive field in pixels of one PatchGAN logit (70 for n_layers = 3, as in the paper)."""
    kernels_strides = [(4, 2)] + [(4, 2 if n < n_layers else 1) for n in range(1, n_layers + 1)] + [(4, 1)]
    field, jump = 1, 1
    for kernel, stride in kernels_strides:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def patch_map_size(image_size: int, n_layers: int) -> int:
    """Side of the PatchGAN's logit map for a square input (30 for 256 and n_layers = 3)."""
    size = image_size
    for _ in range(n_layers):
        size //= 2  # 4x4, stride 2, padding 1
    return size - 2  # two 4x4 stride-1 convolutions with padding 1


def build(cfg: ModelConfig, options: Pix2PixConfig | None = None) -> dict[str, nn.Module]:
    """The U-Net generator, and the PatchGAN discriminator when its loss has a weight: the L1-only
    ablation (gan_weight = 0) trains no discriminator, so none is built, optimised or stored. Square
    images of cfg.channels channels (input and target alike)."""
    options = options or Pix2PixConfig()
    depth = unet_depth(cfg.image_size, options.depth)
    nets: dict[str, nn.Module] = {
        "generator": UNetGenerator(cfg.channels, cfg.channels, depth, cfg.width, options.norm, options.dropout)}
    if options.gan_weight == 0:
        return nets
    # The PatchGAN must leave at least a 1x1 map: n_layers halvings, then two 4x4 stride-1 convs (-1 each).
    if patch_map_size(cfg.image_size, options.n_layers) < 1:
        largest = max(n for n in range(0, 12) if n == 0 or patch_map_size(cfg.image_size, n) >= 1)
        raise GenforgeError(f"pix2pix.n_layers={options.n_layers} is too deep for {cfg.image_size}x{cfg.image_size} "
                            f"images; use at most {largest}")
    nets["discriminator"] = PatchDiscriminator(cfg.channels, cfg.channels, cfg.width, options.n_layers, options.norm)
    return nets
