"""Benchmark (not library code): test negative log-likelihood of trained VAE runs on binarised MNIST,
estimated with the K-sample importance-weighted bound (Burda et al. 2016, eq. 8):

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),

which tightens as K grows; K = 1000 is the usual "NLL" of the VAE literature. Each test image is
binarised once, x ~ Bernoulli(pixel / 255), from --seed, so every run is scored on the same binary
images (Gaussian-decoder runs are scored on grey levels). In the same process it scores a baseline
(independent Bernoulli pixels with the training set's pixel means), so the numbers can be read
against it.

    PYTHONPATH=src python benchmarks/bench_vae_nll.py --runs runs/vae-mlp runs/vae-conv --n 2000 --k 1000

The numbers come from the library's one estimator (genforge.families.vae.likelihood.vae_bounds),
with each run's decoder variance: on the same images, K and seed they are `genforge eval`'s
test_nll and test_elbo, and with K = 1 the run's end-of-run test loss. --batch and --chunk only
bound memory.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from genforge import load_run
from genforge.data.transforms import center_crop
from genforge.families.registry import load_data
from genforge.families.vae.likelihood import BATCH_SIZE, SAMPLES_PER_PASS, binarize_images, default_binarization, vae_bounds
from genforge.families.vae.step import decoder_log_variance


def held_out_targets(cfg, n: int, binarize: str, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first n test images of a run's data as likelihood targets (binarised with `seed`), and
    their labels for class-conditional models."""
    data = load_data(cfg, split="test")
    images = data.images[:n]
    if cfg.data.random_crop:  # the networks saw crops: score the central window, as the end-of-run test does
        images = center_crop(images, cfg.data.random_crop)
    labels = data.labels[:n] if data.labels is not None and cfg.model.num_classes else None
    return binarize_images(images, binarize, seed), labels


def nll_per_image(vae, cfg, x: torch.Tensor, labels: torch.Tensor | None, k: int, seed: int = 0,
                  batch: int = BATCH_SIZE, chunk: int = SAMPLES_PER_PASS // BATCH_SIZE) -> dict[str, torch.Tensor]:
    """-log p(x) estimated with k importance samples, and the negative ELBO from the same samples,
    per image (nats): the library's estimator with the run's decoder (Gaussian variance included).
    x: targets in [0, 1] (held_out_targets); batch images and batch * chunk (image, z) pairs per pass."""
    values = vae_bounds(vae, x, cfg.vae.reconstruction, labels if cfg.model.num_classes else None, k=k, seed=seed,
                        decoder_logvar=decoder_log_variance(vae, cfg.vae), batch_size=batch,
                        samples_per_pass=batch * chunk)
    return {"nll": values["nll"], "neg_elbo": values["elbo"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run directories of VAEs trained on mnist")
    parser.add_argument("--n", type=int, default=2000, help="first N test images (default 2000)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image (default 1000)")
    parser.add_argument("--batch", type=int, default=BATCH_SIZE, help="images per forward pass (memory only)")
    parser.add_argument("--chunk", type=int, default=SAMPLES_PER_PASS // BATCH_SIZE,
                        help="samples per image per forward pass (memory only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test binarisation and of z")
    parser.add_argument("--binarize", default="", choices=["", "dynamic", "threshold", "none"],
                        help="test targets (default: dynamic for Bernoulli decoders, none for Gaussian ones)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rows = []
    first = load_run(args.runs[0], device=args.device)
    binarize = args.binarize or default_binarization(first.config)
    x_all, labels_all = held_out_targets(first.config, args.n, binarize, args.seed)
    pixels = x_all[0].numel()

    if first.config.vae.reconstruction == "bernoulli":
        # Baseline: independent Bernoulli pixels with the (grey-level) training means: -log p(x) exactly.
        train_mean = load_data(first.config).images.float().div(255).mean(0).clamp(1e-4, 1 - 1e-4)
        baseline = -(x_all * train_mean.log() + (1 - x_all) * (1 - train_mean).log()).flatten(1).sum(1)
        rows.append(("independent pixels (baseline)", "-", baseline.mean().item(),
                     baseline.std().item() / math.sqrt(len(baseline)), float("nan"), 0.0))

    for run_dir in args.runs:
        run = load_run(run_dir, device=args.device)
        start = time.perf_counter()
        results = nll_per_image(run.networks["vae"], run.config, x_all, labels_all, args.k, args.seed,
                                args.batch, args.chunk)
        nll, neg_elbo = results["nll"], results["neg_elbo"]
        m, v = run.config.model, run.config.vae
        name = f"{m.name} {v.objective}" + (f" K={v.importance_samples}" if v.objective == "iwae" else "")
        rows.append((f"{name} ({run_dir})", run.step, nll.mean().item(), nll.std().item() / math.sqrt(len(nll)),
                     neg_elbo.mean().item(), time.perf_counter() - start))

    print(f"MNIST test ({binarize} binarisation), first {len(x_all)} images, K = {args.k}, seed {args.seed}")
    print("| model (run) | steps | NLL nats (K) | +- s.e. | bits/dim | -ELBO nats | eval s |")
    print("|---|---|---|---|---|---|---|")
    for name, step, nll, se, elbo, seconds in rows:
        print(f"| {name} | {step} | {nll:.2f} | {se:.2f} | {nll / (pixels * math.log(2)):.4f} | {elbo:.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
