"""The one training loop, the same for every model family.

Each iteration runs these phases in this order (after NVlabs/edm2's training_loop):
  report -> snapshot -> checkpoint -> done? -> step -> EMA
What differs between families lives in the step function (training/steps.py), not here.

Resume by rerunning the same command: if the run directory holds checkpoints, the newest one is
loaded (networks, optimisers, EMA, step, every RNG state) and training continues exactly where it
stopped; on CPU the result is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from .. import __version__
from ..config import RunConfig, config_diff
from ..config import replace as config_replace
from ..data import ImageDataset, load_dataset
from ..data.transforms import center_crop, random_crop_flip
from ..data.paired import prepare_pairs
from ..errors import GenforgeError
from ..models import build_networks, model_spec
from ..sampling import generate_gan, generate_vae, latent_batch, recalibrate_batchnorm, save_grid
from . import checkpoint as ckpt
from .ema import EMA
from .report import Reporter, truncate_metrics
from .steps import STEPS, Batch, Precision, resolve_precision, vae_test_loss

# Settings a resumed run may change; any other difference from the saved config is an error.
RESUMABLE_CHANGES = ("train.steps", "train.device", "train.log_every", "train.sample_every",
                     "train.checkpoint_every", "train.keep_checkpoints", "data.workers",
                     "eval.every", "eval.metrics",
                     "eval.n_samples", "eval.evaluator", "eval.inception_weights", "eval.seed", "eval.nll_k")
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SAMPLE_GRID_SIZE = 64


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenforgeError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device(name)


def uses_convolutions(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in net.modules())


def to_channels_last(nets: dict[str, nn.Module], enabled: bool = True) -> bool:
    """Put convolutional networks in channels-last (NHWC) memory format, in place.

    oneDNN (CPU) and cuDNN (GPU) run convolutions natively in NHWC; with NCHW weights and inputs
    every convolution reorders its operands first. Dense networks are left alone (the format is
    meaningless for them). Returns True when any network was converted, i.e. when batches should
    be channels-last too.
    """
    converted = False
    for net in nets.values():
        if enabled and uses_convolutions(net):
            net.to(memory_format=torch.channels_last)
            converted = True
    return converted


def resolve_run_precision(cfg: RunConfig, device: torch.device, nets: dict[str, nn.Module]) -> RunConfig:
    """cfg with train.precision 'auto' replaced by the concrete precision for this device and these networks."""
    convolutional = any(uses_convolutions(net) for net in nets.values())
    precision = resolve_precision(device, cfg.train.precision, convolutional)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision))


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here (one short reason), or None when it can."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            return f"not supported on Python {sys.version_info.major}.{sys.version_info.minor}"
        if device.type == "cuda":
            from torch.utils._triton import has_triton
            if not has_triton():
                return "Triton is not installed"
        elif device.type == "cpu":
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()  # raises when no C++ compiler is found
    except Exception as exc:  # an import or toolchain failure: all mean "no compiler"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:100] if str(exc).strip() else 'no detail'}"
    return None


def compile_networks(nets: dict[str, nn.Module], device: torch.device, log=print) -> dict[str, nn.Module]:
    """torch.compile'd wrappers for the step function, or `nets` unchanged (and one log line) when
    the compiler is unavailable.

    The wrappers share parameters and buffers with `nets`, so the loop keeps checkpointing, EMA
    and sampling the plain modules (whose state-dict keys and deep copies stay those of eager mode).
    """
    reason = compile_unavailable(device)
    if reason:
        log(f"torch.compile is unavailable ({reason}); training in eager mode")
        return nets
    return {name: torch.compile(net) for name, net in nets.items()}


def load_training_data(cfg: RunConfig, split: str | None = None) -> ImageDataset:
    d = cfg.data
    data = load_dataset(d.name, d.root or None, split or d.split, d.image_size or None, d.channels or None,
                        skip_bad=d.skip_bad, crop=d.crop, workers=d.workers)
    if model_spec(cfg.model.name).family == "pix2pix":
        data = prepare_pairs(data, cfg.pix2pix.direction, cfg.data.name)
    return data


def resolve_model(cfg: RunConfig, data: ImageDataset) -> RunConfig:
    """Fill the model settings left at 0 from the model's defaults and the data's shape."""
    spec = model_spec(cfg.model.name)
    m = cfg.model
    crop = cfg.data.random_crop
    if crop > data.image_size:
        raise GenforgeError(f"data.random_crop is {crop} but the images are {data.image_size}x{data.image_size}; "
                            f"load them larger with --set data.image_size={crop + crop // 8} or lower the crop")
    image_size = crop or data.image_size  # the networks see the per-batch crops
    if m.image_size and m.image_size != image_size:
        raise GenforgeError(f"model.image_size is {m.image_size} but the data is {data.image_size}x{data.image_size}; "
                            f"resize the data with --set data.image_size={m.image_size}")
    if m.channels and m.channels != data.channels:
        raise GenforgeError(f"model.channels is {m.channels} but the data has {data.channels}; "
                            f"convert with --set data.channels={m.channels}")
    num_classes = 0
    if spec.conditional:
        if data.labels is None:
            raise GenforgeError(f"model {m.name} is class-conditional but dataset {cfg.data.name} has no labels; "
                                "use a labelled dataset (e.g. a folder with one subfolder per class)")
        num_classes = data.num_classes
    model = dataclasses.replace(m, latent_dim=m.latent_dim or spec.latent_dim, width=m.width or spec.width,
                                image_size=image_size, channels=data.channels, num_classes=num_classes)
    return dataclasses.replace(cfg, model=model)


def save_config(run_dir: Path, cfg: RunConfig) -> None:
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    ckpt.atomic_write_bytes(run_dir / CONFIG_FILE, text.encode())


def read_saved_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GenforgeError(f"{path} cannot be read ({type(exc).__name__}); the run directory is damaged") from None
    return RunConfig.from_dict(data, source=str(path))


def prepare_run_dir(run_dir: Path, cfg: RunConfig) -> bool:
    """Create the run directory, or check that an existing one belongs to this configuration.

    Returns True when the run directory already existed (a resume). Nothing is written before the
    checks pass, so a refused command leaves the directory as it was.
    """
    if (run_dir / CONFIG_FILE).is_file():
        saved = read_saved_config(run_dir)
        conflicts = config_diff(saved, cfg, RESUMABLE_CHANGES)
        if conflicts:
            raise GenforgeError(f"{run_dir} holds a run with other settings ({'; '.join(conflicts[:3])}); "
                                "rerun with the saved settings to resume, or choose a new --out")
        if saved != cfg:
            save_config(run_dir, cfg)  # record the new step count / device
        return True
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise GenforgeError(f"{run_dir} exists and is not a genforge run (no {CONFIG_FILE}); "
                            "choose a new --out or empty that folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir, cfg)
    return False


def make_optimizer(cfg: RunConfig, params, lr: float) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(params)
    if t.optimizer == "adam":
        # fused=True (CPU and CUDA): the whole update in one pass over each tensor, measured 6% faster
        # per step than foreach on vae-conv (CPU, bf16; docs/performance.md). foreach elsewhere.
        if params and all(p.device.type in ("cpu", "cuda") for p in params):
            return torch.optim.Adam(params, lr=lr, betas=t.betas, fused=True)
        return torch.optim.Adam(params, lr=lr, betas=t.betas, foreach=True)
    # foreach=True: one kernel launch per parameter group instead of one per tensor.
    return torch.optim.SGD(params, lr=lr, momentum=t.momentum, foreach=True)


def make_optimizers(cfg: RunConfig, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    lr = {"discriminator": cfg.gan.lr_d or cfg.train.lr}
    return {name: make_optimizer(cfg, net.parameters(), lr.get(name, cfg.train.lr)) for name, net in nets.items()}


class BatchSampler:
    """The batch for step s is a function of (seed, s) alone: each epoch is a fresh permutation
    seeded by (seed, epoch), drop-last. So resuming at step s needs no sampler state.
    Optional augmentation (random crop, horizontal flip) is drawn from a generator seeded by
    (seed, step) alone, for the same reason."""

    def __init__(self, data: ImageDataset, batch_size: int, seed: int, device: torch.device,
                 random_crop: int = 0, hflip: bool = False, channels_last: bool = False):
        if batch_size > len(data):
            raise GenforgeError(f"batch size {batch_size} is larger than the dataset ({len(data)} images); "
                                f"use --batch-size {len(data)} or less")
        self.images = data.images.to(device)  # uint8 on the device, converted per batch
        self.labels = data.labels.to(device) if data.labels is not None else None
        self.targets = data.targets.to(device) if data.targets is not None else None
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.channels_last = channels_last
        self.per_epoch = len(data) // batch_size
        self._epoch, self._order = -1, None
        self.random_crop, self.hflip = random_crop, hflip

    def __call__(self, step: int) -> Batch:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=g).to(self.device)
            self._epoch = epoch
        idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        return self._gather(idx, step)

    def extra(self, step: int, k: int) -> Batch:
        """The k-th additional batch of step s (k >= 1), for steps that need more than one (e.g.
        gan.d_steps): distinct images drawn with a generator seeded by (seed, step, k) alone."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1_009 + k)
        idx = torch.randperm(len(self.images), generator=g)[:self.batch_size].to(self.device)
        return self._gather(idx, step, k)

    def _gather(self, idx: torch.Tensor, step: int, k: int = 0) -> Batch:
        labels = self.labels.index_select(0, idx) if self.labels is not None else None
        images = self.images.index_select(0, idx)
        targets = self.targets.index_select(0, idx) if self.targets is not None else None
        if self.random_crop or self.hflip:
            seed = (self.seed * 1_000_003 + step) * 2 + 1  # a function of (seed, step, k) only
            g = torch.Generator().manual_seed(seed if k == 0 else seed * 1_009 + k)
            size = self.random_crop or images.shape[-1]
            if targets is None:
                images = random_crop_flip(images, size, self.hflip, g)
            else:  # paired data: one crop and flip for both sides
                both = random_crop_flip(torch.cat([images, targets], 1), size, self.hflip, g)
                images, targets = both[:, :images.shape[1]], both[:, images.shape[1]:]
        if self.channels_last:  # reorder the uint8 batch (1 byte a pixel); to_signed/to_unit keep the format
            images = images.contiguous(memory_format=torch.channels_last)
            targets = targets.contiguous(memory_format=torch.channels_last) if targets is not None else None
        return Batch(images, labels, targets, step, lambda j: self.extra(step, j))


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    samples: Path | None = None
    stopped_by_signal: str | None = None
    test: dict = field(default_factory=dict)


