"""Run by tests/test_distributed.py under torchrun (or alone): train a tiny model on the quadrant task, predict
its test set, and (rank 0) write the history, accuracy and predictions as JSON to the path given."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.engine import EvalData, TrainData, TrainSettings, distributed, predict_logits, train_model

SIZE = 8
SPEC = ArchitectureSpec(input_size=(1, SIZE, SIZE), mean=(0.5,), std=(0.25,), recipe=Recipe(), num_classes=4)


def quadrants(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.5
    half = SIZE // 2
    for k in range(4):
        r, c = divmod(k, 2)
        images[labels == k, :, r * half:(r + 1) * half, c * half:(c + 1) * half] += 0.35
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x).flatten(1))


def main(out: str) -> None:
    torch.set_num_threads(1)
    plan = distributed.init_from_env("cpu") if distributed.torchrun_environment() else None
    images, labels = quadrants(203, 1)  # not a multiple of the batch: a short last batch
    train = TrainData(images, labels, tuple(f"t{i}" for i in range(len(labels))))
    images, labels = quadrants(64, 2)
    val = EvalData(images, labels, tuple(f"v{i}" for i in range(len(labels))))
    test_images, test_labels = quadrants(301, 3)
    torch.manual_seed(0)
    model = Net()
    recipe = Recipe(optimizer="adam", lr=0.02, epochs=6, batch_size=32)
    result = train_model(model, train, val, TrainSettings(recipe, SPEC, device="cpu", seed=0))
    logits = predict_logits(model, test_images, SPEC, device="cpu", batch_size=40)
    accuracy = float((logits.argmax(1) == test_labels).double().mean())
    if plan is None or plan.is_main:
        with open(out, "w") as handle:
            json.dump({"history": result.history, "accuracy": accuracy, "rows": logits.shape[0],
                       "world_size": plan.world_size if plan else 1}, handle)
    if plan is not None:
        distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
