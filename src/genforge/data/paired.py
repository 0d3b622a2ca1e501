"""Paired (aligned) images for image-to-image models, in the two layouts people ship them in.

side by side (the pix2pix datasets: facades, maps, edges2shoes): each file holds A on the left half
  and B on the right half; a dataset folder has ``train/``, ``val/``, ``test/`` subfolders.
two folders: ``A/`` and ``B/`` hold the two images of a pair under the same file name (any
  extensions); also per split (``train/A``, ``train/B``, ...), or split inside (``A/train``,
  ``B/train``, ..., as the pix2pix repository's ``combine_A_and_B.py`` takes them).

A split folder is ``PATH/<split>`` when it exists, else ``PATH`` itself for the train split. Every
pair's halves must have the same size, and all pairs the same size (resize later with
data.image_size). Gray and colour files are never mixed silently: when any file is colour, all are
read as RGB (gray replicated); otherwise all are gray. The result is an ImageDataset whose
``images`` are A and ``targets`` are B; ``prepare_pairs`` applies the direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GenforgeError
from ..imageio import image_array, image_files, open_image
from .base import ImageDataset

GRAY_MODES = ("L", "1", "I;16", "I")


def _decode(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """One file as H x W x 1 (gray) or H x W x 3 uint8, and its size; the PIL image is dropped at once."""
    image = open_image(path)
    size = image.size
    array = image_array(image, "L" if image.mode in GRAY_MODES else "RGB")
    image.close()
    return array, size


def _stack(arrays: list[np.ndarray | None], channels: int, columns: slice = slice(None),
           free: bool = True) -> torch.Tensor:
    """Copy H x W x C uint8 arrays (their `columns`) into one (N, channels, H, W') tensor, gray ones
    replicated to 3 channels when `channels` is 3 (as PIL's convert('RGB')); with `free`, each array
    is dropped once copied. Decoding into PIL images, stacking, permuting and then splitting pairs
    held about five copies of the data at once; this holds the arrays and the tensor."""
    first = arrays[0][:, columns]
    out = np.empty((len(arrays), channels, first.shape[0], first.shape[1]), dtype=np.uint8)
    for i, array in enumerate(arrays):
        out[i] = array[:, columns].transpose(2, 0, 1)  # 1 channel broadcasts to 3
        if free:
            arrays[i] = None
    return torch.from_numpy(out)


def read_pairs(folder: str | Path) -> ImageDataset:
    """Read one split folder in either layout: A -> ``images``, B -> ``targets``, file stems in extras['names']."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenforgeError(f"paired data folder {folder} does not exist; make one with genforge data make-pairs "
                            "or point at a folder of side-by-side pairs or with A/ and B/ subfolders")
    if (folder / "A").is_dir() and (folder / "B").is_dir():
        return _read_two_folders(folder)
    files = image_files(folder)
    if not files:
        raise GenforgeError(f"{folder} holds no images (.png, .jpg, ...) and no A/ and B/ subfolders; "
                            "put side-by-side pairs or A/ and B/ folders there")
    return read_side_by_side(files, str(folder))


def read_side_by_side(files: list[Path], name: str = "") -> ImageDataset:
    """Side-by-side pair files (A left, B right): A -> ``images``, B -> ``targets``."""
    arrays = []
    for path in files:
        array, size = _decode(path)
        if not arrays:
            width, height = size
            if width % 2:
                raise GenforgeError(f"{path}: width {width} is odd, so its A and B halves differ in size; "
                                    "a side-by-side pair is two images of equal width")
        elif size != (width, height):
            raise GenforgeError(f"{path}: {size[0]}x{size[1]} but {files[0].name} is {width}x{height}; "
                                "all pairs must have one size (resize them first)")
        arrays.append(array)
    half = width // 2
    channels = max(x.shape[2] for x in arrays)  # any colour file makes all RGB (gray replicated)
    a = _stack(arrays, channels, slice(0, half), free=False)
    b = _stack(arrays, channels, slice(half, None))
    return ImageDataset(a, name=name, extras={"names": [p.stem for p in files]}, targets=b)


def _read_two_folders(folder: Path, a_dir: Path | None = None, b_dir: Path | None = None) -> ImageDataset:
    """A/ and B/ under `folder`, or the given a_dir and b_dir (the pix2pix repository's A/train + B/train)."""
    a_dir, b_dir = a_dir or folder / "A", b_dir or folder / "B"
    a_files = {p.stem: p for p in image_files(a_dir)}
    b_files = {p.stem: p for p in image_files(b_dir)}
    if not a_files:
        raise GenforgeError(f"{a_dir} holds no images; put the input images there")
    missing = sorted(set(a_files) ^ set(b_files))
    if missing:
        side = "B" if missing[0] in a_files else "A"
        raise GenforgeError(f"{folder}: {len(missing)} file name(s) have no partner, e.g. {missing[0]!r} is missing "
                            f"from {side}/; A/ and B/ must hold the same file names")
    names = sorted(a_files)
    a_arrays, b_arrays = [], []
    size = None
    for n in names:
        (a, a_size), (b, b_size) = _decode(a_files[n]), _decode(b_files[n])
        if a_size != b_size:
            raise GenforgeError(f"{b_files[n]}: {b_size[0]}x{b_size[1]} but its partner {a_files[n].name} in A/ is "
                                f"{a_size[0]}x{a_size[1]}; the two images of a pair must have the same size")
        size = size or a_size
        if a_size != size:
            raise GenforgeError(f"{a_files[n]}: {a_size[0]}x{a_size[1]} but {a_files[names[0]].name} is "
                                f"{size[0]}x{size[1]}; all pairs must have one size (resize them first)")
        a_arrays.append(a)
        b_arrays.append(b)
    channels = max(x.shape[2] for x in a_arrays + b_arrays)  # any colour file makes all RGB (gray replicated)
    a, b = _stack(a_arrays, channels), _stack(b_arrays, channels)
    return ImageDataset(a, name=str(folder), extras={"names": names}, targets=b)


def load_paired(path: str, split: str = "train") -> ImageDataset:
    """The ``paired:PATH`` source: PATH/<split> when it exists, else PATH itself for the train split."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise GenforgeError(f"paired data folder {root} does not exist; make one with genforge data make-pairs "
                            "or point paired:PATH at a folder with train/ (and test/) subfolders")
    if (root / split).is_dir():
        return read_pairs(root / split)
    if (root / "A" / split).is_dir() and (root / "B" / split).is_dir():
        # The layout the pix2pix repository's datasets/combine_A_and_B.py takes: A/train, B/train, A/test, ...
        return _read_two_folders(root, root / "A" / split, root / "B" / split)
    if any((root / side / s).is_dir() for side in ("A", "B") for s in ("train", "val", "test")):
        raise GenforgeError(f"paired data {root} has A/ and B/ split folders but no A/{split} and B/{split} pair; "
                            f"put the {split} images in both")
    if split == "train" and root.is_dir() and not any((root / s).is_dir() for s in ("val", "test")):
        return read_pairs(root)
    raise GenforgeError(f"paired data {root} has no {split}/ folder; expected {root / split} holding "
                        "side-by-side pairs or A/ and B/ subfolders")


def prepare_pairs(data: ImageDataset, direction: str, source: str = "") -> ImageDataset:
    """Check that `data` is paired and square, and orient it: 'AtoB' keeps it, 'BtoA' swaps the halves."""
    if data.targets is None:
        raise GenforgeError(f"pix2pix needs paired data but {source or data.name} has no targets; use "
                            "--data paired:PATH (make pairs with genforge data make-pairs)")
    height, width = data.images.shape[-2:]
    if height != width:
        raise GenforgeError(f"{source or data.name}: pairs are {width}x{height}, not square; resize them with "
                            f"--set data.image_size={min(height, width)}")
    if data.targets.shape[1] != data.images.shape[1]:
        raise GenforgeError(f"{source or data.name}: A has {data.images.shape[1]} channel(s) and B "
                            f"{data.targets.shape[1]}; convert both with --set data.channels=3")
    if direction == "BtoA":
        data = ImageDataset(data.targets, data.labels, data.class_names, data.name, dict(data.extras), data.images)
    return data


def jitter_pairs(inputs: torch.Tensor, targets: torch.Tensor, jitter: int = 0,
                 flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's random jitter and mirroring (section 6.2), identical on both images of each pair.

    Float (N, C, S, S) pairs are resized to S + jitter (bilinear) and a random S x S window is cut from
    both at the same place; with `flip`, both are mirrored together with probability 1/2. Random
    numbers come from torch's CPU generator, which checkpoints capture, so resume stays exact.
    """
    n, _, size, _ = inputs.shape
    if jitter:
        both = torch.cat([inputs, targets], dim=1)
        both = F.interpolate(both, size=(size + jitter, size + jitter), mode="bilinear", align_corners=False)
        offsets = torch.randint(0, jitter + 1, (n, 2)).tolist()
        both = torch.stack([both[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(offsets)])
        inputs, targets = both[:, :inputs.shape[1]], both[:, inputs.shape[1]:]
    if flip:
        mirror = (torch.rand(n) < 0.5).to(inputs.device).view(n, 1, 1, 1)
        inputs = torch.where(mirror, inputs.flip(-1), inputs)
        targets = torch.where(mirror, targets.flip(-1), targets)
    return inputs, targets
