"""Model families, one folder each (networks, step, sampler, config section, tools), behind the
contract in contract.py; the registry (registry.py) lists them.

Importing this package registers the families' config sections and nothing else: it does not
import torch, so `import genforge` stays fast. (Kept in this order: it is config.yaml's order.)
"""
# isort: skip_file

from .gan import config as _gan_config  # noqa: F401
from .vae import config as _vae_config  # noqa: F401
from .pix2pix import config as _pix2pix_config  # noqa: F401
from .diffusion import config as _diffusion_config  # noqa: F401
from ..text import config as _text_config  # noqa: F401
from .stylegan2 import config as _stylegan2_config  # noqa: F401
