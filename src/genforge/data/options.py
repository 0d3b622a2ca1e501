"""Load-time options shared by every dataset loader, and the in-memory budget check."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import GenforgeError

# Decoded data may use at most this fraction of the memory available when loading starts: the
# training process also needs room for networks, optimiser state and the float copy of a batch.
MEMORY_FRACTION = 0.5


@dataclass
class LoadOptions:
    """How a source is decoded into memory. Loaders that cannot use a field ignore it; the generic
    resize / channel conversion in :func:`genforge.data.load_dataset` catches up afterwards."""

    image_size: int | None = None
    """Resize to image_size x image_size (after squaring, see `crop`); None keeps the native size."""
    channels: int | None = None
    """Convert to 1 (luma) or 3 channels; None keeps the native channels (they must agree)."""
    crop: str = "center"
    """How non-square images become square before resizing: 'center' crop or 'stretch'."""
    skip_bad: bool = False
    """Skip unreadable or mismatched files with a warning instead of failing."""
    workers: int = 0
    """Decoder processes for image files; 0 picks min(CPU count, 8), 1 decodes in this process."""
    default_image_size: int | None = None
    """Set by a dataset with a standard size (celeba: 64) when image_size is None."""


def available_memory() -> int:
    """Bytes of memory available to a new allocation: MemAvailable from /proc/meminfo where it
    exists (Linux), else free physical pages from sysconf, else 0 (unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits_in_memory(count: int, channels: int, height: int, width: int, source: str) -> None:
    """Refuse to decode a dataset whose uint8 tensor would not fit in the memory budget.

    genforge holds every training image decoded in memory (no streaming from disk yet); a set
    that does not fit fails here, before any work, with the numbers and the ways out.
    """
    need = count * channels * height * width
    have = available_memory()
    if have and need > MEMORY_FRACTION * have:
        raise GenforgeError(
            f"{source}: {count:,} images of {channels}x{height}x{width} need {need / 2**30:.1f} GiB decoded, more than "
            f"{MEMORY_FRACTION:.0%} of the {have / 2**30:.1f} GiB available (genforge holds data in memory and does "
            "not stream from disk); use a smaller --set data.image_size, --set data.channels=1, or fewer images")
