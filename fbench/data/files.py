"""Files written atomically: a temporary file in the same folder, flushed to disk, then renamed into place, so
that a crash (or ``kill -9``) leaves either the old file or the new one, never half of one.

Every file fbench keeps (a cell's results, a split, a checkpoint, a report, a preview) is written through
:func:`write_atomic`. A place that cannot be written (no permission, a read-only or full disk, a file where a
folder should be) is an :class:`~fbench.errors.FbenchError` naming the path and what to do, and the file that was
there before is left as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from fbench.errors import FbenchError

WHAT_TO_DO = {
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.EACCES: "permission denied: make it writable or write somewhere else",
    errno.EPERM: "permission denied: make it writable or write somewhere else",
    errno.ENOTDIR: "a file stands where a folder should be: move it, or write somewhere else",
    errno.EEXIST: "a file stands where a folder should be: move it, or write somewhere else",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter name or folder",
}


def unwritable(path: str | os.PathLike[str], error: OSError) -> FbenchError:
    """The one-line error for ``path`` that could not be written: what the system said and what to do."""
    advice = WHAT_TO_DO.get(error.errno or 0, "check the place, or write somewhere else")
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
    return FbenchError(f"cannot write {path}{where}: {error.strerror or error}; {advice}")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` (its folder is created) through a temporary file and a rename; a place that
    cannot be written is an :class:`~fbench.errors.FbenchError` naming ``path``."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise unwritable(target, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise unwritable(target, error) from None
        raise
    return target
