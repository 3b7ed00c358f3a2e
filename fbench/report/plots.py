"""Report plots: accuracy by yaw pose, by occlusion severity, by mask kind, against MACs and parameters (with the
Pareto front), and row-normalised confusion matrices, all from a :class:`~fbench.report.tables.ReportData`.

Each ``plot_*`` returns a matplotlib ``Figure`` drawn on an Agg canvas (no pyplot, no global backend switch), or
``None`` when it has no data. Synthetic data is labelled on every plot. matplotlib is imported only when a plot is
drawn, so that building tables stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from fbench.errors import FbenchError
from fbench.report.tables import (
    DASH,
    POSE_YAW,
    ReportData,
    clean_accuracy_by_label,
    clean_ci_by_label,
    is_finite,
    label_order,
    order_poses,
    require_columns,
)
from fbench.suite.conditions import CLEAN, perturbation_point

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "PLOTS",
    "PLOT_FILES",
    "PLOT_TITLES",
    "make_figures",
    "pareto_front",
    "plot_confusions",
    "plot_cross_matrix",
    "plot_efficiency",
    "plot_masks",
    "plot_occlusion",
    "plot_pose",
]

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
DPI = 110  # of the figures and of their PNGs
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas: no pyplot state, no interactive backend, safe in threads and on headless hosts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
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
    require_columns(pp, ("label", "pose", "accuracy_mean"), "per_pose")
    poses = order_poses(pp["pose"])
    if not poses:
        return None
    kdef = all(str(p) in POSE_YAW for p in poses)
    position = {p: (POSE_YAW[str(p)] if kdef else float(i)) for i, p in enumerate(poses)}
    labels = [lab for lab in label_order(data) if lab in set(pp["label"].astype(str))]
    styles = _styles(label_order(data))
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
    require_columns(cond, ("label", "condition", "accuracy_mean"), "conditions")
    parsed = [perturbation_point(str(c)) for c in cond["condition"]]
    keep = [p is not None and p[0] == name for p in parsed]
    points = [p for p in parsed if p is not None and p[0] == name]
    out = cond[keep].copy()
    out["label"] = out["label"].astype(str)
    out["kind"] = [p[1] for p in points]
    out["severity"] = [p[2] for p in points]
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
    order = label_order(data)
    styles = _styles(order)
    clean, clean_ci = clean_accuracy_by_label(data), clean_ci_by_label(data)
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
            if 0.0 not in x and is_finite(clean.get(label)):
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
    clean, clean_ci = clean_accuracy_by_label(data), clean_ci_by_label(data)
    order = [lab for lab in label_order(data) if lab in set(pts["label"])]
    styles = _styles(label_order(data))
    with_clean = any(is_finite(clean.get(lab)) for lab in order)
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
                low.append(max(0.0, (mean - lo) * 100) if is_finite(mean) else 0.0)
                high.append(max(0.0, (hi - mean) * 100) if is_finite(mean) else 0.0)
                continue
            mean = float(sub.loc[g, "accuracy_mean"]) if g in sub.index else np.nan
            y.append(mean * 100)
            lo = sub.loc[g, "accuracy_ci_low"] if g in sub.index and "accuracy_ci_low" in sub.columns else np.nan
            hi = sub.loc[g, "accuracy_ci_high"] if g in sub.index and "accuracy_ci_high" in sub.columns else np.nan
            low.append(max(0.0, (mean - float(lo)) * 100) if is_finite(lo) and is_finite(mean) else 0.0)
            high.append(max(0.0, (float(hi) - mean) * 100) if is_finite(hi) and is_finite(mean) else 0.0)
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


def pareto_front(costs: ArrayLike, accuracies: ArrayLike) -> list[int]:
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
    clean = clean_accuracy_by_label(data)
    if "accuracy_mean" not in out.columns:
        out["accuracy_mean"] = np.nan
    out["accuracy_mean"] = [a if is_finite(a) else clean.get(lab, np.nan)
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

    styles = _styles(label_order(data))
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
    order = [lab for lab in label_order(data) if lab in data.confusions]
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
                text = DASH if np.isnan(value) else ("1" if value >= 1 else f"{value:.2f}".lstrip("0"))
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


# Plot name (as in PLOT_FILES) -> its drawing function.
PLOTS: dict[str, Callable[[ReportData], Figure | None]] = {
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
    for name, draw in PLOTS.items():
        fig = draw(data)
        if fig is not None:
            figures[name] = fig
    return figures



def plot_cross_matrix(matrix: pd.DataFrame, synthetic: bool = False, condition: str = CLEAN) -> Figure | None:
    """Heat maps of a cross-dataset matrix (:func:`fbench.score.cross.cross_matrix`), one per architecture: rows
    trained on, columns tested on, colour and number the mean accuracy % under ``condition``, the scored classes'
    chance level under it; None without rows."""
    rows = matrix[matrix["condition"] == condition] if not matrix.empty else matrix
    if rows.empty:
        return None
    labels = list(dict.fromkeys(rows["label"]))
    trains = list(dict.fromkeys(rows["train"]))
    tests = list(dict.fromkeys(rows["test"]))
    fig = _figure(max(4.0, 1.3 * len(tests) + 2.2) * len(labels), 1.0 * len(trains) + 2.4)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    image = None
    for ax, label in zip(axes, labels):
        sub = rows[rows["label"] == label].set_index(["train", "test"])
        values = np.full((len(trains), len(tests)), np.nan)
        for i, train in enumerate(trains):
            for j, test in enumerate(tests):
                if (train, test) not in sub.index:
                    continue
                row = sub.loc[(train, test)]
                values[i, j] = 100.0 * float(row["accuracy_mean"])
                chance = float(row["chance"])
                text = f"{values[i, j]:.1f}" + (f"\nchance {100 * chance:.0f}" if math.isfinite(chance) else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] < 55 else "black")
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(tests)), tests, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(trains)), trains, fontsize=8)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(label, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="accuracy %", shrink=0.8)
    title = "Accuracy % by trained on x tested on" + ("" if condition == CLEAN else f" ({condition})")
    if synthetic:
        title += "\nSYNTHETIC DATA (procedurally rendered faces, not a real dataset)"
    fig.suptitle(title, fontsize=11, color="#a00000" if synthetic else "black")
    return fig
