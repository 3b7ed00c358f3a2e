"""Report tables: :class:`ReportData` (everything a report shows) and the display strings built from it.

- :func:`leaderboard_table`: one row per architecture, sorted by clean accuracy, with every other condition's
  accuracy beside its (paired, RobustBench-style) change from clean, params, MACs and a significance mark.
- :func:`comparisons_table`: the paired comparisons against the reference, one row each.
- formatting helpers: accuracies in % with one decimal (:func:`format_pct`); counts as ``356.3 K`` / ``70.2 M``
  (two decimals below 10: ``6.98 G``, :func:`format_count`); MACs as ``300.6 M`` under a header that says MACs
  (multiply-accumulates, never FLOPs, :func:`format_macs`); missing values as :data:`DASH`.
- :func:`per_pose_table`: clean accuracy per architecture and pose, the numbers beside the per-pose plot.
- per-label lookups shared with the plots: clean accuracy and its CI, the order of the labels.

Nothing here imports matplotlib or torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from fbench.errors import FbenchError
from fbench.suite.conditions import CLEAN, condition_label

__all__ = [
    "DASH",
    "POSE_ORDER",
    "POSE_YAW",
    "SUMMARY_COLUMNS",
    "ReportData",
    "clean_accuracy_by_label",
    "clean_ci_by_label",
    "comparison_by_label",
    "comparisons_table",
    "efficiency_by_label",
    "format_count",
    "format_macs",
    "format_params",
    "format_pct",
    "is_finite",
    "label_order",
    "leaderboard_table",
    "order_poses",
    "per_pose_table",
    "ranking",
    "require_columns",
    "significance_marks",
]

POSE_ORDER = ("FL", "HL", "S", "HR", "FR")
POSE_YAW = {"FL": -90.0, "HL": -45.0, "S": 0.0, "HR": 45.0, "FR": 90.0}
DASH = "–"  # a missing value in a table or on a plot
# The leaderboard table's columns that are not conditions (every other column is one condition's accuracy).
SUMMARY_COLUMNS = ("rank", "architecture", "clean acc % (mean ± std [CI])", "balanced acc %", "macro-F1 %",
                   "params", "MACs", "latency", "sig. vs ref", "runs", "cells")


@dataclass
class ReportData:
    """Everything a report shows; built by the runner from aggregated results.

    Attributes:
        suite: the suite's name.
        title: the report's title.
        leaderboard: :func:`fbench.score.stats.aggregate_runs` output, one row per (architecture, condition), with a
            ``label`` column (the architecture's display name) and ``condition``; may also carry
            ``drop_from_clean_*`` columns and ``architecture``/``variant`` (used to match comparison systems).
        comparisons: :func:`fbench.score.stats.compare_architectures` output (may be empty).
        per_pose: ``label, pose, accuracy_mean, accuracy_ci_low, accuracy_ci_high``, per-pose accuracy aggregated
            over runs (may be empty).
        conditions: ``label, condition, accuracy_mean, drop_from_clean_mean`` (and ``*_ci_low``/``*_ci_high`` when
            present) for the occlusion severities and mask kinds (may be empty).
        efficiency: ``label, params, macs`` (, ``latency_ms``), ``accuracy_mean`` (clean) (may be empty).
        confusions: label -> (K x K confusion matrix summed over runs, rows = true class; class names).
        failures: one dict per failed cell: ``cell``, ``label``, ``reason``.
        provenance: suite file, suite hash, git commit, fbench/torch/timm versions, hardware, device,
            started/finished, command line (any str -> value mapping).
        synthetic: whether the data is synthetic (a banner says so, loudly).
        synthetic_note: more about the synthetic data (generator, version, seed), shown under the banner.
        budget: the budget's name (None for a full run).
        budget_cuts: exactly what the budget cut, one line each.
        leaky_protocol: the protocol of this report's numbers when it is a paper's own that selects on the test
            fold (``stratified_kfold, the main protocol``); None otherwise. The report then says "leaky: model
            selection on the test fold" in a banner and at the leaderboard.
        setting_notes: how architectures depart from their papers' settings (e.g. ``scan_cci: trunk from
            scratch: not the paper's setting ...``), one line each, shown under the leaderboard.
        cells: counts of cells: ``total``, ``run``, ``reused``, ``failed``, ``missing``, ``corrupt`` (any str ->
            int mapping).
        cells_per_architecture: label -> ``"n of N"`` cells complete (a ``cells`` column when given).
        incomplete: label -> ``"cells n of N"`` for architectures with cells missing, failed or corrupt: marked in
            the leaderboard and, unless ``partial``, not ranked against complete ones.
        partial: incomplete architectures ranked anyway (``--partial``).
        budget_limited: label -> why a time-planned budget did not train it on this device (and the time it would
            need): listed under the leaderboard, not ranked.
        face_crops: how the dataset's face crops were made, count by method (``frontal``, ``profile``,
            ``fallback`` for Haar detection; ``box``, ``missing box``; ``whole image``); empty when unknown.
        landmark_sources: per pose, how many faces have landmarks from the landmark model, recorded ones, or
            fallbacks (calibrated per-pose positions, canonical ones): ``{pose: {source: n}}``; empty when unknown.
    """

    suite: str
    title: str
    leaderboard: pd.DataFrame
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_pose: pd.DataFrame = field(default_factory=pd.DataFrame)
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusions: Mapping[str, tuple[np.ndarray, Sequence[str]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False
    synthetic_note: str = ""
    budget: str | None = None
    budget_cuts: list[str] = field(default_factory=list)
    leaky_protocol: str | None = None
    setting_notes: list[str] = field(default_factory=list)
    cells: dict[str, int] = field(default_factory=dict)
    cells_per_architecture: dict[str, str] = field(default_factory=dict)
    incomplete: dict[str, str] = field(default_factory=dict)
    partial: bool = False
    face_crops: dict[str, int] = field(default_factory=dict)
    landmark_sources: dict[str, dict[str, int]] = field(default_factory=dict)
    budget_limited: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- formatting


def is_finite(value: Any) -> bool:
    """Whether ``value`` is a finite number (None, NaN, infinities and non-numbers are not)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def format_pct(value: Any) -> str:
    """A fraction as a percentage with one decimal (``0.7234`` -> ``"72.3"``); ``"–"`` for missing values."""
    return f"{100.0 * float(value):.1f}" if is_finite(value) else DASH


