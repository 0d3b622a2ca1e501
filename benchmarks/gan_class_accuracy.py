"""Class accuracy of a conditional GAN run: the share of samples that a classifier, trained here
on the real training digits, assigns to the class that was asked for.

The judge is softmax regression (full-batch Adam): weak but quick and independent of the
evaluation package; its accuracy on the real test split is printed next to the result, as the
ceiling to read the number against.

    python benchmarks/gan_class_accuracy.py --run runs/cgan-mnist --data mnist --data-root DIR
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genforge.data import load_dataset
from genforge.run import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truncation", type=float, default=0.0)
    args = parser.parse_args()

    torch.manual_seed(0)
    train, test = (load_dataset(args.data, args.data_root, split) for split in ("train", "test"))
    pixels = train.images[0].numel()
    judge = torch.nn.Linear(pixels, train.num_classes)
    opt = torch.optim.Adam(judge.parameters(), lr=0.01)
    x, y = train.images.flatten(1).float() / 255, train.labels
    for _ in range(200):
        opt.zero_grad()
        (F.cross_entropy(judge(x), y) + 1e-4 * judge.weight.pow(2).sum()).backward()
        opt.step()
    with torch.no_grad():
        real = (judge(test.images.flatten(1).float() / 255).argmax(1) == test.labels).float().mean().item()
        run = load_run(args.run)
        labels = torch.arange(run.config.model.num_classes).repeat_interleave(args.per_class)
        images = run.sample(len(labels), seed=args.seed, labels=labels, truncation=args.truncation)
        predicted = judge(images.flatten(1)).argmax(1)
    per_class = [(predicted[labels == c] == c).float().mean().item() for c in range(run.config.model.num_classes)]
    print(f"run {args.run} (step {run.step}), {len(labels)} samples, truncation {args.truncation or 'off'}")
    print(f"judge accuracy on real {args.data} test images: {real:.3f}")
    print(f"class accuracy of conditional samples: {(predicted == labels).float().mean().item():.3f}")
    print("per class: " + " ".join(f"{c}:{a:.2f}" for c, a in enumerate(per_class)))


if __name__ == "__main__":
    main()
