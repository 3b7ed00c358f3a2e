"""What a person sees, in a real browser: a tiny suite run with tracking, then its report.html and the MLflow runs
table that `fbench ui` points at, rendered by headless Chromium (Debian's ``chromium``; skipped where absent).

The MLflow UI is a JavaScript app: ``--dump-dom`` with a virtual-time budget lets it fetch the runs and render the
table before the DOM is written out."""

from __future__ import annotations

import html
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from fbench.pipeline import run_suite
from fbench.run.context import RunOptions
from fbench.suite.load import suite_from_dict
from fbench.tracking import leaderboard_fragment, stop_process_group, ui_command

CHROMIUM = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                          "chromium); the browser checks need it")

# Two sizes of a small MLP on 16 x 16 grayscale images, from a plugin file that the suite names: training is instant.
PLUGIN = """
import torch.nn as nn

from fbench.contract import ArchitectureSpec, Recipe
from fbench.registry import register_architecture

SPEC = ArchitectureSpec((1, 16, 16), (0.5,), (0.5,), Recipe(optimizer="adam", lr=1e-2, epochs=2, batch_size=32))


@register_architecture("tiny_browser", spec=SPEC)
def tiny_browser(num_classes: int, *, hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
"""
LABELS = ("tiny-narrow", "tiny-wide")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render(url: str, budget_ms: int = 15_000) -> str:
    """The DOM of ``url`` after Chromium has run its scripts, as the text a person reads (tags dropped)."""
    done = subprocess.run([str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox", "--window-size=2400,1400",
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", done.stdout, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " | ", page)))


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory):
    """The tiny suite, run once with tracking into a temporary SQLite store: the SuiteRun and the store's URI."""
    pytest.importorskip("mlflow")
    from fbench.data.synth.build import SynthConfig, build_synthetic_kdef
    from fbench.registry import ARCHITECTURES

    root = tmp_path_factory.mktemp("browser")
    build_synthetic_kdef(root / "kdef", SynthConfig(identities=4, sessions=1, image_size=(96, 80)), workers=2)
    (root / "tiny_browser_plugin.py").write_text(PLUGIN)
    suite = suite_from_dict({
        "name": "browser", "dataset": "kdef", "synthetic_fallback": False,
        "plugins": [str(root / "tiny_browser_plugin.py")],
        "protocol": {"kind": "stratified_kfold", "folds": 3, "val_fraction": 0.2},
        "conditions": ["clean", "pose"],
        "architectures": [{"name": "tiny_browser", "label": LABELS[0], "options": {"hidden": 4}},
                          {"name": "tiny_browser", "label": LABELS[1], "options": {"hidden": 64}}],
        "seeds": [0], "budget": "tiny", "budgets": {"tiny": {"max_folds": 1, "max_epochs": 2}},
        "output": str(root / "runs"), "reports": str(root / "reports"),
    })
    uri = f"sqlite:///{root / 'mlflow.db'}"
    try:
        run = run_suite(suite, RunOptions(data={"kdef": str(root / "kdef")}, cache_dir=root / "cache", device="cpu",
                                          tracking=True, tracking_uri=uri))
        yield run, uri
    finally:
        ARCHITECTURES._entries.pop("tiny_browser", None)
        sys.modules.pop("fbench_plugin_tiny_browser_plugin", None)


@pytest.fixture(scope="module")
def mlflow_ui(tracked_run):
    """The MLflow UI serving the run's store on a free port, as `fbench ui` starts it; its base address."""
    _, uri = tracked_run
    port = free_port()
    server = subprocess.Popen([*ui_command(uri, port=port), "--workers", "1"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the MLflow UI did not start on port {port}")
                time.sleep(0.5)
        yield base
    finally:
        stop_process_group(server)


def test_report_html_shows_the_leaderboard(tracked_run) -> None:
    run, _ = tracked_run
    text = render(run.report["html"].resolve().as_uri(), budget_ms=2_000)
    assert "browser" in text and "Synthetic data" in text
    table = text[text.index("Leaderboard"):]
    board = run.leaderboards[0].clean()  # best first, as the report ranks them
    positions = []
    for _, row in board.iterrows():
        cells = re.search(rf"\| {re.escape(row['label'])} \|(.*?)\| (?:{'|'.join(LABELS)}|$)", table + "| ")
        assert cells is not None, table[:2000]
        assert f"{100 * row['accuracy_mean']:.1f}" in cells.group(1)  # its clean accuracy in %, on its row
        positions.append(cells.start())
    assert positions == sorted(positions)


def test_the_mlflow_runs_table_is_the_leaderboard(tracked_run, mlflow_ui) -> None:
    run, uri = tracked_run
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("browser")
    text = render(mlflow_ui + leaderboard_fragment(experiment.experiment_id))
    assert "Model training" in text and "Sort: accuracy" in text, text[:3000]
    assert re.search(r"\| 2 \| matching runs", text), text[:3000]  # one row per architecture; no cell runs
    assert "fbench leaderboard" in text and "/fold0/" not in text
    board = run.leaderboards[0].clean()  # best first
    names = [f"{label} \u00b7 main" for label in board["label"]]
    accuracies = [repr(float(value)) for value in board["accuracy_mean"]]  # as MLflow prints them
    assert all(name in text for name in names) and all(value in text for value in accuracies), text[:3000]
    assert "| accuracy |" in text  # the column's header
    if accuracies[0] != accuracies[1]:  # sorted by accuracy, best first (a tie may come in either order)
        assert text.index(names[0]) < text.index(names[1])
        assert text.index(accuracies[0]) < text.index(accuracies[1])
