"""``python -m fbench``: the ``fbench`` command."""

from fbench.cli import entry

entry()
