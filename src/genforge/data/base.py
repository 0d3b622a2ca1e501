"""The in-memory dataset every model trains on: images as uint8 (N, C, H, W), labels optional."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset:
    """Decoded images held once as uint8, converted to float per batch by the training step.

    images: uint8 tensor (N, C, H, W), C in {1, 3}.
    labels: int64 tensor (N,) of class indices, or None for unlabelled data.
    class_names: one name per class index when labels are given.
    name: where the data came from, for logs and reports.
    captions: for captioned (text-to-image) data, one list of captions (at least one) per image; None otherwise.
    targets: for paired (image-to-image) data, the aligned target images as uint8 (N, C', H, W),
        image i being the translation of images[i]; None otherwise.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    name: str = ""
    extras: dict = field(default_factory=dict)
    targets: torch.Tensor | None = None
    captions: list[list[str]] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")
        if self.targets is not None and (self.targets.dtype != torch.uint8 or self.targets.ndim != 4
                                         or self.targets.shape[0] != self.images.shape[0]
                                         or self.targets.shape[-2:] != self.images.shape[-2:]):
            raise ValueError(f"targets must be uint8 (N, C, H, W) matching images {tuple(self.images.shape)}, "
                             f"got {self.targets.dtype} {tuple(self.targets.shape)}")
        if self.captions is not None and (len(self.captions) != len(self.images) or not all(self.captions)):
            raise ValueError(f"{len(self.captions)} caption lists for {len(self.images)} images (each needs one or more)")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else 0
