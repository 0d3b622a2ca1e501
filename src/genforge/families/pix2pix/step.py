"""The pix2pix training step (Isola et al. 2017): a conditional GAN plus an L1 term."""

from __future__ import annotations

import torch
from torch import nn

from ... import losses
from ...conditioning import Batch
from ...config import RunConfig
from ...data.paired import jitter_pairs
from ...imageio import to_signed
from ...nn.schedule import set_decayed_lr
from ...runtime import Precision


def pix2pix_generator_objective(fake_logits: torch.Tensor, fake: torch.Tensor, target: torch.Tensor,
                                cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G's objective, the paper's eq. 4: gan_weight * L_cGAN(G, D) + lambda * L_L1(G).

    L_L1 = E|y - G(x)| (eq. 3, mean over pixels in the [-1, 1] range). Returns (total, adversarial, l1).
    """
    l1 = (target - fake).abs().mean()
    adversarial = (losses.GENERATOR_LOSSES[cfg.gan.loss](fake_logits) if cfg.pix2pix.gan_weight > 0
                   else torch.zeros((), device=fake.device))
    return cfg.pix2pix.gan_weight * adversarial + cfg.pix2pix.lambda_l1 * l1, adversarial, l1


def pix2pix_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
                 cfg: RunConfig, precision: Precision, state=None) -> dict[str, torch.Tensor]:
    """Generate the target (batch.images) given the source (batch.cond.image): D, then G (eq. 4)."""
    # The L1-only ablation (gan_weight = 0) has no discriminator: networks.build leaves it out.
    generator, discriminator = nets["generator"], nets.get("discriminator")
    source, target = jitter_pairs(to_signed(batch.cond.image), to_signed(batch.images), cfg.pix2pix.jitter,
                                  cfg.pix2pix.flip)
    set_decayed_lr(opts, {"generator": cfg.train.lr, "discriminator": cfg.gan.lr_d or cfg.train.lr}, batch.step,
                   cfg.pix2pix.lr_decay_start, cfg.pix2pix.lr_decay_steps)
    adversarial = discriminator is not None

    with precision.context():
        fake = generator(source)
    out = {}
    if adversarial:
        # D: maximise log D(x, y) + log(1 - D(x, G(x))) over patches; halved as in the paper
        # (section 3.3: "we divide the objective by 2 while optimizing D").
        with precision.context():
            loss_d = 0.5 * losses.discriminator_loss(discriminator(source, target).float(),
                                                     discriminator(source, fake.detach()).float())
        opts["discriminator"].zero_grad(set_to_none=True)
        precision.backward_step("discriminator", loss_d, opts["discriminator"])
        out["loss_d"] = loss_d.detach()

    # G: eq. 4. D's weights get no gradient here.
    fake_logits = None
    if adversarial:
        discriminator.requires_grad_(False)
        with precision.context():
            fake_logits = discriminator(source, fake).float()
    loss_g, loss_adv, l1 = pix2pix_generator_objective(fake_logits, fake.float(), target, cfg)
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])
    if adversarial:
        discriminator.requires_grad_(True)
    out.update({"loss_g": loss_g.detach(), "loss_g_gan": loss_adv.detach(), "l1": l1.detach()})
    return out
