"""Benchmark (not library code): test negative log-likelihood of trained VAE runs on binarised MNIST,
estimated with the K-sample importance-weighted bound (Burda et al. 2016, eq. 8):

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),

which tightens as K grows; K = 1000 is the usual "NLL" of the VAE literature. Each test image is
binarised once, x ~ Bernoulli(pixel / 255), from --seed, so every run is scored on the same binary
images. In the same process it scores a baseline (independent Bernoulli pixels with the training
set's pixel means), so the numbers can be read against it.

    PYTHONPATH=src python benchmarks/bench_vae_nll.py --runs runs/vae-mlp runs/vae-conv --n 2000 --k 1000

The evaluation helper's `genforge eval` (metrics/likelihood.py) is the library's version of this.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from genforge import load_run
from genforge.losses import importance_weighted_bound, log_importance_weights
from genforge.training.loop import load_training_data
from genforge.training.steps import decoder_log_variance


def binarised_test_set(cfg, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    data = load_training_data(cfg, split="test")
    images = data.images[:n].float() / 255
    labels = data.labels[:n] if data.labels is not None else None
    return torch.bernoulli(images, generator=torch.Generator().manual_seed(seed)), labels


@torch.no_grad()
def nll_per_image(run, x: torch.Tensor, labels: torch.Tensor | None, k: int, chunk: int) -> dict[str, torch.Tensor]:
    """-log p(x) estimated with k importance samples, and the single-sample -ELBO, per image (nats)."""
    vae, v = run.networks["vae"], run.config.vae
    x = x.to(run.device)
    cond = (labels.to(run.device),) if run.config.model.num_classes else ()
    mean, logvar = vae.encode(x, *cond)
    decoder_logvar = decoder_log_variance(vae, v)
    log_w = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(m, *mean.shape, device=mean.device)
        out = vae.decode(z.flatten(0, 1), *(c.repeat(m) for c in cond))
        log_w.append(log_importance_weights(x.repeat(m, 1, 1, 1), out.float(), z.flatten(0, 1), mean.repeat(m, 1),
                                            logvar.repeat(m, 1), v.reconstruction, decoder_logvar).view(m, -1))
    log_w = torch.cat(log_w)
    return {"nll": -importance_weighted_bound(log_w).cpu(), "neg_elbo": -log_w.mean(0).cpu()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run directories of VAEs trained on mnist")
    parser.add_argument("--n", type=int, default=2000, help="first N test images (default 2000)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image (default 1000)")
    parser.add_argument("--batch", type=int, default=10, help="images per forward pass")
    parser.add_argument("--chunk", type=int, default=250, help="samples per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test binarisation and of z")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rows = []
    first = load_run(args.runs[0], device=args.device)
    x_all, labels_all = binarised_test_set(first.config, args.n, args.seed)
    pixels = x_all[0].numel()

    # Baseline: independent Bernoulli pixels with the (grey-level) training means: -log p(x) exactly.
    train_mean = load_training_data(first.config).images.float().div(255).mean(0).clamp(1e-4, 1 - 1e-4)
    baseline = -(x_all * train_mean.log() + (1 - x_all) * (1 - train_mean).log()).flatten(1).sum(1)
    rows.append(("independent pixels (baseline)", "-", baseline.mean().item(), baseline.std().item() / math.sqrt(len(baseline)),
                 float("nan"), 0.0))

    for run_dir in args.runs:
        run = load_run(run_dir, device=args.device)
        torch.manual_seed(args.seed)
        start, results = time.perf_counter(), {"nll": [], "neg_elbo": []}
        for i in range(0, len(x_all), args.batch):
            labels = labels_all[i:i + args.batch] if labels_all is not None else None
            for key, value in nll_per_image(run, x_all[i:i + args.batch], labels, args.k, args.chunk).items():
                results[key].append(value)
        nll, neg_elbo = torch.cat(results["nll"]), torch.cat(results["neg_elbo"])
        m, v = run.config.model, run.config.vae
        name = f"{m.name} {v.objective}" + (f" K={v.importance_samples}" if v.objective == "iwae" else "")
        rows.append((f"{name} ({run_dir})", run.step, nll.mean().item(), nll.std().item() / math.sqrt(len(nll)),
                     neg_elbo.mean().item(), time.perf_counter() - start))

    print(f"binarised MNIST test, first {args.n} images, K = {args.k}, seed {args.seed}")
    print("| model (run) | steps | NLL nats (K) | +- s.e. | bits/dim | -ELBO nats | eval s |")
    print("|---|---|---|---|---|---|---|")
    for name, step, nll, se, elbo, seconds in rows:
        print(f"| {name} | {step} | {nll:.2f} | {se:.2f} | {nll / (pixels * math.log(2)):.4f} | {elbo:.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
