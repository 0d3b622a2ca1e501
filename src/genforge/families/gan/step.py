"""The GAN training step: gan.d_steps discriminator updates, then one generator update."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ... import losses
from ...conditioning import Batch
from ...config import RunConfig
from ...imageio import to_signed
from ...runtime import Precision
from .augment import diff_augment


def gan_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch,
             cfg: RunConfig, precision: Precision, state=None) -> dict[str, torch.Tensor]:
    """gan.d_steps discriminator updates, then one generator update.

    The loss pair comes from gan.loss; DiffAugment (gan.diffaugment) transforms real and fake
    images alike before every discriminator call; the gradient penalty (every D update) or lazy R1
    (first D update of steps divisible by gan.r1_every) is added to the discriminator's loss;
    acgan heads add their cross-entropy to both losses.
    """
    generator, discriminator = nets["generator"], nets["discriminator"]
    g = cfg.gan
    loss_d_fn, loss_g_fn = losses.DISCRIMINATOR_LOSSES[g.loss], losses.GENERATOR_LOSSES[g.loss]
    acgan = bool(cfg.model.num_classes) and cfg.model.class_head in ("acgan", "both")
    augment = (lambda x: diff_augment(x, g.diffaugment)) if g.diffaugment else (lambda x: x)
    stats: dict[str, torch.Tensor] = {}

    for k in range(g.d_steps):
        b = batch if k == 0 or batch.extra is None else batch.extra(k)
        real = to_signed(b.images)
        z = torch.randn(real.shape[0], cfg.model.latent_dim, device=real.device)
        # Conditional models see the batch's labels: fakes are drawn for the real batch's classes.
        cond = (b.labels,) if cfg.model.num_classes else ()
        last = k == g.d_steps - 1

        # Discriminator: e.g. maximise log D(x) + log(1 - D(G(z))) for the plain GAN (fakes
        # detached: G is not updated here). The last D update's fakes are reused by the G update.
        with precision.context(), torch.set_grad_enabled(last):
            fake = generator(z, *cond)
        with precision.context():
            real_in, fake_in = augment(real), augment(fake.detach())
            if acgan:
                real_logits, real_class = discriminator(real_in, *cond, return_class_logits=True)
                fake_logits, fake_class = discriminator(fake_in, *cond, return_class_logits=True)
            else:
                real_logits, fake_logits = discriminator(real_in, *cond), discriminator(fake_in, *cond)
        loss_d = loss_d_fn(real_logits.float(), fake_logits.float())
        if acgan:  # Odena et al. 2017, eq. 2: D maximises the log-likelihood of the right class, real and fake
            class_loss = (F.cross_entropy(real_class.float(), b.labels) + F.cross_entropy(fake_class.float(), b.labels))
            loss_d = loss_d + g.acgan_weight * class_loss
            stats["class_loss_d"] = class_loss.detach()
        # Penalties in fp32 (second derivatives overflow easily in fp16), on augmented images.
        critic = lambda x: discriminator(x, *cond)  # noqa: E731
        if g.gradient_penalty:
            penalty = losses.gradient_penalty(critic, real_in.float(), fake_in.float())
            loss_d = loss_d + g.gradient_penalty * penalty
            stats["gradient_penalty"] = penalty.detach()
        if g.r1_gamma and k == 0:
            # Lazy R1 (Karras et al. 2020, section 3.1): every r1_every steps, r1_every times as strong.
            # Which steps is a function of the step number alone, so resuming needs no counter.
            if batch.step % g.r1_every == 0:
                r1_term = 0.5 * g.r1_gamma * g.r1_every * losses.r1_penalty(critic, real_in.float())
                loss_d = loss_d + r1_term
            else:
                r1_term = torch.zeros((), device=real.device)
            stats["r1_term"] = r1_term.detach()  # its window mean is the average strength per step
        opts["discriminator"].zero_grad(set_to_none=True)
        precision.backward_step("discriminator", loss_d, opts["discriminator"])

    # Generator: the loss's generator side on the last fakes (e.g. non-saturating: maximise
    # log D(G(z))). D's weights get no gradient here, which also saves their backward pass.
    discriminator.requires_grad_(False)
    with precision.context():
        fake_in = augment(fake)
        if acgan:
            fake_logits, fake_class = discriminator(fake_in, *cond, return_class_logits=True)
        else:
            fake_logits = discriminator(fake_in, *cond)
    loss_g = loss_g_fn(fake_logits.float())
    if acgan:  # Odena et al. 2017, eq. 3: G also maximises the log-likelihood of the class it was asked for
        class_loss_g = F.cross_entropy(fake_class.float(), b.labels)
        loss_g = loss_g + g.acgan_weight * class_loss_g
        stats["class_loss_g"] = class_loss_g.detach()
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])
    discriminator.requires_grad_(True)
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), **stats}
