"""Errors raised by the training engine."""

from __future__ import annotations

from fbench.errors import FbenchError


class NonFiniteLossError(FbenchError):
    """The training (or validation) loss became NaN or infinite; the runner records it per cell."""

    def __init__(self, message: str, *, epoch: int, lr: float) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.lr = lr
