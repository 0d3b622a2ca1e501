"""Pix2pix memory and checkpoint size (issue 18, item 13), this code against a baseline revision in the same run.

Writes a synthetic paired set (side-by-side PNGs; 400 train pairs at 128x128 are 39 MB as uint8)
into a temporary folder, then, for each code version (this checkout's src/ and the baseline
revision's src/, extracted with `git archive`) and each of the L1-only (gan_weight 0) and full
pix2pix objectives, trains a few steps in a fresh subprocess through the loop's own phases:
setup (data + networks + optimisers), steps, snapshot, checkpoint, end-of-run test. Each phase's
peak resident memory comes from /proc/self/status (VmHWM, reset before the phase through
/proc/self/clear_refs, Linux only), so the table says where the memory goes. One torch thread.

    python benchmarks/bench_pix2pix_memory.py --baseline 3e0dcb0
    python benchmarks/bench_pix2pix_memory.py --pairs 400 --size 128 --width 32 --batch-size 1 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# Runs in the child process, against whichever genforge PYTHONPATH points at.
CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(1)

def memory():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

phases = {}
def phase(name, fn):
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak (VmHWM) to the current RSS
        f.write("5")
    before, _ = memory()
    out = fn()
    after, peak = memory()
    phases[name] = {"before": before, "after": after, "peak": peak}
    return out

from genforge.config import resolve_config
from genforge.training import loop

data, run_dir, width, batch, steps, gan_weight, precision = sys.argv[1:8]
cfg = resolve_config(overrides=[{
    "model": {"name": "pix2pix", "width": int(width)}, "data": {"name": f"paired:{data}"},
    "train": {"steps": int(steps), "batch_size": int(batch), "device": "cpu", "precision": precision},
    "pix2pix": {"gan_weight": float(gan_weight)}}])
phases["import"] = {"before": 0.0, "after": memory()[0], "peak": memory()[1]}
start = time.perf_counter()
tr = phase("setup", lambda: loop.setup(cfg, run_dir))

def step():
    tr.step += 1
    return tr.family.step(tr.step_nets, tr.opts, tr.sampler(tr.step), tr.cfg, tr.precision, tr.state)

def steps_():
    for _ in range(int(steps)):
        step()

phase("steps", steps_)
phase("snapshot", lambda: loop.snapshot(tr))
path = phase("checkpoint", lambda: loop.save_checkpoint(tr))
phase("test", lambda: loop.end_of_run_test(tr, False))
print(json.dumps({"phases": phases, "checkpoint_mb": os.path.getsize(path) / 1e6,
                  "networks": sorted(tr.nets), "seconds": time.perf_counter() - start,
                  "parameters": {n: sum(p.numel() for p in net.parameters()) for n, net in tr.nets.items()}}))
"""


def write_pairs(folder: Path, n: int, size: int, seed: int = 0) -> float:
    """n train and n // 10 test side-by-side pairs of smooth colour patterns plus noise; returns the train
    split's uint8 size in MB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split, count in (("train", n), ("test", max(1, n // 10))):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            a = np.stack([np.sin(xx * (3 + i % 7) + yy * (i % 5) + c) for c in range(3)], -1) * 0.5 + 0.5
            a = (a * 200 + rng.integers(0, 55, a.shape)).astype(np.uint8)
            Image.fromarray(np.concatenate([a, 255 - a], 1)).save(folder / split / f"{i:05d}.png")
    return n * size * size * 3 * 2 / 1e6


def baseline_src(revision: str, work: Path) -> Path:
    """The baseline revision's src/ folder, extracted from git."""
    target = work / f"baseline-{revision}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def measure(src: Path, data: Path, run_dir: Path, args, gan_weight: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(run_dir), str(args.width), str(args.batch_size),
                          str(args.steps), str(gan_weight), args.precision], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the child process failed ({src}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="3e0dcb0", help="git revision to compare against (default: the "
                        "commit before issue 18 item 13 was worked on)")
    parser.add_argument("--pairs", type=int, default=400, help="train pairs (a tenth as many test pairs)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1, help="the paper's batch size")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--precision", default="auto", help="train.precision (auto: bf16 on CPUs with native bf16)")
    parser.add_argument("--work", help="folder for the pairs and runs (default: a temporary one)")
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("this benchmark reads /proc/self/status and resets the peak through /proc/self/clear_refs (Linux)")

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-pix2pix-memory-"))
    data = work / "pairs"
    megabytes = write_pairs(data, args.pairs, args.size)
    versions = {f"baseline {args.baseline}": baseline_src(args.baseline, work), "this checkout": ROOT / "src"}
    print(f"{args.pairs} train pairs ({megabytes:.1f} MB as uint8) + {max(1, args.pairs // 10)} test pairs, "
          f"{args.size}x{args.size} RGB; pix2pix width {args.width}, batch {args.batch_size}, {args.steps} steps, "
          f"precision {args.precision}, 1 thread")
    results = {}
    for version, src in versions.items():
        for gan_weight in (0.0, 1.0):
            key = (version, gan_weight)
            results[key] = measure(src, data, work / f"run-{len(results)}", args, gan_weight)
    params = results[(list(versions)[-1], 1.0)]["parameters"]
    print("parameters: " + ", ".join(f"{n} {v / 1e6:.2f}M ({v * 4 / 1e6:.1f} MB as float32)" for n, v in params.items()))
    names = ["setup", "steps", "snapshot", "checkpoint", "test"]
    print("\nPeak resident memory (MB) by phase: the peak during the phase (its rise over the RSS before it)")
    print("| code | objective | networks | import | " + " | ".join(names) + " | peak | checkpoint MB |")
    print("|---|---|---|---|" + "---|" * (len(names) + 2))
    for (version, gan_weight), r in results.items():
        phases = r["phases"]
        cells = [f"{phases[n]['peak']:.0f} (+{phases[n]['peak'] - phases[n]['before']:.0f})" for n in names]
        peak = max(p["peak"] for p in phases.values())
        objective = "L1 only" if gan_weight == 0 else "L1 + cGAN"
        print(f"| {version} | {objective} | {', '.join(r['networks'])} | {phases['import']['after']:.0f} | "
              + " | ".join(cells)
              + f" | {peak:.0f} | {r['checkpoint_mb']:.1f} |")
    print("\n| objective | peak: this / baseline | checkpoint: this / baseline |")
    print("|---|---|---|")
    base, this = list(versions)
    for gan_weight, objective in ((0.0, "L1 only"), (1.0, "L1 + cGAN")):
        b, t = results[(base, gan_weight)], results[(this, gan_weight)]
        peak_b = max(p["peak"] for p in b["phases"].values())
        peak_t = max(p["peak"] for p in t["phases"].values())
        print(f"| {objective} | {peak_t / peak_b:.2f}x ({peak_t:.0f} / {peak_b:.0f} MB) | "
              f"{t['checkpoint_mb'] / b['checkpoint_mb']:.2f}x ({t['checkpoint_mb']:.1f} / {b['checkpoint_mb']:.1f} MB) |")


if __name__ == "__main__":
    main()
