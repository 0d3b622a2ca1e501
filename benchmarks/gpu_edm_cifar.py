"""For a lent GPU (one short, prepared run): the edm-cifar preset's training throughput in images/s
and as a fraction of the GPU's measured bf16 peak, then (with --train-minutes) training it for as
long as allowed, stopped by SIGTERM (which saves a checkpoint), and sampling 64 images with heun 18.

    python benchmarks/gpu_edm_cifar.py --data zip:shared/data/cifar10-jpeg/train.zip --train-minutes 6

Not yet run: no GPU was lent to the session that wrote it (docs/benchmarks.md#diffusion).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_description, measure_peak, synchronize  # noqa: E402

from genforge.conditioning import Batch  # noqa: E402
from genforge.families import registry  # noqa: E402
from genforge.runtime import Precision, to_channels_last  # noqa: E402
from genforge.training.optim import make_optimizers  # noqa: E402


def throughput(batch_size: int, steps: int) -> None:
    device = torch.device("cuda")
    cfg = registry.resolve_config(preset="edm-cifar", overrides=[{
        "model": {"image_size": 32, "channels": 3}, "train": {"batch_size": batch_size, "device": "cuda",
                                                              "precision": "bf16"}}])
    nets = {k: v.to(device) for k, v in registry.build_networks(cfg).items()}
    to_channels_last(nets)
    opts = make_optimizers(cfg, nets)
    family = registry.family_of(cfg)
    precision = Precision(device, "bf16", list(nets))
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
    images = images.contiguous(memory_format=torch.channels_last)

    def step(i):
        return family.step(nets, opts, Batch(images, step=i), cfg, precision, None)

    with FlopCounterMode(display=False) as counter:
        step(0)
    flops = counter.get_total_flops()
    for i in range(3):
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = measure_peak(device)["bf16"]
    params = sum(p.numel() for p in nets["denoiser"].parameters())
    print(f"{machine_description(device)}; edm-cifar denoiser {params / 1e6:.1f}M parameters, batch {batch_size}")
    print(f"{batch_size / seconds:.0f} images/s, {flops / seconds / 1e12:.1f} TFLOP/s of a measured bf16 peak "
          f"{peak / 1e3:.1f} TFLOP/s ({flops / seconds / 1e9 / peak:.1%})")


def train(data: str, minutes: float, out: str) -> None:
    cmd = [sys.executable, "-m", "genforge", "train", "--preset", "edm-cifar", "--data", data, "--out", out,
           "--device", "cuda", "--set", "train.checkpoint_every=2000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": "src"})
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # saves a checkpoint and exits with 143
        proc.wait()
    subprocess.run([sys.executable, "-m", "genforge", "sample", "--run", out, "--sampler", "heun", "--steps", "18",
                    "--out", f"{out}/heun18.png", "--device", "cuda"], env={**os.environ, "PYTHONPATH": "src"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data", default="")
    parser.add_argument("--train-minutes", type=float, default=0)
    parser.add_argument("--out", default=os.environ.get("OUT", "runs") + "/edm-cifar")
    args = parser.parse_args()
    throughput(args.batch_size, args.steps)
    if args.train_minutes and args.data:
        train(args.data, args.train_minutes, args.out)


if __name__ == "__main__":
    main()
