"""Face detection in worker processes, for one video: its frames are detected on several cores at once, in order.

YuNet (yuface) and dlib hold the GIL while they detect, so threads cannot share the work; processes can. Each
worker builds the same detector once and detects exactly as the calling process would (same pixels, same size,
same code), so the boxes are the same. Frames travel to the workers through shared memory (a few slots per
worker, reused, allocated up front so that a full /dev/shm is an error, not a crash), not through a pipe: only
the slot's name and the box lists are pickled."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory
from typing import Any, TypeVar, cast

import numpy as np

from engage.errors import EngageError
from engage.faces.detect import FaceBox, FaceDetector, create_detector
from engage.processes import ctrl_c_left_to_parent

_detector: FaceDetector | None = None  # one per worker process
_failed: BaseException | None = None  # why the worker's detector could not be made (raised by every task)
_slots: dict[str, shared_memory.SharedMemory] = {}  # the parent's slots, opened by name once per worker

Item = TypeVar("Item")
MAX_SKIPPED = 64  # items not to detect held back at most (with their frames) while detections are in flight


def _start(name: str, min_confidence: float | None, detect_size: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's: it stops the workers
    parent = multiprocessing.parent_process()
    if parent is not None:  # a parent killed outright (SIGKILL, the OOM killer) cannot stop us: go with it
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="engage-parent-watch", daemon=True).start()
    # one core per worker (the workers are the parallelism): yuface's own OpenMP runtime reads these when loaded
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import cv2

    cv2.setNumThreads(1)  # MTCNN runs on OpenCV's dnn
    global _detector, _failed
    try:
        _detector = create_detector(name, min_confidence, detect_size)
    except Exception as error:  # raised by every task: the executor would only say "terminated abruptly"
        _failed = error


def _exit_with(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])
    os._exit(1)


def _started() -> bool:
    return _detector is not None or _failed is not None


def _detect(task: tuple[str, tuple[int, ...], int | None]) -> list[FaceBox]:
    slot, shape, max_side = task
    if _failed is not None:
        raise _failed
    assert _detector is not None  # made by _start (else _failed says why not)
    if slot not in _slots:
        _slots[slot] = _open_slot(slot)
    rgb = np.ndarray(shape, np.uint8, buffer=_slots[slot].buf)
    if max_side is not None:
        _detector.max_side = max_side
    return _detector.detect(rgb)


def _open_slot(name: str) -> shared_memory.SharedMemory:
    """A slot of the parent's; the parent unlinks it. Spawned workers share the parent's resource tracker, which
    holds one entry per name, so opening it here adds nothing to clean up (Python 3.13+: not tracked at all)."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    return shared_memory.SharedMemory(name=name)  # Python < 3.13 has no track=


def _itself(item: Any) -> np.ndarray:
    """The frame of an item that is its own frame (an RGB uint8 array): detect_all's default."""
    return item


