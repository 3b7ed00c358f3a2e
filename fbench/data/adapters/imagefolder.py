"""Any dataset laid out as ``<root>/<class>/<image>`` or ``<root>/<split>/<class>/<image>``.

The second layout is used when every top-level folder is a split name (train, val, valid, validation, test; valid
and validation become "val"). Class folders are expression names or synonyms (``fbench.data.labels``: "angry",
"Happiness", "surprised", ...); images are found at any depth below a class folder; other files and hidden entries
are ignored, as are files directly in ``<root>`` or a split folder.

num_classes is 8 when a class folder means contempt, else 7, even when the classes present are a subset of the
first seven (a 7-class model still scores a 5-class test set, and labels keep their canonical indices).

Options (keyword arguments, or an options file): ``labels`` maps folder names to expression names
(``{"sadness": "sad", "1 - Happy": "happy"}``; a folder not in the map must be an expression name or synonym);
``subject_pattern`` is a regular expression searched in each image's file name (in its path below the class
folder when the pattern holds a ``/``) whose group ``subject``, else group 1, is the subject id
(``'^([A-Z]{2})\\.'`` for JAFFE's ``KA.AN1.39.tiff``, ``'^(S\\d+)_'`` for CK+'s ``S005_001_00000011.png``);
without it ``subject`` is "". So that ``--data``, a suite's ``data:`` block and ``$FBENCH_DATA_<NAME>`` can carry
them, the options come from an options file too: ``fbench_imagefolder.yaml`` beside the class folders, or a
``.yaml`` file given as the dataset's location (its ``root:`` names the image folder, relative to the file; default
its own folder). Keyword arguments win over the file.

``imagefolder/<name>`` (``imagefolder/jaffe``, ``imagefolder/ckplus``) is the same adapter under a name of its own,
so several image-folder datasets can appear in one suite, each with its own location (``--data
imagefolder/jaffe=PATH``, ``$FBENCH_DATA_IMAGEFOLDER_JAFFE``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fbench.data.adapter import OnError
from fbench.data.adapters._common import (
    UNKNOWN_LABEL,
    BuiltinAdapter,
    Problems,
    finish,
    make_frame,
    relative_posix,
)
from fbench.data.images import IMAGE_SUFFIXES
from fbench.data.labels import accepted_names, find_label, normalise
from fbench.data.table import CANONICAL_LABELS, LABEL_INDEX, SampleTable
from fbench.errors import FbenchError, UnknownNameError, did_you_mean
from fbench.registry import register_dataset

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
OPTIONS_FILE = "fbench_imagefolder.yaml"
FILE_KEYS = ("root", "labels", "subject_pattern")
PATTERN_EXAMPLES = r"e.g. '^([A-Z]{2})\.' (JAFFE's KA.AN1.39.tiff) or '^(?P<subject>S\d+)_' (CK+'s S005_001_1.png)"
MEMBER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

NO_SUBJECT = "file name does not match subject_pattern"


def visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_options_file(dataset: str, path: Path) -> dict[str, Any]:
    """The options in an image-folder options file (``root``, ``labels``, ``subject_pattern``), checked for
    unknown keys; errors name the file."""
    try:
        options = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise FbenchError(f"dataset {dataset!r}: cannot read {str(path)!r} as YAML ({' '.join(str(error).split())}); "
                          "fix it or remove it") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise FbenchError(f"dataset {dataset!r}: {str(path)!r} must hold a mapping with keys {', '.join(FILE_KEYS)}, "
                          f"e.g. labels: {{sadness: sad}}")
    for key in options:
        if key not in FILE_KEYS:
            raise FbenchError(f"dataset {dataset!r}: {str(path)}: unknown key {key!r}{did_you_mean(key, FILE_KEYS)}; "
                              f"the keys are {', '.join(FILE_KEYS)}")
    if "root" in options and not isinstance(options["root"], str):
        raise FbenchError(f"dataset {dataset!r}: {str(path)}: root: must be a folder path, got {options['root']!r}")
    return options


def label_map(dataset: str, labels: Any, where: str) -> dict[str, int]:
    """``labels`` (folder name -> expression name or synonym) as folder name -> canonical index; an error naming
    ``where`` (the option, or the file and key) and the fix when it is not such a map."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise FbenchError(f"dataset {dataset!r}: {where} must map class folder names to expression names, e.g. "
                          f"{{sadness: sad, '1 - Happy': happy}}; got {labels!r}")
    mapped: dict[str, int] = {}
    for folder, name in labels.items():
        index = find_label(name) if isinstance(name, str) else None
        if index is None:
            raise FbenchError(f"dataset {dataset!r}: {where} maps folder {str(folder)!r} to {name!r}, which is not an "
                              f"expression name{did_you_mean(name, CANONICAL_LABELS)}; use one of (case-insensitive): "
                              f"{accepted_names()}")
        mapped[str(folder)] = index
    return mapped


