"""The pix2pix family's config section (`pix2pix` in config.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import check, register_section


@dataclass
class Pix2PixConfig:
    """Settings used only by the pix2pix family (Isola et al. 2017). Saved with the run, so that
    genforge translate rebuilds the same networks without repeating any training flag."""

    lambda_l1: float = 100.0
    """Weight of the L1 term in G's objective (the paper's eq. 4: lambda = 100)."""
    gan_weight: float = 1.0
    """Weight of the adversarial term; 0 trains the U-Net with L1 alone (the paper's 'L1' ablation)
    and leaves the discriminator untouched."""
    norm: str = "instance"
    """'instance' (the same in training and inference) or 'batch' (running statistics at inference)."""
    depth: int = 0
    """U-Net halvings; 0 = as many as the image size allows, up to 8 (256 -> 1x1). The image side
    must be divisible by 2**depth."""
    n_layers: int = 3
    """PatchGAN depth: 3 gives 70x70 patches (the paper's default), 1 gives 16x16."""
    dropout: float = 0.5
    """Dropout in the three innermost decoder layers during training (0 turns it off)."""
    direction: str = "AtoB"
    """'AtoB' translates the left (or A/) image into the right (or B/) one; 'BtoA' the reverse."""
    lr_decay_start: int = 0
    """Step at which the learning rate starts its linear decay (the paper: after 100 epochs)."""
    lr_decay_steps: int = 0
    """Steps over which it decays linearly from train.lr to 0, beginning at lr_decay_start (the
    paper: 100 epochs); 0 keeps it constant. Set lr_decay_start + lr_decay_steps = train.steps for
    the paper's schedule. It depends on the step number alone, so stopping and resuming (or
    raising train.steps) never changes it."""
    jitter: int = 0
    """Random jitter: resize each training pair to image_size + jitter, then crop a random
    image_size window from both halves at the same place (the paper: 30 at 256)."""
    flip: bool = False
    """Mirror both halves of a training pair together, at random (the paper: on)."""

    def __post_init__(self) -> None:
        check(self.lambda_l1 >= 0, f"pix2pix.lambda_l1 must be >= 0, got {self.lambda_l1}; the paper uses 100")
        check(self.gan_weight >= 0, f"pix2pix.gan_weight must be >= 0, got {self.gan_weight}")
        check(self.lambda_l1 > 0 or self.gan_weight > 0, "pix2pix.lambda_l1 and pix2pix.gan_weight are both 0; "
               "nothing would be trained")
        check(self.norm in ("instance", "batch"), f"pix2pix.norm must be instance or batch, got {self.norm!r}")
        check(0 <= self.depth <= 8, f"pix2pix.depth must be 0 (auto) to 8, got {self.depth}")
        check(1 <= self.n_layers <= 8, f"pix2pix.n_layers must be 1 to 8, got {self.n_layers}; the paper uses 3")
        check(0 <= self.dropout < 1, f"pix2pix.dropout must be in [0, 1), got {self.dropout}")
        check(self.direction in ("AtoB", "BtoA"), f"pix2pix.direction must be AtoB or BtoA, got {self.direction!r}")
        check(self.lr_decay_start >= 0, f"pix2pix.lr_decay_start must be >= 0, got {self.lr_decay_start}")
        check(self.lr_decay_steps >= 0, f"pix2pix.lr_decay_steps must be >= 0, got {self.lr_decay_steps}")
        check(self.jitter >= 0, f"pix2pix.jitter must be >= 0, got {self.jitter}")
        check(isinstance(self.flip, bool), f"pix2pix.flip must be true or false, got {self.flip!r}")


register_section("pix2pix", Pix2PixConfig)
