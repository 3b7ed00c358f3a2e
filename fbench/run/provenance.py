"""Where a result came from: the fbench version and git commit, package versions, host, platform and GPU.

Every cell's ``result.json``, the MLflow runs and the reports carry these, so a number can be traced to the code
and the machine that produced it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import re
import socket
import subprocess
from pathlib import Path

import torch

from fbench import __version__


@functools.cache
def _git_commit_cached(folder: str) -> str | None:
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                   timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def git_commit(folder: str | Path | None = None) -> str | None:
    """The git commit of ``folder`` (default: the fbench source tree), or None outside a git checkout."""
    base = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent
    return _git_commit_cached(str(base))


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _environment_tags_cached() -> tuple[tuple[str, str], ...]:
    tags: dict[str, str | None] = {
        "fbench.version": __version__,
        "fbench.git_commit": git_commit(),
        "python.version": platform.python_version(),
        "torch.version": package_version("torch"),
        "timm.version": package_version("timm"),
        "host": platform.node() or socket.gethostname(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        tags["device"] = "cuda"
        tags["gpu"] = torch.cuda.get_device_name(0)
        tags["gpu.count"] = str(torch.cuda.device_count())
        tags["cuda.version"] = torch.version.cuda
    else:
        tags["device"] = "cpu"
    return tuple((key, value) for key, value in tags.items() if value)


def environment_tags() -> dict[str, str]:
    """Where the run happened: fbench/torch/timm/python versions, git commit, host, platform, GPU if CUDA.

    Computed once per process; package versions are read from their metadata (cheap).
    """
    return dict(_environment_tags_cached())


