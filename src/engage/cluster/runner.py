"""run_batch: the Python API of `engage batch`. The sources not yet complete become a Ray Dataset; detection
runs as one CPU task per source, scoring in a pool of actors that each hold the model once, and each source's
rows are written as soon as all of them are back, so a killed run loses only the sources in flight.

    from engage.cluster.runner import BatchOptions, run_batch
    run = run_batch(["lectures/", "photos/"], "results", BatchOptions(every=2))   # a local Ray on every core
    run = run_batch(["/shared/lectures"], "/shared/results", BatchOptions(address="auto"))   # a Ray cluster
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from engage.cluster.assemble import Collector, gathered, joined_info, source_records, source_summary, stitch
from engage.cluster.options import BatchOptions
from engage.cluster.scoring import FaceScorer
from engage.cluster.segments import Unit, plan_units
from engage.cluster.sources import BatchSource, list_sources
from engage.cluster.store import ResultStore
from engage.cluster.tasks import detect_sources
from engage.errors import EngageError
from engage.models.device import resolve_device

if TYPE_CHECKING:
    import ray.data

    from engage.inference.predictor import Predictor

__all__ = ["BatchOptions", "BatchRun", "run_batch"]


def _worker_lost() -> tuple[type[BaseException], ...]:
    """Ray's errors for work lost with a worker, an actor or a node (not a bug in engage's own code)."""
    import ray.exceptions as errors

    names = (
        "WorkerCrashedError",
        "NodeDiedError",
        "ActorDiedError",
        "ActorUnavailableError",
        "ObjectLostError",
        "OutOfMemoryError",
        "RaySystemError",
    )
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


@dataclass
class BatchRun:
    """What one run did."""

    out_dir: str
    scored: list[dict] = field(default_factory=list)  # the summary row of every source scored in this run
    skipped: list[str] = field(default_factory=list)  # sources whose results were already complete
    failures: list[dict] = field(default_factory=list)  # source, path, kind, reason
    ignored: list[str] = field(default_factory=list)  # files in folders that are neither images nor videos
    complete: int = 0  # sources with complete results in out_dir, this run's and earlier ones
    units: int = 0  # tasks this run planned: a source each, or a segment each of the long videos
    resumed: int = 0  # segments of long videos scored by an earlier run and kept (not scored again)
    retried: int = 0  # units that failed once and were tried again
    seconds: float = 0.0
    ray: str = ""  # where it ran

    @property
    def frames(self) -> int:
        return sum(summary["frames_scored"] for summary in self.scored)


def run_batch(
    inputs: list[str],
    out_dir: str,
    options: BatchOptions | None = None,
    on_source: Callable[[dict], None] | None = None,
    on_failure: Callable[[dict], None] | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> BatchRun:
    """Score every image and video of `inputs` (files, folders, globs) into the results folder `out_dir`.

    Sources already complete there are skipped, and the segments of a long video already scored; a unit (a source,
    or a segment of a video longer than options.segment_s) that fails is tried once more, then its source is listed
    in failures.parquet and the others go on. Ray: the session already connected in this process, else
    options.address, else a local Ray. on_source gets each source's summary row as it is written, on_failure each
    failure, on_progress how far the run is (Progress.state: frames done and planned, frames/s, seconds left) as
    units finish; RESULTS_DIR/progress.json holds the same.
    """
    options = options or BatchOptions()
    if options.address and options.address.startswith("ray://"):
        return _run_on_cluster(inputs, out_dir, options, on_source, on_failure)
    import ray

    if options.address is None and not ray.is_initialized():  # a local Ray to start: a GPU asked for where there is
        resolve_device(options.device, options.backend)  # none is one line, before it starts (else: on_ray, below)
    sources, ignored = list_sources(inputs)
    predictor = options.predictor()  # a bad model or detector is one line here, before Ray starts
    settings = options.settings()
    store = ResultStore(out_dir)
    store.check(settings)  # a folder of other settings, likewise (nothing is written before Ray is up)
    run = BatchRun(out_dir, ignored=ignored)
    started = time.perf_counter()
    todo = [source for source in sources if not store.is_complete(source)]
    run.skipped = [source.name for source in sources if source not in todo]
    units = plan_units(todo, options.segment_s, options.every, options.detect_every)
    with ray_session(options) if todo else nullcontext("") as where:
        run.ray = where
        scorer_gpus = 0.0
        if todo:  # the scoring actors' device, settled for the cluster (results do not record it, as --scorers)
            options, scorer_gpus = options.on_ray(ray_gpus())
        store.open(settings)
        watch = Progress(store, units, on_progress)
        try:
            finished = _Finisher(store, units, predictor, run, watch, on_source)
            for source in sources:
                if source not in todo:  # complete: what a run killed just after writing it left of its segments
                    store.drop_segments(source)
            remaining = [unit for unit in units if not finished.resumed(unit)]
            run.units = len(units)
            finished.complete_resumed(remaining)  # videos whose every segment an earlier run scored
            failed: dict[str, tuple[Unit, str]] = {}
            for attempt in range(2):  # a unit that fails is tried once more, then reported
                if not remaining:
                    break
                run.retried += len(remaining) if attempt else 0
                failed = _score_units(remaining, options, scorer_gpus, finished)
                remaining = [unit for unit, _ in failed.values()]
            for source, reason in _failed_sources(failed.values()):  # its segments done are kept for the next run
                _fail(run, source, reason, on_failure)
            run.complete = store.write_tables(run.failures)
        finally:
            watch.close()
            store.close()
    run.seconds = time.perf_counter() - started
    return run


class _Finisher:
    """What is done with each unit that comes back: a whole source is written at once; a segment is kept until its
    video's every segment is in, then the video is stitched and written."""

    def __init__(
        self,
        store: ResultStore,
        units: list[Unit],
        predictor: Predictor,
        run: BatchRun,
        watch: Progress,
        on_source: Callable[[dict], None] | None,
    ) -> None:
        self.store, self.predictor, self.run, self.watch, self.on_source = store, predictor, run, watch, on_source
        self.segments: dict[str, list[Unit]] = {}
        for unit in units:
            if unit.count > 1:
                self.segments.setdefault(unit.source.key, []).append(unit)

    def resumed(self, unit: Unit) -> bool:
        """A segment an earlier run scored (its video not yet complete): counted as done."""
        info = self.store.segment_info(unit) if unit.count > 1 else None
        if info is not None:
            self.watch.done(unit, info, resumed=True)
            self.run.resumed += 1
        return info is not None

    def finish(self, unit: Unit, faces: dict[str, np.ndarray] | None, info: dict) -> None:
        if unit.count == 1:
            self._write(unit.source, faces, info)
        else:
            self.store.write_segment(unit, faces, info)
            self._join_if_whole(unit.source)
        self.watch.done(unit, info)  # once what it did is on disk

    def complete_resumed(self, remaining: list[Unit]) -> None:
        """Join and write the videos whose every segment is on disk already (a run stopped before it joined them)."""
        left = {unit.source.key for unit in remaining}
        for key, units in self.segments.items():
            if key not in left:
                self._join_if_whole(units[0].source)

    def _join_if_whole(self, source: BatchSource) -> None:
        units = self.segments[source.key]
        infos = [self.store.segment_info(other) for other in units]
        if all(other is not None for other in infos):
            parts = [(other.start, self.store.read_segment(other)) for other in units]
            self._write(source, stitch(parts), joined_info([info for info in infos if info is not None]))
            self.store.drop_segments(source)

    def _write(self, source: BatchSource, faces: dict[str, np.ndarray] | None, info: dict) -> None:
        records = source_records(source, faces, info, self.predictor)
        summary = source_summary(source, info, records, self.predictor)
        self.store.write_source(source, records, summary)
        self.run.scored.append(summary)
        if self.on_source is not None:
            self.on_source(summary)


