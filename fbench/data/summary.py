"""What a sample table holds, for `fbench data info` and for logs (with how its face crops are made and where its
landmarks come from), and the image files it left out."""

from __future__ import annotations

from typing import Any

from fbench.data.cache import detection_counts, landmark_counts, landmark_model, resolve_crop
from fbench.data.images import IMAGE_PROBLEMS
from fbench.data.landmarker import missing_reason
from fbench.data.table import SampleTable


def bad_files(table: SampleTable) -> dict[str, str]:
    """The image files the table left out because they do not decode or are missing, as {path: reason}
    (``on_error="skip"``; under ``"raise"`` loading fails instead). Paths are relative to the table's root."""
    return {where: reason for reason, places in table.report.skipped.items() if reason in IMAGE_PROBLEMS
            for where in places}


def bad_files_text(bad: dict[str, str], limit: int = 20) -> str:
    """``path (reason), ...`` for the first ``limit`` bad files, then how many more."""
    items = [f"{path} ({reason})" for path, reason in bad.items()]
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def summarize(table: SampleTable) -> dict[str, Any]:
    frame = table.frame
    names = table.label_names
    labels = frame["label"].value_counts().sort_index()
    summary: dict[str, Any] = {
        "dataset": table.dataset,
        "root": str(table.root),
        "synthetic": table.synthetic,
        "images": len(table),
        "num_classes": table.num_classes,
        "classes": {names[int(label)]: int(n) for label, n in zip(labels.index, labels.to_numpy())},
        "subjects": int(frame["subject"].replace("", None).nunique()),
        "poses": {str(p): int(n) for p, n in frame["pose"].value_counts().sort_index().items() if p},
        "splits": {str(s): int(n) for s, n in frame["split"].value_counts().sort_index().items() if s},
        "conditions": {c.removeprefix("cond_"): int(frame[c].sum()) for c in frame.columns if c.startswith("cond_")},
        "landmarks": table.has_landmarks,
        "aligned": table.aligned,
        "skipped": {reason: len(where) for reason, where in table.report.skipped.items()},
        "bad_files": bad_files(table),
    }
    # How the face crops are made (detections: None until `fbench data prepare` or a run has detected them).
    summary["crop"] = resolve_crop(table, None)
    summary["detections"] = detection_counts(table, summary["crop"])
    # Where the landmarks come from, per pose (None for detected crops until a preparation has placed them), and
    # the landmark model that detected crops use (or, without it, what is missing).
    summary["landmark_sources"] = landmark_counts(table, summary["crop"])
    summary["landmark_model"] = landmark_model(summary["crop"])
    summary["landmark_model_missing"] = missing_reason() if summary["crop"] == "haar" else None
    if "session" in frame.columns:
        summary["sessions"] = sorted(str(s) for s in frame["session"].unique() if s)
    if table.meta.get("synthetic_info"):
        summary["synthetic_info"] = table.meta["synthetic_info"]
    if table.meta.get("notes"):  # what the adapter left out or assumed (e.g. CK+ sequences without a label)
        summary["notes"] = [str(note) for note in table.meta["notes"]]
    return summary
