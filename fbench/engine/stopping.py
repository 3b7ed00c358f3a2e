"""Tracking the best validation epoch and deciding when to stop early (Keras ``EarlyStopping`` semantics)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fbench.contract import EarlyStopping


@dataclass
class BestTracker:
    """The best value of a validation metric so far.

    An epoch improves on the best when it beats it by more than ``min_delta`` (lower for ``val_loss``, higher for
    ``val_accuracy``). With ``patience``, training stops once ``patience`` epochs in a row have not improved
    (Keras counts the same way: patience 14 stops after 14 epochs without improvement; patience 0 stops at
    the first one)."""

    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int | None = None
    best: float = math.nan
    best_epoch: int | None = None
    wait: int = 0

    @classmethod
    def for_recipe(cls, early_stopping: EarlyStopping | None, fallback_monitor: str) -> BestTracker:
        if early_stopping is None:
            return cls(monitor=fallback_monitor)
        return cls(monitor=early_stopping.monitor, min_delta=abs(float(early_stopping.min_delta)),
                   patience=int(early_stopping.patience))

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; True when it is the new best."""
        if self.best_epoch is None:
            improved = True
        elif self.monitor == "val_accuracy":
            improved = value - self.min_delta > self.best
        else:
            improved = value + self.min_delta < self.best
        if improved:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.wait >= max(1, self.patience)
