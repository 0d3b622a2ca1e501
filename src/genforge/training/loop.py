"""The one training loop, the same for every model family.

Each iteration runs these phases in this order (after NVlabs/edm2's training_loop):
  report -> snapshot -> evaluate -> checkpoint -> done? -> step -> EMA
Everything that differs between families comes from the family contract (families/contract.py):
the step, the sampler, the averaged networks, the family's own state and its end-of-run test.

Resume by rerunning the same command: if the run directory holds checkpoints, the newest one is
loaded (networks, optimisers, averages, family state, step, every RNG state) and training
continues exactly where it stopped; on CPU the result is bit-identical to an uninterrupted run.

Launched by torchrun, every rank runs this loop on its share of the global batch (distributed.py):
gradients are averaged in Precision.backward_step's hook, rank 0 alone writes files, and a stop
request on any rank stops them all at the same step.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..config import RunConfig, config_diff
from ..config import replace as config_replace
from ..data import ImageDataset
from ..errors import GenforgeError
from ..families.contract import Family, FamilyState, SampleRequest
from ..families.registry import build_networks, check_config, inference_networks, load_data, model_spec, preview, resolve_model
from ..imageio import make_grid, save_grid
from ..rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    averaged_states,
    checkpoint_path,
    data_fingerprint,
    list_checkpoints,
    load_checkpoint,
    lock_run_dir,
    nonfinite_tensors,
    read_saved_config,
    save_config,
    unlock_run_dir,
    verify_checkpoint,
)
from ..runtime import Precision, compile_networks, resolve_device, resolve_precision, to_channels_last, uses_convolutions
from .batches import BatchSampler, memory_mapped, write_image_cache
from .checkpoint import capture_rng_state, restore_rng_state
from .checkpoint import save_checkpoint as write_checkpoint
from .distributed import World, average_gradients, broadcast_state, from_rank0, largest, mean_over_ranks, rank_seed
from .distributed import start as start_distributed
from .distributed import stop as stop_distributed
from .ema import EMA
from .optim import make_optimizers
from .report import Reporter, tensorboard_writer, truncate_metrics

# Settings a resumed run may change; any other difference from the saved config is an error.
RESUMABLE_CHANGES = ("train.steps", "train.device", "train.accumulate", "train.log", "data.memory",
                     "train.log_every", "train.sample_every",
                     "train.checkpoint_every", "train.keep_checkpoints", "data.workers",
                     "eval.every", "eval.metrics",
                     "eval.n_samples", "eval.evaluator", "eval.inception_weights", "eval.seed", "eval.nll_k")


def resolve_run_precision(cfg: RunConfig, device: torch.device, nets: dict[str, nn.Module]) -> RunConfig:
    """cfg with train.precision 'auto' replaced by the concrete precision for this device and these networks."""
    convolutional = any(uses_convolutions(net) for net in nets.values())
    return config_replace(cfg, train={"precision": resolve_precision(device, cfg.train.precision, convolutional)})


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


@dataclass
class Training:
    """Everything a run trains with, as set up by `setup` (and measured by benchmarks/bench_train.py)."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    family: Family
    data: ImageDataset
    nets: dict[str, nn.Module]
    """The live networks; checkpoints, averages and snapshots use these."""
    step_nets: dict[str, nn.Module]
    """What the step runs: `nets`, or torch.compile'd wrappers sharing their parameters."""
    opts: dict[str, torch.optim.Optimizer]
    precision: Precision
    sampler: BatchSampler
    averaged: dict[str, EMA]
    """Exponential moving averages of the networks the family averages."""
    state: FamilyState | None
    preview_request: SampleRequest
    resumed: bool = False
    evaluator: object | None = None
    step: int = 0
    data_fingerprint: dict = field(default_factory=dict)
    """Count, shape and hash of the training data, recorded in checkpoints (rundir.data_fingerprint)."""
    world: World = field(default_factory=World)
    """This process's rank among the processes of a torchrun job (rank 0 of 1 otherwise)."""

    def inference_networks(self) -> dict[str, nn.Module]:
        """The networks to draw pictures with: averages swapped in, prepared by the family."""
        averaged = {name: ema.model for name, ema in self.averaged.items()}
        return inference_networks(self.family, self.nets, averaged, self.cfg, self.device)


