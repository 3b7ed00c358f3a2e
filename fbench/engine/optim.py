"""Optimisers and learning-rate schedules from a recipe.

Weight decay applies to every parameter, biases and normalisation parameters included: that is what the papers'
reference code does (Keras ``Adam`` in LANMSFF; ``torch.optim.SGD(model.parameters(), weight_decay=...)`` in
SCAN-CCI), so fbench does not add the common "no decay on biases/norms" refinement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from fbench.contract import Recipe
from fbench.errors import FbenchError

DEFAULT_GROUP = "default"
MONITORS = ("val_loss", "val_accuracy")

# Accepted ``Schedule.params`` per kind (the matching torch scheduler's arguments, plus fbench's own keys).
SCHEDULE_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": (),
    "reduce_on_plateau": ("monitor", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr",
                          "eps"),
    "exponential": ("gamma",),
    "cosine": ("T_max", "eta_min", "warmup_epochs"),
    "step": ("step_size", "gamma", "milestones"),
}


def _group_of(name: str, prefixes: list[str]) -> str | None:
    """The longest prefix that ``name`` starts with, on whole dotted components (``trunk`` matches
    ``trunk.conv1.weight`` but not ``trunked.weight``)."""
    for prefix in prefixes:  # sorted longest first
        if name == prefix or name.startswith(prefix.rstrip(".") + "."):
            return prefix
    return None


def param_groups(model: nn.Module, recipe: Recipe, lr: float | None = None) -> list[dict[str, Any]]:
    """Trainable parameters grouped by ``recipe.lr_groups`` prefixes (each at its own lr), then the rest at
    ``lr`` (default ``recipe.lr``). Each group carries a ``name`` (the prefix, or ``"default"``).

    ``lr`` overrides only the base rate, exactly as ``dataclasses.replace(recipe, lr=lr)`` would: group rates
    are absolute values and stay as the recipe gives them."""
    base_lr = recipe.lr if lr is None else float(lr)
    prefixes = sorted(recipe.lr_groups, key=len, reverse=True)
    members: dict[str, list[nn.Parameter]] = {p: [] for p in recipe.lr_groups}
    rest: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = _group_of(name, prefixes)
        (members[group] if group is not None else rest).append(param)
    empty = [p for p, params in members.items() if not params]
    if empty:
        top = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise FbenchError(f"lr_groups prefix(es) {empty} match no trainable parameter of {type(model).__name__}; "
                          f"prefixes are parameter-name prefixes such as its top-level modules: {top[:12]}")
    groups = [{"params": params, "lr": float(recipe.lr_groups[p]), "name": p} for p, params in members.items()]
    if rest:
        groups.append({"params": rest, "lr": base_lr, "name": DEFAULT_GROUP})
    if not groups:
        raise FbenchError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False)")
    return groups


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    """The recipe's optimiser over :func:`param_groups` (weight decay on all parameters, as the papers do)."""
    groups = param_groups(model, recipe, lr)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=groups[-1]["lr"], momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)
    kind = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=groups[-1]["lr"], betas=(recipe.betas[0], recipe.betas[1]), eps=recipe.eps,
                weight_decay=recipe.weight_decay)


def group_lr(optimizer: torch.optim.Optimizer) -> float:
    """The current lr of the default group (the recipe's ``lr``), else of the first group."""
    for group in optimizer.param_groups:
        if group.get("name") == DEFAULT_GROUP:
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


@dataclass
class Scheduler:
    """A torch scheduler (or none, for ``constant``) and how the loop steps it."""

    kind: str
    torch_scheduler: Any | None
    step_per: str  # "epoch" or "batch"
    monitor: str | None = None  # reduce_on_plateau only

    def step_batch(self) -> None:
        """Call after every optimiser step; a no-op unless the schedule steps per batch."""
        if self.step_per == "batch" and self.torch_scheduler is not None:
            self.torch_scheduler.step()


def plateau_monitor(recipe: Recipe) -> str:
    """The validation metric ReduceLROnPlateau watches: ``params["monitor"]``, else early stopping's, else
    ``val_loss``."""
    monitor = recipe.schedule.params.get("monitor")
    if monitor is None:
        monitor = recipe.early_stopping.monitor if recipe.early_stopping is not None else "val_loss"
    if monitor not in MONITORS:
        raise FbenchError(f"schedule reduce_on_plateau: monitor {monitor!r} is not one of {', '.join(MONITORS)} "
                          "(the validation split's loss or accuracy)")
    return monitor