def _signed_points(value: Any) -> str:
    return f"{100.0 * float(value):+.1f}" if is_finite(value) else DASH


def format_count(value: Any) -> str:
    """``356300`` -> ``"356.3 K"``, ``70.2e6`` -> ``"70.2 M"``, ``6.98e9`` -> ``"6.98 G"`` (two decimals below 10)."""
    if not is_finite(value):
        return DASH
    value = float(value)
    units = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))
    if abs(value) < 1e3:
        return f"{value:.0f}"
    for index, (unit, scale) in enumerate(units):
        if abs(value) >= scale:
            mantissa = value / scale
            decimals = 2 if abs(mantissa) < 10 else 1
            if round(abs(mantissa), decimals) >= 1000 and index > 0:  # 999.96 K -> 1.00 M
                unit, scale = units[index - 1]
                mantissa = value / scale
                decimals = 2
            return f"{mantissa:.{decimals}f} {unit}"
    return f"{value:.0f}"  # unreachable


def format_params(value: Any) -> str:
    """A parameter count: ``"356.3 K"``, ``"70.2 M"``."""
    return format_count(value)


def format_macs(value: Any) -> str:
    """A MAC count (multiply-accumulates, never FLOPs) for a column whose header says "MACs", so the unit is said
    once: ``"300.6 M"``, ``"6.98 G"``."""
    return format_count(value)


def _format_p(value: Any) -> str:
    if not is_finite(value):
        return DASH
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _mean_std_ci(row: Mapping[str, Any] | None, metric: str, with_ci: bool) -> str:
    """``"72.3 ± 1.2 [70.1, 74.0]"`` (%) from ``<metric>_mean/_std/_ci_low/_ci_high``; parts missing are left out."""
    if row is None or not is_finite(row.get(f"{metric}_mean")):
        return DASH
    text = format_pct(row[f"{metric}_mean"])
    if is_finite(row.get(f"{metric}_std")):
        text += f" ± {format_pct(row[f'{metric}_std'])}"
    if with_ci and is_finite(row.get(f"{metric}_ci_low")) and is_finite(row.get(f"{metric}_ci_high")):
        text += f" [{format_pct(row[f'{metric}_ci_low'])}, {format_pct(row[f'{metric}_ci_high'])}]"
    return text



def order_poses(poses: Iterable[Any]) -> list[Any]:
    """Poses in plot order: KDEF codes FL, HL, S, HR, FR (yaw -90..90) when all are KDEF codes, else sorted
    (numerically when they are all numbers)."""
    unique = list(dict.fromkeys(p for p in poses if not (isinstance(p, float) and math.isnan(p))))
    if unique and all(str(p) in POSE_YAW for p in unique):
        present = {str(p): p for p in unique}
        return [present[code] for code in POSE_ORDER if code in present]
    if unique and all(is_finite(p) for p in unique):
        return sorted(unique, key=float)
    return sorted(unique, key=str)



