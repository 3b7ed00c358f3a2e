"""The cross-dataset adapters on tiny copies of their exact layouts: JAFFE (TIFF), CK+ (sequences and emotion
files), RaFD (camera angles and gaze), ImageFolder's labels: map and subject_pattern:, the imagefolder/<name>
family, unknown dataset names, and `fbench data info` for each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbench.cli import main
from fbench.data.adapter import DatasetAdapter
from fbench.data.adapters.ckplus import PEAK_FRAMES
from fbench.data.decode import WHOLE_IMAGE, FaceJob, prepare_face
from fbench.data.images import read_image_file, read_image_reduced
from fbench.data.locate import load_dataset
from fbench.data.splits import make_split
from fbench.data.table import CANONICAL_LABELS, KDEF_YAW, LABEL_INDEX, SampleTable
from fbench.errors import FbenchError, UnknownNameError
from fbench.registry import DATASETS, get_dataset, is_dataset_name
from fbench.suite.checks import semantic_problems

NEW = ("jaffe", "ckplus", "rafd")
JAFFE_CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad",
               "SU": "surprise"}
CK_CODES = {1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise"}
RAFD_EXPRESSIONS = {"angry": "anger", "contemptuous": "contempt", "disgusted": "disgust", "fearful": "fear",
                    "happy": "happy", "neutral": "neutral", "sad": "sad", "surprised": "surprise"}
CK_FRAMES = 6  # frames per generated sequence


def pixels(seed: int, shape: tuple[int, ...] = (12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def counts(table: SampleTable, column: str = "label") -> dict:
    values = table.frame[column].value_counts()
    if column == "label":
        return {CANONICAL_LABELS[int(k)]: int(v) for k, v in values.items()}
    return {k: int(v) for k, v in values.items()}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- layouts ------------------------------------------------------------------------------------------------------
def make_jaffe(root: Path, subjects: tuple[str, ...] = ("KA", "KL")) -> Path:
    """2 subjects x 7 expressions, 8-bit grayscale TIFFs named as JAFFE names them, and a README beside them."""
    root.mkdir(parents=True, exist_ok=True)
    number = 30
    for subject in subjects:
        for code in JAFFE_CODES:
            number += 1
            Image.fromarray(pixels(number), "L").save(root / f"{subject}.{code}1.{number}.tiff")
    (root / "README").write_text("JAFFE")
    return root


def write_sequence(root: Path, subject: str, sequence: str, code: int | None, peak: int = CK_FRAMES,
                   emotion_folder: bool = True) -> None:
    frames = root / "cohn-kanade-images" / subject / sequence
    frames.mkdir(parents=True)
    for number in range(1, CK_FRAMES + 1):
        Image.fromarray(pixels(number, (8, 10))).save(frames / f"{subject}_{sequence}_{number:08d}.png")
    if emotion_folder:
        folder = root / "Emotion" / subject / sequence
        folder.mkdir(parents=True)
        if code is not None:
            (folder / f"{subject}_{sequence}_{peak:08d}_emotion.txt").write_text(f"   {code:.7e}\n")


def make_ckplus(root: Path, subjects: int = 2) -> Path:
    """Subjects S005, S010, ... with one labelled sequence per CK+ code 1-7 (peak = last frame, except S005/002
    whose labelled frame is frame 2), one sequence with an empty Emotion folder and one with none."""
    for s in range(subjects):
        subject = f"S{5 + 5 * s:03d}"
        for code in CK_CODES:
            peak = 2 if (s, code) == (0, 2) else CK_FRAMES
            write_sequence(root, subject, f"{code:03d}", code, peak=peak)
        write_sequence(root, subject, "008", None)
        write_sequence(root, subject, "009", None, emotion_folder=False)
    return root


def make_rafd(root: Path) -> Path:
    """2 models x 8 expressions x 5 cameras x 3 gaze directions, JPGs named as RaFD names them."""
    root.mkdir(parents=True, exist_ok=True)
    seed = 0
    for number, ethnicity, gender in (("01", "Caucasian", "female"), ("02", "Moroccan", "male")):
        for expression in RAFD_EXPRESSIONS:
            for camera in ("000", "045", "090", "135", "180"):
                for gaze in ("frontal", "left", "right"):
                    seed += 1
                    name = f"Rafd{camera}_{number}_{ethnicity}_{gender}_{expression}_{gaze}.jpg"
                    Image.fromarray(pixels(seed, (10, 8, 3))).save(root / name)
    return root


# -- registration -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_new_adapters_are_registered(name, tmp_path):
    adapter = get_dataset(name)
    assert isinstance(adapter, DatasetAdapter) and adapter.name == name and name in DATASETS.names()
    assert adapter.description and adapter.expected_layout and adapter.default_crop == "haar"
    with pytest.raises(FbenchError) as error:
        adapter.load(tmp_path / "nowhere")
    assert f"--data {name}=PATH" in str(error.value) and f"FBENCH_DATA_{name.upper()}" in str(error.value)


# -- JAFFE --------------------------------------------------------------------------------------------------------
def test_jaffe_labels_subjects_and_frontal_pose(tmp_path):
    table = get_dataset("jaffe").load(make_jaffe(tmp_path / "jaffe"))
    assert len(table) == 14 and table.num_classes == 7
    assert counts(table) == {label: 2 for label in JAFFE_CODES.values()}
    assert counts(table, "subject") == {"KA": 7, "KL": 7}
    record = table.frame[table.frame["path"] == "KA.AN1.31.tiff"].iloc[0]
    assert record["label"] == LABEL_INDEX["anger"] and record["subject"] == "KA"
    assert set(table.frame["pose"]) == {"S"} and set(table.frame["yaw"]) == {KDEF_YAW["S"]} == {0.0}


def test_jaffe_tiff_decodes_through_the_decode_path(tmp_path):
    root = make_jaffe(tmp_path / "jaffe", subjects=("KA",))
    table = get_dataset("jaffe").load(root)
    path = root / "KA.AN1.31.tiff"
    image = get_dataset("jaffe").read_image(table, int(np.flatnonzero(table.frame["path"] == path.name)[0]))
    assert image.dtype == np.uint8 and image.shape == (12, 10) and np.array_equal(image, pixels(31))
    assert np.array_equal(read_image_file(path), pixels(31))
    reduced, full = read_image_reduced(path, lambda h, w: 2, gray=True)
    assert full == (12, 10) and np.array_equal(reduced, pixels(31))
    face = prepare_face(FaceJob(str(path), "S", (1, 6, 6), how=WHOLE_IMAGE))
    assert face.pixels.shape == (1, 6, 6) and face.how == WHOLE_IMAGE and face.pixels.std() > 0


def test_jaffe_bad_file_name(tmp_path):
    root = make_jaffe(tmp_path / "jaffe")
    Image.fromarray(pixels(0), "L").save(root / "scan_001.tiff")
    with pytest.raises(FbenchError, match=r"1 bad sample.*file name not in JAFFE naming.*scan_001\.tiff"):
        get_dataset("jaffe").load(root)
    assert len(get_dataset("jaffe").load(root, on_error="skip")) == 14


# -- CK+ ----------------------------------------------------------------------------------------------------------
def test_ckplus_peak_frames_first_frame_neutral_and_contempt(tmp_path):
    table = get_dataset("ckplus").load(make_ckplus(tmp_path / "ck"))
    frame = table.frame
    assert table.num_classes == 8 and (frame["label"] == LABEL_INDEX["contempt"]).any()
    assert set(frame["subject"]) == {"S005", "S010"} and set(frame["pose"]) == {"S"}
    # a sequence labelled at its last frame: the first frame neutral, the last PEAK_FRAMES frames its expression
    sequence = frame[frame["sequence"] == "S010/006"].sort_values("frame")
    assert sequence["frame"].tolist() == [1, *range(CK_FRAMES - PEAK_FRAMES + 1, CK_FRAMES + 1)]
    assert sequence["label"].tolist() == [LABEL_INDEX["neutral"]] + [LABEL_INDEX["sad"]] * PEAK_FRAMES
    assert sequence["path"].iloc[-1] == "cohn-kanade-images/S010/006/S010_006_00000006.png"
    # a labelled frame outside the last frames is kept as well
    early = frame[frame["sequence"] == "S005/002"].sort_values("frame")
    assert early["frame"].tolist() == [1, 2, 4, 5, 6]
    assert early["label"].tolist() == [LABEL_INDEX["neutral"]] + [LABEL_INDEX["contempt"]] * 4
    for code, name in CK_CODES.items():
        rows = frame[frame["sequence"].str.endswith(f"/{code:03d}") & (frame["frame"] == CK_FRAMES)]
        assert set(rows["label"]) == {LABEL_INDEX[name]}
    # sequences without an emotion file (an empty folder, or none) are left out and counted
    assert not frame["sequence"].str.endswith(("/008", "/009")).any()
    assert table.meta["sequences_unlabelled"] == 4 and table.meta["sequences_labelled"] == 14
    assert "4 of 18 sequences have no emotion file" in table.meta["notes"][0]


def test_ckplus_splits_keep_a_sequence_together(tmp_path):
    """CK+ has no official split; subject-grouped folds keep every sequence's frames on one side."""
    table = get_dataset("ckplus").load(make_ckplus(tmp_path / "ck", subjects=4))
    with pytest.raises(FbenchError, match="no official split"):
        make_split(table, "official")
    sequence_of = dict(zip(table.frame["sample_id"], table.frame["sequence"]))
    for fold in (0, 1):
        split = make_split(table, "subject_kfold", folds=2, fold=fold, val_fraction=0.5)
        sides = [{sequence_of[i] for i in part} for part in (split.train, split.val, split.test)]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_ckplus_bad_emotion_files(tmp_path):
    root = make_ckplus(tmp_path / "ck")
    (root / "Emotion/S005/001/S005_001_00000006_emotion.txt").write_text("9.0000000e+00\n")
    (root / "Emotion/S005/003/S005_003_00000006_emotion.txt").write_text("three\n")
    with pytest.raises(FbenchError) as error:
        get_dataset("ckplus").load(root)
    assert "2 bad sample(s)" in str(error.value) and "code 9; CK+ codes are 0-7" in str(error.value)
    assert "unreadable emotion file (Emotion/S005/003/S005_003_00000006_emotion.txt)" in str(error.value)
    skipped = get_dataset("ckplus").load(root, on_error="skip")
    assert not skipped.frame["sequence"].isin(["S005/001", "S005/003"]).any()
    with pytest.raises(FbenchError, match="cohn-kanade-images' is not a folder"):
        get_dataset("ckplus").load(make_jaffe(tmp_path / "not-ck"))