def _cosine_factor(base_lr: float, total: int, warmup: int, t_max: int | None, eta_min: float
                   ) -> Callable[[int], float]:
    """Linear warmup ``(t + 1) / (warmup + 1)`` for ``t < warmup``, then a half cosine from 1 to
    ``eta_min / base_lr`` over ``t_max`` steps (default: the steps after warmup), flat afterwards."""
    span = max(1, t_max if t_max is not None else total - warmup)
    floor = eta_min / base_lr if base_lr > 0 else 0.0

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / (warmup + 1)
        progress = min(t - warmup, span) / span
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, epochs: int, steps_per_epoch: int
                    ) -> Scheduler:
    """The recipe's schedule for ``epochs`` epochs of ``steps_per_epoch`` optimiser steps.

    Kinds and params (times in epochs; with ``step_per="batch"`` they are converted to steps):
    ``constant``; ``reduce_on_plateau`` (torch's ``ReduceLROnPlateau`` arguments plus ``monitor``; per epoch
    only; torch's default threshold is relative, so a port of Keras's absolute ``min_delta`` gives
    ``threshold_mode="abs"``, as LANMSFF's recipe does); ``exponential`` (``gamma`` per epoch); ``cosine``
    (``T_max`` default epochs - warmup, ``eta_min`` default 0, ``warmup_epochs`` default 0); ``step``
    (``step_size`` and ``gamma`` default 0.1, or ``milestones``)."""
    schedule = recipe.schedule
    params: Mapping[str, Any] = dict(schedule.params)
    unknown = sorted(set(params) - set(SCHEDULE_PARAMS[schedule.kind]))
    if unknown:
        accepted = ", ".join(SCHEDULE_PARAMS[schedule.kind]) or "none"
        raise FbenchError(f"schedule {schedule.kind!r} has no parameter(s) {unknown}; accepted: {accepted}")
    if schedule.step_per not in ("epoch", "batch"):
        raise FbenchError(f"schedule step_per must be 'epoch' or 'batch' (got {schedule.step_per!r})")
    per_batch = schedule.step_per == "batch"
    steps = max(1, int(steps_per_epoch)) if per_batch else 1

    if schedule.kind == "constant":
        return Scheduler("constant", None, schedule.step_per)
    if schedule.kind == "reduce_on_plateau":
        if per_batch:
            raise FbenchError("schedule reduce_on_plateau watches the validation split once per epoch; "
                              "set step_per: epoch")
        monitor = plateau_monitor(recipe)
        options = {k: v for k, v in params.items() if k != "monitor"}
        plateau = lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if monitor == "val_loss" else "max", **options)
        return Scheduler("reduce_on_plateau", plateau, "epoch", monitor)
    if schedule.kind == "exponential":
        if "gamma" not in params:
            raise FbenchError("schedule exponential needs params.gamma (the lr factor per epoch)")
        gamma = float(params["gamma"]) ** (1.0 / steps)
        return Scheduler("exponential", lr_scheduler.ExponentialLR(optimizer, gamma=gamma), schedule.step_per)
    if schedule.kind == "cosine":
        warmup = int(round(float(params.get("warmup_epochs", 0)) * steps))
        t_max = int(round(float(params["T_max"]) * steps)) if "T_max" in params else None
        eta_min = float(params.get("eta_min", 0.0))
        lambdas = [_cosine_factor(group["lr"], epochs * steps, warmup, t_max, eta_min)
                   for group in optimizer.param_groups]
        return Scheduler("cosine", lr_scheduler.LambdaLR(optimizer, lambdas), schedule.step_per)
    # step
    gamma = float(params.get("gamma", 0.1))
    if "milestones" in params:
        milestones = [int(m) * steps for m in params["milestones"]]
        torch_scheduler: lr_scheduler.LRScheduler = lr_scheduler.MultiStepLR(optimizer, milestones=milestones,
                                                                             gamma=gamma)
    elif "step_size" in params:
        torch_scheduler = lr_scheduler.StepLR(optimizer, step_size=int(params["step_size"]) * steps, gamma=gamma)
    else:
        raise FbenchError("schedule step needs params.step_size (epochs between decays) or params.milestones")
    return Scheduler("step", torch_scheduler, schedule.step_per)


def scheduler_step(scheduler: Scheduler, val_metrics: Mapping[str, float] | None) -> None:
    """The end-of-epoch step: ReduceLROnPlateau reads ``val_metrics[monitor]`` (validation, never test);
    epoch schedules advance; per-batch schedules were stepped in the loop."""
    if scheduler.torch_scheduler is None or scheduler.step_per != "epoch":
        return
    if scheduler.kind == "reduce_on_plateau":
        monitor = scheduler.monitor
        if not val_metrics or monitor is None or monitor not in val_metrics:
            raise FbenchError(f"schedule reduce_on_plateau monitors {monitor} on the validation split, "
                              "but there is none; give the cell a validation split or use another schedule")
        scheduler.torch_scheduler.step(float(val_metrics[monitor]))
    else:
        scheduler.torch_scheduler.step()