def setup(cfg: RunConfig, run_dir: str | Path, log=print, world: World | None = None,
          device_name: str | None = None) -> Training:
    """Load the data, build and place the networks, prepare the run directory, optimisers, averages
    and family state. Everything that can be refused is checked before the run directory is touched.
    In a torchrun job (`world`), rank 0 alone prepares the run directory; `device_name` is this rank's."""
    run_dir = Path(run_dir)
    world = world or World()
    check_config(cfg)
    family = model_spec(cfg.model.name).family
    device = resolve_device(device_name or cfg.train.device)

    # Data and model: the data decides the image size, channels and classes.
    data = load_data(cfg)
    cfg = resolve_model(cfg, data)

    # Networks, with the precision and memory format for this device.
    # A resumed run builds from the files it keeps (e.g. its copy of a pretrained text encoder), so it
    # needs nothing outside its folder; a new one from the settings' sources.
    torch.manual_seed(cfg.train.seed)
    existing = (run_dir / CONFIG_FILE).is_file()
    nets = {name: net.to(device) for name, net in build_networks(cfg, run_dir if existing else None).items()}
    if family.fit_networks is not None:  # e.g. a tokenizer built from the training captions
        family.fit_networks(nets, data, cfg)
    # 'auto' precision becomes the concrete one for this device and model, and that is what
    # config.yaml and the checkpoints record. Resuming with 'auto' keeps the run's saved precision
    # (also on another kind of machine), so that rerunning the same command always resumes.
    if cfg.train.precision == "auto" and existing:
        cfg = config_replace(cfg, train={"precision": read_saved_config(run_dir).train.precision})
    cfg = resolve_run_precision(cfg, device, nets)
    t = cfg.train
    channels_last = to_channels_last(nets, t.channels_last)
    on_host = cfg.data.memory == "mmap"  # then the images stay on the host, mapped below
    sampler = BatchSampler(data, t.batch_size, t.seed, device, cfg.data.random_crop, cfg.data.hflip,
                           channels_last=channels_last, parts=world.size * t.accumulate, on_host=on_host)
    evaluator = None
    if cfg.eval.every and world.main:
        from ..metrics.evaluate import TrainingEvaluator

        evaluator = TrainingEvaluator(cfg, device)  # loads the evaluator and reference features once

    # The run directory (locked: one writer at a time), then what trains in it.
    def prepare() -> bool:
        lock_run_dir(run_dir)
        return prepare_run_dir(run_dir, cfg)

    resumed = from_rank0(world, prepare, f"preparing {run_dir}")
    if family.keep_files is not None:  # what the networks are built from, copied into the run once
        from_rank0(world, lambda: family.keep_files(nets, cfg, run_dir), f"writing files into {run_dir}")
    if on_host:  # rank 0 writes the decoded images once, every rank maps them
        cache = run_dir / "data-cache"
        from_rank0(world, lambda: write_image_cache(data, cache), f"writing {cache}")
        data = memory_mapped(data, cache)
        sampler = BatchSampler(data, t.batch_size, t.seed, device, cfg.data.random_crop, cfg.data.hflip,
                               channels_last=channels_last, parts=world.size * t.accumulate, on_host=True)
    opts = make_optimizers(cfg, nets)
    precision = Precision(device, t.precision, list(nets))
    if world.distributed:
        precision.grad_hook = lambda name, opt: average_gradients(world, name, opt)
    averaged = {name: EMA(nets[name], decay) for name, decay in family.averaged(cfg).items() if decay > 0}
    return Training(
        cfg=cfg, run_dir=run_dir, device=device, family=family, data=data, nets=nets,
        step_nets=compile_networks(nets, device, log) if t.compile else nets,
        opts=opts, precision=precision, sampler=sampler, averaged=averaged,
        state=family.make_state(cfg) if family.make_state is not None else None,
        preview_request=family.preview_request(cfg, data, device), resumed=resumed, evaluator=evaluator,
        data_fingerprint=data_fingerprint(data.images, data.labels, data.targets), world=world)


