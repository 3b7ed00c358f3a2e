"""Which of a suite's cells the numbers rest on: per architecture and view, "cells n of N", and every cell that is
missing, failed or corrupt, by key.

An architecture with a cell short is incomplete: its mean rests on fewer folds or seeds than the others', so the
leaderboard does not rank it against complete ones (unless asked to, ``--partial``) and says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fbench.run import store
from fbench.run.cell import CellOutcome
from fbench.run.cells import Cell

MISSING = "missing"


@dataclass(frozen=True)
class CellGap:
    """A cell the leaderboard lacks: ``state`` is missing (no result yet), failed or corrupt."""

    name: str
    key: str
    label: str
    view: str
    state: str
    reason: str = ""


@dataclass
class Completeness:
    """Cells expected and complete per (view, label), and the gaps."""

    expected: dict[tuple[str, str], int] = field(default_factory=dict)
    complete: dict[tuple[str, str], int] = field(default_factory=dict)
    gaps: list[CellGap] = field(default_factory=list)

    def cells_text(self, view: str, label: str) -> str:
        """``"cells 3 of 3"``."""
        return f"cells {self.complete.get((view, label), 0)} of {self.expected.get((view, label), 0)}"

    def counts(self, view: str) -> dict[str, str]:
        """Every label of ``view``: ``"n of N"``."""
        return {label: f"{self.complete.get((v, label), 0)} of {total}"
                for (v, label), total in self.expected.items() if v == view}

    def incomplete(self, view: str) -> dict[str, str]:
        """The labels of ``view`` with a cell short, with their ``"cells n of N"``."""
        return {label: self.cells_text(view, label) for (v, label), total in self.expected.items()
                if v == view and self.complete.get((v, label), 0) < total}

    def state_counts(self) -> dict[str, int]:
        """How many cells are missing, failed and corrupt (those with any)."""
        counts: dict[str, int] = {}
        for gap in self.gaps:
            counts[gap.state] = counts.get(gap.state, 0) + 1
        return counts


def completeness(cells: Iterable[Cell], outcomes: Mapping[str, CellOutcome]) -> Completeness:
    """Which of ``cells`` have a complete outcome (``outcomes`` by cell key); the rest are gaps."""
    found = Completeness()
    for cell in cells:
        slot = (cell.view, cell.label)
        found.expected[slot] = found.expected.get(slot, 0) + 1
        outcome = outcomes.get(cell.key)
        if outcome is not None and outcome.status == store.COMPLETE:
            found.complete[slot] = found.complete.get(slot, 0) + 1
            continue
        state = outcome.status if outcome is not None else MISSING
        reason = outcome.reason if outcome is not None else "no result yet: `fbench run` trains it"
        found.gaps.append(CellGap(cell.name, cell.key, cell.label, cell.view, state, reason))
    return found