# -- RaFD ---------------------------------------------------------------------------------------------------------
def test_rafd_pose_yaw_gaze_subjects_and_contempt(tmp_path):
    table = get_dataset("rafd").load(make_rafd(tmp_path / "rafd"))
    frame = table.frame
    assert len(table) == 240 and table.num_classes == 8
    assert counts(table) == {label: 30 for label in RAFD_EXPRESSIONS.values()}
    assert counts(table, "subject") == {"01_Caucasian": 120, "02_Moroccan": 120}
    for camera, pose, yaw in ((0, "FL", -90.0), (45, "HL", -45.0), (90, "S", 0.0), (135, "HR", 45.0),
                              (180, "FR", 90.0)):
        rows = frame[frame["camera"] == camera]
        assert len(rows) == 48 and set(rows["pose"]) == {pose} and set(rows["yaw"]) == {yaw} == {KDEF_YAW[pose]}
    assert counts(table, "gaze") == {"frontal": 80, "left": 80, "right": 80}
    for gaze in ("frontal", "left", "right"):
        assert frame[f"cond_gaze_{gaze}"].dtype == bool
        assert frame[f"cond_gaze_{gaze}"].tolist() == (frame["gaze"] == gaze).tolist()
    record = frame[frame["path"] == "Rafd135_02_Moroccan_male_contemptuous_left.jpg"].iloc[0]
    assert record["label"] == LABEL_INDEX["contempt"] and record["pose"] == "HR" and record["gaze"] == "left"
    assert record["gender"] == "male" and record["ethnicity"] == "Moroccan"


