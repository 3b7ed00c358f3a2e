"""Leaderboard formats: CSV and JSON rows of plain numbers, the report's Markdown table, LaTeX with booktabs (compiled
where pdflatex is installed), the report folder's leaderboard files and `fbench leaderboard --format`."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from fbench.cli import build_parser, main
from fbench.report.formats import (
    FORMATS,
    format_leaderboard,
    latex_escape,
    leaderboard_csv,
    leaderboard_json,
    leaderboard_latex,
    leaderboard_markdown,
    leaderboard_rows,
)
from fbench.report.tables import ReportData, leaderboard_table

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
OCC = "occlusion:kind=rectangle,severity=0.25"
# label: clean accuracy, occluded accuracy, params, MACs
ARCHS = {"lanmsff": (0.80, 0.70, 356_300, 300.6e6), "res_net&18": (0.70, 0.65, 11.2e6, 1.82e9),
         "vit~tiny": (0.90, 0.50, 5.7e6, 6.98e9)}


def board(**overrides) -> ReportData:
    """lanmsff the reference, res_net&18 significantly worse, vit~tiny best but incomplete (not ranked)."""
    rows, poses = [], []
    for label, (clean, occluded, _, _) in ARCHS.items():
        for condition, accuracy in (("clean", clean), (OCC, occluded)):
            rows.append({"label": label, "condition": condition, "accuracy_mean": accuracy, "accuracy_std": 0.01,
                         "accuracy_ci_low": accuracy - 0.02, "accuracy_ci_high": accuracy + 0.02,
                         "balanced_accuracy_mean": accuracy - 0.03, "macro_f1_mean": accuracy - 0.05,
                         "drop_from_clean_mean": clean - accuracy, "n_runs": 3})
        poses += [{"label": label, "pose": "S", "accuracy_mean": clean + 0.05},
                  {"label": label, "pose": "FL", "accuracy_mean": clean - 0.2}]
    efficiency = pd.DataFrame([{"label": label, "params": params, "macs": macs}
                               for label, (_, _, params, macs) in ARCHS.items()])
    comparisons = pd.DataFrame([{"system": "res_net&18", "reference": "lanmsff", "condition": "clean", "n": 600,
                                 "p_holm": 0.0004, "significant": True}])
    fields = dict(suite="multiview", title="multiview", leaderboard=pd.DataFrame(rows), comparisons=comparisons,
                  per_pose=pd.DataFrame(poses), efficiency=efficiency, synthetic=True,
                  incomplete={"vit~tiny": "cells 1 of 2"})
    fields.update(overrides)
    return ReportData(**fields)


VIEWS = [("main", board()), ("subject", board(incomplete={}, synthetic=False))]


def test_csv_is_one_row_per_architecture_and_view_with_plain_numbers():
    text = leaderboard_csv(VIEWS)
    assert "±" not in text and "%" not in text
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == 6 and not frame.duplicated(["view", "architecture"]).any()
    main_rows = frame[frame["view"] == "main"].set_index("architecture")
    assert list(main_rows.index) == ["lanmsff", "res_net&18", "vit~tiny"]  # the incomplete one last, unranked
    assert main_rows["rank"].tolist()[:2] == [1, 2] and pd.isna(main_rows.loc["vit~tiny", "rank"])
    assert frame[frame["view"] == "subject"]["architecture"].tolist()[0] == "vit~tiny"  # complete there: ranked 1st
    row = main_rows.loc["res_net&18"]
    assert row["accuracy_mean"] == pytest.approx(0.70) and row["accuracy_ci_low"] == pytest.approx(0.68)
    assert row[f"{OCC}.accuracy"] == pytest.approx(0.65) and row[f"{OCC}.drop_from_clean"] == pytest.approx(0.05)
    assert row["pose=S.accuracy"] == pytest.approx(0.75) and row["pose=FL.accuracy"] == pytest.approx(0.50)
    assert row["params"] == 11_200_000 and row["macs"] == 1_820_000_000
    assert (row["significance"], row["reference"], row["p_holm"]) == ("significant", "lanmsff", 0.0004)
    assert main_rows.loc["lanmsff", "significance"] == "reference"
    assert frame["synthetic"].tolist() == [True] * 3 + [False] * 3
    for column in ("accuracy_mean", "accuracy_std", "balanced_accuracy_mean", "macro_f1_mean", "params"):
        assert pd.api.types.is_numeric_dtype(frame[column]), column


def test_json_round_trips_the_rows():
    records = json.loads(leaderboard_json(VIEWS))
    rows = leaderboard_rows(VIEWS)
    assert [r["architecture"] for r in records] == rows["architecture"].tolist()
    for record, row in zip(records, rows.to_dict("records"), strict=True):
        assert list(record) == list(row)
        assert all(record[k] == row[k] if record[k] is not None else pd.isna(row[k]) for k in record), record
    first = records[0]
    assert first["rank"] == 1 and isinstance(first["params"], int) and first["accuracy_std"] == 0.01
    assert records[2]["rank"] is None and records[2]["incomplete"] is True


def test_latex_is_a_booktabs_table_with_bold_bests_marks_and_escapes():
    text = leaderboard_latex(VIEWS[:1])
    lines = text.splitlines()
    order = [lines.index(rule) for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\end{tabular}")]
    assert order == sorted(order) and text.count("\\begin{tabular}{rl") == 1
    body = lines[order[1] + 1:order[2]]
    assert len(body) == 3 and all(line.endswith("\\\\") for line in body)
    assert body[0].startswith("1 & lanmsff$^{\\dagger}$ & \\textbf{80.0} $\\pm$ 1.0 [78.0, 82.0] & ")
    assert body[1].startswith("2 & res\\_net\\&18$^{*}$ & 70.0 $\\pm$ 1.0 [68.0, 72.0] & ")
    # vit~tiny is best on clean accuracy but unranked: it is not the bold one
    assert body[2].startswith("-- & vit\\textasciitilde{}tiny (incomplete) & 90.0 $\\pm$")
    assert "\\textbf{70.0} ($-10.0$)" in body[0]  # best under occlusion, with its change from clean
    assert "\\textbf{356.3 K}" in body[0] and "\\textbf{300.6 M}" in body[0]  # fewest params and MACs
    header = lines[order[0] + 1]
    assert "MACs" in header and "occlusion rectangle s=0.25" in header
    notes = text.split("\\end{tabular}")[1]
    assert "$^{\\dagger}$ reference" in notes and "$^{*}$" in notes and "Holm" in notes
    assert "Synthetic data" in text and "±" not in text
    assert latex_escape("a_b & 50% {x} #1 $ ^ ~ \\") == ("a\\_b \\& 50\\% \\{x\\} \\#1 \\$ \\textasciicircum{} "
                                                           "\\textasciitilde{} \\textbackslash{}")


def compile_latex(table: str, folder: Path) -> subprocess.CompletedProcess:
    document = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[landscape,margin=1cm]{geometry}\n"
                f"\\begin{{document}}\n{table}\\end{{document}}\n")
    (folder / "board.tex").write_text(document)
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "board.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def latex_missing() -> str | None:
    if shutil.which("pdflatex") is None:
        return "pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)"
    found = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True)
    if found.returncode != 0 or not found.stdout.strip():
        return "booktabs.sty is not installed (apt-get install texlive-latex-recommended)"
    return None


@pytest.mark.skipif(latex_missing() is not None, reason=str(latex_missing()))
def test_latex_compiles_with_pdflatex(tmp_path):
    completed = compile_latex(leaderboard_latex(VIEWS), tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert (tmp_path / "board.pdf").stat().st_size > 0


def test_markdown_is_the_reports_table():
    text = leaderboard_markdown(VIEWS[:1])
    assert text.startswith("## multiview: main (synthetic data)")
    table = leaderboard_table(VIEWS[0][1])
    assert "| " + " | ".join(table.columns) + " |" in text
    assert "| 1 | lanmsff | 80.0 ± 1.0 [78.0, 82.0] |" in text
    assert format_leaderboard(VIEWS, "markdown") == leaderboard_markdown(VIEWS)


# ------------------------------------------------------------------------------------- the command and the report


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory, tiny_kdef):
    """The smoke suite's resnet18 cell, run once with its report (``fbench run``)."""
    folder = tmp_path_factory.mktemp("formats")
    argv = ["--data", f"kdef={tiny_kdef}", "--set", f"output={folder / 'runs'}", "--set",
            f"reports={folder / 'reports'}", "--only", "resnet18"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FBENCH_CACHE", str(folder / "cache"))
        assert main(["run", str(SMOKE), *argv, "--no-tracking", "--device", "cpu"]) == 0
    return folder, argv


def test_the_report_folder_holds_the_leaderboard_files(stored_run):
    folder, _ = stored_run
    (report,) = folder.glob("reports/smoke/*/report.md")
    frame = pd.read_csv(report.parent / "leaderboard.csv")
    assert frame[["view", "architecture", "rank"]].values.tolist() == [["main", "resnet18", 1]]
    assert 0 <= frame.loc[0, "accuracy_mean"] <= 1 and frame.loc[0, "macs"] > 1e6 and frame.loc[0, "synthetic"]
    assert json.loads((report.parent / "leaderboard.json").read_text())[0]["architecture"] == "resnet18"


def test_leaderboard_command_formats(stored_run, capsys, monkeypatch, tmp_path):
    folder, argv = stored_run
    monkeypatch.setenv("FBENCH_CACHE", str(folder / "cache"))
    assert main(["leaderboard", str(SMOKE), *argv, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    frame = pd.read_csv(io.StringIO(captured.out))  # stdout is the CSV alone; notes went to stderr
    assert frame[["view", "architecture"]].values.tolist() == [["main", "resnet18"]]
    assert "SYNTHETIC DATA" in captured.err
    assert main(["leaderboard", str(SMOKE), *argv, "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert re.search(r"\\toprule\n.*\n\\midrule\n1 & resnet18 & \\textbf\{[\d.]+\} \[", latex)
    assert "\\bottomrule" in latex and "Synthetic data" in latex
    if latex_missing() is None:
        assert compile_latex(latex, tmp_path).returncode == 0
    assert main(["leaderboard", str(SMOKE), *argv, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["rank"] == 1
    with pytest.raises(SystemExit) as exit_status:
        main(["leaderboard", str(SMOKE), *argv, "--format", "xlsx"])
    assert exit_status.value.code == 2 and "invalid choice: 'xlsx'" in capsys.readouterr().err


def test_the_commands_choices_are_the_formats():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    leaderboard = commands.choices["leaderboard"]
    (option,) = [a for a in leaderboard._actions if a.dest == "format"]
    assert tuple(option.choices) == FORMATS and option.default == "table"
