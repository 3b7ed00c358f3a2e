"""A cell's data, built in one place: its training, validation and test images, cut to its budget.

The runner (:mod:`fbench.run.cell`), tune's objective (training and validation only: it never asks for the test
part) and the distributed predictor all read a cell's images through :func:`cell_inputs`, so they see the same
images, cut the same way. Every cut is a stratified draw fixed by the split (see :mod:`fbench.run.sizing`), and
where the images live (on the device, or on the host for the engine to stream) is decided once per cell.

A leaky cell (a paper's own protocol, ``leaky: true``) selects on the test fold, as the paper's released code
does: its validation part IS its test part (the same images, cut the same way), and its training part keeps every
non-test image of the split (the split's validation part, if it has one, goes back into training).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fbench.data.cache import CachedImages
from fbench.data.splits import Split
from fbench.data.table import SampleTable
from fbench.data.transforms import BatchAugment
from fbench.engine import EvalData, TrainData
from fbench.engine.residency import choose_residency
from fbench.errors import FbenchError
from fbench.perturb.training import perturb_for_training
from fbench.registry import get_architecture
from fbench.run.cells import Cell
from fbench.run.sizing import compute_capped_images, forward_macs, stratified_subset
from fbench.suite.schema import LEAKY_LABEL

# Seeds of the validation and test draws, offset from the split's seed so the two parts are cut independently.
_VAL_DRAW, _TEST_DRAW = 1, 2


def labels_of(table: SampleTable, ids: Sequence[str]) -> np.ndarray:
    return table.frame.set_index("sample_id").loc[list(ids), "label"].to_numpy()


def train_ids(cell: Cell, split: Split, table: SampleTable) -> list[str]:
    """The split's training ids, cut to the budget (fraction, image cap, compute cap) by a stratified draw
    that depends only on the split. A leaky cell trains on every non-test image: the split's validation part too."""
    ids = list(split.train) + (list(split.val) if cell.leaky else [])
    keep = cell.caps.train_images(len(ids))
    if cell.caps.max_train_tmacs is not None:
        spec = get_architecture(cell.architecture).resolve_spec(cell.options).with_input(
            image_size=cell.input_size[1:])
        macs = forward_macs(cell.architecture, cell.options, cell.input_size, table.num_classes)
        copies = BatchAugment.from_recipe(cell.recipe, spec).offline_copies
        keep = min(keep, compute_capped_images(cell.caps.max_train_tmacs, macs, copies, cell.recipe.epochs,
                                               table.num_classes))
    return stratified_subset(ids, labels_of(table, ids), keep, cell.split_seed)


def eval_ids(cell: Cell, ids: Sequence[str], table: SampleTable, part: str) -> list[str]:
    """A validation (``part="val"``) or test part, cut to the budget's ``max_val_images`` / ``max_eval_images``
    (the same draw for every architecture)."""
    ids = list(ids)
    cap = cell.caps.eval_cap(part)
    if cap is None or not ids:
        return ids
    return stratified_subset(ids, labels_of(table, ids), cap, cell.split_seed + (_VAL_DRAW if part == "val"
                                                                                 else _TEST_DRAW))


@dataclass(frozen=True)
class TestData:
    """The test part: images (on the device when the cell's images fit there), labels and what the conditions
    and the predictions frame need per sample."""

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]
    poses: list[str]
    subjects: list[str]
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass(frozen=True)
class CellInputs:
    train: TrainData
    val: EvalData | None
    test: TestData | None

    def sizes(self) -> dict[str, int]:
        """Image counts of the three parts, for the cell's result record and the report."""
        return {"train": len(self.train), "val": len(self.val) if self.val is not None else 0,
                "test": len(self.test) if self.test is not None else 0}


def cell_inputs(cell: Cell, split: Split, table: SampleTable, cached: CachedImages, device: torch.device,
                with_test: bool = True) -> CellInputs:
    """The cell's training, validation and (with ``with_test``) test data. Training and validation images carry
    the cell's training perturbations. A leaky cell's validation part is its test part (see the module's
    docstring); it has no data without its test part, so ``with_test=False`` (tuning) is refused for it."""
    if cell.leaky and not with_test:
        raise FbenchError(f"cell {cell.name} uses a leaky protocol ({LEAKY_LABEL}), so it has no validation part "
                          "apart from its test part; tune on a suite whose protocol carves validation from "
                          "training (leaky: false), then apply its best.yaml with tuned_from")
    train_rows = cached.positions(train_ids(cell, split, table))
    if cell.leaky:
        test_rows = cached.positions(eval_ids(cell, split.test, table, "test"))
        val_rows = test_rows
    else:
        val_rows = cached.positions(eval_ids(cell, split.val, table, "val"))
        test_rows = cached.positions(eval_ids(cell, split.test, table, "test")) if with_test else val_rows[:0]
    selected = train_rows if cell.leaky else torch.cat([train_rows, val_rows])
    leaked = {cached.sample_ids[i] for i in selected.tolist()} & set(split.test)
    if leaked:  # splits are checked for disjointness when made; this guards the cuts as well
        raise FbenchError(f"{len(leaked)} test samples reached the training or validation data (e.g. "
                          f"{sorted(leaked)[:3]}); the split is broken")
    rows = torch.cat([train_rows, val_rows, test_rows])
    images = cached.images[rows]
    if choose_residency(images, device, cell.engine.residency) == "device":
        images = images.to(device)
    n_train, n_val = len(train_rows), len(val_rows)
    frame = table.frame.set_index("sample_id")

    def ids(positions: torch.Tensor) -> list[str]:
        return [cached.sample_ids[i] for i in positions.tolist()]

    def training_images(part: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if not cell.train_conditions:
            return part
        part_ids = ids(positions)
        poses = frame.loc[part_ids, "pose"].astype(str).tolist()
        return perturb_for_training(part, cell.train_conditions, sample_ids=part_ids,
                                    landmarks=cached.landmarks[positions], poses=poses, seed=cell.seed)

    train = TrainData(training_images(images[:n_train], train_rows), cached.labels[train_rows].to(device),
                      ids(train_rows))
    val = None
    if n_val:  # a leaky cell selects on its test images as they are; others validate like they train
        val_images = images[n_train:n_train + n_val]
        val = EvalData(val_images if cell.leaky else training_images(val_images, val_rows),
                       cached.labels[val_rows].to(device), ids(val_rows))
    test = None
    if with_test:
        test_ids = ids(test_rows)
        test = TestData(images[n_train + n_val:], cached.labels[test_rows], test_ids,
                        frame.loc[test_ids, "pose"].astype(str).tolist(),
                        frame.loc[test_ids, "subject"].astype(str).tolist(), cached.landmarks[test_rows])
    return CellInputs(train, val, test)
