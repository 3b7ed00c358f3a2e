"""Incomplete architectures on the leaderboard: marked, not ranked or compared unless partial, and partial
comparisons paired on the folds every architecture has."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fbench.score.completeness import Completeness
from fbench.score.leaderboard import build_leaderboards


def predictions(missing_fold: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for architecture, skill in (("a", 0.8), ("b", 0.6)):
        for fold in (0, 1):
            if missing_fold and architecture == "b" and fold == 1:
                continue
            for i in range(60):
                label = i % 3
                pred = label if rng.random() < skill else (label + 1) % 3
                rows.append({"view": "main", "architecture": architecture, "fold": fold, "seed": 0,
                             "condition": "clean", "sample_id": f"f{fold}s{i}", "label": label, "pred": pred})
    return pd.DataFrame(rows)


def completeness() -> Completeness:
    return Completeness(expected={("main", "a"): 2, ("main", "b"): 2}, complete={("main", "a"): 2, ("main", "b"): 1})


def test_an_incomplete_architecture_is_shown_but_not_compared():
    (board,) = build_leaderboards(predictions(True), 3, ("x", "y", "z"), n_resamples=100,
                                  completeness=completeness())
    assert board.incomplete == {"b": "cells 1 of 2"} and board.cells == {"a": "2 of 2", "b": "1 of 2"}
    assert set(board.clean()["label"]) == {"a", "b"} and board.reference == "a" and board.comparisons.empty


def test_partial_compares_on_the_folds_every_architecture_has():
    (board,) = build_leaderboards(predictions(True), 3, ("x", "y", "z"), n_resamples=100,
                                  completeness=completeness(), partial=True)
    assert board.partial and len(board.comparisons) == 1
    assert int(board.comparisons["n"].iloc[0]) == 60  # fold 0's images only
