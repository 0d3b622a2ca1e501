"""Pix2pix on an offline task, against the paper's baselines in the same run (Isola et al. 2017, table 1):

  identity   the output is the input (no model);
  L1 only    the same U-Net trained with lambda * L1 alone (pix2pix.gan_weight = 0, no discriminator);
  pix2pix    L1 + the PatchGAN's conditional adversarial loss (lambda = 100).

Both models get the same steps, batches, seed and U-Net. Prints a markdown table of the test split's
L1 (mean absolute error, [0, 1] scale), PSNR (dB) and SSIM (torchmetrics), plus training wall time.

    PYTHONPATH=src python benchmarks/bench_pix2pix.py --task edges2digits --steps 600
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from genforge.config import resolve_config
from genforge.data.make_pairs import make_pairs
from genforge.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="edges2digits", choices=["edges2digits", "inpaint-digits"])
    parser.add_argument("--source", default="mnist-5k", help="mnist-5k (embedded) or mnist (IDX, with --data-root)")
    parser.add_argument("--data-root", help="folder of the MNIST IDX files for --source mnist")
    parser.add_argument("--limit", type=int, default=0, help="at most N pairs per split (0 = all)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--n-layers", type=int, default=2, help="PatchGAN layers (2: 34x34 patches, 6x6 map at 32x32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for the pairs and runs (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-pix2pix-"))
    pairs = work / f"pairs-{args.task}"
    if not pairs.exists():
        made = make_pairs(args.task, pairs, args.source, args.data_root, 32, args.limit, seed=args.seed)
        print(f"pairs: {made.counts} in {pairs}")
    rows = {}
    for label, gan_weight in (("L1 only (no discriminator)", 0.0), ("pix2pix (L1 + cGAN)", 1.0)):
        cfg = resolve_config(overrides=[{
            "model": {"name": "pix2pix", "width": args.width},
            "data": {"name": f"paired:{pairs}"},
            "train": {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "device": "cpu",
                      "log_every": max(1, args.steps // 4), "sample_every": args.steps,
                      "checkpoint_every": args.steps},
            "pix2pix": {"gan_weight": gan_weight, "n_layers": args.n_layers,
                        "lr_decay_start": args.steps // 2, "lr_decay_steps": args.steps - args.steps // 2},
        }])
        start = time.perf_counter()
        result = train(cfg, work / f"run-{args.task}-gan{gan_weight:g}", quiet=True)
        rows[label] = (result.test, time.perf_counter() - start)
    identity = next(iter(rows.values()))[0]
    print(f"\ntask {args.task} ({args.source}), 32x32, U-Net width {args.width}, {args.steps} steps of "
          f"{args.batch_size}, {args.threads} thread(s); test pairs from the task's test split\n")
    print("| method | test L1 (lower is better) | PSNR dB | SSIM | train time s |")
    print("|---|---|---|---|---|")
    print(f"| identity (output = input) | {identity['identity_l1']:.4f} | {identity['identity_psnr']:.2f} | "
          f"{identity['identity_ssim']:.4f} | 0 |")
    for label, (test, seconds) in rows.items():
        print(f"| {label} | {test['l1']:.4f} | {test['psnr']:.2f} | {test['ssim']:.4f} | {seconds:.0f} |")
    print(f"\nruns and pairs in {work}")


if __name__ == "__main__":
    main()
