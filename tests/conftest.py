"""Shared test setup: no hub access, deterministic seeds, and a clean architecture registry per test."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fbench.data.adapter import DatasetAdapter  # noqa: E402
from fbench.data.table import REQUIRED_COLUMNS, SampleTable  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_kdef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 synthetic identities x 7 expressions x 5 poses (350 images), small: built in seconds."""
    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef

    root = tmp_path_factory.mktemp("synth") / "kdef"
    build_synthetic_kdef(root, SynthConfig(identities=10, sessions=1, image_size=(160, 128)), workers=2)
    return root


@pytest.fixture
def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sbatch`` and ``srun`` on PATH that accept every job: sbatch copies the script it is given to the returned
    path (``tmp_path/submitted.sh``) and answers job id 777."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_folder / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {script}\necho Submitted batch job 777\n")
    (bin_folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_folder / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    return script


@pytest.fixture
def clean_architectures(monkeypatch: pytest.MonkeyPatch):
    """A snapshot of the architecture registry, restored after the test."""
    from fbench.registry import ARCHITECTURES

    entries = dict(ARCHITECTURES._entries)
    families = dict(ARCHITECTURES._families)
    discovered = ARCHITECTURES._discovered
    yield ARCHITECTURES
    ARCHITECTURES._entries = entries
    ARCHITECTURES._families = families
    ARCHITECTURES._discovered = discovered


class FolderOfPngs(DatasetAdapter):
    """A test adapter: every PNG in a folder, label from the name's first digit."""

    name = "test_pngs"
    default_crop = "none"
    expected_layout = "PNG files"

    def load(self, root: Path, on_error="raise") -> SampleTable:
        files = sorted(root.glob("*.png"))
        frame = pd.DataFrame({
            "sample_id": [f.name for f in files], "path": [f.name for f in files], "index": -1,
            "label": [int(f.name[0]) for f in files], "subject": "", "pose": "", "yaw": np.nan, "split": "",
        })[list(REQUIRED_COLUMNS)]
        return SampleTable(self.name, str(root), frame, num_classes=7)


@pytest.fixture
def png_adapter():
    """A dataset adapter registered as 'test_pngs' for the test: every PNG in a folder."""
    from fbench.registry import DATASETS

    instance = FolderOfPngs()
    DATASETS.register("test_pngs", instance, source="tests/conftest.py")
    yield instance
    DATASETS._entries.pop("test_pngs")
