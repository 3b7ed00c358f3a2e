"""What the built-in adapters share: options, root checks, collecting bad rows, building and checking tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fbench.data.adapter import DatasetAdapter
from fbench.data.cache import default_cache_dir
from fbench.data.images import IMAGE_PROBLEMS, MISSING_FILE, check_image_files
from fbench.data.table import REQUIRED_COLUMNS, LoadReport, SampleTable
from fbench.errors import FbenchError

ON_ERROR_CHOICES = ("raise", "skip")
SKIP_HINT = "skip them with on_error='skip' (CLI: --on-error skip)"

MISSING_IMAGE = MISSING_FILE
UNKNOWN_LABEL = "unknown label"
FRONTAL_POSE = "S"  # KDEF's code for a straight-ahead photograph (yaw 0), used by every frontal-only dataset


def env_var(name: str) -> str:
    """``FBENCH_DATA_<NAME>``, other characters than letters and digits as ``_`` (``imagefolder/jaffe``)."""
    return "FBENCH_DATA_" + "".join(c if c.isalnum() else "_" for c in name.upper())


class BuiltinAdapter(DatasetAdapter):
    """A built-in adapter. Options are keyword arguments; the registered instance uses the defaults.

    ``verify_images``: decode every image file once while loading (on two threads; the result is kept under the
    decode cache folder, so a second load of unchanged files does not decode them again), so that truncated,
    empty and non-image files are all named before anything is trained (or left out with ``on_error="skip"``).
    ``False`` checks only that the files exist: an undecodable file then fails when it is read.
    """

    def __init__(self, *, verify_images: bool = True) -> None:
        self.verify_images = verify_images

    def options(self) -> dict[str, Any]:
        return {"verify_images": self.verify_images}

    def with_options(self, **options: Any) -> BuiltinAdapter:
        """A copy with some options changed: ``get_dataset("kdef").with_options(verify_images=True)``."""
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise FbenchError(f"dataset {self.name!r} has no option(s) {unknown}; "
                              f"options: {sorted(self.options())}")
        return type(self)(**{**self.options(), **options})

    # -- root checks --------------------------------------------------------------------------------------
    def root_error(self, problem: str) -> FbenchError:
        """An error for a dataset that is not where fbench was told it is."""
        return FbenchError(
            f"dataset {self.name!r}: {problem}. Point fbench at the dataset with --data {self.name}=PATH or the "
            f"environment variable {env_var(self.name)}=PATH. Expected layout: {self.expected_layout}"
        )

    def require_dir(self, root: Path | str | None) -> Path:
        """``root`` as a Path, or an error naming the path, the CLI option, the variable and the layout."""
        if root is None or str(root) == "":
            raise self.root_error("no dataset path was given")
        path = Path(root).expanduser()
        if not path.exists():
            raise self.root_error(f"{str(path)!r} does not exist")
        if not path.is_dir():
            raise self.root_error(f"{str(path)!r} is not a folder")
        if not any(path.iterdir()):
            raise self.root_error(f"{str(path)!r} is empty")
        return path

    def require_file(self, root: Path, relative: str) -> Path:
        path = root / relative
        if not path.is_file():
            raise self.root_error(f"{str(path)!r} does not exist (looked for {relative} under {str(root)!r})")
        return path


class Problems:
    """Rows dropped while loading, by reason. Errors are raised together at the end under ``on_error="raise"``;
    exclusions (rows a dataset's own protocol drops, such as AffectNet's "None" class) are only reported."""

    def __init__(self, dataset: str, on_error: str) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise FbenchError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        self.dataset = dataset
        self.on_error = on_error
        self.report = LoadReport()
        self.errors = LoadReport()
        self.hints: list[str] = []

    def error(self, reason: str, where: str, hint: str | None = None) -> None:
        self.report.add(reason, where)
        self.errors.add(reason, where)
        if hint:
            self.hint(hint)

    def hint(self, text: str) -> None:
        """A sentence added once to the raised message (e.g. the accepted label names)."""
        if text not in self.hints:
            self.hints.append(text)

    def exclude(self, reason: str, where: str) -> None:
        self.report.add(f"excluded: {reason}", where)

    def raise_if_any(self) -> None:
        """Under ``on_error="raise"``: one error naming the counts by reason, examples and how to skip; files that
        do not decode are all named, each under its reason."""
        if self.on_error != "raise" or not self.errors.total:
            return
        hints = " ".join(self.hints)
        bad_files = LoadReport({r: w for r, w in self.errors.skipped.items() if r in IMAGE_PROBLEMS})
        other = LoadReport({r: w for r, w in self.errors.skipped.items() if r not in IMAGE_PROBLEMS})
        summary = "; ".join(part for part in (bad_files.summary(limit=bad_files.total), other.summary()) if part)
        raise FbenchError(
            f"dataset {self.dataset!r}: {self.errors.total} bad sample(s): {summary}. "
            + (f"{hints} " if hints else "")
            + f"Fix or remove them, or {SKIP_HINT}"
        )


def make_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A sample-table frame from column lists, with the required columns (defaults where absent) first."""
    n = len(next(iter(columns.values()))) if columns else 0
    defaults: dict[str, Any] = {"path": "", "index": -1, "subject": "", "pose": "", "yaw": np.nan, "split": ""}
    data: dict[str, Any] = {}
    for column in REQUIRED_COLUMNS:
        data[column] = columns[column] if column in columns else [defaults[column]] * n
    data.update({k: v for k, v in columns.items() if k not in data})
    frame = pd.DataFrame(data)
    for column in ("sample_id", "path", "subject", "pose", "split"):
        frame[column] = frame[column].astype(str)
    frame["index"] = frame["index"].astype(np.int64)
    frame["label"] = frame["label"].astype(np.int64)
    frame["yaw"] = frame["yaw"].astype(np.float64)
    return frame


