"""Where datasets live, and loading them by name.

A dataset's location comes from, in order: ``--data NAME=PATH`` on the command line, the suite's ``data:``
block, or the environment variable ``FBENCH_DATA_<NAME>``. A location given by any of them is checked, and one
that does not exist, is an empty folder, or yields no samples is an error naming the path and where it was given
(:class:`DatasetLocation` carries that origin to every later message). No location at all is reported by
:func:`dataset_root`, with the three ways to give one; the run layer decides whether the synthetic stand-in may
take its place instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fbench.data.adapter import OnError
from fbench.data.table import SampleTable
from fbench.errors import FbenchError, UnknownNameError, did_you_mean
from fbench.registry import dataset_choices, get_dataset, is_dataset_name


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


@dataclass(frozen=True)
class DatasetLocation:
    """A dataset's root and where it was given: ``--data kdef=PATH``, ``the suite's data: block (FILE)`` or
    ``$FBENCH_DATA_KDEF``."""

    name: str
    root: Path
    origin: str


def suite_origin(source: str | None) -> str:
    """How messages name a suite's ``data:`` block."""
    return f"the suite's data: block ({source})" if source else "the suite's data: block"


def given_location(name: str, cli_paths: Mapping[str, str] | None = None,
                   suite_paths: Mapping[str, str] | None = None,
                   suite_source: str | None = None) -> DatasetLocation | None:
    """The location of dataset ``name`` as given (the first of ``--data``, the suite's ``data:`` block,
    ``$FBENCH_DATA_<NAME>``), checked to exist and, for a folder, to hold something; None when none was given.
    A given location that fails the check is an FbenchError naming the path and where it came from."""
    adapter = get_dataset(name)
    variable = env_var(name)
    candidates = (
        (cli_paths or {}, lambda path: f"--data {name}={path}"),
        (suite_paths or {}, lambda path: suite_origin(suite_source)),
        ({name: os.environ[variable]} if os.environ.get(variable) else {}, lambda path: f"${variable}"),
    )
    for paths, origin in candidates:
        if name in paths:
            text = str(paths[name])
            location = DatasetLocation(name, Path(text).expanduser(), origin(text))
            check_location(location, adapter.expected_layout, empty=not text.strip())
            return location
    return None


def check_location(location: DatasetLocation, layout: str = "", empty: bool = False) -> None:
    """Cheap checks of a given location (it exists; a folder is not empty); FbenchError naming path and origin."""
    where = f"dataset {location.name!r}: {str(location.root)!r} (from {location.origin})"
    fix = f"Point it at {layout or 'the dataset'}"
    if empty:
        raise FbenchError(f"dataset {location.name!r}: the path from {location.origin} is empty. {fix}")
    if not location.root.exists():
        raise FbenchError(f"{where} does not exist. {fix}")
    if location.root.is_dir() and not any(location.root.iterdir()):
        raise FbenchError(f"{where} is an empty folder. {fix}")
    if not location.root.is_dir() and not location.root.is_file():
        raise FbenchError(f"{where} is neither a folder nor a file. {fix}")


def no_location_error(name: str) -> FbenchError:
    """The error for a dataset given by none of the three ways, naming them and the layout expected."""
    variable = env_var(name)
    return FbenchError(
        f"dataset {name!r} has no location: pass --data {name}=PATH, give it in the suite's data: block, "
        f"or export {variable}=PATH. Expected at PATH: {get_dataset(name).expected_layout or 'the dataset files'}"
        + (". For a synthetic set, build one with `fbench data synth --out data/synth-kdef`" if name == "kdef"
           else "")
    )


def locate_dataset(name: str, cli_paths: Mapping[str, str] | None = None,
                   suite_paths: Mapping[str, str] | None = None,
                   suite_source: str | None = None) -> DatasetLocation:
    """The checked location of dataset ``name``; FbenchError when none was given or the given one is bad."""
    location = given_location(name, cli_paths, suite_paths, suite_source)
    if location is None:
        raise no_location_error(name)
    return location


def dataset_root(name: str, cli_paths: Mapping[str, str] | None = None,
                 suite_paths: Mapping[str, str] | None = None) -> Path:
    """The root of dataset ``name``, checked to exist."""
    return locate_dataset(name, cli_paths, suite_paths).root


def read_location(location: DatasetLocation, on_error: str = "raise") -> SampleTable:
    """The sample table at ``location``. The adapter's errors (not a folder, no images in its layout, bad
    samples) and a table without samples name the path and where it came from."""
    adapter = get_dataset(location.name)
    try:
        table = adapter.load(location.root, on_error=on_error)
    except FbenchError as error:
        raise FbenchError(f"{error} (path {str(location.root)!r} from {location.origin})") from error
    if table.frame.empty:
        raise FbenchError(f"dataset {location.name!r}: {str(location.root)!r} (from {location.origin}) holds no "
                          f"images the adapter can read. Point it at {adapter.expected_layout or 'the dataset'}")
    return table


def check_data_names(paths: Mapping[str, str]) -> None:
    """Every name of ``--data NAME=PATH`` names a dataset; else an error naming the flag, with did-you-mean."""
    for name, path in paths.items():
        if not is_dataset_name(name):
            known = dataset_choices()
            raise UnknownNameError(f"--data {name}={path}: unknown dataset {name!r}{did_you_mean(name, known)}; "
                                   f"known: {', '.join(known)}")


def load_dataset(name: str, cli_paths: Mapping[str, str] | None = None,
                 suite_paths: Mapping[str, str] | None = None, on_error: OnError = "raise") -> SampleTable:
    """Find and read dataset ``name`` into a sample table; every ``--data`` name must name a dataset."""
    get_dataset(name)  # an unknown name: the registry's error, with did-you-mean
    check_data_names(cli_paths or {})
    return read_location(locate_dataset(name, cli_paths, suite_paths), on_error)
