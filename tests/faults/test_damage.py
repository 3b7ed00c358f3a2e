"""Faults inside a run and in what it left: a NaN loss, a truncated predictions file, a truncated decode cache and
a full disk. Each is named, the suite goes on (or stops in one line, losing nothing), and the same command then
gives the uninterrupted run's leaderboard."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fbench.cli import main
from fbench.run import store


@pytest.mark.fault("NaN loss (lr 1e30)")
def test_a_nan_loss_fails_its_cell_and_the_suite_goes_on(tmp_path, tiny_kdef, reference, faults):
    folder = faults.copy_runs(reference, tmp_path)
    before = faults.stamps(folder)
    completed = faults.run(folder, tiny_kdef, reference.cache, "--set", "architectures.0.recipe.lr=1e30",
                    "--set", "architectures.0.recipe.optimizer=sgd")
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
    statuses = {key: store.read_json(faults.cells(folder) / key / store.RESULT)["status"]
                for key in faults.stamps(folder)}
    new = set(statuses) - set(before)
    assert len(new) == 1 and statuses[new.pop()] == store.FAILED
    assert sorted(statuses.values()) == [store.COMPLETE, store.COMPLETE, store.FAILED]
    assert "learning rate" in completed.stdout + completed.stderr
    assert faults.stamps(folder).items() >= before.items()  # the other cell reused, not trained again


@pytest.mark.fault("truncated predictions file")
def test_truncated_predictions_are_named_and_the_cell_redone(tmp_path, tiny_kdef, reference, faults):
    folder = faults.copy_runs(reference, tmp_path)
    first, second = faults.in_order(reference)
    damaged = faults.cells(folder) / first / store.PREDICTIONS
    damaged.write_bytes(damaged.read_bytes()[:50])
    kept = faults.stamps(folder)[second]
    completed = faults.run(folder, tiny_kdef, reference.cache)
    said = " ".join((completed.stdout + completed.stderr).split())
    assert first in said and store.PREDICTIONS in said and "training it again" in said, said[-2000:]
    assert faults.stamps(folder)[second] == kept
    faults.completes_as_the_reference(completed, folder, reference)


@pytest.mark.fault("truncated decode cache")
def test_a_truncated_decode_cache_is_named_and_rebuilt(tmp_path, tiny_kdef, reference, faults):
    folder = faults.copy_runs(reference, tmp_path)
    cache = tmp_path / "cache"
    shutil.copytree(reference.cache, cache)
    arrays = list(cache.glob("*/images.npy"))
    assert arrays
    for images in arrays:
        images.write_bytes(images.read_bytes()[:1000])
    shutil.rmtree(faults.cells(folder) / faults.in_order(reference)[-1])  # a cell to train, so the cache is read
    completed = faults.run(folder, tiny_kdef, cache)
    said = " ".join((completed.stdout + completed.stderr).split())
    assert "the decode cache" in said and "is damaged" in said and "building it again" in said, said[-2000:]
    faults.completes_as_the_reference(completed, folder, reference)


def tmpfs_mounts() -> bool:
    """Whether this machine lets the tests mount a tmpfs (root with the right, as in a CI container)."""
    probe = Path(tempfile.mkdtemp(prefix="fbench-tmpfs-"))
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                 capture_output=True).returncode == 0
        if mounted:
            subprocess.run(["umount", str(probe)], check=True)
        return mounted
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


FULL_DISK = "a small tmpfs" if tmpfs_mounts() else "ENOSPC from os.fsync"


def folder_bytes(folder: Path) -> int:
    return sum(-(-path.stat().st_size // 4096) * 4096 + 4096 for path in folder.iterdir())


@pytest.mark.fault(f"full disk ({FULL_DISK})")
def test_a_full_disk_stops_the_run_in_one_line_and_loses_nothing(tmp_path, tiny_kdef, reference, faults, capsys,
                                                               monkeypatch):
    """The first cell fits on the disk, the second does not: one line, exit 2, the first cell kept; with room, the
    same command reuses it and completes."""
    first, second = faults.in_order(reference)
    runs = tmp_path / "runs"
    runs.mkdir()
    done = faults.cells(reference.folder)
    # while it trains, a cell also holds its resume checkpoint (the weights and Adam's two moments: about 3x the best
    # weights), the old one and its replacement side by side at the end of each epoch
    training = 6 * (done / first / "checkpoint.pt").stat().st_size
    room = folder_bytes(done / first) + training + min(256 * 1024, folder_bytes(done / second) // 2)
    if FULL_DISK == "a small tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={-(-room // 4096) * 4}k", "tmpfs", str(runs)], check=True)
        try:
            line = faults.one_line_error(faults.run(tmp_path, tiny_kdef, reference.cache))
            kept = faults.stamps(tmp_path)
            # room for the second cell's training: ResNet-18's resume checkpoint (134 MB) twice while it is replaced
            subprocess.run(["mount", "-o", "remount,size=1g", str(runs)], check=True)
            completed = faults.run(tmp_path, tiny_kdef, reference.cache)
            again = faults.stamps(tmp_path)
            said = faults.predictions(tmp_path)
        finally:
            subprocess.run(["umount", "-l", str(runs)], check=False)
    else:
        real_fsync = os.fsync

        def full(descriptor: int) -> None:
            if faults.stamps(tmp_path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(descriptor)

        monkeypatch.setenv("FBENCH_CACHE", str(reference.cache))
        monkeypatch.setattr(os, "fsync", full)
        code = main(faults.run_command(tmp_path, tiny_kdef)[3:])
        line = faults.one_line_error((code, capsys.readouterr().err))
        kept = faults.stamps(tmp_path)
        monkeypatch.setattr(os, "fsync", real_fsync)
        completed = faults.run(tmp_path, tiny_kdef, reference.cache)
        again, said = faults.stamps(tmp_path), faults.predictions(tmp_path)
    assert "disk is full" in line, line
    assert list(kept) == [first], "the cell that fitted was not kept"
    assert again[first] == kept[first] and len(again) == 2
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
    assert faults.leaderboard(completed.stdout) == faults.leaderboard(reference.stdout)
    assert said == faults.predictions(reference.folder)