class _StopFlag:
    """SIGINT / SIGTERM ask the loop to checkpoint and stop after the current step."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal_name is not None:  # a second signal: stop now, without the checkpoint
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: RunConfig, run_dir: str | Path, quiet: bool = False) -> TrainResult:
    """Train (or resume) the run in `run_dir` to cfg.train.steps. Returns where things were written."""
    run_dir = Path(run_dir)
    t = cfg.train
    device = resolve_device(t.device)
    family = model_spec(cfg.model.name).family
    data = load_training_data(cfg)
    cfg = resolve_model(cfg, data)

    # Build everything before touching the run directory, so bad settings destroy nothing.
    torch.manual_seed(t.seed)
    nets = {name: net.to(device) for name, net in build_networks(cfg.model, cfg).items()}
    # 'auto' precision becomes the concrete one for this device and model, and that is what
    # config.yaml and the checkpoints record. Resuming with 'auto' keeps the run's saved precision
    # (also on another kind of machine), so that rerunning the same command always resumes.
    if t.precision == "auto" and (run_dir / CONFIG_FILE).is_file():
        cfg = config_replace(cfg, train={"precision": read_saved_config(run_dir).train.precision})
    cfg = resolve_run_precision(cfg, device, nets)
    t = cfg.train
    channels_last = to_channels_last(nets, t.channels_last)
    sampler = BatchSampler(data, t.batch_size, t.seed, device, cfg.data.random_crop, cfg.data.hflip,
                           channels_last=channels_last)
    evaluator = None
    if cfg.eval.every:
        from ..metrics.evaluate import TrainingEvaluator

        evaluator = TrainingEvaluator(cfg, device)  # loads the evaluator and reference features once
    resumed = prepare_run_dir(run_dir, cfg)
    opts = make_optimizers(cfg, nets)
    precision = Precision(device, t.precision, list(nets))
    ema = EMA(nets["generator"], cfg.gan.ema_decay) if family == "gan" and cfg.gan.ema_decay > 0 else None
    step_fn = STEPS[family]
    fixed_latent = latent_batch(SAMPLE_GRID_SIZE, cfg.model.latent_dim, t.seed + 1, device)
    # Conditional models: one row of 8 per class, cycling through the classes.
    fixed_labels = (torch.arange(SAMPLE_GRID_SIZE, device=device) // 8 % cfg.model.num_classes
                    if cfg.model.num_classes else None)

    # Pix2pix: 8 training pairs spread over the dataset, shown as input | output | target rows.
    fixed_pairs = None
    if family == "pix2pix":
        shown = torch.linspace(0, len(data) - 1, min(8, len(data))).long()
        fixed_pairs = (data.images[shown].to(device), data.targets[shown].to(device))

    step = 0
    checkpoints = ckpt.list_checkpoints(run_dir)
    if resumed and checkpoints:
        payload = ckpt.load_checkpoint(checkpoints[-1][1], map_location=device)
        for name, net in nets.items():
            net.load_state_dict(payload["networks"][name])
        for name, opt in opts.items():
            opt.load_state_dict(payload["optimizers"][name])
        if ema is not None:
            ema.load_state_dict(payload["ema"])
        precision.load_state_dict(payload.get("scalers", {}))
        ckpt.restore_rng_state(payload["rng"])
        step = int(payload["step"])
    truncate_metrics(run_dir / METRICS_FILE, step)
    start_step = step

    def save_checkpoint() -> Path:
        payload = {
            "format": "genforge-checkpoint", "version": __version__, "step": step, "family": family,
            "config": cfg.to_dict(),
            "networks": {n: net.state_dict() for n, net in nets.items()},
            "optimizers": {n: o.state_dict() for n, o in opts.items()},
            "ema": ema.state_dict() if ema is not None else None,
            "scalers": precision.state_dict(),
            "rng": ckpt.capture_rng_state(),
        }
        path = ckpt.checkpoint_path(run_dir, step)
        path.parent.mkdir(exist_ok=True)
        ckpt.save_checkpoint(path, payload)
        for _, old in ckpt.list_checkpoints(run_dir)[:-t.keep_checkpoints]:
            old.unlink()
        return path

    def snapshot() -> Path:
        if family == "pix2pix":
            from ..translate import comparison_grid, translate_batch

            outputs = translate_batch(nets["generator"], fixed_pairs[0])  # eval mode: dropout off
            nets["generator"].train()
            rows = comparison_grid(fixed_pairs[0], outputs, fixed_pairs[1])
            save_grid(rows, run_dir / "samples" / "latest.png", nrow=3)
            return save_grid(rows, run_dir / "samples" / f"step-{step:07d}.png", nrow=3)
        if family == "gan":
            generator = recalibrate_batchnorm(ema.model if ema else nets["generator"], cfg.model.latent_dim,
                                              device, num_classes=cfg.model.num_classes)
            images = generate_gan(generator, fixed_latent, fixed_labels)
            nets["generator"].train()
        else:
            images = generate_vae(nets["vae"], fixed_latent, cfg.vae.reconstruction, fixed_labels)
            nets["vae"].train()
        path = save_grid(images, run_dir / "samples" / f"step-{step:07d}.png", nrow=8)
        save_grid(images, run_dir / "samples" / "latest.png", nrow=8)
        return path

    reporter = Reporter(run_dir / METRICS_FILE, t.steps, start_step, quiet)
    if resumed and start_step:
        reporter.message(f"resuming {run_dir} from step {start_step}")
    # The step runs compiled wrappers (sharing parameters with `nets`) when asked; all else uses `nets`.
    step_nets = compile_networks(nets, device, reporter.message) if t.compile else nets
    sums: dict[str, torch.Tensor] = {}
    window_steps, window_start = 0, time.perf_counter()
    last_sample: Path | None = None
    result = TrainResult(run_dir, step)
    for net in nets.values():
        net.train()

    with _StopFlag() as stop:
        while True:
            done = step >= t.steps
            stopping = done or stop.signal_name is not None

            # Report: the only host synchronisation, every log_every steps.
            # Also before every checkpoint, so that a NaN is never saved over a good state.
            if window_steps and (step % t.log_every == 0 or step % t.checkpoint_every == 0 or stopping):
                values = {k: (v / window_steps).item() for k, v in sums.items()}
                bad = [k for k, v in values.items() if not torch.isfinite(torch.tensor(v))]
                if bad:
                    raise GenforgeError(_diverged_message(run_dir, step, bad))
                elapsed = time.perf_counter() - window_start
                values["images_per_s"] = window_steps * t.batch_size / max(elapsed, 1e-9)
                reporter.record(step, t.steps, values)
                sums, window_steps, window_start = {}, 0, time.perf_counter()

            # Snapshot: a sample grid from the fixed latent batch.
            # Also when a run stops (done or by a signal) before its first grid.
            if (step % t.sample_every == 0 and step > start_step) or (stopping and last_sample is None):
                last_sample = snapshot()

            # Evaluate: metrics of samples from the current networks; the global RNGs are left as they were.
            if evaluator is not None and step > start_step and stop.signal_name is None and (
                    step % cfg.eval.every == 0 or done):
                reporter.record(step, t.steps, evaluator(nets, ema.model if ema else None))

            # Checkpoint (never over a good one: losses were checked just above).
            if step > start_step and (step % t.checkpoint_every == 0 or stopping):
                save_checkpoint()

            # Done?
            if done:
                break
            if stop.signal_name is not None:
                reporter.message(f"{stop.signal_name}: checkpoint saved at step {step}; rerun the same command to resume")
                result.stopped_by_signal = stop.signal_name
                break

            # Step.
            losses = step_fn(step_nets, opts, sampler(step), cfg, precision)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            window_steps += 1

            # EMA of the generator.
            if ema is not None:
                ema.update(nets["generator"])
            step += 1
            reporter.advance(1)

    reporter.close()
    result.step, result.samples = step, last_sample or (run_dir / "samples" / "latest.png")
    if family == "vae" and done:
        result.test = _vae_test(cfg, nets["vae"], device, run_dir, step, log=step > start_step)
        if result.test and not quiet:
            print(f"test negative ELBO {result.test['loss']:.2f} nats/image "
                  f"(reconstruction {result.test['reconstruction']:.2f}, KL {result.test['kl']:.2f})", flush=True)
    if family == "pix2pix" and done:
        result.test = _pix2pix_test(cfg, nets["generator"], device, run_dir, step)
        if result.test and not quiet:
            print(f"test L1 {result.test['l1']:.4f} PSNR {result.test['psnr']:.2f} dB SSIM {result.test['ssim']:.4f} "
                  f"(identity mapping: L1 {result.test['identity_l1']:.4f})", flush=True)
    return result


def _pix2pix_test(cfg: RunConfig, generator: nn.Module, device: torch.device, run_dir: Path, step: int) -> dict:
    """L1, PSNR and SSIM on the test split of the paired data, when it has one; logged to metrics.jsonl."""
    from ..translate import evaluate_pairs

    try:
        test = load_training_data(cfg, split="test")
    except GenforgeError:
        return {}
    values = evaluate_pairs(generator, test.images, test.targets, device)
    generator.train()
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, **{f"test_{k}": round(v, 6) for k, v in values.items()}}) + "\n")
    return values


def _vae_test(cfg: RunConfig, vae: nn.Module, device: torch.device, run_dir: Path, step: int, log: bool) -> dict:
    """The VAE's loss on the dataset's test split, when it has one; logged to metrics.jsonl once."""
    try:
        test = load_training_data(cfg, split="test")
    except GenforgeError:
        return {}
    labels = test.labels.to(device) if test.labels is not None else None
    images = center_crop(test.images, cfg.data.random_crop) if cfg.data.random_crop else test.images
    values = vae_test_loss(vae, images.to(device), cfg, labels=labels)
    if not log:
        return values
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, **{f"test_{k}": round(v, 6) for k, v in values.items()}}) + "\n")
    return values


def _diverged_message(run_dir: Path, step: int, bad: list[str]) -> str:
    kept = ckpt.list_checkpoints(run_dir)
    where = f"the last good checkpoint (step {kept[-1][0]}) is kept" if kept else "no checkpoint was written"
    return (f"{', '.join(bad)} became NaN or infinite before step {step}; {where}; "
            "lower --lr or change the loss, then rerun")
