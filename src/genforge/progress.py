"""Progress of long, silent work (the likelihood in `genforge eval`, an evaluator's epochs, decoding
a large folder or zip): a tqdm bar on a terminal, plain lines otherwise. The ground floor.

Library code marks its loops with `task(...)`, which does nothing unless a caller asked for progress
with `reporting()` (the CLI does, around each command); so Python users and tests see no output
they did not ask for.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from contextvars import ContextVar

_enabled: ContextVar[bool] = ContextVar("genforge_progress", default=False)

PLAIN_EVERY_S = 10.0
"""Plain lines: at most one per this many seconds (and one at the end)."""


@contextlib.contextmanager
def reporting(enabled: bool = True):
    """Show progress of the tasks started inside this block."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def use_bar(stream=None) -> bool:
    """A tqdm bar only on a terminal that has a width: under a zero-width terminal tqdm draws nothing,
    so plain lines are used there too."""
    stream = stream or sys.stderr
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return shutil.get_terminal_size(fallback=(0, 0)).columns >= 20


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Plain(_Silent):
    """'what: done/total (pct%), elapsed s' every PLAIN_EVERY_S seconds and once at the end."""

    def __init__(self, description: str, total: int, unit: str, stream):
        self.description, self.total, self.unit, self.stream = description, total, unit, stream
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start
        print(f"{description}: 0/{total} {unit}s", file=stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= PLAIN_EVERY_S and self.done < self.total:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last = now
        percent = 100 * self.done / max(self.total, 1)
        print(f"{self.description}: {self.done}/{self.total} {self.unit}s ({percent:.0f}%), {now - self.start:.0f} s",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.stream is not None:
            self._line(time.perf_counter())
            self.stream = None


class _Bar(_Silent):
    def __init__(self, description: str, total: int, unit: str, stream):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=description, unit=unit, file=stream, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def task(description: str, total: int, unit: str = "item", stream=None):
    """A progress reporter with update(n) and close() (also a context manager); silent unless inside
    `reporting()`, and for an empty task (total 0)."""
    if not _enabled.get() or total <= 0:
        return _Silent()
    stream = stream or sys.stderr
    return _Bar(description, total, unit, stream) if use_bar(stream) else _Plain(description, total, unit, stream)
