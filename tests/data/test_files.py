"""The atomic writer: a place that cannot be written is one FbenchError naming the path, and the file that was
there is kept. Tests run as root, whom chmod does not stop: the unwritable places here are a file standing where a
folder should be, /proc (which not even root can create files in), and os.replace/os.fsync made to fail."""

from __future__ import annotations

import errno
import os

import pytest

from fbench.data.files import write_atomic
from fbench.errors import FbenchError


def test_a_file_where_the_folder_should_be(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(FbenchError, match=r"cannot write .*out/cell/result\.json .*a file stands where a folder"):
        write_atomic(tmp_path / "out" / "cell" / "result.json", b"{}")


def test_a_place_not_even_root_can_write():
    with pytest.raises(FbenchError, match=r"^cannot write /proc/fbench-test\.json"):
        write_atomic("/proc/fbench-test.json", b"{}")


@pytest.mark.parametrize(("failing", "code", "advice"), [("replace", errno.EACCES, "permission denied"),
                                                         ("replace", errno.EROFS, "read-only"),
                                                         ("fsync", errno.ENOSPC, "the disk is full")])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, failing, code, advice):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(FbenchError, match=f"cannot write {target}: .*{advice}") as raised:
        write_atomic(target, b"new")
    assert "\n" not in str(raised.value)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
