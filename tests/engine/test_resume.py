"""Mid-training resume: a training interrupted after epoch k and resumed from its resume checkpoint ends exactly as
an uninterrupted one (CPU: the same predictions, weights and history); a damaged or foreign checkpoint is discarded
with one line and training starts from epoch 1."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fbench.contract import ArchitectureSpec, Augment, EarlyStopping, Recipe, Schedule
from fbench.engine import EvalData, TrainData, TrainSettings, predict_logits, train_model
from fbench.engine.checkpoint import RESUME_KEYS, ResumeCheckpoint
from fbench.engine.stopping import BestTracker

SIZE = 8
SPEC = ArchitectureSpec(input_size=(1, SIZE, SIZE), mean=(0.5,), std=(0.25,), recipe=Recipe(), num_classes=4)
EPOCHS = 4
AUGMENT = (Augment("hflip"), Augment("random_resized_crop", {"scale": (0.6, 1.0)}))
RECIPES = {
    # online augmentation, dropout, AdamW, a cosine schedule stepped per batch, restore_best from the best file
    "online, cosine per batch, restore best": Recipe(
        optimizer="adamw", lr=0.02, weight_decay=0.01, epochs=EPOCHS, batch_size=16, augmentation=AUGMENT,
        schedule=Schedule("cosine", {"warmup_epochs": 1}, step_per="batch"), label_smoothing=0.1,
        early_stopping=EarlyStopping(patience=50, restore_best=True)),
    # offline augmentation, SGD with momentum, ReduceLROnPlateau, class-balanced sampling
    "offline, plateau, class balanced": Recipe(
        optimizer="sgd", lr=0.05, epochs=EPOCHS, batch_size=16, augmentation=AUGMENT, augmentation_mode="offline",
        schedule=Schedule("reduce_on_plateau", {"factor": 0.5, "patience": 0}), sampler="class_balanced"),
}


def quadrants(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class (0..3) is the bright quadrant."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.3
    for k in range(4):
        r, c = divmod(k, 2)
        images[labels == k, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] += 0.6
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


TRAIN = TrainData(*quadrants(48, 1), tuple(f"t{i}" for i in range(48)))
VAL = EvalData(*quadrants(24, 2), tuple(f"v{i}" for i in range(24)))
TEST = quadrants(40, 3)[0]


class Noisy(nn.Module):
    """A tiny net with dropout whose epoch hook draws from Python's and numpy's global generators (kept in a
    buffer that scales the logits), so that a resume must restore those streams too."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(16, 4)
        self.register_buffer("scale", torch.ones(()))

    def train_epoch_start(self, epoch: int) -> None:
        self.scale.fill_(1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.trunk(x).flatten(1))) * self.scale


class Interrupted(Exception):
    pass


def fresh() -> Noisy:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    return Noisy()


def settings(recipe: Recipe, folder: Path, **kwargs) -> TrainSettings:
    kwargs.setdefault("resume_every_seconds", 0.0)  # every epoch: the tests interrupt after a given one
    return TrainSettings(recipe, SPEC, device="cpu", seed=3, checkpoint_path=folder / "best.pt",
                         resume_path=folder / "resume.pt", **kwargs)


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if not k.endswith(("seconds", "per_second"))} for h in history]


def stop_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Interrupted(f"stopped after epoch {epoch}")
    return on_epoch


@dataclasses.dataclass
class Reference:
    """An uninterrupted training: its folder, history (without times), test logits and final weights."""

    folder: Path
    history: list[dict]
    logits: torch.Tensor
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    """Each recipe trained once, uninterrupted."""
    done = {}
    for name, recipe in RECIPES.items():
        folder = tmp_path_factory.mktemp("uninterrupted")
        model = fresh()
        result = train_model(model, TRAIN, VAL, settings(recipe, folder))
        done[name] = Reference(folder, without_time(result.history), predict_logits(model, TEST, SPEC, device="cpu"),
                               model.state_dict())
    return done