def test_rafd_bad_names(tmp_path):
    root = make_rafd(tmp_path / "rafd")
    for name in ("Rafd060_01_Caucasian_female_angry_frontal.jpg", "Rafd090_01_Caucasian_female_bored_frontal.jpg",
                 "IMG_0001.jpg"):
        Image.fromarray(pixels(0, (10, 8, 3))).save(root / name)
    with pytest.raises(FbenchError) as error:
        get_dataset("rafd").load(root)
    message = str(error.value)
    assert "3 bad sample(s)" in message and "unknown camera angle" in message and "unknown expression" in message
    assert "file name not in RaFD naming" in message
    assert len(get_dataset("rafd").load(root, on_error="skip")) == 240


# -- ImageFolder: labels: and subject_pattern: -------------------------------------------------------------------
def make_folders(root: Path, classes: tuple[str, ...] = ("sadness", "1 - Happy", "Angry")) -> Path:
    """Class folders holding JAFFE-named PNGs of two subjects."""
    for c, folder in enumerate(classes):
        (root / folder).mkdir(parents=True)
        for subject in ("KA", "KL"):
            Image.fromarray(pixels(c)).save(root / folder / f"{subject}.XX1.{c}.png")
    return root


def test_imagefolder_labels_map_and_subject_pattern(tmp_path):
    root = make_folders(tmp_path / "folders")
    adapter = get_dataset("imagefolder").with_options(labels={"sadness": "sad", "1 - happy": "happy"},
                                                      subject_pattern=r"^([A-Z]{2})\.")
    table = adapter.load(root)
    assert counts(table) == {"sad": 2, "happy": 2, "anger": 2}  # "1 - Happy" matched case-insensitively
    assert counts(table, "subject") == {"KA": 3, "KL": 3} and table.num_classes == 7
    assert table.meta["labels"] == {"sadness": "sad", "1 - happy": "happy"}
    named = get_dataset("imagefolder").with_options(labels={"sadness": "sad", "1 - Happy": "Happiness"},
                                                    subject_pattern=r"\.(?P<subject>\d)\.png$")
    assert set(named.load(root).frame["subject"]) == {"0", "1", "2"}
    # without a subject_pattern the subject stays empty, as before
    assert set(get_dataset("imagefolder").with_options(labels={"sadness": "sad", "1 - Happy": "happy"})
               .load(root).frame["subject"]) == {""}


