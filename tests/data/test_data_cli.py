"""`fbench data synth | info | preview` as a user runs them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from fbench.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_synth_info_and_previews(tmp_path, capsys):
    out = tmp_path / "synth-kdef"
    status, text, _ = run(capsys, "data", "synth", "--out", str(out), "--identities", "2", "--sessions", "1",
                          "--size", "96", "80", "--workers", "1")
    assert status == 0 and "70 synthetic images" in text
    assert len(list(out.glob("*/*.JPG"))) == 70

    status, text, _ = run(capsys, "data", "info", "kdef", "--data", f"kdef={out}", "--json")
    summary = json.loads(text)
    assert status == 0 and summary["synthetic"] and summary["images"] == 70
    assert len(summary["classes"]) == 7 and summary["poses"] == {p: 14 for p in ("FL", "FR", "HL", "HR", "S")}
    assert summary["subjects"] == 2 and summary["landmarks"]

    status, text, _ = run(capsys, "data", "info", "kdef", "--data", f"kdef={out}")
    assert status == 0 and "SYNTHETIC" in text

    grids = {}
    for name, condition in (("clean", None), ("mask", "mask:kind=surgical"), ("hand", "occlusion:kind=hand")):
        path = tmp_path / f"{name}.png"
        argv = ["data", "preview", "kdef", "--data", f"kdef={out}", "--out", str(path), "--size", "48"]
        status, _, _ = run(capsys, *argv, *(["--perturb", condition] if condition else []))
        assert status == 0 and path.is_file()
        grids[name] = np.asarray(Image.open(path)).astype(int)
    assert grids["clean"].shape == grids["mask"].shape
    assert np.abs(grids["clean"] - grids["mask"]).mean() > 2
    assert np.abs(grids["clean"] - grids["hand"]).mean() > 1


def test_synth_refuses_a_folder_that_is_not_its_own(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    status, _, err = run(capsys, "data", "synth", "--out", str(tmp_path), "--identities", "1")
    assert status == 2 and "not empty" in err


def test_missing_dataset_location_says_what_to_set(capsys, monkeypatch):
    monkeypatch.delenv("FBENCH_DATA_KDEF", raising=False)
    status, _, err = run(capsys, "data", "info", "kdef")
    assert status == 2 and "--data kdef=PATH" in err and "FBENCH_DATA_KDEF" in err and "fbench data synth" in err


def test_unknown_perturbation_in_preview(tmp_path, capsys, png_adapter):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "0_a.png")
    status, _, err = run(capsys, "data", "preview", "test_pngs", "--data", f"test_pngs={tmp_path}",
                         "--perturb", "occlusoin:severity=0.3", "--out", str(tmp_path / "g.png"))
    assert status == 2 and "Did you mean 'occlusion'" in err


def test_info_verifies_images(tmp_path, capsys):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for label in ("happy", "sad"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(noise // (i + 1)).save(tmp_path / label / f"{i}.png")
    whole = (tmp_path / "happy" / "0.png").read_bytes()
    (tmp_path / "happy" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "sad" / "empty.jpg").write_bytes(b"")
    (tmp_path / "sad" / "notes.jpg").write_text("not an image")
    status, _, err = run(capsys, "data", "info", "imagefolder", "--data", f"imagefolder={tmp_path}")
    assert status == 2
    for where in ("truncated image (happy/cut.png)", "empty file (sad/empty.jpg)", "not an image (sad/notes.jpg)"):
        assert where in err
    argv = ["data", "info", "imagefolder", "--data", f"imagefolder={tmp_path}", "--on-error", "skip"]
    status, text, _ = run(capsys, *argv, "--json")
    summary = json.loads(text)
    assert status == 0 and summary["images"] == 4
    assert summary["bad_files"] == {"happy/cut.png": "truncated image", "sad/empty.jpg": "empty file",
                                    "sad/notes.jpg": "not an image"}
    status, text, _ = run(capsys, *argv)
    assert status == 0 and "bad files (3, left out)" in text and "sad/notes.jpg: not an image" in text
