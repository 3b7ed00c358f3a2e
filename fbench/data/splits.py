"""Train/val/test splits of a sample table, one protocol per function, saved beside the results they produced.

Every protocol is a pure function of the table and its arguments (``seed`` included): the same inputs give the
same :class:`Split`, byte for byte, whatever the row order of the table. Validation data is always carved from
the training part, never from test, so model selection cannot see the test split.

Protocols (dispatch by name with :func:`make_split`, or every fold at once with :func:`all_folds`):

- ``stratified_kfold``: per-image stratified k-fold (the KDEF 10-fold protocol); NOT subject-disjoint.
- ``subject_kfold``: stratified k-fold grouped by subject; no subject is in both train and test.
- ``cross_pose``: train on some poses, test on each other pose separately; subject-disjoint by default.
- ``leave_one_pose_out``: ``cross_pose`` with one held-out pose and every other pose for training.
- ``official``: the dataset's own train/val/test column.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from fbench.data.files import write_atomic
from fbench.data.table import SampleTable
from fbench.errors import FbenchError, UnknownNameError, close_matches

SPLIT_FORMAT = 1
PARTS = ("train", "val", "test")
MAX_VAL_FRACTION = 0.5

# Official split names as datasets spell them, mapped to ours (FER-2013 uses Training/PublicTest/PrivateTest).
OFFICIAL_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "privatetest": "test",
}


# --------------------------------------------------------------------------------------------------- the Split


def _sorted_ids(ids: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted(str(i) for i in ids))


@dataclass(frozen=True)
class Split:
    """One train/val/test partition of a table, by sample id.

    ``test_groups`` holds one test set per condition for protocols that score conditions separately (cross-pose:
    one per held-out pose); ``test`` is then their union. ``params`` are the protocol's arguments, so
    ``make_split(table, split.kind, **split.params)`` rebuilds the split.
    """

    name: str
    kind: str
    params: dict[str, Any]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    test_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in PARTS:
            object.__setattr__(self, part, _sorted_ids(getattr(self, part)))
        groups = {str(k): _sorted_ids(v) for k, v in sorted(self.test_groups.items(), key=lambda kv: str(kv[0]))}
        object.__setattr__(self, "test_groups", groups)
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        return hash(self.digest())

    # ---- checks and summaries

    def counts(self) -> dict[str, int]:
        """Sizes of train, val and test, then of each test group as ``test/<group>``."""
        sizes = {part: len(getattr(self, part)) for part in PARTS}
        sizes.update({f"test/{group}": len(ids) for group, ids in self.test_groups.items()})
        return sizes

    def check(self, table: SampleTable) -> None:
        """Raise FbenchError unless the parts are disjoint, free of repeats and name only ids in ``table``."""
        for part in PARTS:
            ids = getattr(self, part)
            repeats = sorted({i for i, j in zip(ids, ids[1:]) if i == j})
            if repeats:
                raise FbenchError(f"split {self.name!r}: {part} repeats {len(repeats)} sample id(s), "
                                  f"e.g. {repeats[:3]}")
        for i, first in enumerate(PARTS):
            for second in PARTS[i + 1:]:
                shared = sorted(set(getattr(self, first)) & set(getattr(self, second)))
                if shared:
                    raise FbenchError(f"split {self.name!r}: {first} and {second} share {len(shared)} sample(s), "
                                      f"e.g. {shared[:3]}; the parts of a split must be disjoint")
        if self.test_groups:
            grouped = [i for ids in self.test_groups.values() for i in ids]
            if len(grouped) != len(self.test) or set(grouped) != set(self.test):
                raise FbenchError(f"split {self.name!r}: the test groups {list(self.test_groups)} do not partition "
                                  f"the test part ({len(grouped)} grouped ids, {len(self.test)} test ids)")
        known = set(table.frame["sample_id"].astype(str))
        for part in PARTS:
            missing = [i for i in getattr(self, part) if i not in known]
            if missing:
                raise FbenchError(f"split {self.name!r}: {len(missing)} {part} id(s) are not in dataset "
                                  f"{table.dataset!r}, e.g. {missing[:3]}; was the split made from another table?")

    def indices(self, table: SampleTable) -> dict[str, np.ndarray]:
        """Row positions into ``table.frame`` (ascending int64 arrays), keyed like :meth:`counts`."""
        index = pd.Index(table.frame["sample_id"].astype(str))
        parts = {part: getattr(self, part) for part in PARTS}
        parts.update({f"test/{group}": ids for group, ids in self.test_groups.items()})
        result = {}
        for key, ids in parts.items():
            rows = index.get_indexer(list(ids))
            if (rows < 0).any():
                missing = [i for i, r in zip(ids, rows) if r < 0]
                raise FbenchError(f"split {self.name!r}: {len(missing)} {key} id(s) are not in dataset "
                                  f"{table.dataset!r}, e.g. {missing[:3]}")
            result[key] = np.sort(rows.astype(np.int64))
        return result

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "test_groups": {group: list(ids) for group, ids in self.test_groups.items()},
        }

    def digest(self) -> str:
        """sha256 (hex) of the canonical JSON of the split: equal digests mean identical splits."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        record = {"format": SPLIT_FORMAT, **self.to_dict(), "digest": self.digest()}
        return json.dumps(record, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "split JSON") -> Split:
        """Parse :meth:`to_json` output; a stored digest must match the content."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FbenchError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise FbenchError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in ("name", "kind", "params", *PARTS) if k not in record]
        if missing:
            raise FbenchError(f"{where}: missing keys {missing}")
        split = cls(name=record["name"], kind=record["kind"], params=record["params"], train=record["train"],
                    val=record["val"], test=record["test"], test_groups=record.get("test_groups") or {})
        stored = record.get("digest")
        if stored is not None and stored != split.digest():
            raise FbenchError(f"{where}: the stored digest does not match the content; the file was edited "
                              f"or damaged, so make the split again")
        return split

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split as JSON, atomically."""
        return write_atomic(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        target = Path(path)
        try:
            text = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise FbenchError(f"cannot read split file {str(target)!r}: {exc.strerror or exc}") from exc
        return cls.from_json(text, where=f"split file {str(target)!r}")


# --------------------------------------------------------------------------------------------------- helpers


def _frame(table: SampleTable) -> pd.DataFrame:
    """The columns splits use, ordered by sample id so that results do not depend on the table's row order."""
    if len(table.frame) == 0:
        raise FbenchError(f"dataset {table.dataset!r}: the sample table is empty, so it cannot be split; "
                          f"check the dataset root {table.root!r}")
    frame = pd.DataFrame({
        "sample_id": table.frame["sample_id"].astype(str),
        "label": table.frame["label"].astype(int),
        "subject": table.frame["subject"].fillna("").astype(str),
        "pose": table.frame["pose"].fillna("").astype(str),
        "split": table.frame["split"].fillna("").astype(str),
    })
    return frame.sort_values("sample_id", kind="stable").reset_index(drop=True)


def _label_name(table: SampleTable, label: int) -> str:
    names = table.label_names
    return f"{names[label]!r} (label {label})" if 0 <= label < len(names) else f"label {label}"


def _check_folds(folds: int, fold: int) -> None:
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
        raise FbenchError(f"folds must be an integer of at least 2, got {folds!r}")
    if not isinstance(fold, (int, np.integer)) or isinstance(fold, bool) or not 0 <= fold < folds:
        raise FbenchError(f"fold must be an integer in 0..{folds - 1}, got {fold!r}")


def _check_val_fraction(val_fraction: float) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0 <= val_fraction <= MAX_VAL_FRACTION:
        raise FbenchError(f"val_fraction must be a number in [0, {MAX_VAL_FRACTION}] (0 = no validation set), "
                          f"got {val_fraction!r}")


def _check_class_sizes(table: SampleTable, frame: pd.DataFrame, folds: int) -> None:
    counts = frame["label"].value_counts().sort_index()
    small = counts[counts < folds]
    if len(small):
        label = int(small.index[0])
        others = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
        raise FbenchError(f"dataset {table.dataset!r}: class {_label_name(table, label)} has {int(small.iloc[0])} "
                          f"sample(s), fewer than folds={folds}{others}; use fewer folds")


def _check_subjects(table: SampleTable, frame: pd.DataFrame, fix: str) -> None:
    empty = int((frame["subject"] == "").sum())
    if empty:
        what = "has no subject ids" if empty == len(frame) else f"has {empty} row(s) without a subject id"
        raise FbenchError(f"dataset {table.dataset!r} {what}, so it cannot be split by subject; {fix}")


def _carve_val(frame: pd.DataFrame, train: np.ndarray, seed: int, val_fraction: float,
               by_subject: bool) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (train, val), stratified by label; by subject groups when ``by_subject``."""
    if val_fraction == 0 or len(train) == 0:
        return train, train[:0]
    part = frame.iloc[train]
    if by_subject:
        return _carve_val_by_subject(part, train, seed, val_fraction)
    rng = np.random.default_rng(seed)
    labels = part["label"].to_numpy()
    val = []
    for label in np.unique(labels):
        rows = train[labels == label]
        # Round half up, and keep at least one sample of each class for training.
        take = min(len(rows) - 1, int(np.floor(len(rows) * val_fraction + 0.5)))
        val.append(rng.permutation(rows)[:take])
    chosen = np.concatenate(val) if val else train[:0]
    return np.setdiff1d(train, chosen), np.sort(chosen)


def _carve_val_by_subject(part: pd.DataFrame, train: np.ndarray, seed: int,
                          val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    # One fold of a stratified group k-fold is the validation set, so its size is about 1/round(1/val_fraction).
    n_splits = max(2, int(round(1 / val_fraction)))
    subjects = part["subject"].to_numpy()
    if len(np.unique(subjects)) < n_splits:
        raise FbenchError(f"only {len(np.unique(subjects))} training subject(s): too few to carve a "
                          f"subject-disjoint validation set of val_fraction={val_fraction} (needs {n_splits}); "
                          f"raise val_fraction or pass val_fraction=0")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A rare class may miss the validation set; that is acceptable for model selection.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        keep, val = next(splitter.split(np.zeros(len(part)), part["label"].to_numpy(), subjects))
    return np.sort(train[keep]), np.sort(train[val])


def _ids(frame: pd.DataFrame, rows: np.ndarray) -> tuple[str, ...]:
    return tuple(frame["sample_id"].to_numpy()[rows])


# --------------------------------------------------------------------------------------------------- protocols


def stratified_kfold(table: SampleTable, folds: int = 10, fold: int = 0, seed: int = 0,
                     val_fraction: float = 0.1) -> Split:
    """Fold ``fold`` of a per-image stratified k-fold (the KDEF 10-fold protocol).

    NOT subject-disjoint: images of one subject land in both train and test, which flatters identity-rich
    models. Use :func:`subject_kfold` for a subject-independent estimate. Validation is a stratified
    ``val_fraction`` of the training images.
    """
    _check_folds(folds, fold)
    _check_val_fraction(val_fraction)
    frame = _frame(table)
    _check_class_sizes(table, frame, folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train, test = list(splitter.split(np.zeros(len(frame)), frame["label"].to_numpy()))[fold]
    train, val = _carve_val(frame, train, seed, val_fraction, by_subject=False)
    params = {"folds": folds, "fold": fold, "seed": seed, "val_fraction": val_fraction}
    return Split(f"stratified-{folds}fold/fold{fold}", "stratified_kfold", params,
                 _ids(frame, train), _ids(frame, val), _ids(frame, test))


def subject_kfold(table: SampleTable, folds: int = 10, fold: int = 0, seed: int = 0,
                  val_fraction: float = 0.1) -> Split:
    """Fold ``fold`` of a subject-disjoint k-fold, stratified by label (sklearn ``StratifiedGroupKFold``).

    No subject appears in both train and test, nor in both train and val: validation is a group of training
    subjects, about ``val_fraction`` of them.
    """
    _check_folds(folds, fold)
    _check_val_fraction(val_fraction)
    frame = _frame(table)
    _check_subjects(table, frame, "use protocol 'stratified_kfold' (per-image) instead")
    subjects = frame["subject"].nunique()
    if subjects < folds:
        raise FbenchError(f"dataset {table.dataset!r} has {subjects} subject(s), fewer than folds={folds}; "
                          f"use at most {subjects} folds")
    _check_class_sizes(table, frame, folds)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(frame)), frame["label"].to_numpy(), frame["subject"].to_numpy()))
    train, test = splits[fold]
    train, val = _carve_val(frame, train, seed, val_fraction, by_subject=True)
    params = {"folds": folds, "fold": fold, "seed": seed, "val_fraction": val_fraction}
    return Split(f"subject-{folds}fold/fold{fold}", "subject_kfold", params,
                 _ids(frame, train), _ids(frame, val), _ids(frame, test))


def _present_poses(table: SampleTable, frame: pd.DataFrame) -> list[str]:
    poses = sorted(p for p in frame["pose"].unique() if p)
    if not poses:
        raise FbenchError(f"dataset {table.dataset!r} has no pose codes, so it cannot be split by pose; "
                          f"use 'stratified_kfold', 'subject_kfold' or 'official'")
    return poses


def _pose_list(table: SampleTable, poses: str | Sequence[str], present: list[str], what: str) -> list[str]:
    chosen = [poses] if isinstance(poses, str) else [str(p) for p in poses]
    if not chosen:
        raise FbenchError(f"{what} is empty; name at least one of the poses present: {present}")
    unknown = [p for p in chosen if p not in present]
    if unknown:
        raise FbenchError(f"{what}: unknown pose code(s) {unknown} for dataset {table.dataset!r}; "
                          f"poses present: {present}")
    return list(dict.fromkeys(chosen))


def _hold_out_subjects(table: SampleTable, frame: pd.DataFrame, seed: int,
                       test_subject_fraction: float) -> set[str]:
    """The test subjects: a seeded random ``test_subject_fraction`` of all subjects (at least one)."""
    _check_subjects(table, frame, "pass subject_disjoint=False")
    if not 0 < test_subject_fraction < 1:
        raise FbenchError(f"test_subject_fraction must be in (0, 1), got {test_subject_fraction!r}")
    subjects = sorted(frame["subject"].unique())
    if len(subjects) < 2:
        raise FbenchError(f"dataset {table.dataset!r} has {len(subjects)} subject(s); a subject-disjoint "
                          f"cross-pose split needs at least 2, or pass subject_disjoint=False")
    n_test = min(len(subjects) - 1, max(1, int(np.floor(len(subjects) * test_subject_fraction + 0.5))))
    order = np.random.default_rng(seed).permutation(len(subjects))
    return {subjects[i] for i in order[:n_test]}


def cross_pose(table: SampleTable, train_poses: str | Sequence[str], test_poses: str | Sequence[str],
               seed: int = 0, val_fraction: float = 0.1, subject_disjoint: bool = True,
               test_subject_fraction: float = 0.2) -> Split:
    """Train on ``train_poses``; test on each of ``test_poses`` separately (``test_groups``, one per pose).

    With ``subject_disjoint`` (the default) the subjects are also split, so a test face is unseen in every pose:
    a seeded random ``test_subject_fraction`` (default 20%, at least one) of the subjects is held out. Train is
    then the train-pose images of the other subjects and test the test-pose images of the held-out ones; the
    remaining images (held-out subjects in train poses, training subjects in test poses) are used by no part.
    Validation is carved from train, by subject when ``subject_disjoint``, else per image.
    """
    _check_val_fraction(val_fraction)
    frame = _frame(table)
    present = _present_poses(table, frame)
    train_list = _pose_list(table, train_poses, present, "train_poses")
    test_list = _pose_list(table, test_poses, present, "test_poses")
    both = [p for p in test_list if p in train_list]
    if both:
        raise FbenchError(f"pose(s) {both} are in both train_poses and test_poses; a cross-pose split tests "
                          f"on poses unseen in training")
    in_train = frame["pose"].isin(train_list).to_numpy()
    in_test = frame["pose"].isin(test_list).to_numpy()
    if subject_disjoint:
        held_out = frame["subject"].isin(_hold_out_subjects(table, frame, seed, test_subject_fraction)).to_numpy()
        in_train = in_train & ~held_out
        in_test = in_test & held_out
    train, val = _carve_val(frame, np.flatnonzero(in_train), seed, val_fraction, by_subject=subject_disjoint)
    poses = frame["pose"].to_numpy()
    groups = {pose: _ids(frame, np.flatnonzero(in_test & (poses == pose))) for pose in test_list}
    params = {"train_poses": train_list, "test_poses": test_list, "seed": seed, "val_fraction": val_fraction,
              "subject_disjoint": subject_disjoint, "test_subject_fraction": test_subject_fraction}
    name = f"cross-pose/{'+'.join(train_list)}->{'+'.join(test_list)}"
    return Split(name, "cross_pose", params, _ids(frame, train), _ids(frame, val),
                 _ids(frame, np.flatnonzero(in_test)), groups)


def leave_one_pose_out(table: SampleTable, pose: str, seed: int = 0, val_fraction: float = 0.1,
                       subject_disjoint: bool = True, test_subject_fraction: float = 0.2) -> Split:
    """:func:`cross_pose` with ``pose`` held out for testing and every other pose present used for training."""
    frame = _frame(table)
    present = _present_poses(table, frame)
    [held] = _pose_list(table, pose, present, "pose")
    others = [p for p in present if p != held]
    if not others:
        raise FbenchError(f"dataset {table.dataset!r} has only pose {held!r}; leaving it out leaves nothing "
                          f"to train on")
    split = cross_pose(table, others, [held], seed=seed, val_fraction=val_fraction,
                       subject_disjoint=subject_disjoint, test_subject_fraction=test_subject_fraction)
    params = {"pose": held, "seed": seed, "val_fraction": val_fraction, "subject_disjoint": subject_disjoint,
              "test_subject_fraction": test_subject_fraction}
    return Split(f"leave-one-pose-out/{held}", "leave_one_pose_out", params, split.train, split.val, split.test,
                 split.test_groups)


def _working_protocols(frame: pd.DataFrame) -> list[str]:
    names = ["stratified_kfold"]
    if (frame["subject"] != "").all():
        names.append("subject_kfold")
    if (frame["pose"] != "").any():
        names += ["cross_pose", "leave_one_pose_out"]
    return names


def official(table: SampleTable, seed: int = 0, val_fraction: float = 0.1,
             max_train_per_class: int | None = None) -> Split:
    """The dataset's own split column: train/val/test as given (FER-2013 Training/PublicTest/PrivateTest map to
    train/val/test). Without an official val (RAF-DB), a stratified ``val_fraction`` of train is carved off;
    ``seed`` and ``val_fraction`` matter only then. Every row must carry an official split.

    ``max_train_per_class`` keeps at most that many official training images of each class (SCAN-CCI's AffectNet
    script caps training at 20,000 per class): the AffectNet reader in the released repository keeps the first
    ones in file order; this keeps the first ones in sample-id order (the split works on id-sorted rows), before
    validation is carved. The images left out are in no part.
    """
    _check_val_fraction(val_fraction)
    if max_train_per_class is not None and (isinstance(max_train_per_class, bool)
                                            or not isinstance(max_train_per_class, (int, np.integer))
                                            or max_train_per_class < 1):
        raise FbenchError(f"max_train_per_class must be a positive integer (or null: no cap), got "
                          f"{max_train_per_class!r}")
    frame = _frame(table)
    raw = frame["split"].str.strip()
    if (raw == "").all():
        raise FbenchError(f"dataset {table.dataset!r} has no official split (its 'split' column is empty); "
                          f"use one of {_working_protocols(frame)}")
    if (raw == "").any():
        raise FbenchError(f"dataset {table.dataset!r}: {int((raw == '').sum())} row(s) have no official split, "
                          f"e.g. {frame.loc[raw == '', 'sample_id'].head(3).tolist()}")
    mapped = raw.str.lower().map(OFFICIAL_ALIASES)
    if mapped.isna().any():
        unknown = sorted(raw[mapped.isna()].unique())
        raise FbenchError(f"dataset {table.dataset!r}: unknown official split value(s) {unknown[:5]}; "
                          f"expected train/val/test (or {sorted(set(OFFICIAL_ALIASES) - set(PARTS))})")
    parts = mapped.to_numpy()
    for needed in ("train", "test"):
        if not (parts == needed).any():
            raise FbenchError(f"dataset {table.dataset!r}: the official split has no {needed} rows; "
                              f"use one of {_working_protocols(frame)}")
    train = np.flatnonzero(parts == "train")
    if max_train_per_class is not None:
        labels = frame["label"].to_numpy()[train]
        train = np.sort(np.concatenate([train[labels == label][:max_train_per_class] for label in np.unique(labels)]))
    val = np.flatnonzero(parts == "val")
    if not len(val):
        train, val = _carve_val(frame, train, seed, val_fraction, by_subject=False)
    params: dict[str, Any] = {"seed": seed, "val_fraction": val_fraction}
    if max_train_per_class is not None:  # only when set, so that uncapped splits keep their digests
        params["max_train_per_class"] = int(max_train_per_class)
    return Split("official", "official", params, _ids(frame, train), _ids(frame, val),
                 _ids(frame, np.flatnonzero(parts == "test")))


# --------------------------------------------------------------------------------------------------- dispatch

PROTOCOLS: dict[str, Callable[..., Split]] = {
    "stratified_kfold": stratified_kfold,
    "subject_kfold": subject_kfold,
    "cross_pose": cross_pose,
    "leave_one_pose_out": leave_one_pose_out,
    "official": official,
}
KFOLD_PROTOCOLS = ("stratified_kfold", "subject_kfold")


def _protocol(protocol: str) -> str:
    key = str(protocol).strip().lower().replace("-", "_")
    if key not in PROTOCOLS:
        close = close_matches(key, PROTOCOLS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(f"unknown split protocol {protocol!r}; {hint}known: {sorted(PROTOCOLS)}")
    return key


def _check_params(key: str, params: dict[str, Any]) -> None:
    accepted = [p for p in inspect.signature(PROTOCOLS[key]).parameters if p != "table"]
    unknown = [p for p in params if p not in accepted]
    if unknown:
        hints = [f"{p!r} (did you mean {m[0]!r}?)" if (m := close_matches(p, accepted, n=1)) else repr(p)
                 for p in unknown]
        raise FbenchError(f"split protocol {key!r} takes no parameter(s) {', '.join(hints)}; it takes {accepted}")


def make_split(table: SampleTable, protocol: str, **params: Any) -> Split:
    """The split of ``table`` under ``protocol`` (a name in ``PROTOCOLS``; dashes work as underscores)."""
    key = _protocol(protocol)
    _check_params(key, params)
    return PROTOCOLS[key](table, **params)


def all_folds(table: SampleTable, protocol: str, folds: int | None = None, **params: Any) -> list[Split]:
    """Every split a protocol defines: the k folds of a k-fold (``folds`` defaults to 10), one split per pose
    for ``leave_one_pose_out`` (``pose`` not given), else the protocol's single split (``folds`` None or 1)."""
    key = _protocol(protocol)
    if key in KFOLD_PROTOCOLS:
        if "fold" in params:
            raise FbenchError("all_folds makes every fold; do not pass 'fold' (use make_split for one fold)")
        count = 10 if folds is None else folds
        _check_params(key, {"folds": count, **params})
        _check_folds(count, 0)
        return [PROTOCOLS[key](table, folds=count, fold=i, **params) for i in range(count)]
    if key == "leave_one_pose_out" and "pose" not in params:
        _check_params(key, params)
        poses = _present_poses(table, _frame(table))
        if folds is not None and folds != len(poses):
            raise FbenchError(f"leave_one_pose_out makes one split per pose ({len(poses)}: {poses}), "
                              f"not folds={folds}")
        return [leave_one_pose_out(table, pose, **params) for pose in poses]
    if folds not in (None, 1):
        raise FbenchError(f"split protocol {key!r} makes a single split, not folds={folds}")
    return [make_split(table, key, **params)]
