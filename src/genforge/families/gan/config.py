"""The GAN families' config section (`gan` in config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check, register_section


@dataclass
class GANConfig:
    """Settings used only by GAN families."""

    loss: str = "non-saturating"
    """GAN objective: 'non-saturating' (Goodfellow et al. 2014, section 3), 'minimax' (the article's
    eq. 1), 'hinge' (Miyato et al. 2018), 'wasserstein' (Arjovsky et al. 2017; needs
    gradient_penalty or model.spectral_norm) or 'least-squares' (Mao et al. 2017)."""
    lr_d: float = 0.0
    """Discriminator learning rate; 0 means the same as train.lr."""
    ema_decay: float = 0.999
    """Decay of the generator's exponential moving average used for sampling; 0 turns it off."""
    d_steps: int = 1
    """Discriminator updates per generator update (5 in WGAN-GP and SNGAN). The first uses the
    step's batch; the others draw extra batches that depend only on (seed, step, k)."""
    gradient_penalty: float = 0.0
    """Weight lambda of WGAN-GP's gradient penalty (Gulrajani et al. 2017; they use 10); 0 is off."""
    r1_gamma: float = 0.0
    """Weight gamma of the R1 penalty gamma/2 * E||grad D(x)||^2 on real images (Mescheder et al.
    2018); 0 is off. Typical: 0.1 to 10 (StyleGAN2 uses 10 at 1024px, less for small images)."""
    r1_every: int = 1
    """Lazy R1 (Karras et al. 2020, section 3.1): apply it only on steps divisible by this, scaled by
    it so the average strength is unchanged (16 in StyleGAN2)."""
    diffaugment: str = ""
    """DiffAugment policy (Zhao et al. 2020): comma-separated subset of color, translation, cutout,
    applied to real and fake images alike before the discriminator; empty is off."""
    acgan_weight: float = 1.0
    """Weight of the auxiliary classifier's cross-entropy when model.class_head is acgan or both."""

    def __post_init__(self) -> None:
        # The owners' own lists, so a new loss or augmentation is accepted here without a second edit.
        from ...losses import DISCRIMINATOR_LOSSES as GAN_LOSSES
        from .augment import OPERATIONS as DIFFAUGMENT_OPS

        check(self.loss in GAN_LOSSES, f"gan.loss must be one of {', '.join(GAN_LOSSES)}, got {self.loss!r}")
        check(self.lr_d >= 0, f"gan.lr_d must be >= 0, got {self.lr_d}")
        check(0 <= self.ema_decay < 1, f"gan.ema_decay must be in [0, 1), got {self.ema_decay}")
        check(self.d_steps >= 1, f"gan.d_steps must be >= 1, got {self.d_steps}")
        check(self.gradient_penalty >= 0, f"gan.gradient_penalty must be >= 0, got {self.gradient_penalty}; use e.g. 10")
        check(self.r1_gamma >= 0, f"gan.r1_gamma must be >= 0, got {self.r1_gamma}; use e.g. 1")
        check(self.r1_every >= 1, f"gan.r1_every must be >= 1, got {self.r1_every}; use e.g. 16")
        check(self.acgan_weight >= 0, f"gan.acgan_weight must be >= 0, got {self.acgan_weight}")
        policy = [p.strip() for p in str(self.diffaugment).split(",") if p.strip()]
        unknown = [p for p in policy if p not in DIFFAUGMENT_OPS]
        check(not unknown, f"gan.diffaugment has unknown part(s) {unknown}; use a comma-separated subset of "
                            f"{','.join(DIFFAUGMENT_OPS)}")
        self.diffaugment = ",".join(policy)
        check(not (self.gradient_penalty and self.r1_gamma),
               "gan.gradient_penalty and gan.r1_gamma are both on; they regularise the same gradient, keep one")




register_section("gan", GANConfig)
