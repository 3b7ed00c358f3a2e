"""Report documents: a report is a list of blocks, written as Markdown and as self-contained HTML.

- :func:`markdown_document`, :func:`html_document`, :func:`png_bytes`: the public writers, shared by the suite
  report and the tune report (``fbench.tune.output``).
- :func:`write_report`: a suite run's ``report.md``, ``report.html`` (inline CSS, PNGs as base64 data URIs, all text
  escaped) and the PNGs, each written atomically, from a :class:`~fbench.report.tables.ReportData`.
- :func:`report_folder`: ``<reports root>/<suite>/<YYYYmmdd-HHMMSS>/``.

Conventions (``design.md``): MACs are multiply-accumulates and are called MACs, never FLOPs; synthetic data is
labelled loudly (banner, leaderboard caption, every plot); a paper's own protocol that selects on the test fold is
named in a banner; a budget says exactly what it cut.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fbench.data.files import write_atomic
from fbench.data.placement import FALLBACK_SOURCES, fallback_share, sources_text
from fbench.errors import FbenchError
from fbench.report.plots import DPI, PLOT_FILES, PLOT_TITLES, PLOTS
from fbench.report.tables import (
    SUMMARY_COLUMNS,
    ReportData,
    budget_limited_lines,
    comparisons_table,
    leaderboard_table,
    per_pose_table,
    significance_marks,
)
from fbench.suite.conditions import is_perturbation
from fbench.suite.schema import LEAKY_LABEL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SYNTHETIC_BANNER",
    "TIMESTAMP_FORMAT",
    "Block",
    "failures_blocks",
    "html_document",
    "markdown_document",
    "png_bytes",
    "report_folder",
    "write_report",
]

SYNTHETIC_BANNER = "Synthetic data: procedurally rendered faces, not a real dataset"
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
_TIMESTAMP = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, at the reports' resolution."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


# A report is a list of blocks rendered twice, to Markdown and to HTML:
# ("h", level, text) ("banner", text) ("p", text) ("list", [text]) ("table", DataFrame) ("image", name, caption)
# ("pre", text)
Block = tuple[Any, ...]


def _provenance_text(provenance: Mapping[str, Any]) -> str:
    lines = []
    for key, value in provenance.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True, default=str)
        lines.append(f"{key}: {value}")
    return "\n".join(lines) if lines else "(none recorded)"


def _blocks(data: ReportData, images: Sequence[str], plot_errors: Mapping[str, str]) -> list[Block]:
    blocks: list[Block] = [("h", 1, data.title)]
    if data.synthetic:
        note = f" {data.synthetic_note.strip()}" if data.synthetic_note.strip() else ""
        blocks.append(("banner", f"{SYNTHETIC_BANNER}.{note} Numbers here say nothing about real faces."))
    if data.leaky_protocol:
        blocks.append(("banner", f"Leaky protocol: {data.leaky_protocol} ({LEAKY_LABEL}). This is a paper's own "
                                 "protocol that selects models on the test fold; its accuracies are optimistic and "
                                 "not comparable with results that select on a validation split."))
    facts = [f"Suite: {data.suite}"]
    if data.cells:
        facts.append("Cells: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.cells.items()))
    if data.face_crops:
        facts.append("Face crops: " + ", ".join(f"{how} {n:,}" for how, n in data.face_crops.items())
                     + (" (Haar detection on a reduced copy; fallback = the fixed per-pose box)"
                        if "fallback" in data.face_crops or "frontal" in data.face_crops else ""))
    if data.landmark_sources:
        facts.append("Landmarks by pose (model: dlib's 68 points; calibrated: per-pose positions for the crop; "
                     f"recorded: the dataset's; canonical: the head model's): {sources_text(data.landmark_sources)}")
    blocks.append(("p", ". ".join(facts) + "."))

    blocks.append(("h", 2, "Budget"))
    if data.budget or data.budget_cuts:
        blocks.append(("p", f"Budget: {data.budget or '(unnamed)'}. "
                            + ("It cut:" if data.budget_cuts else "It cut nothing.")))
        if data.budget_cuts:
            blocks.append(("list", [str(c) for c in data.budget_cuts]))
    else:
        blocks.append(("p", "Full run: no budget, nothing cut."))

    blocks.append(("h", 2, "Leaderboard" + (" (synthetic data)" if data.synthetic else "")
                   + (f" ({LEAKY_LABEL})" if data.leaky_protocol else "")))
    table = leaderboard_table(data)
    if table.empty:
        blocks.append(("p", "No results."))
    else:
        blocks.append(("table", table))
        notes = ["Accuracies in %, mean over runs (folds x seeds) ± standard deviation, [hierarchical bootstrap 95% "
                 "CI over runs and test images: runs resampled, then the test images of each fold]."]
        if data.leaky_protocol:
            notes.insert(0, f"{LEAKY_LABEL.capitalize()}: early stopping, the learning-rate schedule and the kept "
                            "epoch watched the test images scored here, as the paper's released code does; these "
                            "accuracies are optimistic.")
        notes += [str(note) for note in data.setting_notes]
        if any(c not in SUMMARY_COLUMNS for c in table.columns):
            notes.append("Condition columns: accuracy % under the condition (its change from clean accuracy in "
                         "points, paired on the same samples; -11.1 is a drop of 11.1).")
        if "MACs" in table.columns:
            notes.append("MACs are multiply-accumulates per image.")
        placed = [c for c in dict.fromkeys(data.conditions.get("condition", pd.Series(dtype=str)).astype(str))
                  if is_perturbation(c)]
        share = fallback_share(data.landmark_sources)
        if placed and share > 0.5:
            notes.append(f"Landmark fallbacks: {share:.0%} of the faces have {' or '.join(FALLBACK_SOURCES)} "
                         "landmarks, not ones found on the face, so " + ", ".join(placed) + " place their "
                         "occluders by pose and crop, not by each face.")
        if data.incomplete:
            marked = ", ".join(f"{label} ({cells})" for label, cells in data.incomplete.items())
            notes.append(f"Incomplete: {marked}; their means rest on fewer runs than the others'. "
                         + ("They are ranked anyway (--partial)." if data.partial else
                            "They are not ranked against complete architectures (rank –); --partial ranks them."))
        if "sig. vs ref" in table.columns:
            ref = [lab for lab, mark in significance_marks(data).items() if mark == "ref"]
            against = ", ".join(ref) or "the reference"
            notes.append(f"sig. vs ref: paired comparison of clean predictions against {against} (exact McNemar "
                         "test, Holm-adjusted): * significant, n.s. not significant, ref the reference.")
        blocks.append(("list", notes))
    if data.budget_limited:
        blocks.append(("h", 3, "Budget-limited on this device"))
        blocks.append(("list", budget_limited_lines(data)))

    blocks.append(("h", 2, "Paired comparisons"))
    comparisons = comparisons_table(data)
    if comparisons.empty:
        blocks.append(("p", "No paired comparisons."))
    else:
        blocks.append(("table", comparisons))
        blocks.append(("p", "n images: unique test images (view, fold, image), each counted once, its correctness "
                            "averaged over seeds; diff: accuracy minus the reference's, in points, with a paired "
                            "bootstrap CI (images resampled with their seeds together); b/c: images only the system / "
                            "only the reference gets right by majority over seeds (ties left out); McNemar p exact, "
                            "Holm-adjusted across the comparisons."))

    blocks += failures_blocks("Cells not in the leaderboard", data.failures)

    if images or plot_errors:
        blocks.append(("h", 2, "Plots"))
        for name in PLOT_FILES:
            if name in images:
                blocks.append(("h", 3, PLOT_TITLES[name]))
                blocks.append(("image", name, PLOT_TITLES[name]))
            elif name in plot_errors:
                blocks.append(("h", 3, PLOT_TITLES[name]))
                blocks.append(("p", f"This plot could not be drawn: {plot_errors[name]}"))
            if name == "pose" and (name in images or name in plot_errors):
                blocks += _per_pose_blocks(data)

    blocks.append(("h", 2, "Provenance"))
    blocks.append(("pre", _provenance_text(data.provenance)))
    return blocks


def failures_blocks(heading: str, failures: Sequence[Mapping[str, Any]]) -> list[Block]:
    """A section listing the cells left out (missing, failed, corrupt) with their key and reason, or saying none."""
    if not failures:
        return [("h", 2, heading), ("p", "None: every cell is complete.")]
    rows = [{"state": str(f.get("state", "failed")), "cell": str(f.get("cell", "")), "key": str(f.get("key", "")),
             "architecture": str(f.get("label", "")), "reason": str(f.get("reason", ""))} for f in failures]
    return [("h", 2, heading), ("table", pd.DataFrame(rows))]


def _per_pose_blocks(data: ReportData) -> list[Block]:
    """The per-pose plot's numbers as a table under it (architectures x poses)."""
    table = per_pose_table(data)
    if table.empty:
        return []
    return [("table", table), ("p", "Clean accuracy % by pose, mean over runs (folds x seeds); the plot's error bars "
                                    "are the hierarchical bootstrap 95% CI.")]


