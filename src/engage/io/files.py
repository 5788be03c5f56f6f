"""Files that are never half-written: whole files written to a temporary file beside the target, flushed to
disk and renamed into place (`atomic_write`, `write_text`); streamed outputs (CSV rows, mp4 frames) staged the
same way (`StagedFile`); and the one walk over a folder tree that every reader uses."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temp files are private (0600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


_STAGED = re.compile(r"^\.tmp-.+\.(\d+)\.[a-z0-9_]{8}")  # .tmp-NAME.PID.RANDOM[SUFFIX], as stage_beside names them
_swept: set[str] = set()  # folders already cleared of dead processes' temporary files by this process


def stage_beside(path: str, suffix: str) -> str:
    """A new empty temporary file beside `path`, named `.tmp-NAME.PID.RANDOM SUFFIX`. The first time a process
    stages into a folder, temporary files there left by processes that no longer run (killed with SIGKILL, or
    the machine went down) are removed, so a re-run leaves nothing behind; later writes do not list it again."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if folder not in _swept:
        _swept.add(folder)
        for name in os.listdir(folder):
            match = _STAGED.match(name)
            if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass
    handle, tmp_path = tempfile.mkstemp(
        dir=folder, prefix=f".tmp-{os.path.basename(path)}.{os.getpid()}.", suffix=suffix
    )
    os.close(handle)
    return tmp_path


def atomic_write(path: str, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) then rename over path, so a crash never leaves half a file."""
    tmp_path = stage_beside(path, os.path.splitext(path)[1])
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as written:  # on disk before the rename: a crash leaves the old file or the new
            os.fsync(written.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def write_text(path: str, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, data: bytes) -> None:
    """Write a file atomically; a full disk is an OSError (ENOSPC / EFBIG) and leaves nothing."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    atomic_write(path, write)


NO_PERMISSION = "cannot be read: permission denied; check the file's permissions or run as its owner"


def unreadable_reason(path: str) -> str | None:
    """Why a file cannot be opened for reading (no permission, ...), in words, or None if it can be."""
    try:
        with open(path, "rb"):
            return None
    except PermissionError:
        return NO_PERMISSION
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def walk_files(folder: str) -> list[str]:
    """Every file under a folder, hidden files and folders left out, sorted within each folder, following
    symbolic links to folders but never into the same folder twice (a link to itself or a parent is a loop)."""
    found, seen = [], set()
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [os.path.join(directory, f) for f in sorted(files) if not f.startswith(".")]
    return found


class StagedFile:
    """A temporary file beside `path`; subclasses open a writer on `tmp_path` and close it in `_close`."""

    def __init__(self, path: str, suffix: str) -> None:
        self.path = path
        self.tmp_path = stage_beside(path, suffix)

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
