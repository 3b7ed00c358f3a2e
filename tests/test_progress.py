"""The terminal leaderboard: a summary table and a per-condition table, both readable in 80 columns."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
from rich.console import Console

from fbench.progress import print_leaderboards
from fbench.score.completeness import Completeness
from fbench.score.leaderboard import build_leaderboards

CONDITIONS = ["clean", "occlusion:kind=rectangle,severity=0.25", "occlusion:kind=eye_band,severity=0.5",
              "mask:kind=surgical", "mask:kind=n95"]


def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for architecture, skill in (("lanmsff", 0.8), ("scan_cci", 0.7), ("resnet18", 0.6)):
        for fold in range(2):
            for condition in CONDITIONS:
                for i in range(40):
                    label = i % 7
                    correct = rng.random() < skill - (0.1 if condition != "clean" else 0)
                    rows.append({"view": "main", "architecture": architecture, "fold": fold, "seed": 0,
                                 "condition": condition, "sample_id": f"f{fold}s{i}", "label": label,
                                 "pred": label if correct else (label + 1) % 7, "pose": "S", "subject": ""})
    frame = pd.DataFrame(rows)
    for k in range(7):
        frame[f"logit_{k}"] = 0.0
    return frame


def test_leaderboard_fits_80_columns():
    boards = build_leaderboards(predictions(), 7, tuple(f"c{k}" for k in range(7)), n_resamples=200)
    run = SimpleNamespace(dataset=SimpleNamespace(synthetic=True), suite=SimpleNamespace(name="occ"),
                          leaderboards=boards, budget="quick", completeness=Completeness())
    out = io.StringIO()
    print_leaderboards(Console(file=out, width=80, force_terminal=False), run)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "SYNTHETIC DATA" in text and "mask surgical" in text and "occlusion eye_band s=0.5" in text
    # every architecture's clean accuracy appears whole on one line (no folded numbers)
    summary = text.split("change from clean")[0]
    assert all(any(name in line and "±" in line for line in summary.splitlines())
               for name in ("lanmsff", "scan_cci", "resnet18")), text
