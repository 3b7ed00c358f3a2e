"""The synthetic KDEF-like set: layout, determinism, geometry of landmarks and boxes, and that it is learnable but
not trivial (a small CNN clearly beats a linear model and chance, frontal views beat full profiles)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbench.data.synth.build import (
    EXPRESSION_LABELS,
    KDEF_EXPRESSIONS,
    MANIFEST_COLUMNS,
    SynthConfig,
    build_synthetic_kdef,
    make_identity,
    render_arrays,
    render_face,
    render_sample,
    sample_nuisance,
)
from fbench.data.table import BOX_COLUMNS, CANONICAL_LABELS, KDEF_POSES, LANDMARK_COLUMNS
from fbench.errors import FbenchError

KDEF_FILE = re.compile(r"^[AB][FM]\d\d(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)\.JPG$")
TINY = SynthConfig(identities=2, sessions=1, image_size=(80, 64), seed=3)


@pytest.fixture(scope="module")
def tiny_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """The same tiny config built twice: in this process and with two worker processes."""
    root = tmp_path_factory.mktemp("synth")
    one = build_synthetic_kdef(root / "one", TINY, workers=1)
    build_synthetic_kdef(root / "two", TINY, workers=2)
    return root / "one", root / "two", one


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_are_byte_identical_whatever_the_workers(tiny_builds) -> None:
    one, two, _ = tiny_builds
    a, b = _files(one), _files(two)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_layout_names_manifest_and_marker_follow_kdef(tiny_builds) -> None:
    root, _, frame = tiny_builds
    images = sorted(p for p in root.rglob("*") if p.suffix == ".JPG")
    assert len(images) == 2 * 7 * 5
    for path in images:
        assert KDEF_FILE.match(path.name), path.name
        assert path.parent.parent == root and path.name.startswith(path.parent.name)
    assert {p.parent.name for p in images} == {"AF01", "AM01"}
    manifest = pd.read_csv(root / "fbench_manifest.csv")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert set(LANDMARK_COLUMNS) <= set(manifest.columns) and set(BOX_COLUMNS) <= set(manifest.columns)
    assert sorted(manifest["path"]) == sorted(str(p.relative_to(root)) for p in images)
    assert len(frame) == len(manifest)
    assert set(manifest["label"]) <= set(CANONICAL_LABELS)
    assert (manifest["label"] == manifest["expression"].map(EXPRESSION_LABELS)).all()
    assert (manifest["subject"] == manifest["sex"] + manifest["path"].str[2:4]).all()
    assert manifest.loc[manifest["expression"] == "NE", "intensity"].eq(0).all()
    live = manifest.loc[manifest["expression"] != "NE", "intensity"]
    assert live.between(0.35, 1.0).all()
    marker = json.loads((root / "fbench_synthetic.json").read_text())
    assert marker["synthetic"] is True and marker["generator"] == "fbench.data.synth.build"
    assert marker["count"] == len(images) and marker["image_size"] == [80, 64] and marker["sessions"] == 1


def test_landmarks_and_boxes_are_inside_and_ordered(tiny_builds) -> None:
    _, _, frame = tiny_builds
    h, w = TINY.image_size
    xs = frame[[c for c in LANDMARK_COLUMNS if c.endswith("_x")] + ["box_x0", "box_x1"]].to_numpy()
    ys = frame[[c for c in LANDMARK_COLUMNS if c.endswith("_y")] + ["box_y0", "box_y1"]].to_numpy()
    assert np.isfinite(xs).all() and np.isfinite(ys).all()
    assert ((xs >= 0) & (xs <= w)).all() and ((ys >= 0) & (ys <= h)).all()
    assert ((frame["box_x1"] > frame["box_x0"]) & (frame["box_y1"] > frame["box_y0"])).all()
    front = frame[frame["pose"] == "S"]
    assert (front["lm_eye_l_x"] < front["lm_eye_r_x"]).all()
    assert (front["lm_mouth_l_x"] < front["lm_mouth_r_x"]).all()
    eyes = np.maximum(front["lm_eye_l_y"], front["lm_eye_r_y"])
    mouth = np.minimum(front["lm_mouth_l_y"], front["lm_mouth_r_y"])
    assert (eyes < front["lm_nose_y"]).all() and (front["lm_nose_y"] < mouth).all()
    assert (np.maximum(front["lm_mouth_l_y"], front["lm_mouth_r_y"]) < front["lm_chin_y"]).all()
    # Full left profile: the subject turned to their right, nose toward image left; full right the other way.
    eye_x = (frame["lm_eye_l_x"] + frame["lm_eye_r_x"]) / 2
    assert (frame.loc[frame["pose"] == "FL", "lm_nose_x"] < eye_x[frame["pose"] == "FL"]).all()
    assert (frame.loc[frame["pose"] == "FR", "lm_nose_x"] > eye_x[frame["pose"] == "FR"]).all()


def test_refuses_a_foreign_folder_and_rebuilds_its_own(tmp_path: Path) -> None:
    config = SynthConfig(identities=1, sessions=1, image_size=(48, 40), poses=("S",), expressions=("NE", "HA"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FbenchError, match="not empty"):
        build_synthetic_kdef(foreign, config, workers=1)
    build_synthetic_kdef(foreign, config, workers=1, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    build_synthetic_kdef(ours, SynthConfig(identities=2, sessions=1, image_size=(48, 40), poses=("S",),
                                           expressions=("NE",)), workers=1)
    frame = build_synthetic_kdef(ours, config, workers=1)  # an earlier build may be replaced
    assert sorted(p.name for p in ours.iterdir()) == ["AF01", "fbench_manifest.csv", "fbench_synthetic.json"]
    assert len(frame) == 2


def test_render_face_api_and_bad_input() -> None:
    identity = make_identity(0, "M", 3, session=1)
    rng = np.random.default_rng(0)
    nuisance = sample_nuisance(rng, "SU", "HR")
    image, landmarks, box = render_face(identity, "SU", "HR", nuisance, size=(96, 80))
    assert image.shape == (96, 80, 3) and image.dtype == np.uint8
    assert landmarks.shape == (6, 2) and box.shape == (4,)
    with pytest.raises(FbenchError, match="pose"):
        sample_nuisance(rng, "SU", "UP")
    with pytest.raises(FbenchError, match="expression"):
        sample_nuisance(rng, "XX", "S")
    with pytest.raises(FbenchError):
        SynthConfig(identities=0)
    # Expressions change the face, not the frame: the neutral and happy images differ inside the face box only.
    (neutral, _, box), _ = render_sample(0, "F", 2, 0, "NE", "S", (96, 80))
    assert not np.array_equal(neutral, render_sample(0, "F", 2, 0, "HA", "S", (96, 80))[0].image)
    assert tuple(sorted(EXPRESSION_LABELS)) == KDEF_EXPRESSIONS


# ----------------------------------------------------------------------------------------------- learnability
def _face_crops(images: np.ndarray, frame: pd.DataFrame, out: int = 64) -> np.ndarray:
    """Grey face crops: a square around the manifest's face box, resized to ``out``, standardised per image."""
    import cv2

    crops = []
    for image, (x0, y0, x1, y1) in zip(images, frame[list(BOX_COLUMNS)].to_numpy()):
        side = 1.1 * max(x1 - x0, y1 - y0)
        k = out / side
        warp = np.array([[k, 0, out / 2 - k * (x0 + x1) / 2], [0, k, out / 2 - k * (y0 + y1) / 2]], np.float32)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        crops.append(cv2.warpAffine(grey, warp, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE))
    x = np.stack(crops).astype(np.float32)
    return (x - x.mean((1, 2), keepdims=True)) / (x.std((1, 2), keepdims=True) + 1.0)