def load_newest_checkpoint(tr: Training) -> int:
    """Restore the newest checkpoint of a resumed run into `tr`; returns its step (0 when there is none)."""
    checkpoints = list_checkpoints(tr.run_dir)
    if not (tr.resumed and checkpoints):
        return 0
    path = checkpoints[-1][1]
    payload = load_checkpoint(path, map_location=tr.device)
    step = verify_checkpoint(payload, path, tr.cfg, RESUMABLE_CHANGES)  # it belongs to this run
    warn_if_data_changed(payload, tr)
    try:
        for name, net in tr.nets.items():
            net.load_state_dict(payload["networks"][name])
        for name, opt in tr.opts.items():
            opt.load_state_dict(payload["optimizers"][name])
        for name, state in averaged_states(payload, tuple(tr.averaged)).items():
            tr.averaged[name].load_state_dict(state)
        if tr.state is not None:
            tr.state.load_state_dict(payload.get("family_state") or {})
        tr.precision.load_state_dict(payload.get("scalers", {}))
        restore_rng_state(payload["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise GenforgeError(f"checkpoint {path} does not fit this run's networks ({reason}); move it out of "
                            f"{path.parent} to resume from the one before") from None
    return step


def warn_if_data_changed(payload: dict, tr: Training) -> None:
    """One warning line when the data differs from the data the checkpoint was trained on."""
    saved = payload.get("data")
    if saved and saved != tr.data_fingerprint:
        print(f"genforge: warning: the data of {tr.run_dir} changed since its checkpoint (then {saved['count']} "
              f"images {saved['shape']}, now {tr.data_fingerprint['count']} {tr.data_fingerprint['shape']}, "
              "hash differs); resuming on the new data", file=sys.stderr, flush=True)


def save_checkpoint(tr: Training) -> Path:
    # Never save non-finite weights: the losses are checked at the report before a checkpoint, but
    # the last update of the window is not in them. One reduction per tensor, one synchronisation.
    bad = nonfinite_tensors({**{n: net.state_dict() for n, net in tr.nets.items()},
                             **{f"ema.{n}": ema.model.state_dict() for n, ema in tr.averaged.items()}})
    if bad:
        raise GenforgeError(_diverged_message(tr.run_dir, tr.step, [f"weights ({bad[0]} and {len(bad) - 1} more)"]))
    payload = {
        "format": "genforge-checkpoint", "version": __version__, "step": tr.step, "family": tr.family.name,
        "config": tr.cfg.to_dict(),
        "networks": {n: net.state_dict() for n, net in tr.nets.items()},
        "optimizers": {n: o.state_dict() for n, o in tr.opts.items()},
        "ema": {n: ema.state_dict() for n, ema in tr.averaged.items()},
        "family_state": tr.state.state_dict() if tr.state is not None else None,
        "scalers": tr.precision.state_dict(),
        "rng": capture_rng_state(),
        "data": tr.data_fingerprint,
        # Informational: a checkpoint holds global state (step, config with the global batch and the
        # seed) and resumes at any world size; the RNG states above are rank 0's.
        "world_size": tr.world.size,
    }
    path = checkpoint_path(tr.run_dir, tr.step)
    path.parent.mkdir(exist_ok=True)
    write_checkpoint(path, payload)
    # Prune older checkpoints only: one numbered after this step is not this run's to delete.
    older = [p for s, p in list_checkpoints(tr.run_dir) if s <= tr.step]
    for old in older[:-tr.cfg.train.keep_checkpoints]:
        old.unlink()
    return path


def snapshot(tr: Training, reporter: Reporter | None = None) -> Path:
    """The sample grid of the family's fixed preview request, as samples/step-N.png and samples/latest.png
    (and to TensorBoard through `reporter` when it writes there)."""
    images, per_row = preview(tr.family, tr.inference_networks(), tr.preview_request, tr.cfg)
    save_grid(images, tr.run_dir / "samples" / "latest.png", nrow=per_row)
    if reporter is not None:
        reporter.image(tr.step, "samples", make_grid(images, per_row))
    return save_grid(images, tr.run_dir / "samples" / f"step-{tr.step:07d}.png", nrow=per_row)


def end_of_run_test(tr: Training, log_record: bool) -> dict:
    """The family's test metrics on the dataset's test split, when it has one; logged once to metrics.jsonl."""
    if tr.family.test_metrics is None:
        return {}
    try:
        test = load_data(tr.cfg, split="test")
    except GenforgeError:
        return {}
    values = tr.family.test_metrics(tr.nets, tr.cfg, test, tr.device)
    for net in tr.nets.values():
        net.train()
    if log_record:
        with open(tr.run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": tr.step, **{f"test_{k}": round(v, 6) for k, v in values.items()}}) + "\n")
    return values


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    samples: Path | None = None
    stopped_by_signal: str | None = None
    test: dict = field(default_factory=dict)
    rank: int = 0
    """This process's rank in a torchrun job: only rank 0 reports."""


class _StopFlag:
    """SIGINT / SIGTERM ask the loop to checkpoint and stop after the current step; a second signal
    stops at once, without the checkpoint. One stop request often arrives twice within a moment:
    `kill -TERM -- -PGID`, Slurm's scancel and a terminal's Ctrl-C signal every process of the
    group, and a supervisor in it (timeout, torchrun, srun) forwards its copy to the trainer too. So
    a repeat of the same signal within DUPLICATE_S seconds counts as the same request."""

    DUPLICATE_S = 2.0

    def __init__(self):
        self.signal_name: str | None = None
        self._first_at = 0.0
        self._previous = {}

    def __enter__(self):
        # SIGHUP (the terminal closed) is a stop request like SIGTERM; so is SIGPIPE (stdout's reader
        # went away, e.g. `| head`): Python ignores it by default, and the Reporter raises it on EPIPE.
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None), getattr(signal, "SIGPIPE", None)):
            if sig is None:  # Windows has neither
                continue
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if signum == getattr(signal, "SIGPIPE", None) and self.signal_name is not None:
            return  # more writes to the closed pipe: already stopping
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            if name == self.signal_name and time.monotonic() - self._first_at < self.DUPLICATE_S:
                return  # the same request delivered twice (see the class's docstring)
            raise KeyboardInterrupt  # a second request: stop now, without the checkpoint
        self.signal_name, self._first_at = name, time.monotonic()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: RunConfig, run_dir: str | Path, quiet: bool = False) -> TrainResult:
    """Train (or resume) the run in `run_dir` to cfg.train.steps. Returns where things were written.

    Under torchrun (WORLD_SIZE > 1) every process calls this; they train as one data-parallel job."""
    if not isinstance(cfg, RunConfig):
        raise GenforgeError(f"train() takes a RunConfig, got {type(cfg).__name__}; "
                            "build one with genforge.resolve_config(preset=...)")
    world, device_name = start_distributed(cfg.train.device)
    try:
        return _train(cfg, Path(run_dir), quiet or not world.main, world, device_name)
    finally:
        stop_distributed(world)