def subject_regex(dataset: str, pattern: Any, where: str) -> re.Pattern[str] | None:
    """``pattern`` compiled, with a group for the subject id; an error naming ``where`` and the fix."""
    if pattern is None:
        return None
    fix = f"give a Python regular expression whose group 'subject' (else group 1) is the subject id, {PATTERN_EXAMPLES}"
    if not isinstance(pattern, str) or not pattern:
        raise FbenchError(f"dataset {dataset!r}: {where} must be a non-empty string; {fix}")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise FbenchError(f"dataset {dataset!r}: {where} {pattern!r} does not compile ({error}); {fix}") from None
    if regex.groups < 1:
        raise FbenchError(f"dataset {dataset!r}: {where} {pattern!r} has no group to take the subject id from; {fix}")
    return regex


def find_subject(regex: re.Pattern[str], below_class: str) -> str:
    """The subject id that ``regex`` finds in a file's name (in its path below the class folder, ``below_class``,
    when the pattern holds a ``/``): group ``subject``, else group 1; "" when it finds none."""
    text = below_class if "/" in regex.pattern else below_class.rsplit("/", 1)[-1]
    found = regex.search(text)
    if found is None:
        return ""
    value = found.group("subject") if "subject" in regex.groupindex else found.group(1)
    return str(value) if value else ""


def map_key(folder: str, mapped: Mapping[str, int]) -> str | None:
    """The key of ``mapped`` that names class folder ``folder``: the same text, else the same after
    :func:`fbench.data.labels.normalise` (case, spaces and dashes); None when none does."""
    if folder in mapped:
        return folder
    return next((key for key in mapped if normalise(key) == normalise(folder)), None)


