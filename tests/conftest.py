"""Shared test setup: no hub access, deterministic seeds, and a clean architecture registry per test."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def clean_architectures(monkeypatch: pytest.MonkeyPatch):
    """A snapshot of the architecture registry, restored after the test."""
    from fbench.registry import ARCHITECTURES

    entries = dict(ARCHITECTURES._entries)
    families = dict(ARCHITECTURES._families)
    discovered = ARCHITECTURES._discovered
    yield ARCHITECTURES
    ARCHITECTURES._entries = entries
    ARCHITECTURES._families = families
    ARCHITECTURES._discovered = discovered
