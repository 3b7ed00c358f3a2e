"""Label alignment between a model's training classes and a dataset it is tested on (cross-dataset cells).

Datasets label different sets of expressions (KDEF has no contempt, CK+ has). A model is trained on the classes of
its training part; a target is scored on the classes both share (:func:`align_labels`): target images of a class
the model was not trained on are left out and counted, the model's prediction is the best of the scored classes
(:func:`restricted_argmax`), and chance is one over their number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbench.data.table import CANONICAL_LABELS

TARGET_COLUMN = "target"  # a cross cell's predictions: the dataset each row was tested on
RESULT_KEY = "cross"  # a cross cell's result.json: the alignment of each target


@dataclass(frozen=True)
class Alignment:
    """The classes a model trained on ``trained`` scores on a target whose images hold ``target``: ``scored``
    (both), and the target's images of the other classes left out (``dropped``, by class index)."""

    trained: tuple[int, ...]
    target: tuple[int, ...]
    scored: tuple[int, ...]
    dropped: dict[int, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return int(sum(self.dropped.values()))

    @property
    def chance(self) -> float:
        """Chance accuracy on the scored classes (NaN when none is shared)."""
        return 1.0 / len(self.scored) if self.scored else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a cell's result record: class names, counts, chance."""
        return {"trained_classes": [CANONICAL_LABELS[i] for i in self.trained],
                "target_classes": [CANONICAL_LABELS[i] for i in self.target],
                "scored_classes": [CANONICAL_LABELS[i] for i in self.scored],
                "dropped": self.dropped_total,
                "dropped_by_class": {CANONICAL_LABELS[i]: n for i, n in sorted(self.dropped.items())},
                "chance": self.chance}


def align_labels(trained_labels: Iterable[int], target_labels: Iterable[int]) -> Alignment:
    """The alignment of a model trained on images labelled ``trained_labels`` (canonical indices) with a target
    whose images are labelled ``target_labels`` (one per image)."""
    trained = tuple(sorted({int(label) for label in trained_labels}))
    values, counts = np.unique(np.asarray(list(target_labels), dtype=np.int64), return_counts=True)
    target = tuple(int(v) for v in values)
    scored = tuple(label for label in target if label in trained)
    dropped = {int(v): int(n) for v, n in zip(values, counts) if int(v) not in trained}
    return Alignment(trained, target, scored, dropped)


def restricted_argmax(logits: np.ndarray, scored: Sequence[int]) -> np.ndarray:
    """The predicted class of each row of ``logits`` (N x K), among the ``scored`` classes only."""
    columns = np.asarray(list(scored), dtype=np.int64)
    if columns.size == 0:
        return np.zeros(len(logits), dtype=np.int64)
    return columns[np.asarray(logits)[:, columns].argmax(axis=1)]