def existing_files(root: Path, relative_paths: Sequence[str]) -> np.ndarray:
    """Which files exist, listing each folder once (far faster than one stat per file on large sets)."""
    listings: dict[Path, set[str] | None] = {}
    exists = np.zeros(len(relative_paths), dtype=bool)
    for i, relative in enumerate(relative_paths):
        path = root / relative
        parent = path.parent
        if parent not in listings:
            try:
                listings[parent] = set(os.listdir(parent))
            except OSError:
                listings[parent] = None
        names = listings[parent]
        # the stat fallback covers case-insensitive file systems, where listings and lookups disagree on case
        exists[i] = names is not None and (path.name in names or path.is_file())
    return exists


def drop_bad_images(frame: pd.DataFrame, root: Path, problems: Problems,
                    where: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows whose image exists; the others go to ``problems`` (:func:`finish` decode-checks the rest).

    ``where`` names each row in messages (e.g. ``"manifest.csv:12 (img/a.jpg)"``); the path by default."""
    paths = frame["path"].tolist()
    labels = list(where) if where is not None else paths
    keep = existing_files(root, paths)
    for i in np.flatnonzero(~keep):
        problems.error(MISSING_IMAGE, labels[i])
    return frame.loc[keep].reset_index(drop=True)


def drop_undecodable(frame: pd.DataFrame, root: Path, problems: Problems, store: Path | None = None) -> pd.DataFrame:
    """Rows whose image file decodes in full (rows without a file, i.e. array datasets, are kept); the others go
    to ``problems`` under their reason (truncated image, empty file, not an image, unreadable image)."""
    has_file = frame["path"] != ""
    paths = frame.loc[has_file, "path"].tolist()
    bad = check_image_files(root, paths, store=store)
    if not bad:
        return frame
    for path, reason in bad.items():
        problems.error(reason, path)
    return frame.loc[~frame["path"].isin(list(bad))].reset_index(drop=True)


def finish(adapter: BuiltinAdapter, root: Path, frame: pd.DataFrame, problems: Problems, num_classes: int,
           **table_fields: Any) -> SampleTable:
    """Decode-check the image files (``verify_images``), raise collected errors (``on_error="raise"``), refuse an
    empty result, and build the table."""
    if adapter.verify_images and not frame.empty:
        frame = drop_undecodable(frame, root, problems, store=default_cache_dir() / "checks")
    problems.raise_if_any()
    if frame.empty:
        skipped = f" Skipped: {problems.report.summary()}." if problems.report.total else ""
        raise FbenchError(f"dataset {adapter.name!r}: no usable samples under {str(root)!r}.{skipped} "
                          f"Expected layout: {adapter.expected_layout}")
    return SampleTable(dataset=adapter.name, root=str(root), frame=frame.reset_index(drop=True),
                       num_classes=num_classes, report=problems.report, **table_fields)


def read_csv_strings(path: Path) -> pd.DataFrame:
    """A CSV with every cell as a string ("" for empty), or an error naming the file."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:  # pandas' parser and empty-file errors are ValueErrors
        raise FbenchError(f"cannot read {str(path)!r} as CSV: {error}") from None


def relative_posix(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
