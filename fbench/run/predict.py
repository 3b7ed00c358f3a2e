"""A finished cell's per-sample predictions, computed again from its checkpoint (nothing is trained).

Useful after a perturbation or the prediction code changed, and the check that sharded evaluation is exact:
under ``torchrun`` every rank computes its share of the batches and rank 0 writes predictions that equal one
process's, sample for sample and in order::

    python -m torch.distributed.run --standalone --nproc-per-node 2 -m fbench.run.predict CELL_FOLDER --out p.csv.gz
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from fbench.data.cache import build_cache
from fbench.data.splits import Split
from fbench.engine import distributed, load_state
from fbench.errors import FbenchError
from fbench.registry import get_dataset
from fbench.run import store
from fbench.run.cell import build_model, predict_conditions
from fbench.run.cells import Cell
from fbench.run.inputs import cell_inputs
from fbench.suite.conditions import CLEAN


def cell_from_folder(folder: Path) -> Cell:
    """The cell whose configuration ``folder/config.json`` holds."""
    path = Path(folder) / store.CONFIG
    if not path.is_file():
        raise FbenchError(f"{folder} is not a cell folder (no {store.CONFIG}); give <output>/<suite>/<cell key>")
    return Cell.from_dict(store.read_json(path))


def predict_cell(folder: Path, conditions: Sequence[str] | None = None, batch_size: int = 512,
                 device: str = "cpu", cache_dir: Path | None = None) -> pd.DataFrame:
    """Predictions of the cell in ``folder`` on its test split for ``conditions`` (default: the cell's)."""
    folder = Path(folder)
    cell = cell_from_folder(folder)
    if not (folder / store.CHECKPOINT).is_file():
        raise FbenchError(f"{folder} has no {store.CHECKPOINT}: run the cell first")
    table = get_dataset(cell.dataset).load(Path(cell.dataset_root))
    split = Split.load(folder / store.SPLIT)
    cached = build_cache(table, cell.input_size, cache_dir=cache_dir)
    test = cell_inputs(cell, split, table, cached, torch.device("cpu")).test
    assert test is not None
    model = load_state(build_model(cell, table.num_classes), folder / store.CHECKPOINT)
    model.to(torch.device(device))
    frames = predict_conditions(model, cell, test, device, tuple(conditions or (CLEAN, *cell.perturbations)),
                                batch_size)
    return pd.concat(frames, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fbench.run.predict", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a cell folder: <output>/<suite>/<cell key>")
    parser.add_argument("--out", type=Path, required=True, help="predictions file to write (.csv.gz)")
    parser.add_argument("--condition", action="append", default=None, help="a condition (repeatable; default: "
                                                                             "the cell's)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args(argv)
    plan = distributed.init_from_env(args.device) if distributed.torchrun_environment() else None
    device = str(plan.device) if plan is not None else args.device
    try:
        predictions = predict_cell(args.folder, args.condition, args.batch_size, device, args.cache_dir)
        if plan is None or plan.is_main:
            store.write_predictions(args.out, predictions)
    except FbenchError as error:
        print(f"fbench: error: {error}", file=sys.stderr)
        return 2
    finally:
        if plan is not None:
            distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