def _train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 25):
    """A four-block CNN trained briefly (AdamW, one-cycle, shifts and flips); returns a predict function."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    model = nn.Sequential(block(1, 16), block(16, 32), block(32, 48), block(48, 48), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Dropout(0.2), nn.Linear(48, 7))
    xt = torch.from_numpy(x)[:, None]
    yt = torch.from_numpy(y)
    batches = (len(xt) + 31) // 32
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * batches)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 32):
            idx = perm[i: i + 32]
            shift = torch.randint(-3, 4, (2,), generator=gen)
            xb = torch.roll(xt[idx], (int(shift[0]), int(shift[1])), (2, 3))
            if torch.rand(1, generator=gen) < 0.5:
                xb = xb.flip(3)
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return lambda v: model(torch.from_numpy(v)[:, None]).argmax(1).numpy()


def learnability(seed: int = 0, identities: int = 32, epochs: int = 25) -> dict:
    """Render ``identities`` people x 7 expressions x 5 poses in memory, crop the faces to 48 x 48 grey, train on
    three quarters of the people and test on the rest: a small CNN against logistic regression on the pixels.
    Returns the accuracies."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    config = SynthConfig(identities=identities, sessions=1, image_size=(160, 128), seed=seed)
    images, frame = render_arrays(config, workers=2)
    x = _face_crops(images, frame, out=48)
    y = frame["expression"].map({e: i for i, e in enumerate(KDEF_EXPRESSIONS)}).to_numpy()
    test = frame["subject"].str[1:].astype(int).to_numpy() % 4 == 0  # a quarter of the people, half of each sex
    train = ~test
    flat = x.reshape(len(x), -1)
    scaler = StandardScaler().fit(flat[train])
    linear = LogisticRegression(C=0.01, max_iter=500).fit(scaler.transform(flat[train]), y[train])
    linear_pred = linear.predict(scaler.transform(flat[test]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is nearly as fast and immune to a busy machine
    try:
        predict = _train_cnn(x[train], y[train], epochs)
        with torch.no_grad():
            cnn_pred = predict(x[test])
    finally:
        torch.set_num_threads(threads)
    truth, poses = y[test], frame["pose"].to_numpy()[test]
    cnn = float((cnn_pred == truth).mean())
    lin = float((linear_pred == truth).mean())
    per_pose = {p: round(float((cnn_pred == truth)[poses == p].mean()), 3) for p in KDEF_POSES}
    return {"cnn": cnn, "linear": lin, "per_pose": per_pose}


def test_expressions_are_learnable_but_not_trivial() -> None:
    result = learnability(seed=0)
    cnn, lin, per_pose = result["cnn"], result["linear"], result["per_pose"]
    report = f"CNN {cnn:.3f}, linear {lin:.3f}, CNN per pose {per_pose}"
    print(report)
    assert cnn > 2 / 7, report
    assert cnn >= lin + 0.10, report
    assert cnn < 0.95, report
    assert per_pose["S"] >= (per_pose["FL"] + per_pose["FR"]) / 2, report
