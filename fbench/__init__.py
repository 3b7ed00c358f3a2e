"""fbench: a benchmarking and ablation harness for facial expression recognition architectures.

The public API, for notebooks and scripts::

    import fbench

    @fbench.register_architecture("mynet", spec=fbench.ArchitectureSpec(...))
    def mynet(num_classes: int) -> torch.nn.Module: ...

    run = fbench.run_suite(fbench.load_suite("multiview"), fbench.RunOptions(budget="smoke"))
    run.leaderboards[0].aggregate

Each name is imported from its module on first use, so ``import fbench`` (and the ``fbench`` command's start)
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "ArchitectureSpec": "fbench.contract",
    "Recipe": "fbench.contract",
    "FbenchError": "fbench.errors",
    "register_architecture": "fbench.registry",
    "get_architecture": "fbench.registry",
    "Suite": "fbench.suite.schema",
    "load_suite": "fbench.suite.load",
    "RunOptions": "fbench.run.context",
    "SuiteRun": "fbench.pipeline",
    "run_suite": "fbench.pipeline",
    "rescore_suite": "fbench.pipeline",
    "run_efficiency": "fbench.pipeline",
}

__all__ = [
    "ArchitectureSpec",
    "FbenchError",
    "Recipe",
    "RunOptions",
    "Suite",
    "SuiteRun",
    "__version__",
    "get_architecture",
    "load_suite",
    "register_architecture",
    "rescore_suite",
    "run_efficiency",
    "run_suite",
]

if TYPE_CHECKING:
    from fbench.contract import ArchitectureSpec, Recipe
    from fbench.errors import FbenchError
    from fbench.pipeline import SuiteRun, rescore_suite, run_efficiency, run_suite
    from fbench.registry import get_architecture, register_architecture
    from fbench.run.context import RunOptions
    from fbench.suite.load import load_suite
    from fbench.suite.schema import Suite


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
