"""The run-directory contract: what `genforge train` writes into a run folder and how it is read.

    RUN/config.yaml              the resolved configuration (config.RunConfig.to_dict)
    RUN/metrics.jsonl            one JSON record per log/eval line: {"step": ..., name: value}
    RUN/checkpoints/step-N.pt    checkpoints (state dicts, step, RNG states, config, version)
    RUN/samples/step-N.png       training snapshots; samples/latest.png is the newest

Everything here is read without executing code (YAML safe_load, torch.load(weights_only=True)).
"""

from __future__ import annotations

import json
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
