"""Exponential moving average of a network's weights (Karras et al. 2018; Yazici et al. 2019):
sampling from the average of recent generator weights gives steadier, better samples."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``model`` = decay * model + (1 - decay) * live, after each optimiser step.

    The effective decay ramps up as min(decay, (1 + t) / (10 + t)) so that the first updates are
    not dominated by the random initialisation (the warm-up of TensorFlow's
    ExponentialMovingAverage with num_updates). Buffers (batch-norm statistics) are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, live: nn.Module, decay: float | None = None) -> None:
        """One update; `decay` replaces the ramped-up constant decay (a family's own schedule)."""
        self.num_updates += 1
        if decay is None:
            decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in live.parameters()], 1.0 - decay)
        for ema_buffer, buffer in zip(self.model.buffers(), live.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
