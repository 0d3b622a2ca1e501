"""Helpers shared by the VAE tests (a conftest.py here would shadow tests/conftest.py's tiny_config).

The VAE tests run on one thread: on a loaded 2-core machine two threads per process made a tiny
training step ~100x slower (2.7 ms -> 240 ms, threads spinning), and these networks are too small
to gain from a second one. Test modules import `one_thread` so that it applies to them.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config  # noqa: F401 - tests/conftest.py, re-exported

__all__ = ["one_thread", "tiny_config"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
