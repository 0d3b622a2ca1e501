"""Helpers shared by the benchmark scripts: fresh-process measurements, the hardware's peak, tables.

Every benchmark compares genforge with a baseline in the same run of the script, alternating the
two, and reports medians and ratios: on a shared or throttled machine only ratios taken side by
side mean anything.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MiB; ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_in_fresh_process(script: Path, args: list[str], timeout: float = 600) -> dict:
    """Run `python script --worker ARGS` in a new process and return the JSON it prints last.

    A fresh process per measurement makes peak memory a property of one case alone, and keeps one
    case's caches and allocator state from helping or hurting the next.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_rate(fn, flops: float, device: torch.device, seconds: float = 1.0, min_runs: int = 3) -> float:
    """Best GFLOP/s of `fn` (which performs `flops` operations) over repeated runs."""
    fn()  # warm-up: kernel selection, allocation
    synchronize(device)
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t)
        runs += 1
    return flops / best / 1e9


@torch.no_grad()
def measure_peak(device: torch.device, seconds: float = 1.0) -> dict[str, float]:
    """Measured peak GFLOP/s of a large matmul and a large convolution, in fp32 and bf16.

    The 'limit' of a precision is the better of the two probes: what this machine (as loaded at the
    time) can do at best, to which the training throughput is compared.
    """
    out = {}
    n = 2048
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        out[f"matmul_{name}"] = best_rate(lambda: torch.mm(a, b), 2 * n ** 3, device, seconds)
        # A DCGAN-like layer: 4x4 kernels, 128 -> 256 channels on 16x16 maps, batch 64, NHWC.
        x = torch.randn(64, 128, 16, 16, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(128, 256, 4, 2, 1, bias=False).to(device, dtype).to(memory_format=torch.channels_last)
        flops = 2 * 64 * 256 * 8 * 8 * 128 * 4 * 4
        out[f"conv_{name}"] = best_rate(lambda: conv(x), flops, device, seconds)
        out[name] = max(out[f"matmul_{name}"], out[f"conv_{name}"])
    return out


def machine_description(device: torch.device, threads: int = 0) -> str:
    """The device, and for CPUs the processor, its logical CPUs and the torch threads each measurement used."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({threads or torch.get_num_threads()} threads)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (readable in a terminal too)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
