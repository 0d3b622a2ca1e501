"""Folders and zip archives of image files (PNG, JPEG, ...), decoded once into uint8 memory.

Layout (the same inside a zip, which is read in place, never extracted):
  root/<class>/<file>.jpg        -> labelled, classes sorted by name
  root/<file>.png                -> unlabelled
  root/{train,val,test}/...      -> splits; without split folders the whole source is 'train'
A single wrapper folder around everything (``archive/cats/...``) is looked through.

Decoding runs in worker processes (PIL releases little of the GIL, so threads would not help);
each worker decodes, converts and resizes its share so that only final-size pixels cross back.
Every file is checked: a file that is not an image, does not decode completely, uses an unsupported
mode, or whose size or channels differ from the first image's is "bad" and stops the load with one
line naming it, or is skipped with a warning when ``skip_bad`` is set.
"""

from __future__ import annotations

import ctypes
import io
import multiprocessing
import os
import signal
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import GenforgeError
from ..imageio import IMAGE_SUFFIXES, MAX_IMAGE_FILE_BYTES, bomb_checks, check_image_file
from ..progress import task
from .base import ImageDataset
from .captions import Captions, attach_captions, is_caption_file, reader_for
from .options import LoadOptions, check_fits_in_memory

IMAGE_EXTENSIONS = IMAGE_SUFFIXES  # the one list, in imageio
SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}
GRAY_MODES = {"1", "L", "LA", "La"}
COLOR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
# Below this many files, starting worker processes costs more than it saves.
MIN_FILES_FOR_WORKERS = 512
MAX_WORKERS = 8
# The filter for every resize: PIL's BILINEAR, which is antialiased (its triangle kernel is widened
# by the downscaling factor), matching torch's interpolate(mode="bilinear", antialias=True) used for
# in-memory arrays in transforms.resize_uint8.
RESIZE_FILTER = Image.Resampling.BILINEAR
SHOW_BAD = 3  # how many bad file names a warning lists
PROGRESS_MIN_FILES = 5000  # decoding this many files shows progress (when a caller asked for it)


class BadImage(Exception):
    """One file that cannot be used; the message says why (no file name: the caller adds it)."""


def is_hidden(name: str) -> bool:
    parts = name.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] in ("Thumbs.db", "desktop.ini")


# --- listing -----------------------------------------------------------------------------------------