def _md_text(text: str) -> str:
    """Escape what Markdown would read as HTML tags."""
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", str(text))


def _md_cell(text: Any) -> str:
    return _md_text(str(text)).replace("|", "\\|").replace("\n", " ")


def markdown_document(blocks: Sequence[Block], image_files: Mapping[str, str]) -> str:
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


def html_document(blocks: Sequence[Block], title: str, images: Mapping[str, bytes]) -> str:
    """A self-contained HTML page for report blocks: inline CSS, an image block's PNG (``images[name]``) as a
    base64 data URI, every text escaped."""
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
    for name, draw in PLOTS.items():
        try:
            fig = draw(data)
        except Exception as exc:  # a plot bug must not cost the whole report; it is reported loudly instead
            errors[name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"report plot {name!r} failed: {errors[name]}", RuntimeWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        images[name] = png_bytes(fig)
        paths[name] = out_dir / PLOT_FILES[name]
        write_atomic(paths[name], images[name])
    blocks = _blocks(data, list(images), errors)
    paths["markdown"] = out_dir / "report.md"
    paths["html"] = out_dir / "report.html"
    write_atomic(paths["markdown"], markdown_document(blocks, PLOT_FILES).encode("utf-8"))
    write_atomic(paths["html"], html_document(blocks, data.title, images).encode("utf-8"))
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
