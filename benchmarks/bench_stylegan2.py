"""StyleGAN2 against the best existing GAN preset at the same wall time (issue 13).

Trains each preset in its own process, all at once, one thread each (so they share the machine
alike), stops every one with SIGTERM after --minutes (it checkpoints and exits), then scores
--n samples of each with the same evaluator and protocol (genforge's evaluate_samples: FID, KID,
IS, precision/recall against the dataset's reference split). StyleGAN2 works at a power of two, so
its 32x32 samples of 28x28 data are cropped back to the centre 28x28 (the padding is 2 pixels a
side) before scoring; every model is scored on the data's own size.

    OMP_NUM_THREADS=1 python benchmarks/bench_stylegan2.py --minutes 15 --data-root ../shared/data/mnist \\
        --evaluator evaluators/mnist.pt --out /tmp/sg2bench
Prints a table with each model's steps, images/s and metrics, and the ratios to the baseline (the
last preset). --train-args passes more flags to every train command (e.g. '--data zip:PATH').
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def train_all(presets: list[str], out: Path, minutes: float, data_root: str, extra: list[str]) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    procs = {}
    for preset in presets:
        cmd = [sys.executable, "-m", "genforge", "train", "--preset", preset, "--out", str(out / preset),
               "--steps", "10000000", "--threads", "1", "--quiet"]
        if data_root:
            cmd += ["--data-root", data_root]
        cmd += extra
        print("$ " + shlex.join(cmd), flush=True)
        procs[preset] = (subprocess.Popen(cmd, env=env), time.perf_counter())
    time.sleep(minutes * 60)
    wall = {}
    for preset, (proc, start) in procs.items():
        proc.send_signal(signal.SIGTERM)  # checkpoint after the current step, then exit 143
    for preset, (proc, start) in procs.items():
        proc.wait()
        wall[preset] = time.perf_counter() - start
    return wall


def samples_npz(run_dir: Path, n: int, size: int, path: Path) -> tuple[int, float]:
    """n samples (classes cycled for conditional models), centre-cropped to size, as an npz; returns
    (the run's step, its mean training images/s)."""
    from genforge.run import load_run

    run = load_run(run_dir, device="cpu")
    classes = run.config.model.num_classes
    labels = torch.arange(n) % classes if classes else None
    images = torch.cat([run.sample(min(500, n - i), seed=i, labels=None if labels is None else labels[i:i + 500])
                        for i in range(0, n, 500)])
    side = images.shape[-1]
    if side > size:
        a = (side - size) // 2
        images = images[..., a:a + size, a:a + size]
    x = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.savez(path, x=x[..., 0] if x.shape[-1] == 1 else x)
    speeds = [json.loads(line).get("images_per_s") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    speeds = [s for s in speeds if s]
    return run.step, float(np.median(speeds)) if speeds else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="stylegan2-mnist,cgan-mnist", help="the last one is the baseline")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--data", default="mnist", help="the dataset the samples are scored against")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--size", type=int, default=28, help="the data's image side (samples are cropped to it)")
    parser.add_argument("--evaluator", required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", default="/tmp/bench-stylegan2")
    parser.add_argument("--train-args", default="", help="more flags for every train command")
    parser.add_argument("--skip-training", action="store_true", help="score the runs already in --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from genforge.metrics.evaluate import EvalSettings, evaluate_samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    presets = [p for p in args.presets.split(",") if p]
    wall = {} if args.skip_training else train_all(presets, out, args.minutes, args.data_root,
                                                   shlex.split(args.train_args))
    rows = {}
    for preset in presets:
        step, speed = samples_npz(out / preset, args.n, args.size, out / f"{preset}.npz")
        result = evaluate_samples(out / f"{preset}.npz", args.data, args.data_root,
                                  EvalSettings(n=args.n, metrics=("fid", "kid", "is", "pr")), evaluator=args.evaluator,
                                  log=lambda text: None)
        m = result["metrics"]
        rows[preset] = {"steps": step, "wall_s": round(wall.get(preset, 0)), "images_per_s": round(speed, 1),
                        "fid": m["fid"], "kid": m.get("kid_mean"), "is": m.get("is_mean"),
                        "precision": m.get("precision"), "recall": m.get("recall")}
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    base = rows[presets[-1]]
    print(f"\n{args.minutes} minutes each, one thread, concurrently; {args.n} samples; evaluator {args.evaluator}")
    print("| preset | steps | wall s | images/s | FID | KID | IS | precision | recall | FID / baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, r in rows.items():
        print(f"| {preset} | {r['steps']:,} | {r['wall_s']} | {r['images_per_s']} | {_num(r['fid'])} | {_num(r['kid'])} | "
              f"{_num(r['is'])} | {_num(r['precision'])} | {_num(r['recall'])} | {_num(r['fid'] / base['fid'])} |")


def _num(x) -> str:
    return "-" if x is None else f"{float(x):.3f}"


if __name__ == "__main__":
    main()