@register_dataset("imagefolder")
class ImagefolderAdapter(BuiltinAdapter):
    name = "imagefolder"
    description = ("Images in one folder per expression (<root>/<class>/...), optionally inside split folders; "
                   "labels: map and subject_pattern: options; imagefolder/<name> for several in one suite")
    default_crop = "none"
    expected_layout = ("<root>/<class>/<image> or <root>/<split>/<class>/<image>, class folders named by "
                       "expression (neutral, happy, sad, surprise, fear, disgust, anger, contempt or a synonym) or "
                       f"mapped by the labels: option ({OPTIONS_FILE} beside them, or a .yaml file as the location), "
                       "split folders train/val/test")

    def __init__(self, *, verify_images: bool = True, labels: Mapping[str, str] | None = None,
                 subject_pattern: str | None = None) -> None:
        super().__init__(verify_images=verify_images)
        self.labels = dict(labels) if labels is not None else None
        self.subject_pattern = subject_pattern
        # checked now, so that a bad option fails where it is given
        label_map(self.name, self.labels, "option labels")
        subject_regex(self.name, self.subject_pattern, "option subject_pattern")

    def options(self) -> dict[str, Any]:
        return {**super().options(), "labels": self.labels, "subject_pattern": self.subject_pattern}

    def load(self, root: Path, on_error: OnError = "raise") -> SampleTable:
        root, file_options, origin = self.read_options(root)
        labels = self.labels if self.labels is not None else file_options.get("labels")
        pattern = self.subject_pattern if self.subject_pattern is not None else file_options.get("subject_pattern")
        mapped = label_map(self.name, labels, "option labels" if self.labels is not None else f"{origin}: labels")
        regex = subject_regex(self.name, pattern, "option subject_pattern" if self.subject_pattern is not None
                              else f"{origin}: subject_pattern")
        problems = Problems(self.name, on_error)
        columns: dict[str, list] = {"sample_id": [], "path": [], "label": [], "subject": [], "split": []}
        unknown: list[str] = []
        used: set[str] = set()
        for split, class_dir in self.class_dirs(root):
            key = map_key(class_dir.name, mapped)
            label = mapped[key] if key is not None else find_label(class_dir.name)
            files = images_under(class_dir)
            if key is not None:
                used.add(key)
            if label is None:
                unknown.append(relative_posix(class_dir, root))
                for file in files:
                    problems.error(UNKNOWN_LABEL, relative_posix(file, root))
                if not files:
                    problems.error(UNKNOWN_LABEL, relative_posix(class_dir, root) + "/")
                continue
            for file in files:
                relative = relative_posix(file, root)
                subject = ""
                if regex is not None:
                    subject = find_subject(regex, relative_posix(file, class_dir))
                    if not subject:
                        problems.error(NO_SUBJECT, relative, hint=f"Fix the subject_pattern option ({pattern!r}) "
                                       f"so that it finds the subject id in every file name, {PATTERN_EXAMPLES}.")
                        continue
                columns["sample_id"].append(relative)
                columns["path"].append(relative)
                columns["label"].append(label)
                columns["subject"].append(subject)
                columns["split"].append(split)
        if unknown:
            problems.hint(f"Class folder(s) {unknown} are not expression names; map them with the labels option "
                          f"(folder name -> expression, e.g. labels: {{{unknown[0].rsplit('/', 1)[-1]!r}: happy}} "
                          f"in {OPTIONS_FILE} beside the class folders) or rename them to accepted names "
                          f"(case-insensitive): {accepted_names()}.")
        frame = make_frame(columns)
        num_classes = 8 if (frame["label"] == LABEL_INDEX["contempt"]).any() else 7
        meta: dict[str, object] = {}
        if mapped:
            meta["labels"] = {folder: CANONICAL_LABELS[index] for folder, index in mapped.items()}
            if set(mapped) - used:
                meta["labels_unused"] = sorted(set(mapped) - used)
        if regex is not None:
            meta["subject_pattern"] = regex.pattern
        if origin:
            meta["options_file"] = origin
        return finish(self, root, frame, problems, num_classes=num_classes, meta=meta)

    def read_options(self, root: Path | str) -> tuple[Path, dict[str, Any], str]:
        """(image folder, options from the options file, the file's path or ""): ``root`` is the image folder
        (options from its ``fbench_imagefolder.yaml``, if any) or a ``.yaml`` options file naming it."""
        given = Path(root).expanduser() if root is not None and str(root) != "" else None
        if given is not None and given.is_file():
            if given.suffix.lower() not in (".yaml", ".yml"):
                raise self.root_error(f"{str(given)!r} is a file, not a folder; give the folder of class folders "
                                      f"or a .yaml options file")
            options = read_options_file(self.name, given)
            folder = self.require_dir(given.parent / str(options.get("root", ".")))
            return folder, options, str(given)
        folder = self.require_dir(given)
        sidecar = folder / OPTIONS_FILE
        if sidecar.is_file():
            options = read_options_file(self.name, sidecar)
            if "root" in options:
                raise FbenchError(f"dataset {self.name!r}: {str(sidecar)}: root: is only for an options file given "
                                  f"as the dataset's location; remove it (the images are beside {OPTIONS_FILE})")
            return folder, options, str(sidecar)
        return folder, {}, ""

    def class_dirs(self, root: Path) -> list[tuple[str, Path]]:
        """(split, class folder) pairs, split "" for the flat layout."""
        top = visible_dirs(root)
        if not top:
            raise self.root_error(f"{str(root)!r} has no class folders")
        is_split = [d.name.lower() in SPLIT_NAMES for d in top]
        if all(is_split):
            return [(SPLIT_NAMES[d.name.lower()], c) for d in top for c in visible_dirs(d)]
        if any(is_split):
            splits = [d.name for d, s in zip(top, is_split) if s]
            others = [d.name for d, s in zip(top, is_split) if not s]
            raise FbenchError(
                f"dataset {self.name!r}: {str(root)!r} mixes split folders {splits} with other folders {others}; "
                "use either <root>/<class>/... or <root>/<split>/<class>/... with split folders "
                f"{sorted(SPLIT_NAMES)} only")
        return [("", d) for d in top]


class ImagefolderFamily:
    """``imagefolder/<name>``: the image-folder adapter under a name of its own (its location is given under that
    name: ``--data imagefolder/jaffe=PATH``)."""

    description = "an image-folder dataset under a name of its own (imagefolder/<name>, e.g. imagefolder/jaffe)"

    def get(self, member: str) -> ImagefolderAdapter:
        if not MEMBER_NAME.match(member):
            raise UnknownNameError(f"dataset name 'imagefolder/{member}': the part after imagefolder/ must be "
                                   "lower-case letters, digits, '_' and '-', starting with a letter or digit "
                                   "(e.g. imagefolder/jaffe)")
        return member_adapter(member)

    def members(self, pattern: str | None = None) -> list[str]:
        return []  # any name is a member: there is nothing to list

    def suggest(self, member: str) -> list[str]:
        return []


@functools.cache
def member_adapter(member: str) -> ImagefolderAdapter:
    """The adapter of ``imagefolder/<member>``: one instance per name, of a subclass named after it, so that
    ``table.dataset`` finds it again in the registry and ``with_options`` keeps the name."""
    cls = type(f"ImagefolderAdapter_{member}", (ImagefolderAdapter,), {"name": f"imagefolder/{member}"})
    return cls()
