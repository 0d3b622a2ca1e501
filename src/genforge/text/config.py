"""The `text` config section: the tokenizer and text encoder of text-to-image models."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check, register_section


@dataclass
class TextConfig:
    """Settings of the text encoder trained with a text-to-image model (docs/text-to-image.md)."""

    vocab_size: int = 1000
    """Most words the tokenizer keeps (the training captions' most frequent ones, plus <pad>, <unk>, <bos>)."""
    context: int = 24
    """Tokens the encoder reads, the begin token included; longer prompts are cut with a warning."""
    width: int = 64
    """Width of the token embeddings the image model attends to."""
    layers: int = 2
    """Transformer layers of the encoder."""
    heads: int = 4
    """Attention heads of each layer (width must be divisible by it)."""
    pretrained: str = ""
    """A local folder holding a Hugging Face CLIP text model or T5 encoder (config.json, weights,
    tokenizer files; needs genforge[hf]), used in place of the encoder trained from scratch (whose
    vocab_size, width, layers and heads are then unused); never downloaded. Copied into the run
    (RUN/text-encoder/) when training starts, so sampling needs neither this setting nor the folder."""
    train_pretrained: bool = False
    """Fine-tune the pretrained encoder with the image model (and keep its weights, their average and
    Adam's moments in every checkpoint); false keeps it frozen, outside the checkpoints."""

    def __post_init__(self) -> None:
        check(self.vocab_size >= 4, f"text.vocab_size must be at least 4, got {self.vocab_size}; use e.g. 1000")
        check(self.context >= 2, f"text.context must be at least 2 tokens, got {self.context}; use e.g. 24")
        check(self.width >= 1 and self.layers >= 0 and self.heads >= 1,
              f"text.width, text.layers and text.heads must be positive, got {self.width}, {self.layers}, {self.heads}")
        check(not self.train_pretrained or bool(self.pretrained),
              "text.train_pretrained fine-tunes a pretrained encoder; add --set text.pretrained=FOLDER or drop it")
        check(self.width % self.heads == 0, f"text.width ({self.width}) must be divisible by text.heads ({self.heads})")


register_section("text", TextConfig)
