"""Training throughput of one process against torchrun's 2 processes (gloo, CPU), and of images
memory-mapped from the run's data cache (data.memory=mmap) against images kept on the device.

Every case runs `genforge train` as the user would (a fresh run directory, one torch thread per
process, the same global batch), and its images/s is the median of the metrics.jsonl windows after
the first (start-up, first-step warm-up and the step-0 sample grid excluded). The baseline,
'1 process, data on the device', runs in the same invocation; cases alternate over the repeats and
the table gives medians and the median of the ratios to the baseline of the same repeat.

On a machine with C free cores, 2 processes of one thread each can at best double the rate; every
step adds one all-reduce per optimiser step (gloo, over loopback) and a stop-flag all-reduce.

    PYTHONPATH=src python benchmarks/bench_distributed.py                       # dcgan and vae-mlp, 3 repeats
    PYTHONPATH=src python benchmarks/bench_distributed.py --models vae-mlp --steps 200 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, format_table, machine_description, median  # noqa: E402

CASES = {  # name -> (processes, data.memory)
    "1 process, data on the device": (1, "device"),
    "1 process, data memory-mapped": (1, "mmap"),
    "2 processes (torchrun, gloo)": (2, "device"),
    "2 processes, data memory-mapped": (2, "mmap"),
}
BASELINE = "1 process, data on the device"


def run_case(model: str, processes: int, memory: str, steps: int, batch: int, log_every: int, folder: Path) -> float:
    out = folder / f"{model}-{processes}-{memory}"
    args = ["train", "--model", model, "--data", "mnist-5k", "--out", str(out), "--steps", str(steps),
            "--batch-size", str(batch), "--device", "cpu", "--precision", "fp32", "--quiet",
            "--set", f"train.log_every={log_every}", "--set", f"train.checkpoint_every={steps}",
            "--set", f"train.sample_every={steps}", "--set", f"data.memory={memory}"]
    launcher = ([sys.executable, "-m", "genforge"] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                 "-m", "genforge"])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, *args, "--threads", "1"], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} x{processes} {memory} failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if "images_per_s" in r]  # not the end-of-run test record
    return median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dcgan,vae-mlp")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch (32 per process with 2)")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine_description(torch.device("cpu"), threads=1))
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min); {os.cpu_count()} CPUs, shared with other work")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rates: dict[str, list[float]] = {name: [] for name in CASES}
            ratios: dict[str, list[float]] = {name: [] for name in CASES}
            for repeat in range(args.repeats):
                folder = Path(tmp) / f"{model}-{repeat}"
                folder.mkdir()
                got = {name: run_case(model, n, memory, args.steps, args.batch_size, args.log_every, folder)
                       for name, (n, memory) in CASES.items()}
                for name, rate in got.items():
                    rates[name].append(rate)
                    ratios[name].append(rate / got[BASELINE])
            for name in CASES:
                rows.append([model, name, f"{median(rates[name]):.0f}", f"{median(ratios[name]):.2f}",
                             " ".join(f"{r:.0f}" for r in rates[name])])
    print(format_table(["model", "case", "images/s (median)", "ratio to 1 process", "each repeat"], rows))
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
