"""The tuning objective: one trial trains on the training part of one fold and scores on its validation part.

The test part of the fold is never read: only training and validation tensors are built (and a guard checks
their sample ids against the fold's test ids). The validation score is reported to Optuna after every epoch,
so a pruner can stop a weak trial early; a trial whose loss turns NaN, that runs out of memory or that a
parameter makes invalid is recorded as failed with its reason, and the study goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from fbench.data.splits import Split
from fbench.engine import EvalData, NonFiniteLossError, TrainData, train_model
from fbench.errors import FbenchError, did_you_mean
from fbench.profile import count_macs, count_parameters, measure_speed
from fbench.registry import get_architecture
from fbench.run.cell import build_model, train_settings
from fbench.run.cells import Cell, expand_cells
from fbench.run.context import RunContext
from fbench.run.inputs import cell_inputs
from fbench.suite.schema import ArchitectureConfig, Suite
from fbench.suite.search import SearchSpace, to_overrides

# Objectives: what each one measures and which way is better.
Direction = Literal["minimize", "maximize"]
VALIDATION_OBJECTIVES: dict[str, Direction] = {"val_accuracy": "maximize", "val_loss": "minimize"}
COST_OBJECTIVES: dict[str, Direction] = {"macs": "minimize", "params": "minimize", "latency": "minimize"}
OBJECTIVES: dict[str, Direction] = {**VALIDATION_OBJECTIVES, **COST_OBJECTIVES}

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"


class TrialFailed(FbenchError):
    """A trial that could not finish (NaN loss, out of memory, an invalid parameter value): Optuna records it as
    failed and the study goes on."""


def parse_objectives(text: str | Sequence[str]) -> list[str]:
    """``"val_accuracy,macs"`` -> ``["val_accuracy", "macs"]``, checked: known names, no repeats, at least one
    validation metric (costs alone need no training)."""
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text) if part.strip()]
    if not names:
        raise FbenchError("--objective is empty; use val_accuracy, or e.g. val_accuracy,macs for a Pareto front")
    for name in names:
        if name not in OBJECTIVES:
            raise FbenchError(f"unknown objective {name!r}{did_you_mean(name, OBJECTIVES)}; use "
                              f"{', '.join(OBJECTIVES)} (comma-separated for several)")
    if len(set(names)) != len(names):
        raise FbenchError(f"--objective {','.join(names)} names an objective twice")
    if not any(name in VALIDATION_OBJECTIVES for name in names):
        raise FbenchError(f"--objective {','.join(names)} has no validation metric; add val_accuracy (costs alone "
                          f"need no tuning)")
    return names


@dataclass
class TuningSetup:
    """Everything the trials of one study share: the suite entry tuned, the fold's split, the data cache."""

    suite: Suite  # the suite reduced to the tuned entry (one variant), main protocol only
    entry: ArchitectureConfig
    split: Split
    fold: int
    folds: int
    context: RunContext  # table, device, decoded-image cache
    dataset_root: str
    synthetic: bool
    fallback: bool
    budget: str
    dataset_fingerprint: str = ""  # the table's fingerprint, computed once: cells are keyed by it

    def cell(self, params: Mapping[str, Any]) -> Cell:
        """The cell a trial trains: the suite's own cell for this entry, fold and first seed, with ``params``
        applied as ``fbench run --params`` would apply them (so the tuned and the evaluated config agree)."""
        architecture = get_architecture(self.entry.name)
        recipe, options = to_overrides(params, architecture, self.entry.recipe, self.entry.options)
        entry = self.entry.model_copy(update={"recipe": recipe, "options": options})
        suite = self.suite.model_copy(update={"architectures": [entry], "views": []})
        cells = expand_cells(suite, self.dataset_root, self.synthetic, {"main": self.folds}, self.budget,
                             fallback=self.fallback, dataset_fingerprint=self.dataset_fingerprint)
        return dataclasses.replace(cells[0], fold=self.fold)


def tuning_data(cell: Cell, setup: TuningSetup) -> tuple[TrainData, EvalData]:
    """The fold's training and validation parts, cut to the budget as the runner cuts them; no test."""
    context = setup.context
    inputs = cell_inputs(cell, setup.split, context.table, context.cache(cell.input_size), context.device,
                         with_test=False)
    if inputs.val is None:
        raise FbenchError(f"fold {setup.fold} has no validation images to score trials on; give the protocol a "
                          "val_fraction above 0")
    return inputs.train, inputs.val


def final_record(history: Sequence[Mapping[str, Any]], result: Any) -> Mapping[str, Any]:
    """The epoch whose weights the model ends with: the best one when training restored it, else the last."""
    if result.final_state == "best" and result.best_epoch is not None:
        return history[result.best_epoch - 1]
    return history[-1]


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = [MemoryError]
    for kind in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)):
        if isinstance(kind, type) and kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


