"""Lets the pix2pix tests import their helpers and the shared tiny_config."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
