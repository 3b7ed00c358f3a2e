"""The composed flow as a notebook calls it: fbench.run_suite on a built-in suite, options as keywords."""

from __future__ import annotations

import pytest

import fbench
from fbench.errors import FbenchError
from fbench.pipeline import run_options
from fbench.run.context import RunOptions


def test_options_as_keywords_change_run_options_and_unknown_ones_are_named():
    base = RunOptions(device="cpu")
    changed = run_options(base, {"budget": "smoke", "tracking": False})
    assert (changed.budget, changed.tracking, changed.device) == ("smoke", False, "cpu") and base.budget is None
    with pytest.raises(FbenchError, match="no field 'budjet' \\(did you mean 'budget'\\?\\)"):
        run_options(None, {"budjet": "smoke"})


def test_run_suite_on_a_built_in_suite_by_name(tmp_path, tiny_kdef, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = fbench.load_suite("smoke", [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}"],
                              only=["resnet18"])
    run = fbench.run_suite(suite, budget="smoke", tracking=False, device="cpu", data={"kdef": str(tiny_kdef)},
                           cache_dir=tmp_path / "cache")
    assert [o.status for o in run.outcomes] == ["complete"]
    assert list(run.leaderboards[0].clean()["label"]) == ["resnet18"] and run.report["html"].is_file()
