"""The cross-dataset report and terminal table: the matrix per architecture (rows trained on, columns tested on)
with intervals and chance, the cells' scored classes and images left out, the heat map; from a made-up matrix."""

from __future__ import annotations

import io

import pandas as pd
from rich.console import Console

from fbench.progress import print_cross
from fbench.report.cross import CORNER, CrossReportData, cells_table, matrix_table, write_cross_report
from fbench.score.cross import MATRIX_COLUMNS

SEVEN = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def _row(label: str, train: str, test: str, accuracy: float, condition: str = "clean", dropped: int = 0,
         scored: list[str] | None = None, in_dataset: float = 0.8) -> dict:
    scored = scored or SEVEN
    return {"label": label, "train": train, "test": test, "condition": condition, "accuracy_mean": accuracy,
            "accuracy_ci_low": accuracy - 0.05, "accuracy_ci_high": accuracy + 0.04, "n_runs": 3, "n_images": 400,
            "chance": 1 / len(scored), "scored_classes": scored, "dropped": dropped,
            "dropped_by_class": {"contempt": dropped} if dropped else {},
            "in_dataset": in_dataset, "drop_from_in_dataset": in_dataset - accuracy}


def _matrix() -> pd.DataFrame:
    rows = []
    for label in ("resnet10t", "mobilenetv3-small"):
        rows += [_row(label, "kdef", "kdef", 0.8), _row(label, "kdef", "jaffe", 0.41),
                 _row(label, "kdef", "ckplus", 0.52, dropped=18),
                 _row(label, "synthetic-source", "kdef", 0.3, in_dataset=0.9),
                 _row(label, "synthetic-source", "synthetic-source", 0.9, in_dataset=0.9),
                 _row(label, "kdef", "jaffe", 0.33, condition="mask:kind=surgical")]
    return pd.DataFrame(rows, columns=list(MATRIX_COLUMNS))


def test_the_matrix_table_has_a_row_per_training_set_and_a_column_per_test_set():
    table = matrix_table(_matrix(), "resnet10t")
    assert list(table.columns) == [CORNER, "kdef", "jaffe", "ckplus", "synthetic-source"]
    assert list(table[CORNER]) == ["kdef", "synthetic-source"]
    kdef = table.set_index(CORNER).loc["kdef"]
    assert kdef["jaffe"] == "41.0 [36.0, 45.0]; chance 14.3"
    assert table.set_index(CORNER).loc["synthetic-source", "jaffe"] == "–"  # never tested: no result


def test_the_cells_table_names_scored_classes_left_out_images_and_the_drop_from_in_dataset():
    table = cells_table(_matrix()).set_index(["architecture", "trained on", "tested on"])
    ckplus = table.loc[("resnet10t", "kdef", "ckplus")]
    assert ckplus["left out"] == "18 (contempt 18)" and ckplus["scored classes"].startswith("7: neutral")
    assert ckplus["change from in-dataset"] == "-28.0" and ckplus["chance %"] == "14.3"
    assert table.loc[("resnet10t", "kdef", "kdef"), "change from in-dataset"] == "(diagonal)"


def test_the_report_holds_each_architectures_matrix_the_heat_map_and_the_conditions(tmp_path):
    data = CrossReportData(suite="cross-dataset", title="cross-dataset: trained on × tested on", matrix=_matrix(),
                           datasets=["kdef: 4,900 images at /data/kdef"], left_out={"rafd": "no location given"},
                           synthetic=True, budget="smoke", budget_cuts=["folds 10 → 1"],
                           pair_reports={"kdef-to-jaffe": "views/kdef-to-jaffe/report.md"},
                           per_pose=pd.DataFrame([
                               {"label": "resnet10t", "train": "kdef", "test": "synthetic-source", "pose": pose,
                                "accuracy_mean": value, "accuracy_ci_low": value - 0.1, "accuracy_ci_high": value}
                               for pose, value in (("S", 0.5), ("FL", 0.2))]))
    paths = write_cross_report(tmp_path, data)
    report = paths["markdown"].read_text()
    for text in ("## resnet10t: accuracy % by trained on (rows) × tested on (columns)",
                 "## mobilenetv3-small: accuracy %", "| trained on ↓ / tested on → | kdef | jaffe | ckplus |",
                 "41.0 [36.0, 45.0]; chance 14.3", "18 (contempt 18)", "### resnet10t, mask:kind=surgical",
                 "rafd (no location given)", "views/kdef-to-jaffe/report.md", "Synthetic data", "](cross_matrix.png)",
                 "| trained on → tested on | FL | S |", "| kdef → synthetic-source | 20.0 [10.0, 20.0] | 50.0"):
        assert text in report, text
    assert paths["cross_matrix"].read_bytes().startswith(b"\x89PNG")
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "trained on ↓ / tested on →" in html


def test_the_terminal_matrix_fits_80_columns():
    class Run:
        cross = _matrix()
        budget = "smoke"

        class suite:  # noqa: N801 - a stand-in for the Suite's name
            name = "cross-dataset"

        class dataset:  # noqa: N801
            synthetic = False

        class completeness:  # noqa: N801
            gaps: list = []

    buffer = io.StringIO()
    print_cross(Console(file=buffer, width=80, color_system=None), Run())
    text = buffer.getvalue()
    assert "trained on" in text and "tested on" in text and "[36.0-45.0]" in text and "chance 14.3" in text
    assert "[hierarchical bootstrap 95% CI]" in text
    assert "kdef -> ckplus: 18 image(s) left out (contempt 18)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