def _score_units(
    units: list[Unit], options: BatchOptions, scorer_gpus: float, finished: _Finisher
) -> dict[str, tuple[Unit, str]]:
    """One pass of Ray over the units; returns those that failed (by key), with why."""
    worker_lost = _worker_lost()
    collector = Collector(units)
    failed: dict[str, tuple[Unit, str]] = {}
    try:
        for batch in _dataset(units, options, scorer_gpus).iter_batches(batch_size=None, batch_format="numpy"):
            for key in collector.add(batch):
                unit, pending = collector.take(key)
                if pending.reason is not None:
                    failed[key] = (unit, pending.reason)
                    continue
                assert pending.info is not None  # a unit is whole once its END row is in
                finished.finish(unit, gathered(pending), pending.info)
    except worker_lost as error:
        # a worker died (killed, out of memory) and Ray gave up on it: what was in flight is tried again
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        for key in collector.unfinished():
            failed[key] = (collector.units[key], f"a Ray worker failed ({type(error).__name__}: {why[:200]})")
    for key in collector.unfinished():  # never expected: said rather than lost
        failed.setdefault(key, (collector.units[key], "not all of its results came back from the Ray workers"))
    return failed


def _failed_sources(failed: Iterable[tuple[Unit, str]]) -> list[tuple[BatchSource, str]]:
    """One failure per source: the first failed unit's reason, saying which segment it was."""
    reasons: dict[str, tuple[BatchSource, str]] = {}
    for unit, reason in sorted(failed, key=lambda item: (item[0].source.key, item[0].index)):
        where = unit.describe()
        reasons.setdefault(unit.source.key, (unit.source, f"{where}: {reason}" if where else reason))
    return list(reasons.values())


