"""Turning a trained StyleGAN2 generator into pictures: seeded sampling with truncation in W
(to all layers or the first N), interpolation in W, style-mixing grids; text-to-image models
(tstylegan2) draw from a prompt and truncate toward the prompt's own mean w."""

from __future__ import annotations

import torch
from torch import nn

from ...errors import GenforgeError
from ...nn.latents import latent_batch
from ...text.encoder import encode_prompts, pool, prompts_for
from ..contract import SampleRequest

OPTIONS = ("truncation_cutoff", "noise", "prompt")
"""Sampling options: truncation_cutoff N (truncate only the first N layers' w; the coarse styles),
noise 'const' (default: the fixed noise images, deterministic), 'random' (seeded) or 'none';
prompt (text-to-image models): one text, or one per image."""
NOISE_MODES = ("const", "random", "none")
CENTRE_SAMPLES, CENTRE_SEED = 256, 0
"""A prompt's truncation centre is the mean w of CENTRE_SAMPLES latents of seed CENTRE_SEED under it."""


def check_truncation(psi: float | None, cutoff: int | None, num_ws: int) -> tuple[float, int | None]:
    """psi in (0, 1] (1: none; 0 is the average w itself, allowed from Python through Generator.ws),
    cutoff in 1..num_ws."""
    psi = 1.0 if psi is None else float(psi)
    if not 0 <= psi <= 1:
        raise GenforgeError(f"truncation psi must be in [0, 1] for StyleGAN2 (1: none, 0: the average w), got {psi}; "
                            "e.g. --truncation 0.7")
    if cutoff is not None:
        if isinstance(cutoff, bool) or int(cutoff) != cutoff or not 1 <= int(cutoff) <= num_ws:
            raise GenforgeError(f"truncation cutoff must be a layer count in 1..{num_ws} (this generator has {num_ws} "
                                f"w layers), got {cutoff}; e.g. --truncation-cutoff {min(4, num_ws)}")
        cutoff = int(cutoff)
    return psi, cutoff


def check_noise(mode: str | None) -> str:
    mode = mode or "const"
    if mode not in NOISE_MODES:
        raise GenforgeError(f"noise must be one of {', '.join(NOISE_MODES)}, got {mode!r}")
    return mode


