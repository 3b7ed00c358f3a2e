"""Dataset adapters on tiny fixtures written by each test: labels, splits, columns, images and error paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fbench.data.adapter import DatasetAdapter
from fbench.data.labels import canonical_label
from fbench.data.table import LABEL_INDEX, LANDMARK_COLUMNS, SampleTable
from fbench.errors import FbenchError
from fbench.registry import get_dataset

NAMES = ("kdef", "rafdb", "fer2013", "ferplus", "affectnet", "imagefolder", "csv")


def write_image(path: Path, size: tuple[int, int] = (12, 10), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def load(name: str, root: Path | str, on_error: str = "raise") -> SampleTable:
    return get_dataset(name).load(root, on_error=on_error)


def row(table: SampleTable, column: str, value: object) -> pd.Series:
    matches = table.frame[table.frame[column] == value]
    assert len(matches) == 1, f"{column}={value!r}: {len(matches)} rows"
    return matches.iloc[0]


# -- labels and registry ------------------------------------------------------------------------------------------
def test_canonical_label_synonyms():
    assert canonical_label("angry") == canonical_label("Anger") == LABEL_INDEX["anger"] == 6
    assert canonical_label("Happiness") == canonical_label(" happy ") == 1
    assert canonical_label("surprised") == 3
    assert canonical_label("afraid") == canonical_label("fear") == 4
    assert canonical_label("disgusted") == 5
    assert canonical_label("sadness") == 2
    assert canonical_label("NEUTRAL") == 0
    assert canonical_label("contempt") == 7


def test_canonical_label_unknown_lists_accepted_names():
    with pytest.raises(FbenchError, match="unknown expression label 'smirk'.*neutral.*happy.*contempt"):
        canonical_label("smirk")


@pytest.mark.parametrize("name", NAMES)
def test_every_builtin_is_registered(name):
    adapter = get_dataset(name)
    assert isinstance(adapter, DatasetAdapter)
    assert adapter.name == name
    assert adapter.description and adapter.expected_layout
    assert adapter.default_crop in ("box", "haar", "none")


@pytest.mark.parametrize("name", NAMES)
def test_missing_root_names_env_var_and_cli(tmp_path, name):
    with pytest.raises(FbenchError) as error:
        load(name, tmp_path / "nowhere")
    message = str(error.value)
    assert "nowhere" in message
    assert f"FBENCH_DATA_{name.upper()}" in message
    assert f"--data {name}=PATH" in message
    assert get_dataset(name).expected_layout in message


def test_bad_on_error_value(tmp_path):
    write_image(tmp_path / "happy" / "a.png")
    with pytest.raises(FbenchError, match="on_error must be one of"):
        load("imagefolder", tmp_path, on_error="ignore")


# -- KDEF ---------------------------------------------------------------------------------------------------------
def kdef_fixture(root: Path) -> None:
    for name in ("AF01/AF01AFS.JPG", "AF01/AF01HAFL.JPG", "BM02/BM02NEHR.jpg", "BM02/BM02SUFR.JPG"):
        write_image(root / "KDEF" / name)


def test_kdef_reads_names(tmp_path):
    kdef_fixture(tmp_path)
    table = load("kdef", tmp_path)
    assert len(table) == 4 and table.num_classes == 7 and not table.synthetic
    first = row(table, "sample_id", "KDEF/AF01/AF01AFS.JPG")
    assert first["label"] == LABEL_INDEX["fear"] == 4  # AF = afraid
    assert (first["subject"], first["session"], first["pose"], first["yaw"], first["split"]) == ("F01", "A", "S",
                                                                                                  0.0, "")
    assert row(table, "path", "KDEF/AF01/AF01HAFL.JPG")["yaw"] == -90.0
    third = row(table, "path", "KDEF/BM02/BM02NEHR.jpg")
    assert (third["label"], third["subject"], third["session"], third["pose"], third["yaw"]) == (0, "M02", "B", "HR",
                                                                                                  45.0)
    assert row(table, "path", "KDEF/BM02/BM02SUFR.JPG")["label"] == LABEL_INDEX["surprise"]
    assert (table.frame["index"] == -1).all()
    assert "crop" not in table.meta and get_dataset("kdef").default_crop == "haar"
    image = get_dataset("kdef").read_image(table, 0)
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8


def test_kdef_bad_name_raises_or_is_reported(tmp_path):
    kdef_fixture(tmp_path)
    write_image(tmp_path / "KDEF" / "extra" / "holiday.jpg")
    with pytest.raises(FbenchError) as error:
        load("kdef", tmp_path)
    message = str(error.value)
    assert "'kdef'" in message and "1 bad sample" in message and "KDEF/extra/holiday.jpg" in message
    assert "on_error='skip'" in message and "--on-error skip" in message
    table = load("kdef", tmp_path, on_error="skip")
    assert len(table) == 4 and table.report.total == 1
    assert "KDEF/extra/holiday.jpg" in table.report.summary()


def test_kdef_empty_root(tmp_path):
    (tmp_path / "kdef").mkdir()
    with pytest.raises(FbenchError, match="is empty.*FBENCH_DATA_KDEF"):
        load("kdef", tmp_path / "kdef")


def test_kdef_synthetic_manifest_and_flag(tmp_path):
    kdef_fixture(tmp_path)
    boxes = ["box_x0", "box_y0", "box_x1", "box_y1"]
    header = ["path", "subject", "session", "sex", "expression", "label", "pose", "yaw", "pitch", "roll",
              "intensity", *boxes, *LANDMARK_COLUMNS]
    landmarks = [float(v) for v in range(len(LANDMARK_COLUMNS))]
    write_csv(tmp_path / "fbench_manifest.csv", header,
              [["KDEF/AF01/AF01AFS.JPG", "F01", "A", "F", "AF", 4, "S", 0, 0, 0, 1.0, 1, 2, 11, 9, *landmarks]])
    info = {"synthetic": True, "generator": "fbench", "seed": 0}
    (tmp_path / "fbench_synthetic.json").write_text(json.dumps(info))
    table = load("kdef", tmp_path)
    assert table.synthetic and table.meta["synthetic_info"] == info and table.meta["crop"] == "box"
    assert len(table) == 4 and table.has_landmarks
    first = row(table, "sample_id", "KDEF/AF01/AF01AFS.JPG")
    assert [first[c] for c in boxes] == [1.0, 2.0, 11.0, 9.0]
    assert first["lm_eye_l_x"] == 0.0 and first["lm_chin_y"] == float(len(LANDMARK_COLUMNS) - 1)
    assert np.isnan(row(table, "sample_id", "KDEF/BM02/BM02NEHR.jpg")["box_x0"])


def test_kdef_synthetic_false_is_not_synthetic(tmp_path):
    kdef_fixture(tmp_path)
    (tmp_path / "fbench_synthetic.json").write_text('{"synthetic": false}')
    assert not load("kdef", tmp_path).synthetic


# -- RAF-DB -------------------------------------------------------------------------------------------------------
RAF_LINES = ["train_00001.jpg 5", "train_00002.jpg 1", "test_0001.jpg 3", "test_0002.jpg 7", "test_0003.jpg 4"]


def rafdb_fixture(root: Path, lines: list[str] = RAF_LINES, skip_image: str | None = None) -> None:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0].rsplit(".", 1)[0]
        if stem != skip_image:
            write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", size=(100, 100))


def test_rafdb_labels_splits_and_conditions(tmp_path):
    rafdb_fixture(tmp_path)
    conditions = tmp_path / "conditions"
    conditions.mkdir()
    # the formats of the RAN repository's RAF_DB_dir lists
    (conditions / "rafdb_occlusion_list.txt").write_text("test_0001_aligned 3 4\ntest_0003_aligned 4 1\n")
    (conditions / "val_raf_db_list.txt").write_text("0/test_0002_aligned.jpg\n3/test_0003_aligned.jpg\n")
    (conditions / "val_raf_db_list_45.txt").write_text("0/test_0002_aligned.jpg\n")
    table = load("rafdb", tmp_path)
    assert len(table) == 5 and table.num_classes == 7 and table.aligned
    assert get_dataset("rafdb").default_crop == "none"
    first = row(table, "sample_id", "Image/aligned/train_00001_aligned.jpg")
    assert first["label"] == LABEL_INDEX["sad"] and first["split"] == "train"
    assert row(table, "path", "Image/aligned/train_00002_aligned.jpg")["label"] == LABEL_INDEX["surprise"] == 3
    assert row(table, "path", "Image/aligned/test_0001_aligned.jpg")["label"] == LABEL_INDEX["disgust"]
    assert row(table, "path", "Image/aligned/test_0002_aligned.jpg")["label"] == LABEL_INDEX["neutral"]
    assert row(table, "path", "Image/aligned/test_0003_aligned.jpg")["label"] == LABEL_INDEX["happy"]
    assert sorted(table.frame["split"]) == ["test", "test", "test", "train", "train"]
    by_stem = table.frame.set_index("path")
    occluded = by_stem.index[by_stem["cond_occlusion"]].tolist()
    assert sorted(occluded) == ["Image/aligned/test_0001_aligned.jpg", "Image/aligned/test_0003_aligned.jpg"]
    assert by_stem["cond_pose_gt30"].sum() == 2 and by_stem["cond_pose_gt45"].sum() == 1
    assert by_stem.loc["Image/aligned/test_0002_aligned.jpg", "cond_pose_gt45"]
    assert table.frame["cond_occlusion"].dtype == bool
    assert "conditions_missing" not in table.meta
    assert not table.has_landmarks
    image = get_dataset("rafdb").read_image(table, 0)
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8


def test_rafdb_without_condition_lists(tmp_path):
    rafdb_fixture(tmp_path)
    table = load("rafdb", tmp_path)
    for column in ("cond_occlusion", "cond_pose_gt30", "cond_pose_gt45"):
        assert column in table.frame and not table.frame[column].any()
    assert table.meta["conditions_missing"] == ["cond_occlusion", "cond_pose_gt30", "cond_pose_gt45"]
    assert "rafdb_occlusion_list.txt" in table.meta["conditions_note"]


def test_rafdb_missing_image_and_bad_label(tmp_path):
    rafdb_fixture(tmp_path, RAF_LINES + ["test_0004.jpg 9"], skip_image="test_0002")
    with pytest.raises(FbenchError) as error:
        load("rafdb", tmp_path)
    message = str(error.value)
    assert "2 bad sample" in message and "1 unknown label" in message and "1 missing image" in message
    assert "list_patition_label.txt:6" in message and "test_0002_aligned.jpg" in message
    table = load("rafdb", tmp_path, on_error="skip")
    assert len(table) == 4 and table.report.total == 2
    assert "Image/aligned/test_0002_aligned.jpg" in table.report.skipped["missing image"]


def test_rafdb_missing_label_file(tmp_path):
    write_image(tmp_path / "Image" / "aligned" / "test_0001_aligned.jpg")
    with pytest.raises(FbenchError, match="list_patition_label.txt.*FBENCH_DATA_RAFDB"):
        load("rafdb", tmp_path)


# -- FER-2013 and FERPlus -----------------------------------------------------------------------------------------
def fer_pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(48, 48), dtype=np.uint8)


def fer_fixture(root: Path, emotions: list[int], usages: list[str], bad_row: int | None = None) -> None:
    rows = []
    for i, (emotion, usage) in enumerate(zip(emotions, usages)):
        values = fer_pixels(i).ravel().tolist()
        if i == bad_row:
            values = values[:-1]
        rows.append([emotion, " ".join(map(str, values)), usage])
    write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)


def test_fer2013_labels_splits_pixels(tmp_path):
    fer_fixture(tmp_path, [0, 3, 6, 5], ["Training", "PublicTest", "PrivateTest", "Training"])
    table = load("fer2013", tmp_path)
    assert len(table) == 4 and table.num_classes == 7 and table.aligned
    assert table.frame["label"].tolist() == [LABEL_INDEX["anger"], LABEL_INDEX["happy"], LABEL_INDEX["neutral"],
                                             LABEL_INDEX["surprise"]]
    assert table.frame["label"].iloc[0] == 6  # FER 0 = angry
    assert table.frame["split"].tolist() == ["train", "val", "test", "train"]
    assert table.frame["index"].tolist() == [0, 1, 2, 3] and (table.frame["path"] == "").all()
    assert table.pixels is not None and table.pixels.shape == (4, 48, 48) and table.pixels.dtype == np.uint8
    image = get_dataset("fer2013").read_image(table, 2)
    assert image.shape == (48, 48) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, fer_pixels(2))
    assert load("fer2013", tmp_path / "fer2013.csv").frame.equals(table.frame)  # root may be the CSV itself


def test_fer2013_malformed_row_and_label(tmp_path):
    fer_fixture(tmp_path, [0, 3, 9, 5], ["Training", "PublicTest", "PrivateTest", "Training"], bad_row=1)
    with pytest.raises(FbenchError) as error:
        load("fer2013", tmp_path)
    message = str(error.value)
    assert "1 malformed pixel row (fer2013.csv:3)" in message and "unknown label" in message
    assert "fer2013.csv:4" in message
    table = load("fer2013", tmp_path, on_error="skip")
    assert table.frame["index"].tolist() == [0, 3] and table.report.total == 2
    np.testing.assert_array_equal(get_dataset("fer2013").read_image(table, 1), fer_pixels(3))


VOTES_HEADER = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF"]


def ferplus_fixture(root: Path) -> None:
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "PrivateTest", "Training", "Training"]
    fer_fixture(root, [0] * len(usages), usages)
    votes = [
        [0, 8, 1, 0, 0, 0, 0, 1, 0, 0],  # happy
        [1, 0, 0, 0, 0, 0, 0, 0, 5, 4],  # unknown wins -> excluded
        [4, 0, 0, 4, 0, 0, 0, 0, 2, 0],  # neutral and sad tie -> excluded
        [0, 0, 0, 0, 0, 0, 0, 6, 1, 3],  # contempt
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # empty name below -> excluded
        [3, 0, 0, 0, 4, 0, 0, 0, 3, 0],  # anger by plurality, no official majority
        [2, 0, 0, 0, 0, 0, 5, 0, 1, 2],  # fear
    ]
    names = ["fer0000000.png", "fer0000001.png", "fer0000002.png", "fer0000003.png", "", "fer0000005.png",
             "fer0000006.png"]
    write_csv(root / "fer2013new.csv", VOTES_HEADER,
              [[u, n, *v] for u, n, v in zip(usages, names, votes)])


def test_ferplus_plurality_rule(tmp_path):
    ferplus_fixture(tmp_path)
    table = get_dataset("ferplus").with_options(vote_rule="plurality").load(tmp_path)  # exclusions are not errors
    assert table.num_classes == 8 and table.aligned
    assert table.frame["index"].tolist() == [0, 3, 5, 6]
    assert table.frame["label"].tolist() == [LABEL_INDEX["happy"], LABEL_INDEX["contempt"], LABEL_INDEX["anger"],
                                             LABEL_INDEX["fear"]]
    assert table.frame["split"].tolist() == ["train", "test", "train", "train"]
    first = table.frame.iloc[0]
    assert (first["votes_happy"], first["votes_surprise"], first["votes_contempt"], first["votes_unknown"]) == (
        8, 1, 1, 0)
    assert first["image_name"] == "fer0000000.png"
    skipped = table.report.skipped
    assert skipped["excluded: unknown or not a face by the votes"] == ["fer2013new.csv:3 (fer0000001.png)"]
    assert skipped["excluded: tied top emotions"] == ["fer2013new.csv:4 (fer0000002.png)"]
    assert skipped["excluded: no FER+ image (empty Image name)"] == ["fer2013new.csv:6"]
    np.testing.assert_array_equal(get_dataset("ferplus").read_image(table, 1), fer_pixels(3))


def test_ferplus_official_majority_rule_is_the_default(tmp_path):
    ferplus_fixture(tmp_path)
    table = load("ferplus", tmp_path)
    # row 1: the single neutral vote is dropped, then unknown holds 5 of 9 -> not an emotion; rows 2 and 5 have no
    # class above half the votes; row 6: the single unknown vote is dropped, fear holds 5 of 9
    assert table.frame["index"].tolist() == [0, 3, 6]
    assert table.report.skipped["excluded: unknown or not a face by the votes"] == ["fer2013new.csv:3 (fer0000001.png)"]
    assert table.report.skipped["excluded: no majority (official rule)"] == ["fer2013new.csv:4 (fer0000002.png)",
                                                                            "fer2013new.csv:7 (fer0000005.png)"]


def test_ferplus_needs_aligned_fer2013(tmp_path):
    ferplus_fixture(tmp_path)
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(FbenchError, match="fer2013.csv.*FBENCH_DATA_FER2013"):
        load("ferplus", tmp_path)
    fer_fixture(tmp_path, [0, 1], ["Training", "Training"])
    with pytest.raises(FbenchError, match="row-aligned"):
        load("ferplus", tmp_path)


def test_ferplus_fer2013_from_option(tmp_path):
    ferplus_fixture(tmp_path / "plus")
    (tmp_path / "plus" / "fer2013.csv").rename(tmp_path / "elsewhere.csv")
    table = get_dataset("ferplus").with_options(fer2013_csv=tmp_path / "elsewhere.csv").load(tmp_path / "plus")
    assert len(table) == 3 and table.meta["fer2013_csv"].endswith("elsewhere.csv")


# -- AffectNet ----------------------------------------------------------------------------------------------------
AFFECT_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                 "expression", "valence", "arousal"]


def points_68(offset: float) -> np.ndarray:
    points = np.stack([np.arange(68) * 2.0 + offset, np.arange(68) * 3.0 + offset], axis=1)
    return points


def landmark_string(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in points.ravel())


def affectnet_fixture(root: Path, missing: str | None = None) -> None:
    rows = {
        "training.csv": [["1/a.jpg", 2, 3, 20, 30, landmark_string(points_68(0)), 1, 0.5, 0.2],
                         ["1/b.jpg", 0, 0, 10, 10, "", 7, -0.1, 0.3],
                         ["2/c.jpg", 0, 0, 10, 10, "", 8, 0, 0],
                         ["2/d.jpg", 0, 0, 10, 10, "", 10, 0, 0]],
        "validation.csv": [["3/e.jpg", 1, 1, 5, 5, landmark_string(points_68(1)[::-1]), 6, -0.5, 0.6],
                           ["3/f.jpg", 1, 1, 5, 5, "", 9, 0, 0]],
    }
    for name, table in rows.items():
        write_csv(root / name, AFFECT_HEADER, table)
        for entry in table:
            if entry[0] != missing:
                write_image(root / "Manually_Annotated_Images" / entry[0])


def test_affectnet_labels_boxes_landmarks(tmp_path):
    affectnet_fixture(tmp_path)
    table = load("affectnet", tmp_path)
    assert len(table) == 3 and table.num_classes == 8 and get_dataset("affectnet").default_crop == "box"
    a = row(table, "path", "Manually_Annotated_Images/1/a.jpg")
    assert a["label"] == LABEL_INDEX["happy"] and a["split"] == "train" and a["valence"] == 0.5
    assert (a["box_x0"], a["box_y0"], a["box_x1"], a["box_y1"]) == (2.0, 3.0, 22.0, 33.0)
    points = points_68(0)
    np.testing.assert_allclose([a["lm_eye_l_x"], a["lm_eye_l_y"]], points[36:42].mean(axis=0))
    np.testing.assert_allclose([a["lm_eye_r_x"], a["lm_eye_r_y"]], points[42:48].mean(axis=0))
    np.testing.assert_allclose([a["lm_nose_x"], a["lm_mouth_l_x"], a["lm_mouth_r_x"], a["lm_chin_y"]],
                               [points[30, 0], points[48, 0], points[54, 0], points[8, 1]])
    assert row(table, "path", "Manually_Annotated_Images/1/b.jpg")["label"] == LABEL_INDEX["contempt"]
    assert np.isnan(row(table, "path", "Manually_Annotated_Images/1/b.jpg")["lm_nose_x"])
    e = row(table, "path", "Manually_Annotated_Images/3/e.jpg")
    assert e["label"] == LABEL_INDEX["anger"] and e["split"] == "test"
    assert e["lm_eye_l_x"] < e["lm_eye_r_x"] and e["lm_mouth_l_x"] < e["lm_mouth_r_x"]  # image-left first
    excluded = {k: v for k, v in table.report.skipped.items() if k.startswith("excluded")}
    assert excluded == {"excluded: None (8)": ["training.csv:4"], "excluded: Non-Face (10)": ["training.csv:5"],
                        "excluded: Uncertain (9)": ["validation.csv:3"]}
    image = get_dataset("affectnet").read_image(table, 0)
    assert image.shape == (10, 12, 3)


def test_affectnet_missing_image_and_unknown_expression(tmp_path):
    affectnet_fixture(tmp_path, missing="1/b.jpg")
    with (tmp_path / "validation.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["3/g.jpg", 1, 1, 5, 5, "", 11, 0, 0])
    write_image(tmp_path / "Manually_Annotated_Images" / "3" / "g.jpg")
    with pytest.raises(FbenchError) as error:
        load("affectnet", tmp_path)
    message = str(error.value)
    assert "1 missing image (training.csv:3 (Manually_Annotated_Images/1/b.jpg))" in message
    assert "1 unknown label (validation.csv:4" in message and "excluded" not in message
    table = load("affectnet", tmp_path, on_error="skip")
    assert len(table) == 2 and table.report.skipped["missing image"]


# -- image folders ------------------------------------------------------------------------------------------------
def test_imagefolder_flat_layout(tmp_path):
    write_image(tmp_path / "angry" / "a.png")
    write_image(tmp_path / "Happiness" / "b.jpg")
    write_image(tmp_path / "neutral" / "sub" / "c.jpeg")
    (tmp_path / "neutral" / "notes.txt").write_text("not an image")
    table = load("imagefolder", tmp_path)
    assert len(table) == 3 and table.num_classes == 7  # a subset of the 7, no contempt
    assert row(table, "sample_id", "angry/a.png")["label"] == LABEL_INDEX["anger"]
    assert row(table, "path", "Happiness/b.jpg")["label"] == LABEL_INDEX["happy"]
    assert row(table, "path", "neutral/sub/c.jpeg")["label"] == LABEL_INDEX["neutral"]
    assert (table.frame["split"] == "").all()
    assert get_dataset("imagefolder").read_image(table, 0).shape == (10, 12, 3)


def test_imagefolder_split_layout_with_contempt(tmp_path):
    write_image(tmp_path / "train" / "happy" / "a.png")
    write_image(tmp_path / "valid" / "sad" / "b.png")
    write_image(tmp_path / "test" / "contempt" / "c.png")
    table = load("imagefolder", tmp_path)
    assert table.num_classes == 8
    assert row(table, "path", "train/happy/a.png")["split"] == "train"
    assert row(table, "path", "valid/sad/b.png")["split"] == "val"
    assert row(table, "path", "test/contempt/c.png")["label"] == LABEL_INDEX["contempt"]


def test_imagefolder_unknown_class(tmp_path):
    write_image(tmp_path / "happy" / "a.png")
    write_image(tmp_path / "smirk" / "b.png")
    with pytest.raises(FbenchError, match=r"1 unknown label \(smirk/b.png\).*\['smirk'\].*accepted names.*neutral"):
        load("imagefolder", tmp_path)
    table = load("imagefolder", tmp_path, on_error="skip")
    assert len(table) == 1 and table.report.skipped == {"unknown label": ["smirk/b.png"]}


def test_imagefolder_mixed_layout(tmp_path):
    write_image(tmp_path / "train" / "happy" / "a.png")
    write_image(tmp_path / "sad" / "b.png")
    with pytest.raises(FbenchError, match="mixes split folders"):
        load("imagefolder", tmp_path)


def test_verify_images_option(tmp_path):
    write_image(tmp_path / "happy" / "a.png")
    (tmp_path / "happy" / "broken.png").write_bytes(b"not a png")
    unchecked = get_dataset("imagefolder").with_options(verify_images=False)
    assert len(unchecked.load(tmp_path)) == 2  # existence only
    checked = get_dataset("imagefolder")  # decode-checked by default (issue 14)
    with pytest.raises(FbenchError, match=r"1 not an image \(happy/broken.png\)"):
        checked.load(tmp_path, on_error="raise")
    assert len(checked.load(tmp_path, on_error="skip")) == 1
    with pytest.raises(FbenchError, match="no option"):
        get_dataset("imagefolder").with_options(colour=True)


# -- CSV manifests ------------------------------------------------------------------------------------------------
def csv_fixture(root: Path, extra_rows: list[list[object]] = ()) -> Path:
    header = ["path", "label", "subject", "pose", "yaw", "split", "session", "cond_occluded", "box_x0", "lm_nose_x",
              "comment"]
    rows = [["img/a.png", "Angry", "s1", "S", "0", "train", "A", "true", "1.5", "4", "x"],
            ["img/b.png", "happiness", "s2", "HL", "-45", "validation", "B", "0", "", "", "y"],
            [str(root / "abs" / "c.png"), "contempt", "", "", "", "", "", "", "", "", ""]]
    for entry in rows + list(extra_rows):
        if not str(entry[0]).startswith("img/missing"):
            path = Path(entry[0])
            write_image(path if path.is_absolute() else root / path)
    write_csv(root / "manifest.csv", header, rows + list(extra_rows))
    return root / "manifest.csv"


def test_csv_manifest_columns(tmp_path):
    manifest = csv_fixture(tmp_path)
    table = load("csv", tmp_path)
    assert len(table) == 3 and table.num_classes == 8
    a = row(table, "path", "img/a.png")
    assert (a["label"], a["subject"], a["pose"], a["yaw"], a["split"], a["session"]) == (6, "s1", "S", 0.0, "train",
                                                                                         "A")
    assert bool(a["cond_occluded"]) and a["box_x0"] == 1.5 and a["lm_nose_x"] == 4.0
    b = row(table, "path", "img/b.png")
    assert b["label"] == LABEL_INDEX["happy"] and b["split"] == "val" and b["yaw"] == -45.0
    assert not b["cond_occluded"] and np.isnan(b["box_x0"])
    assert "comment" not in table.frame
    assert table.frame["cond_occluded"].dtype == bool
    assert table.root == str(tmp_path)
    assert get_dataset("csv").read_image(table, 2).shape == (10, 12, 3)  # the absolute path
    assert len(load("csv", manifest)) == 3  # root may be the CSV file


def test_csv_manifest_errors(tmp_path):
    csv_fixture(tmp_path, [["img/missing.png", "sad", "", "", "", "", "", "", "", "", ""],
                           ["img/d.png", "smirk", "", "", "", "", "", "", "", "", ""],
                           ["img/a.png", "sad", "", "", "", "", "", "", "", "", ""]])
    with pytest.raises(FbenchError) as error:
        load("csv", tmp_path)
    message = str(error.value)
    assert "3 bad sample" in message and "manifest.csv:6 ('smirk')" in message
    assert "1 missing image (manifest.csv:5 (img/missing.png))" in message
    assert "1 duplicate path (manifest.csv:7)" in message and "Accepted label names" in message
    table = load("csv", tmp_path, on_error="skip")
    assert len(table) == 3 and table.report.total == 3


def test_csv_manifest_missing_columns(tmp_path):
    write_csv(tmp_path / "manifest.csv", ["file", "label"], [["a.png", "happy"]])
    with pytest.raises(FbenchError, match=r"lacks column\(s\) \['path'\]"):
        load("csv", tmp_path)
