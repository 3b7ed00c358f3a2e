"""Budget cuts of a cell's images: stratified, split-determined, and the per-cell compute cap."""

from __future__ import annotations

import collections

import pytest

from fbench.run.sizing import (
    MIN_IMAGES_PER_CLASS,
    TRAIN_PASSES,
    compute_capped_images,
    forward_macs,
    stratified_subset,
)
from fbench.suite.schema import Budget, budget_cuts, merge_budget

IDS = [f"s{i:03d}" for i in range(140)]
LABELS = [i % 7 for i in range(140)]


def test_stratified_subset_keeps_class_balance_and_order():
    chosen = stratified_subset(IDS, LABELS, 35, seed=0)
    assert len(chosen) == 35 and chosen == sorted(chosen)
    counts = collections.Counter(LABELS[IDS.index(i)] for i in chosen)
    assert set(counts.values()) == {5}
    assert stratified_subset(IDS, LABELS, 35, seed=0) == chosen
    assert stratified_subset(IDS, LABELS, 35, seed=1) != chosen
    assert stratified_subset(IDS, LABELS, 500, seed=0) == IDS


def test_compute_cap_counts_passes_copies_and_epochs():
    # 1 TMAC over 3 passes x 1 GMAC x 4 copies x 5 epochs = 60 GMACs per image -> 16 images
    assert compute_capped_images(1.0, 10**9, copies=4, epochs=5, num_classes=2) == 1000 // (TRAIN_PASSES * 20)
    # never fewer than a few images per class
    assert compute_capped_images(1e-6, 10**9, copies=4, epochs=5, num_classes=7) == MIN_IMAGES_PER_CLASS * 7
    # cheaper models train on more images
    assert compute_capped_images(1.0, 10**8, 1, 5, 7) > compute_capped_images(1.0, 10**9, 1, 5, 7)


def test_forward_macs_of_lanmsff_matches_its_spec():
    macs = forward_macs("lanmsff", {}, (1, 64, 64), 7)
    assert abs(macs - 300.59e6) / 300.59e6 < 0.02  # the spec's 300.59 M MACs (fvcore); FlopCounterMode agrees


def test_quick_budget_states_its_caps():
    quick = merge_budget("quick", None)
    assert quick.cell_seconds and quick.min_train_images and quick.max_view_folds == 1
    assert quick.max_eval_images is None  # paired tests over the whole test part
    assert Budget(max_folds=3, max_view_folds=1).folds(10, view=True) == 1
    assert Budget(max_folds=3).folds(10, view=True) == 3 and Budget(max_folds=3).folds(10) == 3


def test_budget_cuts_name_compute_and_evaluation_caps(tmp_path):
    from fbench.suite.load import load_suite

    path = tmp_path / "s.yaml"
    path.write_text("name: s\nviews: [{name: sd, kind: subject_kfold, folds: 5}]\narchitectures: [{name: lanmsff}]\n"
                    "budgets: {quick: {max_train_tmacs: 1.5, max_eval_images: 70}}\n")
    cuts = budget_cuts(load_suite(path), "quick")
    assert any("training compute capped at 1.5 TMACs" in c for c in cuts)
    assert any("test images capped at 70" in c for c in cuts) and "validation images capped at 140 per split" in cuts
    assert any(c.startswith("folds 5 → 1 (sd)") for c in cuts), cuts


def test_validation_cap_falls_back_to_the_evaluation_cap():
    from fbench.contract import Recipe
    from fbench.run.cells import Cell, ImageCaps
    from fbench.run.inputs import eval_ids

    class Table:
        frame = __import__("pandas").DataFrame({"sample_id": IDS, "label": LABELS})

    def cell(**caps):
        return Cell(suite="s", label="a", architecture="lanmsff", options={}, input_size=(1, 64, 64),
                    recipe=Recipe(), dataset="d", dataset_root="/", synthetic=True, view="main",
                    protocol={"arguments": {"seed": 0}}, fold=0, folds=1, seed=0, conditions=("clean",),
                    caps=ImageCaps(**caps))

    assert len(eval_ids(cell(max_eval_images=70), IDS, Table, "val")) == 70
    assert len(eval_ids(cell(max_eval_images=70, max_val_images=35), IDS, Table, "val")) == 35
    assert len(eval_ids(cell(max_eval_images=70, max_val_images=35), IDS, Table, "test")) == 70
    assert eval_ids(cell(), IDS, Table, "test") == IDS


@pytest.mark.parametrize("bad", [{"max_train_tmacs": 0}, {"max_eval_images": 0}, {"max_view_folds": 0},
                                 {"max_val_images": 0}])
def test_caps_must_be_positive(bad):
    with pytest.raises(ValueError):
        Budget(**bad)
