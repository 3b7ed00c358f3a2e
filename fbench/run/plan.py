"""Time-planned budgets: each architecture's epochs and training images, sized from a measured throughput probe
so that a suite fits the device it runs on.

A budget with ``cell_seconds`` gives every cell about that much training and evaluation time on the run's device
(an extra view's cell ``view_time_fraction`` of it). Before the cells are made, a short probe trains each
architecture for a few steps of its own recipe through the engine (its optimiser, loss, batch augmentation and
offline copies) on random images of its input size, and times a forward pass; from the measured rates the plan
gives it as many epochs as fit (up to the budget's ``max_epochs``), and where even ``min_epochs`` over the whole
training part would overrun, fewer training images (the same stratified draw as every cut). An architecture that
could then train on fewer than ``min_train_images`` is *budget-limited on this device*: it gets no cells, and the
leaderboard and report name it with the reason and an estimate of the time it would need; it is not ranked.

The plan is written to the suite's output folder (``plan-<budget>.json``) the first time and read back on every
later run with the same budget, device and architectures, so that a resumed run rebuilds the same cells (the
epochs and image counts are part of each cell's key). Delete the file to plan again, e.g. on a quieter machine.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fbench.contract import Recipe
from fbench.data.files import write_atomic
from fbench.data.transforms import BatchAugment
from fbench.engine import EvalData, TrainData, TrainSettings, predict_logits, train_model
from fbench.engine.devices import synchronize
from fbench.registry import get_architecture
from fbench.suite.schema import Budget, EngineConfig

PLAN_FORMAT = 1
# The probe trains this many batches per epoch, for two epochs, and times the second (the first warms up).
PROBE_STEPS = 2
# Probes climb a ladder of batch sizes up to the recipe's (CPU throughput grows with the batch): each rung is
# probed when the last measured rate says its steps take under PROBE_STEP_SECONDS; the last rung measured stands
# (a lower bound on the rate at the recipe's batch when it is not the recipe's).
PROBE_BATCHES = (4, 16)
PROBE_STEP_SECONDS = 3.0
# Real cells run somewhat slower than the probe (model set-up, checkpoint writes, logging, the data's own
# augmentation draws): the plan fills this share of the budget's seconds (measured: 2-core CPU, cells took
# about 1.15x their plan at 1.0).
PLAN_SHARE = 0.85


@dataclass(frozen=True)
class Throughput:
    """Measured rates of one architecture on one device: training rows/s (after offline copies) and
    evaluation images/s."""

    train_per_s: float
    eval_per_s: float
    batch_size: int


@dataclass(frozen=True)
class PlanEntry:
    """One architecture x view's share of the budget."""

    label: str
    view: str
    epochs: int
    train_images: int  # training images per cell, before offline copies
    available_images: int  # training images the budget's other cuts leave
    copies: int  # training rows per image (offline augmentation)
    seconds: float  # estimated training and evaluation time of one cell
    train_per_s: float
    eval_per_s: float
    limited: str = ""  # why the architecture cannot be trained within the budget here ("": it can)
    needed_seconds: float = 0.0  # for a limited one: one cell trained as the others are

    @property
    def is_limited(self) -> bool:
        return bool(self.limited)


@dataclass(frozen=True)
class CellWork:
    """What one cell of an architecture x view has to do, for the plan's arithmetic."""

    label: str
    view: str
    available_images: int  # training images after the budget's fraction and image cap
    val_images: int
    test_images: int
    eval_passes: int  # clean plus one per perturbing condition
    copies: int
    max_epochs: int  # the recipe's epochs under the budget's scale and cap


