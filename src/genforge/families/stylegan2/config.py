"""The StyleGAN2 family's config section (`stylegan2` in config.yaml); docs/stylegan2.md."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check, register_section

AUGMENTATIONS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
                 "brightness", "contrast", "lumaflip", "hue", "saturation")
"""ADA's 'bgc' pipeline (Karras et al. 2020b, appendix B): pixel blitting, geometric, colour."""


@dataclass
class StyleGAN2Config:
    """Settings used only by the StyleGAN2 family (docs/stylegan2.md). Defaults follow the ADA
    paper's CIFAR-10 configuration where it fits a CPU; presets name their sources."""

    mapping_layers: int = 2
    """Dense layers of the mapping network: 8 in the paper, 2 for small images (ADA's CIFAR-10)."""
    mapping_lr_mul: float = 0.01
    """Learning-rate multiplier of the mapping network (StyleGAN appendix C: 0.01)."""
    w_dim: int = 0
    """Size of w (and of the mapping network's layers); 0: model.latent_dim."""
    channel_max: int = 512
    """Most feature maps at any resolution; model.width is the number at the image size, doubling at
    each halving up to this."""
    conv_path: str = "scaled"
    """How the generator computes modulated convolutions: 'scaled' (scale the activations; faster on
    CPUs, and what exports use) or 'grouped' (one grouped convolution with each sample's weights,
    the official implementation's choice on GPUs). Equal up to rounding."""
    mbstd_group: int = 4
    """Group size of the minibatch standard-deviation layer (4; ADA's CIFAR-10 uses 32)."""
    r1_gamma: float = 0.01
    """Weight gamma of the R1 penalty gamma/2 E||grad D(x)||^2 on reals (Mescheder et al. 2018);
    0.01 is ADA's CIFAR-10 value; the paper's heuristic is 0.0002 * resolution^2 / batch size."""
    r1_every: int = 16
    """Lazy regularisation (paper section 3.1): R1 every this many steps, as a separate update scaled by it."""
    pl_weight: float = 2.0
    """Weight of the path-length penalty (paper section 3.2, eq. 4); 0 turns it off."""
    pl_every: int = 4
    """Path-length penalty every this many steps (lazy, as R1)."""
    pl_batch_shrink: int = 2
    """The path-length penalty runs on batch_size / this images."""
    pl_decay: float = 0.01
    """Rate of the running mean `a` of the path lengths in eq. 4."""
    mixing_prob: float = 0.9
    """Style-mixing regularisation (StyleGAN section 3.1): probability that a generated image takes
    its styles from two latents, switching at a random layer."""
    ema_halflife_images: float = 10000.0
    """Half-life of the generator's EMA in training images (paper configs: 10k; ADA's CIFAR-10: 500k)."""
    ema_rampup: float = 0.05
    """EMA ramp-up: the half-life is at most this fraction of the images seen so far; 0: no ramp-up."""
    ada: bool = True
    """Adaptive discriminator augmentation (Karras et al. 2020b): adjust the augmentation probability p
    from the sign of D's outputs on reals. False: augment with the fixed probability augment_p."""
    augment_p: float = 0.0
    """The augmentation probability p at the start (and always, when ada is off)."""
    ada_target: float = 0.6
    """ADA's target for r_t = E[sign(D(real))] (0.6 in the paper)."""
    ada_interval: int = 4
    """Steps between adjustments of p."""
    ada_speed_images: float = 500000.0
    """Images over which p can move from 0 to 1 (the paper's 500k)."""
    augmentations: str = ",".join(AUGMENTATIONS)
    """Comma-separated augmentations ADA applies, from: xflip, rotate90, xint, scale, rotate, aniso, xfrac,
    brightness, contrast, lumaflip, hue, saturation (all by default: ADA's 'bgc')."""
    fit: str = "pad"
    """Images whose side is not a power of two >= 32: 'pad' them (edge pixels) or 'resize' them to the
    next one (the run's log says which); 'none' refuses them."""

    def __post_init__(self) -> None:
        check(self.mapping_layers >= 1, f"stylegan2.mapping_layers must be at least 1, got {self.mapping_layers}; "
              "use 8 (the paper) or 2 (small images)")
        check(0 < self.mapping_lr_mul <= 1, f"stylegan2.mapping_lr_mul must be in (0, 1], got {self.mapping_lr_mul}")
        check(self.w_dim >= 0, f"stylegan2.w_dim must be >= 0, got {self.w_dim}")
        check(self.channel_max >= 1, f"stylegan2.channel_max must be positive, got {self.channel_max}")
        check(self.conv_path in ("grouped", "scaled"), f"stylegan2.conv_path must be grouped or scaled, "
              f"got {self.conv_path!r}")
        check(self.mbstd_group >= 1, f"stylegan2.mbstd_group must be positive, got {self.mbstd_group}")
        check(self.r1_gamma >= 0, f"stylegan2.r1_gamma must be >= 0, got {self.r1_gamma}")
        for name in ("r1_every", "pl_every", "pl_batch_shrink", "ada_interval"):
            check(getattr(self, name) >= 1, f"stylegan2.{name} must be at least 1, got {getattr(self, name)}")
        check(self.pl_weight >= 0, f"stylegan2.pl_weight must be >= 0, got {self.pl_weight}")
        check(0 < self.pl_decay <= 1, f"stylegan2.pl_decay must be in (0, 1], got {self.pl_decay}")
        check(0 <= self.mixing_prob <= 1, f"stylegan2.mixing_prob must be in [0, 1], got {self.mixing_prob}; "
              "use e.g. 0.9 (or 0 for no mixing)")
        check(self.ema_halflife_images >= 0, f"stylegan2.ema_halflife_images must be >= 0, got {self.ema_halflife_images}")
        check(self.ema_rampup >= 0, f"stylegan2.ema_rampup must be >= 0, got {self.ema_rampup}")
        check(isinstance(self.ada, bool), f"stylegan2.ada must be true or false, got {self.ada!r}")
        check(0 <= self.augment_p <= 1, f"stylegan2.augment_p must be in [0, 1], got {self.augment_p}")
        check(0 < self.ada_target < 1, f"stylegan2.ada_target must be in (0, 1), got {self.ada_target}; use e.g. 0.6")
        check(self.ada_speed_images > 0, f"stylegan2.ada_speed_images must be positive, got {self.ada_speed_images}")
        bad = [a for a in self.augmentation_list if a not in AUGMENTATIONS]
        check(not bad, f"stylegan2.augmentations has unknown augmentation(s) {', '.join(bad)}; "
              f"choose from {', '.join(AUGMENTATIONS)}")
        check(self.fit in ("pad", "resize", "none"), f"stylegan2.fit must be pad, resize or none, got {self.fit!r}")

    @property
    def augmentation_list(self) -> tuple[str, ...]:
        return tuple(a for a in (x.strip() for x in str(self.augmentations).split(",")) if a)


register_section("stylegan2", StyleGAN2Config)