# -------------------------------------------------------------------------------------------------- leaderboard


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return []
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`FbenchError` naming the missing columns when ``frame`` (``ReportData.<what>``) lacks any."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FbenchError(f"ReportData.{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def _clean_rows(data: ReportData) -> dict[str, dict[str, Any]]:
    """label -> the leaderboard row of its clean condition."""
    rows: dict[str, dict[str, Any]] = {}
    for row in _records(data.leaderboard):
        if row.get("condition") == CLEAN:
            rows.setdefault(str(row["label"]), row)
    return rows


def clean_accuracy_by_label(data: ReportData) -> dict[str, float]:
    """label -> clean accuracy mean (leaderboard, else the conditions or efficiency frames)."""
    out = {label: float(row["accuracy_mean"]) for label, row in _clean_rows(data).items()
           if is_finite(row.get("accuracy_mean"))}
    for row in _records(data.conditions):
        if row.get("condition") == CLEAN and is_finite(row.get("accuracy_mean")):
            out.setdefault(str(row["label"]), float(row["accuracy_mean"]))
    for row in _records(data.efficiency):
        if is_finite(row.get("accuracy_mean")):
            out.setdefault(str(row["label"]), float(row["accuracy_mean"]))
    return out


def clean_ci_by_label(data: ReportData) -> dict[str, tuple[float, float]]:
    """label -> (CI low, CI high) of clean accuracy, from the leaderboard (labels without a finite CI left out)."""
    return {label: (float(row["accuracy_ci_low"]), float(row["accuracy_ci_high"]))
            for label, row in _clean_rows(data).items()
            if is_finite(row.get("accuracy_ci_low")) and is_finite(row.get("accuracy_ci_high"))}


def label_order(data: ReportData) -> list[str]:
    """All labels, best clean accuracy first (labels without one last, in order of appearance)."""
    labels: list[str] = []
    for frame in (data.leaderboard, data.per_pose, data.conditions, data.efficiency):
        if isinstance(frame, pd.DataFrame) and "label" in frame.columns:
            labels.extend(str(v) for v in frame["label"])
    labels.extend(str(k) for k in data.confusions)
    labels = list(dict.fromkeys(labels))
    clean = clean_accuracy_by_label(data)
    return sorted(labels, key=lambda lab: (not is_finite(clean.get(lab)), -clean.get(lab, 0.0)))


def _system_labels(data: ReportData) -> dict[str, str]:
    """Comparison system name (``architecture`` or ``architecture/variant``) -> display label."""
    mapping: dict[str, str] = {}
    arch_labels: dict[str, set[str]] = {}
    for row in _records(data.leaderboard):
        label = str(row["label"])
        mapping[label] = label
        if "architecture" in row and row["architecture"] is not None:
            arch = str(row["architecture"])
            arch_labels.setdefault(arch, set()).add(label)
            variant = row.get("variant")
            if variant is not None and not (isinstance(variant, float) and math.isnan(variant)):
                mapping.setdefault(f"{arch}/{variant}", label)
    for arch, labels in arch_labels.items():
        if len(labels) == 1:
            mapping.setdefault(arch, next(iter(labels)))
    return mapping


def _clean_comparisons(data: ReportData) -> pd.DataFrame:
    comp = data.comparisons
    if not isinstance(comp, pd.DataFrame) or comp.empty or "system" not in comp.columns:
        return pd.DataFrame()
    if "condition" in comp.columns and (comp["condition"] == CLEAN).any():
        comp = comp[comp["condition"] == CLEAN]
    return comp


def significance_marks(data: ReportData) -> dict[str, str]:
    """label -> ``"ref"`` (the reference), ``"*"`` (significant after Holm) or ``"n.s."``; clean comparisons."""
    comp = _clean_comparisons(data)
    if comp.empty:
        return {}
    names = _system_labels(data)
    marks: dict[str, str] = {}
    for row in _records(comp):
        reference = str(row.get("reference", ""))
        if reference:
            marks[names.get(reference, reference)] = "ref"
        significant = row.get("significant")
        if significant is None or (isinstance(significant, float) and math.isnan(significant)):
            significant = is_finite(row.get("p_holm")) and float(row["p_holm"]) < 0.05
        marks[names.get(str(row["system"]), str(row["system"]))] = "*" if bool(significant) else "n.s."
    return marks


def comparison_by_label(data: ReportData) -> dict[str, dict[str, Any]]:
    """label -> its clean comparison against the reference (``compare_architectures`` row: ``reference``,
    ``p_holm``, ``significant``, ...), keyed by display label; empty without comparisons."""
    names = _system_labels(data)
    return {names.get(str(row["system"]), str(row["system"])): row for row in _records(_clean_comparisons(data))}


def efficiency_by_label(data: ReportData) -> dict[str, dict[str, Any]]:
    """label -> ``params``, ``macs`` (, ``latency_ms``): the efficiency frame, completed from the leaderboard."""
    rows: dict[str, dict[str, Any]] = {}
    for row in _records(data.efficiency):
        rows.setdefault(str(row["label"]), row)
    for label, row in _clean_rows(data).items():  # a leaderboard may carry params / macs itself
        target = rows.setdefault(label, {})
        for key in ("params", "macs", "latency_ms"):
            if key in row and not is_finite(target.get(key)):
                target[key] = row[key]
    return rows


def leaderboard_table(data: ReportData) -> pd.DataFrame:
    """The leaderboard as display strings: one row per architecture, best clean accuracy first.

    Columns: ``rank``, ``architecture``, ``clean acc % (mean ± std [CI])``, ``balanced acc %``, ``macro-F1 %``,
    one column per other condition (``"61.2 (-11.1)"``: accuracy % and, in brackets, its change from clean
    accuracy in points, i.e. minus the paired drop from clean), then ``params``, ``MACs``, ``latency`` when any
    architecture has them, ``sig. vs ref`` when there are comparisons (``ref`` for the reference, ``*`` when the
    clean comparison against it is significant after Holm, ``n.s.`` otherwise) and ``runs``.

    The drop from clean is ``drop_from_clean_mean`` of the leaderboard row, else of the ``conditions`` frame, else
    the difference of the mean accuracies.

    Raises:
        FbenchError: the leaderboard lacks ``label``, ``condition`` or ``accuracy_mean``.
    """
    lb = data.leaderboard
    if not isinstance(lb, pd.DataFrame):
        raise FbenchError(f"ReportData.leaderboard must be a DataFrame, got {type(lb).__name__}")
    if lb.empty:
        return pd.DataFrame(columns=["rank", "architecture", "clean acc % (mean ± std [CI])", "runs"])
    require_columns(lb, ("label", "condition", "accuracy_mean"), "leaderboard")

    labels = list(dict.fromkeys(str(v) for v in lb["label"]))
    clean = _clean_rows(data)
    others = [c for c in dict.fromkeys(str(v) for v in lb["condition"]) if c != CLEAN]
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for record in _records(lb):
        cells.setdefault((str(record["label"]), str(record["condition"])), record)
    condition_drops: dict[tuple[str, str], float] = {}
    for record in _records(data.conditions):
        if is_finite(record.get("drop_from_clean_mean")):
            condition_drops[(str(record["label"]), str(record["condition"]))] = float(record["drop_from_clean_mean"])
    efficiency = efficiency_by_label(data)
    marks = significance_marks(data)
    has = {key: any(is_finite(efficiency.get(lab, {}).get(key)) for lab in labels)
           for key in ("params", "macs", "latency_ms")}

    rows = []
    for label in labels:
        clean_row = clean.get(label)
        clean_mean: Any = clean_row.get("accuracy_mean") if clean_row else None
        row: dict[str, Any] = {
            "architecture": label,
            "clean acc % (mean ± std [CI])": _mean_std_ci(clean_row, "accuracy", with_ci=True),
            "balanced acc %": _mean_std_ci(clean_row, "balanced_accuracy", with_ci=False),
            "macro-F1 %": _mean_std_ci(clean_row, "macro_f1", with_ci=False),
        }
        for condition in others:
            cell = cells.get((label, condition))
            if cell is None or not is_finite(cell.get("accuracy_mean")):
                row[condition_label(condition)] = DASH
                continue
            drop: Any = cell.get("drop_from_clean_mean")
            if not is_finite(drop):
                drop = condition_drops.get((label, condition))
            if not is_finite(drop) and is_finite(clean_mean):
                drop = float(clean_mean) - float(cell["accuracy_mean"])
            text = format_pct(cell["accuracy_mean"])
            if is_finite(drop):
                text += f" ({_signed_points(-float(drop))})"
            row[condition_label(condition)] = text
        eff = efficiency.get(label, {})
        if has["params"]:
            row["params"] = format_params(eff.get("params"))
        if has["macs"]:
            row["MACs"] = format_macs(eff.get("macs"))
        if has["latency_ms"]:
            row["latency"] = f"{float(eff['latency_ms']):.1f} ms" if is_finite(eff.get("latency_ms")) else DASH
        if marks:
            row["sig. vs ref"] = marks.get(label, "")
        n_runs: Any = clean_row.get("n_runs") if clean_row else None
        row["runs"] = str(int(n_runs)) if is_finite(n_runs) else DASH
        if data.cells_per_architecture:
            row["cells"] = data.cells_per_architecture.get(label, DASH)
        if label in data.incomplete:
            row["architecture"] = f"{label} (incomplete)"
        rows.append(row)
    by_label = dict(zip(labels, rows, strict=True))
    order = ranking(data)
    table = pd.DataFrame([by_label[label] for label, _ in order])
    table.insert(0, "rank", [str(rank) if rank is not None else DASH for _, rank in order])
    return table


def ranking(data: ReportData) -> list[tuple[str, int | None]]:
    """The leaderboard's order as (label, rank): complete architectures first, by clean accuracy (ties in order
    of appearance); incomplete ones (unless ``partial``) after them, unranked (rank None)."""
    lb = data.leaderboard
    if not isinstance(lb, pd.DataFrame) or lb.empty or "label" not in lb.columns:
        return []
    clean = _clean_rows(data)

    def key(label: str) -> tuple[bool, float]:
        mean: Any = clean.get(label, {}).get("accuracy_mean")
        return label not in data.incomplete or data.partial, float(mean) if is_finite(mean) else -math.inf

    ordered = sorted(dict.fromkeys(str(v) for v in lb["label"]), key=key, reverse=True)  # stable under reverse
    ranked = sum(key(label)[0] for label in ordered)
    return [(label, i + 1 if i < ranked else None) for i, label in enumerate(ordered)]


def budget_limited_lines(data: ReportData) -> list[str]:
    """One line per architecture a time-planned budget did not train on this device, with the reason."""
    return [f"{label}: budget-limited on this device, not trained and not ranked: {reason}"
            for label, reason in data.budget_limited.items()]


def per_pose_table(data: ReportData) -> pd.DataFrame:
    """Clean accuracy % by pose: one row per architecture (best clean accuracy first), one column per pose in plot
    order (:func:`order_poses`), mean over runs; empty without per-pose data."""
    pp = data.per_pose
    if not isinstance(pp, pd.DataFrame) or pp.empty:
        return pd.DataFrame()
    require_columns(pp, ("label", "pose", "accuracy_mean"), "per_pose")
    poses = order_poses(pp["pose"])
    values = {(str(row["label"]), str(row["pose"])): row["accuracy_mean"] for row in _records(pp)}
    present = {str(v) for v in pp["label"]}
    rows = [{"architecture": label, **{str(pose): format_pct(values.get((label, str(pose)))) for pose in poses}}
            for label in label_order(data) if label in present]
    return pd.DataFrame(rows, columns=["architecture", *(str(pose) for pose in poses)])


def comparisons_table(data: ReportData) -> pd.DataFrame:
    """The paired comparisons as display strings: system, reference, condition, n images (unique test images, each
    once: :func:`fbench.score.stats.compare_architectures`), both accuracies, the difference in points with its CI,
    McNemar b/c and p, Holm p and whether it is significant (empty without comparisons)."""
    comp = data.comparisons
    if not isinstance(comp, pd.DataFrame) or comp.empty:
        return pd.DataFrame()
    names = _system_labels(data)
    rows = []
    for row in _records(comp):
        diff = _signed_points(row.get("diff"))
        if is_finite(row.get("ci_low")) and is_finite(row.get("ci_high")):
            diff += f" [{_signed_points(row['ci_low'])}, {_signed_points(row['ci_high'])}]"
        b: Any = row.get("mcnemar_b")
        c: Any = row.get("mcnemar_c")
        significant = row.get("significant")
        rows.append({
            "system": names.get(str(row.get("system")), str(row.get("system"))),
            "reference": names.get(str(row.get("reference")), str(row.get("reference"))),
            "condition": condition_label(str(row.get("condition", CLEAN))),
            "n images": str(int(row["n"])) if is_finite(row.get("n")) else DASH,
            "accuracy %": format_pct(row.get("accuracy")),
            "reference %": format_pct(row.get("reference_accuracy")),
            "diff (points) [CI]": diff,
            "McNemar b/c": f"{int(b)}/{int(c)}" if is_finite(b) and is_finite(c) else DASH,
            "McNemar p": _format_p(row.get("mcnemar_p")),
            "Holm p": _format_p(row.get("p_holm")),
            "significant": "yes" if significant is True or significant == 1 else "no",
        })
    return pd.DataFrame(rows)