class DetectorPool:
    """`processes` worker processes (spawned), each holding its own detector `name` with these settings.

    >>> with DetectorPool("yunet", processes=2) as pool:
    ...     for frame, boxes in pool.detect_all(frames, image=lambda f: f.rgb): ...

    Up to `depth` frames per worker are in flight; results come back in the order the frames went in. Use it from
    one thread (the one that made it)."""

    def __init__(
        self,
        name: str,
        min_confidence: float | None = None,
        detect_size: int | None = None,
        processes: int = 2,
        depth: int = 3,
    ) -> None:
        self.processes = max(1, processes)
        self.depth = max(1, depth)
        self._free: list[shared_memory.SharedMemory] = []
        self._all: list[shared_memory.SharedMemory] = []
        self._closed = False
        self._room: int | None = None  # how many slots /dev/shm had room for, once it ran out
        self._pool: ProcessPoolExecutor | None = None
        try:
            with ctrl_c_left_to_parent():
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(name, min_confidence, detect_size),
                )
                for _ in range(self.processes):  # the executor starts a process per task until it has them all: now
                    self._pool.submit(_started)
        except BaseException:
            self.close()
            raise

    def _slot(self, nbytes: int) -> shared_memory.SharedMemory | None:
        """A free slot of at least nbytes, or a new one; None when /dev/shm has no room for another."""
        if self._closed:
            raise EngageError("the detector processes were stopped")
        for index, memory in enumerate(self._free):
            if memory.size >= nbytes:
                return self._free.pop(index)
        if self._room is not None and len(self._all) >= self._room:
            return None
        memory = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        self._all.append(memory)
        try:  # the segment's pages, now: otherwise a full /dev/shm is a SIGBUS on the first write into it (Linux)
            fd = getattr(memory, "_fd", -1)  # private: the segment's file descriptor (POSIX)
            if hasattr(os, "posix_fallocate") and fd >= 0:
                os.posix_fallocate(fd, 0, memory.size)
        except OSError:
            self._all.remove(memory)
            memory.close()
            memory.unlink()
            self._room = len(self._all)
            return None
        return memory

    def detect_all(
        self,
        items: Iterable[Item],
        image: Callable[[Item], np.ndarray] = _itself,
        max_side: Callable[[np.ndarray], int] | None = None,
        wanted: Callable[[Item], bool] | None = None,
    ) -> Iterator[tuple[Item, list[FaceBox] | None]]:
        """(item, its faces biggest first) for every item, in order; image(item) is its RGB uint8 frame and
        max_side(rgb), when given, the longest side the detector looks at for that frame (None: its own). wanted:
        which items to detect (the others come through in their place with None)."""
        try:
            yield from self._detect_all(iter(items), image, max_side, wanted)
        except BrokenProcessPool:
            raise EngageError(
                "face detection stopped: a detector process ended unexpectedly (out of memory?)"
            ) from None

    def _detect_all(
        self,
        items: Iterator[Item],
        image: Callable[[Item], np.ndarray],
        max_side: Callable[[np.ndarray], int] | None,
        wanted: Callable[[Item], bool] | None,
    ) -> Iterator[tuple[Item, list[FaceBox] | None]]:
        pool = self._pool
        assert pool is not None  # made in __init__ (which raises when it cannot)
        # (item, its slot and detection; None for an item not to detect)
        pending: deque[tuple[Item, shared_memory.SharedMemory | None, Future[list[FaceBox]] | None]] = deque()
        skipped = 0  # items not to detect among those pending: they take no slot
        end = waiting = object()
        while True:
            while len(pending) - skipped < self.processes * self.depth and skipped < MAX_SKIPPED:
                taken = next(items, end) if waiting is end else waiting
                if taken is end:
                    break
                item = cast(Item, taken)  # not the end marker: one of the items
                if wanted is not None and not wanted(item):
                    waiting = end
                    pending.append((item, None, None))
                    skipped += 1
                    continue
                rgb = np.ascontiguousarray(image(item), np.uint8)
                memory = self._slot(rgb.nbytes)
                if memory is None:  # /dev/shm is full: wait for a slot in use, or give up if none is
                    if not pending:
                        raise EngageError(
                            f"no room in shared memory (/dev/shm) for a {rgb.nbytes / 1e6:.1f} MB "
                            "frame for the detector processes; free some, or use --workers 1"
                        )
                    waiting = item
                    break
                waiting = end
                np.ndarray(rgb.shape, np.uint8, buffer=memory.buf)[...] = rgb
                side = max_side(rgb) if max_side is not None else None
                pending.append((item, memory, pool.submit(_detect, (memory.name, rgb.shape, side))))
            if not pending:
                return
            item, memory, result = pending.popleft()
            if result is None or memory is None:
                skipped -= 1
                yield item, None
                continue
            boxes = result.result()
            self._free.append(memory)
            yield item, boxes

    def close(self) -> None:
        """Stop the workers (after the frame each is on) and free the shared memory."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for memory in self._all:
            memory.close()
            try:
                memory.unlink()
            except FileNotFoundError:
                pass
        self._all, self._free = [], []

    def __enter__(self) -> DetectorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
