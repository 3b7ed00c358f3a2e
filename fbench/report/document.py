"""Reports: the leaderboard table, plots, and a Markdown + self-contained HTML report of one suite run.

The caller (the runner) gathers everything into a :class:`ReportData`; this module only formats and draws:

- :func:`leaderboard_table`: one row per architecture, sorted by clean accuracy, with every other condition's
  accuracy beside its (paired, RobustBench-style) change from clean, params, MACs and a significance mark.
- ``plot_*``: accuracy by yaw pose, by occlusion severity, by mask kind, against MACs and parameters (with the
  Pareto front), and row-normalised confusion matrices. Each returns a matplotlib ``Figure`` drawn on an Agg
  canvas (no pyplot, no global backend switch), or ``None`` when it has no data.
- :func:`write_report`: ``report.md``, ``report.html`` (inline CSS, PNGs as base64 data URIs, all text escaped)
  and the PNGs, each written atomically.
- :func:`report_folder`: ``<reports root>/<suite>/<YYYYmmdd-HHMMSS>/``.

Conventions (``design.md``): MACs are multiply-accumulates and are called MACs, never FLOPs; synthetic data is
labelled loudly (banner, leaderboard caption, every plot); a paper's own protocol that selects on the test fold is
named in a banner; a budget says exactly what it cut. Accuracies are shown in % with one decimal; counts as
``356.3 K`` / ``70.2 M`` (two decimals below 10: ``6.98 G``); MACs as ``300.6 M MACs``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fbench.errors import FbenchError
from fbench.perturb.apply import parse_value
from fbench.run.store import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FILES",
    "POSE_ORDER",
    "POSE_YAW",
    "SYNTHETIC_BANNER",
    "ReportData",
    "condition_label",
    "format_count",
    "format_macs",
    "format_params",
    "format_pct",
    "leaderboard_table",
    "make_figures",
    "order_poses",
    "parse_condition",
    "pareto_front",
    "perturbation_point",
    "plot_confusions",
    "plot_efficiency",
    "plot_masks",
    "plot_occlusion",
    "plot_pose",
    "report_folder",
    "write_report",
]

CLEAN = "clean"
SYNTHETIC_BANNER = "Synthetic data: procedurally rendered faces, not a real dataset"
POSE_ORDER = ("FL", "HL", "S", "HR", "FR")
POSE_YAW = {"FL": -90.0, "HL": -45.0, "S": 0.0, "HR": 45.0, "FR": 90.0}
# Parameter defaults of the perturbations (fbench.perturb.occlusion / .mask), for condition strings that omit them.
# Kept here so that reading a report never imports torch.
PERTURBATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "occlusion": {"kind": "rectangle", "severity": 0.25},
    "mask": {"kind": "surgical", "severity": 1.0},
}
PLOT_FILES = {
    "pose": "accuracy_by_pose.png",
    "occlusion": "accuracy_by_occlusion.png",
    "masks": "accuracy_by_mask.png",
    "efficiency_macs": "accuracy_vs_macs.png",
    "efficiency_params": "accuracy_vs_params.png",
    "confusions": "confusion_matrices.png",
}
PLOT_TITLES = {
    "pose": "Accuracy by yaw pose",
    "occlusion": "Accuracy by occlusion severity",
    "masks": "Accuracy by mask kind",
    "efficiency_macs": "Accuracy against MACs",
    "efficiency_params": "Accuracy against parameters",
    "confusions": "Confusion matrices (clean, normalised by row)",
}
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
_TIMESTAMP = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
_DASH = "–"
_DPI = 110
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame()


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
        leaky_protocol: name of a paper's own protocol that selects on the test fold, if the suite used one.
        cells: counts of cells: ``total``, ``run``, ``reused``, ``failed`` (any str -> int mapping).
    """

    suite: str
    title: str
    leaderboard: pd.DataFrame
    comparisons: pd.DataFrame = field(default_factory=_empty_frame)
    per_pose: pd.DataFrame = field(default_factory=_empty_frame)
    conditions: pd.DataFrame = field(default_factory=_empty_frame)
    efficiency: pd.DataFrame = field(default_factory=_empty_frame)
    confusions: dict[str, tuple[np.ndarray, Sequence[str]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False
    synthetic_note: str = ""
    budget: str | None = None
    budget_cuts: list[str] = field(default_factory=list)
    leaky_protocol: str | None = None
    cells: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- formatting


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def format_pct(value: Any) -> str:
    """A fraction as a percentage with one decimal (``0.7234`` -> ``"72.3"``); ``"–"`` for missing values."""
    return f"{100.0 * float(value):.1f}" if _finite(value) else _DASH


def _signed_points(value: Any) -> str:
    return f"{100.0 * float(value):+.1f}" if _finite(value) else _DASH


def format_count(value: Any) -> str:
    """``356300`` -> ``"356.3 K"``, ``70.2e6`` -> ``"70.2 M"``, ``6.98e9`` -> ``"6.98 G"`` (two decimals below 10)."""
    if not _finite(value):
        return _DASH
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
    """A MAC count (multiply-accumulates, never FLOPs): ``"300.6 M MACs"``, ``"6.98 G MACs"``."""
    return f"{format_count(value)} MACs" if _finite(value) else _DASH


def _format_p(value: Any) -> str:
    if not _finite(value):
        return _DASH
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def _mean_std_ci(row: Mapping[str, Any] | None, metric: str, with_ci: bool) -> str:
    """``"72.3 ± 1.2 [70.1, 74.0]"`` (%) from ``<metric>_mean/_std/_ci_low/_ci_high``; parts missing are left out."""
    if row is None or not _finite(row.get(f"{metric}_mean")):
        return _DASH
    text = format_pct(row[f"{metric}_mean"])
    if _finite(row.get(f"{metric}_std")):
        text += f" ± {format_pct(row[f'{metric}_std'])}"
    if with_ci and _finite(row.get(f"{metric}_ci_low")) and _finite(row.get(f"{metric}_ci_high")):
        text += f" [{format_pct(row[f'{metric}_ci_low'])}, {format_pct(row[f'{metric}_ci_high'])}]"
    return text


# --------------------------------------------------------------------------------------------------- conditions


def parse_condition(condition: str) -> tuple[str, dict[str, Any]]:
    """Split a condition string into a name and parameters, leniently (a report never fails on a condition name).

    ``"occlusion:kind=rectangle,severity=0.25"`` -> ``("occlusion", {"kind": "rectangle", "severity": 0.25})``;
    ``"clean"`` -> ``("clean", {})``; ``"pose=FL"`` -> ``("pose", {"pose": "FL"})``. Numbers become int or float.
    An item without ``=`` is kept as ``{item: True}``.
    """
    text = str(condition).strip()
    if ":" in text:
        name, _, rest = text.partition(":")
    elif "=" in text:
        name, rest = text.partition("=")[0], text
    else:
        name, rest = text, ""
    params: dict[str, Any] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        params[key.strip()] = parse_value(value.strip()) if sep else True
    return name.strip(), params


def perturbation_point(condition: str) -> tuple[str, str, float] | None:
    """``(name, kind, severity)`` of an occlusion or mask condition, with the perturbation's defaults filled in.

    ``"occlusion:kind=eye_band,severity=0.5"`` -> ``("occlusion", "eye_band", 0.5)``;
    ``"mask:kind=n95"`` -> ``("mask", "n95", 1.0)``; None for any other condition (or a non-numeric severity).
    """
    name, params = parse_condition(condition)
    defaults = PERTURBATION_DEFAULTS.get(name)
    if defaults is None:
        return None
    kind = str(params.get("kind", defaults["kind"]))
    severity = params.get("severity", defaults["severity"])
    if not _finite(severity) or isinstance(severity, bool):
        return None
    return name, kind, float(severity)


def condition_label(condition: str) -> str:
    """A short display name: ``"occlusion:kind=rectangle,severity=0.25"`` -> ``"occlusion rectangle s=0.25"``."""
    name, params = parse_condition(condition)
    if not params:
        return name
    parts = [name]
    for key, value in params.items():
        if key == name:  # "pose=FL"
            parts.append(str(value))
        elif key == "severity":
            continue
        elif key == "kind":
            parts.append(str(value))
        else:
            parts.append(f"{key}={value}")
    if "severity" in params:
        parts.append(f"s={params['severity']}")
    return " ".join(parts)


def order_poses(poses: Iterable[Any]) -> list[Any]:
    """Poses in plot order: KDEF codes FL, HL, S, HR, FR (yaw -90..90) when all are KDEF codes, else sorted
    (numerically when they are all numbers)."""
    unique = list(dict.fromkeys(p for p in poses if not (isinstance(p, float) and math.isnan(p))))
    if unique and all(str(p) in POSE_YAW for p in unique):
        present = {str(p): p for p in unique}
        return [present[code] for code in POSE_ORDER if code in present]
    if unique and all(_finite(p) for p in unique):
        return sorted(unique, key=float)
    return sorted(unique, key=str)


# -------------------------------------------------------------------------------------------------- leaderboard


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records") if isinstance(frame, pd.DataFrame) and not frame.empty else []


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
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


def _clean_accuracy(data: ReportData) -> dict[str, float]:
    """label -> clean accuracy mean (leaderboard, else the conditions or efficiency frames)."""
    out = {label: float(row["accuracy_mean"]) for label, row in _clean_rows(data).items()
           if _finite(row.get("accuracy_mean"))}
    for row in _records(data.conditions):
        if row.get("condition") == CLEAN and _finite(row.get("accuracy_mean")):
            out.setdefault(str(row["label"]), float(row["accuracy_mean"]))
    for row in _records(data.efficiency):
        if _finite(row.get("accuracy_mean")):
            out.setdefault(str(row["label"]), float(row["accuracy_mean"]))
    return out


def _clean_ci(data: ReportData) -> dict[str, tuple[float, float]]:
    """label -> (CI low, CI high) of clean accuracy, from the leaderboard (labels without a finite CI left out)."""
    return {label: (float(row["accuracy_ci_low"]), float(row["accuracy_ci_high"]))
            for label, row in _clean_rows(data).items()
            if _finite(row.get("accuracy_ci_low")) and _finite(row.get("accuracy_ci_high"))}


def _label_order(data: ReportData) -> list[str]:
    """All labels, best clean accuracy first (labels without one last, in order of appearance)."""
    labels: list[str] = []
    for frame in (data.leaderboard, data.per_pose, data.conditions, data.efficiency):
        if isinstance(frame, pd.DataFrame) and "label" in frame.columns:
            labels.extend(str(v) for v in frame["label"])
    labels.extend(str(k) for k in data.confusions)
    labels = list(dict.fromkeys(labels))
    clean = _clean_accuracy(data)
    return sorted(labels, key=lambda lab: (not _finite(clean.get(lab)), -clean.get(lab, 0.0)))


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


def _significance_marks(data: ReportData) -> dict[str, str]:
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
            significant = _finite(row.get("p_holm")) and float(row["p_holm"]) < 0.05
        marks[names.get(str(row["system"]), str(row["system"]))] = "*" if bool(significant) else "n.s."
    return marks


def _efficiency_rows(data: ReportData) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for row in _records(data.efficiency):
        rows.setdefault(str(row["label"]), row)
    for label, row in _clean_rows(data).items():  # a leaderboard may carry params / macs itself
        target = rows.setdefault(label, {})
        for key in ("params", "macs", "latency_ms"):
            if key in row and not _finite(target.get(key)):
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
    _require(lb, ("label", "condition", "accuracy_mean"), "leaderboard")

    labels = list(dict.fromkeys(str(v) for v in lb["label"]))
    clean = _clean_rows(data)
    others = [c for c in dict.fromkeys(str(v) for v in lb["condition"]) if c != CLEAN]
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _records(lb):
        cells.setdefault((str(row["label"]), str(row["condition"])), row)
    condition_drops: dict[tuple[str, str], float] = {}
    for row in _records(data.conditions):
        if _finite(row.get("drop_from_clean_mean")):
            condition_drops[(str(row["label"]), str(row["condition"]))] = float(row["drop_from_clean_mean"])
    efficiency = _efficiency_rows(data)
    marks = _significance_marks(data)
    has = {key: any(_finite(efficiency.get(lab, {}).get(key)) for lab in labels)
           for key in ("params", "macs", "latency_ms")}

    rows = []
    for label in labels:
        clean_row = clean.get(label)
        clean_mean = clean_row.get("accuracy_mean") if clean_row else None
        row: dict[str, Any] = {
            "architecture": label,
            "clean acc % (mean ± std [CI])": _mean_std_ci(clean_row, "accuracy", with_ci=True),
            "balanced acc %": _mean_std_ci(clean_row, "balanced_accuracy", with_ci=False),
            "macro-F1 %": _mean_std_ci(clean_row, "macro_f1", with_ci=False),
        }
        for condition in others:
            cell = cells.get((label, condition))
            if cell is None or not _finite(cell.get("accuracy_mean")):
                row[condition_label(condition)] = _DASH
                continue
            drop = cell.get("drop_from_clean_mean")
            if not _finite(drop):
                drop = condition_drops.get((label, condition))
            if not _finite(drop) and _finite(clean_mean):
                drop = float(clean_mean) - float(cell["accuracy_mean"])
            text = format_pct(cell["accuracy_mean"])
            if _finite(drop):
                text += f" ({_signed_points(-float(drop))})"
            row[condition_label(condition)] = text
        eff = efficiency.get(label, {})
        if has["params"]:
            row["params"] = format_params(eff.get("params"))
        if has["macs"]:
            row["MACs"] = format_macs(eff.get("macs"))
        if has["latency_ms"]:
            row["latency"] = f"{float(eff['latency_ms']):.1f} ms" if _finite(eff.get("latency_ms")) else _DASH
        if marks:
            row["sig. vs ref"] = marks.get(label, "")
        n_runs = clean_row.get("n_runs") if clean_row else None
        row["runs"] = str(int(n_runs)) if _finite(n_runs) else _DASH
        row["_sort"] = float(clean_mean) if _finite(clean_mean) else -math.inf
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("_sort", ascending=False, kind="stable").drop(columns="_sort")
    table.insert(0, "rank", [str(i) for i in range(1, len(table) + 1)])
    return table.reset_index(drop=True)


def _comparisons_table(data: ReportData) -> pd.DataFrame:
    comp = data.comparisons
    if not isinstance(comp, pd.DataFrame) or comp.empty:
        return pd.DataFrame()
    names = _system_labels(data)
    rows = []
    for row in _records(comp):
        diff = _signed_points(row.get("diff"))
        if _finite(row.get("ci_low")) and _finite(row.get("ci_high")):
            diff += f" [{_signed_points(row['ci_low'])}, {_signed_points(row['ci_high'])}]"
        b, c = row.get("mcnemar_b"), row.get("mcnemar_c")
        significant = row.get("significant")
        rows.append({
            "system": names.get(str(row.get("system")), str(row.get("system"))),
            "reference": names.get(str(row.get("reference")), str(row.get("reference"))),
            "condition": condition_label(str(row.get("condition", CLEAN))),
            "n": str(int(row["n"])) if _finite(row.get("n")) else _DASH,
            "accuracy %": format_pct(row.get("accuracy")),
            "reference %": format_pct(row.get("reference_accuracy")),
            "diff (points) [CI]": diff,
            "McNemar b/c": f"{int(b)}/{int(c)}" if _finite(b) and _finite(c) else _DASH,
            "McNemar p": _format_p(row.get("mcnemar_p")),
            "Holm p": _format_p(row.get("p_holm")),
            "significant": "yes" if significant is True or significant == 1 else "no",
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas: no pyplot state, no interactive backend, safe in threads and on headless hosts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """label -> colour and marker, stable across plots."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: {"color": cmap(i % cmap.N), "marker": _MARKERS[i % len(_MARKERS)]}
            for i, label in enumerate(labels)}


def _suptitle(fig: Figure, title: str, data: ReportData) -> None:
    if data.synthetic:
        title += "\nSYNTHETIC DATA (procedurally rendered faces, not a real dataset)"
    fig.suptitle(title, fontsize=11, color="#a00000" if data.synthetic else "black")


def _yerr(sub: pd.DataFrame, prefix: str = "accuracy") -> np.ndarray | None:
    low, high = f"{prefix}_ci_low", f"{prefix}_ci_high"
    if low not in sub.columns or high not in sub.columns:
        return None
    mean = sub[f"{prefix}_mean"].to_numpy(dtype=float)
    lower = np.clip(mean - sub[low].to_numpy(dtype=float), 0, None)
    upper = np.clip(sub[high].to_numpy(dtype=float) - mean, 0, None)
    err = np.nan_to_num(np.vstack([lower, upper]) * 100.0)
    return err if err.any() else None


def _legend(fig: Figure, axes: Sequence[Axes]) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)


def plot_pose(data: ReportData) -> Figure | None:
    """Accuracy by yaw pose, one line per architecture, with CI error bars; None without per-pose data.

    KDEF codes are placed at their yaw (FL -90, HL -45, S 0, HR 45, FR 90); other pose values are evenly spaced in
    sorted order.
    """
    pp = data.per_pose
    if not isinstance(pp, pd.DataFrame) or pp.empty:
        return None
    _require(pp, ("label", "pose", "accuracy_mean"), "per_pose")
    poses = order_poses(pp["pose"])
    if not poses:
        return None
    kdef = all(str(p) in POSE_YAW for p in poses)
    position = {p: (POSE_YAW[str(p)] if kdef else float(i)) for i, p in enumerate(poses)}
    labels = [lab for lab in _label_order(data) if lab in set(pp["label"].astype(str))]
    styles = _styles(_label_order(data))
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for label in labels:
        sub = pp[(pp["label"].astype(str) == label) & pp["pose"].isin(poses)].copy()
        sub["_x"] = sub["pose"].map(position)
        sub = sub.sort_values("_x")
        ax.errorbar(sub["_x"], sub["accuracy_mean"].to_numpy(dtype=float) * 100, yerr=_yerr(sub), label=label,
                    capsize=3, linewidth=1.5, markersize=5, **styles[label])
    ticks = [position[p] for p in poses]
    names = [f"{p}\n{POSE_YAW[str(p)]:+.0f}°" if kdef else str(p) for p in poses]
    ax.set_xticks(ticks, names)
    ax.set_xlabel("yaw pose (KDEF code, degrees)" if kdef else "pose")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    _suptitle(fig, "Accuracy by yaw pose (mean over runs, CI error bars)", data)
    _legend(fig, [ax])
    return fig


def _points(data: ReportData, name: str) -> pd.DataFrame:
    """Rows of ``data.conditions`` for perturbation ``name`` with ``kind`` and ``severity`` columns added."""
    cond = data.conditions
    if not isinstance(cond, pd.DataFrame) or cond.empty:
        return pd.DataFrame()
    _require(cond, ("label", "condition", "accuracy_mean"), "conditions")
    parsed = [perturbation_point(str(c)) for c in cond["condition"]]
    keep = [p is not None and p[0] == name for p in parsed]
    out = cond[keep].copy()
    out["label"] = out["label"].astype(str)
    out["kind"] = [p[1] for p, k in zip(parsed, keep) if k]
    out["severity"] = [p[2] for p, k in zip(parsed, keep) if k]
    return out


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_occlusion(data: ReportData) -> Figure | None:
    """Accuracy against occlusion severity, one panel per occlusion kind, one line per architecture.

    Severities are parsed from condition strings such as ``"occlusion:kind=rectangle,severity=0.25"``; clean
    accuracy is drawn at severity 0 when the conditions have no severity-0 point. None without occlusion rows.
    """
    pts = _points(data, "occlusion")
    if pts.empty:
        return None
    kinds = list(dict.fromkeys(pts["kind"]))
    order = _label_order(data)
    styles = _styles(order)
    clean, clean_ci = _clean_accuracy(data), _clean_ci(data)
    nrows, ncols = _grid(len(kinds))
    fig = _figure(max(7.0, 3.6 * ncols + 1.8), 3.3 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax, kind in zip(axes, kinds):
        sub_kind = pts[pts["kind"] == kind]
        for label in [lab for lab in order if lab in set(sub_kind["label"])]:
            sub = sub_kind[sub_kind["label"] == label].sort_values("severity")
            x = sub["severity"].to_numpy(dtype=float)
            y = sub["accuracy_mean"].to_numpy(dtype=float) * 100
            err = _yerr(sub)
            if 0.0 not in x and _finite(clean.get(label)):
                x = np.concatenate([[0.0], x])
                y = np.concatenate([[clean[label] * 100], y])
                low, high = clean_ci.get(label, (clean[label], clean[label]))
                first = np.array([[max(0.0, clean[label] - low)], [max(0.0, high - clean[label])]]) * 100
                err = np.hstack([first, err if err is not None else np.zeros((2, len(sub)))])
                err = err if err.any() else None
            ax.errorbar(x, y, yerr=err, label=label, capsize=3, linewidth=1.5, markersize=5, **styles[label])
        ax.set_title(kind.replace("_", " "), fontsize=10)
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
    for ax in axes[len(kinds):]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel("accuracy (%)")
    _suptitle(fig, "Accuracy by occlusion severity", data)
    _legend(fig, list(axes[: len(kinds)]))
    return fig


def plot_masks(data: ReportData) -> Figure | None:
    """Accuracy by mask kind: grouped bars (one group per mask kind, one bar per architecture), clean first.

    A kind evaluated at several severities gets one group per severity. None without mask rows.
    """
    pts = _points(data, "mask")
    if pts.empty:
        return None
    severities = pts.groupby("kind", sort=False)["severity"].nunique()
    pts["group"] = [k if severities[k] == 1 else f"{k} s={s:g}" for k, s in zip(pts["kind"], pts["severity"])]
    kind_order = list(dict.fromkeys(pts["kind"]))
    pts = pts.assign(_k=pts["kind"].map(kind_order.index)).sort_values(["_k", "severity"], kind="stable")
    groups = list(dict.fromkeys(pts["group"]))
    clean, clean_ci = _clean_accuracy(data), _clean_ci(data)
    order = [lab for lab in _label_order(data) if lab in set(pts["label"])]
    styles = _styles(_label_order(data))
    with_clean = any(_finite(clean.get(lab)) for lab in order)
    names = ([CLEAN] if with_clean else []) + groups
    n = len(order)
    width = 0.8 / max(n, 1)
    fig = _figure(min(12.0, max(6.0, len(names) * (0.35 * n + 0.5) + 2.8)), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(names), dtype=float)
    for i, label in enumerate(order):
        sub = pts[pts["label"] == label].drop_duplicates("group").set_index("group")
        y, low, high = [], [], []
        for g in names:
            if g == CLEAN:
                mean = clean.get(label, np.nan)
                lo, hi = clean_ci.get(label, (mean, mean))
                y.append(mean * 100)
                low.append(max(0.0, (mean - lo) * 100) if _finite(mean) else 0.0)
                high.append(max(0.0, (hi - mean) * 100) if _finite(mean) else 0.0)
                continue
            mean = float(sub.loc[g, "accuracy_mean"]) if g in sub.index else np.nan
            y.append(mean * 100)
            lo = sub.loc[g, "accuracy_ci_low"] if g in sub.index and "accuracy_ci_low" in sub.columns else np.nan
            hi = sub.loc[g, "accuracy_ci_high"] if g in sub.index and "accuracy_ci_high" in sub.columns else np.nan
            low.append(max(0.0, (mean - float(lo)) * 100) if _finite(lo) and _finite(mean) else 0.0)
            high.append(max(0.0, (float(hi) - mean) * 100) if _finite(hi) and _finite(mean) else 0.0)
        err = np.array([low, high])
        ax.bar(x - 0.4 + width * (i + 0.5), y, width * 0.95, yerr=err if err.any() else None, capsize=2,
               label=label, color=styles[label]["color"], edgecolor="white", linewidth=0.5)
    ax.set_xticks(x, [g.replace("_", " ") for g in names])
    ax.set_xlabel("mask kind")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _suptitle(fig, "Accuracy by mask kind (mean over runs, CI error bars)", data)
    _legend(fig, [ax])
    return fig


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (cost no higher and accuracy no lower, one strictly), by cost."""
    cost = np.asarray(costs, dtype=float)
    acc = np.asarray(accuracies, dtype=float)
    order = np.lexsort((-acc, cost))  # cheapest first, best first among equal costs
    front, best = [], -math.inf
    for i in order:
        if acc[i] > best:
            front.append(int(i))
            best = acc[i]
    return front


def _efficiency_points(data: ReportData, cost: str) -> pd.DataFrame:
    eff = data.efficiency
    if not isinstance(eff, pd.DataFrame) or eff.empty or cost not in eff.columns or "label" not in eff.columns:
        return pd.DataFrame()
    out = eff.drop_duplicates("label").copy()
    out["label"] = out["label"].astype(str)
    clean = _clean_accuracy(data)
    if "accuracy_mean" not in out.columns:
        out["accuracy_mean"] = np.nan
    out["accuracy_mean"] = [a if _finite(a) else clean.get(lab, np.nan)
                            for lab, a in zip(out["label"], out["accuracy_mean"])]
    out[cost] = pd.to_numeric(out[cost], errors="coerce")
    out["accuracy_mean"] = pd.to_numeric(out["accuracy_mean"], errors="coerce")
    ok = np.isfinite(out[cost]) & (out[cost] > 0) & np.isfinite(out["accuracy_mean"])
    return out[ok].reset_index(drop=True)


def _tick(value: float) -> str:
    """Axis tick text for a count: ``1 M``, ``300 M``, ``1.5 G`` (no trailing zeros)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g}"


def plot_efficiency(data: ReportData, cost: str = "macs") -> Figure | None:
    """Clean accuracy against ``cost`` (``"macs"`` or ``"params"``), log x, labelled points, Pareto front.

    None when no architecture has both a positive cost and a clean accuracy.
    """
    if cost not in ("macs", "params"):
        raise FbenchError(f"plot_efficiency cost must be 'macs' or 'params', got {cost!r}")
    pts = _efficiency_points(data, cost)
    if pts.empty:
        return None
    from matplotlib.ticker import FuncFormatter

    styles = _styles(_label_order(data))
    x = pts[cost].to_numpy(dtype=float)
    y = pts["accuracy_mean"].to_numpy(dtype=float) * 100
    front = pareto_front(x, y)
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    if len(front) > 1:
        ax.plot(x[front], y[front], drawstyle="steps-post", color="#d62728", linewidth=1.2, alpha=0.7, zorder=1)
    ax.scatter(x[front], y[front], s=170, facecolors="none", edgecolors="#d62728", linewidths=1.6, zorder=3,
               label="Pareto front")
    for i, label in enumerate(pts["label"]):
        style = styles.get(label, {"color": "C0", "marker": "o"})
        ax.scatter([x[i]], [y[i]], s=50, color=style["color"], marker=style["marker"], zorder=4)
        ax.annotate(label, (x[i], y[i]), xytext=(6, 5), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    lo, hi = x.min(), x.max()
    ax.set_xlim(lo / 2.0, hi * 2.0)  # room for the labels; also keeps a single point away from the edges
    ax.set_xlabel("MACs per image (multiply-accumulates, log scale)" if cost == "macs"
                  else "parameters (log scale)")
    ax.set_ylabel("clean accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    _suptitle(fig, "Accuracy against MACs" if cost == "macs" else "Accuracy against parameters", data)
    return fig


def plot_confusions(data: ReportData) -> Figure | None:
    """One row-normalised confusion matrix per architecture (rows = true class), class names as ticks."""
    if not data.confusions:
        return None
    import matplotlib
    order = [lab for lab in _label_order(data) if lab in data.confusions]
    order += [str(k) for k in data.confusions if str(k) not in order]
    nrows, ncols = _grid(len(order))
    k_max = max(np.asarray(m[0]).shape[0] for m in data.confusions.values())
    side = max(3.0, 0.42 * k_max + 1.2)
    fig = _figure(side * ncols + 0.8, side * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    image = None
    for ax, label in zip(axes, order):
        matrix, names = data.confusions[label]
        m = np.asarray(matrix, dtype=float)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise FbenchError(f"confusion matrix of {label!r} must be square, got shape {m.shape}")
        names = [str(n) for n in names] if names is not None and len(names) == m.shape[0] \
            else [str(i) for i in range(m.shape[0])]
        totals = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, totals, out=np.full_like(m, np.nan), where=totals > 0)  # NaN: class without samples
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#dddddd")
        image = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap=cmap)
        if m.shape[0] <= 10:
            for (r, c), value in np.ndenumerate(norm):
                text = _DASH if np.isnan(value) else ("1" if value >= 1 else f"{value:.2f}".lstrip("0"))
                ax.text(c, r, text, ha="center", va="center", fontsize=6.5,
                        color="white" if value > 0.55 else "black")
        ticks = np.arange(m.shape[0])
        ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{label} (n={int(m.sum())})", fontsize=9)
    for ax in axes[len(order):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(order)]), shrink=0.8,
                     label="fraction of the true class (grey: no samples)")
    _suptitle(fig, "Confusion matrices, clean (normalised by row)", data)
    return fig


_PLOTS: dict[str, Callable[[ReportData], Figure | None]] = {
    "pose": plot_pose,
    "occlusion": plot_occlusion,
    "masks": plot_masks,
    "efficiency_macs": lambda data: plot_efficiency(data, "macs"),
    "efficiency_params": lambda data: plot_efficiency(data, "params"),
    "confusions": plot_confusions,
}


def make_figures(data: ReportData) -> dict[str, Figure]:
    """Every plot that has data, keyed as in :data:`PLOT_FILES` (plots without data are left out)."""
    figures = {}
    for name, draw in _PLOTS.items():
        fig = draw(data)
        if fig is not None:
            figures[name] = fig
    return figures


# ------------------------------------------------------------------------------------------------------ writing


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


# A report is a list of blocks rendered twice, to Markdown and to HTML:
# ("h", level, text) ("banner", text) ("p", text) ("list", [text]) ("table", DataFrame) ("image", name, caption)
# ("pre", text)
_Block = tuple[Any, ...]


def _provenance_text(provenance: Mapping[str, Any]) -> str:
    lines = []
    for key, value in provenance.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True, default=str)
        lines.append(f"{key}: {value}")
    return "\n".join(lines) if lines else "(none recorded)"


def _blocks(data: ReportData, images: Sequence[str], plot_errors: Mapping[str, str]) -> list[_Block]:
    blocks: list[_Block] = [("h", 1, data.title)]
    if data.synthetic:
        note = f" {data.synthetic_note.strip()}" if data.synthetic_note.strip() else ""
        blocks.append(("banner", f"{SYNTHETIC_BANNER}.{note} Numbers here say nothing about real faces."))
    if data.leaky_protocol:
        blocks.append(("banner", f"Leaky protocol: {data.leaky_protocol}. This is a paper's own protocol that "
                                 "selects models on the test fold; its accuracies are optimistic and not comparable "
                                 "with results that select on a validation split."))
    facts = [f"Suite: {data.suite}"]
    if data.cells:
        facts.append("Cells: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.cells.items()))
    blocks.append(("p", ". ".join(facts) + "."))

    blocks.append(("h", 2, "Budget"))
    if data.budget or data.budget_cuts:
        blocks.append(("p", f"Budget: {data.budget or '(unnamed)'}. "
                            + ("It cut:" if data.budget_cuts else "It cut nothing.")))
        if data.budget_cuts:
            blocks.append(("list", [str(c) for c in data.budget_cuts]))
    else:
        blocks.append(("p", "Full run: no budget, nothing cut."))

    blocks.append(("h", 2, "Leaderboard" + (" (synthetic data)" if data.synthetic else "")))
    table = leaderboard_table(data)
    if table.empty:
        blocks.append(("p", "No results."))
    else:
        blocks.append(("table", table))
        notes = ["Accuracies in %, mean over runs (folds x seeds) ± standard deviation, [bootstrap CI of the mean]."]
        if any(c not in ("rank", "architecture", "clean acc % (mean ± std [CI])", "balanced acc %", "macro-F1 %",
                         "params", "MACs", "latency", "sig. vs ref", "runs") for c in table.columns):
            notes.append("Condition columns: accuracy % under the condition (its change from clean accuracy in "
                         "points, paired on the same samples; -11.1 is a drop of 11.1).")
        if "MACs" in table.columns:
            notes.append("MACs are multiply-accumulates per image.")
        if "sig. vs ref" in table.columns:
            ref = [lab for lab, mark in _significance_marks(data).items() if mark == "ref"]
            against = ", ".join(ref) or "the reference"
            notes.append(f"sig. vs ref: paired comparison of clean predictions against {against} (exact McNemar "
                         "test, Holm-adjusted): * significant, n.s. not significant, ref the reference.")
        blocks.append(("list", notes))

    blocks.append(("h", 2, "Paired comparisons"))
    comparisons = _comparisons_table(data)
    if comparisons.empty:
        blocks.append(("p", "No paired comparisons."))
    else:
        blocks.append(("table", comparisons))
        blocks.append(("p", "diff: accuracy minus the reference's, in points, with a paired bootstrap CI; "
                            "b/c: samples only the system / only the reference gets right; McNemar p exact, "
                            "Holm-adjusted across the comparisons."))

    blocks.append(("h", 2, "Failures"))
    if data.failures:
        rows = [{"cell": str(f.get("cell", "")), "architecture": str(f.get("label", "")),
                 "reason": str(f.get("reason", ""))} for f in data.failures]
        blocks.append(("table", pd.DataFrame(rows)))
    else:
        blocks.append(("p", "No cell failed."))

    if images or plot_errors:
        blocks.append(("h", 2, "Plots"))
        for name in PLOT_FILES:
            if name in images:
                blocks.append(("h", 3, PLOT_TITLES[name]))
                blocks.append(("image", name, PLOT_TITLES[name]))
            elif name in plot_errors:
                blocks.append(("h", 3, PLOT_TITLES[name]))
                blocks.append(("p", f"This plot could not be drawn: {plot_errors[name]}"))

    blocks.append(("h", 2, "Provenance"))
    blocks.append(("pre", _provenance_text(data.provenance)))
    return blocks


def _md_text(text: str) -> str:
    """Escape what Markdown would read as HTML tags."""
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", str(text))


def _md_cell(text: Any) -> str:
    return _md_text(str(text)).replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: Sequence[_Block], image_files: Mapping[str, str] = PLOT_FILES) -> str:
    """Markdown for report blocks; an image block names its plot, ``image_files`` gives the plot's file."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {_md_text(block[2])}")
        elif kind == "banner":
            out.append(f"> **⚠ {_md_text(block[1])}**")
        elif kind == "p":
            out.append(_md_text(block[1]))
        elif kind == "list":
            out.append("\n".join(f"- {_md_text(item)}" for item in block[1]))
        elif kind == "table":
            frame: pd.DataFrame = block[1]
            lines = ["| " + " | ".join(_md_cell(c) for c in frame.columns) + " |",
                     "|" + "|".join("---" for _ in frame.columns) + "|"]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            out.append("\n".join(lines))
        elif kind == "image":
            out.append(f"![{_md_text(block[2])}]({image_files[block[1]]})")
        elif kind == "pre":
            runs = [len(r) for r in re.findall(r"`+", block[1])]
            fence = "`" * max(3, max(runs, default=0) + 1)
            out.append(f"{fence}\n{block[1]}\n{fence}")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.6em; }
.banner { background: #fde8e8; border: 2px solid #c00; color: #800; font-weight: bold; padding: .8em 1em;
          margin: 1em 0; border-radius: 4px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 12px; }
""".strip()


def _html(blocks: Sequence[_Block], title: str, images: Mapping[str, bytes]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>"]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif kind == "banner":
            out.append(f'<div class="banner">&#9888; {esc(block[1])}</div>')
        elif kind == "p":
            out.append(f"<p>{esc(block[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            frame = block[1]
            head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                           for row in frame.itertuples(index=False))
            out.append(f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{body}</tbody></table></div>")
        elif kind == "image":
            encoded = base64.b64encode(images[block[1]]).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{encoded}" alt="{esc(block[2])}">'
                       f"<figcaption>{esc(block[2])}</figcaption></figure>")
        elif kind == "pre":
            out.append(f"<pre>{esc(block[1])}</pre>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, data: ReportData) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNG plots into ``out_dir`` (created if needed).

    The HTML is self-contained: inline CSS, PNGs as ``data:image/png;base64,`` URIs, every text escaped with
    :func:`html.escape`. Plots without data are skipped; a plot that fails to draw is named in the report (with a
    warning) instead of losing the whole report. Every file is written to a temporary file and renamed into place.

    Returns:
        ``{"markdown": report.md, "html": report.html, <plot name>: PNG path, ...}`` with plot names as in
        :data:`PLOT_FILES`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    errors: dict[str, str] = {}
    for name, draw in _PLOTS.items():
        try:
            fig = draw(data)
        except Exception as exc:  # a plot bug must not cost the whole report; it is reported loudly instead
            errors[name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"report plot {name!r} failed: {errors[name]}", RuntimeWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        images[name] = _png(fig)
        paths[name] = out_dir / PLOT_FILES[name]
        write_atomic(paths[name], images[name])
    blocks = _blocks(data, list(images), errors)
    paths["markdown"] = out_dir / "report.md"
    paths["html"] = out_dir / "report.html"
    write_atomic(paths["markdown"], _markdown(blocks).encode("utf-8"))
    write_atomic(paths["html"], _html(blocks, data.title, images).encode("utf-8"))
    return paths


def report_folder(reports_root: Path, suite: str, timestamp: str | None = None) -> Path:
    """``<reports_root>/<suite>/<YYYYmmdd-HHMMSS>/`` (not created).

    Without ``timestamp`` the current local time is used, with ``-1``, ``-2``, ... appended when that folder
    already exists (two reports in one second).

    Raises:
        FbenchError: a suite name that is not a single path component, or a timestamp not in that format.
    """
    suite = str(suite)
    if not suite or suite in (".", "..") or "/" in suite or "\\" in suite:
        raise FbenchError(f"suite name {suite!r} cannot name a report folder; use a name without '/' or '\\'")
    base = Path(reports_root) / suite
    if timestamp is not None:
        if not _TIMESTAMP.match(str(timestamp)):
            raise FbenchError(f"report timestamp {timestamp!r} must look like 20240131-235959 (YYYYmmdd-HHMMSS)")
        return base / str(timestamp)
    stamp = datetime.now().strftime(TIMESTAMP_FORMAT)
    folder, n = base / stamp, 0
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    return folder
