"""Shared fixtures: tiny configurations and a way to run the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genforge.families.registry import resolve_config  # the config checked by the model's family, as train() does

ROOT = Path(__file__).resolve().parents[1]

# The models in tests are tiny: one thread each. `make test` runs one pytest worker per core
# (pytest-xdist), and a second thread per worker would only fight for the cores (OpenMP threads
# spin while they wait, so oversubscribed cores slow every worker down many times over).
torch.set_num_threads(1)
# In-process CLI calls default to --threads auto, which keeps torch's count when OMP_NUM_THREADS is set.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def tiny_config(name: str = "dcgan", steps: int = 20, **sections):
    """A run configuration for model `name`, small enough for a unit test (seconds on one core).

    `sections` are nested overrides, e.g. train={"batch_size": 8}, gan={"ema_decay": 0}.
    """
    base = {
        "model": {"name": name, "width": 8 if name in ("dcgan", "vae-conv") else 32, "latent_dim": 8},
        "data": {"name": "mnist-5k"},
        "train": {"steps": steps, "batch_size": 16, "log_every": 10, "sample_every": 10,
                  "checkpoint_every": 10, "device": "cpu"},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return resolve_config(overrides=[base])


def build_model_networks(model_cfg, **sections):
    """The named networks of a resolved ModelConfig (the old build_networks(model_cfg) signature), built
    through the registry from a RunConfig holding it; `sections` are other RunConfig sections."""
    from genforge.config import RunConfig
    from genforge.families.registry import build_networks

    return build_networks(RunConfig(model=model_cfg, **sections))


@pytest.fixture
def cli(tmp_path):
    """Run `python -m genforge ARGS` in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, timeout: float = 300, check: bool = False, **kwargs):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "genforge", *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, cwd=kwargs.pop("cwd", tmp_path), env=env, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"genforge {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run
