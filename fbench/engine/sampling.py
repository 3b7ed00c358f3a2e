"""Seeded random streams and the per-epoch order of training samples, drawn on the device."""

from __future__ import annotations

import numpy as np
import torch

from fbench.errors import FbenchError

# Independent streams derived from one seed, so that e.g. seed 1's sampler never replays seed 0's augmentation.
STREAMS = {"sampler": 0, "augment": 1, "offline": 2}


def stream_generator(seed: int, stream: str, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``(seed, stream)``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, STREAMS[stream]]).generate_state(2, np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(state[0]) << 32 | int(state[1]))
    return generator


def class_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weights ``1 / count(label)``: every class present is drawn equally often on average."""
    counts = torch.bincount(labels)
    return 1.0 / counts.to(torch.float64)[labels]


def epoch_order(n: int, sampler: str, generator: torch.Generator, weights: torch.Tensor | None = None
                ) -> torch.Tensor:
    """The row indices of one epoch (length ``n``) on the generator's device: a permutation (``shuffle``) or
    ``n`` draws with replacement weighted by ``weights`` (``class_balanced``, SCAN-CCI's resampling)."""
    if sampler == "shuffle":
        return torch.randperm(n, generator=generator, device=generator.device)
    if sampler == "class_balanced":
        if weights is None:
            raise FbenchError("the class_balanced sampler needs per-sample weights")
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    raise FbenchError(f"unknown sampler {sampler!r}; use shuffle or class_balanced")
