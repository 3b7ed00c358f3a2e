"""From a suite run to its reports: one per view (the main protocol at the top of the folder, extra views in
``views/<name>/``), with provenance, the budget's cuts, failures and the architectures' costs."""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fbench.data.files import write_atomic
from fbench.data.summary import bad_files_text
from fbench.profile import count_macs, count_parameters
from fbench.registry import get_architecture
from fbench.report.cross import CrossReportData, dataset_lines, pair_report_paths, write_cross_report
from fbench.report.document import report_folder, write_report
from fbench.report.formats import write_leaderboard_files
from fbench.report.tables import ReportData
from fbench.run import store
from fbench.run.context import setting_notes
from fbench.run.plan import Plan
from fbench.score.leaderboard import Leaderboard, condition_frame, efficiency_frame
from fbench.suite.schema import budget_cuts
from fbench.tracking import environment_tags, git_commit

# Beside the report: every image file left out under --on-error skip, "path<TAB>reason" per line.
SKIPPED_IMAGES_FILE = "skipped-images.txt"


def architecture_profiles(run: Any, output: Path) -> dict[str, dict[str, Any]]:
    """Parameters and MACs of every architecture x variant of the run (cached in the suite's output)."""
    profiles: dict[str, dict[str, Any]] = {}
    for cell in run.cells:
        if cell.label in profiles:
            continue
        key = hashlib.sha256(json.dumps([cell.architecture, cell.options, cell.input_size, run.dataset.name],
                                        sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = output / run.suite.name / "profiles" / f"{key}.json"
        if path.is_file():
            profiles[cell.label] = store.read_json(path)
            continue
        model = get_architecture(cell.architecture).build(run.num_classes, **cell.options).eval()
        total, _, _ = count_parameters(model)
        macs = count_macs(model, torch.zeros(1, *cell.input_size)).macs
        profiles[cell.label] = {"params": total, "macs": macs}
        store.write_json(path, profiles[cell.label])
    return profiles


def _provenance(run: Any, device: str) -> dict[str, Any]:
    suite_text = json.dumps(run.suite.to_dict(), sort_keys=True)
    return {
        "suite file": run.suite.source or "(built in Python)",
        "suite hash": hashlib.sha256(suite_text.encode()).hexdigest()[:16],
        **({"tuned from (fbench tune)": run.suite.tuned_from} if run.suite.tuned_from else {}),
        "dataset": f"{run.dataset.name} at {run.dataset.root}"
                   + (f" (from {run.dataset.origin})" if getattr(run.dataset, "origin", "") else ""),
        **({"image files left out (--on-error skip)": f"{len(run.skipped_files)}: "
                                                      f"{bad_files_text(run.skipped_files, limit=50)}"}
           if getattr(run, "skipped_files", None) else {}),
        "git commit": git_commit() or "unknown",
        "device": device,
        "command": " ".join(sys.argv),
        "machine": platform.platform(),
        **environment_tags(),
    }


def write_suite_report(run: Any, device: str) -> dict[str, Path]:
    """Write the reports of ``run`` under ``reports/<suite>/<timestamp>/``, with ``leaderboard.csv`` and
    ``leaderboard.json`` (every view) beside the main ``report.md``; returns the main report's files and those."""
    folder = report_folder(Path(run.suite.reports), run.suite.name)
    views = suite_report_data(run, device)
    written: dict[str, Path] = {}
    for view, data in views:
        target = folder if view == "main" else folder / "views" / view
        paths = write_report(target, data)
        if view == "main" or not written:
            written = paths
    if getattr(run, "cross", None) is not None:  # the matrix at the top; each pair's report under views/
        written = write_cross_report(folder, cross_report_data(run, device, [view for view, _ in views]))
    folder.mkdir(parents=True, exist_ok=True)
    written = {**written, **write_leaderboard_files(folder, views)}
    if getattr(run, "skipped_files", None):
        listing = folder / SKIPPED_IMAGES_FILE
        write_atomic(listing, "".join(f"{path}\t{reason}\n" for path, reason in run.skipped_files.items()).encode())
        written = {**written, "skipped_images": listing}
    return written


def suite_report_data(run: Any, device: str) -> list[tuple[str, ReportData]]:
    """Each view's :class:`ReportData` (the main protocol first), as the reports and the leaderboard files show
    it; ``device`` is what the provenance names (the device, or "stored results")."""
    profiles = architecture_profiles(run, Path(run.suite.output))
    failures = [{"state": gap.state, "cell": gap.name, "key": gap.key, "label": gap.label, "reason": gap.reason}
                for gap in run.completeness.gaps]
    counts = {"total": len(run.cells), "complete": len(run.cells) - len(failures),
              "run": sum(not o.reused for o in run.outcomes), "reused": sum(o.reused for o in run.outcomes),
              **run.completeness.state_counts()}
    leaky = {name: f"{protocol.kind}, the {name} protocol"
             for name, protocol in run.suite.protocols(run.dataset.fallback) if protocol.leaky}
    boards = sorted(run.leaderboards, key=lambda board: board.view != "main")  # stable: extra views in order
    return [(board.view, _report_data(run, board, profiles, failures, counts, leaky.get(board.view), device))
            for board in boards]


def cross_report_data(run: Any, device: str, views: list[str]) -> CrossReportData:
    """The cross-dataset report of ``run`` (its matrix, datasets, budget, failures and provenance); ``views`` are
    the pair reports written beside it."""
    layout = run.cross_layout
    failures = [{"state": gap.state, "cell": gap.name, "key": gap.key, "label": gap.label, "reason": gap.reason}
                for gap in run.completeness.gaps]
    synthetic = [name for name, choice in layout.choices.items() if choice.synthetic]
    note = ""
    if layout.fallback:
        note = ("No location was given for the suite's real datasets; the matrix runs on two synthetic sets "
                "rendered by fbench (the target with other identities and a hard side light).")
    elif synthetic:
        note = f"Synthetic: {', '.join(synthetic)}."
    return CrossReportData(
        suite=run.suite.name,
        title=f"{run.suite.name}: trained on × tested on — {run.suite.description or 'cross-dataset matrix'}"
              + (" (synthetic data)" if synthetic else ""),
        matrix=run.cross, datasets=dataset_lines(layout.choices, layout.sizes), left_out=dict(layout.left_out),
        synthetic=bool(synthetic), synthetic_note=note, budget=run.budget,
        budget_cuts=budget_cuts(run.suite, run.budget) + [
            f"budget-limited on this device: {entry.label} not trained on {entry.view} ({entry.limited})"
            for entry in (run.plan.limited() if run.plan is not None else [])],
        pair_reports=pair_report_paths(views), failures=failures,
        provenance=_provenance(run, device),
        per_pose=run.cross_poses if getattr(run, "cross_poses", None) is not None else pd.DataFrame())


def plan_lines(plan: Plan | None, view: str) -> list[str]:
    """What a time-planned budget gave each architecture of ``view`` on the device it measured."""
    if plan is None:
        return []
    parts = [f"{e.label} {e.epochs} epochs x {e.train_images:,} images (about {e.seconds:.0f} s)"
             for (_, entry_view), e in plan.entries.items() if entry_view == view and not e.is_limited]
    return [f"time-planned on {plan.device} from a throughput probe: " + ("; ".join(parts) or "nothing trained")]


def _image_counts(run: Any, view: str) -> list[str]:
    """``images per cell (train / val / test): lanmsff 3,528 / 140 / 140; ...``: the medians over the view's
    finished cells, from their result files (cells of older versions do not record them)."""
    counts: dict[str, list[tuple[int, int, int]]] = {}
    for outcome in run.outcomes:
        if outcome.cell.view != view or outcome.status != store.COMPLETE:
            continue
        record = store.finished_result(outcome.folder) or {}
        images = record.get("images")
        if images:
            counts.setdefault(outcome.cell.label, []).append((images["train"], images["val"], images["test"]))
    if not counts:
        return []
    parts = []
    for label, values in counts.items():
        train, val, test = (int(statistics.median(column)) for column in zip(*values))
        parts.append(f"{label} {train:,} / {val:,} / {test:,}")
    return ["images per cell (train / val / test, median over runs): " + "; ".join(parts)]


def _report_data(run: Any, board: Leaderboard, profiles: dict[str, dict[str, Any]], failures: list[dict],
                 counts: dict[str, int], leaky: str | None, device: str) -> ReportData:
    view = "" if board.view == "main" else f" — view {board.view}"
    plan: Plan | None = getattr(run, "plan", None)
    synthetic_note = ""
    if run.dataset.synthetic:
        synthetic_note = (f"The suite's dataset {run.suite.dataset!r} was not given; these results come from "
                          f"fbench's synthetic KDEF-like set in {run.dataset.root}." if run.dataset.fallback
                          else f"The dataset in {run.dataset.root} is marked synthetic.")
    return ReportData(
        suite=run.suite.name,
        title=f"{run.suite.name}{view}: {run.suite.description or run.suite.name}"
              + (" (synthetic data)" if run.dataset.synthetic else ""),
        leaderboard=board.aggregate,
        comparisons=board.comparisons if not board.comparisons.empty else pd.DataFrame(),
        per_pose=board.per_pose,
        conditions=condition_frame(board),
        efficiency=efficiency_frame(board, profiles),
        confusions=board.confusions,
        failures=failures,
        provenance=_provenance(run, device),
        synthetic=run.dataset.synthetic,
        synthetic_note=synthetic_note,
        budget=run.budget,
        budget_cuts=(budget_cuts(run.suite, run.budget) + plan_lines(plan, board.view)
                     + _image_counts(run, board.view)),
        leaky_protocol=leaky,
        setting_notes=setting_notes(run.cells),
        cells=counts,
        cells_per_architecture=board.cells,
        incomplete=board.incomplete,
        partial=board.partial,
        face_crops=dict(getattr(run, "face_crops", None) or {}),
        landmark_sources=dict(getattr(run, "landmark_sources", None) or {}),
        budget_limited={e.label: e.limited for e in plan.limited(board.view)} if plan is not None else {},
    )
