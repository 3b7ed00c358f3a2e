"""FER-2013 (Kaggle "Challenges in Representation Learning"): 35,887 grey 48 x 48 faces in one CSV.

``<root>/fer2013.csv`` has columns ``emotion`` (0..6), ``pixels`` (2304 space-separated 0..255 values, row-major)
and ``Usage`` (Training / PublicTest / PrivateTest -> train / val / test). Images are decoded into
``table.pixels`` (N x 48 x 48 uint8) at load; ``index`` is the data row (0-based, header excluded), ``path`` is "".
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbench.data.adapter import OnError
from fbench.data.adapters._common import UNKNOWN_LABEL, BuiltinAdapter, Problems, finish, make_frame
from fbench.data.table import LABEL_INDEX, SampleTable
from fbench.errors import FbenchError
from fbench.registry import register_dataset

CSV_NAME = "fer2013.csv"
SIDE = 48

LABELS = {
    0: LABEL_INDEX["anger"],
    1: LABEL_INDEX["disgust"],
    2: LABEL_INDEX["fear"],
    3: LABEL_INDEX["happy"],
    4: LABEL_INDEX["sad"],
    5: LABEL_INDEX["surprise"],
    6: LABEL_INDEX["neutral"],
}
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}

BAD_PIXELS = "malformed pixel row"
BAD_USAGE = "unknown Usage (expected Training, PublicTest or PrivateTest)"


@dataclass
class FerCsv:
    """The rows of fer2013.csv: raw fields, decoded pixels (zeros where malformed) and CSV line numbers."""

    rows: list[dict[str, str]]
    lines: list[int]
    pixels: np.ndarray
    pixels_ok: np.ndarray


def decode_pixels(text: str) -> np.ndarray | None:
    """2304 space-separated 0..255 integers -> 48 x 48 uint8, or None when malformed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # older numpy only warns on trailing garbage
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def read_fer_csv(path: Path, problems: Problems, columns: tuple[str, ...] = ("emotion", "pixels", "Usage")
                 ) -> FerCsv:
    """Read fer2013.csv; malformed pixel rows go to ``problems`` with their line number."""
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    images: list[np.ndarray] = []
    ok: list[bool] = []
    blank = np.zeros((SIDE, SIDE), dtype=np.uint8)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise FbenchError(f"{str(path)!r} lacks column(s) {missing} (has {reader.fieldnames}); "
                              f"expected the Kaggle FER-2013 CSV with columns emotion, pixels, Usage")
        for row in reader:
            image = decode_pixels(row.get("pixels") or "")
            if image is None:
                problems.error(BAD_PIXELS, f"{path.name}:{reader.line_num}")
            rows.append(row)
            lines.append(reader.line_num)
            images.append(blank if image is None else image)
            ok.append(image is not None)
    pixels = np.stack(images) if images else np.zeros((0, SIDE, SIDE), dtype=np.uint8)
    return FerCsv(rows, lines, pixels, np.array(ok, dtype=bool))


def find_csv(adapter: BuiltinAdapter, root: Path | str | None) -> tuple[Path, Path]:
    """(dataset folder, fer2013.csv); ``root`` may be the folder or the CSV itself."""
    if root is not None and str(root).endswith(".csv") and Path(root).expanduser().is_file():
        csv_path = Path(root).expanduser()
        return csv_path.parent, csv_path
    folder = adapter.require_dir(root)
    return folder, adapter.require_file(folder, CSV_NAME)


@register_dataset("fer2013")
class Fer2013Adapter(BuiltinAdapter):
    name = "fer2013"
    description = "FER-2013: 35,887 grey 48x48 faces, 7 expressions, Training/PublicTest/PrivateTest splits"
    default_crop = "none"
    expected_layout = f"<root>/{CSV_NAME} with columns emotion, pixels, Usage (the Kaggle file)"

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        folder, csv_path = find_csv(self, root)
        problems = Problems(self.name, on_error)
        data = read_fer_csv(csv_path, problems)
        columns: dict[str, list] = {"sample_id": [], "index": [], "label": [], "split": []}
        for i, row in enumerate(data.rows):
            where = f"{csv_path.name}:{data.lines[i]}"
            emotion = (row.get("emotion") or "").strip()
            if not emotion.isdigit() or int(emotion) not in LABELS:
                problems.error(UNKNOWN_LABEL, f"{where} (emotion {emotion!r}; FER-2013 uses 0..6)")
                continue
            usage = (row.get("Usage") or "").strip()
            if usage not in SPLITS:
                problems.error(BAD_USAGE, f"{where} ({usage!r})")
                continue
            if not data.pixels_ok[i]:
                continue
            columns["sample_id"].append(f"{self.name}:{i}")
            columns["index"].append(i)
            columns["label"].append(LABELS[int(emotion)])
            columns["split"].append(SPLITS[usage])
        meta = {"csv": csv_path.name}
        return finish(self, folder, make_frame(columns), problems, num_classes=7, aligned=True,
                      pixels=data.pixels, meta=meta)