@pytest.mark.parametrize("name", RECIPES)
def test_an_interrupted_training_resumes_to_the_uninterrupted_result(name: str, tmp_path: Path,
                                                                     references: dict[str, Reference]) -> None:
    recipe, reference = RECIPES[name], references[name]
    history, logits = reference.history, reference.logits
    interrupted = tmp_path / "b"
    with pytest.raises(Interrupted):
        train_model(fresh(), TRAIN, VAL, settings(recipe, interrupted, on_epoch=stop_after(2)))
    assert (interrupted / "resume.pt").is_file()
    random.seed(99)  # a new process: its global streams are anywhere
    np.random.seed(99)
    torch.manual_seed(99)
    notes: list[str] = []
    epochs: list[int] = []
    resumed_model = Noisy()
    result = train_model(resumed_model, TRAIN, VAL, settings(
        recipe, interrupted, on_resume=notes.append, on_epoch=lambda record: epochs.append(record["epoch"])))
    assert epochs == [3, 4]  # epochs 1-2 were not trained again
    assert len(notes) == 1 and notes[0].startswith(f"resuming from epoch 3 of {EPOCHS} (checkpoint of epoch 2, ")
    assert without_time(result.history) == history
    assert torch.equal(predict_logits(resumed_model, TEST, SPEC, device="cpu"), logits)
    assert torch.equal(predict_logits(resumed_model, TEST, SPEC, device="cpu").argmax(1), logits.argmax(1))
    assert all(torch.equal(v, reference.weights[k]) for k, v in resumed_model.state_dict().items())
    best_a = torch.load(reference.folder / "best.pt", weights_only=True)
    best_b = torch.load(interrupted / "best.pt", weights_only=True)
    assert all(torch.equal(v, best_a[k]) for k, v in best_b.items())  # the best file too


def test_the_resume_checkpoint_holds_every_state_and_loads_with_weights_only(tmp_path: Path) -> None:
    recipe = RECIPES["online, cosine per batch, restore best"]
    train_model(fresh(), TRAIN, VAL, settings(dataclasses.replace(recipe, epochs=2), tmp_path))
    payload = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert set(payload) == set(RESUME_KEYS)
    assert payload["epoch"] == 2 and len(payload["history"]) == 2
    assert set(payload["rng"]) == {"torch", "cuda", "numpy", "python", "generators"}
    assert set(payload["rng"]["generators"]) == {"sampler", "augment"}
    assert payload["optimizer"]["state"] and payload["scheduler"]["last_epoch"] > 0
    assert set(payload["tracker"]) == {"best", "best_epoch", "wait"}
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_finished_training_resumes_without_training_again(references: dict[str, Reference]) -> None:
    name = "online, cosine per batch, restore best"
    recipe, reference = RECIPES[name], references[name]
    history, logits = reference.history, reference.logits
    notes: list[str] = []
    epochs: list[int] = []
    model = Noisy()
    result = train_model(model, TRAIN, VAL, settings(recipe, reference.folder, on_resume=notes.append,
                                                      on_epoch=lambda record: epochs.append(record["epoch"])))
    assert epochs == [] and without_time(result.history) == history
    assert notes[0].startswith(f"resuming from epoch {EPOCHS} of {EPOCHS}: training had finished")
    assert torch.equal(predict_logits(model, TEST, SPEC, device="cpu"), logits)


def test_an_early_stopped_training_stays_stopped(tmp_path: Path) -> None:
    recipe = Recipe(lr=0.05, epochs=8, batch_size=16, early_stopping=EarlyStopping(patience=1, min_delta=10.0))
    first = train_model(fresh(), TRAIN, VAL, settings(recipe, tmp_path))
    assert first.stopped_early and first.epochs_run == 2
    notes: list[str] = []
    again = train_model(Noisy(), TRAIN, VAL, settings(recipe, tmp_path, on_resume=notes.append))
    assert again.stopped_early and without_time(again.history) == without_time(first.history)
    assert notes[0].startswith("resuming from epoch 2 of 8: training had stopped early")


