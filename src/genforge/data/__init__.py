"""Dataset registry: a name (or ``kind:PATH``) to an in-memory :class:`ImageDataset`.

Nothing here downloads: a dataset that is not on disk fails with a message saying where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import GenforgeError
from .base import ImageDataset
from .idx import load_idx_dataset
from .mnist5k import load_mnist5k
from .paired import load_paired
from .transforms import resize_uint8, to_channels

__all__ = ["ImageDataset", "DATASETS", "SOURCES", "load_dataset", "data_root"]


def data_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset `name` lives: `root` if given, else $GENFORGE_DATA/name, else ~/.cache/genforge/data/name."""
    if root:
        return Path(root).expanduser()
    base = os.environ.get("GENFORGE_DATA") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genforge" / "data"
    return Path(base).expanduser() / name


DIGITS = [str(d) for d in range(10)]

# name -> loader(root or None, split) -> ImageDataset
DATASETS: dict[str, Callable[[str | None, str], ImageDataset]] = {
    "mnist-5k": lambda root, split: load_mnist5k(split),
    "mnist": lambda root, split: load_idx_dataset(data_root("mnist", root), split, "mnist", DIGITS),
}

# kind -> loader(PATH, split) -> ImageDataset, for names written `kind:PATH`.
SOURCES: dict[str, Callable[[str, str], ImageDataset]] = {
    "paired": load_paired,  # aligned pairs (pix2pix side-by-side or A/ B/ folders): images=A, targets=B
}


def load_dataset(name: str, root: str | None = None, split: str = "train",
                 image_size: int | None = None, channels: int | None = None) -> ImageDataset:
    """Load a registered dataset into memory as uint8, optionally resized and converted."""
    kind, _, path = name.partition(":")
    if path and kind in SOURCES:
        data = SOURCES[kind](path, split)
    elif name in DATASETS:
        data = DATASETS[name](root, split)
    else:
        raise GenforgeError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}, "
                            f"or {', '.join(k + ':PATH' for k in SOURCES)}")
    if channels and channels != data.channels:
        data.images = to_channels(data.images, channels)
        if data.targets is not None:
            data.targets = to_channels(data.targets, channels)
    if image_size and (image_size != data.image_size or data.images.shape[-2] != image_size):
        data.images = resize_uint8(data.images, image_size)
        if data.targets is not None:
            data.targets = resize_uint8(data.targets, image_size)
    return data
