"""Where datasets live, and loading them by name.

A dataset's root comes from, in order: ``--data NAME=PATH`` on the command line, the suite's ``data:``
block, or the environment variable ``FBENCH_DATA_<NAME>``. A dataset with none of them, or a path that does not
exist, is an error that says exactly which path to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from fbench.data.adapter import OnError
from fbench.data.table import SampleTable
from fbench.errors import FbenchError
from fbench.registry import get_dataset


def env_var(name: str) -> str:
    return "FBENCH_DATA_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def parse_data_flags(items: Sequence[str]) -> dict[str, str]:
    """``["kdef=data/kdef", ...]`` -> ``{"kdef": "data/kdef"}``."""
    paths: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise FbenchError(f"--data expects NAME=PATH, got {item!r} (e.g. --data kdef=data/synth-kdef)")
        paths[name.strip()] = path.strip()
    return paths


def dataset_root(name: str, cli_paths: Mapping[str, str] | None = None,
                 suite_paths: Mapping[str, str] | None = None) -> Path:
    """The root of dataset ``name``, checked to exist."""
    adapter = get_dataset(name)
    for origin, paths in (("--data", cli_paths), ("the suite", suite_paths)):
        if paths and name in paths:
            return _existing(name, Path(paths[name]).expanduser(), origin, adapter.expected_layout)
    variable = env_var(name)
    if os.environ.get(variable):
        return _existing(name, Path(os.environ[variable]).expanduser(), f"${variable}", adapter.expected_layout)
    raise FbenchError(
        f"dataset {name!r} has no location: pass --data {name}=PATH, give it in the suite's data: block, "
        f"or export {variable}=PATH. Expected at PATH: {adapter.expected_layout or 'the dataset files'}"
        + (". For a synthetic set, build one with `fbench data synth --out data/synth-kdef`" if name == "kdef"
           else "")
    )


def _existing(name: str, path: Path, origin: str, layout: str) -> Path:
    if not path.exists():
        raise FbenchError(
            f"dataset {name!r}: path {str(path)!r} (from {origin}) does not exist. Point it at the folder that "
            f"holds {layout or 'the dataset'}"
        )
    return path


def load_dataset(name: str, cli_paths: Mapping[str, str] | None = None,
                 suite_paths: Mapping[str, str] | None = None, on_error: OnError = "raise") -> SampleTable:
    """Find and read dataset ``name`` into a sample table."""
    root = dataset_root(name, cli_paths, suite_paths)
    return get_dataset(name).load(root, on_error=on_error)
