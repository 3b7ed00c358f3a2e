"""Reports: leaderboard table, plots, Markdown and self-contained HTML, from small synthetic frames."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbench.errors import FbenchError
from fbench.report.document import SYNTHETIC_BANNER, report_folder, write_report
from fbench.report.plots import PLOT_FILES, make_figures, pareto_front, plot_occlusion, plot_pose
from fbench.report.tables import (
    ReportData,
    format_macs,
    format_params,
    format_pct,
    leaderboard_table,
    order_poses,
    per_pose_table,
)
from fbench.suite.conditions import condition_label, perturbation_point, read_condition

CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
OCC = ("occlusion:kind=rectangle,severity=0.25", "occlusion:kind=rectangle,severity=0.5")
MASKS = ("mask:kind=surgical", "mask:kind=n95")
CONDITIONS = ("clean", "pose=FL", *OCC, *MASKS)
# clean accuracy and, per condition, how much it loses
ARCHS = {"LANMSFF": 0.80, "ResNet-18": 0.70, "ViT-Tiny": 0.60}
LOSS = {"clean": 0.0, "pose=FL": 0.15, OCC[0]: 0.10, OCC[1]: 0.20, MASKS[0]: 0.25, MASKS[1]: 0.30}
BUDGET_CUTS = ["epochs 60 -> 2", "folds 10 -> 1", "architectures: dropped convnext_base"]


def _metric(prefix: str, mean: float, spread: float = 0.02) -> dict[str, float]:
    return {f"{prefix}_mean": mean, f"{prefix}_std": spread / 2, f"{prefix}_ci_low": mean - spread,
            f"{prefix}_ci_high": mean + spread}


def make_data(labels: dict[str, str] | None = None, **overrides) -> ReportData:
    """Three architectures; ``labels`` renames them (architecture -> display label)."""
    labels = labels or {a: a for a in ARCHS}
    rng = np.random.default_rng(0)
    leaderboard, conditions, per_pose, efficiency, confusions = [], [], [], [], {}
    # rows deliberately not in accuracy order
    for arch in ("ViT-Tiny", "LANMSFF", "ResNet-18"):
        clean, label = ARCHS[arch], labels[arch]
        for cond in CONDITIONS:
            acc = clean - LOSS[cond]
            row = {"label": label, "architecture": arch, "variant": "default", "condition": cond,
                   **_metric("accuracy", acc), **_metric("balanced_accuracy", acc - 0.03),
                   **_metric("macro_f1", acc - 0.05), **_metric("drop_from_clean", LOSS[cond]), "n_runs": 3}
            leaderboard.append(row)
            if cond.startswith(("occlusion", "mask")):
                conditions.append({"label": label, "condition": cond, **_metric("accuracy", acc),
                                   **_metric("drop_from_clean", LOSS[cond])})
        for pose, loss in (("S", 0.0), ("FR", 0.2), ("HL", 0.05), ("FL", 0.22), ("HR", 0.06)):  # scrambled
            per_pose.append({"label": label, "pose": pose, **_metric("accuracy", clean - loss, 0.03)})
        confusion = rng.integers(0, 5, size=(7, 7)) + np.diag(np.full(7, 30))
        confusion[6] = 0  # a class with no samples: its row must not divide by zero
        confusions[label] = (confusion, CLASSES)
    efficiency = [
        {"label": labels["LANMSFF"], "params": 356_300, "macs": 300.6e6, "latency_ms": 3.2, "accuracy_mean": 0.80},
        {"label": labels["ResNet-18"], "params": 11.2e6, "macs": 1.82e9, "latency_ms": 2.1, "accuracy_mean": 0.70},
        {"label": labels["ViT-Tiny"], "params": 5.7e6, "macs": 6.98e9, "latency_ms": 4.0, "accuracy_mean": 0.60},
    ]
    comparisons = pd.DataFrame([
        {"system": "ResNet-18/default", "reference": "LANMSFF/default", "condition": "clean", "n": 600,
         "accuracy": 0.70, "reference_accuracy": 0.80, "diff": -0.10, "ci_low": -0.14, "ci_high": -0.06,
         "bootstrap_p": 0.0002, "mcnemar_b": 20, "mcnemar_c": 80, "mcnemar_p": 0.0001, "p_holm": 0.0002,
         "significant": True},
        {"system": "ViT-Tiny/default", "reference": "LANMSFF/default", "condition": "clean", "n": 600,
         "accuracy": 0.60, "reference_accuracy": 0.80, "diff": -0.20, "ci_low": -0.45, "ci_high": 0.05,
         "bootstrap_p": 0.2, "mcnemar_b": 40, "mcnemar_c": 55, "mcnemar_p": 0.15, "p_holm": 0.15,
         "significant": False},
    ])
    fields = dict(
        suite="multiview",
        title="fbench report: multiview",
        leaderboard=pd.DataFrame(leaderboard),
        comparisons=comparisons,
        per_pose=pd.DataFrame(per_pose),
        conditions=pd.DataFrame(conditions),
        efficiency=pd.DataFrame(efficiency),
        confusions=confusions,
        failures=[{"cell": "vit_tiny-f2-s1", "label": labels["ViT-Tiny"], "reason": "CUDA out of memory"}],
        provenance={"suite file": "suites/multiview.yaml", "suite hash": "abc123", "git commit": "deadbeef",
                    "versions": {"fbench": "0.1", "torch": "2.4", "timm": "1.0"}, "hardware": "2-core CPU",
                    "device": "cpu", "command line": "fbench run suites/multiview.yaml --budget quick"},
        synthetic=True,
        synthetic_note="fbench synthetic faces v1, seed 0.",
        budget="quick",
        budget_cuts=list(BUDGET_CUTS),
        leaky_protocol="lanmsff-paper-kdef",
        cells={"total": 9, "run": 7, "reused": 1, "failed": 1},
    )
    fields.update(overrides)
    return ReportData(**fields)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(tmp_path_factory.mktemp("report"), make_data())


def test_write_report_writes_every_file(written: dict[str, Path]) -> None:
    assert written["markdown"].name == "report.md" and written["html"].name == "report.html"
    for name, filename in PLOT_FILES.items():
        assert written[name].name == filename
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(path.exists() for path in written.values())
    assert not list(written["markdown"].parent.glob(".*")), "temporary files left behind"


def test_markdown_banners_budget_labels_and_macs(written: dict[str, Path]) -> None:
    md = written["markdown"].read_text()
    assert SYNTHETIC_BANNER in md
    assert "Leaky protocol: lanmsff-paper-kdef" in md
    assert "Budget: quick" in md
    for cut in BUDGET_CUTS:
        assert f"- {cut}" in md
    for label in ARCHS:
        assert label in md
    # the unit once, in the header (issue 15): "| 300.6 M |", not "300.6 M MACs" in every cell
    assert "| MACs |" in md and "| 300.6 M |" in md and "M MACs" not in md
    assert "flops" not in md.lower()
    assert "CUDA out of memory" in md and "vit_tiny-f2-s1" in md
    for filename in PLOT_FILES.values():
        assert f"]({filename})" in md  # relative links
    assert "git commit: deadbeef" in md
    # the banners come before the leaderboard
    assert md.index(SYNTHETIC_BANNER) < md.index("## Leaderboard")


def test_html_is_self_contained(written: dict[str, Path]) -> None:
    page = written["html"].read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(PLOT_FILES)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "href=" not in page and "<link" not in page and "<script" not in page
    assert SYNTHETIC_BANNER in page and "lanmsff-paper-kdef" in page
    assert "flops" not in page.lower()


def test_html_escapes_labels(tmp_path: Path) -> None:
    evil = "<script>alert('x')</script>"
    data = make_data(labels={"LANMSFF": evil, "ResNet-18": "ResNet-18", "ViT-Tiny": "ViT & Tiny"})
    paths = write_report(tmp_path, data)
    page = paths["html"].read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "ViT &amp; Tiny" in page
    md = paths["markdown"].read_text()
    assert "\\<script>" in md and "\\</script>" in md  # Markdown would otherwise read it as a tag


def test_leaderboard_order_marks_and_formats() -> None:
    table = leaderboard_table(make_data())
    assert list(table["architecture"]) == ["LANMSFF", "ResNet-18", "ViT-Tiny"]
    assert list(table["rank"]) == ["1", "2", "3"]
    assert list(table["sig. vs ref"]) == ["ref", "*", "n.s."]
    assert table.loc[0, "clean acc % (mean ± std [CI])"] == "80.0 ± 1.0 [78.0, 82.0]"
    assert table.loc[0, "occlusion rectangle s=0.25"] == "70.0 (-10.0)"
    assert table.loc[2, "mask n95"] == "30.0 (-30.0)"
    assert table.loc[1, "pose FL"] == "55.0 (-15.0)"
    assert list(table["params"]) == ["356.3 K", "11.2 M", "5.70 M"]
    assert list(table["MACs"]) == ["300.6 M", "1.82 G", "6.98 G"]
    assert list(table["runs"]) == ["3", "3", "3"]
    assert "clean" not in table.columns


def test_per_pose_numbers_sit_beside_the_pose_plot(written: dict[str, Path]) -> None:
    table = per_pose_table(make_data())
    assert list(table.columns) == ["architecture", "FL", "HL", "S", "HR", "FR"]
    assert list(table["architecture"]) == ["LANMSFF", "ResNet-18", "ViT-Tiny"]
    assert list(table.iloc[0, 1:]) == ["58.0", "75.0", "80.0", "74.0", "60.0"]
    assert per_pose_table(make_data(per_pose=pd.DataFrame())).empty
    md = written["markdown"].read_text()
    pose_section = md.split("### Accuracy by yaw pose")[1].split("### ")[0]
    assert "(accuracy_by_pose.png)" in pose_section
    assert "| architecture | FL | HL | S | HR | FR |" in pose_section
    assert "| ResNet-18 | 48.0 | 65.0 | 70.0 | 64.0 | 50.0 |" in pose_section
    page = written["html"].read_text()
    pose_html = page.split("Accuracy by yaw pose</h3>")[1].split("<h3>")[0]
    assert "<th>FL</th>" in pose_html and "<td>ViT-Tiny</td><td>38.0</td>" in pose_html


def test_leaderboard_drop_falls_back_to_mean_difference() -> None:
    data = make_data()
    data.leaderboard = data.leaderboard.drop(columns=[c for c in data.leaderboard if c.startswith("drop_")])
    data.conditions = pd.DataFrame()
    table = leaderboard_table(data)
    assert table.loc[0, "mask surgical"] == "55.0 (-25.0)"


def test_only_a_leaderboard_still_writes_both_files(tmp_path: Path) -> None:
    full = make_data()
    data = ReportData(suite="smoke", title="smoke", leaderboard=full.leaderboard)
    assert make_figures(data) == {}
    paths = write_report(tmp_path, data)
    assert set(paths) == {"markdown", "html"}
    assert not list(tmp_path.glob("*.png"))
    page = paths["html"].read_text()
    assert "<img" not in page and SYNTHETIC_BANNER not in page
    md = paths["markdown"].read_text()
    assert "Full run: no budget, nothing cut." in md and "No paired comparisons." in md
    assert "sig. vs ref" not in md and "MACs" not in md

    empty = ReportData(suite="smoke", title="empty", leaderboard=pd.DataFrame())
    assert "No results." in write_report(tmp_path / "empty", empty)["markdown"].read_text()


def test_plots_skip_empty_frames() -> None:
    data = make_data(per_pose=pd.DataFrame(), conditions=pd.DataFrame(), efficiency=pd.DataFrame(), confusions={})
    assert make_figures(data) == {}
    only_masks = make_data(conditions=make_data().conditions.query("condition.str.startswith('mask')"))
    figures = make_figures(only_masks)
    assert "masks" in figures and "occlusion" not in figures


def test_pose_order() -> None:
    assert order_poses(["S", "FR", "HL", "FL", "HR", "S"]) == ["FL", "HL", "S", "HR", "FR"]
    assert order_poses(["HR", "S"]) == ["S", "HR"]
    assert order_poses([30, -15, 0]) == [-15, 0, 30]
    assert order_poses(["up", "down"]) == ["down", "up"]
    fig = plot_pose(make_data())
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [-90, -45, 0, 45, 90]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["FL", "HL", "S", "HR", "FR"]
    # one line per architecture, drawn in yaw order
    xs = [list(bars.lines[0].get_xdata()) for bars in ax.containers]  # the data line of each errorbar
    assert len(xs) == 3 and all(x == [-90, -45, 0, 45, 90] for x in xs)


def test_severity_parsing() -> None:
    assert read_condition("occlusion:kind=rectangle,severity=0.25") == (
        "occlusion", {"kind": "rectangle", "severity": 0.25})
    assert read_condition("clean") == ("clean", {})
    assert read_condition("pose=FL") == ("pose", {"pose": "FL"})
    assert perturbation_point("occlusion:kind=eye_band,severity=0.5") == ("occlusion", "eye_band", 0.5)
    assert perturbation_point("occlusion:severity=1") == ("occlusion", "rectangle", 1.0)
    assert perturbation_point("mask:kind=n95") == ("mask", "n95", 1.0)
    assert perturbation_point("pose=FL") is None and perturbation_point("clean") is None
    assert condition_label("occlusion:kind=rectangle,severity=0.25") == "occlusion rectangle s=0.25"
    assert condition_label("mask:kind=surgical") == "mask surgical"
    fig = plot_occlusion(make_data())
    lines = [bars.lines[0] for bars in fig.axes[0].containers]
    assert len(lines) == 3  # clean at 0, then the two severities
    assert all(list(line.get_xdata()) == [0.0, 0.25, 0.5] for line in lines)
    top = max(lines, key=lambda line: line.get_ydata()[0])
    assert np.allclose(top.get_ydata(), [80.0, 70.0, 60.0])


def test_number_formats() -> None:
    assert format_pct(0.7234) == "72.3" and format_pct(float("nan")) == "–"
    assert format_macs(300.6e6) == "300.6 M" and format_macs(6.98e9) == "6.98 G" and format_macs(None) == "–"
    assert format_params(356_300) == "356.3 K" and format_params(70.2e6) == "70.2 M"
    assert format_params(999_960) == "1.00 M" and format_params(512) == "512"


def test_pareto_front() -> None:
    # (cost, accuracy): the third is dominated by the first; the fourth ties the first's cost but is better
    assert pareto_front([1.0, 10.0, 5.0, 1.0], [0.5, 0.9, 0.4, 0.6]) == [3, 1]


def test_report_folder(tmp_path: Path) -> None:
    assert report_folder(tmp_path, "multiview", "20240131-235959") == tmp_path / "multiview" / "20240131-235959"
    folder = report_folder(tmp_path, "multiview")
    assert folder.parent == tmp_path / "multiview" and re.fullmatch(r"\d{8}-\d{6}", folder.name)
    folder.mkdir(parents=True)
    assert report_folder(tmp_path, "multiview") != folder  # same second: "-1" appended
    with pytest.raises(FbenchError, match="timestamp"):
        report_folder(tmp_path, "multiview", "yesterday")
    with pytest.raises(FbenchError, match="suite name"):
        report_folder(tmp_path, "../etc")


def test_leaky_numbers_and_departures_from_the_papers_are_said_at_the_leaderboard(tmp_path: Path) -> None:
    note = "scan_cci: trunk from scratch: not the paper's setting (give options.backbone_weights=PATH)"
    md = write_report(tmp_path / "leaky", make_data(setting_notes=[note]))["markdown"].read_text()
    board = md.split("## Leaderboard")[1].split("\n## ")[0]
    assert board.startswith(" (synthetic data) (leaky: model selection on the test fold)")
    assert "- Leaky: model selection on the test fold: early stopping" in board and f"- {note}" in board
    clean = write_report(tmp_path / "clean", make_data(leaky_protocol=None))["markdown"].read_text()
    assert "leaky" not in clean.lower()


def test_the_report_states_how_the_face_crops_were_made(tmp_path: Path) -> None:
    counts = {"frontal": 2_900, "profile": 1_700, "fallback": 297}
    md = write_report(tmp_path, make_data(face_crops=counts))["markdown"].read_text()
    assert "Face crops: frontal 2,900, profile 1,700, fallback 297 (Haar detection" in md
    assert "Face crops" not in write_report(tmp_path / "none", make_data())["markdown"].read_text()
