"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of plain tensors, numbers, strings, lists and dicts (state dicts, step,
every RNG state, the resolved config and the genforge version), saved with ``torch.save`` to a
temporary file in the same folder, flushed and fsync'ed, then renamed over the final name, so a
crash at any moment leaves either the old file or the new one, never half of one. Loading uses
``torch.load(weights_only=True)``, which refuses pickled code. The numpy RNG state is stored as a
tensor so that it loads that way.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..imageio import atomic_path
from ..rundir import CHECKPOINT_DIR, checkpoint_path, list_checkpoints, load_checkpoint  # noqa: F401


class _RecordingWriter:
    """A file's write() that remembers the OSError (a full disk) torch.save turns into a RuntimeError."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: Path, payload: dict) -> None:
    # Straight into the temporary file: serialising into memory first held the whole checkpoint
    # twice more (the buffer and its bytes), e.g. +120 MB of peak memory for a 128x128 pix2pix.
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _RecordingWriter(file)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:  # the CLI reports an OSError as one line
                raise writer.error from None
            raise


def capture_rng_state() -> dict:
    """Every RNG the training touches: Python's, numpy's global one, torch's CPU and CUDA ones."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
