"""StyleGAN2's networks, written from the paper (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN", CVPR; "the paper" below) and its ADA follow-up's class conditioning
(Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", NeurIPS).

Generator = mapping network (z [+ condition] -> w, section 2 of the StyleGAN paper) + synthesis network
(modulated/demodulated convolutions, eq. 1-3 of the paper; noise inputs; the skip architecture of
figure 7 with a toRGB at every resolution). Discriminator = the residual architecture of figure 7
with a minibatch standard-deviation layer and, for a condition, a projection (Miyato and Koyama 2018).

The condition c is a class label (one-hot, `num_classes`) or, for text-to-image models, a caption's
pooled text embedding (`text_dim` numbers, text.encoder.pool); both enter the networks the same way:
a learned linear embedding, normalised in the mapping network, projected on in the discriminator.

Every weight uses the equalised learning rate (Karras et al. 2018, section 4.1): stored as N(0, 1)
(divided by the layer's learning-rate multiplier) and scaled by lr_mul / sqrt(fan_in) at run time,
so Adam's per-parameter step size is the same for every layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def lrelu(x: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times sqrt(2), which keeps the signal's magnitude (He et al. 2015)."""
    return F.leaky_relu(x, LRELU_SLOPE) * gain


# --- low-pass resampling ----------------------------------------------------------------------------

