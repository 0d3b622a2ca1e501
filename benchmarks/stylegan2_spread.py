"""Sample diversity of StyleGAN2 runs against the training data's own (issue 13's collapse check).

For every kept checkpoint of each run: the per-pixel standard deviation across 64 samples of the
EMA generator (seed 0, fixed noise), in [-1, 1] units, beside the same number for 64 training
images (the baseline, computed in the same run) and the ratio of the two. A collapsed generator
has a ratio far below 1; the untrained generator's ratio is far above it (saturated noise).
With --discriminator, also the live discriminator's mean logit on 32 distinct training images and on
one of them repeated 32 times: the minibatch standard-deviation layer is what should let it tell a
batch without diversity from a real one.

    OMP_NUM_THREADS=1 python benchmarks/stylegan2_spread.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import format_table  # noqa: E402

from genforge import rundir  # noqa: E402
from genforge.data import load_dataset  # noqa: E402
from genforge.families.stylegan2.family import fit_images, fitted_size  # noqa: E402
from genforge.run import load_run  # noqa: E402


def spread(images: torch.Tensor) -> float:
    """Mean over pixels of the standard deviation across images; images in [-1, 1]."""
    return images.float().std(dim=0).mean().item()


def data_spread(run_dir: Path, n: int) -> float:
    """The same number for the first n training images of a run's dataset, fitted as the run fits them."""
    run = load_run(run_dir)
    data = load_dataset(run.config.data.name, run.config.data.root or None)
    images = data.images[:n]
    size = fitted_size(images.shape[-1])
    if size != images.shape[-1]:
        images = fit_images(images, size, run.config.stylegan2.fit)
    return spread(images.float() / 127.5 - 1)


@torch.no_grad()
def discriminator_logits(run_dir: Path, checkpoint: Path) -> tuple[float, float]:
    """The live discriminator's mean logit on 32 distinct training images and on the first one x 32."""
    from genforge.config import RunConfig
    from genforge.run import build_networks

    payload = rundir.load_checkpoint(checkpoint)
    cfg = RunConfig.from_dict(payload["config"], source="checkpoint config")
    discriminator = build_networks(cfg)["discriminator"]
    discriminator.load_state_dict(payload["networks"]["discriminator"])
    data = load_dataset(cfg.data.name, cfg.data.root or None)
    images = data.images[torch.randperm(len(data.images), generator=torch.Generator().manual_seed(0))[:32]]
    images = fit_images(images, fitted_size(images.shape[-1]), cfg.stylegan2.fit).float() / 127.5 - 1
    labels = (data.labels[:32],) if cfg.model.num_classes else ()
    distinct = discriminator(images, *labels).mean().item()
    repeated = discriminator(images[:1].expand(32, -1, -1, -1).contiguous(),
                             *(label[:1].expand(32) for label in labels)).mean().item()
    return distinct, repeated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--discriminator", action="store_true", help="also D's logits on distinct and repeated reals")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for run_dir in args.runs:
        baseline = data_spread(run_dir, args.n)
        for _, path in rundir.list_checkpoints(run_dir):
            run = load_run(run_dir, checkpoint=path)
            value = spread(run.sample(args.n, seed=0) * 2 - 1)
            row = [str(run_dir), str(run.step), f"{value:.3f}", f"{baseline:.3f}", f"{value / baseline:.2f}"]
            if args.discriminator:
                row += [f"{v:.2f}" for v in discriminator_logits(run_dir, path)]
            rows.append(row)
    headers = ["run", "step", "EMA spread", "data spread", "ratio"]
    if args.discriminator:
        headers += ["D(32 reals)", "D(1 real x 32)"]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