OUT_OF_MEMORY_ERRORS = _out_of_memory_errors()
# What fails one trial (recorded as failed; the study goes on).
TRIAL_ERRORS: tuple[type[BaseException], ...] = (NonFiniteLossError, FbenchError, *OUT_OF_MEMORY_ERRORS)


@dataclass
class TrialOutcome:
    """What one trial did, for the terminal and MLflow."""

    number: int
    state: str
    params: dict[str, Any]
    values: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0
    cell_key: str = ""


class Objective:
    """The callable handed to ``study.optimize``: one trial, from suggested parameters to its values."""

    def __init__(self, setup: TuningSetup, space: SearchSpace, objectives: Sequence[str], prune: bool,
                 on_trial: Callable[[TrialOutcome], None] = lambda outcome: None,
                 trial_attrs: Mapping[str, Any] | None = None) -> None:
        self.setup = setup
        self.trial_attrs = dict(trial_attrs or {})  # set on every trial first (a cluster worker's marks)
        self.space = space
        self.objectives = list(objectives)
        self.prune = prune
        self.on_trial = on_trial
        self._costs: dict[str, dict[str, float]] = {}

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        import optuna

        started = time.perf_counter()
        for key, value in self.trial_attrs.items():
            trial.set_user_attr(key, value)
        params = self.space.suggest(trial)
        outcome = TrialOutcome(trial.number, COMPLETE, dict(params))
        try:
            values = self._run(trial, params, outcome)
        except optuna.TrialPruned as pruned:
            outcome.state, outcome.reason = PRUNED, str(pruned)
            self._finish(trial, outcome, started)
            raise
        except TRIAL_ERRORS as error:
            if isinstance(error, OUT_OF_MEMORY_ERRORS) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            kind = "out of memory" if isinstance(error, OUT_OF_MEMORY_ERRORS) else type(error).__name__
            outcome.state, outcome.reason = FAILED, f"{kind}: {error}".strip()
            trial.set_user_attr("fail_reason", outcome.reason[:2000])
            self._finish(trial, outcome, started)
            raise TrialFailed(outcome.reason) from None
        outcome.values = values
        self._finish(trial, outcome, started)
        result = tuple(values[name] for name in self.objectives)
        return result[0] if len(result) == 1 else result

    def _finish(self, trial: Any, outcome: TrialOutcome, started: float) -> None:
        outcome.seconds = time.perf_counter() - started
        trial.set_user_attr("state", outcome.state)
        trial.set_user_attr("seconds", round(outcome.seconds, 3))
        trial.set_user_attr("epochs_run", len(outcome.history))
        if outcome.reason and outcome.state == PRUNED:
            trial.set_user_attr("pruned_at", outcome.reason[:500])
        self.on_trial(outcome)

    def _run(self, trial: Any, params: Mapping[str, Any], outcome: TrialOutcome) -> dict[str, float]:
        import optuna

        setup = self.setup
        cell = setup.cell(params)
        outcome.cell_key = cell.key
        trial.set_user_attr("cell_key", cell.key)
        trial.set_user_attr("epochs", cell.recipe.epochs)
        costs = self._cost_values(cell) if any(n in COST_OBJECTIVES for n in self.objectives) else {}
        train, val = tuning_data(cell, setup)
        watched = next(name for name in self.objectives if name in VALIDATION_OBJECTIVES)

        def on_epoch(record: dict[str, Any]) -> None:
            outcome.history.append(record)
            value = record.get(watched)
            if not self.prune or value is None or not math.isfinite(value):
                return
            trial.report(float(value), step=int(record["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} ({watched} {value:.4f})")

        model = build_model(cell, setup.context.table.num_classes)
        result = train_model(model, train, val, train_settings(cell, setup.context.device, on_epoch=on_epoch))
        chosen = final_record(result.history, result)
        values = {name: float(chosen[name]) for name in VALIDATION_OBJECTIVES if chosen.get(name) is not None}
        values.update(costs)
        missing = [name for name in self.objectives if name not in values]
        if missing:
            raise FbenchError(f"trial {trial.number} produced no {', '.join(missing)}")
        return values

    def _cost_values(self, cell: Cell) -> dict[str, float]:
        """Parameters, MACs and (when asked) batch-1 latency of the trial's model, cached per configuration."""
        key = json.dumps([cell.architecture, cell.options, cell.input_size], sort_keys=True, default=str)
        if key not in self._costs:
            architecture = get_architecture(cell.architecture)
            model = architecture.build(self.setup.context.table.num_classes, **cell.options).eval()
            total, _, _ = count_parameters(model)
            costs = {"params": float(total),
                     "macs": float(count_macs(model, torch.zeros(1, *cell.input_size)).macs)}
            if "latency" in self.objectives:
                latency_ms, _, _, _ = measure_speed(model, cell.input_size, self.setup.context.device,
                                                    batch_size=1, warmup=3, repeats=15, budget_s=5.0)
                costs["latency"] = float(latency_ms)
            self._costs[key] = costs
        return dict(self._costs[key])
