"""The engine: optimiser and schedules from recipes, the training loop, checkpoints and predictions (CPU, tiny)."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable

import pandas as pd
import pytest
import torch
from torch import nn

from fbench.contract import ArchitectureSpec, Augment, EarlyStopping, Recipe, Schedule
from fbench.data.transforms import BatchAugment
from fbench.engine import (
    EvalData,
    NonFiniteLossError,
    TrainData,
    TrainSettings,
    build_optimizer,
    build_scheduler,
    load_state,
    param_groups,
    predict_logits,
    predictions_frame,
    save_state,
    scheduler_step,
    train_model,
)
from fbench.engine.sampling import class_balanced_weights, epoch_order, stream_generator
from fbench.errors import FbenchError
from fbench.registry import get_architecture

SIZE = 8
SPEC = ArchitectureSpec(input_size=(1, SIZE, SIZE), mean=(0.5,), std=(0.25,), recipe=Recipe(), num_classes=4)
QUICK = Recipe(optimizer="adam", lr=0.02, epochs=4, batch_size=16)


# ------------------------------------------------------------------------------------------------ fixtures


def quadrants(n: int, seed: int, size: int = SIZE, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images where the class (0..3) is the bright quadrant: trivially separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.rand(n, channels, size, size, generator=g) * 0.3
    half = size // 2
    for k in range(4):
        rows = labels == k
        r, c = divmod(k, 2)
        images[rows, :, r * half:(r + 1) * half, c * half:(c + 1) * half] += 0.6
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def split(n: int, seed: int, prefix: str, cls: type = TrainData, **kwargs: int) -> EvalData:
    images, labels = quadrants(n, seed, **kwargs)
    return cls(images, labels, tuple(f"{prefix}{i}" for i in range(n)))


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4, channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.trunk(x).flatten(1)))


def tiny(seed: int = 0, **kwargs: float) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs)


def fit(model: nn.Module, recipe: Recipe, train: EvalData | None = None, val: EvalData | None = None,
        seed: int = 0, **kwargs):
    train = train if train is not None else split(64, 1, "t")
    val = val if val is not None else split(32, 2, "v", EvalData)
    return train_model(model, train, val, TrainSettings(recipe, SPEC, device="cpu", seed=seed, **kwargs))


def without_time(history: list[dict]) -> list[dict]:
    timings = ("seconds", "images_per_second", "train_seconds", "val_seconds")
    return [{k: v for k, v in h.items() if k not in timings} for h in history]


# ------------------------------------------------------------------------------------------------ learning


def test_a_tiny_model_learns_the_quadrant_task() -> None:
    result = fit(tiny(), dataclasses.replace(QUICK, epochs=6), split(128, 1, "t"))
    assert [h["epoch"] for h in result.history] == list(range(1, 7))
    assert set(result.history[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                      "seconds", "images_per_second", "train_seconds", "val_seconds"}
    assert all(h["images_per_second"] == pytest.approx(128 / h["seconds"]) for h in result.history)
    # the training batches and the validation pass are timed apart, within the epoch's wall time
    assert all(h["train_seconds"] > 0 and h["val_seconds"] > 0 for h in result.history)
    assert all(h["train_seconds"] + h["val_seconds"] <= h["seconds"] for h in result.history)
    assert result.setup_seconds > 0
    assert result.history[-1]["val_accuracy"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final_state == "last" and not result.stopped_early
    assert result.best_epoch is not None and result.monitor == "val_loss"


def test_same_seed_same_history_and_weights_different_seed_differs() -> None:
    recipe = dataclasses.replace(QUICK, epochs=2, augmentation=(
        Augment("hflip"), Augment("color_jitter", {"brightness": 0.3, "contrast": 0.3})))
    runs = []
    for seed in (3, 3, 4):
        model = tiny(0, dropout=0.3)
        runs.append((without_time(fit(model, recipe, seed=seed).history), model.state_dict()))
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert h1 == h2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1 != h3
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_train_model_takes_no_test_split() -> None:
    names = [n.lower() for n in inspect.signature(train_model).parameters]
    settings = [f.name.lower() for f in dataclasses.fields(TrainSettings)]
    assert not [n for n in names + settings if "test" in n]
    assert names == ["model", "train", "val", "settings"]


def test_validation_is_required_for_early_stopping_and_plateau() -> None:
    train = split(16, 1, "t")
    for recipe in (dataclasses.replace(QUICK, early_stopping=EarlyStopping()),
                   dataclasses.replace(QUICK, schedule=Schedule("reduce_on_plateau", {"patience": 1}))):
        with pytest.raises(FbenchError, match="validation split"):
            train_model(tiny(), train, None, TrainSettings(recipe, SPEC, device="cpu", seed=0))
    result = train_model(tiny(), train, None, TrainSettings(dataclasses.replace(QUICK, epochs=1), SPEC, device="cpu",
                                                                 seed=0))
    assert result.history[0]["val_loss"] is None and result.best_epoch is None


# ------------------------------------------------------------------------------ early stopping, checkpoints

# min_delta larger than any possible change: epoch 1 stays the best, so training stops after `patience` more.
NEVER_BETTER = EarlyStopping(monitor="val_loss", patience=2, min_delta=100.0)


def _snapshots(model: nn.Module) -> tuple[list[dict], Callable[[dict], None]]:
    states: list[dict] = []
    return states, lambda record: states.append({k: v.clone() for k, v in model.state_dict().items()})


def test_early_stopping_stops_and_keeps_last_weights(tmp_path) -> None:
    model = tiny()
    states, snapshot = _snapshots(model)
    result = fit(model, dataclasses.replace(QUICK, epochs=20, early_stopping=NEVER_BETTER), on_epoch=snapshot,
                 checkpoint_path=tmp_path / "best.pt")
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert result.final_state == "last"
    assert all(torch.equal(v, states[-1][k]) for k, v in model.state_dict().items())
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(saved[k], states[0][k]) for k in saved)  # the checkpoint holds the best epoch
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary files left behind


@pytest.mark.parametrize("with_file", [True, False])
def test_restore_best_loads_the_best_epoch(tmp_path, with_file: bool) -> None:
    model = tiny()
    states, snapshot = _snapshots(model)
    stopping = dataclasses.replace(NEVER_BETTER, restore_best=True)
    result = fit(model, dataclasses.replace(QUICK, epochs=20, early_stopping=stopping), on_epoch=snapshot,
                 checkpoint_path=tmp_path / "best.pt" if with_file else None)
    assert result.final_state == "best" and result.best_epoch == 1
    assert all(torch.equal(v, states[0][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, states[-1][k]) for k, v in model.state_dict().items())


def test_early_stopping_on_accuracy_follows_improvements() -> None:
    stopping = EarlyStopping(monitor="val_accuracy", patience=3)
    result = fit(tiny(), dataclasses.replace(QUICK, epochs=5, early_stopping=stopping))
    accuracies = [h["val_accuracy"] for h in result.history]
    assert result.monitor == "val_accuracy"
    assert result.best_value == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    save_state(tiny(0), path)
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_state(tiny(1), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    monkeypatch.undo()
    restored = load_state(tiny(2), path)
    assert all(torch.equal(v, tiny(0).state_dict()[k]) for k, v in restored.state_dict().items())


# ------------------------------------------------------------------------------------ optimiser, schedules


class TwoPart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
        self.trunked = nn.Linear(3, 3)  # shares the prefix's letters, not its module path
        self.head = nn.Linear(3, 2)


def test_lr_groups_give_each_group_its_rate() -> None:
    recipe = Recipe(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-3, lr_groups={"trunk": 1e-4})
    model = TwoPart()
    optimizer = build_optimizer(model, recipe)
    assert isinstance(optimizer, torch.optim.SGD)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["trunk"]["lr"] == 1e-4 and groups["default"]["lr"] == 0.01
    assert {id(p) for p in groups["trunk"]["params"]} == {id(p) for p in model.trunk.parameters()}
    assert len(groups["default"]["params"]) == 4  # trunked + head, weights and biases
    assert all(g["weight_decay"] == 1e-3 and g["momentum"] == 0.9 for g in optimizer.param_groups)
    # an lr override moves the base rate only, as replacing recipe.lr would
    assert {g["name"]: g["lr"] for g in param_groups(model, recipe, lr=0.1)} == {"trunk": 1e-4, "default": 0.1}
    with pytest.raises(FbenchError, match="match no trainable parameter"):
        build_optimizer(model, dataclasses.replace(recipe, lr_groups={"backbone": 1e-4}))


def test_optimizer_kinds_follow_the_recipe() -> None:
    adam = build_optimizer(TwoPart(), Recipe(optimizer="adam", lr=1e-3, betas=(0.8, 0.9), eps=1e-7))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["eps"] == 1e-7
    assert adam.param_groups[0]["betas"] == (0.8, 0.9)
    adamw = build_optimizer(TwoPart(), Recipe(optimizer="adamw", lr=1e-3, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05


def lrs(schedule: Schedule, epochs: int, steps_per_epoch: int = 1, lr: float = 1.0) -> list[float]:
    """The lr at the start of each epoch under ``schedule``."""
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for group in optimizer.param_groups:
        group["name"] = "default"
    scheduler = build_scheduler(optimizer, Recipe(lr=lr, schedule=schedule), epochs, steps_per_epoch)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            optimizer.step()
            scheduler.step_batch()
        scheduler_step(scheduler, {"val_loss": 1.0, "val_accuracy": 0.5})
    return seen


def test_epoch_schedules() -> None:
    assert lrs(Schedule("constant"), 3) == [1.0, 1.0, 1.0]
    assert lrs(Schedule("exponential", {"gamma": 0.5}), 3) == pytest.approx([1.0, 0.5, 0.25])
    assert lrs(Schedule("step", {"step_size": 2, "gamma": 0.1}), 5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lrs(Schedule("step", {"milestones": [1, 3]}), 4) == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = lrs(Schedule("cosine", {"warmup_epochs": 1, "eta_min": 0.0}), 5)
    expected = [0.5] + [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert cosine == pytest.approx(expected)
    # plateau: the metric never improves, so each `patience + 1` bad epochs cut the lr (torch's counting)
    plateau = lrs(Schedule("reduce_on_plateau", {"factor": 0.1, "patience": 1}), 6)
    assert plateau == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01])


def test_batch_schedules_step_every_batch() -> None:
    assert lrs(Schedule("exponential", {"gamma": 0.5}, step_per="batch"), 3, steps_per_epoch=4) == \
        pytest.approx([1.0, 0.5, 0.25])
    cosine = lrs(Schedule("cosine", {}, step_per="batch"), 2, steps_per_epoch=4)
    assert cosine == pytest.approx([1.0, 0.5])  # half way through the cosine after one epoch of two
    with pytest.raises(FbenchError, match="step_per: epoch"):
        lrs(Schedule("reduce_on_plateau", step_per="batch"), 1)
    with pytest.raises(FbenchError, match="accepted"):
        lrs(Schedule("exponential", {"gama": 0.5}), 1)


def test_reduce_on_plateau_lowers_the_lr_in_training() -> None:
    schedule = Schedule("reduce_on_plateau", {"factor": 0.1, "patience": 1, "threshold": 100.0,
                                              "threshold_mode": "abs", "monitor": "val_loss"})
    result = fit(tiny(), dataclasses.replace(QUICK, lr=0.01, epochs=4, schedule=schedule))
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.01, 0.01, 0.001])


def test_group_rates_follow_the_schedule_in_training() -> None:
    recipe = dataclasses.replace(QUICK, optimizer="sgd", lr=0.01, lr_groups={"trunk": 1e-4}, epochs=3,
                                 schedule=Schedule("exponential", {"gamma": 0.5}))
    result = fit(tiny(), recipe)
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.005, 0.0025])


# -------------------------------------------------------------------------------- augmentation and sampling


def test_offline_augmentation_multiplies_the_training_set_by_four() -> None:
    arch = get_architecture("lanmsff")
    spec = arch.spec.with_input(image_size=32)
    recipe = dataclasses.replace(spec.recipe, epochs=2, batch_size=16)
    assert recipe.augmentation_mode == "offline" and len(recipe.augmentation) == 4
    torch.manual_seed(0)
    model = arch.build(4)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]) if module.training else None)
    images, labels = quadrants(6, 1, size=32)
    train = TrainData(images, labels, tuple(map(str, range(6))))
    val = EvalData(images, labels, tuple(map(str, range(6))))
    result = train_model(model, train, val, TrainSettings(recipe, spec, device="cpu", seed=0))
    assert len(result.history) == 2
    assert seen == [16, 8] * 2  # 4 x 6 = 24 rows per epoch


def test_offline_expansion_is_seeded() -> None:
    augment = BatchAugment.from_recipe(get_architecture("lanmsff").spec.recipe, SPEC)
    images = quadrants(6, 0, size=16)[0]
    one, source = augment.expand_offline(images, stream_generator(5, "offline", torch.device("cpu")))
    two, _ = augment.expand_offline(images, stream_generator(5, "offline", torch.device("cpu")))
    assert one.shape[0] == 24 and torch.equal(one, two) and torch.equal(source, torch.arange(6).repeat(4))


def test_online_augmentation_runs_on_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = BatchAugment.__call__

    def counting(self, images, generator):
        calls.append(images.shape[0])
        return original(self, images, generator)

    monkeypatch.setattr(BatchAugment, "__call__", counting)
    recipe = dataclasses.replace(QUICK, epochs=2, batch_size=24, augmentation=(Augment("hflip"),))
    fit(tiny(), recipe, split(64, 1, "t"))
    assert calls == [24, 24, 16] * 2  # the last partial batch is kept


class RecordingHeads(nn.Module):
    """A two-head model with its own training loss (the multi-head contract); records what it is trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(SIZE * SIZE, 4)
        self.b = nn.Linear(SIZE * SIZE, 4)
        self.targets: list[torch.Tensor] = []
        self.hook_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (self.a(flat) + self.b(flat)) / 2

    def training_loss(self, images, targets, criterion):
        if self.training:
            self.hook_calls += 1
            self.targets.append(targets.clone())
        flat = images.flatten(1)
        heads = [self.a(flat), self.b(flat)]
        return 0.2 * criterion(heads[0], targets) + 0.8 * criterion(heads[1], targets), sum(heads) / 2


