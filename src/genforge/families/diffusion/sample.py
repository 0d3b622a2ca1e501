"""From a trained denoiser to images: the sampling options, classifier-free guidance, SDEdit and
inpainting around the samplers of samplers.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...conditioning import Condition
from ...data.transforms import resize_uint8, square, to_channels
from ...errors import GenforgeError
from ...imageio import to_signed
from ...nn.latents import latent_batch
from ...text.encoder import encode_prompts
from . import samplers
from .config import SAMPLERS
from .objectives import denoise, schedule_sigmas, sigma_range

OPTIONS = ("sampler", "steps", "eta", "guidance", "init", "strength", "mask", "prompt")
"""The SampleRequest.options this family accepts."""

CHUNK = 256
"""Images per network call while sampling (bounds memory; results do not depend on it)."""


@dataclass(frozen=True)
class Options:
    sampler: str
    steps: int
    eta: float
    guidance: float
    init: torch.Tensor | None
    """uint8 (N or 1, C, H, W) at the model's size, or None."""
    strength: float
    mask: torch.Tensor | None
    """bool (N or 1, 1, H, W): True where pixels are generated, or None."""


def _number(value, name: str, kind: type):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise GenforgeError(f"{name} must be a number, got {value!r}") from None
    if kind is int and float(value) != number:
        raise GenforgeError(f"{name} must be a whole number, got {value!r}")
    return number


def _fit(images: torch.Tensor, size: int, channels: int | None) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) -> centre-cropped, resized (N, C, size, size)."""
    images = images if images.dim() == 4 else images[None]
    images = resize_uint8(square(images.cpu()), size)
    return to_channels(images, channels) if channels else images


def text_condition(nets, options: dict, n: int, cfg) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """The prompt's token embeddings and mask, from the model's own text encoder; (None, None) for models without text."""
    return encode_prompts(nets.get("text_encoder"), options.get("prompt"), n, cfg.model.name)


def resolve_options(options: dict, cfg, text: bool = False) -> Options:
    """Check a request's options against the run (one-line GenforgeErrors naming the fix) and fill
    the run's defaults (diffusion.sampler, steps, eta, guidance)."""
    d, m = cfg.diffusion, cfg.model
    sampler = str(options.get("sampler") or d.sampler)
    if sampler not in SAMPLERS:
        raise GenforgeError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    steps = _number(options.get("steps") if options.get("steps") is not None else d.steps, "steps", int)
    if steps < 1:
        raise GenforgeError(f"sampling steps must be at least 1, got {steps}; e.g. --steps 18")
    eta = _number(options.get("eta") if options.get("eta") is not None else d.eta, "eta", float)
    if not 0 <= eta <= 1:
        raise GenforgeError(f"eta must be in [0, 1], got {eta}; 0 is deterministic DDIM")
    guidance = _number(options.get("guidance") if options.get("guidance") is not None else d.guidance,
                       "guidance", float)
    if guidance < 0:
        raise GenforgeError(f"guidance must be >= 0, got {guidance}; 0 samples the conditional model, e.g. --guidance 2")
    if guidance > 0 and not m.num_classes and not d.text_dim and not text:
        raise GenforgeError(f"guidance needs a conditional model; {m.name} is unconditional: drop --guidance")
    if guidance > 0 and d.cond_dropout == 0:
        raise GenforgeError("guidance needs a model trained with condition dropout, this one was trained with "
                            "diffusion.cond_dropout=0; drop --guidance or train with --set diffusion.cond_dropout=0.1")
    init, mask = options.get("init"), options.get("mask")
    strength = options.get("strength")
    if strength is not None and init is None:
        raise GenforgeError("--strength needs an image to edit; add --init PHOTO")
    if mask is not None and init is None:
        raise GenforgeError("--mask needs the image to inpaint; add --init PHOTO")
    strength = _number(strength if strength is not None else (1.0 if mask is not None else 0.5), "strength", float)
    if not 0 <= strength <= 1:
        raise GenforgeError(f"strength must be in [0, 1], got {strength}; e.g. --strength 0.5 "
                            "(0 keeps the image, 1 redraws it from noise)")
    if init is not None:
        init = torch.as_tensor(init)
        if init.dtype != torch.uint8 or init.dim() not in (3, 4):
            raise GenforgeError("init must be uint8 images (C, H, W) or (N, C, H, W); read it with genforge's image reader")
        if mask is not None:
            mask = torch.as_tensor(mask)
            mask = mask[None] if mask.dim() == 2 else mask
            mask = mask if mask.dim() == 4 else mask[None]
            if mask.shape[-2:] != init.shape[-2:]:
                raise GenforgeError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is "
                                    f"{init.shape[-1]}x{init.shape[-2]}; give a mask of the image's size")
            mask = mask.to(torch.uint8) * (255 if mask.dtype == torch.bool else 1)
            mask = _fit(to_channels(mask, 1) if mask.shape[1] == 3 else mask, m.image_size, None) >= 128
        init = _fit(init, m.image_size, m.channels)
    return Options(sampler, steps, eta, guidance, init, strength, mask)


def sigma_grid(sampler: str, steps: int, d) -> torch.Tensor:
    """The noise levels a sampler visits: EDM's discretisation (eq. 5) for heun and dpm2m, and for
    every sampler of an EDM-trained model; the strided training timesteps (DDIM's uniform tau) for
    ddpm and ddim on models trained on a discrete schedule."""
    if d.objective != "edm" and sampler in ("ddpm", "ddim"):
        return samplers.strided_sigmas(steps, schedule_sigmas(d))
    low, high = sigma_range(d)
    return samplers.edm_sigmas(steps, low, high, d.rho)


