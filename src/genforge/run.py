"""A finished (or running) run, loaded for sampling: ``genforge.load_run(dir).sample(n, seed)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import rundir
from .conditioning import Condition
from .config import MAX_SEED, RunConfig
from .data.options import MEMORY_FRACTION, available_memory
from .errors import GenforgeError
from .families.contract import Family, SampleRequest
from .families.registry import build_networks, inference_networks, model_spec
from .families.registry import sample as family_sample
from .imageio import atomic_path
from .nn.latents import interpolation_latents, latent_batch
from .runtime import autocast, resolve_device, to_channels_last

MAX_IMAGES_PER_CALL = 50_000
"""The most images one sample or interpolate call draws (they are drawn in one batch)."""


@dataclass
class Run:
    """The networks of a run at its newest checkpoint, in eval mode, on `device`."""

    run_dir: Path
    config: RunConfig
    model_family: Family
    step: int
    networks: dict[str, nn.Module]
    """The networks to sample with: averaged (EMA) weights where the run kept them, in eval mode."""
    device: torch.device
    precision: str = "fp32"
    """Sampling precision: 'fp32' (the default: the same images on every machine) or 'bf16' (autocast
    with channels-last networks: 1.86x the fp32 speed on a bf16 CPU in docs/benchmarks.md; the images
    differ from fp32's by bf16 rounding)."""
    last_report: dict = field(default_factory=dict)
    """What the family reported about the newest sample() (e.g. a diffusion model's sampler and 'nfe')."""

    @property
    def family(self) -> str:
        """The family's name ('gan', 'vae', 'pix2pix', ...)."""
        return self.model_family.name

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None,
               truncation: float | None = None, **options) -> torch.Tensor:
        """n images as floats in [0, 1], shape (n, C, H, W), on the CPU; the same for the same seed.

        The first k images of sample(n, seed) are those of sample(k, seed) within float rounding: the
        latents are identical, but matrix products may round differently for another batch size.

        truncation: redraw latent values outside [-truncation, truncation] (BigGAN's truncation
        trick, see genforge.nn.latents.truncated_latent_batch); None or 0 samples the full N(0, I).
        options: the family's own sampling options (Family.sample_options), e.g. for diffusion
        models sampler='heun', steps=18, guidance=2.0, init=uint8 image, strength=0.5, mask=uint8 mask;
        text-to-image models take prompt='a large red 7' (or a list: one prompt, or one per image);
        what the family reports about the sampling (e.g. 'nfe') is kept in self.last_report.
        """
        if n <= 0:
            raise GenforgeError(f"number of samples must be positive, got {n}")
        self._check_count(n)
        self._check_seeds([seed])
        if not self.model_family.from_noise:
            raise GenforgeError(f"{self.run_dir} is an image-to-image ({self.family}) run; it translates images: "
                                "use genforge translate --run RUN --input IMAGES --out DIR")
        if truncation:
            self._check_truncation(truncation)
        options = {k: v for k, v in options.items() if v is not None}
        if "prompt" in options and "text" not in model_spec(self.config.model.name).conditions:
            raise GenforgeError(f"model {self.config.model.name} is not conditioned on text, so it takes no prompt; "
                                "drop --prompt, or train a text-to-image model (e.g. --preset tdiffusion-captions)")
        unknown = sorted(set(options) - set(self.model_family.sample_options))
        if unknown:
            accepted = ", ".join(self.model_family.sample_options) or "none"
            raise GenforgeError(f"a {self.family} model takes no sampling option {', '.join(unknown)} (its options: "
                                f"{accepted}); drop it")
        request = SampleRequest(n, seed, Condition(labels=self.check_labels(n, labels)), truncation=truncation or None,
                                options=options)
        with autocast(self.device, self.precision):
            images = family_sample(self.model_family, self.networks, request, self.config).float().cpu()
        self.last_report = dict(request.report)
        return images

    @torch.no_grad()
    def interpolate(self, seeds: list[int], steps: int = 8, labels: torch.Tensor | None = None,
                    truncation: float | None = None) -> torch.Tensor:
        """Images along the spherical path between the latents of `seeds` (in order), `steps`
        per leg with both ends included: ((len(seeds) - 1) * steps, C, H, W) in [0, 1], on the CPU.
        Conditional models take one class (or one per image) in `labels`."""
        if len(seeds) < 2:
            raise GenforgeError(f"interpolation needs at least two seeds, got {len(seeds)}; e.g. --seeds 1,2,3")
        if steps < 2:
            raise GenforgeError(f"interpolation needs at least 2 steps per leg, got {steps}; e.g. --steps 8")
        self._check_count((len(seeds) - 1) * steps)
        self._check_seeds(seeds)
        if truncation:
            self._check_truncation(truncation)
        if self.model_family.interpolate is not None:  # the family's own path (e.g. linear in W)
            z = torch.cat([latent_batch(1, self.config.model.latent_dim, s, self.device) for s in seeds])
            n = (len(seeds) - 1) * steps
            with autocast(self.device, self.precision):
                images = self.model_family.interpolate(self.networks, z, steps, self.check_labels(n, labels),
                                                       truncation or None, self.config)
            return images.float().cpu()
        z = interpolation_latents(seeds, steps, self.config.model.latent_dim, truncation or None, self.device)
        return self.generate(z, self.check_labels(len(z), labels))

    @torch.no_grad()
    def draw(self, request: SampleRequest) -> torch.Tensor:
        """Images in [0, 1] on the CPU for any request the family takes (e.g. cond.image to translate)."""
        return family_sample(self.model_family, self.networks, request, self.config).cpu()

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] on the CPU from latents z (and checked labels for conditional models)."""
        request = SampleRequest(len(z), cond=Condition(labels=labels), latents=z)
        with autocast(self.device, self.precision):
            return family_sample(self.model_family, self.networks, request, self.config).float().cpu()

    def encode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """VAEs: posterior means (N, latent_dim) of uint8 or [0, 1] images (see genforge.families.vae.tools)."""
        from .families.vae import tools

        return tools.encode(self, images, labels)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """VAEs: images in [0, 1] (N, C, H, W) on the CPU from latent codes (N, latent_dim)."""
        from .families.vae import tools

        return tools.decode(self, z, labels)

    def export(self, path: str | Path) -> Path:
        """Write the networks used for inference (the family's `inference` networks: the EMA generator
        for GANs, the VAE, the pix2pix generator; no discriminator) as safetensors.

        Keys are `network.parameter` (e.g. `generator.net.0.weight`); the metadata holds the run's
        resolved configuration as JSON, the family and the step, so the file is self-describing and
        loads anywhere without pickle (safetensors.torch.load_file).
        """
        import json

        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise GenforgeError(f"export file must end in .safetensors, got {path.name}")
        tensors = self.inference_tensors()
        metadata = {"format": "genforge-export", "family": self.family, "step": str(self.step),
                    "config": json.dumps(self.config.to_dict())}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    def inference_tensors(self) -> dict[str, torch.Tensor]:
        """The inference networks' state dicts as one flat dict `network.parameter` on the CPU, each tensor
        with storage of its own (safetensors refuses tied weights, e.g. a T5 encoder's shared embedding)."""
        tensors, storages = {}, set()
        for name, net in self.networks.items():
            if name not in self.model_family.inference:
                continue
            for key, value in net.state_dict().items():
                value = value.detach().cpu().contiguous()
                storage = value.untyped_storage().data_ptr()
                tensors[f"{name}.{key}"] = value.clone() if storage in storages else value
                storages.add(storage)
        return tensors

    def _check_count(self, n: int) -> None:
        """Refuse a number of images this command cannot hold (they are drawn in one batch), before
        drawing any."""
        if n > MAX_IMAGES_PER_CALL:
            raise GenforgeError(f"{n:,} images in one call is more than the {MAX_IMAGES_PER_CALL:,} allowed; "
                                f"draw them in several calls with different seeds")
        m = self.config.model
        need = n * m.channels * m.image_size * m.image_size * 4 * 4  # float images, and room for the work
        have = available_memory()
        if have and need > MEMORY_FRACTION * have:
            raise GenforgeError(f"{n:,} images of {m.channels}x{m.image_size}x{m.image_size} need about "
                                f"{need / 2**30:.1f} GiB, more than {MEMORY_FRACTION:.0%} of the {have / 2**30:.1f} GiB "
                                "available; draw fewer at a time")

    @staticmethod
    def _check_seeds(seeds: list[int]) -> None:
        bad = [s for s in seeds if not 0 <= s < MAX_SEED]
        if bad:
            raise GenforgeError(f"seed {bad[0]} is out of range; seeds are integers in [0, 2**32)")

    @staticmethod
    def _check_truncation(truncation: float) -> float:
        if not truncation > 0:
            raise GenforgeError(f"truncation must be positive, got {truncation}; e.g. --truncation 0.7")
        return float(truncation)

    def check_labels(self, n: int, labels) -> torch.Tensor | None:
        """Labels as a tensor of n class indices on the device, or None for unconditional models."""
        classes = self.config.model.num_classes
        if not classes:
            if labels is not None:
                raise GenforgeError(f"model {self.config.model.name} is unconditional; sample it without a class")
            return None
        if labels is None:
            raise GenforgeError(f"model {self.config.model.name} is class-conditional; give a class with "
                                f"--class K, K in 0..{classes - 1} (genforge sample also takes --class all)")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.numel() == 1:
            labels = labels.expand(n)
        if labels.numel() != n:
            raise GenforgeError(f"{labels.numel()} labels for {n} samples; give one label or one per sample")
        if labels.min() < 0 or labels.max() >= classes:
            raise GenforgeError(f"class {int(labels.max() if labels.max() >= classes else labels.min())} is out of "
                                f"range; this model has classes 0..{classes - 1}")
        return labels.to(self.device)


def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str | Path | None = None,
             precision: str = "fp32") -> Run:
    """Load a run directory's newest checkpoint (or `checkpoint`) for sampling.

    precision: 'fp32' (default) or 'bf16' for sampling (see Run.precision).

    GANs use the averaged (EMA) generator when the run kept one, with its batch-norm statistics
    re-estimated for those weights (see genforge.families.gan.sample.recalibrate_batchnorm).
    """
    run_dir = Path(run_dir)
    if precision not in ("fp32", "bf16"):
        raise GenforgeError(f"sampling precision must be fp32 or bf16, got {precision!r}; e.g. --precision bf16")
    if (run_dir / EXPORT_FILE).is_file():
        return load_exported(run_dir, device)
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise GenforgeError(f"{run_dir} is not a genforge run directory (no {rundir.CONFIG_FILE}) nor an export "
                            f"(no {EXPORT_FILE}); pass the --out folder of genforge train or genforge export")
    found = rundir.list_checkpoints(run_dir)
    if checkpoint is None and not found:
        raise GenforgeError(f"{run_dir} has no checkpoint yet; train it with genforge train first")
    payload = rundir.load_checkpoint(Path(checkpoint) if checkpoint else found[-1][1])
    try:
        cfg = RunConfig.from_dict(payload["config"], source="checkpoint config")
        family = model_spec(cfg.model.name).family
        torch_device = resolve_device(device)
        networks = build_networks(cfg, run_dir)
        for name, net in networks.items():
            net.load_state_dict(payload["networks"][name])
        # Sample with the averaged weights where the run kept them.
        for name, state in rundir.averaged_states(payload, tuple(family.averaged(cfg))).items():
            networks[name].load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise GenforgeError(f"checkpoint of {run_dir} does not match its model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:100]}); it was written by another version or edited") from None
    bad = rundir.nonfinite_tensors({name: net.state_dict() for name, net in networks.items()})
    if bad:
        raise GenforgeError(f"checkpoint of {run_dir} at step {payload['step']} holds NaN or infinite weights "
                            f"({bad[0]} and {len(bad) - 1} more); it diverged: train again with a lower --lr")
    for net in networks.values():
        net.to(torch_device).eval().requires_grad_(False)
    networks = inference_networks(family, networks, {}, cfg, torch_device)
    if precision == "bf16":
        to_channels_last(networks)
    return Run(run_dir, cfg, family, int(payload["step"]), networks, torch_device, precision)


