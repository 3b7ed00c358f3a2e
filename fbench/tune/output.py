"""What a study leaves behind: ``best.yaml`` (the chosen parameters, for ``fbench run --params``), plots of the
optimisation history, the intermediate validation curves, parameter importances and (several objectives) the
Pareto front, and a report (Markdown and self-contained HTML) beside them.

Every file is written to a temporary name and renamed, so that several processes finishing one study at once
leave whole files (the last one to finish writes the most complete picture).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fbench.data.files import write_atomic
from fbench.report.document import SYNTHETIC_BANNER, Block, html_document, markdown_document, png_bytes
from fbench.suite.schema import ArchitectureConfig, Suite
from fbench.suite.search import SearchSpace
from fbench.suite.tuned import TUNED_FORMAT
from fbench.tune.objective import FAILED, PRUNED

PLOTS = {
    "history": ("optimization_history.png", "Optimisation history"),
    "intermediate": ("intermediate_values.png", "Validation score per epoch (pruned trials stop early)"),
    "importances": ("param_importances.png", "Parameter importances (fANOVA)"),
    "pareto": ("pareto_front.png", "Pareto front"),
}
_MIN_TRIALS_FOR_IMPORTANCE = 3


def study_counts(study: Any) -> dict[str, int]:
    """The study's trials by state: complete, pruned, failed, running."""
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: PRUNED, TrialState.FAIL: FAILED,
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
    counts = {"complete": 0, PRUNED: 0, FAILED: 0, "running": 0}
    for trial in study.get_trials(deepcopy=False):
        name = names.get(trial.state, "other")
        counts[name] = counts.get(name, 0) + 1
    return counts


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def chosen_trial(study: Any, objectives: Sequence[str]) -> tuple[Any | None, list[Any]]:
    """``(the chosen trial, the Pareto front)``: the best trial for one objective; for several, the front
    and on it the trial best on the first validation objective (ties: the earlier trial)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None, []
    if len(objectives) == 1:
        return study.best_trial, []
    front = sorted(study.best_trials, key=lambda t: t.number)
    first = 0
    sign = 1.0 if study.directions[first].name.lower() == "maximize" else -1.0
    best = max(front, key=lambda t: (sign * t.values[first], -t.number))
    return best, front


def best_document(study: Any, trial: Any, front: Sequence[Any], *, suite: Suite, entry: ArchitectureConfig,
                  space: SearchSpace, objectives: Sequence[str], storage: str, budget: str, fold: int,
                  dataset: str) -> dict[str, Any]:
    """The contents of ``best.yaml``."""
    values = {name: _plain(v) for name, v in zip(objectives, trial.values)}
    document: dict[str, Any] = {
        "format": TUNED_FORMAT,
        "architecture": entry.name,
        "label": entry.base_label,
        "suite": suite.name,
        "suite_file": str(Path(suite.source).resolve()) if suite.source else None,
        "study": study.study_name,
        "storage": storage,
        "objectives": {name: direction.name.lower() for name, direction in zip(objectives, study.directions)},
        "trial": trial.number,
        "values": values,
        "selected_on": f"validation part of fold {fold} of the main protocol (budget {budget}); the test split "
                       f"was never seen",
        "dataset": dataset,
        "trials": study_counts(study),
        "space": {"origin": space.origin, "params": space.to_dict()},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {name: _plain(value) for name, value in trial.params.items()},
    }
    if front:
        document["chosen"] = (f"of the {len(front)} trials on the Pareto front, the one with the best "
                              f"{objectives[0]}")
        document["pareto_front"] = [
            {"trial": t.number, "values": {n: _plain(v) for n, v in zip(objectives, t.values)},
             "params": {k: _plain(v) for k, v in t.params.items()}} for t in front]
    return document


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def _figures(study: Any, objectives: Sequence[str], complete: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The study's plots as matplotlib figures, and why any could not be drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from optuna.visualization import matplotlib as plots

    multi = len(objectives) > 1
    figures: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    first = (lambda t: t.values[0]) if multi else None
    draws = {
        "history": lambda: plots.plot_optimization_history(study, target=first, target_name=objectives[0]),
        "intermediate": (lambda: plots.plot_intermediate_values(study)) if not multi else None,
        "importances": lambda: plots.plot_param_importances(study, target=first, target_name=objectives[0]),
        "pareto": (lambda: plots.plot_pareto_front(study, target_names=list(objectives))) if multi else None,
    }
    for name, draw in draws.items():
        if draw is None:
            continue
        if name == "importances" and complete < _MIN_TRIALS_FOR_IMPORTANCE:
            skipped[name] = f"needs at least {_MIN_TRIALS_FOR_IMPORTANCE} complete trials (has {complete})"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes: Any = draw()  # one Axes, or an array of them
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. one distinct value per parameter
            skipped[name] = f"{type(error).__name__}: {error}"
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figures[name] = figure
    return figures, skipped


def _trials_table(study: Any, objectives: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        state = str(trial.user_attrs.get("state") or trial.state.name.lower())
        row: dict[str, Any] = {"trial": trial.number, "state": state}
        for i, name in enumerate(objectives):
            row[name] = f"{trial.values[i]:.4g}" if trial.values else ""
        row["epochs"] = trial.user_attrs.get("epochs_run", "")
        for name in names:
            value = trial.params.get(name, "")
            row[name] = f"{value:.3g}" if isinstance(value, float) else str(value)
        reason = trial.user_attrs.get("fail_reason") or trial.system_attrs.get("fail_reason") or \
            trial.user_attrs.get("pruned_at") or ""
        row["note"] = str(reason)[:120]
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(study: Any, out: Path, *, suite: Suite, entry: ArchitectureConfig, space: SearchSpace,
                  objectives: Sequence[str], storage: str, budget: str, fold: int, dataset: str,
                  notes: Sequence[str], report: bool = True) -> tuple[Path | None, dict[str, Path]]:
    """Write ``best.yaml`` (when a trial completed) and, with ``report``, the plots and
    ``report.md``/``report.html`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trial, front = chosen_trial(study, objectives)
    best_path: Path | None = None
    document: dict[str, Any] | None = None
    if trial is not None:
        document = best_document(study, trial, front, suite=suite, entry=entry, space=space, objectives=objectives,
                                 storage=storage, budget=budget, fold=fold, dataset=dataset)
        best_path = out / "best.yaml"
        header = ("# Written by `fbench tune`. Evaluate this configuration on the test split with\n"
                  f"#   fbench run {suite.source or 'SUITE'} --only {entry.base_label} --params {best_path}\n"
                  "# or name this file under tuned_from: in a suite.\n")
        _write_text(best_path, header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    if not report:
        return best_path, {}
    counts = study_counts(study)
    figures, skipped = _figures(study, objectives, counts["complete"])
    images: dict[str, bytes] = {}
    paths: dict[str, Path] = {}
    if figures:
        import matplotlib.pyplot as plt  # optuna draws its plots with pyplot; close them to free their memory

        for name, figure in figures.items():
            images[name] = png_bytes(figure)
            paths[name] = out / PLOTS[name][0]
            write_atomic(paths[name], images[name])
            plt.close(figure)
    blocks = _blocks(study, document, objectives, space, counts, list(images), skipped, notes, storage, dataset)
    paths["markdown"] = out / "report.md"
    paths["html"] = out / "report.html"
    _write_text(paths["markdown"], markdown_document(blocks, {name: file for name, (file, _title) in PLOTS.items()}))
    _write_text(paths["html"], html_document(blocks, f"fbench tune: {study.study_name}", images))
    return best_path, paths


def _blocks(study: Any, document: dict[str, Any] | None, objectives: Sequence[str], space: SearchSpace,
            counts: dict[str, int], images: Sequence[str], skipped: dict[str, str], notes: Sequence[str],
            storage: str, dataset: str) -> list[Block]:
    blocks: list[Block] = [("h", 1, f"Tuning study {study.study_name}")]
    if "synthetic" in dataset:
        blocks.append(("banner", f"{SYNTHETIC_BANNER}. These parameters say nothing about real faces."))
    blocks.append(("p", f"Storage: {storage}. Objectives: "
                        + ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(objectives, study.directions))
                        + f". Trials: {counts['complete']} complete, {counts[PRUNED]} pruned, {counts[FAILED]} "
                          f"failed" + (f", {counts['running']} running" if counts.get("running") else "") + "."))
    blocks.append(("p", "Every trial trains on the training part of one fold and is scored on its validation "
                        "part; the test split is never seen while tuning. Evaluate the chosen configuration on "
                        "the test split with fbench run --params best.yaml."))
    blocks.append(("h", 2, "Chosen configuration"))
    if document is None:
        blocks.append(("p", "No trial has completed yet."))
    else:
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in document["values"].items())
        blocks.append(("p", f"Trial {document['trial']}: {values}." + (f" Chosen: {document['chosen']}."
                                                                       if "chosen" in document else "")))
        blocks.append(("table", pd.DataFrame([{"parameter": k, "value": v} for k, v in document["params"].items()])))
        if document.get("pareto_front"):
            blocks.append(("h", 3, "Pareto front"))
            rows = [{"trial": t["trial"], **{k: f"{v:.4g}" for k, v in t["values"].items()}}
                    for t in document["pareto_front"]]
            blocks.append(("table", pd.DataFrame(rows)))
    blocks.append(("h", 2, "Search space"))
    blocks.append(("p", f"From {space.origin}."))
    blocks.append(("list", [param.describe() for param in space.params]))
    if notes:
        blocks.append(("list", list(notes)))
    blocks.append(("h", 2, "Trials"))
    table = _trials_table(study, objectives, space.names())
    blocks.append(("table", table) if not table.empty else ("p", "No trials."))
    blocks.append(("h", 2, "Plots"))
    for name, (_, title) in PLOTS.items():
        if name in images:
            blocks.append(("h", 3, title))
            blocks.append(("image", name, title))
        elif name in skipped:
            blocks.append(("h", 3, title))
            blocks.append(("p", f"Not drawn: {skipped[name]}."))
    return blocks
