"""StyleGAN2 tools on a loaded run: style-mixing, truncation and W-interpolation grids, and the
projection of a real image into W (paper section 5, "projection of images to latent space").

`run` is a genforge.run.Run of a stylegan2 model (taken as an argument; this module does not import
the layer above it)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import GenforgeError
from ...imageio import atomic_path, save_grid
from ...nn.latents import latent_batch
from .family import fit_images, fitted_size
from .networks import ModulatedConv
from .sample import interpolate, refuse_text, style_mixing_grid, truncation_grid


def check_run(run) -> None:
    if run.family != "stylegan2":
        raise GenforgeError(f"{run.run_dir} is a {run.family} run ({run.config.model.name}); these tools need a "
                            "StyleGAN2 run (genforge train --model stylegan2)")
    refuse_text(run.networks["generator"], "genforge stylegan2-tools and project")


def _label(run, label: int | None) -> int | None:
    classes = run.config.model.num_classes
    if classes and label is None:
        return 0
    if label is not None:
        run.check_labels(1, [label])
    return label


def write_tools(run, out: str | Path, rows: list[int], cols: list[int], crossover: int | None = None,
                psis: tuple[float, ...] = (1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.0), cutoff: int | None = None,
                label: int | None = None, steps: int = 8) -> list[Path]:
    """style-mixing.png (rows: coarse styles, columns: fine styles), truncation.png (one row per row
    seed, one column per psi) and interpolation.png (a straight line in W through the row seeds)."""
    check_run(run)
    generator = run.networks["generator"]
    crossover = generator.num_ws // 2 if crossover is None else crossover
    label = _label(run, label)
    mixing, per_row = style_mixing_grid(generator, rows, cols, crossover, 1.0, label)
    truncation, per_row_t = truncation_grid(generator, rows, list(psis), cutoff, label)
    if len(rows) < 2:
        raise GenforgeError("--rows needs at least two seeds (the interpolation walks through them); e.g. --rows 1,2,3")
    z = torch.cat([latent_batch(1, generator.z_dim, s, run.device) for s in rows])
    labels = torch.full(((len(rows) - 1) * steps,), label, device=run.device) if label is not None else None
    walk = interpolate(run.networks, z, steps, labels, None, run.config)
    out = Path(out)
    return [save_grid(mixing.cpu(), out / "style-mixing.png", nrow=per_row),
            save_grid(truncation.cpu(), out / "truncation.png", nrow=per_row_t),
            save_grid(walk.cpu(), out / "interpolation.png", nrow=steps)]


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """Penalise spatial autocorrelation of the optimised noise maps at every scale down to 8x8
    (paper section 5: keeps the noise from carrying the image's content)."""
    loss = noises[0].new_zeros(())
    for noise in noises:
        n = noise[None, None]
        while True:
            loss = loss + (n * torch.roll(n, 1, dims=3)).mean() ** 2 + (n * torch.roll(n, 1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


def project(run, target: torch.Tensor, steps: int = 300, seed: int = 0, label: int | None = None,
            features=None, feature_weight: float = 1.0, noise_weight: float = 1e5, lr: float = 0.1,
            snapshots: int = 8, w_samples: int = 2000) -> dict:
    """Optimise w (one w for every layer) and the noise maps so that the generator reproduces
    `target`, a uint8 (C, H, W) image of the model's shape. The loss is the pixel MSE plus, with
    `features` (images in [0, 1] -> features, e.g. the project's evaluator), feature_weight x the
    squared feature distance (in place of the paper's LPIPS, which would need downloaded weights),
    plus the noise regularisation. As in the paper: w starts at the mean w, gets Gaussian noise of
    0.05 x the spread of W ramped down over the first 75% of the steps, and the learning rate ramps
    up over 5% and down (cosine) over the last 25%. Deterministic for a seed.

    Returns {'reconstruction': (1, C, H, W) in [0, 1], 'w': (w_dim,), 'frames': (K, C, H, W), 'loss': [...]}."""
    check_run(run)
    m = run.config.model
    if target.dtype != torch.uint8 or target.ndim != 3:
        raise ValueError("target must be a uint8 (C, H, W) image")
    if target.shape[0] != m.channels:
        kind = {1: "grey", 3: "colour"}
        raise GenforgeError(f"the image is {kind.get(target.shape[0], target.shape[0])} ({target.shape[0]} channel(s)) "
                            f"but the model draws {kind.get(m.channels)} images; convert it to "
                            f"{'greyscale' if m.channels == 1 else 'RGB'} first")
    size = target.shape[-1]
    fit = run.config.stylegan2.fit
    if target.shape[1] == size and size != m.image_size and fit != "none" and fitted_size(size) == m.image_size:
        target = fit_images(target[None], m.image_size, fit)[0]  # as the training data was (e.g. MNIST's 28 -> 32)
    if tuple(target.shape[1:]) != (m.image_size, m.image_size):
        raise GenforgeError(f"the image is {target.shape[2]}x{target.shape[1]} but the model draws "
                            f"{m.image_size}x{m.image_size}; resize or crop it to {m.image_size}x{m.image_size} first")
    if steps < 1:
        raise GenforgeError(f"projection needs at least 1 step, got {steps}; e.g. --steps 300")
    label = _label(run, label)
    device = run.device
    generator = copy.deepcopy(run.networks["generator"]).eval().requires_grad_(False)
    goal = target.to(device).float().div(255)[None]
    labels = torch.full((w_samples,), label, device=device) if label is not None else None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.no_grad():
            ws = generator.mapping(latent_batch(w_samples, generator.z_dim, seed + 1, device), labels)
        w_avg = ws.mean(0, keepdim=True)
        w_std = float((ws - w_avg).square().sum(1).mean().sqrt())
        w = w_avg.clone().requires_grad_(True)
        noises = []
        for module in generator.modules():
            if isinstance(module, ModulatedConv):
                module.noise_const = torch.randn_like(module.noise_const).requires_grad_(True)
                noises.append(module.noise_const)
        opt = torch.optim.Adam([w, *noises], lr=lr, betas=(0.9, 0.999))
        goal_features = features(goal).detach() if features is not None else None
        keep = set(np.linspace(0, steps - 1, max(1, snapshots)).round().astype(int).tolist())
        frames, losses = [], []
        for step in range(steps):
            t = step / steps
            noise_scale = w_std * 0.05 * max(0.0, 1 - t / 0.75) ** 2
            ramp = min(1.0, (1 - t) / 0.25)
            ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
            for group in opt.param_groups:
                group["lr"] = lr * ramp * min(1.0, t / 0.05)
            w_in = w + torch.randn_like(w) * noise_scale
            image = generator.synthesis(generator.ws_from_w(w_in), "const", generator.grouped).add(1).mul(0.5)
            loss = F.mse_loss(image, goal)
            if goal_features is not None:
                loss = loss + feature_weight * (features(image.clamp(0, 1)) - goal_features).square().sum()
            loss = loss + noise_weight * noise_regularisation(noises)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # the paper renormalises the noise maps after every step
                for n in noises:
                    n.sub_(n.mean()).div_(n.std() + 1e-8)
            losses.append(float(loss.detach()))
            if step in keep:
                frames.append(image.detach().clamp(0, 1))
        with torch.no_grad():
            final = generator.synthesis(generator.ws_from_w(w), "const", generator.grouped).add(1).mul(0.5).clamp(0, 1)
    return {"reconstruction": final.cpu(), "w": w.detach()[0].cpu(), "frames": torch.cat(frames).cpu(),
            "loss": losses, "target": goal.cpu()}


def write_projection(result: dict, out: str | Path) -> list[Path]:
    """reconstruction.png, target.png, w.npy, progress.png (the target, then the reconstruction as the
    optimisation went), loss.json."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_grid(result["reconstruction"], out / "reconstruction.png", nrow=1),
             save_grid(result["target"], out / "target.png", nrow=1),
             save_grid(torch.cat([result["target"], result["frames"]]), out / "progress.png",
                       nrow=len(result["frames"]) + 1)]
    with atomic_path(out / "w.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, result["w"].numpy())
    with atomic_path(out / "loss.json") as tmp:
        Path(tmp).write_text(json.dumps({"loss": [round(v, 6) for v in result["loss"]]}))
    return paths + [out / "w.npy", out / "loss.json"]
