"""Where the engine's training time goes next to the raw loop: torch.profiler on both, over the same steps.

For one model and input size, in one process, on the same images, batch size and initial weights: one epoch of
``fbench.engine.train_model`` (the recipe's augmentation, validation and bookkeeping included) and the same number
of optimiser steps of ``throughput.py``'s raw loop, each under ``torch.profiler``. Prints, per operator, the calls
and self CPU time in each loop and the difference, largest first, so that work the engine does and the raw loop
does not (a validation pass, normalisation, bookkeeping) stands out from the shared convolutions; and the
engine's own split of the epoch into training batches, validation pass and the work before the first epoch.

    python benchmarks/profile_loops.py --device cpu --model lanmsff@64 --steps 8
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # puts the repository root on sys.path
import throughput
import torch
from torch.profiler import ProfilerActivity, profile

from fbench.data.transforms import eval_transform
from fbench.engine import TrainSettings, train_model


def operator_table(run: Callable[[], Any], device: torch.device) -> dict[str, tuple[int, float]]:
    """operator name -> (calls, self CPU milliseconds) over one call of ``run``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        _common.synchronize(device)
    return {e.key: (e.count, e.self_cpu_time_total / 1000) for e in prof.key_averages()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="lanmsff@64", help="NAME@SIZE (default lanmsff@64)")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps in each loop (default 8)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--rows", type=int, default=25, help="operators to print (default 25)")
    parser.add_argument("--out", default=None, help="also write the tables as JSON here")
    args = parser.parse_args(argv)
    device = _common.resolve_device(args.device)
    bench = throughput.parse_args(["--device", str(device), "--models", args.model, "--steps", str(args.steps),
                                   "--warmup", "1", "--workers", "0"]
                                  + (["--batch-size", str(args.batch_size)] if args.batch_size else []))
    (case,) = throughput.parse_cases(bench.models, None, False)
    setup = throughput.make_setup(case, bench, device)
    bs = setup.batch_size
    train, _, val = throughput.engine_splits(setup)
    n_train = len(train)
    images, labels = setup.images.to(device), setup.labels.to(device)
    engine_model, raw_model = setup.model(), setup.model()
    normalised = eval_transform(images, setup.spec)
    if setup.channels_last:
        normalised = normalised.contiguous(memory_format=torch.channels_last)
    histories: list[Any] = []

    def engine() -> None:
        histories.append(train_model(engine_model, train, val, TrainSettings(
            setup.recipe, setup.spec, device=device, seed=0, epochs=1, eval_batch_size=bs)))

    def raw() -> None:
        throughput._train_steps(setup, raw_model, throughput._slices(normalised, labels, bs), setup.steps)

    engine()  # warm-up: first-call allocations and kernel choices
    raw()
    tables = {"engine": operator_table(engine, device), "raw": operator_table(raw, device)}
    epoch, trained = histories[-1].history[0], histories[-1]
    print(f"{case.label}: batch {bs}, {setup.steps} steps ({n_train * setup.expansion} rows), validation "
          f"{len(val) if val is not None else 0} images; {torch.get_num_threads()} threads; load "
          f"{_common.load_average()}")
    rest = epoch["seconds"] - epoch["train_seconds"] - epoch["val_seconds"]
    print(f"engine epoch {epoch['seconds']:.3f} s = training batches {epoch['train_seconds']:.3f} s + validation "
          f"{epoch['val_seconds']:.3f} s + the rest {rest:.3f} s; before the epoch (expansion) "
          f"{trained.setup_seconds:.3f} s")
    names = set(tables["engine"]) | set(tables["raw"])
    rows = []
    for name in names:
        (ec, et), (rc, rt) = tables["engine"].get(name, (0, 0.0)), tables["raw"].get(name, (0, 0.0))
        rows.append((name, ec, et, rc, rt))
    rows.sort(key=lambda r: -abs(r[2] - r[4]))
    totals = {k: sum(t for _, t in v.values()) for k, v in tables.items()}
    print(f"self CPU total: engine {totals['engine']:.0f} ms, raw {totals['raw']:.0f} ms")
    print(f"{'operator':<44}{'engine calls':>13}{'ms':>10}{'raw calls':>11}{'ms':>10}{'diff ms':>10}")
    for name, ec, et, rc, rt in rows[:args.rows]:
        print(f"{name[:43]:<44}{ec:>13}{et:>10.1f}{rc:>11}{rt:>10.1f}{et - rt:>10.1f}")
    result = {"case": case.label, "batch_size": bs, "steps": setup.steps, "load_average": _common.load_average(),
              "epoch": epoch, "setup_seconds": trained.setup_seconds, "self_cpu_ms": totals,
              "operators": {name: {"engine": [ec, et], "raw": [rc, rt]} for name, ec, et, rc, rt in rows}}
    if args.out:
        print(f"wrote {_common.write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