def device_description(device: torch.device) -> str:
    """What the plan was measured on: the accelerator's name, or the CPU and its core count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} " \
           "threads"


def probe_throughput(architecture: str, options: Mapping[str, Any], input_size: Sequence[int], recipe: Recipe,
                     num_classes: int, device: torch.device, engine: EngineConfig) -> Throughput:
    """The architecture's training and evaluation rates on ``device``, measured at the largest batch size of the
    ladder (``PROBE_BATCHES``, then the recipe's) whose steps the previous rung says are short enough."""
    ladder = [b for b in PROBE_BATCHES if b < recipe.batch_size] + [recipe.batch_size]
    rates = timed_training(architecture, options, input_size, recipe, num_classes, device, engine, ladder[0])
    for batch in ladder[1:]:
        if batch / rates.train_per_s >= PROBE_STEP_SECONDS:
            break
        rates = timed_training(architecture, options, input_size, recipe, num_classes, device, engine, batch)
    return rates


def timed_training(architecture: str, options: Mapping[str, Any], input_size: Sequence[int], recipe: Recipe,
                   num_classes: int, device: torch.device, engine: EngineConfig, batch: int) -> Throughput:
    """Train the architecture for two short epochs of its recipe (at ``batch``) on random images through the
    engine and time the second; time a forward pass of about a second's worth of images after a warm-up one."""
    registered = get_architecture(architecture)
    spec = registered.resolve_spec(dict(options)).with_input(image_size=(int(input_size[1]), int(input_size[2])))
    recipe = dataclasses.replace(recipe, batch_size=batch)
    copies = BatchAugment.from_recipe(recipe, spec).offline_copies
    count = max(num_classes, math.ceil(batch * PROBE_STEPS / copies))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *input_size), dtype=torch.uint8, generator=generator)
    labels = torch.arange(count) % num_classes
    train = TrainData(images, labels, [str(i) for i in range(count)])
    val = EvalData(images[:num_classes], labels[:num_classes], [str(i) for i in range(num_classes)])
    torch.manual_seed(0)
    model = registered.build(num_classes, **dict(options))
    settings = TrainSettings(recipe, spec, device=device, epochs=2, **engine.model_dump())
    history = train_model(model, train, val, settings).history
    train_per_s = count * copies / max(float(history[-1]["seconds"]), 1e-6)
    # Forward only is about a third of a training step: time about one second of it.
    wanted = int(min(256, max(8, 3 * train_per_s)))
    eval_images = images.repeat(math.ceil(wanted / count), 1, 1, 1)[:wanted]
    predict_logits(model, eval_images[:batch], spec, device=device, batch_size=batch)
    synchronize(device)
    start = time.perf_counter()
    predict_logits(model, eval_images, spec, device=device, batch_size=engine.eval_batch_size)
    synchronize(device)
    eval_per_s = len(eval_images) / max(time.perf_counter() - start, 1e-6)
    return Throughput(train_per_s=train_per_s, eval_per_s=eval_per_s, batch_size=batch)


