"""The StyleGAN2 training step and its state (ADA's p, the path-length mean).

One call = the paper's four phases, each its own optimiser update (section 3.1, lazy regularisation):
  G main   every step: non-saturating logistic loss softplus(-D(G(z))), with style mixing;
  G reg    when step % pl_every == 0: path-length penalty x pl_every, on batch / pl_batch_shrink;
  D main   every step: softplus(D(G(z))) + softplus(-D(x)); text-to-image models (tstylegan2):
           softplus(-D(x, t)) + (softplus(D(G(z, t), t)) + softplus(D(x, t'))) / 2, t' a mismatched caption;
  D reg    when step % r1_every == 0: R1 gamma/2 ||grad_x D(x)||^2 x r1_every.
Which phases run depends on the step number alone, so resume needs no counter. The lazy phases'
extra updates are why the optimisers' learning rate and betas are adjusted (family.py).
Every image D sees goes through ADA's augmentation (augment.py) with the state's probability p.

Text-to-image (docs/text-to-image.md): the batch's captions go through the text encoder once per
step and are pooled (text.encoder.pool) into the condition t of both networks. The mismatched
captions t' are the batch's rolled by one, so each real image is paired with another image's
caption: Reed et al. 2016's matching-aware discriminator (GAN-INT-CLS, algorithm 1), whose fake
term is the mean of the generated and the mismatched ones. The text encoder learns from D's main
loss alone, with D's optimiser step: G and both regularisers see t detached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...conditioning import Batch
from ...imageio import to_signed
from ...runtime import Precision
from ...text.encoder import pool
from ..contract import FamilyState
from .augment import adjust_p, augment


class StyleGAN2State(FamilyState):
    """ADA's augmentation probability p with the sums of sign(D(real)) since its last adjustment,
    and the running mean `a` of the path lengths (eq. 4); all saved in checkpoints."""

    def __init__(self, p: float = 0.0):
        self.p = torch.tensor(float(p))
        self.pl_mean = torch.zeros(())
        self.sign_sum = torch.zeros(())
        self.sign_count = torch.zeros(())

    def to(self, device: torch.device) -> StyleGAN2State:
        for name in ("p", "pl_mean", "sign_sum", "sign_count"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict:
        return {name: float(getattr(self, name)) for name in ("p", "pl_mean", "sign_sum", "sign_count")}

    def load_state_dict(self, state: dict) -> None:
        for name in ("p", "pl_mean", "sign_sum", "sign_count"):
            if name in state:
                current = getattr(self, name)
                setattr(self, name, torch.tensor(float(state[name]), dtype=current.dtype, device=current.device))


def mismatched(c: torch.Tensor) -> torch.Tensor:
    """Each image's condition replaced by the next image's (the batch rolled by one): for a batch of
    distinct captions, every real image paired with a caption that is not its own (two images may
    share a caption, which then counts as mismatched all the same, as in Reed et al. 2016)."""
    return c.roll(1, dims=0)


def discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor,
                       mismatched_logits: torch.Tensor | None = None) -> torch.Tensor:
    """D's logistic loss softplus(D(fake)) + softplus(-D(real)), means over the batch; with the logits of
    real images under mismatched captions, the fake term is the mean of the generated and the
    mismatched ones (Reed et al. 2016, algorithm 1, where D maximises log s_r + (log(1 - s_w) + log(1 - s_f)) / 2;
    this is its negation, with log(1 - sigmoid(l)) = -softplus(l))."""
    fake = F.softplus(fake_logits).mean()
    if mismatched_logits is not None:
        fake = (fake + F.softplus(mismatched_logits).mean()) / 2
    return fake + F.softplus(-real_logits).mean()


def mixed_ws(generator: nn.Module, z: torch.Tensor, labels, mixing_prob: float, update_w_avg: bool = False):
    """w per layer with style-mixing regularisation (StyleGAN section 3.1): with probability
    mixing_prob the layers from a random crossover on take the w of a second latent. The crossover
    is drawn once per batch (as the official implementation does); num_ws means no mixing."""
    ws = generator.ws(z, labels, update_w_avg=update_w_avg)
    if mixing_prob > 0:
        num_ws = ws.shape[1]
        cutoff = torch.randint(1, num_ws, (), device=z.device)
        cutoff = torch.where(torch.rand((), device=z.device) < mixing_prob, cutoff, torch.full_like(cutoff, num_ws))
        other = generator.ws(torch.randn_like(z), labels)
        layer = torch.arange(num_ws, device=z.device)[None, :, None]
        ws = torch.where(layer < cutoff, ws, other)
    return ws


def r1_penalty(discriminator, real: torch.Tensor, labels, augment_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """R1 (Mescheder et al. 2018, eq. 9): ||grad_x D(A(x))||^2 per image, the gradient taken with
    respect to the un-augmented real x through the augmentation A; and the logits."""
    real = real.detach().requires_grad_(True)
    logits = discriminator(augment_fn(real), *labels)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)), logits


def path_lengths(images: torch.Tensor, ws: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||J_w^T y||_2 per image (paper eq. 4), J the Jacobian of the images with respect to w: one
    backward pass of sum(images * y). The gradient is taken per synthesis layer's w, squared and
    summed over w's components and averaged over the layers (as the official code does)."""
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None, pl_mean: torch.Tensor,
                        decay: float, mixing_prob: float, noise_mode: str = "random", grouped: bool = True):
    """The path-length regulariser, paper eq. 4: E_{w,y}(||J_w^T y||_2 - a)^2 with y ~ N(0, I)/sqrt(H W)
    (so that the penalty does not depend on the resolution) and a the running mean of the lengths.
    Returns (per-image penalty, the updated running mean)."""
    ws = mixed_ws(generator, z, labels, mixing_prob)
    images = generator.synthesis(ws, noise_mode, grouped)
    y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    lengths = path_lengths(images, ws, y)
    new_mean = pl_mean.lerp(lengths.detach().mean(), decay)
    return (lengths - new_mean).square(), new_mean


