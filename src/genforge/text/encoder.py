"""A small transformer text encoder (Vaswani et al. 2017, in the pre-norm form of Xiong et al. 2020),
trained from scratch with the image model, that carries its tokenizer in its state dict.

Why the tokenizer lives in the network: a run's checkpoint (and a safetensors export) then holds
everything sampling needs; the vocabulary is stored as the UTF-8 bytes of its JSON in a uint8
tensor (`get_extra_state`), which loads with weights_only=True and safetensors alike.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenforgeError
from .tokenizer import SPECIALS, Encoded, WordTokenizer


def pool(text: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The pooled embedding of a caption: the mean of its real tokens' embeddings, (N, T, D) -> (N, D);
    every token counts without a mask, and a caption with every token masked pools to zero (the
    null caption of classifier-free guidance). The one pooling every text-to-image model uses."""
    keep = (torch.ones(text.shape[:2], device=text.device) if mask is None else mask.float())[..., None]
    return (text * keep).sum(1) / keep.sum(1).clamp(min=1)


class Block(nn.Module):
    """x + attention(LN(x)) with padded keys masked out, then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.proj(attn.transpose(1, 2).reshape(n, t, c))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Token ids (N, T) and their mask -> embeddings (N, T, width), zero at padded positions; the
    output of a real token depends on the real tokens only (padding is masked from every key)."""

    def __init__(self, vocab_size: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.vocab_size, self.context = vocab_size, context
        self.tokenizer = WordTokenizer(list(SPECIALS))
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(context, width) / math.sqrt(width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    # --- the tokenizer, saved with the weights ---------------------------------------------------------
    def fit(self, captions) -> None:
        """Build the tokenizer from the training captions (at most vocab_size words)."""
        self.tokenizer = WordTokenizer.build(captions, self.vocab_size)

    def get_extra_state(self) -> torch.Tensor:
        return torch.frombuffer(bytearray(self.tokenizer.to_json().encode("utf-8")), dtype=torch.uint8).clone()

    def set_extra_state(self, state) -> None:
        raw = bytes(state.cpu().numpy().tobytes()) if isinstance(state, torch.Tensor) else str(state).encode()
        self.tokenizer = WordTokenizer.from_json(raw.decode("utf-8"))

    def tokenize(self, texts: list[str], warn: bool = False) -> Encoded:
        """Token ids and mask of `texts`, on the encoder's device; with warn, one warning line naming
        the words unknown to the tokenizer and one for prompts cut to the context."""
        encoded = self.tokenizer.encode(list(texts), self.context)
        if warn and encoded.unknown:
            print(f"genforge: warning: {len(encoded.unknown)} word(s) unknown to this model's tokenizer, read as "
                  f"<unk>: {', '.join(encoded.unknown[:10])}{' ...' if len(encoded.unknown) > 10 else ''}",
                  file=sys.stderr, flush=True)
        if warn and encoded.truncated:
            print(f"genforge: warning: {len(encoded.truncated)} prompt(s) longer than the encoder's context of "
                  f"{self.context} tokens were cut (e.g. {encoded.truncated[0][:60]!r})", file=sys.stderr, flush=True)
        device = self.position_embedding.device
        return Encoded(encoded.ids.to(device), encoded.mask.to(device), encoded.unknown, encoded.truncated)

    # --- the network ------------------------------------------------------------------------------------
    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = ids != 0 if mask is None else mask.bool()
        t = ids.shape[1]
        x = self.token_embedding(ids.clamp(max=self.vocab_size - 1)) + self.position_embedding[:t]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * mask[..., None]

    def encode(self, texts: list[str], warn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, T, width) and mask (N, T) of `texts`."""
        encoded = self.tokenize(texts, warn)
        return self(encoded.ids, encoded.mask), encoded.mask


def prompts_for(prompt, n: int) -> list[str]:
    """A prompt (str) or prompts (one, or one per image) -> n prompts."""
    prompts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt]
    if len(prompts) == 1:
        prompts = prompts * n
    if len(prompts) != n:
        raise GenforgeError(f"{len(prompts)} prompts for {n} images; give one prompt or one per image")
    return prompts


def encode_prompts(encoder: TextEncoder | None, prompt, n: int, model: str) -> tuple[torch.Tensor, torch.Tensor] | \
        tuple[None, None]:
    """The token embeddings and mask of a sampling request's prompt (one, or one per image) from the
    model's own text encoder, unknown words and cut prompts named in a warning; (None, None) for a
    model without a text encoder (which then takes no prompt)."""
    if encoder is None:
        if prompt is not None:
            raise GenforgeError(f"{model} is not conditioned on text, so it takes no prompt; drop --prompt, "
                                "or train a text-to-image model (--preset tdiffusion-captions)")
        return None, None
    if prompt is None:
        raise GenforgeError(f"{model} draws images from a prompt; give one, e.g. --prompt \"a large red 7\"")
    return encoder.encode(prompts_for(prompt, n), warn=True)


def build_text_encoder(cfg) -> TextEncoder:
    t = cfg.text
    return TextEncoder(t.vocab_size, t.context, t.width, t.layers, t.heads)
