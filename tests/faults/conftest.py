"""The fault-injection suite's figures and helpers.

Every test here is marked ``@pytest.mark.fault("what is injected")`` or ``@pytest.mark.bad_input("what is given")``;
a fault is *survived*, a bad input *handled* (exit 2, or 143 for SIGTERM, and exactly one line on stderr), when its
test passes (a failure, an error, a skip or an xfail counts against it). At the end of the session the figures are
written to ``$FBENCH_FAULTS_FIGURES`` (default: ``fbench-faults.json`` in the temporary folder) and summed up in one
terminal line: ``faults injected N / survived N; bad inputs tried M / handled M``.

The helpers run the real CLI (``python -m fbench``) in a subprocess on the session's ``tiny_kdef``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
KINDS = {"fault": "survived", "bad_input": "handled"}


@dataclass
class Figures:
    """What the session injected and whether each was survived (or handled), with the seconds its tests took."""

    outcomes: dict[str, dict[str, bool]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    seconds: float = 0.0

    def line(self) -> str:
        faults, inputs = self.outcomes["fault"], self.outcomes["bad_input"]
        return (f"faults injected {len(faults)} / survived {sum(faults.values())}; "
                f"bad inputs tried {len(inputs)} / handled {sum(inputs.values())}")

    def as_json(self) -> dict:
        return {"faults_injected": len(self.outcomes["fault"]), "faults_survived": sum(self.outcomes["fault"].values()),
                "bad_inputs_tried": len(self.outcomes["bad_input"]),
                "bad_inputs_handled": sum(self.outcomes["bad_input"].values()),
                "seconds": round(self.seconds, 1), "faults": self.outcomes["fault"],
                "bad_inputs": self.outcomes["bad_input"]}


FIGURES = pytest.StashKey[Figures]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(name): a fault injected into a run; counted as survived or not")
    config.addinivalue_line("markers", "bad_input(name): a bad input; counted as handled (exit 2, one line) or not")
    config.stash[FIGURES] = Figures()


def marked(item: pytest.Item) -> tuple[str, str] | None:
    """``(kind, name)`` of a fault or bad-input test (its parameters appended), else None."""
    for kind in KINDS:
        marker = item.get_closest_marker(kind)
        if marker is not None:
            name = marker.args[0] if marker.args else item.name
            callspec = getattr(item, "callspec", None)
            if callspec is None:
                return kind, name
            return kind, f"{name} [{callspec.id}]" if marker.args else callspec.id
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    what = marked(item)
    if what is None:
        return
    figures = item.config.stash[FIGURES]
    figures.seconds += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        kind, name = what
        figures.outcomes[kind][name] = report.passed and not hasattr(report, "wasxfail")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    figures = config.stash.get(FIGURES, None)
    if figures is None or not any(figures.outcomes.values()):
        return
    path = Path(os.environ.get("FBENCH_FAULTS_FIGURES") or Path(tempfile.gettempdir()) / "fbench-faults.json")
    try:
        path.write_text(json.dumps(figures.as_json(), indent=2) + "\n")
        where = f" (figures in {path})"
    except OSError as error:
        where = f" (figures not written: {error})"
    terminalreporter.write_sep("-", f"fault suite: {figures.line()} in {figures.seconds:.0f} s{where}")


# ------------------------------------------------------------------------------------------------ running fbench


def environment(cache: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", FBENCH_CACHE=str(cache), COLUMNS="200")


def run_command(folder: Path, data: Path, *extra: str) -> list[str]:
    """``fbench run`` of the smoke suite on ``data`` into ``folder/runs`` (no tracking, no report, CPU)."""
    return [sys.executable, "-m", "fbench", "run", str(SMOKE), "--data", f"kdef={data}",
            "--set", f"output={folder / 'runs'}", "--set", f"reports={folder / 'reports'}",
            "--no-tracking", "--no-report", "--device", "cpu", *extra]


def fbench(*args: str, cwd: Path, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fbench ARGS`` run to its end."""
    return subprocess.run([sys.executable, "-m", "fbench", *args], cwd=cwd, env=environment(cache),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(completed: subprocess.CompletedProcess | tuple[int, str], status: int = 2) -> str:
    """Assert the process exited ``status`` with exactly one line (no traceback) on stderr; that line."""
    code, stderr = completed if isinstance(completed, tuple) else (completed.returncode, completed.stderr)
    lines = stderr.strip().splitlines()
    assert code == status, f"exit {code}, not {status}: {stderr[-2000:]}"
    assert len(lines) == 1 and "Traceback" not in stderr, f"{len(lines)} lines on stderr:\n{stderr[-2000:]}"
    return lines[0]


def cells(folder: Path) -> Path:
    return folder / "runs" / "smoke"


def stamps(folder: Path) -> dict[str, int]:
    """Each finished cell's key and the time its ``result.json`` was written."""
    return {p.parent.name: p.stat().st_mtime_ns for p in cells(folder).glob("*/result.json")}


def locks(folder: Path) -> list[Path]:
    return list(cells(folder).glob("*/lock.json"))


def predictions(folder: Path) -> dict[str, bytes]:
    """Each cell's predictions, uncompressed."""
    return {p.parent.name: gzip.decompress(p.read_bytes()) for p in cells(folder).glob("*/predictions.csv.gz")}


def leaderboard(stdout: str) -> list[str]:
    """The leaderboard tables a run prints (from the suite's heading on), without trailing spaces."""
    lines = [line.rstrip() for line in stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("smoke: main"))
    return [line for line in lines[start:] if line]


@dataclass
class Reference:
    """An uninterrupted smoke run: its folder, cache, stdout, and the seconds from its first cell lock to its end."""

    folder: Path
    cache: Path
    stdout: str
    cells_seconds: float


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_kdef: Path) -> Reference:
    """The smoke suite (two cells) run once, uninterrupted, by the CLI."""
    folder = tmp_path_factory.mktemp("reference")
    process = subprocess.Popen(run_command(folder, tiny_kdef), cwd=folder, env=environment(folder / "cache"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_lock = None
    while process.poll() is None and first_lock is None:
        if locks(folder) or stamps(folder):
            first_lock = time.monotonic()
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0 and not stderr.strip(), stderr[-2000:]
    assert len(stamps(folder)) == 2 and not locks(folder)
    cells_seconds = time.monotonic() - (first_lock or time.monotonic())
    return Reference(folder, folder / "cache", stdout, max(cells_seconds, 0.5))


def copy_runs(reference: Reference, folder: Path) -> Path:
    """``folder`` holding a copy of the reference run's cells."""
    shutil.copytree(cells(reference.folder), cells(folder))
    return folder


def run(folder: Path, data: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    """The smoke run of :func:`run_command` to its end."""
    return subprocess.run(run_command(folder, data, *extra), cwd=folder, env=environment(cache),
                          capture_output=True, text=True, timeout=300)


def completes_as_the_reference(completed: subprocess.CompletedProcess, folder: Path, reference: Reference) -> None:
    """Assert the run exited 0 with the reference's leaderboard and predictions, and left no lock."""
    assert completed.returncode == 0 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
    assert leaderboard(completed.stdout) == leaderboard(reference.stdout)
    assert predictions(folder) == predictions(reference.folder) and not locks(folder)


def in_order(reference: Reference) -> list[str]:
    """The reference run's cell keys in the order they finished."""
    finished = stamps(reference.folder)
    return sorted(finished, key=finished.__getitem__)


@pytest.fixture(scope="session")
def faults() -> SimpleNamespace:
    """This folder's helpers, for its test modules (which do not import a conftest)."""
    return SimpleNamespace(**{function.__name__: function for function in (
        environment, run_command, fbench, one_line_error, cells, stamps, locks, predictions, leaderboard, copy_runs,
        run, completes_as_the_reference, in_order)})
