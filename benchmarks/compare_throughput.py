"""Regression guard for the engine's speed: compare a new ``throughput.py`` result with a kept one.

Compares the ratios (engine over raw loop, engine over DataLoader; training and evaluation), which carry over
between runs on one machine far better than absolute rates. A ratio has moved when the difference is larger than
the noise of the repeats: the spread of its per-round values (``round_ratios``) in either run, and never less
than ``--floor``. Prints every moved ratio (and the rates behind it); exits 1 when an engine ratio fell, 0
otherwise. Not a timed test: run it by hand, on a quiet machine, after a change to the engine.

    python benchmarks/throughput.py --device cpu --out benchmarks/results/throughput-cpu.json   # once, kept
    python benchmarks/throughput.py --device cpu --out /tmp/new.json                           # after a change
    python benchmarks/compare_throughput.py benchmarks/results/throughput-cpu.json /tmp/new.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATIOS = ("train_engine_over_raw", "train_engine_over_dataloader", "eval_engine_over_raw",
          "eval_engine_over_dataloader")
# Where a run has one round only, its spread is unknown: this stands in for it.
SINGLE_ROUND_NOISE = 0.05


@dataclass(frozen=True)
class Change:
    case: str
    ratio: str
    before: float
    after: float
    noise: float

    @property
    def delta(self) -> float:
        return self.after - self.before

    @property
    def moved(self) -> bool:
        return abs(self.delta) > self.noise


def load(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"compare_throughput: cannot read {path}: {error}") from None
    if data.get("benchmark") != "throughput" or not isinstance(data.get("results"), list):
        raise SystemExit(f"compare_throughput: {path} is not a benchmarks/throughput.py result")
    return data


def _case(result: dict[str, Any]) -> str:
    return f"{result['model']}@{result['size']}"


def spread(result: dict[str, Any], ratio: str) -> float:
    """The range of one ratio over a run's rounds; SINGLE_ROUND_NOISE where it had one round."""
    values = [v for v in result.get("round_ratios", {}).get(ratio, []) if v is not None]
    return max(values) - min(values) if len(values) > 1 else SINGLE_ROUND_NOISE


def compare(before: dict[str, Any], after: dict[str, Any], floor: float) -> list[Change]:
    """One Change per ratio of every case measured in both runs (same model, size, batch size and steps)."""
    old = {_case(r): r for r in before["results"]}
    changes: list[Change] = []
    for new in after["results"]:
        kept = old.get(_case(new))
        if kept is None:
            continue
        for ratio in RATIOS:
            a, b = kept["ratios"].get(ratio), new["ratios"].get(ratio)
            if a is None or b is None:
                continue
            noise = max(spread(kept, ratio), spread(new, ratio), floor)
            changes.append(Change(_case(new), ratio, a, b, noise))
    return changes


def warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What makes the two runs hard to compare: other hardware, other settings, a loaded machine."""
    lines = []
    for key in ("cpu", "device", "usable_cores", "gpu"):
        a, b = before["hardware"].get(key), after["hardware"].get(key)
        if a != b:
            lines.append(f"hardware differs: {key} {a!r} -> {b!r}")
    old = {_case(r): r for r in before["results"]}
    for new in after["results"]:
        kept = old.get(_case(new))
        if kept is None:
            lines.append(f"{_case(new)}: not in the kept run")
            continue
        for key in ("batch_size", "steps", "offline_expansion"):
            if kept.get(key) != new.get(key):
                lines.append(f"{_case(new)}: {key} {kept.get(key)} -> {new.get(key)}")
    for name, run in (("kept", before), ("new", after)):
        load_start = (run["hardware"].get("load_average") or [None])[0]
        cores = run["hardware"].get("usable_cores") or 1
        if load_start is not None and load_start > cores:
            lines.append(f"the {name} run started at load {load_start} on {cores} cores: its rates are noisy")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kept", help="the kept result (e.g. benchmarks/results/throughput-cpu.json)")
    parser.add_argument("new", help="the new result")
    parser.add_argument("--floor", type=float, default=0.02, help="the smallest difference that counts as a move "
                                                                   "(default 0.02)")
    args = parser.parse_args(argv)
    before, after = load(args.kept), load(args.new)
    for line in warnings(before, after):
        print(f"warning: {line}")
    changes = compare(before, after, args.floor)
    if not changes:
        print("no case was measured in both runs")
        return 0
    moved = [c for c in changes if c.moved]
    for change in moved:
        direction = "up" if change.delta > 0 else "DOWN"
        print(f"{change.case:<32}{change.ratio:<30}{change.before:>7.3f} -> {change.after:<7.3f}"
              f"{direction:>5} {abs(change.delta):.3f} (noise {change.noise:.3f})")
    print(f"{len(moved)} of {len(changes)} ratios moved by more than the noise of the repeats")
    return 1 if any(c.delta < 0 for c in moved) else 0


if __name__ == "__main__":
    sys.exit(main())
