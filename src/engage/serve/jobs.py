"""Video jobs: an upload scored in the background by `engage predict`'s own job (the same summary, CSV and
timeline), in a bounded pool; each job's folder is private and deleted after the retention time, on DELETE
and at shutdown. The upload itself is deleted as soon as its job ends."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engage.errors import EngageError
from engage.inference.job import PredictOptions, run_predict
from engage.inference.keyframes import DEFAULT_DETECT_EVERY
from engage.inference.predictor import Predictor
from engage.io.inputs import InputItem, Inputs
from engage.serve.pool import PredictorPool
from engage.serve.uploads import remove_folder

CSV_NAME = "faces.csv"
STATES = ("queued", "running", "done", "failed", "cancelled")


class Cancelled(Exception):
    """The job was deleted, or the server is shutting down, while it ran."""


@dataclass
class VideoJob:
    id: str
    source: str  # the client's file name, made safe (the CSV's source column, as `engage predict NAME` writes it)
    folder: str  # private: the upload, then faces.csv and the timeline
    video_path: str
    every: int = 1
    expressions: bool = False
    detect_every: int = DEFAULT_DETECT_EVERY
    state: str = "queued"
    frames_done: int = 0
    frames_total: int | None = None
    result: dict | None = None  # `engage predict --json`'s object for the video, when done
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def csv_path(self) -> str:
        return os.path.join(self.folder, CSV_NAME)

    @property
    def timeline_path(self) -> str:
        return os.path.join(self.folder, "video.timeline.png")

    def public(self) -> dict:
        """What GET /v1/jobs/{id} answers."""
        progress = None
        if self.state == "done":
            progress = 1.0
        elif self.frames_total:
            progress = round(min(1.0, self.frames_done / self.frames_total), 4)
        values = {
            "id": self.id,
            "state": self.state,
            "source": self.source,
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "progress": progress,
            "created": round(self.created, 3),
        }
        if self.result is not None:
            values["result"] = self.result
            values["links"] = {name: f"/v1/jobs/{self.id}/{name}" for name in (CSV_NAME, "timeline.png")}
        if self.error is not None:
            values["error"] = self.error
        return values


class JobPool:
    """Accepts video jobs up to the pool's capacity (PoolFull beyond), runs them, and forgets them after
    `retention_s` seconds (checked on every call and by a sweeper thread)."""

    def __init__(self, pool: PredictorPool, retention_s: float = 3600.0, time_limit_s: float = 1800.0):
        self.pool = pool
        self.retention_s = retention_s
        self.time_limit_s = time_limit_s
        self.jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="engage-job-sweeper", daemon=True)
        self._sweeper.start()

    def submit(
        self,
        source: str,
        folder: str,
        video_path: str,
        every: int = 1,
        expressions: bool = False,
        detect_every: int = DEFAULT_DETECT_EVERY,
    ) -> VideoJob:
        """Queue a video (already saved in its private folder); raises PoolFull when the queue is full."""
        job = VideoJob(secrets.token_hex(16), source, folder, video_path, every, expressions, detect_every)
        with self._lock:
            self.jobs[job.id] = job
        try:
            self.pool.submit(lambda fork: self._run(job, fork))
        except BaseException:
            with self._lock:
                self.jobs.pop(job.id, None)
            raise
        return job

    def get(self, job_id: str) -> VideoJob | None:
        self.sweep()
        with self._lock:
            return self.jobs.get(job_id)

    def delete(self, job_id: str) -> bool:
        with self._lock:
            job = self.jobs.pop(job_id, None)
        if job is None:
            return False
        job.cancel.set()  # a running job stops at its next frame and removes its folder itself
        if job.state != "running":
            remove_folder(job.folder)
        return True

    def sweep(self) -> None:
        """Forget jobs that ended more than retention_s ago, with their files."""
        now = time.time()
        with self._lock:
            expired = [
                job for job in self.jobs.values() if job.finished is not None and now - job.finished > self.retention_s
            ]
            for job in expired:
                del self.jobs[job.id]
        for job in expired:
            remove_folder(job.folder)

    def shutdown(self) -> None:
        """Stop every job and delete every job's files (nothing is kept after the server stops)."""
        self._closing.set()
        with self._lock:
            jobs, self.jobs = list(self.jobs.values()), {}
        for job in jobs:
            job.cancel.set()
        self.pool.shutdown(wait=True)  # a running job stops at its next frame; then nothing writes any more
        for job in jobs:
            remove_folder(job.folder)

    def _sweep_loop(self) -> None:
        while not self._closing.wait(min(60.0, max(0.05, self.retention_s / 4))):
            self.sweep()

    def _run(self, job: VideoJob, fork: Callable[[bool], Predictor]) -> None:
        if job.cancel.is_set():
            return
        job.state = "running"
        started = time.monotonic()

        def on_progress(_name: str, done: int, total: int | None) -> None:
            job.frames_done, job.frames_total = done, total
            if job.cancel.is_set() or self._closing.is_set():
                raise Cancelled
            if time.monotonic() - started > self.time_limit_s:
                raise EngageError(f"stopped: scoring took longer than the server's limit of {self.time_limit_s:.0f} s")

        item = InputItem("video", job.source, path=job.video_path, stem="video")
        options = PredictOptions(
            every=job.every, detect_every=job.detect_every, csv_path=job.csv_path, timeline_dir=job.folder
        )
        try:
            run = run_predict(
                Inputs([item], []), fork(job.expressions), options, progress=on_progress, warn=lambda _line: None
            )
            result = dict(run.results[0])
            result.pop("outputs", None)  # server paths: the API links to the files instead
            job.result, job.state = result, "done"
        except Cancelled:
            job.state = "cancelled"
        except EngageError as error:
            job.state, job.error = "failed", str(error)
        except Exception as error:
            job.state, job.error = "failed", f"internal error: {type(error).__name__}: {error}"
        finally:
            job.finished = time.time()
            _remove_file(job.video_path)  # the upload is not kept once scored
            if job.cancel.is_set() or self._closing.is_set():
                remove_folder(job.folder)


def _remove_file(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
