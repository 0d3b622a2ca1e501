"""Images in and out: uint8 <-> float conversions, grids, PNG and GIF files, and the one atomic
writer every file genforge writes goes through. The ground floor: imports no family."""

from __future__ import annotations

import math
import os
import shutil
import stat
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import GenforgeError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
"""The one list of image file extensions genforge reads (data folders and zips, pairs, encode, translate)."""


def is_image_name(name: str | Path) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image_name(p))


MAX_IMAGE_FILE_BYTES = 256 * 2**20
"""The largest image file genforge reads (checked before reading): a bigger one is refused, not read."""
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr",
                             "LAB", "HSV"})
"""PIL modes of 8-bit images; 16-bit and float images ('I;16', 'I', 'F') are refused everywhere alike."""


def check_image_file(path: str | Path) -> int:
    """The size of a regular image file no larger than MAX_IMAGE_FILE_BYTES; anything else (a FIFO, a
    device such as a link to /dev/zero, a huge or sparse file) raises OSError before a byte is read."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError("not a regular file (a FIFO, device or socket); genforge reads only regular files")
    if info.st_size > MAX_IMAGE_FILE_BYTES:
        raise OSError(f"{info.st_size / 2**20:.0f} MiB, more than the {MAX_IMAGE_FILE_BYTES >> 20} MiB an image file "
                      "may have")
    return info.st_size


@contextmanager
def bomb_checks():
    """PIL's decompression-bomb limit as an error from its first level (PIL only warns below twice it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode one 8-bit image file; an unreadable, oversized, non-regular or 16-bit
    file is a one-line GenforgeError."""
    try:
        check_image_file(path)
        with bomb_checks():
            image = Image.open(path)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise GenforgeError(f"{path}: not a readable image ({reason}); remove or replace the file") from None
    if image.mode not in EIGHT_BIT_MODES:
        raise GenforgeError(f"{path}: pixel mode {image.mode} (16-bit or float) is not supported; convert it to 8-bit")
    return image


def image_array(image: Image.Image, mode: str) -> np.ndarray:
    """H x W x C uint8 in mode 'L' or 'RGB' (transparency dropped, palettes expanded)."""
    array = np.asarray(image.convert(mode))
    return array[..., None] if array.ndim == 2 else array


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a unique temporary path beside `path`; on success it is fsync'ed and renamed over `path`
    (and the folder fsync'ed), so a crash leaves the old file or the new one, never half of one.
    On an error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600 (and some writers recreate the file): give it the mode open() would give
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_folder(path: str | Path):
    """atomic_path for a folder: yield a new temporary folder beside `path`; on success every file in
    it is fsync'ed and the folder renamed to `path`; on an error it is removed."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for file in tmp.iterdir():
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the range of a tanh generator)."""
    return images.float().div_(127.5).sub_(1.0)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1] (Bernoulli means / Gaussian targets)."""
    return images.float().div_(255.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to uint8, or uint8 unchanged."""
    if images.dtype == torch.uint8:
        return images.cpu()
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """(N, C, H, W) images ([0, 1] floats or uint8) to one H x W x C uint8 array, nrow per row."""
    images = to_uint8(images)
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.permute(1, 2, 0).numpy()


_WRITTEN_MAGIC = (b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def check_overwrite(path: str | Path, force: bool = False) -> None:
    """Refuse to replace an existing file that is not a PNG or GIF (the images genforge writes), or a
    folder, unless `force`: `sample --out notes.txt` must not turn a text file into PNG data."""
    path = Path(path)
    if path.is_dir():
        raise GenforgeError(f"{path} is a folder; give a file name for the image, e.g. {path / 'samples.png'}")
    if force or not path.exists():
        return
    try:
        with open(path, "rb") as f:
            head = f.read(8) if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else b""
    except OSError:
        head = b""
    if not head.startswith(_WRITTEN_MAGIC):
        raise GenforgeError(f"{path} exists and is not an image genforge wrote; choose another --out "
                            "(or pass --force to replace it)")


def save_png(array: np.ndarray, path: str | Path, force: bool = False) -> Path:
    """Save an H x W x C uint8 array as PNG (gray for one channel), creating parent folders. An existing
    file that is not a PNG or GIF is only replaced with `force` (see check_overwrite)."""
    path = Path(path)
    check_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode_array = array[..., 0] if array.shape[-1] == 1 else array
    with atomic_path(path) as tmp:
        Image.fromarray(mode_array).save(tmp, format="PNG")
    return path


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, force: bool = False) -> Path:
    return save_png(make_grid(images, nrow), path, force=force)


def save_separate(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    """One PNG per image: folder/sample-00000.png, ..."""
    images = to_uint8(images)
    return [save_png(img.permute(1, 2, 0).numpy(), Path(folder) / f"{prefix}-{i:05d}.png") for i, img in enumerate(images)]


GIF_MIN_SIDE = 256
"""scale 0 (the default) enlarges GIF frames to at least this many pixels a side: a 28x28 digit is
unreadably small in a browser or a chat window."""


def save_gif(images: torch.Tensor, path: str | Path, frame_ms: int = 120, scale: int = 0) -> Path:
    """(N, C, H, W) frames ([0, 1] floats or uint8) as a looping animated GIF, each frame shown
    frame_ms milliseconds, enlarged `scale` times (nearest neighbour); 0: to at least GIF_MIN_SIDE
    pixels a side."""
    if scale <= 0:
        scale = max(1, -(-GIF_MIN_SIDE // max(images.shape[-2:])))
    path = Path(path)
    check_overwrite(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    for img in to_uint8(images):
        array = img.permute(1, 2, 0).numpy()
        frame = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        if scale > 1:
            frame = frame.resize((frame.width * scale, frame.height * scale), Image.NEAREST)
        frames.append(frame)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path
