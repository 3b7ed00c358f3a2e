"""A paper's own leaky protocol: its cells select and stop on the test part, train on every other image, and every
place that shows their numbers says so; and notes on settings that are not the paper's (SCAN-CCI from scratch)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from rich.console import Console
from torch import nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.errors import FbenchError
from fbench.pipeline import run_suite
from fbench.progress import print_leaderboards
from fbench.registry import register_architecture
from fbench.run import store
from fbench.run.context import Progress, RunContext, RunOptions, prepare, setting_notes
from fbench.run.inputs import cell_inputs
from fbench.suite.load import load_suite
from fbench.suite.schema import LEAKY_LABEL

SUITE = """
name: leaky
dataset: kdef
protocol: {kind: stratified_kfold, folds: 5, val_fraction: 0.2, leaky: true}
views:
  - {name: clean, kind: stratified_kfold, folds: 5, val_fraction: 0.2}
architectures:
  - name: lanmsff
    input_size: 32
seeds: [0]
budget: paper
"""


def suite_file(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def options(tmp_path: Path, tiny_kdef: Path, **changes) -> RunOptions:
    base = dict(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=tmp_path / "cache", device="cpu")
    return RunOptions(**{**base, **changes})


def test_a_leaky_cell_validates_on_its_test_part_and_trains_on_every_other_image(tmp_path, tiny_kdef):
    suite = load_suite(suite_file(tmp_path))
    prepared = prepare(suite, options(tmp_path, tiny_kdef), Progress())
    context = RunContext(suite, prepared.table, tmp_path / "runs", torch.device("cpu"), prepared.splits,
                         cache_dir=tmp_path / "cache")
    leaky = next(c for c in prepared.cells if c.view == "main" and c.fold == 0)
    clean = next(c for c in prepared.cells if c.view == "clean" and c.fold == 0)
    assert leaky.leaky and not clean.leaky
    split = prepared.splits["main"][0]
    assert split.val  # val_fraction 0.2 carved a validation part; the leaky cell gives it back to training
    inputs = cell_inputs(leaky, split, prepared.table, context.cache(leaky.input_size), context.device)
    assert inputs.val is not None and inputs.test is not None
    assert list(inputs.val.sample_ids) == inputs.test.sample_ids and set(inputs.test.sample_ids) == set(split.test)
    assert torch.equal(inputs.val.images, inputs.test.images)
    assert set(inputs.train.sample_ids) == set(split.train) | set(split.val)
    assert len(inputs.train) + len(inputs.test) == len(prepared.table.frame)
    # the clean view of the same suite still validates on a part carved from training
    clean_split = prepared.splits["clean"][0]
    inputs = cell_inputs(clean, clean_split, prepared.table, context.cache(clean.input_size), context.device)
    assert inputs.val is not None and set(inputs.val.sample_ids) == set(clean_split.val)
    assert not set(inputs.val.sample_ids) & set(clean_split.test)
    # tuning asks for no test part; a leaky cell has no validation apart from it
    with pytest.raises(FbenchError, match="leaky"):
        cell_inputs(leaky, split, prepared.table, context.cache(leaky.input_size), context.device, with_test=False)


@pytest.fixture
def noted_architecture(clean_architectures):
    """A tiny architecture whose spec says that leaving ``weights`` unset is not its paper's setting."""
    spec = ArchitectureSpec((1, 32, 32), (0.5,), (0.5,), Recipe(optimizer="adam", lr=1e-3, epochs=2, batch_size=64),
                            unset_option_notes={"weights": "trained from scratch: not the paper's setting"})

    @register_architecture("noted_net", spec=spec)
    def noted_net(num_classes: int, *, weights: str | None = None) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, num_classes))

    return noted_net


def test_leaky_numbers_are_labelled_in_the_terminal_report_and_mlflow(tmp_path, tiny_kdef, noted_architecture):
    text = SUITE.replace("budget: paper", "budget: smoke").replace("seeds:", "  - name: noted_net\nseeds:")
    suite = load_suite(suite_file(tmp_path, text), [f"output={tmp_path / 'runs'}", f"reports={tmp_path / 'reports'}"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    notes: list[str] = []
    run = run_suite(suite, options(tmp_path, tiny_kdef, tracking=True, tracking_uri=uri), Progress(note=notes.append))
    assert all(o.status == store.COMPLETE for o in run.outcomes)
    assert any("LEAKY PROTOCOL" in n and LEAKY_LABEL in n for n in notes)
    assert "noted_net: trained from scratch: not the paper's setting" in notes

    # the model was selected on the test part: the last epoch's validation accuracy is its test accuracy
    leaky = next(o for o in run.outcomes if o.cell.leaky and o.cell.architecture == "lanmsff")
    history = store.read_json(leaky.folder / store.HISTORY)
    predictions = pd.read_csv(leaky.folder / store.PREDICTIONS)
    clean = predictions[predictions["condition"] == "clean"]
    assert history[-1]["val_accuracy"] == pytest.approx((clean["label"] == clean["pred"]).mean())
    assert store.read_json(leaky.folder / store.RESULT)["images"]["val"] == len(clean)

    out = io.StringIO()
    print_leaderboards(Console(file=out, width=100, force_terminal=False), run)
    terminal = out.getvalue()
    main, clean_view = terminal.split("leaky: clean")
    assert LEAKY_LABEL in " ".join(main.split()) and LEAKY_LABEL not in " ".join(clean_view.split())

    report = run.report["markdown"].read_text()
    assert f"## Leaderboard (synthetic data) ({LEAKY_LABEL})" in report
    assert "noted_net: trained from scratch: not the paper's setting" in report
    view_report = (run.report["markdown"].parent / "views" / "clean" / "report.md").read_text()
    assert LEAKY_LABEL not in view_report

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("leaky").experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["leaky"] == "true" and parent.data.tags["leaky_note"] == LEAKY_LABEL
    assert parent.data.tags["model_selection"] == "test fold in main; validation split elsewhere"
    children = [r.data.tags for r in runs if r is not parent]  # the cells, and the summary runs say it too
    assert sorted(tags["fbench.kind"] for tags in children) == ["cell"] * 4 + ["summary"] * 4
    assert len({(tags["view"], tags["label"], tags["fbench.kind"]) for tags in children}) == 8
    for tags in children:
        view = tags["view"]
        if view == "main":
            assert (tags["leaky"], tags["model_selection"], tags["leaky_note"]) == ("true", "test fold", LEAKY_LABEL)
        else:
            assert (tags["leaky"], tags["model_selection"]) == ("false", "validation split")
            assert "leaky_note" not in tags


def test_scan_cci_without_backbone_weights_is_noted_as_not_the_papers_setting(tmp_path, tiny_kdef):
    text = SUITE.replace("  - name: lanmsff\n    input_size: 32\n",
                         "  - name: scan_cci\n  - name: scan_cci\n    label: pretrained\n"
                         "    options: {backbone_weights: /weights/resnet50.pth}\n")
    notes: list[str] = []
    prepared = prepare(load_suite(suite_file(tmp_path, text)), options(tmp_path, tiny_kdef),
                       Progress(note=notes.append))
    expected = [n for n in notes if "trunk from scratch: not the paper's setting" in n]
    assert len(expected) == 1 and expected[0].startswith("scan_cci: ") and "backbone_weights" in expected[0]
    assert setting_notes(prepared.cells) == expected
