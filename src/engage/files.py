"""Streamed output files of predict (CSV rows, mp4 frames): written to a temporary file beside the target
and renamed into place on commit, with the user's usual permissions, so a failed or interrupted run never
leaves half a file. Whole files written at once use `engage.dataset.atomic_write`."""

from __future__ import annotations

import os
import tempfile

from engage.dataset import FILE_MODE


class StagedFile:
    """A temporary file beside `path`; subclasses open a writer on `tmp_path` and close it in `_close`."""

    def __init__(self, path: str, suffix: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        handle, self.tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
        os.close(handle)

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """Finish the file and rename it over the target."""
        self._close()
        os.chmod(self.tmp_path, FILE_MODE)
        os.replace(self.tmp_path, self.path)

    def discard(self) -> None:
        """Drop the temporary file; the target is left as it was."""
        self._close()
        self._remove()

    def _remove(self) -> None:
        if os.path.exists(self.tmp_path):
            os.unlink(self.tmp_path)
