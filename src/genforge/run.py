"""A finished (or running) run, loaded for sampling: ``genforge.load_run(dir).sample(n, seed)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import rundir
from .conditioning import Condition
from .config import RunConfig
from .errors import GenforgeError
from .families.contract import Family, SampleRequest
from .families.registry import build_networks, inference_networks, model_spec
from .families.registry import sample as family_sample
from .imageio import atomic_path
from .nn.latents import interpolation_latents
from .runtime import autocast, resolve_device, to_channels_last


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

    @property
    def family(self) -> str:
        """The family's name ('gan', 'vae', 'pix2pix', ...)."""
        return self.model_family.name

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, labels: torch.Tensor | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n images as floats in [0, 1], shape (n, C, H, W), on the CPU; the same for the same seed.

        The first k images of sample(n, seed) are those of sample(k, seed) within float rounding: the
        latents are identical, but matrix products may round differently for another batch size.

        truncation: redraw latent values outside [-truncation, truncation] (BigGAN's truncation
        trick, see genforge.nn.latents.truncated_latent_batch); None or 0 samples the full N(0, I).
        """
        if n <= 0:
            raise GenforgeError(f"number of samples must be positive, got {n}")
        if not self.model_family.from_noise:
            raise GenforgeError(f"{self.run_dir} is an image-to-image ({self.family}) run; it translates images: "
                                "use genforge translate --run RUN --input IMAGES --out DIR")
        if truncation:
            self._check_truncation(truncation)
        request = SampleRequest(n, seed, Condition(labels=self.check_labels(n, labels)), truncation=truncation or None)
        with autocast(self.device, self.precision):
            return family_sample(self.model_family, self.networks, request, self.config).float().cpu()

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
        if truncation:
            self._check_truncation(truncation)
        z = interpolation_latents(seeds, steps, self.config.model.latent_dim, truncation or None, self.device)
        return self.generate(z, self.check_labels(len(z), labels))

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
        tensors = {f"{name}.{key}": value.detach().cpu().contiguous()
                   for name, net in self.networks.items() if name in self.model_family.inference
                   for key, value in net.state_dict().items()}
        metadata = {"format": "genforge-export", "family": self.family, "step": str(self.step),
                    "config": json.dumps(self.config.to_dict())}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

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
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise GenforgeError(f"{run_dir} is not a genforge run directory (no {rundir.CONFIG_FILE}); "
                            "pass the --out folder of genforge train")
    found = rundir.list_checkpoints(run_dir)
    if checkpoint is None and not found:
        raise GenforgeError(f"{run_dir} has no checkpoint yet; train it with genforge train first")
    payload = rundir.load_checkpoint(Path(checkpoint) if checkpoint else found[-1][1])
    try:
        cfg = RunConfig.from_dict(payload["config"], source="checkpoint config")
        family = model_spec(cfg.model.name).family
        torch_device = resolve_device(device)
        networks = build_networks(cfg)
        for name, net in networks.items():
            net.load_state_dict(payload["networks"][name])
        # Sample with the averaged weights where the run kept them.
        for name, state in rundir.averaged_states(payload, tuple(family.averaged(cfg))).items():
            networks[name].load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise GenforgeError(f"checkpoint of {run_dir} does not match its model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:100]}); it was written by another version or edited") from None
    for net in networks.values():
        net.to(torch_device).eval().requires_grad_(False)
    networks = inference_networks(family, networks, {}, cfg, torch_device)
    if precision == "bf16":
        to_channels_last(networks)
    return Run(run_dir, cfg, family, int(payload["step"]), networks, torch_device, precision)