def plan_entry(work: CellWork, rates: Throughput, budget: Budget, seconds: float, num_classes: int) -> PlanEntry:
    """The epochs and training images that fit ``seconds`` for ``work`` at ``rates``; limited when fewer than
    ``budget.min_train_images`` could train ``budget.min_epochs``."""
    fixed = work.test_images * work.eval_passes / rates.eval_per_s
    val_seconds = work.val_images / rates.eval_per_s
    seconds *= PLAN_SHARE

    def epoch_seconds(images: int) -> float:
        return images * work.copies / rates.train_per_s + val_seconds

    least_epochs = min(budget.min_epochs, work.max_epochs)
    spare = seconds - fixed
    epochs = int(spare // epoch_seconds(work.available_images)) if spare > 0 else 0
    images = work.available_images
    if epochs < least_epochs:
        epochs = least_epochs
        per_epoch = spare / epochs - val_seconds
        images = min(work.available_images, int(per_epoch * rates.train_per_s / work.copies)) if per_epoch > 0 else 0
    epochs = min(epochs, work.max_epochs)
    # a dataset smaller than the floor is not held against an architecture that can see all of it
    floor = max(min(budget.min_train_images or 0, work.available_images), num_classes)
    entry = PlanEntry(work.label, work.view, epochs, images, work.available_images, work.copies,
                      round(fixed + epochs * epoch_seconds(images), 1), rates.train_per_s, rates.eval_per_s)
    if images < floor:
        reason = (f"trains at {rates.train_per_s:.1f} rows/s on this device ({work.copies} per image); within "
                  f"{seconds:.0f} s per cell only {max(images, 0)} of {work.available_images} training images "
                  f"could be seen {least_epochs} times (the budget's floor is {floor})")
        return dataclasses.replace(entry, limited=reason)
    return entry


def with_estimate(entry: PlanEntry, trained: Sequence[PlanEntry], work: CellWork) -> PlanEntry:
    """A limited entry with the time one of its cells would need to train as the others of its view do (their
    median epochs over their median training images, or ``min_epochs`` over every image when none trains)."""
    if trained:
        epochs = int(statistics.median(e.epochs for e in trained))
        images = int(statistics.median(e.train_images for e in trained))
    else:
        epochs, images = max(entry.epochs, 1), work.available_images
    needed = (images * work.copies / entry.train_per_s + work.val_images / entry.eval_per_s) * epochs \
        + work.test_images * work.eval_passes / entry.eval_per_s
    reason = f"{entry.limited}; {epochs} epochs over {images} images, as the others train, would take about " \
             f"{_duration(needed)} per cell"
    return dataclasses.replace(entry, limited=reason, needed_seconds=round(needed, 1))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Plan:
    """The plan of one suite under one budget on one device: an entry per architecture x view."""

    budget: str
    device: str
    entries: dict[tuple[str, str], PlanEntry]
    probed: dict[str, Throughput]
    fingerprint: str  # what the plan depends on besides the device (architectures, sizes, recipes, data sizes)

    def entry(self, label: str, view: str) -> PlanEntry | None:
        return self.entries.get((label, view))

    def limited(self, view: str | None = None) -> list[PlanEntry]:
        """The budget-limited architecture x views (of ``view`` only, when given), in plan order."""
        return [e for e in self.entries.values() if e.is_limited and (view is None or e.view == view)]

    def to_dict(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "budget": self.budget, "device": self.device, "fingerprint": self.fingerprint,
                "probed": {label: dataclasses.asdict(rates) for label, rates in self.probed.items()},
                "entries": [dataclasses.asdict(entry) for entry in self.entries.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        entries = [PlanEntry(**item) for item in data["entries"]]
        return cls(data["budget"], data["device"], {(e.label, e.view): e for e in entries},
                   {label: Throughput(**rates) for label, rates in data["probed"].items()}, data["fingerprint"])


def plan_path(output: Path, suite: str, budget: str) -> Path:
    return output / suite / f"plan-{budget}.json"


def read_plan(path: Path, device: str | None, fingerprint: str) -> Plan | None:
    """The stored plan when it was made for ``device`` (None: any) and these cells; None otherwise (or when
    unreadable)."""
    try:
        data = json.loads(path.read_text())
        plan = Plan.from_dict(data) if data.get("format") == PLAN_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if plan is None or (device is not None and plan.device != device) or plan.fingerprint != fingerprint:
        return None
    return plan


def make_plan(budget_name: str, budget: Budget, works: Sequence[CellWork],
              probes: Mapping[str, Callable[[], Throughput]], device: str, fingerprint: str, num_classes: int,
              note: Callable[[str], None] = lambda text: None) -> Plan:
    """Probe each architecture (``probes`` by label) and plan every architecture x view of ``works``."""
    assert budget.cell_seconds is not None
    probed: dict[str, Throughput] = {}
    for label, probe in probes.items():
        note(f"probing {label}'s training throughput on {device}")
        probed[label] = probe()
    entries: dict[tuple[str, str], PlanEntry] = {}
    for view in dict.fromkeys(work.view for work in works):
        seconds = budget.cell_seconds * (1.0 if view == "main" else budget.view_time_fraction)
        view_works = [work for work in works if work.view == view]
        planned = {work.label: plan_entry(work, probed[work.label], budget, seconds, num_classes)
                   for work in view_works}
        trained = [entry for entry in planned.values() if not entry.is_limited]
        for work in view_works:
            entry = planned[work.label]
            entries[(work.label, view)] = with_estimate(entry, trained, work) if entry.is_limited else entry
    return Plan(budget_name, device, entries, probed, fingerprint)


def store_plan(plan: Plan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(plan.to_dict(), indent=2).encode())


def plan_fingerprint(works: Sequence[CellWork], extra: Mapping[str, Any]) -> str:
    """A short hash of what the plan's arithmetic depends on besides the device."""
    data = {"works": [dataclasses.asdict(work) for work in works], **extra}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def plan_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` while planning (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
