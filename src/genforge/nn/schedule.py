"""Learning-rate schedules that are functions of the step number alone (so resuming needs no
scheduler state), shared by the families that decay their learning rate."""

from __future__ import annotations

import torch


def linear_decay_factor(step: int, decay_start: int, decay_steps: int) -> float:
    """Learning-rate multiplier: 1 before `decay_start`, then linearly down to 0 over `decay_steps`:
    step decay_start + k (k = 0 .. decay_steps - 1) gets 1 - (k + 1) / (decay_steps + 1).

    The paper's schedule (constant, then linear decay to 0, as the reference code's 'linear' policy),
    derived from the step number alone, so resuming needs no scheduler state and a longer
    train.steps never changes the learning rate of steps already taken.
    """
    if decay_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - max(0, step + 1 - decay_start) / (decay_steps + 1))


def set_decayed_lr(opts: dict[str, torch.optim.Optimizer], base_lr: dict[str, float], step: int,
                   decay_start: int, decay_steps: int) -> None:
    """Set each optimiser's learning rate to its base rate times linear_decay_factor at `step`."""
    factor = linear_decay_factor(step, decay_start, decay_steps)
    for name, opt in opts.items():
        for group in opt.param_groups:
            group["lr"] = base_lr[name] * factor
