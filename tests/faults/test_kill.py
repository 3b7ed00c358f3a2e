"""``kill -9`` at five random moments of a run (a seeded draw over the time its cells take): the same command then
completes, its leaderboard and predictions equal an uninterrupted run's, no cell finished before the kill is
trained again, and no lock is left behind."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

DRAW = random.Random(14)
POINTS = [round(DRAW.uniform(0.02, 0.9), 3) for _ in range(5)]  # fractions of the time its cells take


def killed_at(faults, folder: Path, data: Path, cache: Path, delay: float) -> tuple[dict[str, int], list[Path]] | None:
    """Start the run, ``kill -9`` it ``delay`` seconds after its first cell lock; the finished cells and the locks
    at that moment, or None when the run ended first."""
    command = faults.run_command(folder, data)
    process = subprocess.Popen(command, cwd=folder, env=faults.environment(cache), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while (process.poll() is None and not faults.locks(folder) and not faults.stamps(folder)
           and time.monotonic() < deadline):
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return faults.stamps(folder), faults.locks(folder)


@pytest.mark.fault("kill -9 during a run")
@pytest.mark.parametrize("fraction", POINTS, ids=[f"at {p:.0%} of its cells' time" for p in POINTS])
def test_kill_9_at_a_random_moment_then_the_same_command_completes(fraction, tmp_path, tiny_kdef, reference,
                                                                   faults):
    state = None
    for attempt in range(4):  # a loaded machine may run faster or slower than the reference: come earlier
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        state = killed_at(faults, folder, tiny_kdef, reference.cache, fraction / 2 ** attempt * reference.cells_seconds)
        if state is not None:
            break
    assert state is not None, "the run always ended before the kill"
    finished, held = state
    assert len(held) <= 1, f"{len(held)} cells held at once by one sequential run"
    completed = faults.run(folder, tiny_kdef, reference.cache)
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
    after = faults.stamps(folder)
    assert {key: after.get(key) for key in finished} == finished, "a cell finished before the kill was trained again"
    assert len(after) == 2 and not faults.locks(folder)
    assert faults.leaderboard(completed.stdout) == faults.leaderboard(reference.stdout)
    assert faults.predictions(folder) == faults.predictions(reference.folder)
