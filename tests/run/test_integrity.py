"""Numbers that rest on sound cells: damaged files named and redone, incomplete suites not ranked, cell keys that
survive a move of the project, and damaged decode caches rebuilt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fbench.data.cache import build_cache
from fbench.errors import FbenchError
from fbench.pipeline import rescore_suite, run_suite
from fbench.registry import get_dataset
from fbench.run import store
from fbench.run.context import Progress, RunOptions, prepare
from fbench.suite.load import load_suite

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
TWO_SEEDS = ["seeds=[0,1]", "budgets.smoke.seeds=2"]


def suite_in(folder: Path, *overrides: str):
    return load_suite(SMOKE, [f"output={folder / 'runs'}", f"reports={folder / 'reports'}", *TWO_SEEDS,
                              *overrides], only=["resnet18"])


def options(data: Path, cache: Path, **changes) -> RunOptions:
    base = dict(data={"kdef": str(data)}, tracking=False, cache_dir=cache, device="cpu", write_report=False)
    return RunOptions(**{**base, **changes})


@pytest.fixture
def finished(tmp_path: Path, tiny_kdef: Path):
    """A two-cell suite (resnet18, seeds 0 and 1), run once."""
    run = run_suite(suite_in(tmp_path), options(tiny_kdef, tmp_path / "cache"))
    assert [o.status for o in run.outcomes] == ["complete", "complete"]
    return run


def test_result_records_checksum_every_file_and_a_sound_cell_has_no_damage(finished):
    folder = finished.outcomes[0].folder
    listed = store.finished_result(folder)["files"]
    assert set(listed) == {store.CONFIG, store.SPLIT, store.HISTORY, store.PREDICTIONS, store.METRICS,
                           store.CHECKPOINT}
    assert store.damaged_files(folder) == []


def test_truncated_predictions_are_named_left_out_and_trained_again(finished, tmp_path, tiny_kdef):
    damaged = finished.outcomes[1]
    path = damaged.folder / store.PREDICTIONS
    path.write_bytes(path.read_bytes()[:50])
    notes: list[str] = []
    board = rescore_suite(suite_in(tmp_path), options(tiny_kdef, tmp_path / "cache"),
                          progress=Progress(note=notes.append))
    assert any(damaged.cell.key in note and store.PREDICTIONS in note and "truncated" in note for note in notes)
    assert [o.status for o in board.outcomes] == ["complete", "corrupt"]
    assert board.leaderboards[0].incomplete == {"resnet18": "cells 1 of 2"}
    assert [(gap.key, gap.state) for gap in board.completeness.gaps] == [(damaged.cell.key, "corrupt")]

    notes.clear()
    again = run_suite(suite_in(tmp_path), options(tiny_kdef, tmp_path / "cache"), Progress(note=notes.append))
    assert [o.reused for o in again.outcomes] == [True, False]
    assert any("training it again" in note and damaged.cell.key in note for note in notes)
    assert store.damaged_files(damaged.folder) == [] and again.leaderboards[0].incomplete == {}


def test_unreadable_predictions_without_a_checksum_are_named_by_the_leaderboard(finished, tmp_path, tiny_kdef):
    """A cell recorded before checksums existed: the damage shows when its predictions are read."""
    damaged = finished.outcomes[0]
    record = store.finished_result(damaged.folder)
    del record["files"]
    store.write_json(damaged.folder / store.RESULT, record)
    (damaged.folder / store.PREDICTIONS).write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FbenchError, match="predictions.csv.gz: cannot read"):
        store.read_predictions(damaged.folder / store.PREDICTIONS)
    notes: list[str] = []
    board = rescore_suite(suite_in(tmp_path), options(tiny_kdef, tmp_path / "cache"),
                          progress=Progress(note=notes.append))
    assert any(damaged.cell.key in note and "cannot read the predictions" in note for note in notes)
    assert board.completeness.state_counts() == {"corrupt": 1}


def test_leaderboard_command_names_the_damaged_cell_and_marks_the_suite_incomplete(finished, tmp_path, tiny_kdef):
    damaged = finished.outcomes[1]
    (damaged.folder / store.PREDICTIONS).write_bytes(b"")
    command = [sys.executable, "-m", "fbench", "leaderboard", str(SMOKE), "--only", "resnet18", "--data",
               f"kdef={tiny_kdef}", "--set", f"output={tmp_path / 'runs'}", *sum((["--set", o] for o in TWO_SEEDS), [])]
    env = dict(os.environ, COLUMNS="200", FBENCH_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert damaged.cell.key in result.stdout and "INCOMPLETE" in result.stdout and "resnet18 (incomplete)" in (
        result.stdout)


def test_an_architecture_with_a_failed_cell_is_not_ranked_unless_partial(tmp_path, tiny_kdef):
    suite = load_suite(SMOKE, [f"output={tmp_path / 'runs'}", "architectures.0.recipe.lr=1e30",
                               "architectures.0.recipe.optimizer=sgd"])
    run = run_suite(suite, options(tiny_kdef, tmp_path / "cache"))
    board = run.leaderboards[0]
    assert board.incomplete == {"lanmsff": "cells 0 of 1"} and board.reference == "resnet18"
    assert [(gap.label, gap.state) for gap in run.completeness.gaps] == [("lanmsff", "failed")]
    assert rescore_suite(suite, options(tiny_kdef, tmp_path / "cache", partial=True)).leaderboards[0].partial


def test_incomplete_architecture_is_shown_unranked_in_the_table():
    import pandas as pd

    from fbench.report.tables import ReportData, leaderboard_table

    aggregate = pd.DataFrame({"label": ["a", "b", "c"], "condition": "clean", "accuracy_mean": [0.9, 0.5, 0.7],
                              "n_runs": [1, 2, 2]})
    data = ReportData("s", "s", aggregate, cells_per_architecture={"a": "1 of 2", "b": "2 of 2", "c": "2 of 2"},
                      incomplete={"a": "cells 1 of 2"})
    table = leaderboard_table(data)
    assert list(table["architecture"]) == ["c", "b", "a (incomplete)"] and list(table["rank"]) == ["1", "2", "–"]
    assert list(table["cells"]) == ["2 of 2", "2 of 2", "1 of 2"]
    data.partial = True
    assert list(leaderboard_table(data)["rank"]) == ["1", "2", "3"]


def test_a_copied_project_reuses_every_finished_cell(finished, tmp_path, tiny_kdef):
    """``cp -r`` of the working folder (data and runs) to another path: the keys hash the data's content."""
    copy = tmp_path / "moved"
    copy.mkdir()
    shutil.copytree(tiny_kdef, copy / "kdef")
    shutil.copytree(tmp_path / "runs", copy / "runs")
    again = run_suite(suite_in(copy), options(copy / "kdef", tmp_path / "cache"))
    assert all(o.reused for o in again.outcomes) and len(again.outcomes) == 2


