"""A bounded pool of scoring threads, each with its own fork of the server's one Predictor (the models are loaded
once; every thread gets a face detector of its own). A full pool refuses new work instead of queueing it forever."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from engage.inference.predictor import Predictor

T = TypeVar("T")


class PoolFull(Exception):
    """Every worker is busy and the queue is full: answer 429 and ask the client to retry later."""


class PredictorPool:
    """`workers` threads; at most `workers + queue` tasks accepted at a time. submit(task) runs task(get_predictor)
    on a worker, where get_predictor(expressions) is that thread's own fork (with or without expressions)."""

    def __init__(self, predictor: Predictor, workers: int, queue: int, name: str = "engage"):
        self.predictor = predictor
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=name)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.pending = 0  # accepted and not finished

    def _fork(self, expressions: bool) -> Predictor:
        forks = self._local.__dict__.setdefault("forks", {})
        if expressions not in forks:
            forks[expressions] = self.predictor.fork(expressions=expressions)
        return forks[expressions]

    def submit(self, task: Callable[[Callable[[bool], Predictor]], T]) -> Future[T]:
        with self._lock:
            if self.pending >= self.capacity:
                raise PoolFull
            self.pending += 1
        try:
            future = self._executor.submit(task, self._fork)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future | None) -> None:
        with self._lock:
            self.pending -= 1

    def shutdown(self, wait: bool = False) -> None:
        """Drop queued tasks; running ones finish (jobs stop themselves at their next frame when cancelled),
        waited for when `wait`."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
