"""A short conditional run on mnist-5k and its class accuracy, judged by softmax regression
trained on mnist-5k (the same judge as tests/families/gan/test_gan_conditional_quality.py).

    python benchmarks/gan_conditional_check.py --class-head both
    python benchmarks/gan_conditional_check.py --class-head projection --spectral-norm --loss hinge
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genforge.config import resolve_config  # noqa: E402
from genforge.run import load_run  # noqa: E402
from genforge.training import train  # noqa: E402
from tests.families.gan.test_gan_conditional_quality import digit_classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class-head", default="both", choices=["projection", "acgan", "both"])
    parser.add_argument("--spectral-norm", action="store_true")
    parser.add_argument("--loss", default="non-saturating")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()

    classifier, real_accuracy = digit_classifier()
    cfg = resolve_config(overrides=[{
        "model": {"name": "cdcgan", "width": 16, "latent_dim": 32, "class_head": args.class_head,
                  "spectral_norm": args.spectral_norm},
        "data": {"name": "mnist-5k"}, "gan": {"loss": args.loss},
        "train": {"steps": args.steps, "batch_size": 32, "lr": 5e-4, "seed": 0, "log_every": 100,
                  "sample_every": args.steps, "checkpoint_every": args.steps, "device": "cpu"}}])
    with tempfile.TemporaryDirectory() as folder:
        train(cfg, Path(folder) / "run", quiet=True)
        run = load_run(Path(folder) / "run")
        labels = torch.arange(10).repeat_interleave(30)
        with torch.no_grad():
            predicted = classifier(run.sample(len(labels), seed=123, labels=labels).flatten(1)).argmax(1)
    print(f"class_head {args.class_head}, spectral_norm {args.spectral_norm}, loss {args.loss}, {args.steps} steps: "
          f"class accuracy {(predicted == labels).float().mean().item():.3f} (judge on real test digits {real_accuracy:.3f})")


if __name__ == "__main__":
    main()