def list_folder(root: Path) -> list[str]:
    """Every non-hidden file under root, as sorted POSIX paths relative to root.

    Symbolic links to folders are followed, but each real folder is walked once: a link loop (or
    two links to one folder) cannot make the walk repeat itself or grow without end."""
    if not root.exists():
        raise GenforgeError(f"folder {root} does not exist; check the path after folder:")
    if not root.is_dir():
        raise GenforgeError(f"{root} is not a folder; use zip:{root} for an archive or npz:{root} for arrays")
    names = []
    seen = {_real_dir_key(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            key = _real_dir_key(Path(dirpath) / d)
            if key is not None and key not in seen:
                seen.add(key)
                kept.append(d)
        dirnames[:] = kept
        rel = Path(dirpath).relative_to(root)
        names.extend((rel / f).as_posix() for f in filenames)
    return sorted(n for n in names if not is_hidden(n))


def _real_dir_key(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder a path leads to, None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def list_zip(path: Path) -> list[str]:
    """Every non-hidden file member of the archive, sorted."""
    if not path.is_file():
        raise GenforgeError(f"zip archive {path} does not exist; check the path after zip:")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [m.filename for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise GenforgeError(f"{path} is not a readable zip archive ({exc}); check the file or make it again") from None
    return sorted(n for n in names if not is_hidden(n))


def select_split(names: list[str], split: str, source: str) -> tuple[str, list[str]]:
    """Look through a wrapper folder, then pick a split folder if the source has them.

    Returns (prefix, names relative to prefix)."""
    prefix = ""
    while names and all("/" in n for n in names) and len({n.split("/", 1)[0] for n in names}) == 1:
        top = names[0].split("/", 1)[0]
        if top in SPLIT_NAMES:
            break
        prefix += top + "/"
        names = [n[len(top) + 1:] for n in names]
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if names and tops and tops <= SPLIT_NAMES and all("/" in n for n in names):
        if split not in tops:
            raise GenforgeError(f"{source} has split folders {', '.join(sorted(tops))} but no {split!r}; "
                                f"use --set data.split={sorted(tops)[0]}")
        prefix += split + "/"
        names = [n[len(split) + 1:] for n in names if n.startswith(split + "/")]
    elif split != "train":
        raise GenforgeError(f"{source} has no split folders (train/, test/, ...), so only split 'train' "
                            f"(all its images) exists, not {split!r}")
    return prefix, names


def class_labels(names: list[str]) -> tuple[list[int] | None, list[str] | None]:
    """Class = first folder of each file when every file is in one; otherwise unlabelled."""
    parts = [n.split("/") for n in names]
    if not parts or any(len(p) < 2 for p in parts):
        return None, None
    class_names = sorted({p[0] for p in parts})
    index = {c: i for i, c in enumerate(class_names)}
    return [index[p[0]] for p in parts], class_names


# --- decoding ----------------------------------------------------------------------------------------

def decode_image(raw: bytes, options: LoadOptions) -> np.ndarray:
    """Decode one encoded image into uint8 (H, W, C), converted and resized as `options` ask."""
    try:
        with bomb_checks(), Image.open(io.BytesIO(raw)) as img:
            img.load()  # decodes everything: a truncated file fails here, not later
            mode = img.mode
            if mode in GRAY_MODES:
                native = 1
            elif mode in COLOR_MODES:
                native = 3
            else:
                raise BadImage(f"pixel mode {mode} (16-bit or float) is not supported; convert it to 8-bit")
            channels = options.channels or native
            if mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # avoids PIL's warning; alpha is dropped just below
            img = img.convert("L" if channels == 1 else "RGB")
            size = options.image_size or options.default_image_size
            if size:
                w, h = img.size
                if w != h and options.crop == "center":
                    side = min(w, h)
                    left, top = (w - side) // 2, (h - side) // 2
                    img = img.crop((left, top, left + side, top + side))
                if img.size != (size, size):
                    img = img.resize((size, size), RESIZE_FILTER)
            array = np.asarray(img, dtype=np.uint8)
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadImage(f"not a readable image ({reason})") from None
    return array[:, :, None] if array.ndim == 2 else array


_open_zips: dict[tuple[int, str], zipfile.ZipFile] = {}


def read_member(kind: str, container: str, name: str) -> bytes:
    """The bytes of one file of a folder or zip (each process keeps its own open ZipFile). Only regular
    files are read, and only after their size (a folder file's, or a zip member's declared size,
    which zipfile never reads past) is checked against MAX_IMAGE_FILE_BYTES."""
    try:
        if kind == "folder":
            path = Path(container) / name
            check_image_file(path)
            return path.read_bytes()
        key = (os.getpid(), container)
        if key not in _open_zips:
            _open_zips[key] = zipfile.ZipFile(container)
        member = _open_zips[key].getinfo(name)
        if member.file_size > MAX_IMAGE_FILE_BYTES:
            raise OSError(f"{member.file_size / 2**20:.0f} MiB uncompressed, more than the "
                          f"{MAX_IMAGE_FILE_BYTES >> 20} MiB an image file may have")
        return _open_zips[key].read(member)
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise BadImage(f"cannot be read ({exc})") from None


def decode_chunk(kind: str, container: str, items: list[tuple[int, str]], options: LoadOptions):
    """Decode some files. Returns ([(index, array)], [(index, reason)]); runs in a worker."""
    good, bad = [], []
    for i, name in items:
        extension = os.path.splitext(name)[1].lower()
        if extension not in IMAGE_EXTENSIONS:
            bad.append((i, f"not an image file (extension {extension or 'none'!r})"))
            continue
        try:
            good.append((i, decode_image(read_member(kind, container, name), options)))
        except BadImage as exc:
            bad.append((i, str(exc)))
    return good, bad


def _die_with_parent(parent: int) -> None:
    """Worker initialiser: the kernel kills this worker when its parent dies (SIGKILL included), so no
    decoder outlives an interrupted load holding memory and the parent's stderr; SIGINT is left to
    the parent, which stops the pool (see stop_pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def decoder_pool(workers: int) -> ProcessPoolExecutor:
    """The worker processes that decode image files; they die with this process."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a decoder pool at once: cancel what has not started and kill the running workers."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(timeout=5)


def worker_count(options: LoadOptions, files: int) -> int:
    if options.workers == 1 or files < MIN_FILES_FOR_WORKERS:
        return 1
    return options.workers or min(os.cpu_count() or 1, MAX_WORKERS)


def _shape_text(shape: tuple[int, ...]) -> str:
    h, w, c = shape
    return f"{w}x{h} {'gray' if c == 1 else 'RGB'}"


@dataclass
class DecodeResult:
    images: np.ndarray  # (N, H, W, C) uint8
    kept: list[int]  # positions (in the name list) of the decoded images
    bad: list[tuple[str, str]]  # (name, reason) of skipped files


def decode_all(kind: str, container: str, names: list[str], options: LoadOptions, source: str,
               shown_prefix: str = "") -> DecodeResult:
    """Decode every named file into one uint8 array; bad files fail (or are skipped with skip_bad)."""
    if not names:
        raise GenforgeError(f"{source} holds no image files; put .png/.jpg files in it "
                            "(one subfolder per class for labels)")
    # Probe: the first decodable file fixes the expected shape and lets us check memory up front.
    probe_bad: list[tuple[int, str]] = []
    reference, probe = None, 0
    for probe, name in enumerate(names[:50]):
        good, bad = decode_chunk(kind, container, [(probe, name)], options)
        if good:
            reference = good[0][1].shape
            break
        probe_bad.extend(bad)
    if reference is None:
        first_i, reason = probe_bad[0]
        raise GenforgeError(f"{shown_prefix}{names[first_i]}: {reason}; no readable image among the first "
                            f"{len(probe_bad)} files of {source}")
    h, w, c = reference
    if h != w and not (options.image_size or options.default_image_size):
        pairs = ""
        if w == 2 * h and kind == "folder":  # the pix2pix datasets' side-by-side pairs
            pairs = (f"; twice as wide as high, these look like side-by-side pairs: for pix2pix use "
                     f"--data paired:{container}")
        raise GenforgeError(f"{shown_prefix}{names[probe]} is {w}x{h}, not square; give a size to crop and resize "
                            f"to, e.g. --set data.image_size=64{pairs}")
    check_fits_in_memory(len(names), c, h, w, source)

    out = np.empty((len(names), h, w, c), dtype=np.uint8)
    filled = np.zeros(len(names), dtype=bool)
    bad: list[tuple[int, str]] = []
    items = list(enumerate(names))
    workers = worker_count(options, len(items))

    def collect(result) -> None:
        good, chunk_bad = result
        bad.extend(chunk_bad)
        for j, array in good:
            if array.shape != reference:
                bad.append((j, f"is {_shape_text(array.shape)} but the first image {shown_prefix}{names[probe]} is "
                               f"{_shape_text(reference)} (mixed sizes or modes; set data.image_size and "
                               "data.channels to convert all)"))
            else:
                out[j] = array
                filled[j] = True

    # Progress only for large sources (a one-off decoding of minutes): a bar or plain lines.
    progress = task(f"decoding {source}", len(items) if len(items) >= PROGRESS_MIN_FILES else 0, "image")
    if workers == 1:
        chunk = max(256, len(items) // 100)
        for k in range(0, len(items), chunk):
            collect(decode_chunk(kind, container, items[k:k + chunk], options))
            progress.update(len(items[k:k + chunk]))
    else:
        chunk = max(64, len(items) // (workers * 8))
        pool = decoder_pool(workers)
        try:
            futures = [pool.submit(decode_chunk, kind, container, items[k:k + chunk], options)
                       for k in range(0, len(items), chunk)]
            for k, future in zip(range(0, len(items), chunk), futures):
                collect(future.result())
                progress.update(len(items[k:k + chunk]))
        except BaseException:  # SIGINT (KeyboardInterrupt), a failed worker: stop the others now
            stop_pool(pool)
            raise
        pool.shutdown()
    progress.close()

    for key in [k for k in _open_zips if k[0] == os.getpid()]:  # workers=1 opened it here: close it
        _open_zips.pop(key).close()
    bad.sort()
    named_bad = [(shown_prefix + names[j], reason) for j, reason in bad]
    if named_bad and not options.skip_bad:
        more = f" (and {len(named_bad) - 1} more bad files)" if len(named_bad) > 1 else ""
        name, reason = named_bad[0]
        raise GenforgeError(f"{name}: {reason}{more}; fix or remove it, or pass --skip-bad to skip bad files")
    kept = np.flatnonzero(filled)
    if not len(kept):
        raise GenforgeError(f"{source}: none of its {len(names)} files is a usable image "
                            f"(first: {named_bad[0][0]}: {named_bad[0][1]})")
    if named_bad:
        listed = "; ".join(f"{n}: {r}" for n, r in named_bad[:SHOW_BAD])
        print(f"genforge: warning: skipped {len(named_bad)} bad file(s) of {source} ({listed}"
              f"{'; ...' if len(named_bad) > SHOW_BAD else ''})", file=sys.stderr, flush=True)
    images = out if len(kept) == len(names) else out[kept]
    return DecodeResult(images, kept.tolist(), named_bad)


def to_dataset(result: DecodeResult, names: list[str], source: str, labelled: bool = True,
               captions: Captions | None = None) -> ImageDataset:
    """Wrap decoded images as an ImageDataset, with labels from class folders when there are some,
    and captions (one list per image) when the source is captioned."""
    images = torch.from_numpy(result.images).permute(0, 3, 1, 2).contiguous()
    labels, class_names = class_labels(names) if labelled else (None, None)
    label_tensor = torch.tensor([labels[k] for k in result.kept], dtype=torch.int64) if labels else None
    texts = [captions.texts[names[k]] for k in result.kept] if captions is not None else None
    data = ImageDataset(images, label_tensor, class_names, source, captions=texts)
    data.extras["skipped"] = result.bad
    if captions is not None and captions.extra:
        data.extras["metadata"] = [captions.extra.get(names[k], {}) for k in result.kept]
    return data


def split_captions(kind: str, container: str, names: list[str], shown_prefix: str, source: str,
                   options: LoadOptions) -> tuple[list[str], Captions | None]:
    """Separate caption files (captions.py) from the images of a folder and read them; labels
    still come from the images' class folders."""
    caption_files = [n for n in names if is_caption_file(n)]
    if not caption_files:
        return names, None
    images = [n for n in names if not is_caption_file(n)]
    return attach_captions(images, caption_files, reader_for(kind, container), shown_prefix, source, options.skip_bad)


# --- sources -----------------------------------------------------------------------------------------

def load_folder(path: str, split: str, options: LoadOptions) -> ImageDataset:
    """`folder:PATH`: a folder of image files, class subfolders becoming labels."""
    root = Path(path).expanduser()
    prefix, names = select_split(list_folder(root), split, f"folder {root}")
    source = f"folder:{root}" + (f" ({split})" if prefix.endswith(split + "/") else "")
    names, captions = split_captions("folder", str(root / prefix), names, f"{root / prefix}/", source, options)
    result = decode_all("folder", str(root / prefix), names, options, source, shown_prefix=f"{root / prefix}/")
    return to_dataset(result, names, f"folder:{root}/{split}", captions=captions)


def load_zip(path: str, split: str, options: LoadOptions) -> ImageDataset:
    """`zip:PATH`: the same layout as a folder, inside a zip archive read in place."""
    archive = Path(path).expanduser()
    prefix, names = select_split(list_zip(archive), split, f"zip archive {archive}")
    names, captions = split_zip_captions(archive, prefix, names, options)
    full = [prefix + n for n in names]
    result = decode_all("zip", str(archive), full, options, f"zip archive {archive}", shown_prefix=f"{archive}:")
    return to_dataset(result, names, f"zip:{archive}/{split}", captions=captions)


def split_zip_captions(archive: Path, prefix: str, names: list[str], options: LoadOptions):
    """split_captions for a zip whose split folder is `prefix` inside the archive."""
    caption_files = [n for n in names if is_caption_file(n)]
    if not caption_files:
        return names, None
    read_member_bytes = reader_for("zip", str(archive))
    images = [n for n in names if not is_caption_file(n)]
    return attach_captions(images, caption_files, lambda name: read_member_bytes(prefix + name),
                           f"{archive}:{prefix}", f"zip archive {archive}", options.skip_bad)
