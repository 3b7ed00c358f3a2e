"""The one exception family for bad input.

Every message names what was wrong (the file, key, name or path) and how to fix it. The CLI prints the
message alone, with exit status 2; other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations


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
