"""Training under perturbations: the per-sample assignment, the perturbed images, and a suite that uses them."""

from __future__ import annotations

import collections

import pytest
import torch

from fbench.errors import FbenchError
from fbench.perturb.training import assign_conditions, perturb_for_training
from fbench.suite.conditions import CLEAN

CONDITIONS = ["mask:kind=surgical", "occlusion:kind=rectangle,severity=0.5"]


def test_assignment_is_per_sample_and_about_even():
    ids = [f"id{i}" for i in range(3000)]
    assigned = assign_conditions(ids, CONDITIONS, seed=0)
    counts = collections.Counter(assigned)
    assert set(counts) == {CLEAN, *CONDITIONS}
    assert all(900 < count < 1100 for count in counts.values()), counts
    # a sample's condition depends on its id and the seed only, not on the other samples
    assert assign_conditions(ids[::-1], CONDITIONS, seed=0) == assigned[::-1]
    assert assign_conditions(ids, CONDITIONS, seed=1) != assigned


def test_only_the_assigned_samples_change():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8, generator=generator)
    ids = [f"s{i}" for i in range(40)]
    out = perturb_for_training(images, CONDITIONS, sample_ids=ids, landmarks=None, poses=["S"] * 40, seed=3)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assigned = assign_conditions(ids, CONDITIONS, seed=3)
    changed = [(out[i] != images[i]).any().item() for i in range(40)]
    assert changed == [a != CLEAN for a in assigned]
    again = perturb_for_training(images[:10], CONDITIONS, sample_ids=ids[:10], landmarks=None, poses=["S"] * 10,
                                 seed=3)
    assert torch.equal(again, out[:10])  # the same sample is perturbed the same way in any batch
    assert perturb_for_training(images, [], sample_ids=ids, landmarks=None, poses=None, seed=3) is images


def test_a_bad_training_condition_names_the_problem():
    images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(FbenchError, match="mask"):
        perturb_for_training(images, ["mask:kind=nosuchmask"], sample_ids=["a", "b"], landmarks=None, poses=None,
                             seed=0)


def test_a_suite_trains_one_entry_with_masks(tmp_path, tiny_kdef):
    from fbench.pipeline import run_suite
    from fbench.run import store
    from fbench.run.context import RunOptions
    from fbench.suite.load import load_suite

    suite_file = tmp_path / "masked.yaml"
    suite_file.write_text(
        "name: masked-tiny\nprotocol: {kind: subject_kfold, folds: 3, val_fraction: 0.2}\n"
        "conditions: [clean, 'mask:kind=surgical']\n"
        "architectures:\n"
        "  - {name: lanmsff, input_size: 32, label: clean-trained}\n"
        "  - {name: lanmsff, input_size: 32, label: mask-trained, train_conditions: ['mask:kind=surgical']}\n"
        f"seeds: [0]\nbudget: smoke\noutput: {tmp_path / 'runs'}\nreports: {tmp_path / 'reports'}\n")
    options = RunOptions(data={"kdef": str(tiny_kdef)}, tracking=False, cache_dir=tmp_path / "cache", device="cpu",
                         write_report=False)
    run = run_suite(load_suite(suite_file), options)
    assert [o.status for o in run.outcomes] == ["complete", "complete"]
    configs = {o.cell.label: store.read_json(o.folder / store.CONFIG) for o in run.outcomes}
    assert configs["clean-trained"]["train_conditions"] == []
    assert configs["mask-trained"]["train_conditions"] == ["mask:kind=surgical"]
    board = run.leaderboards[0].aggregate
    assert {"clean-trained", "mask-trained"} <= set(board["label"])
