"""Training and sampling throughput: genforge's fast path against the textbook way, side by side.

The baseline trains genforge's own networks (same architecture, same initialisation) the way the
official PyTorch examples do (pytorch/examples dcgan/main.py and vae/main.py): float32, NCHW,
Sigmoid + BCELoss for the GAN discriminator, ``loss.item()`` every step, Adam with its defaults,
and a torch DataLoader (batch_size, shuffle) over a TensorDataset of per-image float tensors.
genforge's side is set up by the function train() uses, genforge.training.loop.setup (data,
networks, precision 'auto', channels-last, optimisers, averages, family state; its config.yaml goes
to a temporary run directory), and runs the pieces of train() that execute every step -- the
BatchSampler (uint8 data on the device), the family's step, the on-device loss sums read every
log_every steps and the EMA updates of the networks the family averages. One-off start-up
(imports, data loading, model building, warm-up steps, compilation) is excluded from both sides.

Each measurement runs in a fresh process (so peak memory belongs to one case alone); baseline and
genforge alternate, and the table gives medians and the median of the paired ratios.

    PYTHONPATH=src python benchmarks/bench_train.py                  # every case, 3 repeats
    PYTHONPATH=src python benchmarks/bench_train.py --cases dcgan-32x32x3-b64 --repeats 5
    PYTHONPATH=src python benchmarks/bench_train.py --sides baseline,genforge,genforge-fp32
    PYTHONPATH=src python benchmarks/bench_train.py --quality --data-root /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, machine_description, measure_peak, median, peak_rss_mb, run_in_fresh_process, synchronize  # noqa: E402

# name -> what to run. 'target' is the speed-up over the baseline that issue 8 asks for.
CASES: dict[str, dict] = {
    "dcgan-28x28x1-b64": {"kind": "train", "model": "dcgan", "size": 28, "channels": 1, "batch": 64, "target": 1.5},
    "dcgan-28x28x1-b128": {"kind": "train", "model": "dcgan", "size": 28, "channels": 1, "batch": 128, "target": 1.5},
    "dcgan-32x32x3-b64": {"kind": "train", "model": "dcgan", "size": 32, "channels": 3, "batch": 64, "target": 1.8},
    "dcgan-32x32x3-b128": {"kind": "train", "model": "dcgan", "size": 32, "channels": 3, "batch": 128, "target": None},
    "vae-mlp-b128": {"kind": "train", "model": "vae-mlp", "size": 28, "channels": 1, "batch": 128, "target": None},
    "vae-conv-b128": {"kind": "train", "model": "vae-conv", "size": 28, "channels": 1, "batch": 128, "target": 1.5},
    "sample-dcgan-10k": {"kind": "sample", "model": "dcgan", "size": 28, "channels": 1, "n": 10_000, "target": 3.0},
}

# Sides: 'baseline' and 'genforge' (the defaults); the others attribute the gain or try options.
SIDES = {
    "baseline": "the PyTorch examples' way (fp32, NCHW, DataLoader, .item() every step)",
    "genforge": "genforge defaults (precision auto, channels-last)",
    "genforge-fp32": "genforge with --precision fp32 (channels-last, no autocast)",
    "genforge-nchw": "genforge with train.channels_last=false (precision auto)",
    "genforge-compile": "genforge defaults plus train.compile=true",
    "genforge-foreach": "genforge defaults but Adam with foreach=True instead of fused=True",
    "genforge-bf16": "sampling only: Run.sample under bf16 autocast with a channels-last generator",
}
WARMUP_STEPS = 3
LOG_EVERY = 50  # the loop's default: losses are read from the device this often


# ---- the textbook baseline --------------------------------------------------------------------

def _loader(images: torch.Tensor, batch_size: int):
    """An endless stream of batches from a DataLoader over per-image float tensors, epoch after epoch."""
    from torch.utils.data import DataLoader, TensorDataset
    loader = DataLoader(TensorDataset(images), batch_size=batch_size, shuffle=True)
    while True:
        yield from loader


def baseline_gan(case: dict, data, device: torch.device):
    """pytorch/examples dcgan/main.py's step on genforge's DCGAN networks (+ Sigmoid, BCELoss)."""
    from genforge.families.gan.dcgan import Discriminator, Generator
    latent_dim = 100
    generator = Generator(latent_dim, case["channels"], case["size"], 64).to(device)
    discriminator = nn.Sequential(Discriminator(case["channels"], case["size"], 64), nn.Sigmoid()).to(device)
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = _loader(data.images.float().div(127.5).sub(1), case["batch"])

    def step() -> int:
        real = next(batches)[0].to(device)
        n = real.size(0)
        discriminator.zero_grad()
        label = torch.full((n,), 1.0, device=device)
        output = discriminator(real).view(-1)
        err_d_real = criterion(output, label)
        err_d_real.backward()
        d_x = output.mean().item()
        noise = torch.randn(n, latent_dim, 1, 1, device=device)
        fake = generator(noise)
        label.fill_(0.0)
        output = discriminator(fake.detach()).view(-1)
        err_d_fake = criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.mean().item()
        err_d = err_d_real + err_d_fake
        opt_d.step()
        generator.zero_grad()
        label.fill_(1.0)
        output = discriminator(fake).view(-1)
        err_g = criterion(output, label)
        err_g.backward()
        d_g_z2 = output.mean().item()
        opt_g.step()
        _logged = (err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # the example prints these every step
        return n

    return step


def baseline_vae(case: dict, data, device: torch.device):
    """pytorch/examples vae/main.py's step on genforge's VAE (sigmoid + summed BCE + KLD)."""
    from genforge.families.vae.conv import VAE as ConvVAE
    from genforge.families.vae.mlp import VAE as DenseVAE
    shape = (case["channels"], case["size"], case["size"])
    vae = (DenseVAE(16, shape, 512) if case["model"] == "vae-mlp" else ConvVAE(16, case["channels"], case["size"], 32))
    vae = vae.to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    batches = _loader(data.images.float().div(255), case["batch"])
    pixels = shape[0] * shape[1] * shape[2]
    totals = {"train_loss": 0.0}

    def step() -> int:
        x = next(batches)[0].to(device)
        optimizer.zero_grad()
        logits, mu, logvar = vae(x)
        recon = torch.sigmoid(logits)
        bce = F.binary_cross_entropy(recon.view(-1, pixels), x.view(-1, pixels), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = bce + kld
        loss.backward()
        totals["train_loss"] += loss.item()
        optimizer.step()
        return x.size(0)

    return step


# ---- genforge ---------------------------------------------------------------------------------

def genforge_config(case: dict, side: str, device: str):
    """The run configuration of a case: the model on mnist-5k at the case's size and channels."""
    from genforge.families.registry import resolve_config
    train = {"batch_size": case.get("batch", 64), "device": device, "log_every": LOG_EVERY}
    if side == "genforge-fp32":
        train["precision"] = "fp32"
    if side == "genforge-nchw":
        train["channels_last"] = False
    if side == "genforge-compile":
        train["compile"] = True
    width = {"dcgan": 64, "vae-mlp": 512, "vae-conv": 32}[case["model"]]
    data = {"name": "mnist-5k", "image_size": case["size"] if case["size"] != 28 else 0,
            "channels": case["channels"] if case["channels"] != 1 else 0}
    model = {"name": case["model"], "width": width, "latent_dim": 100 if case["model"] == "dcgan" else 16}
    return resolve_config(overrides=[{"model": model, "data": data, "train": train}])