EXPORT_FILE = "export.json"
"""What marks a folder written by genforge export: format, family, step, files, graphs."""
WEIGHTS_FILE = "model.safetensors"
"""The inference networks of a safetensors export, keys `network.parameter`."""


def read_export(folder: str | Path) -> dict:
    """The export.json of a genforge export folder."""
    import json

    path = Path(folder) / EXPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GenforgeError(f"{folder} is not a genforge export (no {EXPORT_FILE}); "
                            "write one with genforge export --run RUN --format safetensors --out DIR") from None
    except (OSError, ValueError) as exc:
        raise GenforgeError(f"cannot read {path} ({exc}); export the run again") from None


def load_exported(folder: str | Path, device: str = "cpu") -> Run:
    """A model written by `genforge export --format safetensors`, loaded for sampling without its
    run directory or checkpoints: the same `Run` methods (sample, interpolate, encode, ...).

    The weights are the exported inference networks as they were (averaged, batch-norm statistics
    already re-estimated), so nothing is recomputed here.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    info = read_export(folder)
    if info.get("format") != "safetensors":
        raise GenforgeError(f"{folder} holds a {info.get('format')} export; genforge loads safetensors exports "
                            "(run ONNX files with onnxruntime, .pt2 files with torch.export.load)")
    try:
        cfg = RunConfig.from_dict(info["config"], source=f"{folder / EXPORT_FILE}")
        family = model_spec(cfg.model.name).family
        tensors = load_file(folder / WEIGHTS_FILE)
        networks = {name: net for name, net in build_networks(cfg, folder).items() if name in family.inference}
        for name, net in networks.items():
            prefix = f"{name}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    except (KeyError, RuntimeError, OSError, SafetensorError) as exc:
        raise GenforgeError(f"export {folder} is incomplete or does not match its model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:100]}); export the run again") from None
    torch_device = resolve_device(device)
    for net in networks.values():
        net.to(torch_device).eval().requires_grad_(False)
    return Run(folder, cfg, family, int(info.get("step", 0)), networks, torch_device)
