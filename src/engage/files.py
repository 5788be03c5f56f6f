"""Output files of predict and export: written atomically (temp file beside the target, then rename), with
the user's usual permissions (mkstemp's temp files are private, 0600)."""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from engage.dataset import FILE_MODE, atomic_write


def temp_beside(path: str, suffix: str) -> str:
    """A new empty temporary file in the target's folder (created if needed), for a later os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    return tmp_path


def commit(tmp_path: str, path: str) -> None:
    """Give the finished temp file the usual permissions and rename it over the target."""
    os.chmod(tmp_path, FILE_MODE)
    os.replace(tmp_path, path)


def discard(tmp_path: str) -> None:
    if os.path.exists(tmp_path):
        os.unlink(tmp_path)


def write_file(path: str, write: Callable[[str], object]) -> None:
    """Call write(tmp) and rename tmp over path; a failure leaves nothing behind."""
    atomic_write(path, write)
