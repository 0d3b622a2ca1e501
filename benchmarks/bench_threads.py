"""Torch threads on a quiet and on a loaded machine: `--threads auto` against torch's default.

Trains a preset (default: the demo's GAN) for a fixed number of steps with each thread setting,
first as the machine is, then while this script keeps `--load-procs` busy processes of its own
running (each stops itself after `--load-seconds`, and all are terminated when the measurement
ends). Settings alternate and repeat; the table shows the median images/s and the ratio to torch's
default thread count (all CPUs), the baseline, measured in the same run.

    python benchmarks/bench_threads.py                       # demo GAN, 1 / all CPUs / auto, quiet and loaded
    python benchmarks/bench_threads.py --preset demo-vae --steps 60 --load-procs 8

The machine's own load (other users) is printed with the table: "quiet" means no load from this
script, not an idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genforge.families.registry import resolve_config  # noqa: E402
from genforge.runtime import auto_threads, busy_cores, cpu_count  # noqa: E402
from genforge.training.loop import setup  # noqa: E402


def spin(until: float) -> None:
    """A competing load: one busy core until the deadline (bounded, whatever happens to the parent)."""
    x = 0
    while time.time() < until:
        x += 1


def images_per_second(tr, threads: int, steps: int, warmup: int = 2) -> float:
    torch.set_num_threads(threads)
    for step in range(warmup):
        tr.family.step(tr.step_nets, tr.opts, tr.sampler(step), tr.cfg, tr.precision, tr.state)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        losses = tr.family.step(tr.step_nets, tr.opts, tr.sampler(step), tr.cfg, tr.precision, tr.state)
    for value in losses.values():
        value.item()  # wait for the last step
    return steps * tr.cfg.train.batch_size / (time.perf_counter() - start)


def measure(tr, settings: dict[str, int], steps: int, repeats: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for r in range(repeats):
        order = list(settings) if r % 2 == 0 else list(reversed(settings))  # alternate the order
        for name in order:
            rates[name].append(images_per_second(tr, settings[name], steps))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo-cgan", help="preset to train (default demo-cgan)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load-procs", type=int, default=0, help="busy processes for the loaded case (default 4 x CPUs)")
    parser.add_argument("--load-seconds", type=float, default=240, help="upper bound on the load's life")
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)

    cores = cpu_count()
    procs = args.load_procs or 4 * cores
    cfg = resolve_config(args.preset, overrides=[{"train": {"device": "cpu"}}])
    with tempfile.TemporaryDirectory() as tmp:
        tr = setup(cfg, Path(tmp) / "run", log=lambda text: None)
        rows = []
        for condition in ("quiet", "loaded"):
            workers = []
            if condition == "loaded":
                until = time.time() + args.load_seconds
                workers = [multiprocessing.Process(target=spin, args=(until,), daemon=True) for _ in range(procs)]
                for w in workers:
                    w.start()
                time.sleep(1.0)
            try:
                busy = busy_cores()
                auto = auto_threads(cores, busy)
                settings = {"1 thread": 1, f"{cores} threads (torch default)": cores}
                settings[f"auto ({auto})"] = auto
                rates = measure(tr, settings, args.steps, args.repeats)
            finally:
                for w in workers:
                    w.terminate()
                for w in workers:
                    w.join()
            baseline = rates[f"{cores} threads (torch default)"]
            for name, rate in rates.items():
                rows.append((condition, f"{busy:.1f}", name, rate, rate / baseline))

    print(f"\n{args.preset}: {args.steps} steps x {args.repeats} repeats per setting, batch {cfg.train.batch_size}, "
          f"{cores} CPUs; loaded = {procs} busy processes of this script; load average at the end "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'condition':<10} {'busy cores':>10}  {'threads':<28} {'images/s':>9} {'vs default':>10}")
    for condition, busy, name, rate, ratio in rows:
        print(f"{condition:<10} {busy:>10}  {name:<28} {rate:>9.1f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
