"""The diffusion training step: condition dropout, the objective's loss, one optimiser step."""

from __future__ import annotations

import torch
from torch import nn

from ...conditioning import Batch, Condition
from ...imageio import to_signed
from ...runtime import Precision
from .objectives import training_loss


def drop_condition(cond: Condition, probability: float, num_classes: int,
                   generator: torch.Generator | None = None) -> Condition:
    """Classifier-free guidance's condition dropout (Ho and Salimans 2022, algorithm 1): each
    example's condition becomes the null condition with `probability` (labels -> the null class
    num_classes, text -> every token masked). Draws from `generator` or the global (checkpointed) RNG."""
    n = len(cond)
    if probability <= 0 or n == 0:
        return cond
    device = cond.labels.device if cond.labels is not None else cond.text.device
    dropped = (torch.rand(n, generator=generator, device="cpu" if generator is not None else device)
               < probability).to(device)
    labels = torch.where(dropped, num_classes, cond.labels) if cond.labels is not None else None
    mask = cond.text_mask
    if cond.text is not None:
        mask = cond.text_mask if cond.text_mask is not None else torch.ones(cond.text.shape[:2], dtype=torch.bool,
                                                                              device=device)
        mask = mask & ~dropped[:, None]
    return Condition(labels=labels, text=cond.text, text_mask=mask)


def learning_rate_at(step: int, cfg) -> float:
    """train.lr, ramped up linearly over the first diffusion.lr_warmup_images training images (EDM
    appendix F.3: 10M images); a function of the step alone, so resume stays exact."""
    warmup = cfg.diffusion.lr_warmup_images
    if warmup <= 0:
        return cfg.train.lr
    return cfg.train.lr * min(1.0, (step + 1) * cfg.train.batch_size / warmup)


def diffusion_step(nets: dict[str, nn.Module], opts: dict[str, torch.optim.Optimizer], batch: Batch, cfg,
                   precision: Precision, state=None) -> dict[str, torch.Tensor]:
    net, opt = nets["denoiser"], opts["denoiser"]
    d = cfg.diffusion
    encoder = nets.get("text_encoder")
    # The text encoder trains with the denoiser, unless it is a frozen pretrained one (no optimiser).
    text_opts = {"text_encoder": opts["text_encoder"]} if "text_encoder" in opts else {}
    trained = [opt, *text_opts.values()]
    if d.lr_warmup_images > 0:
        for group in (g for o in trained for g in o.param_groups):
            group["lr"] = learning_rate_at(batch.step, cfg)
    for o in trained:
        o.zero_grad(set_to_none=True)
    text, text_mask = (batch.cond.text, batch.cond.text_mask) if d.text_dim else (None, None)
    with precision.context():
        if encoder is not None:  # text-to-image: the captions through the text encoder trained with the denoiser
            encoded = encoder.tokenize(batch.captions or [""] * len(batch.images))
            text, text_mask = encoder(encoded.ids, encoded.mask), encoded.mask
    cond = Condition(labels=batch.labels if cfg.model.num_classes else None, text=text, text_mask=text_mask)
    cond = drop_condition(cond, d.cond_dropout, cfg.model.num_classes)
    loss = training_loss(net, to_signed(batch.images), cond, d, precision)
    precision.backward_steps(loss, {"denoiser": opt, **text_opts})
    return {"loss": loss.detach()}
