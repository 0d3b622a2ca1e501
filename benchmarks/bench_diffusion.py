"""Diffusion benchmarks: FID against the number of network evaluations (NFE) for each sampler,
class accuracy and FID against the guidance weight, and sampling speed against a plain loop.

    python benchmarks/bench_diffusion.py fid-nfe --run RUN --evaluator EVAL.pt --n 500 --nfe 4,8,16,32
    python benchmarks/bench_diffusion.py guidance --run CRUN --evaluator EVAL.pt --n 500 --weights 0,1,2,4
    python benchmarks/bench_diffusion.py speed --run RUN --nfe 16 --batch 64
    python benchmarks/bench_diffusion.py compare --runs DIFFUSION_RUN,GAN_RUN --evaluator EVAL.pt --n 1000 --steps 16

FID and class accuracy use the project's evaluators (genforge train-evaluator; docs/evaluation.md):
classifier features, comparable only between numbers taken with the same evaluator file. The
speed table compares Run.sample (DPM-Solver++(2M), fp32 and bf16 autocast) with a straightforward
loop over the same network (DDPM ancestral steps on the same grid, fp32, NCHW) in the same process,
alternating, medians of the repeats, ratios against the loop.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from genforge.conditioning import Condition
from genforge.families.diffusion.objectives import denoise
from genforge.families.diffusion.sample import sigma_grid
from genforge.families.registry import load_data
from genforge.metrics.evaluate import EvalSettings, feature_metrics, make_extractors
from genforge.metrics.scores import extract
from genforge.run import load_run

SAMPLERS = ("ddpm", "ddim", "heun", "dpm2m")


def steps_for(sampler: str, nfe: int) -> int:
    """Steps that spend at most `nfe` evaluations (heun: 2 steps - 1)."""
    return max(1, (nfe + 1) // 2) if sampler == "heun" else nfe


def reference_features(run, extractors, n: int):
    data = load_data(run.config, split="test")
    images = data.images[torch.randperm(len(data.images), generator=torch.Generator().manual_seed(0))[:n]]
    return extract(extractors.features, images), len(images)


def fid_nfe(args) -> None:
    run = load_run(args.run)
    m = run.config.model
    extractors = make_extractors(run.config.data.name, m.image_size, m.channels, run.device, args.evaluator)
    real, n_real = reference_features(run, extractors, args.n)
    labels = torch.arange(args.n) % m.num_classes if m.num_classes else None
    nfes = [int(v) for v in args.nfe.split(",")]
    print(f"run {args.run} (step {run.step}); {args.n} samples (seed 0) vs {n_real} test images; evaluator "
          f"{extractors.protocol.get('sha256', '')[:12]}")
    print("| sampler | " + " | ".join(f"NFE {v}" for v in nfes) + " |")
    print("|---|" + "---|" * len(nfes))
    for sampler in args.samplers.split(","):
        cells = []
        for nfe in nfes:
            start = time.perf_counter()
            images = run.sample(args.n, seed=0, labels=labels, sampler=sampler, steps=steps_for(sampler, nfe))
            spent = run.last_report["nfe"]
            fid = feature_metrics(real, images, extractors, EvalSettings(n=args.n), ("fid",))["fid"]
            cells.append(f"{fid:.2f} ({spent} NFE, {time.perf_counter() - start:.0f}s)")
        print(f"| {sampler} | " + " | ".join(cells) + " |", flush=True)


def guidance(args) -> None:
    run = load_run(args.run)
    m = run.config.model
    extractors = make_extractors(run.config.data.name, m.image_size, m.channels, run.device, args.evaluator)
    real, n_real = reference_features(run, extractors, args.n)
    labels = torch.arange(args.n) % m.num_classes
    print(f"run {args.run} (step {run.step}); {args.sampler}, {args.steps} steps; {args.n} samples vs {n_real} test images")
    print("| w | class accuracy | FID |")
    print("|---|---|---|")
    for w in (float(v) for v in args.weights.split(",")):
        images = run.sample(args.n, seed=0, labels=labels, sampler=args.sampler, steps=args.steps, guidance=w)
        values = feature_metrics(real, images, extractors, EvalSettings(n=args.n), ("fid", "acc"), labels)
        print(f"| {w:g} | {values['class_accuracy']:.3f} | {values['fid']:.2f} |", flush=True)


def speed(args) -> None:
    run = load_run(args.run)
    cfg, net = run.config, run.networks["denoiser"]
    m, n = cfg.model, args.batch
    sigmas = sigma_grid("ddpm", args.nfe, cfg.diffusion)
    cond = Condition(labels=torch.zeros(n, dtype=torch.long) if m.num_classes else None)

    def plain_loop():
        # The textbook loop (Ho et al. 2020, algorithm 2 on the same noise levels): fp32, NCHW, one
        # network call per step, fresh torch.randn noise.
        x = torch.randn(n, m.channels, m.image_size, m.image_size) * float(sigmas[0])
        for i in range(len(sigmas) - 1):
            y = denoise(net, x, sigmas[i], cond, cfg.diffusion)
            s_t, s_s = float(sigmas[i]), float(sigmas[i + 1])
            x = y + (s_s / s_t) ** 2 * (x - y) + s_s * max(s_t ** 2 - s_s ** 2, 0) ** 0.5 / s_t * torch.randn_like(x)
        return x

    labels = [0] if m.num_classes else None

    def genforge_fp32():
        return run.sample(n, seed=0, labels=labels, sampler="dpm2m", steps=args.nfe)

    def genforge_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run.sample(n, seed=0, labels=labels, sampler="dpm2m", steps=args.nfe)

    cases = {"plain loop (ddpm, fp32)": plain_loop, "Run.sample dpm2m fp32": genforge_fp32,
             "Run.sample dpm2m bf16 autocast": genforge_bf16}
    times = {name: [] for name in cases}
    with torch.no_grad():
        for fn in cases.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in cases.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain loop (ddpm, fp32)"])
    print(f"run {args.run}: {n} images at {args.nfe} NFE, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print("| path | images/s | vs plain loop |")
    print("|---|---|---|")
    for name in cases:
        t = statistics.median(times[name])
        print(f"| {name} | {n / t:.2f} | {base / t:.2f}x |")


def compare(args) -> None:
    """Runs of any family side by side on one reference: FID, precision, recall, class accuracy and
    sampling rate (diffusion runs with --sampler and --steps; other families ignore them)."""
    runs = [load_run(path) for path in args.runs.split(",")]
    m = runs[0].config.model
    extractors = make_extractors(runs[0].config.data.name, m.image_size, m.channels, runs[0].device, args.evaluator)
    real, n_real = reference_features(runs[0], extractors, args.n)
    print(f"{args.n} samples per run (seed 0, classes cycling) vs {n_real} test images; evaluator "
          f"{extractors.protocol.get('sha256', '')[:12]}; {torch.get_num_threads()} thread(s)")
    print("| run | step | sampling | FID | precision | recall | class accuracy | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for path, run in zip(args.runs.split(","), runs):
        classes = run.config.model.num_classes
        labels = torch.arange(args.n) % classes if classes else None
        options = ({"sampler": args.sampler, "steps": args.steps}
                   if "sampler" in run.model_family.sample_options else {})
        start = time.perf_counter()
        images = run.sample(args.n, seed=0, labels=labels, **options)
        rate = args.n / (time.perf_counter() - start)
        metrics = ("fid", "pr", "acc") if classes else ("fid", "pr")
        values = feature_metrics(real, images, extractors, EvalSettings(n=args.n), metrics, labels)
        how = f"{args.sampler}, {run.last_report.get('nfe')} NFE" if options else "one generator pass"
        accuracy = f"{values['class_accuracy']:.3f}" if classes else "-"
        print(f"| {path} | {run.step} | {how} | {values['fid']:.2f} | {values['precision']:.3f} | "
              f"{values['recall']:.3f} | {accuracy} | {rate:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fid-nfe")
    p.add_argument("--run", required=True)
    p.add_argument("--evaluator", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--nfe", default="4,8,16,32,64")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.set_defaults(func=fid_nfe)
    p = sub.add_parser("guidance")
    p.add_argument("--run", required=True)
    p.add_argument("--evaluator", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--weights", default="0,1,2,4")
    p.add_argument("--sampler", default="dpm2m")
    p.add_argument("--steps", type=int, default=16)
    p.set_defaults(func=guidance)
    p = sub.add_parser("speed")
    p.add_argument("--run", required=True)
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=speed)
    p = sub.add_parser("compare")
    p.add_argument("--runs", required=True, help="comma-separated run directories on the same dataset")
    p.add_argument("--evaluator", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--sampler", default="dpm2m")
    p.add_argument("--steps", type=int, default=16)
    p.set_defaults(func=compare)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.func(args)


if __name__ == "__main__":
    main()
