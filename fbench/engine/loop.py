"""The training loop: one recipe, one model, one seed; model selection on the validation split only.

Per epoch: the model is put in training mode (then its ``train_epoch_start`` hook runs, if it has one), a seeded
order of the training rows is drawn on the device, every batch is augmented (online) or taken from the
once-expanded set (offline) and normalised on the device, the loss goes through
:func:`fbench.contract.compute_loss` (multi-head models bring their own), and loss and accuracy are accumulated
as device tensors. The host reads them once per epoch, together with the validation sums, so the batch loop
never waits for the device.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fbench.contract import ArchitectureSpec, Recipe, compute_loss, start_training_epoch
from fbench.data.transforms import BatchAugment, eval_transform
from fbench.engine.checkpoint import ResumeCheckpoint, fingerprint, load_state, save_state
from fbench.engine.distributed import ParallelPlan, active_plan
from fbench.engine.errors import NonFiniteLossError
from fbench.engine.optim import build_optimizer, build_scheduler, group_lr, plateau_monitor, scheduler_step
from fbench.engine.residency import Residency, batch_source, choose_residency
from fbench.engine.runtime import Amp, autocast, batch_format, use_amp, use_channels_last
from fbench.engine.sampling import class_balanced_weights, epoch_order, stream_generator
from fbench.engine.stopping import BestTracker
from fbench.engine.tensors import EvalData, TrainData
from fbench.errors import FbenchError

EpochCallback = Callable[[dict[str, Any]], None]
# The resume checkpoint holds about 3x the weights (Adam's moments): written after every epoch, ResNet-18's 134 MB
# would cost more than a short GPU epoch. It is written after the first epoch, after every new best epoch (the
# best-weights file goes with it) and otherwise once this many seconds have passed since the last write.
RESUME_EVERY_SECONDS = 20.0


@dataclass(frozen=True)
class TrainSettings:
    """How :func:`train_model` trains: the recipe and spec, where and how fast, and what it leaves behind.

    - ``recipe``: optimiser, schedule, epochs, batch size, loss, early stopping, augmentation and sampler;
      ``epochs`` overrides its epochs.
    - ``spec``: the architecture's spec; its mean/std normalise every batch, training and validation.
    - ``device``, ``seed``: where to run; the seed fixes the global RNG (dropout), the sample order and the
      augmentation draws: the same seed gives the same history on CPU.
    - ``amp``: bf16 autocast, on CUDA only ("auto" or True); ``channels_last``: that memory format on CUDA;
      ``compile``: ``model.compile()`` (compiles ``forward`` in place; a ``training_loss`` hook runs uncompiled);
      ``eval_batch_size``: batch size of the validation passes.
    - ``residency``: where the training images live: ``auto`` (on the device when they fit in half its free
      memory, else streamed from pinned host memory in chunks), ``device`` or ``stream``. Both give the same
      batches in the same order (offline-augmented sets that stream are expanded on the host, with their own
      draws).
    - ``checkpoint_path``: where to keep the best epoch's state dict (written atomically on each improvement);
      ``on_epoch``: called with each epoch's history dict (log it, or raise to stop, e.g. Optuna pruning).
    - ``resume_path``: where to keep the resume checkpoint (``fbench.engine.checkpoint.ResumeCheckpoint``),
      written at the end of every epoch; when it holds one of the same configuration at the start, training
      continues after its epoch and ends as an uninterrupted run would. The caller deletes it when done (it is
      not used under a data-parallel plan). ``on_resume``: called with one line when training resumes, or
      discards an unusable checkpoint there. ``resume_every_seconds``: between the first epoch and the last, an
      epoch without a new best writes the checkpoint only when this long has passed since the last write (0:
      every epoch), so a kill loses at most one epoch or this many seconds of training, whichever is longer.
    - ``parallel``: this process's share of a data-parallel cell (``fbench.engine.distributed``); default: the
      active plan under torchrun, else None (one process).
    """

    recipe: Recipe
    spec: ArchitectureSpec
    device: torch.device | str = "cpu"
    seed: int = 0
    epochs: int | None = None
    amp: Amp = "auto"
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 512
    residency: Residency = "auto"
    checkpoint_path: str | os.PathLike[str] | None = None
    on_epoch: EpochCallback | None = None
    parallel: ParallelPlan | None = None
    resume_path: str | os.PathLike[str] | None = None
    on_resume: Callable[[str], None] | None = None
    resume_every_seconds: float = RESUME_EVERY_SECONDS


@dataclass
class TrainResult:
    """What training did.

    ``history`` has one dict per epoch (``epoch`` counts from 1; ``val_loss``/``val_accuracy`` are None without
    a validation split; ``lr`` is the default group's rate during the epoch; ``seconds`` its wall time,
    validation included; ``train_seconds`` the training batches alone, ``val_seconds`` the validation pass).
    ``setup_seconds``: the work before the first epoch (moving the images, the offline expansion).
    ``best_epoch`` is the epoch with the best ``monitor`` value on the validation split (None without one);
    ``final_state`` says whether the model now holds the ``"last"`` weights or the ``"best"`` (restored)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    final_state: Literal["last", "best"] = "last"
    monitor: str | None = None
    best_value: float | None = None
    checkpoint_path: Path | None = None
    setup_seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def _synchronized_seconds(device: torch.device, start: float) -> float:
    """Seconds since ``start`` once the device has finished its queued work (one sync per epoch on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def selection_monitor(recipe: Recipe) -> str:
    """The validation metric that picks the best epoch: early stopping's, else ReduceLROnPlateau's, else
    ``val_loss``."""
    if recipe.early_stopping is not None:
        return recipe.early_stopping.monitor
    if recipe.schedule.kind == "reduce_on_plateau":
        return plateau_monitor(recipe)
    return "val_loss"


def evaluation_sums(model: nn.Module, data: EvalData, spec: ArchitectureSpec, criterion: nn.Module, *,
                    batch_size: int = 512, amp: bool = False, channels_last: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of per-sample losses, number correct) over ``data`` in eval mode, as device tensors.

    The loss is the training loss (``compute_loss``, label smoothing included), as Keras reports ``val_loss``."""
    was_training = model.training
    model.eval()
    device = data.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = len(data)
    with torch.inference_mode():
        for begin in range(0, n, batch_size):
            count = min(batch_size, n - begin)
            images = batch_format(eval_transform(data.images[begin:begin + count], spec), channels_last)
            targets = data.labels[begin:begin + count]
            with autocast(device, amp):
                loss, logits = compute_loss(model, images, targets, criterion)
            loss_sum += loss.double() * count
            correct += (logits.argmax(dim=1) == targets).sum()
    model.train(was_training)
    return loss_sum, correct