def genforge_train(case: dict, side: str, device: torch.device):
    """The per-step work of genforge.training.train(), set up by train()'s own set-up function."""
    from genforge.training.loop import setup

    run_dir = tempfile.TemporaryDirectory(prefix="bench-train-")  # setup writes config.yaml there
    tr = setup(genforge_config(case, side, str(device)), run_dir.name, log=lambda m: print(m, file=sys.stderr))
    opts = tr.opts
    if side == "genforge-foreach":  # the optimiser genforge used before fused Adam, for comparison
        opts = {n: torch.optim.Adam(o.param_groups[0]["params"], lr=o.defaults["lr"], betas=o.defaults["betas"],
                                    foreach=True) for n, o in opts.items()}
    log_every = tr.cfg.train.log_every
    sums: dict[str, torch.Tensor] = {}
    counter = {"step": 0}
    for net in tr.nets.values():
        net.train()

    def step(nets_for_step=None) -> int:
        s = counter["step"]
        losses = tr.family.step(nets_for_step or tr.step_nets, opts, tr.sampler(s), tr.cfg, tr.precision, tr.state)
        for k, v in losses.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        for name, ema in tr.averaged.items():
            ema.update(tr.nets[name])
        counter["step"] = s + 1
        if counter["step"] % log_every == 0:  # the loop's report: the one host synchronisation
            _values = {k: (v / log_every).item() for k, v in sums.items()}
            sums.clear()
        return tr.cfg.train.batch_size

    step.eager = lambda: step(tr.nets)  # for counting FLOPs (the counter does not see compiled code)
    step.precision = tr.precision.precision
    step.run_dir = run_dir  # removed when the step function goes
    return step


