"""Seconds for FID and KID of N vs N MNIST images on the CPU, feature extraction included: genforge
(batched extraction, torchmetrics statistics, float64 eigh Frechet distance) against a straightforward
reference (features one image at a time in a Python loop, numpy covariance, scipy.linalg.sqrtm, KID
subsets in numpy), in the same process. Prints a table and checks that both give the same numbers.

    PYTHONPATH=src python benchmarks/bench_metrics.py --data-root /work/shared/data/mnist \
        --evaluator /tmp/evaluators/mnist.pt --n 10000

The "generated" set is the first N training digits, the reference set N test digits. Both sides run with the same
number of torch threads (--threads, default 1: on a shared machine more threads than free cores slow
PyTorch down).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg
import torch

from genforge.data import load_dataset
from genforge.metrics.features import FeatureModule, load_evaluator
from genforge.metrics.scores import extract, fid_from_features, kid_from_features


def reference_features(network, images: torch.Tensor) -> np.ndarray:
    """One image at a time, as a first implementation would."""
    rows = []
    with torch.no_grad():
        for image in images:
            rows.append(network.features(image[None].float() / 255).numpy()[0])
    return np.stack(rows).astype(np.float64)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_kid(a: np.ndarray, b: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        m = size
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder with the MNIST IDX files")
    parser.add_argument("--evaluator", required=True, help="evaluator file from genforge train-evaluator --data mnist")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--subset-size", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    real = load_dataset("mnist", args.data_root, "test").images[:args.n]
    fake = load_dataset("mnist", args.data_root, "train").images[:args.n]
    evaluator = load_evaluator(args.evaluator)
    network = evaluator.network
    times: dict[str, tuple[float, float]] = {}
    # Warm-up outside the timings: importing torchmetrics' image metrics takes seconds once per process.
    warm = torch.rand(20, 8)
    fid_from_features(warm, warm)
    kid_from_features(warm, warm, subsets=1, subset_size=10)

    start = time.perf_counter()
    module = FeatureModule(network)
    fa, fb = extract(module, real), extract(module, fake)
    t_features = time.perf_counter() - start
    start = time.perf_counter()
    fid = fid_from_features(fa, fb)
    t_fid = time.perf_counter() - start
    start = time.perf_counter()
    kid = kid_from_features(fa, fb, args.subsets, args.subset_size, seed=0)
    t_kid = time.perf_counter() - start

    start = time.perf_counter()
    ra, rb = reference_features(network, real), reference_features(network, fake)
    r_features = time.perf_counter() - start
    start = time.perf_counter()
    rfid = reference_fid(ra, rb)
    r_fid = time.perf_counter() - start
    start = time.perf_counter()
    rkid = reference_kid(ra, rb, args.subsets, args.subset_size, seed=0)
    r_kid = time.perf_counter() - start

    times = {"features (2 x N images)": (t_features, r_features), "FID statistics + sqrtm": (t_fid, r_fid),
             f"KID ({args.subsets} subsets of {args.subset_size})": (t_kid, r_kid),
             "total": (t_features + t_fid + t_kid, r_features + r_fid + r_kid)}
    print(f"FID and KID, {args.n} MNIST test vs {args.n} MNIST train digits, evaluator {args.evaluator} "
          f"(sha256 {evaluator.sha256[:12]}), {args.threads} torch threads")
    print("| stage | genforge s | reference s | speed-up |")
    print("|---|---:|---:|---:|")
    for name, (ours, ref) in times.items():
        print(f"| {name} | {ours:.2f} | {ref:.2f} | {ref / ours:.1f}x |")
    print(f"FID genforge {fid:.6f}  reference {rfid:.6f}  relative difference {abs(fid - rfid) / abs(rfid):.2e}")
    print(f"KID genforge {kid[0]:.6f} +- {kid[1]:.6f}  reference {rkid[0]:.6f} +- {rkid[1]:.6f} (other subsets)")


if __name__ == "__main__":
    main()
