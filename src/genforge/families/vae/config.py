"""The VAE families' config section (`vae` in config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check, register_section


@dataclass
class VAEConfig:
    """Settings used only by VAE families."""

    reconstruction: str = "bernoulli"
    """Likelihood p(x|z): 'bernoulli' (BCE on logits) or 'gaussian' (sum of squared errors)."""
    kl_weight: float = 1.0
    """Weight of the KL term (1 gives the ELBO; beta-VAE uses beta > 1, Higgins et al. 2017)."""
    objective: str = "elbo"
    """'elbo' (one z per image, closed-form KL) or 'iwae' (the importance-weighted bound of
    Burda et al. 2016 with importance_samples z per image)."""
    importance_samples: int = 5
    """K, the number of z per image of the iwae objective (Burda et al. use 5 and 50); unused by elbo."""
    kl_warmup_steps: int = 0
    """Raise the KL weight linearly from 0 to kl_weight over this many steps (0: no warm-up).
    The weight is a function of the step number alone, so a resumed run gets the same weights."""
    binarize: str = "none"
    """'none', or 'dynamic': every batch is re-binarised, x ~ Bernoulli(pixel / 255), with the
    checkpointed global RNG (needs the bernoulli decoder)."""
    decoder_variance: str = "fixed"
    """Gaussian decoder only: 'fixed' (every pixel has variance fixed_variance) or 'learned' (one
    learned log-variance per pixel, a parameter of the decoder)."""
    fixed_variance: float = 0.5
    """Variance of the fixed Gaussian decoder, in units of [0, 1] pixels (0.5 makes -log p the sum
    of squared errors plus a constant)."""
    lr_decay_start: int = 0
    """Step at which the learning rate starts to decay linearly to 0 (as pix2pix.lr_decay_start)."""
    lr_decay_steps: int = 0
    """Steps over which it decays from train.lr to 0, beginning at lr_decay_start; 0 keeps it
    constant. A function of the step number alone, so resuming needs no scheduler state."""

    def __post_init__(self) -> None:
        check(self.reconstruction in ("bernoulli", "gaussian"),
               f"vae.reconstruction must be bernoulli or gaussian, got {self.reconstruction!r}")
        check(self.kl_weight >= 0, f"vae.kl_weight must be >= 0, got {self.kl_weight}")
        check(self.objective in ("elbo", "iwae"), f"vae.objective must be elbo or iwae, got {self.objective!r}")
        check(self.importance_samples >= 1,
               f"vae.importance_samples (K) must be at least 1, got {self.importance_samples}; use e.g. 5")
        check(self.kl_warmup_steps >= 0, f"vae.kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        check(self.binarize in ("none", "dynamic"), f"vae.binarize must be none or dynamic, got {self.binarize!r}")
        check(self.binarize == "none" or self.reconstruction == "bernoulli",
               "vae.binarize=dynamic needs the bernoulli decoder; drop it or set vae.reconstruction=bernoulli")
        check(self.decoder_variance in ("fixed", "learned"),
               f"vae.decoder_variance must be fixed or learned, got {self.decoder_variance!r}")
        check(self.fixed_variance > 0, f"vae.fixed_variance must be positive, got {self.fixed_variance}; use e.g. 0.5")
        check(self.lr_decay_start >= 0, f"vae.lr_decay_start must be >= 0, got {self.lr_decay_start}")
        check(self.lr_decay_steps >= 0, f"vae.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")


register_section("vae", VAEConfig)
