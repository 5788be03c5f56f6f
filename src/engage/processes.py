"""Worker processes that leave Ctrl+C to their parent: a terminal sends SIGINT to the whole foreground group, and a
worker still starting up would print its own KeyboardInterrupt traceback. A signal ignored when a process is
spawned stays ignored in it (POSIX keeps SIG_IGN across exec, and Python then installs no handler of its own), so
workers are started while the parent ignores SIGINT; the parent stops them itself."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def ctrl_c_left_to_parent() -> Iterator[None]:
    """Start worker processes inside this block (spawn context). Outside the main thread it changes nothing
    (signal handlers belong to the main thread); the workers then ignore SIGINT from their initializer on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
