"""The dataset adapter contract: a dataset on disk -> one ``SampleTable``, plus reading one image.

Adapters register with ``@register_dataset("name")`` on a subclass of ``DatasetAdapter``. Bad files are either
errors or skipped with a report, as the user chooses (``on_error="raise"`` or ``"skip"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from fbench.data.images import read_image_file
from fbench.data.table import SampleTable

OnError = Literal["raise", "skip"]
CropPolicy = Literal["box", "haar", "none"]


class DatasetAdapter(ABC):
    """Reads one dataset format. Subclasses set the class attributes and implement ``load``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # What to crop before resizing: the table's face box, an OpenCV Haar face detector, or nothing (aligned).
    default_crop: ClassVar[CropPolicy] = "none"
    # What the user points --data NAME=PATH (or FBENCH_DATA_<NAME>) at, for error messages.
    expected_layout: ClassVar[str] = ""

    @abstractmethod
    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        """Read the dataset at ``root`` into a sample table."""

    def read_image(self, table: SampleTable, row: int) -> np.ndarray:
        """The image of table row ``row`` as uint8, H x W x 3 (RGB) or H x W (grayscale)."""
        record = table.frame.iloc[row]
        if int(record["index"]) >= 0:
            assert table.pixels is not None
            return table.pixels[int(record["index"])]
        return read_image_file(Path(table.root) / str(record["path"]))
