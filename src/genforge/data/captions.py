"""Captions of the images of a folder or zip (text-to-image data).

Two conventions, which may be mixed in one source:
  cat.png + cat.txt          a sidecar text file with the image's stem, one caption per line
  metadata.jsonl             one JSON object a line: {"file_name": "cat.png", "text": "a cat"}; "text"
                             may be a list of captions; other keys (e.g. "attributes") are kept
  metadata.csv               columns file_name and text; several rows may name one image
A metadata file's file_name is relative to the folder the metadata file is in (the convention of
Hugging Face image folders). Several captions per image are allowed (any caption of an image may
be drawn for it in a training step).

A source with no caption file at all is plain image data. Once it has one, every image needs a
caption; bad input (an image without a caption, a caption without an image, an empty caption, a
file that is not UTF-8, a malformed metadata line) stops the load with one line naming the file, or
is skipped with a warning under skip_bad.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GenforgeError

CAPTION_SUFFIX = ".txt"
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
MAX_CAPTION_FILE_BYTES = 64 << 20
"""A caption or metadata file larger than this is refused (they are read whole into memory)."""


def is_caption_file(name: str) -> bool:
    """A sidecar caption (.txt) or a metadata file, by name."""
    base = posixpath.basename(name)
    return base in METADATA_NAMES or base.lower().endswith(CAPTION_SUFFIX)


@dataclass
class Captions:
    """Captions by image name (names relative to the split folder), and metadata rows' other keys."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, dict] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) of caption input that was skipped (skip_bad)."""


def reader_for(kind: str, container: str) -> Callable[[str], bytes]:
    """A function reading one file (by name relative to `container`) of a folder or zip."""
    if kind == "folder":
        def read(name: str) -> bytes:
            path = Path(container) / name
            if path.stat().st_size > MAX_CAPTION_FILE_BYTES:
                raise OSError(f"larger than {MAX_CAPTION_FILE_BYTES >> 20} MiB")
            return path.read_bytes()
        return read

    def read_zip(name: str) -> bytes:
        with zipfile.ZipFile(container) as archive:
            member = archive.getinfo(name)
            if member.file_size > MAX_CAPTION_FILE_BYTES:
                raise OSError(f"larger than {MAX_CAPTION_FILE_BYTES >> 20} MiB")
            return archive.read(member)
    return read_zip


class BadCaption(Exception):
    """One caption input that cannot be used; the message says why."""


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadCaption(f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _clean(text) -> str:
    if not isinstance(text, str):
        raise BadCaption(f"has a caption that is not text ({type(text).__name__})")
    return " ".join(text.split())


def _rows_jsonl(text: str) -> list[tuple[int, str, list, dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BadCaption(f"line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "file_name" not in row or "text" not in row:
            raise BadCaption(f"line {number} needs the keys file_name and text")
        texts = row["text"] if isinstance(row["text"], list) else [row["text"]]
        rows.append((number, str(row["file_name"]), texts, {k: v for k, v in row.items() if k not in ("file_name", "text")}))
    return rows


def _rows_csv(text: str) -> list[tuple[int, str, list, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "file_name" not in reader.fieldnames or "text" not in reader.fieldnames:
        raise BadCaption(f"needs the columns file_name and text (it has {', '.join(reader.fieldnames or []) or 'none'})")
    return [(number, row["file_name"] or "", [row["text"] or ""], {}) for number, row in enumerate(reader, 2)]


def read_captions(caption_files: list[str], images: list[str], read: Callable[[str], bytes], shown_prefix: str,
                  skip_bad: bool) -> Captions:
    """Parse every caption file (names relative to the split folder) for the given image names."""
    out = Captions()
    image_set = set(images)
    by_stem: dict[str, list[str]] = {}
    for name in images:
        by_stem.setdefault(posixpath.splitext(name)[0], []).append(name)

    def bad(where: str, reason: str) -> None:
        if not skip_bad:
            raise GenforgeError(f"{shown_prefix}{where} {reason}; fix or remove it, or pass --skip-bad to skip it")
        out.bad.append((shown_prefix + where, reason))

    def add(image: str, texts: list, where: str) -> None:
        try:
            cleaned = [_clean(t) for t in texts]
        except BadCaption as exc:
            return bad(where, str(exc))
        cleaned = [t for t in cleaned if t]
        if not cleaned:
            return bad(where, f"gives {image} an empty caption; write at least one word")
        out.texts.setdefault(image, []).extend(cleaned)

    for name in caption_files:
        try:
            text = _decode(read(name))
        except BadCaption as exc:
            bad(name, str(exc))
            continue
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            bad(name, f"cannot be read ({exc})")
            continue
        base = posixpath.basename(name)
        if base in METADATA_NAMES:
            folder = posixpath.dirname(name)
            try:
                rows = _rows_jsonl(text) if base.endswith(".jsonl") else _rows_csv(text)
            except BadCaption as exc:
                bad(name, str(exc))
                continue
            for number, file_name, texts, extra in rows:
                image = posixpath.normpath(posixpath.join(folder, file_name)) if file_name else ""
                if image not in image_set:
                    bad(f"{name} line {number}", f"names {file_name!r}, which is not an image of this source "
                        "(a caption without an image)")
                    continue
                add(image, texts, f"{name} line {number}")
                if extra:
                    out.extra[image] = extra
        else:
            stem = posixpath.splitext(name)[0]
            matches = by_stem.get(stem, [])
            if not matches:
                bad(name, "is a caption without an image (no image file with its name)")
                continue
            add(matches[0], text.splitlines(), name)
    return out


def attach_captions(names: list[str], caption_files: list[str], read: Callable[[str], bytes], shown_prefix: str,
                    source: str, skip_bad: bool) -> tuple[list[str], Captions | None]:
    """The image names to decode (those without a caption dropped under skip_bad) and their captions;
    (names, None) when the source has no caption file."""
    if not caption_files or not names:  # no image at all: the decoder says the source holds none
        return names, None
    captions = read_captions(caption_files, names, read, shown_prefix, skip_bad)
    missing = [n for n in names if n not in captions.texts]
    if missing and not skip_bad:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise GenforgeError(f"{shown_prefix}{missing[0]} has no caption{more} but {source} is captioned; add "
                            f"{posixpath.splitext(missing[0])[0]}.txt or a metadata.jsonl row, or pass --skip-bad to "
                            "skip images without captions")
    captions.bad.extend((shown_prefix + n, "has no caption") for n in missing)
    if captions.bad:
        listed = "; ".join(f"{n}: {r}" for n, r in captions.bad[:3])
        print(f"genforge: warning: skipped {len(captions.bad)} bad caption input(s) of {source} ({listed}"
              f"{'; ...' if len(captions.bad) > 3 else ''})", file=sys.stderr, flush=True)
    kept = [n for n in names if n in captions.texts]
    if not kept:
        raise GenforgeError(f"{source}: no image has a usable caption; write a caption per image")
    return kept, captions
