"""The leaderboard in the formats people take elsewhere: CSV and JSON for programs, Markdown for notes, LaTeX
(booktabs) for papers; :func:`write_leaderboard_files` puts ``leaderboard.csv`` and ``leaderboard.json`` beside
``report.md``.

Every writer takes ``(view, ReportData)`` pairs, one per view of a suite (the main protocol first).

- :func:`leaderboard_rows`: one row per architecture (its display label) and view, best first, with plain numbers:
  accuracies, drops and intervals as fractions (0.723, not "72.3 ± 1.2"), ``rank`` empty for an architecture left
  unranked; columns named in :data:`ROW_COLUMNS` plus ``<condition>.accuracy`` and ``<condition>.drop_from_clean``
  for every other condition and ``pose=<pose>.accuracy`` per pose. :func:`leaderboard_csv` and
  :func:`leaderboard_json` write them.
- :func:`leaderboard_markdown`: the report's leaderboard table, per view.
- :func:`leaderboard_latex`: a ``table`` with a booktabs ``tabular`` per view (``\\toprule``, ``\\midrule``,
  ``\\bottomrule``): mean ± std with the 95% interval, the best value of each numeric column in bold, the
  significance against the reference as footnote symbols explained under the table, every label escaped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fbench.data.files import write_atomic
from fbench.errors import FbenchError
from fbench.report.document import markdown_document
from fbench.report.tables import (
    ReportData,
    budget_limited_lines,
    comparison_by_label,
    efficiency_by_label,
    format_count,
    is_finite,
    leaderboard_table,
    order_poses,
    ranking,
    significance_marks,
)
from fbench.suite.conditions import CLEAN, condition_label

__all__ = [
    "FORMATS",
    "LEADERBOARD_FILES",
    "ROW_COLUMNS",
    "format_leaderboard",
    "latex_escape",
    "leaderboard_csv",
    "leaderboard_json",
    "leaderboard_latex",
    "leaderboard_markdown",
    "leaderboard_rows",
    "write_leaderboard_files",
]

# `fbench leaderboard --format`: table is the terminal's rich table (fbench.progress); the others are written here.
FORMATS = ("table", "markdown", "csv", "json", "latex")
LEADERBOARD_FILES = {"leaderboard_csv": "leaderboard.csv", "leaderboard_json": "leaderboard.json"}
# The columns every row has, in order; condition and pose columns follow the clean metrics, costs after them.
ROW_COLUMNS = ("view", "rank", "architecture", "status", "incomplete", "n_runs", "accuracy_mean", "accuracy_std",
               "accuracy_ci_low", "accuracy_ci_high", "balanced_accuracy_mean", "balanced_accuracy_std",
               "macro_f1_mean", "macro_f1_std", "params", "macs", "latency_ms", "significance", "reference",
               "p_holm", "synthetic", "note")
_SIGNIFICANCE = {"ref": "reference", "*": "significant", "n.s.": "not significant"}
Views = Sequence[tuple[str, ReportData]]


def _number(value: Any) -> float | None:
    return float(value) if is_finite(value) else None


def _clean_row(data: ReportData, label: str) -> dict[str, Any]:
    lb = data.leaderboard
    rows = lb[(lb["label"].astype(str) == label) & (lb["condition"] == CLEAN)]
    return rows.iloc[0].to_dict() if len(rows) else {}


def _conditions(data: ReportData) -> list[str]:
    return [c for c in dict.fromkeys(str(v) for v in data.leaderboard["condition"]) if c != CLEAN]


def _condition_values(data: ReportData, label: str, condition: str, clean_mean: float | None
                      ) -> tuple[float | None, float | None]:
    """(accuracy, drop from clean) of ``label`` under ``condition``; the drop is the paired one where stored, else
    the difference of the means."""
    lb = data.leaderboard
    rows = lb[(lb["label"].astype(str) == label) & (lb["condition"] == condition)]
    if not len(rows):
        return None, None
    row = rows.iloc[0]
    accuracy = _number(row.get("accuracy_mean"))
    drop = _number(row.get("drop_from_clean_mean"))
    if drop is None and accuracy is not None and clean_mean is not None:
        drop = clean_mean - accuracy
    return accuracy, drop


def leaderboard_rows(views: Views) -> pd.DataFrame:
    """One row per architecture and view, in leaderboard order, with plain numbers (see the module's docstring)."""
    rows: list[dict[str, Any]] = []
    for view, data in views:
        if data.leaderboard.empty and not data.budget_limited:
            continue
        efficiency = efficiency_by_label(data)
        marks = significance_marks(data)
        comparisons = comparison_by_label(data)
        conditions = _conditions(data)
        per_pose = data.per_pose if isinstance(data.per_pose, pd.DataFrame) else pd.DataFrame()
        poses = order_poses(per_pose["pose"]) if not per_pose.empty else []
        for label, rank in ranking(data):
            clean = _clean_row(data, label)
            row: dict[str, Any] = {"view": view, "rank": rank, "architecture": label,
                                   "status": "incomplete" if label in data.incomplete else "complete",
                                   "incomplete": label in data.incomplete, "n_runs": _number(clean.get("n_runs"))}
            for name in ROW_COLUMNS[ROW_COLUMNS.index("accuracy_mean"):ROW_COLUMNS.index("params")]:
                row[name] = _number(clean.get(name))
            for condition in conditions:
                row[f"{condition}.accuracy"], row[f"{condition}.drop_from_clean"] = _condition_values(
                    data, label, condition, row["accuracy_mean"])
            for pose in poses:
                if f"pose={pose}" in conditions:  # the same subset, already a condition column
                    continue
                match = per_pose[(per_pose["label"].astype(str) == label) & (per_pose["pose"] == pose)]
                row[f"pose={pose}.accuracy"] = _number(match["accuracy_mean"].iloc[0]) if len(match) else None
            cost = efficiency.get(label, {})
            row.update(params=_number(cost.get("params")), macs=_number(cost.get("macs")),
                       latency_ms=_number(cost.get("latency_ms")))
            comparison = comparisons.get(label, {})
            reference = [name for name, mark in marks.items() if mark == "ref"]
            row.update(significance=_SIGNIFICANCE.get(marks.get(label, ""), ""),
                       reference=reference[0] if reference else "", p_holm=_number(comparison.get("p_holm")),
                       synthetic=bool(data.synthetic), note="")
            rows.append(row)
        for label, reason in data.budget_limited.items():  # listed, not trained, not ranked
            cost = efficiency.get(label, {})
            rows.append({"view": view, "rank": None, "architecture": label, "status": "budget-limited",
                         "incomplete": False, "params": _number(cost.get("params")),
                         "macs": _number(cost.get("macs")), "synthetic": bool(data.synthetic),
                         "note": f"budget-limited on this device: {reason}"})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    extra = [c for c in frame.columns if c not in ROW_COLUMNS]
    first, costs = list(ROW_COLUMNS[:ROW_COLUMNS.index("params")]), list(ROW_COLUMNS[ROW_COLUMNS.index("params"):])
    frame = frame[first + extra + costs]
    for name in ("rank", "n_runs", "params", "macs"):  # counts: integers, empty where missing
        frame[name] = pd.to_numeric(frame[name]).round().astype("Int64")
    return frame


def leaderboard_csv(views: Views) -> str:
    """:func:`leaderboard_rows` as CSV (missing values empty)."""
    return str(leaderboard_rows(views).to_csv(index=False))


def leaderboard_json(views: Views) -> str:
    """:func:`leaderboard_rows` as a JSON list of objects (missing values null)."""
    frame = leaderboard_rows(views).astype(object)
    records = [{key: (None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
                      else value) for key, value in record.items()} for record in frame.to_dict("records")]
    return json.dumps(records, indent=2, default=str) + "\n"


def leaderboard_markdown(views: Views) -> str:
    """The report's leaderboard table (as in ``report.md``) under a heading per view."""
    blocks: list[tuple[Any, ...]] = []
    for view, data in views:
        blocks.append(("h", 2, f"{data.suite}: {view}" + (" (synthetic data)" if data.synthetic else "")))
        table = leaderboard_table(data)
        blocks.append(("table", table) if not table.empty else ("p", "No results."))
        if data.budget_limited:
            blocks.append(("list", budget_limited_lines(data)))
    return markdown_document(blocks, {})


# -------------------------------------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_MARK_SYMBOL = {"ref": r"$^{\dagger}$", "*": r"$^{*}$"}


def latex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (``resnet_18 & co`` -> ``resnet\\_18 \\& co``)."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _pct(value: float | None) -> str:
    return f"{100.0 * value:.1f}" if value is not None else "--"


def _bold_best(values: list[float | None], lower_is_better: bool, ranked: list[bool]) -> list[bool]:
    """Which entries equal the best one (as displayed) among the ranked rows."""
    shown = [round(v, 4) if v is not None and r else None for v, r in zip(values, ranked, strict=True)]
    candidates = [v for v in shown if v is not None]
    if not candidates:
        return [False] * len(values)
    best = min(candidates) if lower_is_better else max(candidates)
    return [v == best for v in shown]


def _bf(text: str, bold: bool) -> str:
    return rf"\textbf{{{text}}}" if bold else text


def _latex_table(view: str, data: ReportData) -> str:
    frame = leaderboard_rows([(view, data)])
    if frame.empty:
        return f"% {latex_escape(data.suite)}, view {latex_escape(view)}: no results\n"
    marks = significance_marks(data)
    conditions = _conditions(data)
    ranked = [not pd.isna(rank) for rank in frame["rank"]]

    def column(name: str) -> list[float | None]:
        return [_number(v) for v in frame[name]] if name in frame.columns else [None] * len(frame)

    columns: list[tuple[str, list[str]]] = []  # (header, cells)
    means = column("accuracy_mean")
    bold = _bold_best([round(100 * v, 1) if v is not None else None for v in means], False, ranked)
    clean_cells = []
    for i, (mean, std, low, high) in enumerate(zip(means, column("accuracy_std"), column("accuracy_ci_low"),
                                                   column("accuracy_ci_high"), strict=True)):
        text = _bf(_pct(mean), bold[i])
        if std is not None:
            text += rf" $\pm$ {_pct(std)}"
        if low is not None and high is not None:
            text += f" [{_pct(low)}, {_pct(high)}]"
        clean_cells.append(text)
    columns.append((r"Clean acc.\ (\%)", clean_cells))
    shown = [("balanced_accuracy_mean", "Bal.\\ acc."), ("macro_f1_mean", "Macro-F1")]
    shown += [(f"{c}.accuracy", latex_escape(condition_label(c))) for c in conditions]
    for name, title in shown:
        values = column(name)
        bold = _bold_best([round(100 * v, 1) if v is not None else None for v in values], False, ranked)
        drops = column(name.replace(".accuracy", ".drop_from_clean")) if name.endswith(".accuracy") else None
        cells = []
        for i, value in enumerate(values):
            text = _bf(_pct(value), bold[i])
            drop = drops[i] if drops is not None else None
            if drop is not None:
                text += f" (${-100.0 * drop:+.1f}$)"
            cells.append(text)
        columns.append((title, cells))
    for name, title, fmt in (("params", "Params", format_count), ("macs", "MACs", format_count),
                              ("latency_ms", "Latency (ms)", lambda v: f"{v:.1f}")):
        values = column(name)
        if any(v is not None for v in values):
            bold = _bold_best(values, True, ranked)
            columns.append((title, [_bf(fmt(v), bold[i]) if v is not None else "--" for i, v in enumerate(values)]))

    labels = []
    for label, status in zip(frame["architecture"], frame["status"], strict=True):
        labels.append(latex_escape(label) + _MARK_SYMBOL.get(marks.get(str(label), ""), "")
                      + (f" ({status})" if status != "complete" else ""))
    ranks = [str(int(rank)) if not pd.isna(rank) else "--" for rank in frame["rank"]]
    header = ["\\#", "Architecture", *(h for h, _ in columns)]
    lines = [f"% fbench leaderboard: suite {latex_escape(data.suite)}, view {latex_escape(view)}"
             + (" (SYNTHETIC DATA)" if data.synthetic else "") + "; needs \\usepackage{booktabs}",
             "\\begin{table}[htbp]", "\\centering", "\\footnotesize"]
    caption = (f"{latex_escape(data.suite)}: {latex_escape(view)}. Accuracy in \\%: mean $\\pm$ std over runs "
               "[hierarchical bootstrap 95\\% CI]; conditions: accuracy (change from clean, points)")
    if "MACs" in header:
        caption += "; MACs: multiply-accumulates per image"
    if data.synthetic:
        caption += ". Synthetic data: procedurally rendered faces, not a real dataset"
    lines += [f"\\caption{{{caption}.}}", f"\\label{{tab:{re.sub(r'[^A-Za-z0-9]+', '-', f'{data.suite}-{view}')}}}",
              "\\begin{tabular}{rl" + "r" * len(columns) + "}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
    for i in range(len(frame)):
        lines.append(" & ".join([ranks[i], labels[i], *(cells[i] for _, cells in columns)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    notes = ["Bold: the best value of each column among ranked architectures."]
    if marks:
        notes.append("$^{\\dagger}$ reference (best clean accuracy); $^{*}$ clean accuracy differs significantly "
                     "from the reference (paired exact McNemar test on unique test images, Holm-adjusted, "
                     "$p < 0.05$); unmarked: not significant.")
    if data.incomplete:
        notes.append("(incomplete): cells missing, failed or corrupt; "
                     + ("ranked anyway." if data.partial else "not ranked (--)."))
    if data.budget_limited:
        notes.append("(budget-limited): not trained, as the budget could not train it on this device in its "
                     "time; not ranked.")
    lines += ["", "\\smallskip", "\\parbox{\\linewidth}{\\raggedright " + " ".join(notes) + "}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def leaderboard_latex(views: Views) -> str:
    """A LaTeX ``table`` with a booktabs ``tabular`` per view (see the module's docstring); needs
    ``\\usepackage{booktabs}``."""
    return "\n".join(_latex_table(view, data) for view, data in views)


def format_leaderboard(views: Views, fmt: str) -> str:
    """The leaderboard of ``views`` as ``fmt``: ``markdown``, ``csv``, ``json`` or ``latex`` (``table``, the
    terminal's, is :func:`fbench.progress.print_leaderboards`)."""
    writers = {"markdown": leaderboard_markdown, "csv": leaderboard_csv, "json": leaderboard_json,
               "latex": leaderboard_latex}
    if fmt not in writers:
        raise FbenchError(f"unknown leaderboard format {fmt!r}; use one of {', '.join(writers)} (or table in the "
                          "terminal)")
    return writers[fmt](views)


def write_leaderboard_files(folder: Path, views: Views) -> dict[str, Path]:
    """``leaderboard.csv`` and ``leaderboard.json`` in ``folder`` (each written atomically); returns
    ``{"leaderboard_csv": path, "leaderboard_json": path}``."""
    texts = {"leaderboard_csv": leaderboard_csv(views), "leaderboard_json": leaderboard_json(views)}
    paths = {key: Path(folder) / name for key, name in LEADERBOARD_FILES.items()}
    for key, path in paths.items():
        write_atomic(path, texts[key].encode("utf-8"))
    return paths
