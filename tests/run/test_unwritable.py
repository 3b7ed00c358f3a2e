"""A cell folder that cannot be written stops the suite with one line naming it; the cells already finished are
kept and reused. Tests run as root, whom chmod does not stop: the unwritable cell folder is a file standing where
the folder should be."""

from __future__ import annotations

from pathlib import Path

import pytest

from fbench.errors import FbenchError
from fbench.pipeline import run_suite
from fbench.run import store
from fbench.run.context import Progress, RunOptions, prepare
from fbench.suite.load import load_suite

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


def test_an_unwritable_cell_folder_is_one_line_and_loses_nothing(tmp_path, tiny_kdef):
    suite = load_suite(SMOKE, [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}"])
    options = RunOptions(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=tmp_path / "cache", device="cpu",
                         write_report=False)
    first, second = prepare(suite, options, Progress()).cells
    blocked = tmp_path / "runs" / "smoke" / second.key
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the cell's folder should be")
    with pytest.raises(FbenchError, match=f"^cannot write {blocked}/.*a file stands where a folder should be") as e:
        run_suite(suite, options)
    assert "\n" not in str(e.value)
    kept = tmp_path / "runs" / "smoke" / first.key
    assert store.finished_result(kept)["status"] == store.COMPLETE and not store.damaged_files(kept)
    blocked.unlink()
    again = run_suite(suite, options)
    assert [o.reused for o in again.outcomes] == [True, False]
