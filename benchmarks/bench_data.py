"""Images per second delivered to the training loop from `zip:` and `folder:` JPEG sources, against
a plain per-item PIL loader and a DCGAN training step, all in the same run.

genforge decodes a source once (worker processes) and then serves every batch from uint8 memory;
a per-item loader decodes every image again in every epoch. The table gives both the one-off decode
rate and the steady per-epoch rate, next to the rate at which a DCGAN step at 32x32 consumes images.

    PYTHONPATH=src python benchmarks/bench_data.py --zip ../shared/data/cifar10-jpeg/train.zip --n 10000

Timings on a shared machine are noisy: compare the rows of one run with each other.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genforge.conditioning import Batch
from genforge.data import load_dataset
from genforge.families.registry import build_networks, model_spec, resolve_config
from genforge.runtime import Precision
from genforge.training.batches import BatchSampler
from genforge.training.optim import make_optimizers


def subset_zip(source: Path, n: int, out: Path, seed: int = 0) -> list[str]:
    """Copy n random JPEG members of `source` (stored, like the original) into `out`."""
    with zipfile.ZipFile(source) as z:
        names = sorted(m for m in z.namelist() if m.lower().endswith(".jpg"))
        picked = sorted(random.Random(seed).sample(names, min(n, len(names))))
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for name in picked:
                dst.writestr(name, z.read(name))
    return picked


def plain_pil_epoch(folder: Path, files: list[str], batch_size: int) -> float:
    """Seconds for one epoch of a per-item loader: open, decode, to tensor, stack, per batch."""
    order = torch.randperm(len(files)).tolist()
    start = time.perf_counter()
    for b in range(len(files) // batch_size):
        batch = []
        for i in order[b * batch_size:(b + 1) * batch_size]:
            with Image.open(folder / files[i]) as img:
                batch.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
        torch.stack(batch)
    return time.perf_counter() - start


def sampler_epoch(data, batch_size: int, hflip: bool = False, repeats: int = 3) -> float:
    """Seconds for one epoch of batches from memory (best of `repeats` epochs: the machine is shared)."""
    sampler = BatchSampler(data, batch_size, seed=0, device=torch.device("cpu"), hflip=hflip)
    best = float("inf")
    for epoch in range(repeats):
        start = time.perf_counter()
        for i in range(sampler.per_epoch):
            sampler(epoch * sampler.per_epoch + i)
        best = min(best, time.perf_counter() - start)
    return best


def dcgan_rate(batch_size: int, steps: int, width: int) -> float:
    cfg = resolve_config(overrides=[{"model": {"name": "dcgan", "width": width, "latent_dim": 100, "image_size": 32,
                                               "channels": 3}, "train": {"batch_size": batch_size}}])
    family = model_spec(cfg.model.name).family
    nets = build_networks(cfg)
    opts = make_optimizers(cfg, nets)
    precision = Precision(torch.device("cpu"), "fp32", list(nets))
    state = family.make_state(cfg) if family.make_state is not None else None
    images = torch.randint(0, 256, (batch_size * 2, 3, 32, 32), dtype=torch.uint8)
    family.step(nets, opts, Batch(images[:batch_size]), cfg, precision, state)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        family.step(nets, opts, Batch(images[:batch_size]), cfg, precision, state)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", default="../shared/data/cifar10-jpeg/train.zip", help="zip of class/NNNN.jpg")
    parser.add_argument("--n", type=int, default=10000, help="images to use (random subset of the zip)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="genforge decoder processes (0: automatic)")
    parser.add_argument("--dcgan-steps", type=int, default=5)
    parser.add_argument("--dcgan-width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default). On an oversubscribed machine use 1: "
                             "OpenMP threads that wait for a descheduled sibling make tiny ops 1000x slower")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = tmp / "subset.zip"
        files = subset_zip(Path(args.zip), args.n, archive)
        folder = tmp / "folder"
        with zipfile.ZipFile(archive) as z:
            z.extractall(folder)
        n = len(files)
        rows = []

        workers = args.workers or min(os.cpu_count() or 1, 8)
        for kind, where, count in (("zip", archive, workers), ("folder", folder, workers), ("zip", archive, 1)):
            start = time.perf_counter()
            data = load_dataset(f"{kind}:{where}", workers=count)
            decode = time.perf_counter() - start
            assert len(data) == n
            epoch = sampler_epoch(data, args.batch_size)
            flip = sampler_epoch(data, args.batch_size, hflip=True)
            rows.append((f"genforge {kind}: {count} decoder process{'es' if count > 1 else ''}, then memory",
                         n / decode, n / epoch, n / flip))

        pil = min(plain_pil_epoch(folder, files, args.batch_size) for _ in range(2))  # best of 2 epochs
        rows.append(("plain per-item PIL loader (every epoch decodes)", n / pil, n / pil, float("nan")))
        dcgan = dcgan_rate(args.batch_size, args.dcgan_steps, args.dcgan_width)

    print(f"{n:,} CIFAR-10 JPEGs (32x32), batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs (shared machine: compare rows, not runs)")
    print()
    print("| loader | first epoch, images/s | later epochs, images/s | later epochs + hflip, images/s |")
    print("|---|---:|---:|---:|")
    for name, first, later, flipped in rows:
        flip_text = "-" if flipped != flipped else f"{flipped:,.0f}"
        print(f"| {name} | {first:,.0f} | {later:,.0f} | {flip_text} |")
    print(f"| DCGAN step consumes (width {args.dcgan_width}, 32x32, fp32, CPU) | {dcgan:,.0f} | {dcgan:,.0f} | - |")


if __name__ == "__main__":
    main()
