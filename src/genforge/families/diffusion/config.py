"""The diffusion family's config section (`diffusion` in config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check, register_section

OBJECTIVES = ("edm", "eps", "v")
SAMPLERS = ("ddpm", "ddim", "heun", "dpm2m")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)


@dataclass
class DiffusionConfig:
    """Settings used only by the diffusion family (docs/diffusion.md)."""

    objective: str = "edm"
    """'edm' (Karras et al. 2022: preconditioned denoiser, log-normal noise levels, loss weight
    lambda(sigma)); 'eps' (Ho et al. 2020: predict the noise, discrete schedule); 'v' (predict
    v = alpha eps - sigma x0, Salimans and Ho 2022, on the same discrete schedule)."""
    schedule: str = "linear"
    """eps and v only: 'linear' betas 1e-4..0.02 (Ho et al. 2020) or 'cosine' (Nichol and Dhariwal 2021)."""
    timesteps: int = 1000
    """eps and v only: length T of the discrete schedule."""
    sigma_data: float = 0.5
    """EDM: standard deviation of the data in [-1, 1] units (the paper's 0.5)."""
    p_mean: float = -1.2
    """EDM: mean of ln(sigma) during training (EDM table 1: -1.2)."""
    p_std: float = 1.2
    """EDM: standard deviation of ln(sigma) during training (1.2)."""
    sigma_min: float = 0.002
    """EDM sampling: the smallest noise level of the time discretisation (0.002)."""
    sigma_max: float = 80.0
    """EDM sampling: the largest noise level (80)."""
    rho: float = 7.0
    """EDM sampling: exponent of the time discretisation, eq. 5 (7)."""
    ema_halflife_images: float = 10000.0
    """Half-life of the EMA of the denoiser, in training images (EDM uses 500k images); the
    per-step decay is 0.5 ** (batch_size / half-life). 0 turns the EMA off."""
    lr_warmup_images: float = 0.0
    """Ramp the learning rate up linearly over this many training images (EDM: 10M); 0: none."""
    cond_dropout: float = 0.0
    """Classifier-free guidance (Ho and Salimans 2022): probability that a training example's
    condition is replaced by the null condition. Guidance at sampling needs it > 0 (e.g. 0.1)."""
    dropout: float = 0.1
    """Dropout in the residual blocks (Ho et al. use 0.1 on CIFAR-10, EDM 0.13)."""
    channel_mult: str = "1,2,2"
    """Width multipliers of the U-Net levels (each level halves the resolution)."""
    res_blocks: int = 2
    """Residual blocks per U-Net level."""
    attention_resolutions: str = "16"
    """Resolutions (pixels) at which self-attention follows each residual block, comma-separated."""
    heads: int = 1
    """Attention heads."""
    text_dim: int = 0
    """Width of the condition embeddings for cross-attention (text-to-image); 0: no cross-attention."""
    sampler: str = "heun"
    """Default sampler: 'ddpm' (ancestral), 'ddim', 'heun' (EDM algorithm 1), 'dpm2m' (DPM-Solver++(2M))."""
    steps: int = 18
    """Default number of sampling steps (heun takes 2 steps - 1 network evaluations)."""
    eta: float = 0.0
    """DDIM's eta: 0 deterministic, 1 the DDPM posterior variance."""
    guidance: float = 0.0
    """Default guidance weight w: D = (1 + w) D(x, c) - w D(x, null); 0 is the conditional model."""

    def __post_init__(self) -> None:
        check(self.objective in OBJECTIVES, f"diffusion.objective must be one of {', '.join(OBJECTIVES)}, "
              f"got {self.objective!r}")
        check(self.schedule in ("linear", "cosine"), f"diffusion.schedule must be linear or cosine, got {self.schedule!r}")
        check(self.timesteps >= 2, f"diffusion.timesteps must be at least 2, got {self.timesteps}; use e.g. 1000")
        for name in ("sigma_data", "p_std", "sigma_min", "rho"):
            check(getattr(self, name) > 0, f"diffusion.{name} must be positive, got {getattr(self, name)}")
        check(self.sigma_max > self.sigma_min, f"diffusion.sigma_max ({self.sigma_max}) must exceed "
              f"diffusion.sigma_min ({self.sigma_min})")
        check(self.ema_halflife_images >= 0, f"diffusion.ema_halflife_images must be >= 0, got {self.ema_halflife_images}")
        check(self.lr_warmup_images >= 0, f"diffusion.lr_warmup_images must be >= 0, got {self.lr_warmup_images}")
        check(0 <= self.cond_dropout < 1, f"diffusion.cond_dropout must be in [0, 1), got {self.cond_dropout}; use e.g. 0.1")
        check(0 <= self.dropout < 1, f"diffusion.dropout must be in [0, 1), got {self.dropout}")
        try:
            mult, attn = _ints(self.channel_mult), _ints(self.attention_resolutions)
        except ValueError:
            mult = attn = None
        check(bool(mult) and all(m > 0 for m in mult), f"diffusion.channel_mult must be positive integers like "
              f"1,2,2, got {self.channel_mult!r}")
        check(attn is not None and all(a > 0 for a in attn), f"diffusion.attention_resolutions must be pixel sizes "
              f"like 16 or 16,8 (or empty), got {self.attention_resolutions!r}")
        check(self.res_blocks >= 1, f"diffusion.res_blocks must be at least 1, got {self.res_blocks}")
        check(self.heads >= 1, f"diffusion.heads must be at least 1, got {self.heads}")
        check(self.text_dim >= 0, f"diffusion.text_dim must be >= 0, got {self.text_dim}")
        check(self.sampler in SAMPLERS, f"diffusion.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        check(self.steps >= 1, f"diffusion.steps must be at least 1, got {self.steps}; use e.g. 18")
        check(0 <= self.eta <= 1, f"diffusion.eta must be in [0, 1], got {self.eta}")
        check(self.guidance >= 0, f"diffusion.guidance must be >= 0, got {self.guidance}")

    @property
    def levels(self) -> tuple[int, ...]:
        return _ints(self.channel_mult)

    @property
    def attention_at(self) -> tuple[int, ...]:
        return _ints(self.attention_resolutions)


register_section("diffusion", DiffusionConfig)
