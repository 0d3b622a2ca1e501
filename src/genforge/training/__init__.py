"""Training: the one loop (its set-up, batches, optimisers), checkpoints, EMA and reporting."""

from .loop import TrainResult, train

__all__ = ["train", "TrainResult"]
