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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engage.cluster.assemble import Collector, source_records, source_summary
from engage.cluster.options import BatchOptions
from engage.cluster.scoring import FaceScorer
from engage.cluster.sources import BatchSource, list_sources
from engage.cluster.store import ResultStore
from engage.cluster.tasks import detect_sources
from engage.errors import EngageError

if TYPE_CHECKING:
    import ray.data

__all__ = ["BatchOptions", "BatchRun", "run_batch"]


@dataclass
class BatchRun:
    """What one run did."""

    out_dir: str
    scored: list[dict] = field(default_factory=list)  # the summary row of every source scored in this run
    skipped: list[str] = field(default_factory=list)  # sources whose results were already complete
    failures: list[dict] = field(default_factory=list)  # source, path, kind, reason
    ignored: list[str] = field(default_factory=list)  # files in folders that are neither images nor videos
    complete: int = 0  # sources with complete results in out_dir, this run's and earlier ones
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
) -> BatchRun:
    """Score every image and video of `inputs` (files, folders, globs) into the results folder `out_dir`.

    Sources already complete there are skipped; one that fails is listed in failures.parquet and the others go
    on. Ray: the session already connected in this process, else options.address, else a local Ray.
    on_source gets each source's summary row as it is written, on_failure each failure.
    """
    options = options or BatchOptions()
    if options.address and options.address.startswith("ray://"):
        return _run_on_cluster(inputs, out_dir, options, on_source, on_failure)
    sources, ignored = list_sources(inputs)
    predictor = options.predictor()  # a bad model or detector is one line here, before Ray starts
    settings = options.settings()
    store = ResultStore(out_dir)
    store.check(settings)  # a folder of other settings, likewise (nothing is written before Ray is up)
    run = BatchRun(out_dir, ignored=ignored)
    started = time.perf_counter()
    todo = [source for source in sources if not store.is_complete(source)]
    run.skipped = [source.name for source in sources if source not in todo]
    with ray_session(options) if todo else nullcontext("") as where:
        run.ray = where
        store.open(settings)
        try:
            if todo:
                collector = Collector(todo)
                for batch in _dataset(todo, options).iter_batches(batch_size=None, batch_format="numpy"):
                    for key in collector.add(batch):
                        source, pending = collector.take(key)
                        if pending.reason is not None:
                            _fail(run, source, pending.reason, on_failure)
                            continue
                        records = source_records(source, pending, predictor)
                        summary = source_summary(source, pending, records, predictor)
                        store.write_source(source, records, summary)
                        run.scored.append(summary)
                        if on_source is not None:
                            on_source(summary)
                for key in collector.unfinished():  # never expected: said rather than lost
                    _fail(
                        run, collector.take(key)[0], "not all of its results came back from the Ray workers", on_failure
                    )
            run.complete = store.write_tables(run.failures)
        finally:
            store.close()
    run.seconds = time.perf_counter() - started
    return run


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


def _dataset(sources: list[BatchSource], options: BatchOptions) -> ray.data.Dataset:
    """sources -> detection tasks (1 CPU each, one source per task) -> scoring actors -> scored rows."""
    import ray.data

    items = [{"key": s.key, "name": s.name, "path": s.path, "kind": s.kind} for s in sources]
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
        yield f"Ray: {nodes} node(s), {cpus} CPU(s)"
    finally:
        if started_here:
            ray.shutdown()
