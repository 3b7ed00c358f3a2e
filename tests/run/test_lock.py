"""Cell locks: one holder at a time, stale when the holder is gone (dead pid here, no heartbeat elsewhere), and
the local executor that skips cells another process holds and comes back to them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fbench.errors import FbenchError
from fbench.run import store
from fbench.run.cell import CellBusy, CellOutcome
from fbench.run.executors import LocalExecutor


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(folder: Path, pid: int, host: str, age: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / store.LOCK
    started = time.time() - age
    path.write_text(json.dumps({"pid": pid, "host": host, "started": started, "token": "theirs"}))
    os.utime(path, (started, started))
    return path


def test_one_holder_at_a_time_and_release_frees_the_cell(tmp_path):
    first, second = store.CellLock(tmp_path / "cell"), store.CellLock(tmp_path / "cell")
    assert first.acquire() is None
    record = json.loads((tmp_path / "cell" / store.LOCK).read_text())
    assert record["pid"] == os.getpid() and record["host"] == platform.node() and record["started"] > 0
    holder = second.acquire()
    assert holder is not None and holder.pid == os.getpid() and holder.token == first.holder.token
    first.release()
    assert not (tmp_path / "cell" / store.LOCK).exists()
    assert second.acquire() is None
    second.release()


def test_a_lock_whose_process_died_on_this_host_is_broken(tmp_path):
    write_lock(tmp_path / "cell", dead_pid(), platform.node())
    lock = store.CellLock(tmp_path / "cell")
    assert lock.acquire() is None
    assert store.read_lock(tmp_path / "cell" / store.LOCK).pid == os.getpid()
    lock.release()


def test_a_live_process_on_this_host_keeps_its_lock(tmp_path):
    write_lock(tmp_path / "cell", os.getppid(), platform.node())
    holder = store.CellLock(tmp_path / "cell").acquire()
    assert holder is not None and holder.pid == os.getppid()


def test_another_hosts_lock_is_live_until_its_heartbeat_is_old(tmp_path):
    path = write_lock(tmp_path / "cell", dead_pid(), "another-node")  # its pid means nothing here
    holder = store.CellLock(tmp_path / "cell", stale_seconds=60).acquire()
    assert holder is not None and holder.host == "another-node"
    old = time.time() - 61
    os.utime(path, (old, old))
    lock = store.CellLock(tmp_path / "cell", stale_seconds=60)
    assert lock.acquire() is None and store.read_lock(path).host == platform.node()
    lock.release()


def test_staleness_rules():
    here, pid = platform.node(), dead_pid()
    holder = store.LockHolder(pid, here, time.time())
    assert store.lock_is_stale(holder, age=1.0)
    assert not store.lock_is_stale(store.LockHolder(os.getpid(), here, time.time()), age=1.0)
    assert not store.lock_is_stale(store.LockHolder(pid, "elsewhere", time.time()), age=1.0, stale_seconds=10)
    assert store.lock_is_stale(store.LockHolder(pid, "elsewhere", time.time()), age=11.0, stale_seconds=10)
    other_container = store.LockHolder(pid, here, time.time(), namespace="pid:[1]")  # its pids are not ours
    assert not store.lock_is_stale(other_container, age=1.0, stale_seconds=10) or not store.pid_namespace()
    assert store.lock_is_stale(other_container, age=11.0, stale_seconds=10)
    assert not store.lock_is_stale(None, age=1.0)  # being written: live while young
    assert store.lock_is_stale(None, age=11.0, stale_seconds=10)


def test_the_holder_refreshes_its_lock(tmp_path):
    lock = store.CellLock(tmp_path / "cell", heartbeat=0.05)
    assert lock.acquire() is None
    path = tmp_path / "cell" / store.LOCK
    old = time.time() - 100
    os.utime(path, (old, old))
    deadline = time.time() + 5
    while path.stat().st_mtime < old + 50 and time.time() < deadline:
        time.sleep(0.05)
    assert path.stat().st_mtime > old + 50
    lock.release()


def test_a_lock_where_a_file_stands_for_the_folder_is_one_line(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(FbenchError, match=r"cannot write .*runs.*lock\.json.*a file stands where a folder should be"):
        store.CellLock(tmp_path / "runs" / "cell").acquire()


class FakeCell:
    def __init__(self, key: str) -> None:
        self.key = self.name = key


def test_the_local_executor_skips_busy_cells_and_comes_back_to_them(tmp_path):
    cells = [FakeCell("a"), FakeCell("b"), FakeCell("c")]
    busy_for = {"a": 2}  # cell a is held by another process for its first two visits
    calls = []

    def run_one(cell):
        calls.append(cell.key)
        if busy_for.get(cell.key, 0) > 0:
            busy_for[cell.key] -= 1
            raise CellBusy(cell, store.LockHolder(1, "elsewhere", time.time()))
        return CellOutcome(cell, tmp_path, store.COMPLETE, reused=cell.key == "a")

    done = []
    outcomes = LocalExecutor(poll=0.01).run(cells, run_one, lambda outcome: done.append(outcome.cell.key))
    assert calls == ["a", "b", "c", "a", "a"]
    assert done == ["b", "c", "a"]
    assert [o.cell.key for o in outcomes] == ["a", "b", "c"] and outcomes[0].reused


def test_two_runs_of_one_suite_share_its_cells(tmp_path, tiny_kdef):
    """The issue's check: two `fbench run suites/smoke.yaml` in one folder, the second started while the first
    trains: both exit 0 with the full leaderboard, 2 cells trained in all, 2 MLflow child runs."""
    smoke = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "fbench", "run", str(smoke), "--data", f"kdef={tiny_kdef}",
               "--set", f"output={tmp_path / 'runs'}", "--set", f"reports={tmp_path / 'reports'}",
               "--tracking-uri", uri, "--device", "cpu", "--no-report",
               # the first cell (lanmsff) trains for 4 epochs on all its images, so that the second process finds it
               # held on any machine; the second cell (resnet18) trains for one
               "--set", "budgets.smoke.max_epochs=4", "--set", "budgets.smoke.data_fraction=1.0",
               "--set", "architectures.1.recipe.epochs=1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(tmp_path / "cache"), COLUMNS="200")
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not list((tmp_path / "runs").glob("*/*/lock.json")):
        time.sleep(0.1)
    second = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    outputs = [process.communicate(timeout=300)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], "\n".join(outputs)[-3000:]
    for output in outputs:
        assert "lanmsff" in output and "resnet18" in output
    results = [store.read_json(path) for path in (tmp_path / "runs" / "smoke").glob("*/result.json")]
    assert len(results) == 2 and {r["pid"] for r in results} <= {first.pid, second.pid}
    assert "was run by another process" in outputs[1]  # the second found the first's cell locked, and reused it
    assert not list((tmp_path / "runs").glob("*/*/lock.json"))
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    children = [r for r in runs if r.data.tags.get("fbench.kind") == "cell"]
    assert sorted(r.info.run_name for r in children) == ["lanmsff/fold0/seed0", "resnet18/fold0/seed0"]
    summaries = [r for r in runs if r.data.tags.get("fbench.kind") == "summary"]  # one per architecture, not per run
    assert sorted(r.data.tags["label"] for r in summaries) == ["lanmsff", "resnet18"]
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_stale_lock_beside_a_finished_cell_is_removed_when_the_cell_is_reused(tmp_path):
    """kill -9 between writing result.json and releasing the lock leaves both: the next run reuses the cell and
    clears the dead holder's lock."""
    from fbench.run.cell import claimed

    folder = tmp_path / "cell"
    folder.mkdir()
    (folder / store.PREDICTIONS).write_bytes(b"")
    store.write_json(folder / store.RESULT, {"status": store.COMPLETE, "reason": "",
                                             "files": store.file_checksums(folder)})
    write_lock(folder, dead_pid(), platform.node())
    cell = FakeCell("k")
    with claimed(cell, folder, retry_failed=False) as reused:  # type: ignore[arg-type]
        assert reused is not None and reused.reused
    assert not (folder / store.LOCK).exists()
