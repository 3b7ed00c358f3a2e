"""Splits: disjoint parts, partitions, stratification, subject-disjointness, determinism, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbench.data.splits import Split, all_folds, cross_pose, leave_one_pose_out, make_split, official
from fbench.data.table import KDEF_POSES, KDEF_YAW, SampleTable
from fbench.errors import FbenchError, UnknownNameError

SUBJECTS = 20
LABELS = 7
SESSIONS = 2


def make_table(subjects: int = SUBJECTS, poses: tuple[str, ...] = KDEF_POSES, split: str | None = None,
               with_subjects: bool = True, shuffle: bool = False) -> SampleTable:
    """subjects x 7 labels x poses x 2 sessions; ``split``: None (no official split), "with_val" or "no_val"."""
    rows = []
    for s in range(subjects):
        for label in range(LABELS):
            for pose in poses:
                for session in range(SESSIONS):
                    rows.append({"sample_id": f"s{s:02d}/l{label}/{pose}/{session}", "path": "", "index": -1,
                                 "label": label, "subject": f"s{s:02d}" if with_subjects else "", "pose": pose,
                                 "yaw": KDEF_YAW.get(pose, np.nan), "session": session})
    frame = pd.DataFrame(rows)
    frame["split"] = ""
    if split is not None:
        # Official parts by subject: 14 train, 3 val (or train when "no_val"), 3 test.
        number = frame["subject"].str[1:].astype(int) if with_subjects else pd.Series(range(len(frame))) % subjects
        names = np.where(number < 14, "train", np.where(number < 17, "val", "test"))
        if split == "no_val":
            names = np.where(names == "val", "train", names)
        frame["split"] = names
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    return SampleTable("synthetic-kdef", "/nowhere", frame, num_classes=LABELS, synthetic=True)


@pytest.fixture(scope="module")
def table() -> SampleTable:
    return make_table()


def subjects_of(table: SampleTable, ids: tuple[str, ...]) -> set[str]:
    frame = table.frame.set_index("sample_id")
    return set(frame.loc[list(ids), "subject"])


def assert_sound(split: Split, table: SampleTable) -> None:
    """Disjoint parts, all ids known, val not in test, non-empty train and test."""
    split.check(table)
    assert split.train and split.test
    assert not set(split.train) & set(split.test)
    assert not set(split.val) & set(split.test)
    assert not set(split.val) & set(split.train)
    for part in ("train", "val", "test"):
        assert list(getattr(split, part)) == sorted(getattr(split, part))


# ------------------------------------------------------------------------------------------------ k-fold


@pytest.mark.parametrize("protocol", ["stratified_kfold", "subject_kfold"])
def test_kfold_folds_are_sound_and_partition_the_table(table: SampleTable, protocol: str) -> None:
    splits = all_folds(table, protocol, folds=5)
    assert [s.name for s in splits] == [f"{protocol.split('_')[0]}-5fold/fold{i}" for i in range(5)]
    for split in splits:
        assert_sound(split, table)
        assert len(split.train) + len(split.val) + len(split.test) == len(table)
    tests = [i for s in splits for i in s.test]
    assert len(tests) == len(set(tests)) == len(table)
    assert set(tests) == set(table.frame["sample_id"])


@pytest.mark.parametrize("protocol", ["stratified_kfold", "subject_kfold"])
def test_kfold_test_folds_are_stratified(table: SampleTable, protocol: str) -> None:
    folds = 10
    per_class = table.frame["label"].value_counts()
    labels = table.frame.set_index("sample_id")["label"]
    for split in all_folds(table, protocol, folds=folds, seed=3):
        counts = labels.loc[list(split.test)].value_counts()
        for label, total in per_class.items():
            assert abs(counts.get(label, 0) - total / folds) <= 1, (split.name, label)


def test_subject_kfold_is_subject_disjoint(table: SampleTable) -> None:
    for split in all_folds(table, "subject_kfold", folds=5, seed=1):
        train, val, test = (subjects_of(table, getattr(split, p)) for p in ("train", "val", "test"))
        assert not train & test
        assert not train & val
        assert not val & test
        assert val, "a subject-disjoint val set should hold whole subjects"


def test_stratified_kfold_is_per_image_so_subjects_recur(table: SampleTable) -> None:
    split = make_split(table, "stratified_kfold", folds=5, fold=0)
    assert subjects_of(table, split.train) & subjects_of(table, split.test)


def test_val_is_carved_from_training_data_only(table: SampleTable) -> None:
    with_val = make_split(table, "stratified_kfold", folds=5, fold=2, seed=4)
    without = make_split(table, "stratified_kfold", folds=5, fold=2, seed=4, val_fraction=0)
    assert without.val == ()
    assert with_val.test == without.test
    assert set(with_val.train) | set(with_val.val) == set(without.train)
    assert abs(len(with_val.val) - 0.1 * len(without.train)) <= LABELS
    labels = table.frame.set_index("sample_id")["label"]
    assert labels.loc[list(with_val.val)].value_counts().min() >= 1  # every class represented


def test_subject_kfold_val_only_from_training_subjects(table: SampleTable) -> None:
    split = make_split(table, "subject_kfold", folds=5, fold=1, val_fraction=0.25)
    no_val = make_split(table, "subject_kfold", folds=5, fold=1, val_fraction=0)
    assert split.test == no_val.test
    assert set(split.train) | set(split.val) == set(no_val.train)
    assert len(subjects_of(table, split.val)) == 4  # 16 training subjects, a quarter for val


# ------------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("protocol, params", [
    ("stratified_kfold", {"folds": 5, "fold": 3}),
    ("subject_kfold", {"folds": 5, "fold": 3}),
    ("cross_pose", {"train_poses": ["S"], "test_poses": ["FL", "FR"]}),
    ("leave_one_pose_out", {"pose": "HL"}),
])
def test_same_seed_same_digest_different_seed_different(table: SampleTable, protocol: str,
                                                        params: dict) -> None:
    first = make_split(table, protocol, seed=7, **params)
    again = make_split(table, protocol, seed=7, **params)
    other = make_split(table, protocol, seed=8, **params)
    assert first == again and first.digest() == again.digest()
    assert other.digest() != first.digest()
    rebuilt = make_split(table, first.kind, **first.params)
    assert rebuilt.digest() == first.digest()


def test_row_order_does_not_change_the_split(table: SampleTable) -> None:
    shuffled = make_table(shuffle=True)
    for protocol, params in [("stratified_kfold", {"folds": 5}), ("subject_kfold", {"folds": 5}),
                             ("leave_one_pose_out", {"pose": "S"})]:
        assert make_split(table, protocol, **params).digest() == make_split(shuffled, protocol, **params).digest()


# ------------------------------------------------------------------------------------------------ cross-pose


def test_cross_pose_tests_only_held_out_poses_and_subjects(table: SampleTable) -> None:
    split = cross_pose(table, ["S", "HL", "HR"], ["FL", "FR"], seed=2)
    assert_sound(split, table)
    frame = table.frame.set_index("sample_id")
    assert set(frame.loc[list(split.test), "pose"]) == {"FL", "FR"}
    assert set(frame.loc[list(split.train), "pose"]) <= {"S", "HL", "HR"}
    assert set(frame.loc[list(split.val), "pose"]) <= {"S", "HL", "HR"}
    assert list(split.test_groups) == ["FL", "FR"]
    for pose, ids in split.test_groups.items():
        assert set(frame.loc[list(ids), "pose"]) == {pose}
    assert sorted(i for ids in split.test_groups.values() for i in ids) == list(split.test)
    train, val, test = (subjects_of(table, getattr(split, p)) for p in ("train", "val", "test"))
    assert len(test) == 4  # 20% of 20 subjects
    assert not (train | val) & test
    assert not train & val
    assert split.counts() == {"train": len(split.train), "val": len(split.val), "test": len(split.test),
                              "test/FL": len(split.test_groups["FL"]), "test/FR": len(split.test_groups["FR"])}


def test_cross_pose_without_subject_disjointness_tests_every_subject(table: SampleTable) -> None:
    split = cross_pose(table, "S", ["FL"], subject_disjoint=False)
    assert_sound(split, table)
    assert len(split.test) == SUBJECTS * LABELS * SESSIONS
    assert len(split.train) + len(split.val) == SUBJECTS * LABELS * SESSIONS


def test_leave_one_pose_out_trains_on_every_other_pose(table: SampleTable) -> None:
    splits = all_folds(table, "leave_one_pose_out")
    assert [s.name for s in splits] == [f"leave-one-pose-out/{p}" for p in sorted(KDEF_POSES)]
    frame = table.frame.set_index("sample_id")
    for split in splits:
        assert_sound(split, table)
        held = split.params["pose"]
        assert set(frame.loc[list(split.test), "pose"]) == {held}
        assert set(frame.loc[list(split.train), "pose"]) == set(KDEF_POSES) - {held}
        assert not subjects_of(table, split.train) & subjects_of(table, split.test)
    assert leave_one_pose_out(table, "S").test == cross_pose(table, ["FL", "HL", "HR", "FR"], ["S"]).test


# ------------------------------------------------------------------------------------------------ official


def test_official_with_val_uses_it_as_given() -> None:
    table = make_table(split="with_val")
    split = official(table)
    assert_sound(split, table)
    parts = table.frame.set_index("sample_id")["split"]
    for part in ("train", "val", "test"):
        assert set(getattr(split, part)) == set(parts[parts == part].index)
    reseeded = official(table, seed=5)  # nothing random when val is official
    assert (reseeded.train, reseeded.val, reseeded.test) == (split.train, split.val, split.test)


def test_official_without_val_carves_it_from_train() -> None:
    table = make_table(split="no_val")
    split = official(table, seed=1)
    assert_sound(split, table)
    parts = table.frame.set_index("sample_id")["split"]
    assert set(split.test) == set(parts[parts == "test"].index)
    assert set(split.train) | set(split.val) == set(parts[parts == "train"].index)
    assert split.val and abs(len(split.val) - 0.1 * (parts == "train").sum()) <= LABELS
    assert official(table, seed=2).digest() != split.digest()
    assert official(table, val_fraction=0).val == ()


def test_official_caps_training_per_class_as_scan_ccis_affectnet_script() -> None:
    table = make_table(split="no_val")
    full = official(table, val_fraction=0)
    capped = official(table, val_fraction=0, max_train_per_class=100)
    assert_sound(capped, table)
    labels = table.frame.set_index("sample_id")["label"]
    counts = labels[list(capped.train)].value_counts()
    assert (counts == 100).all() and len(counts) == LABELS  # 170 official training images per class before
    for label in range(LABELS):  # the first ones by sample id, as the released reader keeps the first in its file
        ids = sorted(i for i in full.train if labels[i] == label)
        assert sorted(i for i in capped.train if labels[i] == label) == ids[:100]
    assert capped.test == full.test and capped.params["max_train_per_class"] == 100
    assert "max_train_per_class" not in full.params  # uncapped splits keep their digests
    assert make_split(table, "official", **capped.params).digest() == capped.digest()
    assert official(table, max_train_per_class=1000).train == official(table).train
    with pytest.raises(FbenchError, match="max_train_per_class must be a positive integer"):
        official(table, max_train_per_class=0)


def test_official_maps_fer2013_names() -> None:
    table = make_table(split="with_val")
    table.frame["split"] = table.frame["split"].map({"train": "Training", "val": "PublicTest",
                                                     "test": "PrivateTest"})
    fer = official(table)
    plain = official(make_table(split="with_val"))
    assert (fer.train, fer.val, fer.test) == (plain.train, plain.val, plain.test)


# ------------------------------------------------------------------------------------------------ Split object


def test_save_load_round_trip(table: SampleTable, tmp_path: Path) -> None:
    split = cross_pose(table, ["S"], ["HL", "HR"], seed=3)
    path = split.save(tmp_path / "cell" / "split.json")
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temp file left behind
    loaded = Split.load(path)
    assert loaded == split and loaded.digest() == split.digest()
    assert Split.from_json(split.to_json()) == split
    assert json.loads(path.read_text())["digest"] == split.digest()


def test_load_rejects_edited_or_broken_files(table: SampleTable, tmp_path: Path) -> None:
    split = make_split(table, "stratified_kfold", folds=5)
    record = json.loads(split.to_json())
    record["test"] = record["test"][1:]
    (tmp_path / "edited.json").write_text(json.dumps(record))
    with pytest.raises(FbenchError, match="digest does not match"):
        Split.load(tmp_path / "edited.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(FbenchError, match="broken.json"):
        Split.load(tmp_path / "broken.json")
    with pytest.raises(FbenchError, match="missing.json"):
        Split.load(tmp_path / "missing.json")
    with pytest.raises(FbenchError, match=r"missing keys \['val'\]"):
        Split.from_json(json.dumps({"name": "x", "kind": "x", "params": {}, "train": [], "test": []}))


def test_indices_point_at_the_right_rows(table: SampleTable) -> None:
    split = cross_pose(table, ["S"], ["FL", "FR"])
    indices = split.indices(table)
    assert set(indices) == {"train", "val", "test", "test/FL", "test/FR"}
    for key, rows in indices.items():
        assert rows.dtype == np.int64 and list(rows) == sorted(rows)
        ids = split.test_groups[key[5:]] if key.startswith("test/") else getattr(split, key)
        assert set(table.frame["sample_id"].iloc[rows]) == set(ids)
    other = make_table(subjects=2)
    with pytest.raises(FbenchError, match="not in dataset"):
        split.indices(other)


def test_check_reports_overlap_and_unknown_ids(table: SampleTable) -> None:
    ids = list(table.frame["sample_id"])
    leaky = Split("leaky", "manual", {}, ids[:10], ids[10:12], ids[5:20])
    with pytest.raises(FbenchError, match=r"train and test share 5 sample\(s\), e\.g\. \["):
        leaky.check(table)
    with pytest.raises(FbenchError, match="val and test share 2"):
        Split("leaky", "manual", {}, ids[:5], ids[10:12], ids[10:20]).check(table)
    with pytest.raises(FbenchError, match="1 test id"):
        Split("ghost", "manual", {}, ids[:5], (), ["nobody"]).check(table)
    with pytest.raises(FbenchError, match="repeats"):
        Split("twice", "manual", {}, [ids[0], ids[0]], (), ids[1:3]).check(table)
    with pytest.raises(FbenchError, match="do not partition"):
        Split("groups", "manual", {}, ids[:5], (), ids[5:9], {"a": ids[5:7]}).check(table)


# ------------------------------------------------------------------------------------------------ errors


def test_empty_table_is_an_error() -> None:
    empty = make_table().subset(np.zeros(SUBJECTS * LABELS * len(KDEF_POSES) * SESSIONS, dtype=bool))
    for protocol, params in [("stratified_kfold", {}), ("subject_kfold", {}), ("official", {}),
                             ("leave_one_pose_out", {"pose": "S"}),
                             ("cross_pose", {"train_poses": ["S"], "test_poses": ["FL"]})]:
        with pytest.raises(FbenchError, match="empty"):
            make_split(empty, protocol, **params)


def test_class_with_fewer_samples_than_folds_is_named(table: SampleTable) -> None:
    frame = table.frame
    rare = table.subset(~((frame["label"] == 3) & (frame["sample_id"] != frame.loc[frame["label"] == 3,
                                                                                      "sample_id"].iloc[0])))
    for protocol in ("stratified_kfold", "subject_kfold"):
        with pytest.raises(FbenchError, match=r"class 'surprise' \(label 3\) has 1 sample\(s\), fewer than folds=5"):
            make_split(rare, protocol, folds=5)


def test_subject_kfold_errors(table: SampleTable) -> None:
    with pytest.raises(FbenchError, match="has 20 subject.*fewer than folds=25"):
        make_split(table, "subject_kfold", folds=25)
    with pytest.raises(FbenchError, match="no subject ids.*stratified_kfold"):
        make_split(make_table(with_subjects=False), "subject_kfold", folds=5)


def test_bad_fold_arguments(table: SampleTable) -> None:
    with pytest.raises(FbenchError, match="folds must be"):
        make_split(table, "stratified_kfold", folds=1)
    with pytest.raises(FbenchError, match=r"fold must be an integer in 0\.\.4"):
        make_split(table, "stratified_kfold", folds=5, fold=5)
    with pytest.raises(FbenchError, match="val_fraction"):
        make_split(table, "stratified_kfold", val_fraction=0.9)
    with pytest.raises(FbenchError, match="do not pass 'fold'"):
        all_folds(table, "stratified_kfold", folds=5, fold=1)
    with pytest.raises(FbenchError, match="single split"):
        all_folds(table, "official", folds=5)


def test_cross_pose_errors(table: SampleTable) -> None:
    with pytest.raises(FbenchError, match=r"unknown pose code\(s\) \['XX'\].*poses present: \['FL', 'FR', 'HL'"):
        cross_pose(table, ["S"], ["XX"])
    with pytest.raises(FbenchError, match=r"unknown pose code\(s\) \['left'\]"):
        leave_one_pose_out(table, "left")
    with pytest.raises(FbenchError, match="both train_poses and test_poses"):
        cross_pose(table, ["S", "FL"], ["FL"])
    with pytest.raises(FbenchError, match="train_poses is empty"):
        cross_pose(table, [], ["FL"])
    with pytest.raises(FbenchError, match="subject_disjoint=False"):
        cross_pose(make_table(with_subjects=False), ["S"], ["FL"])
    with pytest.raises(FbenchError, match="no pose codes"):
        make_split(make_table(poses=("",)), "leave_one_pose_out", pose="S")
    with pytest.raises(FbenchError, match="nothing to train on"):
        leave_one_pose_out(make_table(poses=("S",)), "S")


def test_official_errors(table: SampleTable) -> None:
    with pytest.raises(FbenchError, match=r"no official split.*\['stratified_kfold', 'subject_kfold', 'cross_pose'"):
        official(table)
    partial = make_table(split="with_val")
    partial.frame.loc[0, "split"] = ""
    with pytest.raises(FbenchError, match="1 row"):
        official(partial)
    odd = make_table(split="with_val")
    odd.frame.loc[0, "split"] = "holdout"
    with pytest.raises(FbenchError, match="unknown official split value.*holdout"):
        official(odd)
    no_test = make_table(split="no_val")
    no_test.frame["split"] = "train"
    with pytest.raises(FbenchError, match="no test rows"):
        official(no_test)


def test_unknown_protocol_and_parameter_suggest_names(table: SampleTable) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'subject_kfold'"):
        make_split(table, "subject_kfol")
    with pytest.raises(FbenchError, match="known: "):
        make_split(table, "zzz")
    with pytest.raises(FbenchError, match="did you mean 'val_fraction'"):
        make_split(table, "official", val_frac=0.2)
    assert make_split(table, "stratified-kfold", folds=5).kind == "stratified_kfold"