@pytest.mark.parametrize("damage", ["truncated", "another configuration", "not a checkpoint"])
def test_an_unusable_checkpoint_is_discarded_with_one_line(damage: str, tmp_path: Path,
                                                          references: dict[str, Reference]) -> None:
    name = "offline, plateau, class balanced"
    recipe, history, logits = RECIPES[name], references[name].history, references[name].logits
    folder = tmp_path
    path = folder / "resume.pt"
    if damage == "another configuration":  # the checkpoint of another learning rate
        with pytest.raises(Interrupted):
            train_model(fresh(), TRAIN, VAL, settings(dataclasses.replace(recipe, lr=0.01), folder,
                                                      on_epoch=stop_after(1)))
    else:
        with pytest.raises(Interrupted):
            train_model(fresh(), TRAIN, VAL, settings(recipe, folder, on_epoch=stop_after(1)))
        ResumeCheckpoint(path, "", {}, torch.device("cpu")).flush()  # the write in flight when it stopped
        data = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(data[:len(data) // 2])
        else:
            buffer = {"epoch": 2}
            torch.save(buffer, path)
    notes: list[str] = []
    model = fresh()
    result = train_model(model, TRAIN, VAL, settings(recipe, folder, on_resume=notes.append))
    assert len(notes) == 1 and "\n" not in notes[0], notes
    assert notes[0].startswith(f"{path}: ") and notes[0].endswith("; starting the cell from epoch 1")
    assert without_time(result.history) == history
    assert torch.equal(predict_logits(model, TEST, SPEC, device="cpu"), logits)


def test_no_resume_path_writes_no_resume_checkpoint(tmp_path: Path) -> None:
    recipe = dataclasses.replace(RECIPES["online, cosine per batch, restore best"], epochs=2)
    train_model(fresh(), TRAIN, VAL, dataclasses.replace(settings(recipe, tmp_path), resume_path=None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_remove_deletes_the_checkpoint(tmp_path: Path) -> None:
    recipe = dataclasses.replace(RECIPES["online, cosine per batch, restore best"], epochs=1)
    train_model(fresh(), TRAIN, VAL, settings(recipe, tmp_path))
    checkpoint = ResumeCheckpoint(tmp_path / "resume.pt", "", {}, torch.device("cpu"))
    checkpoint.remove()
    assert not (tmp_path / "resume.pt").exists()


def test_save_then_load_restores_the_state_and_the_random_streams(tmp_path: Path) -> None:
    model = fresh()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(TRAIN.images[:4].float()).sum().backward()
    optimizer.step()
    tracker = BestTracker(best=0.5, best_epoch=1, wait=2)
    generator = torch.Generator().manual_seed(5)
    checkpoint = ResumeCheckpoint(tmp_path / "resume.pt", "key", {"sampler": generator}, torch.device("cpu"))
    history = [{"epoch": 1, "val_loss": np.float64(0.5)}, {"epoch": 2, "val_loss": None}]  # numpy scalars too
    checkpoint.save(2, model, optimizer, None, tracker, history)
    expected = (torch.rand(3), torch.rand(3, generator=generator), random.random(), np.random.rand())

    other = Noisy()
    other_optimizer = torch.optim.Adam(other.parameters(), lr=0.01)
    other_tracker = BestTracker()
    generator.manual_seed(6)
    resumed = checkpoint.load(other, other_optimizer, None, other_tracker)
    assert resumed is not None and resumed.epoch == 2 and resumed.history == [{"epoch": 1, "val_loss": 0.5},
                                                                              {"epoch": 2, "val_loss": None}]
    after = (torch.rand(3), torch.rand(3, generator=generator), random.random(), np.random.rand())
    assert torch.equal(after[0], expected[0]) and torch.equal(after[1], expected[1]) and after[2:] == expected[2:]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in other.state_dict().items())
    moments = [o.state_dict()["state"][0]["exp_avg"] for o in (optimizer, other_optimizer)]
    assert torch.equal(*moments)
    assert (other_tracker.best, other_tracker.best_epoch, other_tracker.wait) == (0.5, 1, 2)
    assert ResumeCheckpoint(tmp_path / "resume.pt", "another key", {}, torch.device("cpu")).load(
        other, other_optimizer, None, other_tracker) is None  # another configuration's key: discarded


def test_between_bests_the_checkpoint_is_written_at_most_every_resume_interval(tmp_path: Path) -> None:
    plain = Recipe(optimizer="sgd", lr=0.05, epochs=EPOCHS, batch_size=16)  # no validation: no best epochs
    with pytest.raises(Interrupted):
        train_model(fresh(), TRAIN, None, settings(plain, tmp_path, resume_every_seconds=3600.0,
                                                   on_epoch=stop_after(3)))
    notes: list[str] = []  # (loading waits for a write still in flight; torch.load here would not)
    result = train_model(fresh(), TRAIN, None, settings(plain, tmp_path, on_resume=notes.append))
    # the checkpoint is the first epoch's: epochs 2 and 3 were not written
    assert notes[0].startswith(f"resuming from epoch 2 of {EPOCHS} (checkpoint of epoch 1,")
    assert result.epochs_run == EPOCHS