def test_multi_head_models_train_through_their_training_loss() -> None:
    model = RecordingHeads()
    result = fit(model, dataclasses.replace(QUICK, epochs=2, batch_size=16))
    assert model.hook_calls == 2 * 4
    assert result.history[-1]["train_accuracy"] > 0


class EpochHooked(TinyNet):
    """Records each epoch-start call and the mode it finds; from epoch 2 it puts its BatchNorm in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.calls: list[tuple[int, bool]] = []
        self.norm_modes: list[bool] = []

    def train_epoch_start(self, epoch: int) -> None:
        self.calls.append((epoch, self.training))
        if epoch > 1:
            self.norm.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.norm_modes.append(self.norm.training)
        return super().forward(self.norm(x))


def test_the_epoch_start_hook_runs_after_train_mode_every_epoch() -> None:
    torch.manual_seed(0)
    model = EpochHooked()
    fit(model, dataclasses.replace(QUICK, epochs=3, batch_size=32))
    assert model.calls == [(1, True), (2, True), (3, True)]  # after model.train(), once per epoch
    # 64 images in batches of 32: BatchNorm trains in epoch 1 only, although validation re-enters train mode
    assert model.norm_modes == [True, True, False, False, False, False]


def test_class_balanced_sampler_draws_classes_evenly() -> None:
    labels = torch.tensor([0] * 900 + [1] * 100)
    order = epoch_order(1000, "class_balanced", stream_generator(0, "sampler", torch.device("cpu")),
                        class_balanced_weights(labels))
    assert order.shape == (1000,) and 0.42 < labels[order].float().mean().item() < 0.58
    permutation = epoch_order(1000, "shuffle", stream_generator(0, "sampler", torch.device("cpu")))
    assert torch.equal(permutation.sort().values, torch.arange(1000))

    images, _ = quadrants(200, 1)
    imbalanced = torch.tensor([0] * 180 + [1] * 20)
    model = RecordingHeads()
    fit(model, dataclasses.replace(QUICK, epochs=3, batch_size=50, sampler="class_balanced"),
        TrainData(images, imbalanced, tuple(map(str, range(200)))))
    drawn = torch.cat(model.targets)
    assert drawn.numel() == 600 and 0.4 < drawn.float().mean().item() < 0.6


# ---------------------------------------------------------------------------------------------- NaN losses


class NaNNet(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


def test_nan_loss_raises_with_the_epoch_and_the_fix() -> None:
    with pytest.raises(NonFiniteLossError, match="epoch 1") as caught:
        fit(NaNNet(), QUICK)
    assert "learning rate" in str(caught.value) and caught.value.epoch == 1
    assert isinstance(caught.value, FbenchError)


def test_exploding_learning_rate_raises() -> None:
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate"):
        fit(tiny(), dataclasses.replace(QUICK, optimizer="sgd", lr=1e30, epochs=3))


# -------------------------------------------------------------------------------------------- predictions


def test_predict_logits_shape_and_batch_size_independence() -> None:
    model = tiny()
    data = split(20, 3, "p", EvalData)
    logits = predict_logits(model, data.images, SPEC, device="cpu", batch_size=3)
    assert logits.shape == (20, 4) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert torch.equal(logits, predict_logits(model, data.images, SPEC, device="cpu", batch_size=512))
    assert torch.equal(logits, predict_logits(model, data.images, SPEC, device="cpu", condition="clean"))
    model.train()
    predict_logits(model, data.images, SPEC, device="cpu")
    assert model.training  # the mode is restored


def test_predict_logits_under_a_condition_is_deterministic_and_keyed_by_sample() -> None:
    spec = dataclasses.replace(SPEC, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
    model = tiny(channels=3)
    images, _ = quadrants(6, 4, size=32, channels=3)
    ids = [f"s{i}" for i in range(6)]
    clean = predict_logits(model, images, spec, device="cpu")
    masked = predict_logits(model, images, spec, device="cpu", condition="mask:kind=surgical", sample_ids=ids,
                            batch_size=4)
    again = predict_logits(model, images, spec, device="cpu", condition="mask:kind=surgical", sample_ids=ids,
                           batch_size=512)
    assert not torch.allclose(clean, masked)
    assert torch.equal(masked, again)
    with pytest.raises(FbenchError, match="sample id"):
        predict_logits(model, images, spec, device="cpu", condition="mask:kind=surgical")


def test_predictions_frame_has_the_metrics_columns() -> None:
    logits = torch.tensor([[0.1, 2.0, 0.3], [3.0, 0.0, 0.0]])
    frame = predictions_frame(logits, torch.tensor([1, 2]), ["a", "b"], "clean", poses=["FL", "S"])
    assert list(frame.columns) == ["condition", "sample_id", "label", "pred", "pose", "subject", "logit_0",
                                   "logit_1", "logit_2"]
    assert frame["pred"].tolist() == [1, 0] and frame["label"].tolist() == [1, 2]
    assert frame["pose"].tolist() == ["FL", "S"] and frame["subject"].tolist() == ["", ""]
    assert frame["condition"].eq("clean").all() and frame["logit_1"].iloc[0] == pytest.approx(2.0)
    from fbench.score.metrics import condition_metrics

    assert isinstance(condition_metrics(frame, 3), pd.DataFrame)
    with pytest.raises(FbenchError, match="line up"):
        predictions_frame(logits, torch.tensor([1]), ["a", "b"], "clean")


def test_eval_data_from_a_cache() -> None:
    from fbench.data.cache import CachedImages

    images, labels = quadrants(5, 0)
    cache = CachedImages(images, labels, torch.full((5, 6, 2), math.nan), [f"id{i}" for i in range(5)],
                         [""] * 5, "key", None, True, {})
    data = EvalData.from_cache(cache, ["id3", "id1"])
    assert torch.equal(data.images, images[[3, 1]]) and data.labels.tolist() == [labels[3], labels[1]]
    assert data.sample_ids == ("id3", "id1")
    with pytest.raises(FbenchError):
        EvalData(images, labels[:3], tuple("abcde"))
