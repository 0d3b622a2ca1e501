"""The denoiser network: a U-Net (Ronneberger et al. 2015) in the form Ho et al. 2020 (appendix B)
gave it for diffusion: residual blocks with group normalisation, a noise-level embedding added in
every block, self-attention at the low resolutions, dropout; plus an optional class embedding (with
one extra "null" class for classifier-free guidance) and optional cross-attention to a sequence of
condition embeddings with a mask (text conditioning, as in Rombach et al. 2022).

The network is the raw F of EDM's D = c_skip x + c_out F(c_in x, c_noise): it knows nothing of
noise schedules or preconditioning (objectives.py), nor of samplers (samplers.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...text.encoder import pool


def group_norm(channels: int) -> nn.GroupNorm:
    """Group normalisation (Wu and He 2018) with 32 groups where the width allows, fewer otherwise."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar (the transformer's, as DDPM embeds the timestep t in 0..T-1)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x.float()[:, None] * self.freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (Tancik et al. 2020), as EDM embeds c_noise = ln(sigma) / 4,
    whose range (about -1.5..1.1) is too small for the positional embedding's low frequencies.
    The frequencies are a buffer, so they are saved and restored with the network."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * x.float()[:, None] * self.freqs[None]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResidualBlock(nn.Module):
    """GN-SiLU-conv, GN modulated by the embedding, SiLU-dropout-conv, + skip (Ho et al. 2020, appendix B,
    with the adaptive group norm of Dhariwal and Nichol 2021, section 3: GN(h) (1 + scale) + shift).

    Why not DDPM's plain addition of the embedding before the second norm: with narrow CPU widths
    a group holds a single channel, and group norm then subtracts exactly the per-channel constant
    that was added, so the block would ignore the noise level and the class."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_channels), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2, self.dropout = group_norm(out_channels), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return (self.skip(x) + h) / math.sqrt(2)  # keeps the variance of the sum (EDM's DDPM++ does the same)


class Attention(nn.Module):
    """Multi-head attention of every pixel to every pixel (self) or to a condition sequence (cross),
    with a residual connection; keys may be masked (False = padding)."""

    def __init__(self, channels: int, heads: int, context_dim: int = 0):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels) if context_dim else nn.Conv2d(channels, 2 * channels, 1)
        # A learned "null" key/value that every query can attend to, so that a fully masked (dropped)
        # condition sequence still gives a defined output instead of a softmax over nothing.
        self.null_kv = nn.Parameter(torch.zeros(2 * channels)) if context_dim else None
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        heads = self.heads
        normed = self.norm(x)
        q = self.q(normed).reshape(n, heads, c // heads, h * w).transpose(2, 3)
        if self.null_kv is None:
            k, v = self.kv(normed).reshape(n, 2, heads, c // heads, h * w).transpose(3, 4).unbind(1)
            attn_mask = None
        else:
            kv = torch.cat([self.null_kv.to(context.dtype).expand(n, 1, -1), self.kv(context)], dim=1)
            k, v = kv.reshape(n, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
            keep = torch.ones(n, context.shape[1], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
            attn_mask = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=attn_mask)
        return x + self.out(out.transpose(2, 3).reshape(n, c, h, w))


class UNet(nn.Module):
    """The denoiser F(x, c_noise, labels, text, text_mask) -> a tensor shaped like x.

    width: channels of the first level; levels: width multipliers per resolution (each halves it);
    attention_at: resolutions with self-attention; num_classes > 0 adds a class embedding with a
    null class (index num_classes); context_dim > 0 adds cross-attention at those resolutions.
    """

    def __init__(self, channels: int, image_size: int, width: int, levels: tuple[int, ...], res_blocks: int,
                 attention_at: tuple[int, ...], dropout: float, heads: int = 1, num_classes: int = 0,
                 context_dim: int = 0, embedding: str = "positional"):
        super().__init__()
        emb_dim = 4 * width
        self.num_classes = num_classes
        self.noise_embedding = FourierEmbedding(width) if embedding == "fourier" else PositionalEmbedding(width)
        self.noise_mlp = nn.Sequential(nn.Linear(width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embedding = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        # The pooled text embedding (mean of the unmasked tokens) is added to the noise-level
        # embedding (Saharia et al. 2022, Imagen, section 2.2; Nichol et al. 2022, GLIDE, section 4):
        # every block then sees the whole prompt, besides cross-attending to its tokens. A dropped
        # caption (every token masked) pools to zero, so the null condition is this layer's bias.
        self.text_pool = nn.Linear(context_dim, emb_dim) if context_dim else None
        self.input = nn.Conv2d(channels, width, 3, padding=1)

        def attention(ch: int, res: int) -> nn.ModuleList:
            if res not in attention_at:
                return nn.ModuleList()
            blocks = [Attention(ch, heads)]
            if context_dim:
                blocks.append(Attention(ch, heads, context_dim))
            return nn.ModuleList(blocks)

        self.down, skips, ch, res = nn.ModuleList(), [width], width, image_size
        for i, mult in enumerate(levels):
            for _ in range(res_blocks):
                self.down.append(nn.ModuleList([ResidualBlock(ch, width * mult, emb_dim, dropout),
                                                attention(width * mult, res)]))
                ch = width * mult
                skips.append(ch)
            if i < len(levels) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        middle_attention = [Attention(ch, heads)] + ([Attention(ch, heads, context_dim)] if context_dim else [])
        self.middle = nn.ModuleList([ResidualBlock(ch, ch, emb_dim, dropout), nn.ModuleList(middle_attention),
                                     ResidualBlock(ch, ch, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(levels))):
            for _ in range(res_blocks + 1):
                self.up.append(nn.ModuleList([ResidualBlock(ch + skips.pop(), width * mult, emb_dim, dropout),
                                              attention(width * mult, res)]))
                ch = width * mult
            if i > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(ch, ch, 3, padding=1)]))
                res *= 2
        self.output = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))

    @staticmethod
    def _attend(blocks: nn.ModuleList, h: torch.Tensor, text, text_mask) -> torch.Tensor:
        for block in blocks:
            if block.null_kv is None:
                h = block(h)
            elif text is not None:  # cross-attention, only when there is text to attend to
                h = block(h, text, text_mask)
        return h

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, labels: torch.Tensor | None = None,
                text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        # One level per image (a scalar is broadcast); broadcasting rather than expand(len(x)) keeps the
        # batch size symbolic in exported programs.
        noise_level = (noise_level.reshape(-1, 1) * torch.ones_like(x[:, :1, 0, 0], dtype=noise_level.dtype)).reshape(-1)
        emb = self.noise_mlp(self.noise_embedding(noise_level).to(x.dtype))
        if self.class_embedding is not None:
            if labels is None:  # unconditional evaluation of a conditional model: the null class
                labels = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embedding(labels)
        if self.text_pool is not None and text is not None:
            emb = emb + self.text_pool(pool(text, text_mask).to(emb.dtype))
        h = self.input(x)
        skips = [h]
        for block in self.down:
            if isinstance(block[0], ResidualBlock):
                h = self._attend(block[1], block[0](h, emb), text, text_mask)
            else:
                h = block[0](h)
            skips.append(h)
        h = self._attend(self.middle[1], self.middle[0](h, emb), text, text_mask)
        h = self.middle[2](h, emb)
        for block in self.up:
            if isinstance(block[0], ResidualBlock):
                h = self._attend(block[1], block[0](torch.cat([h, skips.pop()], dim=1), emb), text, text_mask)
            else:
                h = block[1](block[0](h))
        return self.output(h)


def build(cfg, context_dim: int | None = None) -> dict[str, nn.Module]:
    """The family's network 'denoiser' from a resolved RunConfig; context_dim: width of the text
    embeddings it cross-attends to (default diffusion.text_dim)."""
    d, m = cfg.diffusion, cfg.model
    context = d.text_dim if context_dim is None else context_dim
    return {"denoiser": UNet(m.channels, m.image_size, m.width, d.levels, d.res_blocks, d.attention_at, d.dropout,
                             d.heads, m.num_classes, context, "fourier" if d.objective == "edm" else "positional")}
