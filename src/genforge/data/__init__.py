"""Dataset registry: a name (``mnist``) or a source (``folder:PATH``) to an in-memory :class:`ImageDataset`.

Two tables:
  DATASETS  name -> loader(root or None, split, options)   the standard sets, read from data_root(name)
  SOURCES   kind -> loader(path, split, options)           the user's own data, written ``kind:PATH``
A loader returns an ImageDataset of uint8 images; `load_dataset` then applies the generic channel
conversion and resize for loaders that did not do them while decoding. Loaders with only two
parameters (path/root, split) may be registered too: ``register_source`` wraps them.

Nothing here downloads: a dataset that is not on disk fails with a message saying where to put it
and how to fetch it (``genforge data download NAME``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import GenforgeError
from .arrays import load_digits, load_npz
from .base import ImageDataset
from .celeba import load_celeba
from .cifar import load_cifar
from .idx import load_idx_dataset
from .images import load_folder, load_zip
from .mnist5k import load_mnist5k
from .options import LoadOptions
from .paired import load_paired
from .transforms import resize_uint8, square, to_channels

__all__ = ["ImageDataset", "LoadOptions", "DATASETS", "SOURCES", "load_dataset", "data_root",
           "register_dataset", "register_source"]

Loader = Callable[[str | None, str, LoadOptions], ImageDataset]


def data_root(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset `name` lives: `root` if given, else $GENFORGE_DATA/name, else ~/.cache/genforge/data/name."""
    if root:
        return Path(root).expanduser()
    base = os.environ.get("GENFORGE_DATA") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genforge" / "data"
    return Path(base).expanduser() / name


def _takes_options(loader: Callable) -> bool:
    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return True
    return "options" in params or len(params) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params.values())


def _with_options(loader: Callable) -> Loader:
    return loader if _takes_options(loader) else (lambda where, split, options: loader(where, split))


DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # rois-codh/kmnist classmap


def _idx(name: str, classes: list[str]) -> Loader:
    return lambda root, split, options: load_idx_dataset(data_root(name, root), split, name, classes)


# name -> loader(root or None, split, options) -> ImageDataset
DATASETS: dict[str, Loader] = {
    "mnist-5k": lambda root, split, options: load_mnist5k(split),
    "digits": lambda root, split, options: load_digits(split),
    "mnist": _idx("mnist", DIGITS),
    "fashion-mnist": _idx("fashion-mnist", FASHION),
    "kmnist": _idx("kmnist", KMNIST),
    "cifar10": lambda root, split, options: load_cifar(data_root("cifar10", root), split, "cifar10"),
    "cifar100": lambda root, split, options: load_cifar(data_root("cifar100", root), split, "cifar100"),
    "celeba": lambda root, split, options: load_celeba(data_root("celeba", root), split, options),
}

# kind -> loader(path, split, options) -> ImageDataset, for `--data kind:PATH`.
SOURCES: dict[str, Loader] = {
    "folder": load_folder,
    "zip": load_zip,
    "npz": lambda path, split, options: load_npz(path, split),
    # aligned pairs (pix2pix side-by-side or A/ B/ folders): images = A, targets = B
    "paired": lambda path, split, options: load_paired(path, split),
}


def register_dataset(name: str, loader: Callable) -> None:
    """Add a named dataset; `loader(root or None, split[, options])` returns an ImageDataset."""
    DATASETS[name] = _with_options(loader)


def register_source(kind: str, loader: Callable) -> None:
    """Add a `kind:PATH` source; `loader(path, split[, options])` returns an ImageDataset."""
    SOURCES[kind] = _with_options(loader)


def split_source(name: str) -> tuple[str, str] | None:
    """'zip:/a/b.zip' -> ('zip', '/a/b.zip'); None for a plain dataset name."""
    kind, sep, path = name.partition(":")
    return (kind, path) if sep and kind in SOURCES else None


def load_dataset(name: str, root: str | None = None, split: str = "train", image_size: int | None = None,
                 channels: int | None = None, *, skip_bad: bool = False, crop: str = "center",
                 workers: int = 0) -> ImageDataset:
    """Load a dataset or `kind:PATH` source into memory as uint8, optionally resized and converted.

    image_size: square side after a centre crop (crop='center') or a stretch (crop='stretch');
    channels: 1 (luma) or 3; skip_bad: skip unreadable files with a warning; workers: decoder
    processes (0 = automatic)."""
    options = LoadOptions(image_size=image_size or None, channels=channels or None, crop=crop,
                          skip_bad=skip_bad, workers=workers)
    source = split_source(name)
    if source is not None:
        kind, path = source
        if not path:
            raise GenforgeError(f"--data {name} needs a path after '{kind}:', e.g. {kind}:data/my-images")
        data = SOURCES[kind](path, split, options)
    elif name in DATASETS:
        data = DATASETS[name](root, split, options)
    else:
        kind = name.partition(":")[0] if ":" in name else ""
        what = f"unknown source kind {kind!r}" if kind else f"unknown dataset {name!r}"
        raise GenforgeError(f"{what}; choose a dataset ({', '.join(sorted(DATASETS))}) or a source "
                            f"{', '.join(k + ':PATH' for k in SOURCES)}")
    if channels and channels != data.channels:
        data.images = to_channels(data.images, channels)
        if data.targets is not None:
            data.targets = to_channels(data.targets, channels)
    if image_size and (image_size != data.image_size or data.images.shape[-2] != data.images.shape[-1]):
        images = square(data.images) if crop == "center" else data.images
        data.images = resize_uint8(images, image_size)
        if data.targets is not None:  # paired data: the same geometry for both sides
            targets = square(data.targets) if crop == "center" else data.targets
            data.targets = resize_uint8(targets, image_size)
    return data


def load_split(data_cfg, split: str | None = None) -> ImageDataset:
    """A split (default: the configured one) of the dataset a run's data section (config.DataConfig) names."""
    d = data_cfg
    return load_dataset(d.name, d.root or None, split or d.split, d.image_size or None, d.channels or None,
                        skip_bad=d.skip_bad, crop=d.crop, workers=d.workers)