def _non_finite(what: str, epoch: int, lr: float) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"the {what} in epoch {epoch} (lr {lr:.3g}). Lower the learning rate (the recipe's lr "
        "or lr_groups, e.g. --set recipe.lr=...) and check the inputs: images must be finite and labels in "
        "0..num_classes-1", epoch=epoch, lr=lr)


def _needs_validation(recipe: Recipe) -> str | None:
    if recipe.early_stopping is not None:
        return "early stopping"
    if recipe.schedule.kind == "reduce_on_plateau":
        return "the reduce_on_plateau schedule"
    return None


def _resume_checkpoint(settings: TrainSettings, epochs: int, device: torch.device, model: nn.Module,
                       images: torch.Tensor, labels: torch.Tensor, val: EvalData | None, amp_on: bool, cl: bool,
                       parallel: ParallelPlan | None, generators: dict[str, torch.Generator]
                       ) -> ResumeCheckpoint | None:
    """The training's resume checkpoint, keyed by everything its course depends on; None without a
    ``resume_path`` or under a data-parallel plan (the ranks would have to agree on it)."""
    if settings.resume_path is None or (parallel is not None and parallel.world_size > 1):
        return None
    key = fingerprint({
        "recipe": settings.recipe, "spec": settings.spec, "seed": settings.seed, "epochs": epochs,
        "device": device.type, "amp": amp_on, "channels_last": cl, "compile": settings.compile,
        "eval_batch_size": settings.eval_batch_size, "train": list(images.shape),
        "labels": torch.bincount(labels).tolist(), "val": len(val) if val is not None else None,
        "model": [[name, list(value.shape)] for name, value in model.state_dict().items()]})
    return ResumeCheckpoint(settings.resume_path, key, generators, device)


