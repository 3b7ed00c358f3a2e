"""A preview grid: a few faces of a dataset, one per (label, pose) group, optionally under a perturbation and with
the six landmarks the perturbation used drawn on each face (their source in the caption), written atomically (a
place that cannot be written is an FbenchError naming it)."""

from __future__ import annotations

import io
from collections.abc import Hashable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image, ImageDraw

from fbench.data.cache import decode_placed
from fbench.data.files import write_atomic
from fbench.data.table import KDEF_POSES, SampleTable
from fbench.perturb.apply import apply_condition
from fbench.perturb.landmarks import fill_missing
from fbench.suite.conditions import CLEAN

TILE_CAPTION = 16
# Landmark marks, in LANDMARKS order: eyes green, nose yellow, mouth corners magenta, chin cyan.
MARK_COLOURS = ((40, 220, 60), (40, 220, 60), (250, 220, 0), (240, 40, 200), (240, 40, 200), (0, 210, 240))


def pick_rows(table: SampleTable, count: int, seed: int = 0) -> list[int]:
    """Up to ``count`` rows, one per (label, pose) group in turn, each group shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    order = {pose: i for i, pose in enumerate(KDEF_POSES)}  # left profile to right profile

    def label_then_pose(item: tuple[Hashable, Any]) -> tuple[Any, int, str]:
        label, pose = cast(tuple[Any, Any], item[0])  # grouped by two columns: the key is a (label, pose) pair
        return label, order.get(pose, len(order)), str(pose)

    grouped = sorted(table.frame.groupby(["label", "pose"]).groups.items(), key=label_then_pose)
    groups = [rng.permutation(rows.to_numpy()).tolist() for _, rows in grouped]
    picked: list[int] = []
    while len(picked) < min(count, len(table)):
        for group in groups:
            if group and len(picked) < count:
                picked.append(int(group.pop(0)))
    return picked


def draw_landmarks(draw: ImageDraw.ImageDraw, points: np.ndarray, x: int, y: int, tile: int) -> None:
    """Mark six normalised landmarks (6 x 2, or 6 x 4 with their uncertainty) on the tile at (x, y): a dark-rimmed
    dot each (outside the tile: left out), inside a thin box of the point's colour spanning its uncertainty."""
    radius = max(2, tile // 48)
    spread = points[:, 2:] if points.shape[1] == 4 else np.zeros_like(points)
    for (u, v), (su, sv), colour in zip(points[:, :2], spread, MARK_COLOURS):
        if not (np.isfinite(u) and np.isfinite(v) and 0.0 <= u <= 1.0 and 0.0 <= v <= 1.0):
            continue
        cx, cy = x + u * tile, y + v * tile
        if su > 0 or sv > 0:
            draw.rectangle((max(x, cx - su * tile), max(y, cy - sv * tile), min(x + tile - 1, cx + su * tile),
                            min(y + tile - 1, cy + sv * tile)), outline=colour)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour, outline=(0, 0, 0))


def preview_grid(table: SampleTable, out: Path, *, condition: str | None = None, count: int = 35,
                 columns: int | None = None, tile: int = 128, seed: int = 0, landmarks: bool = False) -> Path:
    """Write a PNG grid of ``count`` faces cropped as the cache crops them, under ``condition`` if given; with
    ``landmarks``, the six landmarks the perturbation places by (filled per pose where unknown) are drawn on each
    face and their source (model, recorded, calibrated, canonical) is named in its caption."""
    rows = pick_rows(table, count, seed)
    images, points, sources = decode_placed(table, rows, (3, tile, tile))
    frame = table.frame.iloc[rows]
    if condition:
        perturbed = apply_condition(condition, images.float() / 255.0, points,
                                    frame["sample_id"].tolist(), seed, poses=frame["pose"].tolist())
        images = (perturbed.clamp(0, 1) * 255.0).round().to(torch.uint8)
    used = fill_missing(points, frame["pose"].astype(str).tolist()).numpy()
    columns = columns or (len({p for p in table.frame["pose"]}) if table.frame["pose"].any() else 6)
    columns = max(1, min(columns, len(rows)))
    lines = -(-len(rows) // columns)
    header = 24
    sheet = Image.new("RGB", (columns * tile, header + lines * (tile + TILE_CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    title = f"{table.dataset}{' (synthetic)' if table.synthetic else ''}: {condition or CLEAN}"
    if landmarks:
        title += "; landmarks: eyes green, nose yellow, mouth magenta, chin cyan"
    draw.text((6, 6), title, fill="black")
    names = table.label_names
    for i, row in enumerate(rows):
        x, y = (i % columns) * tile, header + (i // columns) * (tile + TILE_CAPTION)
        sheet.paste(Image.fromarray(images[i].permute(1, 2, 0).numpy()), (x, y))
        record = table.frame.iloc[row]
        caption = names[int(record["label"])] + (f" {record['pose']}" if record["pose"] else "")
        if landmarks:
            draw_landmarks(draw, used[i], x, y, tile)
            caption += f" {sources[i]}"
        draw.text((x + 3, y + tile + 2), caption, fill="black")
    image_format = Image.registered_extensions().get(Path(out).suffix.lower(), "PNG")  # no known suffix: PNG
    encoded = io.BytesIO()
    sheet.save(encoded, format=image_format)
    return write_atomic(out, encoded.getvalue())  # an unwritable place: an FbenchError naming it
