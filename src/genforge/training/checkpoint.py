"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of plain tensors, numbers, strings, lists and dicts (state dicts, step,
every RNG state, the resolved config and the genforge version), saved with ``torch.save`` to a
temporary file in the same folder, flushed and fsync'ed, then renamed over the final name, so a
crash at any moment leaves either the old file or the new one, never half of one. Loading uses
``torch.load(weights_only=True)``, which refuses pickled code. The numpy RNG state is stored as a
tensor so that it loads that way.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import GenforgeError

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file + fsync + rename (+ fsync of the folder)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a genforge checkpoint safely; a truncated or foreign file is a GenforgeError."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise GenforgeError(f"checkpoint {path} does not exist; list the run's checkpoints with genforge info") from None
    except Exception as exc:  # truncated zip, pickle with code, random bytes: all one message
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"checkpoint {path} is truncated, corrupt or not a genforge checkpoint ({reason}); "
                            "move it out of the run folder to resume from the one before") from None
    if not isinstance(payload, dict) or payload.get("format") != "genforge-checkpoint":
        raise GenforgeError(f"{path} is not a genforge checkpoint; point at a run directory made by genforge train")
    return payload


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first; temporary files are ignored."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


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