def _resume(resume: ResumeCheckpoint, settings: TrainSettings, epochs: int, model: nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, tracker: BestTracker, result: TrainResult,
            checkpoint: Path | None, restore_best: bool) -> tuple[int, dict[str, torch.Tensor] | None]:
    """Restore the state of the resume checkpoint, if usable: (the first epoch to run, the best weights held in
    memory)."""
    note = settings.on_resume or (lambda text: None)
    resumed = resume.load(model, optimizer, scheduler, tracker, note)
    if resumed is None:
        return 1, None
    result.history = resumed.history
    best = resumed.best_state
    if tracker.best_epoch == resumed.epoch:  # the best weights are the model's own (the best file may lag behind)
        if checkpoint is not None:
            save_state(model, checkpoint)
        elif restore_best:
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    note(resumed.describe(epochs, tracker.should_stop))
    if tracker.should_stop:
        result.stopped_early = True
        return epochs + 1, best
    return resumed.epoch + 1, best


def train_model(model: nn.Module, train: TrainData, val: EvalData | None, settings: TrainSettings) -> TrainResult:
    """Train ``model`` in place on ``train`` under ``recipe``; select and stop on ``val`` (never on test).

    ``model`` is any model under the architecture contract (logits, or ``training_loss`` for several heads);
    ``train`` and ``val`` are the cell's training and validation splits (uint8 images; moved to the device if
    elsewhere); ``settings`` says how (see :class:`TrainSettings`).

    Raises:
        NonFiniteLossError: a NaN or infinite loss (or weights), naming the epoch, the lr and the fix.
        FbenchError: early stopping or ReduceLROnPlateau without a validation split.
    """
    recipe, spec, seed = settings.recipe, settings.spec, settings.seed
    device = torch.device(settings.device)
    epochs = recipe.epochs if settings.epochs is None else int(settings.epochs)
    if epochs < 1:
        raise FbenchError(f"epochs must be at least 1 (got {epochs})")
    needs = _needs_validation(recipe)
    if val is None and needs is not None:
        raise FbenchError(f"{needs} in the recipe monitors the validation split, but the cell has none; give the "
                          "split a validation part (carved from train) or turn it off in the recipe")
    setup_start = time.perf_counter()
    torch.manual_seed(seed)
    parallel = settings.parallel if settings.parallel is not None else active_plan()
    amp_on = use_amp(settings.amp, device)
    cl = use_channels_last(settings.channels_last, device)
    val = val.to(device) if val is not None else None
    model.to(device)
    if cl:
        model.to(memory_format=torch.channels_last)
    if settings.compile:
        model.compile()

    augment = BatchAugment.from_recipe(recipe, spec)
    images, labels = train.images, train.labels.to(device)
    # The expanded set decides where the images live; streamed sets are expanded on the host.
    placement = choose_residency(images, device, settings.residency, copies=augment.offline_copies)
    expand_on = device if placement == "device" else torch.device("cpu")
    images = images.to(expand_on)
    if recipe.augmentation_mode == "offline" and augment.augments:
        images, source = augment.expand_offline(images, stream_generator(seed, "offline", expand_on))
        labels = labels.index_select(0, source.to(device))
    n, batch_size = images.shape[0], recipe.batch_size
    batches = batch_source(images, device, batch_size, placement)
    steps_per_epoch = math.ceil(n / batch_size)

    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, epochs, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    sampler_generator = stream_generator(seed, "sampler", device)
    augment_generator = stream_generator(seed, "augment", device)
    weights = class_balanced_weights(labels) if recipe.sampler == "class_balanced" else None

    restore_best = recipe.early_stopping is not None and recipe.early_stopping.restore_best
    tracker = BestTracker.for_recipe(recipe.early_stopping, selection_monitor(recipe))
    checkpoint = Path(settings.checkpoint_path) if settings.checkpoint_path is not None else None
    best_in_memory: dict[str, torch.Tensor] | None = None
    result = TrainResult(monitor=tracker.monitor if val is not None else None, checkpoint_path=checkpoint)
    trainable = [p for p in model.parameters() if p.requires_grad]
    lr = group_lr(optimizer)
    main = parallel is None or parallel.is_main  # the process that writes the checkpoint
    parallel_forward = parallel.loss_forward(model, criterion) if parallel is not None else None
    resume = _resume_checkpoint(settings, epochs, device, model, images, labels, val, amp_on, cl, parallel,
                                {"sampler": sampler_generator, "augment": augment_generator})
    result.setup_seconds = _synchronized_seconds(device, setup_start)
    first, resume_saved = 1, time.perf_counter()
    if resume is not None:
        first, best_in_memory = _resume(resume, settings, epochs, model, optimizer, scheduler.torch_scheduler,
                                        tracker, result, checkpoint, restore_best)
        lr = group_lr(optimizer)

    for epoch in range(first, epochs + 1):
        start = time.perf_counter()
        lr = group_lr(optimizer)
        model.train()
        start_training_epoch(model, epoch)  # the model's own per-epoch hook, if any (fbench.contract)
        order = epoch_order(n, recipe.sampler, sampler_generator, weights)
        batches.start_epoch(order)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for begin in range(0, n, batch_size):  # the last partial batch is kept, as Keras does
            count = min(batch_size, n - begin)
            rows = order[begin:begin + count]
            batch = batch_format(augment(batches.batch(begin, count), augment_generator), cl)
            targets = labels.index_select(0, rows)
            scale, counted = 1.0, True
            if parallel is not None:  # this rank's share of the batch, augmented as a whole on every rank
                share, scale, counted = parallel.share(count)
                batch, targets = batch[share], targets[share]
            with autocast(device, amp_on):
                if parallel_forward is None:
                    loss, logits = compute_loss(model, batch, targets, criterion)
                else:
                    loss, logits = parallel_forward(batch, targets)
            optimizer.zero_grad(set_to_none=True)
            (loss * scale if scale != 1.0 else loss).backward()
            optimizer.step()
            scheduler.step_batch()
            if counted:
                loss_sum += loss.detach().double() * targets.shape[0]
                correct += (logits.detach().argmax(dim=1) == targets).sum()

        train_seconds = _synchronized_seconds(device, start)
        sums = [loss_sum, correct.double()]
        if parallel is not None:  # the whole epoch's sums, and rank 0's BatchNorm statistics, on every rank
            sums = parallel.sum_over_ranks(sums)
            parallel.broadcast_buffers(model)
        val_start = time.perf_counter()
        if val is not None:
            val_loss_sum, val_correct = evaluation_sums(model, val, spec, criterion,
                                                        batch_size=settings.eval_batch_size,
                                                        amp=amp_on, channels_last=cl)
            sums += [val_loss_sum, val_correct.double()]
        values = torch.stack(sums).tolist()  # the epoch's one host read
        val_seconds = time.perf_counter() - val_start if val is not None else 0.0
        record: dict[str, Any] = {"epoch": epoch, "train_loss": values[0] / n, "train_accuracy": values[1] / n,
                                  "val_loss": None, "val_accuracy": None, "lr": lr}
        improved = False
        if not math.isfinite(record["train_loss"]):
            raise _non_finite(f"training loss became {record['train_loss']}", epoch, lr)
        if val is not None:
            record["val_loss"], record["val_accuracy"] = values[2] / len(val), values[3] / len(val)
            if not math.isfinite(record["val_loss"]):
                raise _non_finite(f"validation loss became {record['val_loss']}", epoch, lr)
            improved = tracker.update(epoch, record[tracker.monitor])
            if improved:
                if checkpoint is not None and main:
                    if resume is None:  # else written after the resume checkpoint, from its copy
                        save_state(model, checkpoint)
                elif restore_best:
                    best_in_memory = {k: v.detach().clone() for k, v in model.state_dict().items()}
        scheduler_step(scheduler, record if val is not None else None)
        record["seconds"] = time.perf_counter() - start
        record["images_per_second"] = n / record["seconds"]  # training images over the epoch's wall time
        record["train_seconds"], record["val_seconds"] = train_seconds, val_seconds
        result.history.append(record)
        if resume is not None and (improved or epoch == first or
                                   time.perf_counter() - resume_saved >= settings.resume_every_seconds):
            resume.save(epoch, model, optimizer, scheduler.torch_scheduler, tracker, result.history,
                        best_in_memory if tracker.best_epoch != epoch else None,
                        checkpoint if improved and checkpoint is not None else None)
            resume_saved = time.perf_counter()
        if settings.on_epoch is not None:
            settings.on_epoch(dict(record))
        if tracker.should_stop:
            result.stopped_early = True
            break
    if resume is not None:
        resume.flush()  # the last epoch's checkpoints are on disk (the best file is read back below)

    # The last optimiser step can break the weights after the last loss was measured.
    if trainable and not bool(torch.stack([p.detach().isfinite().all() for p in trainable]).all()):
        raise _non_finite("weights became NaN or infinite", result.epochs_run, lr)
    if val is not None:
        result.best_epoch, result.best_value = tracker.best_epoch, tracker.best
    if restore_best and result.best_epoch is not None:
        if checkpoint is not None and main:
            load_state(model, checkpoint)
        elif best_in_memory is not None:
            model.load_state_dict(best_in_memory)
        result.final_state = "best"
    model.eval()
    return result