def test_imagefolder_subject_pattern_on_the_path_below_the_class(tmp_path):
    for folder in ("anger", "contempt"):
        for subject in ("S005", "S010"):
            (tmp_path / folder / subject).mkdir(parents=True)
            Image.fromarray(pixels(1)).save(tmp_path / folder / subject / "frame_11.png")
    table = get_dataset("imagefolder").with_options(subject_pattern=r"^(S\d+)/").load(tmp_path)
    assert counts(table, "subject") == {"S005": 2, "S010": 2} and table.num_classes == 8


def test_imagefolder_options_file_beside_the_folders_and_as_the_location(tmp_path):
    root = make_folders(tmp_path / "folders")
    (root / "fbench_imagefolder.yaml").write_text("labels: {sadness: sad, '1 - Happy': happy}\n"
                                                  "subject_pattern: '^([A-Z]{2})\\.'\n")
    table = get_dataset("imagefolder").load(root)
    assert counts(table) == {"sad": 2, "happy": 2, "anger": 2} and set(table.frame["subject"]) == {"KA", "KL"}
    assert table.meta["options_file"] == str(root / "fbench_imagefolder.yaml")
    # keyword options win over the file
    assert set(get_dataset("imagefolder").with_options(subject_pattern=r"\.(\d)\.png").load(root)
               .frame["subject"]) == {"0", "1", "2"}
    options = tmp_path / "jaffe-folders.yaml"
    options.write_text("root: folders\nlabels: {sadness: sad, '1 - Happy': happy}\n")
    (root / "fbench_imagefolder.yaml").unlink()
    table = get_dataset("imagefolder").load(options)
    assert table.root == str(root) and len(table) == 6 and set(table.frame["subject"]) == {""}


def test_imagefolder_option_errors_name_the_option_and_the_fix(tmp_path):
    imagefolder = get_dataset("imagefolder")
    with pytest.raises(FbenchError, match=r"option labels maps folder 'sadness' to 'sadd'.*did you mean 'sad'.*"
                                          r"use one of"):
        imagefolder.with_options(labels={"sadness": "sadd"})
    with pytest.raises(FbenchError, match=r"option subject_pattern '\(\[A-Z\]' does not compile.*group 'subject'"):
        imagefolder.with_options(subject_pattern="([A-Z]")
    with pytest.raises(FbenchError, match=r"option subject_pattern '\^\[A-Z\]\{2\}' has no group.*e\.g\."):
        imagefolder.with_options(subject_pattern="^[A-Z]{2}")
    root = make_folders(tmp_path / "folders")
    with pytest.raises(FbenchError) as error:
        imagefolder.with_options(labels={"sadness": "sad"}).load(root)
    message = str(error.value)
    assert "\n" not in message and "['1 - Happy'] are not expression names" in message
    assert "map them with the labels option" in message and "'1 - Happy': happy" in message
    mapped = imagefolder.with_options(labels={"sadness": "sad", "1 - Happy": "happy"}, subject_pattern=r"^(S\d+)_")
    with pytest.raises(FbenchError, match=r"file name does not match subject_pattern.*Fix the subject_pattern"):
        mapped.load(root)
    (root / "fbench_imagefolder.yaml").write_text("label: {sadness: sad}\n")
    with pytest.raises(FbenchError, match=r"fbench_imagefolder.yaml: unknown key 'label' \(did you mean 'labels'\?\)"):
        imagefolder.load(root)
    (root / "fbench_imagefolder.yaml").write_text("labels: {'1 - Happy': glee}\n")
    with pytest.raises(FbenchError, match=r"fbench_imagefolder.yaml: labels maps folder '1 - Happy' to 'glee'"):
        imagefolder.load(root)
    (root / "fbench_imagefolder.yaml").write_text("subject_pattern: '(?P<subject'\n")
    with pytest.raises(FbenchError, match=r"fbench_imagefolder.yaml: subject_pattern .* does not compile"):
        imagefolder.load(root)