def null_condition(cond: Condition, num_classes: int) -> Condition:
    """The 'no condition' of classifier-free guidance: the null class, and text with every token masked."""
    labels = torch.full_like(cond.labels, num_classes) if cond.labels is not None else None
    mask = None if cond.text is None else torch.zeros(cond.text.shape[:2], dtype=torch.bool, device=cond.text.device)
    return Condition(labels=labels, text=cond.text, text_mask=mask)


def make_denoiser(net, cond: Condition, cfg, guidance: float):
    """D(x, sigma) for a whole request, run in chunks of CHUNK images; with guidance w > 0 the
    classifier-free guided D_w = (1 + w) D(x, c) - w D(x, null) (Ho and Salimans 2022, eq. 6),
    both halves in one network call. w = 0 is exactly the conditional D (no second call)."""
    d = cfg.diffusion
    if cond.text is not None and cond.text_mask is None:  # every token real, so that the null one can mask them
        cond = Condition(labels=cond.labels, text=cond.text,
                         text_mask=torch.ones(cond.text.shape[:2], dtype=torch.bool, device=cond.text.device))
    null = null_condition(cond, cfg.model.num_classes) if guidance > 0 else None

    def one(x, sigma, c):
        return denoise(net, x, sigma, c, d)

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(x), CHUNK):
            xs, cs = x[start:start + CHUNK], cond.slice(start, start + CHUNK)
            if guidance > 0:
                ns = null.slice(start, start + CHUNK)
                both = Condition(**{k: (torch.cat([getattr(cs, k), getattr(ns, k)]) if getattr(cs, k) is not None
                                        else None) for k in ("labels", "text", "text_mask")})
                conditional, unconditional = one(torch.cat([xs, xs]), sigma, both).chunk(2)
                out.append((1 + guidance) * conditional - guidance * unconditional)
            else:
                out.append(one(xs, sigma, cs))
        return torch.cat(out)

    return denoiser


def _gaussian(n: int, shape: tuple[int, ...], seed: int, key: int, device) -> torch.Tensor:
    """Seeded N(0, I) noise for one sampling step; numpy's sequential generator keeps the first k
    images the same when more are asked for (as nn.latents.latent_batch)."""
    rng = np.random.default_rng([seed, key])
    return torch.from_numpy(rng.standard_normal((n, int(np.prod(shape))), dtype=np.float32)).view(n, *shape).to(device)


@torch.no_grad()
def sample(nets, request, cfg) -> torch.Tensor:
    """The family's sampler (Family.sample): images in [0, 1]; fills request.report with the
    sampler, its steps and the network evaluations (nfe)."""
    if request.truncation:
        raise GenforgeError("truncation is a latent trick of GANs and VAEs; a diffusion model takes none: drop --truncation")
    if request.latents is not None:
        raise GenforgeError("a diffusion model has no latent vector to give or interpolate; "
                            "use genforge sample (seeds) or --init PHOTO to edit an image")
    o = resolve_options(request.options, cfg, text="text_encoder" in nets)
    net = nets["denoiser"]
    device = next(net.parameters()).device
    n, m = request.n, cfg.model
    shape = (m.channels, m.image_size, m.image_size)
    cond = request.cond.to(device)
    text, text_mask = text_condition(nets, request.options, n, cfg)
    if text is None:
        text, text_mask = cond.text, cond.text_mask
    cond = Condition(labels=cond.labels if m.num_classes else None, text=text, text_mask=text_mask)
    sigmas = sigma_grid(o.sampler, o.steps, cfg.diffusion)
    init = to_signed(o.init.to(device)).expand(n, *shape) if o.init is not None else None
    if init is not None:
        # SDEdit (Meng et al. 2022): start from the image noised to a level part-way down the grid and
        # solve from there; strength is the fraction of the steps run (0 returns the image itself).
        keep = round(o.strength * (len(sigmas) - 1))
        sigmas = sigmas[len(sigmas) - 1 - keep:]
    x = latent_batch(n, int(np.prod(shape)), request.seed, device).view(n, *shape) * float(sigmas[0])
    if init is not None:
        x = x + init
    project = None
    if o.mask is not None:
        # Inpainting by replacement (Song et al. 2021 score SDE, appendix I.2; Meng et al. 2022): after
        # every step the known pixels are set to the image noised to the next level.
        keep_known = ~o.mask.to(device).expand(n, 1, *shape[1:])

        def project(x, i):
            known = init + float(sigmas[i + 1]) * _gaussian(n, shape, request.seed, 1_000_000 + i, device)
            return torch.where(keep_known, known, x)

        x = project(x, -1) if len(sigmas) > 1 else x
    denoiser = make_denoiser(net, cond, cfg, o.guidance)
    noise = lambda i: _gaussian(n, shape, request.seed, i + 1, device)  # noqa: E731
    if len(sigmas) == 1:
        nfe = 0
    elif o.sampler == "ddpm":
        x, nfe = samplers.ddpm_ancestral(denoiser, x, sigmas, noise, project)
    elif o.sampler == "ddim":
        x, nfe = samplers.ddim(denoiser, x, sigmas, o.eta, noise, project)
    elif o.sampler == "heun":
        x, nfe = samplers.edm_heun(denoiser, x, sigmas, project)
    else:
        x, nfe = samplers.dpm_solver_2m(denoiser, x, sigmas, project)
    request.report.update(sampler=o.sampler, steps=len(sigmas) - 1, nfe=nfe,
                          network_passes=nfe * (2 if o.guidance > 0 else 1))
    return ((x.float() + 1) / 2).clamp(0, 1)
