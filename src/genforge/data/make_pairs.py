"""``genforge data make-pairs``: paired datasets built offline from images already on the machine.

Tasks (A = input on the left, B = target on the right of each side-by-side PNG, pix2pix layout with
``train/`` and ``test/`` subfolders, loadable as ``--data paired:OUT``):

edges2digits   A: the outline of an MNIST digit (binarised at 128, pixels with a background
               4-neighbour), B: the digit. Digits from mnist-5k (embedded) or IDX MNIST.
inpaint-digits A: the digit with a random square hidden (filled with mid-gray), B: the digit.
colorize       A: the photograph in gray (ITU-R 601 luma, stored as RGB), B: the photograph.
               Photographs from a folder or a zip of images (e.g. the CIFAR-10 JPEGs).

Digits are padded from 28x28 to 32x32 (divisible by 2^5) and resized when another --size is asked
for. Everything is seeded: the same command writes the same files.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import GenforgeError
from ..imageio import IMAGE_SUFFIXES, MAX_IMAGE_FILE_BYTES, bomb_checks, check_image_file, save_png
from .transforms import resize_uint8, to_channels

TASKS = ("edges2digits", "inpaint-digits", "colorize")


def digit_edges(digits: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) digits -> uint8 outlines: ink pixels (>= 128) with a background 4-neighbour."""
    ink = (digits >= 128).float()
    cross = torch.tensor([[0., 1., 0.], [1., 1., 1.], [0., 1., 0.]]).view(1, 1, 3, 3)
    # Erosion with a 3x3 cross: a pixel stays ink only if it and its 4 neighbours are ink.
    eroded = (F.conv2d(ink, cross, padding=1) >= 5).float()
    return ((ink - eroded) * 255).to(torch.uint8)


def mask_squares(digits: torch.Tensor, side: int, seed: int) -> torch.Tensor:
    """Hide one random side x side square per image (filled with 128: 'unknown', unlike black or white)."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = digits.shape
    out = digits.clone()
    ys = torch.randint(0, h - side + 1, (n,), generator=g).tolist()
    xs = torch.randint(0, w - side + 1, (n,), generator=g).tolist()
    for i, (y, x) in enumerate(zip(ys, xs)):
        out[i, :, y:y + side, x:x + side] = 128
    return out


def grayscale_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> the same images in gray (ITU-R 601 luma), still 3 channels."""
    return to_channels(to_channels(images, 1), 3)


def _load_digits(source: str, root: str | None, split: str, size: int) -> torch.Tensor:
    from . import load_dataset

    if source not in ("mnist-5k", "mnist"):
        raise GenforgeError(f"digit tasks read mnist-5k or mnist, not {source!r}; use --source mnist-5k")
    images = load_dataset(source, root, split).images
    images = F.pad(images, (2, 2, 2, 2))  # 28 -> 32: divisible by 2^5, digits untouched
    return resize_uint8(images, size) if size != 32 else images


def _photo_files(source: Path) -> list[tuple[str, bytes | Path]]:
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return [(str(p.relative_to(source)), p) for p in files]
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            members = sorted((m for m in archive.infolist() if Path(m.filename).suffix.lower() in IMAGE_SUFFIXES),
                             key=lambda m: m.filename)
            big = [m for m in members if m.file_size > MAX_IMAGE_FILE_BYTES]
            if big:  # checked from the zip's headers, before reading anything
                raise GenforgeError(f"{source}: {big[0].filename} is {big[0].file_size / 2**20:.0f} MiB uncompressed, "
                                    f"more than the {MAX_IMAGE_FILE_BYTES >> 20} MiB an image may have; remove it")
            return [(m.filename, archive.read(m)) for m in members]
    raise GenforgeError(f"--source {source} is neither a folder of images nor a zip archive; give photographs "
                        "for colorize, e.g. --source ../shared/data/cifar10-jpeg/train.zip")


def _load_photos(source: str, size: int, limit: int, seed: int) -> torch.Tensor:
    entries = _photo_files(Path(source).expanduser())
    if not entries:
        raise GenforgeError(f"--source {source} holds no images (.png, .jpg, ...)")
    if limit and len(entries) > limit:  # a seeded subset, not the first classes of a sorted archive
        pick = np.random.default_rng(seed).choice(len(entries), limit, replace=False)
        entries = [entries[i] for i in sorted(pick)]
    images = []
    for name, content in entries:
        try:
            if not isinstance(content, bytes):
                check_image_file(content)
            with bomb_checks():
                image = Image.open(io.BytesIO(content) if isinstance(content, bytes) else content)
                image = image.convert("RGB")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise GenforgeError(f"{source}: {name} is not a readable image ({type(exc).__name__}); remove it") from None
        side = min(image.size)  # centre square, then resize (PIL's antialiased bicubic)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    return torch.stack(images)


def _write_pairs(folder: Path, inputs: torch.Tensor, targets: torch.Tensor) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    both = torch.cat([inputs, targets], dim=-1).permute(0, 2, 3, 1).numpy()  # A | B side by side
    for i, array in enumerate(both):
        save_png(array, folder / f"{i:05d}.png")
    return len(both)


@dataclass
class MadePairs:
    out_dir: Path
    counts: dict[str, int]


def make_pairs(task: str, out_dir: str | Path, source: str = "", root: str | None = None, size: int = 32,
               limit: int = 0, test_fraction: float = 0.1, seed: int = 0) -> MadePairs:
    """Write a paired dataset for `task` into out_dir/train and out_dir/test. Refuses a non-empty out_dir."""
    out_dir = Path(out_dir)
    if task not in TASKS:
        raise GenforgeError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if size < 8 or size % 4:
        raise GenforgeError(f"--size must be a multiple of 4 and at least 8, got {size}")
    if not 0 < test_fraction < 1:
        raise GenforgeError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GenforgeError(f"{out_dir} exists and is not empty; choose a new --out (nothing was written)")
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if task == "colorize":
        if not source:
            raise GenforgeError("colorize needs photographs: --source FOLDER|ZIP, e.g. ../shared/data/cifar10-jpeg/train.zip")
        photos = _load_photos(source, size, limit, seed)
        if len(photos) < 2:
            raise GenforgeError(f"--source {source} gives {len(photos)} image(s); colorize needs at least 2")
        order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, int(round(len(photos) * test_fraction)))
        for split, idx in (("train", order[n_test:]), ("test", order[:n_test])):
            targets = photos[idx.sort().values]
            splits[split] = (grayscale_rgb(targets), targets)
    else:
        for k, split in enumerate(("train", "test")):
            digits = _load_digits(source or "mnist-5k", root, split, size)
            if limit:
                digits = digits[torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed + k))[:limit]
                                .sort().values] if len(digits) > limit else digits
            if task == "edges2digits":
                splits[split] = (digit_edges(digits), digits)
            else:
                splits[split] = (mask_squares(digits, size // 2, seed + 7 + k), digits)
    counts = {split: _write_pairs(out_dir / split, a, b) for split, (a, b) in splits.items()}
    return MadePairs(out_dir, counts)
