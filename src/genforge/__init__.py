"""genforge: train, sample and evaluate GANs, VAEs and image-to-image models, offline, on CPU or CUDA.

From Python::

    import genforge
    cfg = genforge.resolve_config(preset="demo-vae")
    genforge.train(cfg, "runs/vae")
    images = genforge.load_run("runs/vae").sample(16, seed=0)   # (16, 1, 28, 28) in [0, 1]
    genforge.save_grid(images, "grid.png")
"""

__version__ = "0.1.0"

from .config import RunConfig, resolve_config  # noqa: E402
from .errors import GenforgeError  # noqa: E402
from .run import Run, load_run  # noqa: E402
from .sampling import save_grid  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["__version__", "GenforgeError", "RunConfig", "resolve_config", "train", "load_run", "Run", "save_grid"]
