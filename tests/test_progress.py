"""The terminal leaderboard: a summary table and a per-condition table, both readable in 80 columns; progress as
plain lines when the output is a log."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from rich.console import Console

from fbench.progress import LineProgress, RichProgressBars, print_leaderboards, run_progress
from fbench.run.cell import CellOutcome
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


SMOKE = Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"
EPOCH_LINE = re.compile(r"^resnet18/fold0/seed0 epoch (\d+)/2: train loss \d+\.\d{4}, val acc \d+\.\d%, [\d,]+ img/s, "
                        r"(ETA [\w ]+|training done)$")


def test_progress_is_bars_on_a_terminal_and_lines_in_a_log():
    assert isinstance(run_progress(Console(file=io.StringIO(), force_terminal=True)), RichProgressBars)
    assert isinstance(run_progress(Console(file=io.StringIO(), force_terminal=False)), LineProgress)


def test_line_progress_says_epochs_eta_and_finished_cells(tmp_path):
    out = io.StringIO()
    progress = LineProgress(Console(file=out, width=40, force_terminal=False))
    cell = SimpleNamespace(name="lanmsff/fold0/seed0")
    (tmp_path / "metrics.json").write_text(json.dumps([{"condition": "clean", "accuracy": 0.4321}]))
    with progress:
        progress.start_suite(3, 1)
        progress.start_cell(cell, 4)
        progress.epoch({"epoch": 1, "train_loss": 1.5, "val_accuracy": 0.25, "images_per_second": 1234.5,
                        "seconds": 30.0})
        progress.epoch({"epoch": 2, "train_loss": 1.25, "val_accuracy": None, "images_per_second": 1000.0,
                        "seconds": 50.0})
        progress.end_cell(CellOutcome(cell, tmp_path, "complete", reused=False, seconds=125.0))
        progress.end_cell(CellOutcome(cell, tmp_path, "failed", reused=False, reason="NaN loss", seconds=3.0))
    assert out.getvalue().splitlines() == [
        "suite: 3 cells, 1 already finished: reusing them",
        "cell 1 of 3: lanmsff/fold0/seed0 training, 4 epochs",
        "lanmsff/fold0/seed0 epoch 1/4: train loss 1.5000, val acc 25.0%, 1,234 img/s, ETA 1 min 30 s",
        "lanmsff/fold0/seed0 epoch 2/4: train loss 1.2500, 1,000 img/s, ETA 1 min 20 s",  # no validation split
        "cell 1 of 3 done: lanmsff/fold0/seed0 in 2 min 05 s, clean test acc 43.2%",
        "cell 2 of 3 FAILED: lanmsff/fold0/seed0 after 3 s: NaN loss",
    ]  # one line each, not wrapped at the console's width


def test_run_into_a_log_file_leaves_a_line_per_epoch(tmp_path, tiny_kdef):
    """The issue's check: `fbench run suites/smoke.yaml > run.log 2>&1` leaves per-epoch lines in run.log."""
    log = tmp_path / "run.log"
    command = [sys.executable, "-m", "fbench", "run", str(SMOKE), "--only", "resnet18", "--data", f"kdef={tiny_kdef}",
               "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}",
               "--no-tracking", "--no-report", "--device", "cpu"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(tmp_path / "cache"))
    with log.open("w") as handle:
        completed = subprocess.run(command, env=env, cwd=tmp_path, stdout=handle, stderr=subprocess.STDOUT,
                                   timeout=300)
    text = log.read_text()
    assert completed.returncode == 0, text[-2000:]
    epochs = [EPOCH_LINE.match(line) for line in text.splitlines()]
    assert [int(m.group(1)) for m in epochs if m] == [1, 2], text
    assert re.search(r"^cell 1 of 1 done: resnet18/fold0/seed0 in \d+ s, clean test acc \d+\.\d%$", text, re.M), text
    assert "\x1b[" not in text  # no terminal codes in a log
