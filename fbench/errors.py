"""The one exception family for bad input.

Every message names what was wrong (the file, key, name or path) and how to fix it. The CLI prints the
message alone, with exit status 2; other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FbenchError(Exception):
    """Bad input the user can fix."""


class UnknownNameError(FbenchError):
    """A name that no registry holds."""


class DuplicateNameError(FbenchError):
    """A name registered twice."""


class VariantError(FbenchError):
    """An unknown variant option or a value of the wrong type."""


class PluginError(FbenchError):
    """A plugin that cannot be imported or does not follow the architecture contract."""


class ProfileError(FbenchError):
    """A model that cannot be profiled with the given input or device."""


def close_matches(name: object, candidates: Iterable[object], n: int = 3) -> list[str]:
    """The candidates that look like ``name``, closest first (difflib's ratio of at least 0.6)."""
    return difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.6)


def did_you_mean(name: object, candidates: Iterable[object], n: int = 3) -> str:
    """`` (did you mean 'x'?)`` (or ``'x' or 'y'``) to append to a message about ``name``; '' when nothing is
    close."""
    matches = close_matches(name, candidates, n)
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)"
