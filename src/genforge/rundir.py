"""The run-directory contract: what `genforge train` writes into a run folder and how it is read.

    RUN/config.yaml              the resolved configuration (config.RunConfig.to_dict)
    RUN/metrics.jsonl            one JSON record per log/eval line: {"step": ..., name: value}
    RUN/checkpoints/step-N.pt    checkpoints (state dicts, step, RNG states, config, version)
    RUN/samples/step-N.png       training snapshots; samples/latest.png is the newest

Everything here is read without executing code (YAML safe_load, torch.load(weights_only=True)).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import yaml

from .config import RunConfig
from .errors import GenforgeError
from .imageio import atomic_write_bytes

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


def slug(name: str) -> str:
    """A dataset or source name as a file-name part: 'zip:data/x.zip' -> 'zip-data-x.zip'."""
    return name.replace(":", "-").replace("/", "-").replace("\\", "-")


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write_bytes(Path(run_dir) / CONFIG_FILE, text.encode())


def read_saved_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GenforgeError(f"{path} cannot be read ({type(exc).__name__}); the run directory is damaged") from None
    return RunConfig.from_dict(data, source=str(path))


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


def averaged_states(payload: dict, names: tuple[str, ...]) -> dict[str, dict]:
    """The checkpoint's exponential-moving-average states by network name ({"model": state dict,
    "num_updates": n} each). Checkpoints written before the family contract (genforge <= 0.1 of
    November 2026) hold one unnamed average: it belongs to the family's single averaged network."""
    ema = payload.get("ema") or {}
    if "model" in ema and "num_updates" in ema:  # the older single-average format
        return {names[0]: ema} if len(names) == 1 else {}
    return {name: ema[name] for name in names if name in ema}


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first; temporary files are ignored."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


def read_metrics(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# --- one writer per run directory ------------------------------------------------------------------

_held_locks: dict[str, int] = {}  # real path of a run directory -> the descriptor holding its lock


def lock_run_dir(run_dir: Path) -> None:
    """Take the exclusive lock of a run directory (creating the folder) for the rest of this process,
    or until `unlock_run_dir`; a second `genforge train` on the same folder gets a one-line error
    naming the holder. The lock is flock(2) on the folder itself, so nothing is written for it and
    the kernel drops it when the holder dies, SIGKILL included. In one process, a new lock on the
    same folder replaces an old one (a train() that raised never released its own)."""
    import fcntl

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GenforgeError(f"--out {run_dir} is a file, not a folder; choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    unlock_run_dir(run_dir)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(fd)
        os.close(fd)
        raise GenforgeError(f"{run_dir} is in use by another genforge train ({holder}); wait for it to finish "
                            "or stop it, or choose another --out") from None
    _held_locks[key] = fd


def unlock_run_dir(run_dir: Path) -> None:
    fd = _held_locks.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def _lock_holder(fd: int) -> str:
    """'PID n' of the process holding the flock on fd's file, from /proc/locks (Linux), else 'another process'."""
    info = os.fstat(fd)
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and "->" not in parts and len(parts) >= 6 and parts[5] == wanted:
                    return f"PID {parts[4]}"
    except OSError:
        pass
    return "another process"


# --- checkpoints that belong to the run --------------------------------------------------------------

CHECKPOINT_KEYS = ("step", "config", "networks", "optimizers", "rng")


def verify_checkpoint(payload: dict, path: Path, cfg: RunConfig, may_differ: tuple[str, ...] = ()) -> int:
    """The step of a checkpoint that belongs to the run of `cfg`; a GenforgeError for one that does not:
    a missing part (networks, optimisers, RNG states), a step that is not its file name's, or a
    configuration that differs from the run's beyond `may_differ` (a checkpoint of another run)."""
    from .config import config_diff

    missing = [k for k in CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise GenforgeError(f"checkpoint {path} lacks {', '.join(missing)}; it cannot resume this run: move it "
                            f"out of {path.parent} to resume from the one before")
    try:
        saved = RunConfig.from_dict(payload["config"], source=f"checkpoint {path}")
    except GenforgeError:
        saved = None
    conflicts = config_diff(saved, cfg, may_differ) if saved is not None else ["its configuration is unreadable"]
    if conflicts:
        raise GenforgeError(f"checkpoint {path} belongs to another run ({'; '.join(conflicts[:2])}); move it out "
                            f"of {path.parent} to resume this run from the one before")
    match = _NAME.match(Path(path).name)
    step = payload["step"]
    if not isinstance(step, int) or isinstance(step, bool) or (match and int(match.group(1)) != step):
        raise GenforgeError(f"checkpoint {path} holds step {step!r}, not the step of its name; it was renamed or "
                            f"copied from another run: move it out of {path.parent}")
    return step


def nonfinite_tensors(states: dict[str, dict]) -> list[str]:
    """Names ('network.parameter') of the floating-point tensors of some state dicts that hold a NaN or
    an infinity. One reduction per tensor on its device and a single host synchronisation in all."""
    names, flags = [], []
    for owner, state in states.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
                names.append(f"{owner}.{key}")
                flags.append(torch.isfinite(value).all())
    if not flags:
        return []
    finite = torch.stack([f.to(flags[0].device) for f in flags]).cpu()
    return [name for name, ok in zip(names, finite.tolist()) if not ok]


# --- what the run was trained on ----------------------------------------------------------------------

def data_fingerprint(images: torch.Tensor, labels: torch.Tensor | None = None,
                     targets: torch.Tensor | None = None) -> dict:
    """Count, shape and a cheap hash (of at most 256 images spread over the set, their targets for
    paired data, and every label) of a dataset, recorded in each checkpoint so that a resume on
    changed data is noticed."""
    import hashlib

    n = len(images)
    picks = torch.linspace(0, n - 1, min(n, 256)).round().long() if n else torch.zeros(0, dtype=torch.long)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(images[picks].contiguous().cpu().numpy().tobytes())
    if targets is not None:
        digest.update(targets[picks].contiguous().cpu().numpy().tobytes())
    if labels is not None:
        digest.update(labels.cpu().numpy().tobytes())
    return {"count": n, "shape": list(images.shape[1:]), "hash": digest.hexdigest()}