def test_format1_folders_move_to_their_new_keys(finished, tmp_path, tiny_kdef):
    outcome = finished.outcomes[0]
    old = outcome.folder.parent / outcome.cell.format1_key
    outcome.folder.rename(old)
    notes: list[str] = []
    again = run_suite(suite_in(tmp_path), options(tiny_kdef, tmp_path / "cache"), Progress(note=notes.append))
    assert all(o.reused for o in again.outcomes) and outcome.folder.is_dir() and not old.exists()
    assert any("moved 1 cell folder" in note for note in notes)


def test_dataset_fingerprint_ignores_the_location_but_not_the_content(tmp_path, tiny_kdef):
    copy = tmp_path / "kdef"
    shutil.copytree(tiny_kdef, copy)
    adapter = get_dataset("kdef")
    assert adapter.load(copy).fingerprint() == adapter.load(tiny_kdef).fingerprint()
    image = next(copy.rglob("*.JPG"))
    image.write_bytes(image.read_bytes() + b"\0")
    assert adapter.load(copy).fingerprint() != adapter.load(tiny_kdef).fingerprint()


def test_a_truncated_decode_cache_is_named_and_rebuilt(tmp_path, tiny_kdef):
    table = get_dataset("kdef").load(tiny_kdef)
    first = build_cache(table, (1, 24, 24), cache_dir=tmp_path)
    images = first.path / "images.npy"
    images.write_bytes(images.read_bytes()[:1000])
    notes: list[str] = []
    rebuilt = build_cache(table, (1, 24, 24), cache_dir=tmp_path, note=notes.append)
    assert len(notes) == 1 and str(first.path) in notes[0] and "damaged" in notes[0]
    assert not rebuilt.hit and rebuilt.images.shape[0] == len(table)
    assert json.loads((rebuilt.path / "meta.json").read_text())["count"] == len(table)


def test_prepare_keys_cells_without_the_dataset_path(tmp_path, tiny_kdef):
    suite = suite_in(tmp_path)
    cells = prepare(suite, options(tiny_kdef, tmp_path / "cache"), Progress()).cells
    assert all(cell.dataset_fingerprint for cell in cells)
    assert all("dataset_root" in cell.to_dict() for cell in cells)