class Progress:
    """How far a run is: frames and units done of those planned, frames/s and time left, given to on_progress and
    written to RESULTS_DIR/progress.json (at most once a second, and at the end)."""

    def __init__(self, store: ResultStore, units: list[Unit], on_progress: Callable[[dict], None] | None) -> None:
        self.store = store
        self.on_progress = on_progress
        self.units = len(units)
        self.frames_total = sum(unit.frames or 1 for unit in units)
        self.units_done = self.frames_done = self.frames_before = 0
        self.started = time.perf_counter()
        self.written = 0.0
        self.report(force=True)

    def done(self, unit: Unit, info: dict, resumed: bool = False) -> None:
        frames = int(info.get("frames_scored", 0)) if unit.source.kind == "video" or unit.count > 1 else 1
        self.units_done += 1
        self.frames_done += max(frames, 0)
        if resumed:  # scored by an earlier run: not part of this run's rate
            self.frames_before += max(frames, 0)
        self.report()

    def state(self, running: bool = True) -> dict:
        elapsed = time.perf_counter() - self.started
        rate = (self.frames_done - self.frames_before) / elapsed if elapsed > 0 else 0.0
        left = max(self.frames_total - self.frames_done, 0)
        return {
            "running": running,
            "units_done": self.units_done,
            "units_total": self.units,
            "frames_done": self.frames_done,
            "frames_total": max(self.frames_total, self.frames_done),
            "frames_per_s": round(rate, 1),
            "seconds": round(elapsed, 1),
            "seconds_left": round(left / rate, 1) if rate > 0 and running else None,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def report(self, force: bool = False) -> None:
        state = self.state()
        if self.on_progress is not None:
            self.on_progress(state)
        if force or time.perf_counter() - self.written >= 1.0 or self.units_done == self.units:
            self.written = time.perf_counter()
            try:
                self.store.write_progress(state)
            except OSError:
                pass  # the folder may not exist yet (it is made when the run opens it); the next report writes it

    def close(self) -> None:
        try:
            self.store.write_progress(self.state(running=False))
        except OSError:
            pass


def _run_on_cluster(
    inputs: list[str],
    out_dir: str,
    options: BatchOptions,
    on_source: Callable[[dict], None] | None,
    on_failure: Callable[[dict], None] | None,
) -> BatchRun:
    """Through the Ray Client (ray://): Ray Data's driver cannot run in a client, so run_batch itself runs on the
    cluster, as a task; the sources and out_dir are paths there. Sources are reported when it ends."""
    import ray

    with ray_session(options) as where:
        task = ray.remote(num_cpus=0)(run_batch)
        try:
            run = ray.get(task.remote(inputs, out_dir, replace(options, address=None)))
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, EngageError):  # bad input on the cluster's side: its one line
                raise error.cause from None
            raise
    if on_source is not None:
        for summary in run.scored:
            on_source(summary)
    if on_failure is not None:
        for failure in run.failures:
            on_failure(failure)
    run.ray = f"{where}, through the Ray Client: the run was driven on the cluster"
    return run


def _fail(run: BatchRun, source: BatchSource, reason: str, on_failure: Callable[[dict], None] | None) -> None:
    failure = {"source": source.name, "path": source.path, "kind": source.kind, "reason": reason}
    run.failures.append(failure)
    if on_failure is not None:
        on_failure(failure)


def _dataset(units: list[Unit], options: BatchOptions, scorer_gpus: float = 0.0) -> ray.data.Dataset:
    """units -> detection tasks (1 CPU each, one unit per task) -> scoring actors (scorer_gpus GPUs each) ->
    scored rows."""
    import ray.data

    items = [unit.to_item() for unit in units]
    dataset: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=len(items))
    dataset = dataset.map_batches(
        # Ray's UserDefinedFunction type is a one-argument callable: it leaves out fn_kwargs (options, here)
        detect_sources,  # type: ignore[arg-type]
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"options": options},
        num_cpus=1,
    )
    # each block as it comes (a detection task's block, at most FACES_PER_BLOCK faces): waiting to fill larger
    # batches would hold back the sources whose faces are already in
    return dataset.map_batches(
        FaceScorer,
        batch_size=None,
        batch_format="numpy",
        fn_constructor_kwargs={"options": options},
        compute=ray.data.ActorPoolStrategy(size=options.scorers),
        num_cpus=options.scorer_cpus,
        num_gpus=scorer_gpus,
    )


@contextmanager
def ray_session(options: BatchOptions) -> Iterator[str]:
    """The Ray this process is connected to, else the cluster at options.address, else a new local Ray (shut
    down at the end). Yields a description of where it runs."""
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        local = options.address is None
        arguments: dict[str, Any] = (
            {"address": "local", "num_cpus": options.num_cpus} if local else {"address": options.address}
        )
        if not options.address or not options.address.startswith("ray://"):  # the Ray client passes these on
            arguments.update(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            ray.init(**arguments)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise EngageError(
                f"cannot {'start a local Ray' if options.address is None else 'connect to Ray at ' + options.address}: "
                f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
            ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        nodes = len([node for node in ray.nodes() if node.get("Alive")])
        gpus = f", {ray_gpus()} GPU(s)" if ray_gpus() else ""
        yield f"Ray: {nodes} node(s), {cpus} CPU(s){gpus}"
    finally:
        if started_here:
            ray.shutdown()


def ray_gpus() -> int:
    """The GPUs of the Ray cluster this process is connected to."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))
