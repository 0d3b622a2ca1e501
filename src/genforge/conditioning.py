"""What a model is conditioned on, as one type for every family: `Condition`.

A condition holds, each optional and batch-first:
- `labels`: class indices (N,) as int64;
- `text`: a sequence of text embeddings (N, T, D) with its `text_mask` (N, T), True where a token is real;
- `image`: a source image (N, C, H, W) as uint8 (pix2pix generates the target given it).

Each model declares the kinds it needs (`ModelSpec.conditions`), each dataset provides some
(`provided_conditions`), and the two are matched once, before training, with one clear error
(`check_conditions`). A batch is the images to learn to generate plus their condition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

from .errors import GenforgeError

KINDS = ("labels", "text", "image")
"""The kinds of condition, in the order they are listed in messages."""

_DESCRIPTION = {"labels": "class labels (e.g. a folder with one subfolder per class)",
                "text": "captions (a .txt beside each image or a metadata.jsonl; "
                "genforge data make-captions builds a captioned set)", "image": "source images (paired data, e.g. paired:FOLDER)"}


@dataclass
class Condition:
    """Labels, text embeddings with their mask, and a source image; each optional, batch-first."""

    labels: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    image: torch.Tensor | None = None

    def kinds(self) -> frozenset[str]:
        """The kinds present (text counts once, with its mask)."""
        return frozenset(k for k in KINDS if getattr(self, k) is not None)

    def __len__(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return len(value)
        return 0

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Condition:
        """A condition with `fn` applied to every tensor present (index, slice, move, repeat)."""
        return Condition(**{f.name: (fn(v) if (v := getattr(self, f.name)) is not None else None)
                            for f in fields(self)})

    def select(self, index: torch.Tensor) -> Condition:
        return self.map(lambda t: t.index_select(0, index.to(t.device)))

    def slice(self, start: int, stop: int) -> Condition:
        return self.map(lambda t: t[start:stop])

    def to(self, device: torch.device | str) -> Condition:
        return self.map(lambda t: t.to(device))


def provided_conditions(labels: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                        captions: list | None = None) -> frozenset[str]:
    """The condition kinds a dataset provides: labels when it has them, a source image when it is
    paired, text when it is captioned."""
    return frozenset(k for k, v in (("labels", labels), ("image", targets), ("text", captions)) if v is not None)


def check_conditions(model: str, needed: tuple[str, ...], provided: frozenset[str], data: str) -> None:
    """Refuse a model that needs a condition the data does not provide (one line, with the fix)."""
    missing = [k for k in needed if k not in provided]
    if missing:
        what = "; ".join(_DESCRIPTION[k] for k in missing)
        raise GenforgeError(f"model {model} is conditioned on {', '.join(missing)} but dataset {data} has none; "
                            f"use a dataset with {what}")


@dataclass
class Batch:
    """One training step's data: the images to learn to generate and what they are conditioned on."""

    images: torch.Tensor
    """uint8 (N, C, H, W) on the training device: what the model learns to generate (pix2pix: the targets)."""
    cond: Condition = field(default_factory=Condition)
    step: int = 0
    """The step this batch is for (0-based): schedules (KL warm-up, learning-rate decay, lazy R1) read it."""
    extra: Callable[[int], Batch] | None = None
    """extra(k), k >= 1: another batch for the same step, a function of (seed, step, k) only;
    None (a batch built by hand) makes steps that want more batches reuse this one."""
    captions: list[str] | None = None
    """Captioned data: one caption per image (drawn from the image's captions for this step); a
    text-to-image family encodes them with its own text encoder."""

    @property
    def labels(self) -> torch.Tensor | None:
        """Shorthand for cond.labels."""
        return self.cond.labels
