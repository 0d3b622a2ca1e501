"""Training: the one loop, the per-family steps, checkpoints, EMA and reporting."""

from .loop import TrainResult, train

__all__ = ["train", "TrainResult"]
