"""A plugin distribution outside fbench, installed with pip, is found through the ``fbench.architectures``
entry-point group by ``fbench list`` and ``fbench profile`` in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "plugin_example"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the example plugin into a folder of its own (not into the test environment)."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    assert list(target.glob("fbench_tinycnn-*.dist-info/entry_points.txt"))
    return target


def _fbench(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(site)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    return subprocess.run([sys.executable, "-m", "fbench", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=site)


def test_installed_plugin_is_listed(installed_plugin: Path):
    completed = _fbench(installed_plugin, "list", "architectures", "--json")
    assert completed.returncode == 0, completed.stderr
    rows = {row["name"]: row for row in json.loads(completed.stdout)}
    assert "tiny_cnn" in rows
    assert "fbench-tinycnn" in rows["tiny_cnn"]["source"]
    assert rows["tiny_cnn"]["input"] == "1x48x48"


def test_installed_plugin_can_be_profiled(installed_plugin: Path):
    completed = _fbench(installed_plugin, "profile", "tiny_cnn", "--variant", "width=8", "--json", "--no-speed")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    convs = 1 * 8 * 9 + 8 + 8 * 16 * 9 + 16 + 16 * 32 * 9 + 32
    batch_norms = 2 * (8 + 16 + 32)
    assert result["params"] == convs + batch_norms + 32 * 7 + 7
    assert result["macs"] > 0 and not result["unrecognised_operators"]


def test_plugin_module_given_on_the_command_line(installed_plugin: Path, tmp_path: Path):
    (tmp_path / "my_arch.py").write_text(
        "import torch.nn as nn\n"
        "from fbench.contract import ArchitectureSpec, Recipe\n"
        "from fbench.registry import register_architecture\n\n"
        "@register_architecture('my_arch', spec=ArchitectureSpec((3, 16, 16), (0.5,) * 3, (0.5,) * 3, Recipe()))\n"
        "def my_arch(num_classes: int) -> nn.Module:\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))\n"
    )
    for plugin in ("my_arch", str(tmp_path / "my_arch.py")):
        completed = _fbench(tmp_path, "profile", "my_arch", "--plugin", plugin, "--json", "--no-speed")
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["params"] == 3 * 16 * 16 * 7 + 7