def _binomial_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The [1, 3, 3, 1] / 8 binomial low-pass filter (the paper's resampling filter, inherited from
    StyleGAN section 2 and Zhang 2019) along one dimension, 'valid' (3 fewer samples), as sums of
    shifted slices: the separable form of the 4x4 kernel, much cheaper on a CPU than a depthwise
    convolution with it, and the same numbers up to rounding."""
    n = x.shape[dim] - 3
    a, b, c, d = (x.narrow(dim, i, n) for i in range(4))
    return (a + d + 3 * (b + c)) * 0.125


def blur(x: torch.Tensor, pad: tuple[int, int, int, int] = (1, 2, 1, 2)) -> torch.Tensor:
    """Low-pass filter every channel with the 4x4 binomial kernel; pad = zeros (left, right, top,
    bottom) as F.pad takes them."""
    return _binomial_1d(_binomial_1d(F.pad(x, pad), 3), 2)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Double the resolution: insert a zero after every pixel, then low-pass filter (gain 4 keeps
    the mean)."""
    n, c, h, w = x.shape
    up = torch.stack([x, torch.zeros_like(x)], dim=3)  # (n, c, h, 2, w): a zero row after each row
    up = torch.stack([up, torch.zeros_like(up)], dim=5).reshape(n, c, 2 * h, 2 * w)  # and column
    return blur(up, (2, 1, 2, 1)) * 4


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution: low-pass filter, keep every second pixel."""
    return blur(x, (1, 1, 1, 1))[:, :, ::2, ::2][:, :, : x.shape[2] // 2, : x.shape[3] // 2]


# --- equalised-learning-rate layers -----------------------------------------------------------------

class EqualLinear(nn.Module):
    """A dense layer with the equalised learning rate; `lr_mul` slows it down (0.01 in the mapping
    network, StyleGAN appendix C), `bias_init` sets the bias (1 for the style affines, so styles
    start at 1)."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, lr_mul: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul, self.activation = lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """A plain (unmodulated) convolution with the equalised learning rate, for the discriminator;
    `down` low-pass filters and subsamples after it (the residual blocks' strided convolutions)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, activation: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        if self.down:  # blur, then a stride-2 convolution: the anti-aliased downsampling of the paper
            x = blur(x, (2, 2, 2, 2) if weight.shape[-1] > 1 else (1, 1, 1, 1))
            x = F.conv2d(x, weight, self.bias, stride=2)
        else:
            x = F.conv2d(x, weight, self.bias, padding=self.padding)
        return lrelu(x) if self.activation else x


# --- the modulated convolution ----------------------------------------------------------------------

def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     grouped: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """The paper's modulated convolution, section 2.2, with 'same' padding.

    Eq. 1: w'_ijk = s_i * w_ijk (the style s scales input channel i of each sample's weights).
    Eq. 3: w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps) (demodulation: unit output variance
    for unit-variance inputs, replacing AdaIN's instance normalisation).

    Two equivalent ways to compute it:
      grouped=True: build every sample's weights and run one grouped convolution (groups = batch);
      grouped=False: scale the activations instead, x * s -> shared convolution -> * d per output
        channel, the same product by linearity; its graph has no batch size baked into a reshape,
        so it exports with a dynamic batch.
    x: (N, I, H, W); weight: (O, I, k, k), already multiplied by its equalised-lr gain; styles: (N, I).
    """
    n, in_channels, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    padding = kh // 2
    if grouped:
        weights = weight[None] * styles[:, None, :, None, None]  # eq. 1: (N, O, I, k, k)
        if demodulate:  # eq. 3
            weights = weights * torch.rsqrt(weights.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
        out = F.conv2d(x.reshape(1, n * in_channels, h, w), weights.reshape(n * out_channels, in_channels, kh, kw),
                       padding=padding, groups=n)
        return out.reshape(n, out_channels, *out.shape[2:])
    out = F.conv2d(x * styles[:, :, None, None], weight, padding=padding)
    if demodulate:  # eq. 3 with eq. 1 expanded: sum_{i,k} (s_i w_ijk)^2 = sum_i s_i^2 sum_k w_ijk^2
        d = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)  # (N, O)
        out = out * d[:, :, None, None]
    return out


class ModulatedConv(nn.Module):
    """A style-modulated 3x3 convolution + per-pixel noise + bias + leaky ReLU (figure 2c/d of the
    paper); `up` doubles the resolution first with the low-pass upsampling."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 kernel: int = 3):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Noise inputs (StyleGAN section 3.2): one N(0, 1) image per layer scaled by a learned strength
        # (zero at first); `noise_const` is a fixed draw for deterministic sampling and projection.
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", grouped: bool = True) -> torch.Tensor:
        if self.up:
            x = upsample2x(x)
        x = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), demodulate=True, grouped=grouped)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to image channels, without demodulation (the paper's tRGB)."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(image_channels, in_channels, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, grouped: bool = True) -> torch.Tensor:
        out = modulated_conv2d(x, self.weight * self.weight_gain, self.affine(w), demodulate=False, grouped=grouped)
        return out + self.bias[None, :, None, None]


# --- the generator ----------------------------------------------------------------------------------

def channels_at(resolution: int, image_size: int, width: int, channel_max: int) -> int:
    """Feature maps at a resolution: `width` at the image size, doubling at each halving, at most channel_max."""
    return min(channel_max, width * image_size // resolution)


def condition_vector(c: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """The condition as the embedding layers read it: labels (N,) one-hot when num_classes, else a
    pooled text embedding (N, text_dim) as it is."""
    return F.one_hot(c, num_classes).to(dtype) if num_classes else c.to(dtype)


class MappingNetwork(nn.Module):
    """z (and a condition c) -> w, through `layers` dense layers with learning rate x lr_mul (StyleGAN section 2).

    z is normalised by its second moment (pixel norm); the condition's embedding (a label's, or a
    caption's pooled text embedding's) is normalised the same way and concatenated (ADA's
    conditioning). `w_avg` tracks the mean w for the truncation trick."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995, text_dim: int = 0):
        super().__init__()
        if layers < 1:
            raise ValueError("the mapping network needs at least one layer")
        if num_classes and text_dim:
            raise ValueError("a mapping network is conditioned on labels or on text, not both")
        self.z_dim, self.w_dim, self.num_classes, self.w_avg_beta = z_dim, w_dim, num_classes, w_avg_beta
        self.text_dim = text_dim
        self.embed = EqualLinear(num_classes or text_dim, w_dim) if num_classes or text_dim else None
        features = z_dim + (w_dim if self.embed is not None else 0)
        self.layers = nn.ModuleList(
            EqualLinear(features if i == 0 else w_dim, w_dim, activation=True, lr_mul=lr_mul) for i in range(layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @staticmethod
    def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, update_w_avg: bool = False) -> torch.Tensor:
        """c: labels (N,) int64, or pooled text embeddings (N, text_dim); None for unconditional models."""
        x = self.normalize(z)
        if self.embed is not None:
            x = torch.cat([x, self.normalize(self.embed(condition_vector(c, self.num_classes, z.dtype)))], dim=1)
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:  # moving average of w, read by the truncation trick
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """The truncation trick in W (StyleGAN section 5; the paper's appendix): w' = w_avg + psi (w - w_avg)
    for the first `cutoff` layers (all when None). psi = 1 changes nothing, psi = 0 gives w_avg.
    w_avg is one centre (w_dim,) or one per image (N, w_dim) (a condition's own mean w)."""
    if psi == 1:
        return ws
    ws = ws.clone()
    cutoff = ws.shape[1] if cutoff is None else cutoff
    centre = w_avg[:, None] if w_avg.dim() == 2 else w_avg
    ws[:, :cutoff] = centre.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator (figure 7b): [upsample + conv], conv, toRGB; the image
    so far is upsampled with the low-pass filter and the block's toRGB added."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, image_channels: int):
        super().__init__()
        self.first = resolution == 4
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))  # the learned constant input
            self.convs = nn.ModuleList([ModulatedConv(out_channels, out_channels, w_dim, 4)])
        else:
            self.convs = nn.ModuleList([ModulatedConv(in_channels, out_channels, w_dim, resolution, up=True),
                                        ModulatedConv(out_channels, out_channels, w_dim, resolution)])
        self.torgb = ToRGB(out_channels, image_channels, w_dim)
        self.num_ws = len(self.convs)  # the toRGB shares its w with the next block's first conv

    def forward(self, x, image, ws, noise_mode: str, grouped: bool):
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        for i, conv in enumerate(self.convs):
            x = conv(x, ws[:, i], noise_mode, grouped)
        rgb = self.torgb(x, ws[:, len(self.convs)], grouped)
        image = rgb if image is None else upsample2x(image) + rgb
        return x, image


