"""How many images a cell trains, validates and tests on under its budget.

Every cut is a stratified draw that depends only on the split (its seed and ids), never on the architecture or
the training seed: two architectures cut to the same count see the same images, so paired tests stay paired.
The compute cap (``max_train_tmacs``) is the one cut that depends on the architecture: a costlier model trains on
fewer images, so that the quick budget fits a CPU whatever the suite compares.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fbench.profile import count_macs_torch
from fbench.registry import get_architecture

# Forward + backward is about three forward passes.
TRAIN_PASSES = 3
# The compute cap never leaves fewer than this many training images per class.
MIN_IMAGES_PER_CLASS = 4


def stratified_subset(ids: Sequence[str], labels: Sequence[int] | np.ndarray, keep: int, seed: int) -> list[str]:
    """``keep`` of ``ids`` drawn round-robin over classes (so the cut keeps the class balance), in their
    original order; all of them when ``keep`` is not below their number."""
    ids = list(ids)
    if keep >= len(ids):
        return ids
    classes = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(ids))
    by_class: dict[int, list[int]] = {}
    for position in order:
        by_class.setdefault(int(classes[position]), []).append(int(position))
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    while len(chosen) < keep:
        for queue in queues:
            if queue and len(chosen) < keep:
                chosen.append(queue.pop())
    return [ids[i] for i in sorted(chosen)]


@functools.lru_cache(maxsize=64)
def _forward_macs_cached(architecture: str, options_json: str, input_size: tuple[int, int, int],
                         num_classes: int) -> int:
    model = get_architecture(architecture).build(num_classes, **json.loads(options_json)).eval()
    return count_macs_torch(model, torch.zeros(1, *input_size))


def forward_macs(architecture: str, options: dict[str, Any], input_size: Sequence[int], num_classes: int) -> int:
    """MACs of one forward pass of one image (torch's FlopCounterMode; deterministic, cached per process)."""
    return _forward_macs_cached(architecture, json.dumps(options, sort_keys=True, default=str),
                                tuple(int(v) for v in input_size), int(num_classes))


def compute_capped_images(max_train_tmacs: float, macs_per_image: int, copies: int, epochs: int,
                          num_classes: int) -> int:
    """The most training images whose training (``copies`` rows each, ``epochs`` epochs, forward and backward)
    stays within ``max_train_tmacs`` tera-MACs; never fewer than ``MIN_IMAGES_PER_CLASS`` per class."""
    per_image = TRAIN_PASSES * max(macs_per_image, 1) * max(copies, 1) * max(epochs, 1)
    return max(int(math.floor(max_train_tmacs * 1e12 / per_image)), MIN_IMAGES_PER_CLASS * num_classes)