def _train(cfg: RunConfig, run_dir: Path, quiet: bool, world: World, device_name: str) -> TrainResult:
    messages: list[str] = []
    tr = setup(cfg, run_dir, log=messages.append, world=world, device_name=device_name)
    cfg, t = tr.cfg, tr.cfg.train
    tr.step = start_step = load_newest_checkpoint(tr)
    # Every rank starts from rank 0's networks (the same already when built from the same seed or
    # loaded from the same checkpoint; the broadcast makes sure of it).
    broadcast_state(world, [*tr.nets.values(), *(ema.model for ema in tr.averaged.values())])
    has_buffers = any(True for net in tr.nets.values() for _ in net.buffers())
    if world.main:
        truncate_metrics(run_dir / METRICS_FILE, start_step)

    reporter = Reporter(run_dir / METRICS_FILE if world.main else None, t.steps, start_step, quiet,
                        tensorboard_writer(run_dir, start_step) if t.log == "tensorboard" and world.main else None)
    if tr.resumed and start_step:
        reporter.message(f"resuming {run_dir} from step {start_step}")
    if world.distributed:
        reporter.message(f"{world.size} processes, {t.batch_size // (world.size * t.accumulate)} images per process "
                         f"and micro-batch ({t.accumulate} per step), global batch {t.batch_size}")
    for text in ([tr.data.extras["log"]] if tr.data.extras.get("log") else []) + messages:
        reporter.message(text)
    sums: dict[str, torch.Tensor] = {}
    window_steps, window_start = 0, time.perf_counter()
    last_sample: Path | None = None
    result = TrainResult(run_dir, start_step, rank=world.rank)
    for net in tr.nets.values():
        net.train()

    with _StopFlag() as stop:
        while True:
            step = tr.step
            done = step >= t.steps
            if world.distributed:  # a signal on any rank stops every rank at this step
                signum = largest(world, signal.Signals[stop.signal_name].value if stop.signal_name else 0,
                                             "agreeing on a stop request", tr.device)
                if signum and stop.signal_name is None:
                    stop.signal_name = signal.Signals(signum).name
            stopping = done or stop.signal_name is not None

            # Report: the only host synchronisation, every log_every steps.
            # Also before every checkpoint, so that a NaN is never saved over a good state.
            if window_steps and (step % t.log_every == 0 or step % t.checkpoint_every == 0 or stopping):
                sums = mean_over_ranks(world, sums, "averaging the losses over the ranks")
                values = {k: (v / window_steps).item() for k, v in sums.items()}
                bad = [k for k, v in values.items() if not torch.isfinite(torch.tensor(v))]
                if bad:
                    raise GenforgeError(_diverged_message(run_dir, step, bad))
                elapsed = time.perf_counter() - window_start
                values["images_per_s"] = window_steps * t.batch_size / max(elapsed, 1e-9)
                reporter.record(step, t.steps, values)
                reporter.scalars(step, {f"learning_rate/{name}": opt.param_groups[0]["lr"] for name, opt in tr.opts.items()})
                sums, window_steps, window_start = {}, 0, time.perf_counter()

            # Snapshot: a sample grid from the family's fixed preview request. Also at step 0 (the
            # first picture comes at once) and at the step a run stops, by finishing or by a signal,
            # so that the newest grid is always the state the run ends in. Rank 0 alone draws and
            # writes: the others wait for it at their next collective.
            if world.main and ((step % t.sample_every == 0 and step > start_step) or step == 0 or stopping):
                last_sample = snapshot(tr, reporter)

            # Evaluate: metrics of samples from the current networks; the global RNGs are left as they were.
            if tr.evaluator is not None and step > start_step and stop.signal_name is None and (
                    step % cfg.eval.every == 0 or done):
                reporter.record(step, t.steps, tr.evaluator(tr.inference_networks()))

            # Checkpoint (never over a good one: losses were checked just above, weights in save_checkpoint).
            if world.main and step > start_step and (step % t.checkpoint_every == 0 or stopping):
                save_checkpoint(tr)

            # Done?
            if done:
                break
            if stopping:  # a signal seen at the top of this iteration: its checkpoint was just written
                reporter.message(f"{stop.signal_name}: checkpoint saved at step {step}; rerun the same command to resume")
                result.stopped_by_signal = stop.signal_name
                break

            # Step: on this rank's share of the global batch, in train.accumulate micro-batches.
            for micro in range(t.accumulate):
                if world.distributed:  # each rank its own noise, a function of (seed, step, rank) alone
                    torch.manual_seed(rank_seed(t.seed, step, world.rank, micro))
                tr.precision.begin_micro_batch(micro, t.accumulate)
                losses = tr.family.step(tr.step_nets, tr.opts, tr.sampler(step, world.rank * t.accumulate + micro),
                                        cfg, tr.precision, tr.state)
                for k, v in losses.items():
                    v = v.detach() / t.accumulate if t.accumulate > 1 else v
                    sums[k] = sums[k] + v if k in sums else v.clone()
            window_steps += 1
            if world.distributed and has_buffers:  # batch-norm statistics: rank 0's, as DDP does
                broadcast_state(world, list(tr.nets.values()), buffers_only=True)

            # EMA of the averaged networks (with the family's decay schedule when it has one).
            for name, ema in tr.averaged.items():
                decay = (tr.family.average_decay(cfg, name, (tr.step + 1) * t.batch_size)
                         if tr.family.average_decay is not None else None)
                ema.update(tr.nets[name], decay)
            tr.step += 1
            reporter.advance(1)

    reporter.close()
    if world.main:
        unlock_run_dir(run_dir)
    result.step, result.samples = tr.step, last_sample or (run_dir / "samples" / "latest.png")
    if done and world.main:
        result.test = end_of_run_test(tr, log_record=tr.step > start_step)
        if result.test and not quiet:
            print(tr.family.describe_test(result.test), flush=True)
    return result


def _diverged_message(run_dir: Path, step: int, bad: list[str]) -> str:
    kept = list_checkpoints(run_dir)
    where = f"the last good checkpoint (step {kept[-1][0]}) is kept" if kept else "no checkpoint was written"
    return (f"{', '.join(bad)} became NaN or infinite before step {step}; {where}; "
            "lower --lr or change the loss, then rerun")
