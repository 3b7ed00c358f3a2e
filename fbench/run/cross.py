"""Cross-dataset suites (``cross: {train: [...], test: [...]}``): the datasets of a trained-on x tested-on matrix,
their splits and cells, and the data each cell is tested on.

Each training dataset is trained once per architecture x seed (x fold of its protocol): on its protocol's training
part when it is also tested on (the diagonal: its protocol's test part), else on all of it (a stratified
validation share carved out). Its cells are ordinary cells (:mod:`fbench.run.cells`) whose ``dataset`` is the
training dataset's matrix name and whose ``extra`` names every other target with its content fingerprint, so
keys, the store, resume, locks and rescoring work as for any suite. Each target is tested whole, or on its
official test split where it has one, under every condition of the suite, on the classes it shares with the
training part (:mod:`fbench.score.cross`).

Without a location for any real dataset of the matrix (and with ``synthetic_fallback``), the matrix is two
synthetic sets: ``synthetic-source`` (trained and tested on) and ``synthetic-target`` (other identities, drawn with
another seed and lit by a hard side light), each rendered on first use. Either may also be named beside real
datasets: trained on synthetic faces, tested on real ones, or the reverse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fbench.data.cache import CachedImages
from fbench.data.locate import given_location, no_location_error
from fbench.data.splits import Split
from fbench.data.summary import bad_files, bad_files_text
from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
from fbench.data.table import SampleTable
from fbench.engine.devices import resolve_device
from fbench.engine.residency import choose_residency
from fbench.errors import FbenchError
from fbench.run.cells import Cell, expand_cells
from fbench.run.context import (
    FALLBACK_EXPRESSION_STRENGTH,
    DatasetChoice,
    Planning,
    Prepared,
    Progress,
    RunOptions,
    check_classes,
    complete_synthetic_set,
    load_table,
    location_sources,
    prepare,
    setting_notes,
    split_table,
    suite_plan,
)
from fbench.run.inputs import TestData, eval_ids, labels_of, train_ids
from fbench.run.plan import Plan
from fbench.score.alignment import Alignment, align_labels
from fbench.suite.schema import MAIN_PROTOCOL, SYNTHETIC_SETS, SYNTHETIC_SOURCE, SYNTHETIC_TARGET, Suite

TARGETS = "cross_targets"  # in a cross cell's extra: {target name: its content fingerprint}
SOURCE_ONLY = "all"  # the protocol kind of a dataset trained on and not tested on: all of it is training
# The two synthetic sets, beside the fallback set (data/synth-kdef): small and at 160 x 128 pixels so that a smoke
# run renders both in about 15 s on two idle cores; 20 identities x 7 expressions x 5 poses each.
SYNTHETIC_IDENTITIES = 20
SYNTHETIC_SIZE = (160, 128)
SYNTHETIC_CONFIGS = {
    SYNTHETIC_SOURCE: SynthConfig(identities=SYNTHETIC_IDENTITIES, sessions=1, image_size=SYNTHETIC_SIZE, seed=0,
                                  expression_strength=FALLBACK_EXPRESSION_STRENGTH, lighting="studio"),
    SYNTHETIC_TARGET: SynthConfig(identities=SYNTHETIC_IDENTITIES, sessions=1, image_size=SYNTHETIC_SIZE, seed=1,
                                  expression_strength=FALLBACK_EXPRESSION_STRENGTH, lighting="side"),
}
SYNTHETIC_WORDS = {SYNTHETIC_SOURCE: "seed 0, studio light", SYNTHETIC_TARGET: "seed 1, hard side light"}


@dataclass
class CrossLayout:
    """The matrix a cross-dataset suite runs: its training and test datasets (by matrix name), where each lives,
    and the datasets of the suite that were left out for want of a location."""

    train: list[str]
    test: list[str]
    choices: dict[str, DatasetChoice]
    fallback: bool = False  # no real dataset had a location: the two synthetic sets stand in
    left_out: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # images of each dataset (after prepare_cross reads it)

    def description(self) -> str:
        """``kdef -> kdef, jaffe``: for titles and provenance."""
        return f"trained on {', '.join(self.train)}; tested on {', '.join(self.test)}"


def synthetic_folder(base: Path, name: str) -> Path:
    """Where the synthetic set ``name`` lives: beside the fallback set (``data/synth-kdef`` -> ``data/<name>``)."""
    return base.parent / name


def ensure_synthetic_set(name: str, base: Path, note: Callable[[str], None]) -> Path:
    """The folder of the synthetic set ``name``, rendered on first use."""
    folder = synthetic_folder(base, name)
    if not complete_synthetic_set(folder):
        config = SYNTHETIC_CONFIGS[name]
        images = config.identities * config.sessions * len(config.poses) * len(config.expressions)
        note(f"building the synthetic set {name} in {folder} (first use: {images:,} images, {SYNTHETIC_WORDS[name]})")
        build_synthetic_kdef(folder, config, overwrite=False)
    return folder


def choose_cross_datasets(suite: Suite, cli_paths: dict[str, str] | None, note: Callable[[str], None],
                          base: Path) -> CrossLayout:
    """Where each dataset of ``suite.cross`` lives. Real datasets without a location are left out (said once);
    when none has one, the two synthetic sets stand in (unless ``synthetic_fallback`` is off: an error)."""
    assert suite.cross is not None
    cli, block = location_sources(suite, cli_paths)
    names = list(dict.fromkeys([*suite.cross.train, *suite.cross.test]))
    real = [name for name in names if name not in SYNTHETIC_SETS]
    located = {name: given_location(name, cli, block, suite.source) for name in real}
    found = {name: location for name, location in located.items() if location is not None}
    if real and not found:
        if not suite.synthetic_fallback:
            raise no_location_error(real[0])
        train, test = [SYNTHETIC_SOURCE], [SYNTHETIC_SOURCE, SYNTHETIC_TARGET]
        note(f"SYNTHETIC DATA: no location was given for {', '.join(real)} (--data NAME=PATH, the suite's data: "
             f"block or $FBENCH_DATA_<NAME>); the matrix runs on two synthetic sets instead: trained on "
             f"{SYNTHETIC_SOURCE}, tested on {SYNTHETIC_SOURCE} and {SYNTHETIC_TARGET} (other identities, a hard "
             "side light). Procedurally rendered faces, not real datasets; the report says so.")
        choices = {name: DatasetChoice("kdef", ensure_synthetic_set(name, base, note), synthetic=True, fallback=True,
                                       origin=f"the synthetic stand-in {name} (no location given)")
                   for name in dict.fromkeys([*train, *test])}
        return CrossLayout(train, test, choices, fallback=True,
                           left_out={name: "no location given" for name in real})
    left_out = {name: "no location given" for name in real if name not in found}
    if left_out:
        note(f"cross-dataset matrix without {', '.join(left_out)}: no location was given (--data NAME=PATH, the "
             "suite's data: block or $FBENCH_DATA_<NAME>)")
    train = [name for name in suite.cross.train if name not in left_out]
    test = [name for name in suite.cross.test if name not in left_out]
    for side, kept in (("train", train), ("test", test)):
        if not kept:
            missing = [name for name in getattr(suite.cross, side) if name in left_out]
            raise FbenchError(f"cross.{side}: no dataset left to {'train' if side == 'train' else 'test'} on: "
                              f"{', '.join(missing)} has no location. Pass --data {missing[0]}=PATH (or give it "
                              "in the suite's data: block)")
    choices = {}
    for name in dict.fromkeys([*train, *test]):
        if name in SYNTHETIC_SETS:
            choices[name] = DatasetChoice("kdef", ensure_synthetic_set(name, base, note), synthetic=True,
                                          fallback=False, origin=f"the synthetic set {name} ({SYNTHETIC_WORDS[name]})")
        else:
            location = found[name]
            choices[name] = DatasetChoice(name, location.root, synthetic=False, fallback=False,
                                          origin=location.origin)
    return CrossLayout(train, test, choices, left_out=left_out)


def source_split(table: SampleTable, val_fraction: float, seed: int = 0) -> Split:
    """All of ``table`` for training, a stratified ``val_fraction`` of each class carved out for validation (at
    least one image of each class kept for training); no test part."""
    frame = table.frame.sort_values("sample_id", kind="stable")
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    for _, rows in frame.groupby("label", sort=True):
        ids = rng.permutation(rows["sample_id"].astype(str).to_numpy())
        take = min(len(ids) - 1, int(np.floor(len(ids) * val_fraction + 0.5)))
        val += list(ids[:take])
        train += list(ids[take:])
    return Split(SOURCE_ONLY, SOURCE_ONLY, {"seed": seed, "val_fraction": val_fraction}, tuple(train), tuple(val), ())


def target_ids(table: SampleTable) -> list[str]:
    """The images a target is tested on: its official test split where it has one, else all of it."""
    frame = table.frame
    official = frame["split"].astype(str) == "test"
    return frame.loc[official if official.any() else slice(None), "sample_id"].astype(str).tolist()


def trained_classes(cell: Cell, split: Split, table: SampleTable) -> list[int]:
    """The classes of the cell's training part (after its budget's cuts): what its model learns."""
    return sorted({int(label) for label in labels_of(table, train_ids(cell, split, table))})


def target_test_data(cell: Cell, table: SampleTable, cached: CachedImages, device: torch.device,
                     trained: Sequence[int], ids: Sequence[str] | None = None) -> tuple[TestData | None, Alignment]:
    """A target's test images (``ids``, default :func:`target_ids` cut to the budget's ``max_eval_images``) of
    the classes the model was trained on, and the alignment (scored classes, images left out); None when no
    image is left."""
    chosen = eval_ids(cell, target_ids(table) if ids is None else list(ids), table, "test")
    labels = labels_of(table, chosen)
    alignment = align_labels(trained, labels)
    keep = [sample for sample, label in zip(chosen, labels) if int(label) in alignment.scored]
    if not keep:
        return None, alignment
    rows = cached.positions(keep)
    images = cached.images[rows]
    if choose_residency(images, device, cell.engine.residency) == "device":
        images = images.to(device)
    frame = table.frame.set_index("sample_id")
    return TestData(images, cached.labels[rows], keep, frame.loc[keep, "pose"].astype(str).tolist(),
                    frame.loc[keep, "subject"].astype(str).tolist(), cached.landmarks[rows]), alignment


def _merged_plan(plans: dict[str, Plan]) -> Plan | None:
    """One plan of every training dataset's (their ``main`` entries under the dataset's name)."""
    if not plans:
        return None
    first = next(iter(plans.values()))
    entries = {(entry.label, train): dataclasses.replace(entry, view=train)
               for train, plan in plans.items() for entry in plan.entries.values()}
    probed = {label: rate for plan in plans.values() for label, rate in plan.probed.items()}
    return Plan(first.budget, first.device, entries, probed, "+".join(plan.fingerprint for plan in plans.values()))


def prepare_cross(suite: Suite, options: RunOptions, progress: Progress, planning: Planning = "probe") -> Prepared:
    """A cross-dataset suite's datasets, splits and cells (nothing trained): every training dataset's cells,
    tested on each target."""
    if options.executor not in ("local", "debug"):
        raise FbenchError(f"--executor {options.executor}: a cross-dataset suite runs with the local executor (its "
                          "cells test on several datasets, which cluster jobs do not rebuild yet); drop --executor")
    budget_name = options.budget or suite.budget
    layout = choose_cross_datasets(suite, options.data, progress.note, options.synthetic_folder)
    tables: dict[str, SampleTable] = {}
    for name, choice in layout.choices.items():
        table = load_table(choice, options.on_error)
        check_classes(table)
        if table.synthetic and not choice.synthetic:
            progress.note(f"SYNTHETIC DATA: {name} at {choice.root} is marked synthetic (procedurally rendered "
                          "faces); the report says so")
        choice.synthetic = choice.synthetic or table.synthetic
        bad = bad_files(table)
        if bad:
            progress.note(f"{len(bad)} image file(s) of {name} left out (--on-error skip): {bad_files_text(bad)}")
        tables[name] = table
        layout.sizes[name] = len(table)
    device = resolve_device(options.device or suite.device)
    fingerprints = {name: table.fingerprint() for name, table in tables.items()}
    splits: dict[str, list[Split]] = {}
    cells: list[Cell] = []
    plans: dict[str, Plan] = {}
    for train in layout.train:
        table, choice = tables[train], layout.choices[train]
        _, protocol = suite.protocols(synthetic_fallback=table.synthetic)[0]
        diagonal = train in layout.test
        made = (split_table(table, [(MAIN_PROTOCOL, protocol)])[MAIN_PROTOCOL] if diagonal
                else [source_split(table, protocol.val_fraction)])
        splits[train] = made
        own = suite.model_copy(update={"dataset": table.dataset, "protocol": protocol, "synthetic_protocol": None,
                                       "views": [], "name": f"{suite.name}-{train}"})
        cap = suite.effective_budget(budget_name).max_eval_images
        tested = sum(len(target_ids(tables[name])) if cap is None else min(cap, len(target_ids(tables[name])))
                     for name in layout.test if name != train)
        plan = suite_plan(own, budget_name, table, {MAIN_PROTOCOL: made}, False, device, planning, progress.note,
                          extra_test_images=tested)
        if plan is not None:
            plans[train] = plan
        targets = {name: fingerprints[name] for name in layout.test if name != train}
        for cell in expand_cells(own, str(choice.root.resolve()), table.synthetic, {MAIN_PROTOCOL: len(made)},
                                 budget_name, dataset_fingerprint=fingerprints[train], plan=plan):
            cells.append(dataclasses.replace(
                cell, suite=suite.name, dataset=train, view=train,
                protocol=cell.protocol if diagonal else {"kind": SOURCE_ONLY, "arguments": made[0].params},
                extra={**cell.extra, TARGETS: targets}))
        for entry in plan.limited() if plan is not None else []:
            progress.note(f"BUDGET-LIMITED ON THIS DEVICE: {entry.label} is not trained on {train} under the "
                          f"{budget_name!r} budget: {entry.limited}")
    for note in setting_notes(cells):
        progress.note(note)
    synthetic = any(choice.synthetic for choice in layout.choices.values())
    first = layout.choices[layout.train[0]]
    summary = DatasetChoice(f"cross: {layout.description()}", first.root, synthetic=synthetic,
                            fallback=layout.fallback, origin="; ".join(
                                f"{name} at {choice.root} (from {choice.origin})"
                                for name, choice in layout.choices.items()))
    return Prepared(summary, tables[layout.train[0]], splits, cells, budget_name, _merged_plan(plans),
                    tables=tables, cross=layout)


def cross_targets(cell: Cell) -> dict[str, Any] | None:
    """The targets of a cross cell (name -> content fingerprint), None for an ordinary cell."""
    targets = cell.extra.get(TARGETS)
    return dict(targets) if isinstance(targets, dict) else None


def is_diagonal(cell: Cell) -> bool:
    """Whether a cross cell is also tested on its own protocol's test part (its dataset is a target)."""
    return cell.protocol.get("kind") != SOURCE_ONLY


def prepare_suite(suite: Suite, options: RunOptions, progress: Progress, planning: Planning = "probe") -> Prepared:
    """:func:`prepare_cross` for a cross-dataset suite, :func:`fbench.run.context.prepare` for the others."""
    if suite.cross is not None:
        return prepare_cross(suite, options, progress, planning)
    return prepare(suite, options, progress, planning)
