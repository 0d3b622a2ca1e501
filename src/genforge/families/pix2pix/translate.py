"""Pix2pix inference pieces: translate a batch, the input | output | target grid, and the
per-image scores (L1, PSNR, SSIM) of translations against targets."""

from __future__ import annotations

import torch
from torch import nn

PIXELS_PER_CHUNK = 2 ** 16
"""Images are translated and scored this many pixels at a time (4 images at 128x128, 64 at 32x32):
the U-Net's activations and SSIM's filtered copies grow with the batch, and scoring a whole test
split at once took 480 MB for 40 pairs at 128x128."""


def chunk_size(images: torch.Tensor) -> int:
    """Images per chunk for (N, C, H, W) images: PIXELS_PER_CHUNK pixels, at least 1, at most 64."""
    return max(1, min(64, PIXELS_PER_CHUNK // (images.shape[-2] * images.shape[-1])))


@torch.no_grad()
def translate_batch(generator: nn.Module, images: torch.Tensor, batch_size: int | None = None,
                    dropout_seed: int | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) inputs -> float outputs in [0, 1] on the inputs' device, in eval mode,
    `batch_size` images at a time (default: chunk_size(images)).

    With `dropout_seed`, dropout stays active (seeded, without touching the global RNG streams); the
    masks then depend on the batch size too.
    """
    batch_size = batch_size or chunk_size(images)
    generator.eval()
    device = next(generator.parameters()).device
    outputs = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if dropout_seed is not None:
            torch.manual_seed(dropout_seed)
            for module in generator.modules():
                if isinstance(module, nn.Dropout):
                    module.train()
        try:
            for chunk in images.split(batch_size):
                x = chunk.to(device).float().div(127.5).sub(1.0)
                outputs.append(generator(x).float().add(1).mul(0.5).clamp(0, 1).to(images.device))
        finally:
            generator.eval()
    return torch.cat(outputs)


def comparison_grid(inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """(N, ...) inputs, outputs, targets -> (3N, ...) floats in [0, 1] interleaved as rows of 3 (2 without targets)."""
    columns = [inputs, outputs] + ([targets] if targets is not None else [])
    columns = [c.float().div(255) if c.dtype == torch.uint8 else c.float() for c in columns]
    columns = [c.to(outputs.device) for c in columns]
    return torch.stack(columns, dim=1).flatten(0, 1)


MAX_PSNR = 100.0
"""Per-image PSNR cap in dB (reached only by exact matches, e.g. a gray photo in a colourisation set)."""


def _ssim_kernel(size: int) -> int:
    return max(3, min(11, size if size % 2 else size - 1))  # 11 (Wang et al. 2004), smaller for tiny images


def score(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image L1 (mean absolute error, [0, 1] scale), PSNR (dB, data range 1, capped at MAX_PSNR) and SSIM (Gaussian
    11x11 window, sigma 1.5, as Wang et al. 2004) of outputs against targets (each float [0, 1] or uint8),
    chunk_size(outputs) images at a time."""
    chunk = chunk_size(outputs)
    uint8 = targets.dtype == torch.uint8 or bool(targets.max() > 1.0)
    parts = [_score_chunk(outputs[i:i + chunk], targets[i:i + chunk], uint8) for i in range(0, max(len(outputs), 1), chunk)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _score_chunk(outputs: torch.Tensor, targets: torch.Tensor, uint8: bool) -> dict[str, torch.Tensor]:
    # Imported here, not with the module: torchmetrics imports transformers whenever it is installed
    # (genforge[hf]), 1.5-2 s that every command loading the registry would otherwise pay.
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    outputs = outputs.float() / 255 if outputs.dtype == torch.uint8 else outputs.float()
    targets = targets.float().to(outputs.device)
    if uint8:
        targets = targets / 255
    l1 = (outputs - targets).abs().flatten(1).mean(1)
    psnr = peak_signal_noise_ratio(outputs, targets, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = psnr.clamp(max=MAX_PSNR)  # an exact match is infinite; one such pair would make the mean infinite
    ssim = structural_similarity_index_measure(outputs, targets, data_range=1.0, reduction="none",
                                               kernel_size=_ssim_kernel(min(outputs.shape[-2:])))
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


@torch.no_grad()
def evaluate_pairs(generator: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   device: torch.device | str = "cpu", dropout_seed: int | None = None) -> dict[str, float]:
    """Mean L1, PSNR and SSIM of the generator's translations of uint8 `inputs` against uint8 `targets`,
    and of the identity mapping (output = input) as a baseline."""
    outputs = translate_batch(generator, inputs.to(device), dropout_seed=dropout_seed)
    model = score(outputs, targets.to(device))
    identity = score(inputs.to(device), targets.to(device))  # uint8 inputs: converted a chunk at a time
    return {**{k: float(v.mean()) for k, v in model.items()},
            **{f"identity_{k}": float(v.mean()) for k, v in identity.items()}}