class SynthesisNetwork(nn.Module):
    """w per layer (N, num_ws, w_dim) -> image (N, C, H, W) in about [-1, 1]."""

    def __init__(self, w_dim: int, image_size: int, image_channels: int, width: int, channel_max: int):
        super().__init__()
        levels = int(math.log2(image_size))
        if 2 ** levels != image_size or image_size < 4:
            raise ValueError(f"image size must be a power of two >= 4, got {image_size}")
        self.resolutions = [2 ** i for i in range(2, levels + 1)]
        blocks, in_channels = [], 0
        for res in self.resolutions:
            out_channels = channels_at(res, image_size, width, channel_max)
            blocks.append(SynthesisBlock(in_channels, out_channels, w_dim, res, image_channels))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_ws for b in blocks) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", grouped: bool = True) -> torch.Tensor:
        x = image = None
        index = 0
        for block in self.blocks:
            x, image = block(x, image, ws[:, index: index + block.num_ws + 1], noise_mode, grouped)
            index += block.num_ws
        return image


class Generator(nn.Module):
    """StyleGAN2's generator: mapping network and synthesis network. forward(z[, c]) -> images, c the
    labels or pooled text embeddings (see MappingNetwork)."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, image_size: int, image_channels: int, width: int,
                 channel_max: int, mapping_layers: int, mapping_lr_mul: float = 0.01, text_dim: int = 0):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, image_size, image_channels, width, channel_max)
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers, mapping_lr_mul, text_dim=text_dim)
        self.num_ws = self.synthesis.num_ws
        self.z_dim, self.w_dim, self.num_classes = z_dim, w_dim, num_classes
        self.noise_mode, self.grouped = "const", True
        """Defaults of forward(): the sampler's and the export's (training passes its own)."""

    def ws(self, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
           update_w_avg: bool = False, centre: torch.Tensor | None = None) -> torch.Tensor:
        """One w per synthesis layer (N, num_ws, w_dim), truncated toward `centre` (default w_avg) when psi < 1."""
        return self.ws_from_w(self.mapping(z, c, update_w_avg=update_w_avg), psi, cutoff, centre)

    def ws_from_w(self, w: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                  centre: torch.Tensor | None = None) -> torch.Tensor:
        """w (N, w_dim) broadcast to every synthesis layer, truncated toward `centre` ((w_dim,) or one per
        image, (N, w_dim); default the tracked w_avg) when psi < 1."""
        centre = self.mapping.w_avg if centre is None else centre
        return truncate(w[:, None].expand(-1, self.num_ws, -1), centre, psi, cutoff)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0,
                cutoff: int | None = None, noise_mode: str | None = None, grouped: bool | None = None) -> torch.Tensor:
        return self.synthesis(self.ws(z, c, psi, cutoff), noise_mode or self.noise_mode,
                              self.grouped if grouped is None else grouped)


# --- the discriminator ------------------------------------------------------------------------------

def minibatch_stddev(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the mean standard deviation over groups of samples as one more feature map (Karras et
    al. 2018, section 3; the paper keeps it). Groups are of the largest size <= group_size that
    divides the batch (the official code requires the batch to be divisible)."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w).float()
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # std over each group, per feature
    y = y.mean(dim=(1, 2, 3))  # (n // g,): one number per group
    y = y.reshape(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block (figure 7c): conv 3x3, conv 3x3 with downsampling, plus a 1x1 downsampled skip;
    the sum is scaled by 1/sqrt(2) to keep the variance."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * (1 / SQRT2)


class Discriminator(nn.Module):
    """Residual discriminator: fromRGB, one block per resolution down to 4x4, minibatch stddev, conv,
    dense, and an output that is a logit, or for a condition (a label, or a caption's pooled text
    embedding) a projection onto the condition's embedding (Miyato and Koyama 2018, as in ADA's
    conditional models)."""

    def __init__(self, image_size: int, image_channels: int, width: int, channel_max: int, num_classes: int = 0,
                 mbstd_group: int = 4, text_dim: int = 0):
        super().__init__()
        levels = int(math.log2(image_size))
        top = channels_at(image_size, image_size, width, channel_max)
        self.from_rgb = EqualConv2d(image_channels, top, 1)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(channels_at(2 ** i, image_size, width, channel_max),
                               channels_at(2 ** (i - 1), image_size, width, channel_max))
            for i in range(levels, 2, -1))
        c4 = channels_at(4, image_size, width, channel_max)
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.num_classes, self.text_dim = num_classes, text_dim
        conditional = bool(num_classes or text_dim)
        self.out = EqualLinear(c4, c4 if conditional else 1)
        self.embed = EqualLinear(num_classes or text_dim, c4) if conditional else None

    def forward(self, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N,); c: labels (N,) int64 or pooled text embeddings (N, text_dim) for conditional models."""
        x = self.from_rgb(images)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.mbstd_group))
        x = self.out(self.fc(x.flatten(1)))
        if self.embed is None:
            return x[:, 0]
        cmap = self.embed(condition_vector(c, self.num_classes, x.dtype))
        return (x * cmap).sum(dim=1) / np.sqrt(cmap.shape[1])


def build(cfg, text_dim: int = 0) -> dict[str, nn.Module]:
    """The generator and discriminator for a resolved config (model.* and the stylegan2 section);
    text_dim > 0: both conditioned on pooled text embeddings of that width."""
    m, s = cfg.model, cfg.stylegan2
    generator = Generator(m.latent_dim, s.w_dim or m.latent_dim, m.num_classes, m.image_size, m.channels, m.width,
                          s.channel_max, s.mapping_layers, s.mapping_lr_mul, text_dim)
    generator.grouped = s.conv_path == "grouped"
    discriminator = Discriminator(m.image_size, m.channels, m.width, s.channel_max, m.num_classes, s.mbstd_group,
                                  text_dim)
    return {"generator": generator, "discriminator": discriminator}