def stylegan2_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch, cfg,
                   precision: Precision, state: StyleGAN2State) -> dict[str, torch.Tensor]:
    generator, discriminator = nets["generator"], nets["discriminator"]
    s = cfg.stylegan2
    real = to_signed(batch.images)
    n, device = real.shape[0], real.device
    state.to(device)
    labels = (batch.labels,) if cfg.model.num_classes else ()  # D's extra argument
    c = batch.labels if cfg.model.num_classes else None  # G's: fakes are drawn for the batch's classes
    encoder = nets.get("text_encoder")
    text = None
    if encoder is not None:  # text-to-image: the captions' pooled embeddings are the condition of both networks
        with precision.context():
            encoded = encoder.tokenize(batch.captions or [""] * n)
            text = pool(encoder(encoded.ids, encoded.mask), encoded.mask).float()
        c = text.detach()  # G (and D in G's loss) see it detached: the encoder learns from D's main loss only
        labels = (c,)
    kinds = s.augmentation_list
    p = state.p
    augment_fn = (lambda x: augment(x, p, kinds)) if (s.ada or s.augment_p > 0) else (lambda x: x)
    grouped = s.conv_path == "grouped"
    z_dim = cfg.model.latent_dim
    stats: dict[str, torch.Tensor] = {}

    # G main: minimise softplus(-D(A(G(z)))), the non-saturating logistic loss (Goodfellow et al. 2014).
    discriminator.requires_grad_(False)
    with precision.context():
        ws = mixed_ws(generator, torch.randn(n, z_dim, device=device), c, s.mixing_prob, update_w_avg=True)
        fake = generator.synthesis(ws, "random", grouped)
        loss_g = F.softplus(-discriminator(augment_fn(fake), *labels).float()).mean()
    opts["generator"].zero_grad(set_to_none=True)
    precision.backward_step("generator", loss_g, opts["generator"])

    # G reg: lazy path-length penalty on a smaller batch, pl_every times as strong (fp32: second derivatives).
    if s.pl_weight > 0 and batch.step % s.pl_every == 0:
        m = max(1, n // s.pl_batch_shrink)
        pl_labels = c[:m] if c is not None else None
        penalty, state.pl_mean = path_length_penalty(
            generator, torch.randn(m, z_dim, device=device), pl_labels, state.pl_mean, s.pl_decay, s.mixing_prob,
            grouped=grouped)
        loss_pl = penalty.mean() * (s.pl_weight * s.pl_every)
        opts["generator"].zero_grad(set_to_none=True)
        precision.backward_step("generator", loss_pl, opts["generator"])
        stats["pl_term"] = loss_pl.detach()
    else:  # zero on the other steps: the window mean is the average strength per step
        stats["pl_term"] = torch.zeros((), device=device)
    stats["pl_mean"] = state.pl_mean.detach().clone()
    discriminator.requires_grad_(True)

    # D main: minimise softplus(D(A(G(z)))) + softplus(-D(A(x))). ADA reads the signs of D(A(x)).
    # Text: D also sees real images with mismatched captions as fake (Reed et al. 2016), and the
    # captions' embeddings keep their gradient, so the text encoder steps with D.
    generator.requires_grad_(False)
    d_labels = (text,) if text is not None else labels
    with precision.context():
        with torch.no_grad():
            ws = mixed_ws(generator, torch.randn(n, z_dim, device=device), c, s.mixing_prob)
            fake = generator.synthesis(ws, "random", grouped)
        fake_logits = discriminator(augment_fn(fake), *d_labels).float()
        real_logits = discriminator(augment_fn(real), *d_labels).float()
        wrong_logits = discriminator(augment_fn(real), mismatched(text)).float() if text is not None else None
        loss_d = discriminator_loss(fake_logits, real_logits, wrong_logits)
    d_opts = {"discriminator": opts["discriminator"], **({"text_encoder": opts["text_encoder"]} if text is not None else {})}
    for opt in d_opts.values():
        opt.zero_grad(set_to_none=True)
    precision.backward_steps(loss_d, d_opts)
    generator.requires_grad_(True)
    if wrong_logits is not None:
        stats["d_mismatched"] = F.softplus(wrong_logits.detach()).mean()

    # D reg: lazy R1 on augmented reals, r1_every times as strong.
    if s.r1_gamma > 0 and batch.step % s.r1_every == 0:
        penalty, _ = r1_penalty(discriminator, real.float(), labels, augment_fn)
        loss_r1 = penalty.mean() * (0.5 * s.r1_gamma * s.r1_every)
        opts["discriminator"].zero_grad(set_to_none=True)
        precision.backward_step("discriminator", loss_r1, opts["discriminator"])
        stats["r1_term"] = loss_r1.detach()
    else:
        stats["r1_term"] = torch.zeros((), device=device)

    # ADA: accumulate sign(D(real)) and adjust p every ada_interval steps (section 3).
    state.sign_sum = state.sign_sum + torch.sign(real_logits.detach()).sum()
    state.sign_count = state.sign_count + n
    if s.ada and (batch.step + 1) % s.ada_interval == 0:
        rt = state.sign_sum / state.sign_count.clamp(min=1)
        state.p = adjust_p(state.p, rt, s.ada_target, n * s.ada_interval, s.ada_speed_images)
        state.sign_sum = torch.zeros_like(state.sign_sum)
        state.sign_count = torch.zeros_like(state.sign_count)
    stats["augment_p"] = state.p.detach().clone()
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), **stats}
