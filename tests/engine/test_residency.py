"""Training images on the device or streamed from host memory in chunks: the same batches, the same result."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_engine import QUICK, fit, split, tiny, without_time

from fbench.contract import Augment
from fbench.engine.residency import StreamedBatches, batch_source, choose_residency
from fbench.errors import FbenchError


def test_streamed_batches_follow_the_epoch_order_across_chunks():
    images = torch.arange(50, dtype=torch.uint8).reshape(50, 1, 1, 1)
    source = StreamedBatches(images, torch.device("cpu"), chunk_rows=8)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    source.start_epoch(order)
    seen = torch.cat([source.batch(begin, min(4, 50 - begin)) for begin in range(0, 50, 4)])
    assert torch.equal(seen.flatten(), order.to(torch.uint8))


@pytest.mark.parametrize("sampler,augmentation", [
    ("shuffle", (Augment("hflip"), Augment("color_jitter", {"brightness": 0.3}))),
    ("class_balanced", ()),
])
def test_streaming_trains_exactly_as_resident(sampler, augmentation):
    recipe = dataclasses.replace(QUICK, epochs=2, batch_size=8, sampler=sampler, augmentation=augmentation)
    runs = []
    for residency in ("device", "stream"):
        model = tiny(0)
        result = fit(model, recipe, split(60, 1, "t"), residency=residency)
        runs.append((without_time(result.history), model.state_dict()))
    (resident, w1), (streamed, w2) = runs
    assert resident == streamed
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_offline_augmentation_streams_too():
    recipe = dataclasses.replace(QUICK, epochs=1, batch_size=8, augmentation_mode="offline",
                                 augmentation=(Augment("hflip"),))
    result = fit(tiny(0), recipe, split(20, 1, "t"), residency="stream")
    assert result.epochs_run == 1


def test_residency_choice():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    cpu = torch.device("cpu")
    assert choose_residency(images, cpu) == "device"  # host and device memory are one off CUDA
    assert choose_residency(images, cpu, "stream") == "stream"
    assert batch_source(images, cpu, 2, "stream").mode == "stream"
    with pytest.raises(FbenchError, match="residency"):
        choose_residency(images, cpu, "gpu")