@torch.no_grad()
def synthesize(generator: nn.Module, ws: torch.Tensor, noise: str, seed: int, batch_size: int = 256) -> torch.Tensor:
    """Images in [0, 1] from w per layer; 'random' noise is drawn from `seed` (the global RNG is left alone)."""
    generator.eval()
    with torch.random.fork_rng(devices=[ws.device] if ws.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = [generator.synthesis(chunk, noise, generator.grouped).float() for chunk in ws.split(batch_size)]
    return torch.cat(out).add_(1).mul_(0.5).clamp_(0, 1)


def refuse_text(generator: nn.Module, what: str) -> None:
    """The tools below have no prompt input yet: one line for a text-to-image generator."""
    if generator.mapping.text_dim:
        raise GenforgeError(f"{what} cannot take a prompt yet, so it does not work on text-to-image StyleGAN2 models; "
                            "use genforge sample --prompt TEXT (--truncation moves toward the prompt's mean w)")


@torch.no_grad()
def prompt_condition(nets, prompt, n: int, cfg) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Text-to-image models: the pooled embeddings (N, text_dim) of the prompts (one, or one per image)
    and, per image, the index of its prompt among the distinct ones (N,); (None, None) without text.
    Each distinct prompt is encoded once, so images of one prompt share its embedding exactly."""
    prompts = prompts_for(prompt, n) if prompt is not None else None
    distinct = list(dict.fromkeys(prompts)) if prompts is not None else None
    text, mask = encode_prompts(nets.get("text_encoder"), distinct, len(distinct) if distinct else n, cfg.model.name)
    if text is None:
        return None, None
    where = {p: i for i, p in enumerate(distinct)}
    index = torch.tensor([where[p] for p in prompts], device=text.device)
    return pool(text, mask).float(), index


@torch.no_grad()
def condition_centres(generator: nn.Module, c: torch.Tensor) -> torch.Tensor:
    """The mean w (len(c), w_dim) of each condition in c over CENTRE_SAMPLES fixed latents: the centre
    of conditional truncation. The tracked w_avg averages over every condition; truncating toward it
    pulls a prompt's images toward those of other prompts, so conditional models truncate toward
    their condition's own mean w instead (as ADA's and StyleGAN-XL's code do for classes, Sauer et
    al. 2022 section 4)."""
    z = latent_batch(CENTRE_SAMPLES, generator.z_dim, CENTRE_SEED, c.device)
    centres = []
    for chunk in c.split(64):  # 64 conditions x 256 latents per mapping call bounds the memory
        w = generator.mapping(z.repeat(len(chunk), 1), chunk.repeat_interleave(CENTRE_SAMPLES, dim=0))
        centres.append(w.view(len(chunk), CENTRE_SAMPLES, -1).float().mean(dim=1))
    return torch.cat(centres)


@torch.no_grad()
def sample(nets, request: SampleRequest, cfg) -> torch.Tensor:
    generator = nets["generator"]
    device = next(generator.parameters()).device
    psi, cutoff = check_truncation(request.truncation, request.options.get("truncation_cutoff"), generator.num_ws)
    noise = check_noise(request.options.get("noise"))
    z = request.latents.to(device) if request.latents is not None else latent_batch(request.n, generator.z_dim,
                                                                                     request.seed, device)
    text, index = prompt_condition(nets, request.options.get("prompt"), len(z), cfg)
    if text is None:
        ws = generator.ws(z, request.cond.labels, psi, cutoff)
    else:  # truncation toward each prompt's own mean w
        centres = condition_centres(generator, text)[index] if psi < 1 else None
        ws = generator.ws(z, text[index], psi, cutoff, centre=centres)
    return synthesize(generator, ws, noise, request.seed)


@torch.no_grad()
def interpolate(nets, z: torch.Tensor, steps: int, labels: torch.Tensor | None, truncation: float | None,
                cfg) -> torch.Tensor:
    """Images along straight lines in W between the seeds' w (the space the paper's perceptual path
    length is measured in), `steps` per leg with both ends included."""
    generator = nets["generator"]
    refuse_text(generator, "interpolation")
    psi, _ = check_truncation(truncation, None, generator.num_ws)
    ends_labels = labels[::steps] if labels is not None else None  # each leg's first image's class
    if ends_labels is not None:
        ends_labels = torch.cat([ends_labels, labels[-1:]])
    w = generator.mapping(z, ends_labels)
    t = torch.linspace(0, 1, steps, device=w.device)[:, None]
    path = torch.cat([a.lerp(b, t) for a, b in zip(w, w[1:])])
    ws = generator.ws_from_w(path, psi)
    return synthesize(generator, ws, "const", 0)


@torch.no_grad()
def style_mixing_grid(generator: nn.Module, row_seeds: list[int], col_seeds: list[int], crossover: int,
                      psi: float = 1.0, label: int | None = None) -> tuple[torch.Tensor, int]:
    """The paper's style-mixing figure: row r, column c takes its coarse styles (layers < crossover)
    from row seed r and its fine styles from column seed c. The first row shows the column seeds'
    own images, the first column the row seeds', the corner is blank. Returns (images, per row)."""
    refuse_text(generator, "the style-mixing grid")
    num_ws = generator.num_ws
    if not 1 <= crossover < num_ws:
        raise GenforgeError(f"the style-mixing crossover must be a layer in 1..{num_ws - 1}, got {crossover}; "
                            f"e.g. --crossover {num_ws // 2}")
    psi, _ = check_truncation(psi, None, num_ws)
    device = next(generator.parameters()).device

    def ws_of(seeds):
        z = torch.cat([latent_batch(1, generator.z_dim, s, device) for s in seeds])
        labels = torch.full((len(seeds),), label, device=device) if label is not None else None
        return generator.ws(z, labels, psi)

    rows, cols = ws_of(row_seeds), ws_of(col_seeds)
    mixed = cols[None].repeat(len(row_seeds), 1, 1, 1)  # (R, C, num_ws, w_dim)
    mixed[:, :, :crossover] = rows[:, None, :crossover]
    images_rows = synthesize(generator, rows, "const", 0)
    images_cols = synthesize(generator, cols, "const", 0)
    images_mixed = synthesize(generator, mixed.flatten(0, 1), "const", 0)
    blank = torch.ones_like(images_cols[:1])
    grid = [blank, images_cols]
    for r in range(len(row_seeds)):
        grid += [images_rows[r:r + 1], images_mixed[r * len(col_seeds):(r + 1) * len(col_seeds)]]
    return torch.cat(grid), len(col_seeds) + 1


@torch.no_grad()
def truncation_grid(generator: nn.Module, seeds: list[int], psis: list[float], cutoff: int | None = None,
                    label: int | None = None) -> tuple[torch.Tensor, int]:
    """One row per seed, one column per psi (the paper's truncation figures)."""
    refuse_text(generator, "the truncation grid")
    device = next(generator.parameters()).device
    z = torch.cat([latent_batch(1, generator.z_dim, s, device) for s in seeds])
    labels = torch.full((len(seeds),), label, device=device) if label is not None else None
    w = generator.mapping(z, labels)
    rows = []
    for i in range(len(seeds)):
        for psi in psis:
            psi, cut = check_truncation(psi, cutoff, generator.num_ws)
            rows.append(generator.ws_from_w(w[i:i + 1], psi, cut))
    return synthesize(generator, torch.cat(rows), "const", 0), len(psis)