# -- imagefolder/<name> and unknown dataset names -----------------------------------------------------------------
def test_imagefolder_family_members_are_datasets_of_their_own(tmp_path, monkeypatch):
    jaffe = get_dataset("imagefolder/jaffe")
    assert jaffe.name == "imagefolder/jaffe" and jaffe is get_dataset("imagefolder/jaffe")
    assert jaffe.with_options(verify_images=False).name == "imagefolder/jaffe"
    assert is_dataset_name("imagefolder/jaffe") and is_dataset_name("kdef") and not is_dataset_name("jafe")
    with pytest.raises(UnknownNameError, match="lower-case letters"):
        get_dataset("imagefolder/Bad Name")
    root = make_folders(tmp_path / "folders", classes=("happy", "sad"))
    table = load_dataset("imagefolder/jaffe", {"imagefolder/jaffe": str(root)})
    assert table.dataset == "imagefolder/jaffe" and get_dataset(table.dataset) is jaffe
    monkeypatch.delenv("FBENCH_DATA_IMAGEFOLDER_JAFFE", raising=False)
    with pytest.raises(FbenchError, match=r"--data imagefolder/jaffe=PATH.*FBENCH_DATA_IMAGEFOLDER_JAFFE"):
        load_dataset("imagefolder/jaffe")


def test_unknown_dataset_names_suggest_the_known_ones(tmp_path):
    with pytest.raises(UnknownNameError, match=r"--data jafe=.*unknown dataset 'jafe' \(did you mean 'jaffe'\?\)"):
        load_dataset("kdef", {"kdef": str(tmp_path), "jafe": str(tmp_path)})
    problems = semantic_problems({"dataset": "ckplsu", "data": {"imagefolder/jaffe": "x", "rafdd": "y"}})
    messages = {".".join(map(str, path)): text for path, text in problems}
    assert "did you mean 'ckplus'" in messages["dataset"]
    assert "(did you mean 'rafd' or 'rafdb'?)" in messages["data.rafdd"]
    assert "data.imagefolder/jaffe" not in messages and "imagefolder/<name>" in messages["dataset"]
    assert not semantic_problems({"dataset": "imagefolder/ckplus", "data": {"imagefolder/ckplus": "x"}})


# -- fbench data info ---------------------------------------------------------------------------------------------
def test_data_info_reads_each_new_layout(tmp_path, capsys):
    roots = {"jaffe": make_jaffe(tmp_path / "jaffe"), "ckplus": make_ckplus(tmp_path / "ck"),
             "rafd": make_rafd(tmp_path / "rafd"), "imagefolder/ckplus": make_folders(tmp_path / "ck-folders")}
    (roots["imagefolder/ckplus"] / "fbench_imagefolder.yaml").write_text(
        "labels: {sadness: sad, '1 - Happy': happy}\nsubject_pattern: '^([A-Z]{2})'\n")
    summaries = {}
    for name, root in roots.items():
        status, text, err = run(capsys, "data", "info", name, "--data", f"{name}={root}", "--json")
        assert status == 0, err
        summaries[name] = json.loads(text)
    assert summaries["jaffe"]["images"] == 14 and summaries["jaffe"]["subjects"] == 2
    assert summaries["jaffe"]["poses"] == {"S": 14} and len(summaries["jaffe"]["classes"]) == 7
    assert summaries["ckplus"]["classes"]["contempt"] == 2 * PEAK_FRAMES + 1  # S005/002 keeps its frame 2 too
    assert "have no emotion file" in summaries["ckplus"]["notes"][0]
    assert summaries["rafd"]["poses"] == {p: 48 for p in ("FL", "FR", "HL", "HR", "S")}
    assert summaries["rafd"]["conditions"] == {"gaze_frontal": 80, "gaze_left": 80, "gaze_right": 80}
    assert summaries["imagefolder/ckplus"]["classes"] == {"happy": 2, "sad": 2, "anger": 2}
    assert summaries["imagefolder/ckplus"]["subjects"] == 2
    status, text, _ = run(capsys, "data", "info", "ckplus", "--data", f"ckplus={roots['ckplus']}")
    assert status == 0 and "no emotion file" in text
    status, _, err = run(capsys, "data", "info", "rafd", "--data", f"rafd={roots['rafd']}", "--data",
                         f"jafe={roots['jaffe']}")
    assert status == 2 and "did you mean 'jaffe'" in err
