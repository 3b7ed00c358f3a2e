"""A preview grid: a few faces of a dataset, one per (label, pose) group, optionally under a perturbation, written
atomically (a place that cannot be written is an FbenchError naming it)."""

from __future__ import annotations

import io
from collections.abc import Hashable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image, ImageDraw

from fbench.data.cache import decode_rows
from fbench.data.files import write_atomic
from fbench.data.table import KDEF_POSES, SampleTable
from fbench.perturb.apply import apply_condition
from fbench.suite.conditions import CLEAN

TILE_CAPTION = 16


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


def preview_grid(table: SampleTable, out: Path, *, condition: str | None = None, count: int = 35,
                 columns: int | None = None, tile: int = 128, seed: int = 0) -> Path:
    """Write a PNG grid of ``count`` faces cropped as the cache crops them, under ``condition`` if given."""
    rows = pick_rows(table, count, seed)
    images, landmarks = decode_rows(table, rows, (3, tile, tile))
    if condition:
        frame = table.frame.iloc[rows]
        perturbed = apply_condition(condition, images.float() / 255.0, landmarks,
                                    frame["sample_id"].tolist(), seed, poses=frame["pose"].tolist())
        images = (perturbed.clamp(0, 1) * 255.0).round().to(torch.uint8)
    columns = columns or (len({p for p in table.frame["pose"]}) if table.frame["pose"].any() else 6)
    columns = max(1, min(columns, len(rows)))
    lines = -(-len(rows) // columns)
    header = 24
    sheet = Image.new("RGB", (columns * tile, header + lines * (tile + TILE_CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    title = f"{table.dataset}{' (synthetic)' if table.synthetic else ''}: {condition or CLEAN}"
    draw.text((6, 6), title, fill="black")
    names = table.label_names
    for i, row in enumerate(rows):
        x, y = (i % columns) * tile, header + (i // columns) * (tile + TILE_CAPTION)
        sheet.paste(Image.fromarray(images[i].permute(1, 2, 0).numpy()), (x, y))
        record = table.frame.iloc[row]
        caption = names[int(record["label"])] + (f" {record['pose']}" if record["pose"] else "")
        draw.text((x + 3, y + tile + 2), caption, fill="black")
    image_format = Image.registered_extensions().get(Path(out).suffix.lower(), "PNG")  # no known suffix: PNG
    encoded = io.BytesIO()
    sheet.save(encoded, format=image_format)
    return write_atomic(out, encoded.getvalue())  # an unwritable place: an FbenchError naming it
