"""``kill -9`` (or SIGTERM, as SLURM sends before preemption) in the middle of a cell's training, once its first
epoch's resume checkpoint is on disk: the checkpoint stays, the same command continues that cell from its last
finished epoch (and says so), ends with the uninterrupted run's leaderboard and predictions, and leaves no resume
checkpoint or lock behind."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

RESUME = "resume.pt"


def killed_mid_cell(faults, folder: Path, data: Path, cache: Path, sent: signal.Signals) -> Path | None:
    """Start the smoke run and send it ``sent`` as soon as a cell's resume checkpoint appears; that cell's folder
    when it was stopped mid-training (resume checkpoint there, no result), else None (it finished first)."""
    process = subprocess.Popen(faults.run_command(folder, data), cwd=folder, env=faults.environment(cache),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    found: list[Path] = []
    while process.poll() is None and not found and time.monotonic() < deadline:
        found = list(faults.cells(folder).glob(f"*/{RESUME}"))
        time.sleep(0.005)
    if process.poll() is not None:
        process.communicate()
        return None
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=120)
    if sent == signal.SIGTERM:  # a clean stop: exit 143 and one line saying the same command resumes
        assert faults.one_line_error((process.returncode, stderr), 143).startswith("fbench: terminated (SIGTERM)")
    cell = found[0].parent
    return cell if (cell / RESUME).is_file() and not (cell / "result.json").exists() else None


@pytest.mark.fault("stopped mid-cell, after an epoch checkpoint")
@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"])
def test_stopped_mid_cell_then_the_cell_resumes_from_its_last_epoch(sent, tmp_path, tiny_kdef, reference, faults):
    killed = None
    for attempt in range(3):  # a cell may finish between its checkpoint and the kill on a loaded machine
        folder = faults.copy_runs(reference, tmp_path / f"attempt{attempt}")  # one cell left to train: the last
        shutil.rmtree(faults.cells(folder) / faults.in_order(reference)[-1])
        killed = killed_mid_cell(faults, folder, tiny_kdef, reference.cache, sent)
        if killed is not None:
            break
    assert killed is not None, "no cell was killed mid-training"
    completed = faults.run(folder, tiny_kdef, reference.cache)
    faults.completes_as_the_reference(completed, folder, reference)
    lines = [line for line in completed.stdout.splitlines() if "resuming from epoch" in line]
    assert len(lines) == 1, completed.stdout[-3000:]
    assert re.search(r"/fold\d+/seed\d+: resuming from epoch \d+ of \d+", lines[0]), lines[0]
    assert "starting the cell from epoch 1" not in completed.stdout + completed.stderr
    assert not list(faults.cells(folder).glob(f"*/{RESUME}")), "a finished cell kept its resume checkpoint"
    assert RESUME not in (killed / "result.json").read_text()  # not among the checksummed files
