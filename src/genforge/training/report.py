"""Status lines a person can read and metrics.jsonl records a program can parse."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from ..errors import GenforgeError
from ..imageio import atomic_write_bytes
from ..progress import use_bar

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency, this is belt and braces
    tqdm = None


def format_values(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in values.items())


TENSORBOARD_DIR = "tensorboard"
"""The run directory's folder of TensorBoard event files (train.log=tensorboard)."""


def tensorboard_writer(run_dir: Path, start_step: int):
    """A SummaryWriter on run_dir/tensorboard that drops the events of steps after `start_step`
    (written by a run that died after its last checkpoint), as truncate_metrics does."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GenforgeError("--log tensorboard needs the tensorboard package; install the extra: "
                            "pip install -c constraints.txt -e '.[tensorboard]'") from None
    return SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)


class Reporter:
    """A tqdm bar on a terminal, plain lines otherwise; every record also goes to metrics.jsonl, and
    with a TensorBoard writer (train.log=tensorboard) to its event files too."""

    def __init__(self, metrics_path: Path | None, total_steps: int, start_step: int, quiet: bool = False,
                 tensorboard=None):
        self.metrics_path = metrics_path
        self.quiet = quiet
        self.tensorboard = tensorboard
        self.bar = None
        if not quiet and tqdm is not None and use_bar(sys.stderr):  # plain lines on a zero-width terminal too
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def advance(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def record(self, step: int, total: int, values: dict[str, float]) -> None:
        if self.metrics_path is not None:  # None on the ranks of a torchrun job other than rank 0
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in values.items()}}) + "\n")
        self.scalars(step, values)
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(format_values(values), refresh=True)
        else:
            self._print(f"step {step}/{total}  {format_values(values)}")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Values for TensorBoard only (e.g. learning rates), grouped by the part before '/'."""
        if self.tensorboard is not None:
            for k, v in values.items():
                self.tensorboard.add_scalar(k if "/" in k else f"train/{k}", v, step)

    def image(self, step: int, tag: str, grid) -> None:
        """A sample grid (H x W x C uint8, imageio.make_grid) for TensorBoard."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, grid, step, dataformats="HWC")

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            self._print(text)

    def _print(self, text: str) -> None:
        """A line on stdout. When stdout's reader has gone (`genforge train ... | head`), the rest of
        the output goes to /dev/null and SIGPIPE asks the training loop to checkpoint and stop."""
        try:
            print(text, flush=True)
        except BrokenPipeError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())  # also what is left in the buffer, and the flush at exit
            os.close(null)
            self.quiet = True
            signal.raise_signal(signal.SIGPIPE)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after `last_step` (written by a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())