# ---- measurement ------------------------------------------------------------------------------

def load_case_data(case: dict):
    from genforge.data import load_dataset
    size = case["size"] if case["size"] != 28 else None
    channels = case["channels"] if case["channels"] != 1 else None
    return load_dataset("mnist-5k", None, "train", size, channels)


def count_flops(fn) -> float:
    """Floating-point operations (matmuls and convolutions, forward and backward) of one call."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def time_steps(step, device: torch.device, seconds: float, min_steps: int = 5) -> tuple[float, int]:
    """Images per second over at least `seconds` and `min_steps` steps, after the warm-up."""
    for _ in range(WARMUP_STEPS):
        step()
    synchronize(device)
    images, steps, start = 0, 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        images += step()
        steps += 1
    synchronize(device)
    return images / (time.perf_counter() - start), steps


def worker_train(case: dict, side: str, device: torch.device, seconds: float) -> dict:
    if side == "baseline":
        step = (baseline_gan if case["model"] == "dcgan" else baseline_vae)(case, load_case_data(case), device)
        flops_step, precision = count_flops(step), "fp32"
    else:
        step = genforge_train(case, side, device)
        flops_step, precision = count_flops(step.eager), step.precision
    rate, steps = time_steps(step, device, seconds)
    return {"images_per_s": rate, "steps": steps, "flops_per_image": flops_step / case["batch"],
            "precision": precision}


def worker_sample(case: dict, side: str, device: torch.device, seconds: float) -> dict:
    """Sampling n images from a DCGAN generator: the example's loop vs genforge's Run.sample."""
    from genforge.families.gan.dcgan import Generator
    from genforge.families.registry import model_spec
    from genforge.run import Run
    from genforge.runtime import autocast, to_channels_last

    n, latent_dim = case["n"], 100
    torch.manual_seed(0)
    generator = Generator(latent_dim, case["channels"], case["size"], 64).to(device).eval().requires_grad_(False)
    precision = "fp32"
    if side == "baseline":
        @torch.no_grad()
        def sample(count: int) -> torch.Tensor:  # dcgan/main.py: netG(noise) on batches of 64
            out = [generator(torch.randn(min(64, count - i), latent_dim, 1, 1, device=device)).cpu()
                   for i in range(0, count, 64)]
            return torch.cat(out)
    else:
        cfg = genforge_config(case, "genforge", str(device))
        if side == "genforge-bf16":  # what `genforge sample --precision bf16` does (load_run(precision="bf16"))
            to_channels_last({"generator": generator})
            precision = "bf16"
        run = Run(Path("."), cfg, model_spec(case["model"]).family, 0, {"generator": generator}, device, precision)
        sample = lambda count: _sample_with(run, count, autocast(device, "fp32"))
    flops = count_flops(lambda: sample(500)) / 500
    sample(500)  # warm-up
    rates = []
    start = time.perf_counter()
    while not rates or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        images = sample(n)
        synchronize(device)
        rates.append(n / (time.perf_counter() - t))
        assert images.shape[0] == n
    return {"images_per_s": median(rates), "steps": len(rates), "flops_per_image": flops, "precision": precision}


def _sample_with(run, count: int, context) -> torch.Tensor:
    with context:
        return run.sample(count, seed=0)


def run_profile(args) -> str:
    """torch.profiler's table of where one side's training steps spend their time (CPU self time)."""
    from torch.profiler import ProfilerActivity, profile
    case = CASES[args.profile]
    side = args.sides.split(",")[-1]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if side == "baseline":
        step = (baseline_gan if case["model"] == "dcgan" else baseline_vae)(case, load_case_data(case), device)
    else:
        step = genforge_train(case, side, device)
    for _ in range(WARMUP_STEPS):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            step()
        synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return (f"{args.profile} ({side}), {args.profile_steps} steps\n"
            + prof.key_averages().table(sort_by=sort, row_limit=args.profile_rows))


def worker(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.case == "probe":
        out = measure_peak(device)
    else:
        case = CASES[args.case]
        fn = worker_train if case["kind"] == "train" else worker_sample
        out = fn(case, args.side, device, args.seconds)
        if device.type == "cuda":
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


# ---- the driver -------------------------------------------------------------------------------

def run_suite(args) -> dict:
    script = Path(__file__).resolve()
    common = ["--device", args.device, "--seconds", str(args.seconds)]
    common += ["--threads", str(args.threads)] if args.threads else []
    cases = args.cases.split(",") if args.cases else list(CASES)
    sides = args.sides.split(",")
    for name in cases:
        if name not in CASES:
            sys.exit(f"unknown case {name!r}; choose from: {', '.join(CASES)}")
    for side in sides:
        if side not in SIDES:
            sys.exit(f"unknown side {side!r}; choose from: {', '.join(SIDES)}")

    def probe() -> dict:
        return run_in_fresh_process(script, ["--case", "probe", "--side", "none", *common])

    peaks = [probe()]
    results: dict[str, dict[str, list[dict]]] = {}
    for name in cases:
        results[name] = {s: [] for s in sides}
        case_sides = [s for s in sides if CASES[name]["kind"] == "sample" or s != "genforge-bf16"]
        for r in range(args.repeats):
            order = case_sides if r % 2 == 0 else case_sides[::-1]  # alternate who goes first
            for side in order:
                out = run_in_fresh_process(script, ["--case", name, "--side", side, *common])
                results[name][side].append(out)
                print(f"  {name:20s} {side:16s} repeat {r + 1}: {out['images_per_s']:8.1f} images/s "
                      f"({out['precision']}, peak RSS {out['peak_rss_mb']:.0f} MiB)", file=sys.stderr, flush=True)
    peaks.append(probe())
    peak = {k: max(p[k] for p in peaks) for k in peaks[0] if k != "peak_rss_mb"}
    return {"machine": machine_description(torch.device(args.device if args.device != "auto" else
                                                        ("cuda" if torch.cuda.is_available() else "cpu")),
                                           args.threads),
            "command": " ".join(["python", "benchmarks/bench_train.py", *sys.argv[1:]]),
            "peak_gflops": peak, "probes": peaks, "results": results}


def merge_reports(reports: list[dict]) -> dict:
    """Several --json files (e.g. one per group of cases) as one report; the peak is the best probe."""
    merged = {"machine": reports[0]["machine"], "command": "; ".join(r["command"] for r in reports),
              "probes": [p for r in reports for p in r["probes"]], "results": {}}
    for r in reports:
        merged["results"].update(r["results"])
    merged["peak_gflops"] = {k: max(p[k] for p in merged["probes"]) for k in reports[0]["peak_gflops"]}
    return merged


def summarise(report: dict) -> str:
    peak = report["peak_gflops"]
    lines = [f"machine: {report['machine']}",
             f"measured peak GFLOP/s: fp32 {peak['fp32']:.0f} (matmul {peak['matmul_fp32']:.0f}, conv {peak['conv_fp32']:.0f}); "
             f"bf16 {peak['bf16']:.0f} (matmul {peak['matmul_bf16']:.0f}, conv {peak['conv_bf16']:.0f})", ""]
    headers = ["case", "side", "precision", "images/s (median)", "vs baseline (median, range)", "target",
               "peak RSS MiB", "GFLOP/s", "% of peak"]
    rows = []
    for name, by_side in report["results"].items():
        base = by_side.get("baseline", [])
        for side, runs in by_side.items():
            if not runs:
                continue
            rate = median([r["images_per_s"] for r in runs])
            precision = runs[0]["precision"]
            gflops = rate * runs[0]["flops_per_image"] / 1e9
            if side != "baseline" and base:
                ratios = [g["images_per_s"] / b["images_per_s"] for g, b in zip(runs, base)]
                vs = f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                target = CASES[name]["target"] if side == "genforge" else None  # the targets are for the defaults
                target_text = "" if target is None else f">= {target}x {'met' if median(ratios) >= target else 'MISSED'}"
            else:
                vs, target_text = "1.00x", ""
            limit = peak["bf16" if precision == "bf16" else "fp32"]
            rows.append([name, side, precision, f"{rate:.0f}", vs, target_text,
                         f"{median([r['peak_rss_mb'] for r in runs]):.0f}", f"{gflops:.1f}",
                         f"{100 * gflops / limit:.0f}% of {'bf16' if precision == 'bf16' else 'fp32'}"])
    return "\n".join(lines + [format_table(headers, rows)])


# ---- quality: fp32 against the fast path ------------------------------------------------------

class DigitFeatures(nn.Module):
    """A small MNIST classifier; its 64-d penultimate layer serves as FID features.

    Trained here, inline, because this branch has no evaluation module; FID numbers from it are
    comparable with each other, not with FIDs computed on Inception features.
    """

    num_features = 64

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float())


def train_feature_classifier(train_data, test_data, epochs: int = 2, limit: int = 20_000) -> tuple[DigitFeatures, float]:
    """Two epochs over (at most) the first 20,000 training digits: about 98% test accuracy, in seconds."""
    torch.manual_seed(0)
    model = DigitFeatures()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = train_data.images[:limit].float().div(255), train_data.labels[:limit]
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(model.head(model(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        pred = torch.cat([model.head(model(c.float().div(255))).argmax(1) for c in test_data.images.split(1000)])
    return model, (pred == test_data.labels).float().mean().item()


def fid(features: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance (Heusel et al. 2017, eq. 6) between feature statistics; images in [0, 1]."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    metric = FrechetInceptionDistance(feature=features, normalize=True)
    for chunk in real.split(1000):
        metric.update(chunk, real=True)
    for chunk in fake.split(1000):
        metric.update(chunk, real=False)
    return float(metric.compute())


def run_quality(args) -> str:
    """Train the DCGAN on MNIST with the same steps and seeds in fp32 and in the fast path; FID each."""
    from genforge.data import load_dataset
    from genforge.families.registry import resolve_config
    from genforge.run import load_run
    from genforge.training import train

    name = "mnist" if args.data_root else "mnist-5k"
    train_data = load_dataset(name, args.data_root or None, "train")
    test_data = load_dataset(name, args.data_root or None, "test")
    features, accuracy = train_feature_classifier(train_data, test_data)
    real = test_data.images.float().div(255)
    n = min(args.fid_images, len(real))
    real = real[:n]
    lines = [f"data: {name} ({len(train_data)} training images); DCGAN width {args.width}, batch 64, "
             f"{args.steps} steps; FID of {n} samples against {n} test images on the features of an inline "
             f"classifier (test accuracy {accuracy:.3f})",
             f"floor: FID(train images, test images) = {fid(features, train_data.images[:n].float().div(255), real):.2f}"]
    rows, by_precision = [], {}
    for seed in map(int, args.seeds.split(",")):
        for precision in ("fp32", "auto"):
            cfg = resolve_config(overrides=[{
                "model": {"name": "dcgan", "width": args.width},
                "data": {"name": name, "root": args.data_root or ""},
                "train": {"steps": args.steps, "batch_size": 64, "seed": seed, "precision": precision, "device": "cpu",
                          "log_every": 50, "sample_every": args.steps, "checkpoint_every": args.steps}}])
            with tempfile.TemporaryDirectory() as run_dir:
                start = time.perf_counter()
                train(cfg, run_dir, quiet=True)
                seconds = time.perf_counter() - start
                records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
                last = [r for r in records if "loss_d" in r][-1]
                resolved = load_run(run_dir).config.train.precision
                samples = load_run(run_dir).sample(n, seed=1234)
            score = fid(features, real, samples)
            by_precision.setdefault(resolved, []).append(score)
            rows.append([str(seed), resolved, f"{last['loss_d']:.3f}", f"{last['loss_g']:.3f}", f"{score:.2f}",
                         f"{seconds:.0f}"])
            print(f"  seed {seed} {resolved}: FID {score:.2f} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    table = format_table(["seed", "precision", "loss_d (last 50)", "loss_g (last 50)", "FID", "train seconds"], rows)
    summary = [f"{p}: FID mean {sum(v) / len(v):.2f}, range {min(v):.2f}-{max(v):.2f}" for p, v in by_precision.items()]
    return "\n".join(lines + ["", table, ""] + summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--sides", default="baseline,genforge", help=f"comma-separated, from: {', '.join(SIDES)}")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per case and side")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement (after warm-up)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--quality", action="store_true", help="run the fp32 vs fast-path FID check instead")
    parser.add_argument("--data-root", default="", help="--quality: MNIST IDX folder (default: embedded mnist-5k)")
    parser.add_argument("--steps", type=int, default=500, help="--quality: training steps per run")
    parser.add_argument("--seeds", default="0,1", help="--quality: seeds, each trained in both precisions")
    parser.add_argument("--width", type=int, default=32, help="--quality: DCGAN width")
    parser.add_argument("--fid-images", type=int, default=10_000, help="--quality: images per FID side")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print the table of results saved with --json")
    parser.add_argument("--profile", metavar="CASE", help="profile the last of --sides on CASE instead")
    parser.add_argument("--profile-steps", type=int, default=10, help="--profile: steps profiled")
    parser.add_argument("--profile-rows", type=int, default=20, help="--profile: operators listed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quality:
        print(run_quality(args))
        return
    if args.profile:
        print(run_profile(args))
        return
    if args.report:
        print(summarise(merge_reports([json.loads(Path(p).read_text()) for p in args.report])))
        return
    report = run_suite(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(summarise(report))


if __name__ == "__main__":
    main()
