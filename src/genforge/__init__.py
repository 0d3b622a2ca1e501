"""genforge: train, sample and evaluate GANs, VAEs and image-to-image models, offline, on CPU or CUDA.

From Python::

    import genforge
    cfg = genforge.resolve_config(preset="demo-vae")
    genforge.train(cfg, "runs/vae")
    images = genforge.load_run("runs/vae").sample(16, seed=0)   # (16, 1, 28, 28) in [0, 1]
    genforge.save_grid(images, "grid.png")
    genforge.export_run(genforge.load_run("runs/vae"), "exports/vae")          # safetensors + model card
    genforge.load_exported("exports/vae").sample(16, seed=0)                   # no run directory needed

The public names are imported on first use, so `import genforge` (and `genforge --help`) does not
import torch.
"""

from __future__ import annotations

import importlib

from . import families as _families  # noqa: F401 (registers the families' config sections; imports no torch)

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "GenforgeError": "errors",
    "RunConfig": "config",
    "resolve_config": "families.registry",
    "train": "training.loop",
    "load_run": "run",
    "load_exported": "run",
    "export_run": "export",
    "Run": "run",
    "save_grid": "imageio",
    "Condition": "conditioning",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
