"""Worker processes that leave Ctrl+C to their parent: a terminal sends SIGINT to the whole foreground group, and a
worker still starting up would print its own KeyboardInterrupt traceback. SIGINT is blocked in the thread that
spawns the workers while it does: a process starts with its parent thread's signal mask (it survives fork and
exec), so the workers never see Ctrl+C, and a Ctrl+C pressed meanwhile is held for the parent, not lost. The
parent stops its workers itself."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ctrl_c_left_to_parent() -> Iterator[None]:
    """Start worker processes (spawn context) inside this block, from any thread; threads started inside it keep
    SIGINT blocked too (Python handles signals in the main thread only)."""
    from multiprocessing import resource_tracker

    # before blocking: starting Python's resource tracker unblocks SIGINT in the calling thread when it is done
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
