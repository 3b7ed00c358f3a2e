"""Preview grids and dataset summaries."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fbench.data.preview import pick_rows, preview_grid
from fbench.data.summary import summarize


def _faces(root, count=14):
    root.mkdir()
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 60 + 10 * i, np.uint8)).save(root / f"{i % 7}_{i:02d}.png")


def test_pick_rows_takes_one_per_group_first(tmp_path, png_adapter):
    _faces(tmp_path / "set")
    table = png_adapter.load(tmp_path / "set")
    rows = pick_rows(table, 7)
    assert sorted(table.frame["label"].iloc[rows].tolist()) == list(range(7))
    assert pick_rows(table, 7) == rows and pick_rows(table, 7, seed=1) != rows
    assert len(pick_rows(table, 100)) == 14


def test_preview_grid_clean_and_masked(tmp_path, png_adapter):
    _faces(tmp_path / "set")
    table = png_adapter.load(tmp_path / "set")
    clean = preview_grid(table, tmp_path / "clean.png", count=7, columns=7, tile=32)
    masked = preview_grid(table, tmp_path / "masked.png", condition="mask:kind=surgical", count=7, columns=7,
                          tile=32)
    clean_pixels = np.asarray(Image.open(clean))
    masked_pixels = np.asarray(Image.open(masked))
    assert clean_pixels.shape == masked_pixels.shape == (24 + 32 + 16, 7 * 32, 3)
    tiles = slice(24 + 16, 24 + 32)  # the lower half of each tile: mouth and chin
    assert np.abs(clean_pixels[tiles].astype(int) - masked_pixels[tiles].astype(int)).mean() > 10


def test_summary(tmp_path, png_adapter):
    _faces(tmp_path / "set")
    summary = summarize(png_adapter.load(tmp_path / "set"))
    assert summary["images"] == 14 and summary["classes"]["neutral"] == 2 and not summary["synthetic"]
    assert summary["subjects"] == 0 and summary["poses"] == {}


def test_preview_to_an_unwritable_place_is_one_line(tmp_path, png_adapter, capsys):
    """/proc: a place root cannot write either (tests run as root, whom chmod does not stop)."""
    from fbench.cli import main

    _faces(tmp_path / "set")
    (tmp_path / "previews").write_text("a file where the folder should be")
    for out in ("/proc/fbench-preview.png", str(tmp_path / "previews" / "grid.png")):
        status = main(["data", "preview", "test_pngs", "--data", f"test_pngs={tmp_path / 'set'}", "--out", out,
                       "--size", "32", "--count", "7"])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith(f"fbench: error: cannot write {out}") and err.count("\n") == 1
