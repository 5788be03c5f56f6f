"""`engage predict --workers N`: whole inputs scored in worker processes, each holding the model once and scoring
an input exactly as the single-process job does; the parent writes the CSV and reports in input order."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engage.inference.predictor import Predictor
from engage.io.inputs import InputItem, Inputs
from engage.processes import ctrl_c_left_to_parent

if TYPE_CHECKING:
    from engage.inference.records import CsvWriter

# How a worker scores one input: (predictor, input, options, CSV part file or None) -> (its results, its CSV rows
# written to the part file, why it was skipped or None, the setup line). engage.inference.job gives its own; the
# function travels to the spawned workers by reference, so this module knows nothing of the job.
ScoreInput = Callable[[Predictor, InputItem, Any, "str | None"], tuple[list[dict], int, "str | None", str]]

_predictor: Predictor | None = None  # one per worker process
_score_input: ScoreInput | None = None


def planned_workers(inputs: Inputs, requested: int) -> int:
    """Processes to use: as asked (never more than the inputs); by default (0) one per core when two or more
    videos are among the inputs, else 1 (images are batched in one process; a worker costs a model load)."""
    items = inputs.items
    if any(item.kind == "camera" for item in items):
        return 1
    if requested:
        return max(1, min(requested, len(items)))
    videos = sum(item.kind == "video" for item in items)
    return min(os.cpu_count() or 1, videos) if videos >= 2 else 1


def planned_detect_processes(inputs: Inputs, requested: int, workers: int) -> int:
    """Processes that detect the faces of each video file when whole inputs are not spread over processes
    (workers == 1): as asked, by default (0) one per core; 1 (in the calling process) when there is no video file."""
    if workers > 1 or not any(item.kind == "video" for item in inputs.items):
        return 1
    return max(1, requested or os.cpu_count() or 1)


def _start_worker(make_predictor: Callable[[], Predictor], score: ScoreInput) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's: it stops the workers
    global _predictor, _score_input
    _predictor, _score_input = make_predictor(), score


def _score(task: tuple[InputItem, object, str | None]) -> tuple[list[dict], int, str | None, str]:
    item, options, part_path = task
    assert _predictor is not None and _score_input is not None, "a worker scores only after _start_worker"
    return _score_input(_predictor, item, options, part_path)


def score_in_workers(
    inputs: Inputs,
    make_predictor: Callable[[], Predictor],
    score: ScoreInput,
    options: Any,  # the job's options (a dataclass with csv_path, pipeline and detect_processes): see ScoreInput
    workers: int,
    emit: Callable[[dict], None],
    skip: Callable[[InputItem, str], None],
    progress: Callable[[str, int, int | None], None] | None,
) -> tuple[str, CsvWriter | None]:
    """Score every input on `workers` processes (spawned: a fresh interpreter each, safe with OpenMP); results
    are emitted, and their CSV rows staged, in input order as soon as every earlier input is done. Returns
    (the setup line, the staged CsvWriter or None) for the caller to commit. An error, or Ctrl+C, stops every
    worker at once and leaves nothing."""
    from engage.inference.records import CsvWriter

    parts = tempfile.mkdtemp(prefix="engage-parts-")
    serial = dataclasses.replace(options, pipeline=False, detect_processes=1)  # the processes use the cores
    tasks = [
        (item, serial, os.path.join(parts, f"{index}.csv") if options.csv_path else None)
        for index, item in enumerate(inputs.items)
    ]
    setup = ""
    writer: CsvWriter | None = None
    try:
        with ctrl_c_left_to_parent():
            pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=_start_worker, initargs=(make_predictor, score)
            )
        with pool:  # exit: terminate
            for done, ((item, _, part), (results, _rows, skipped, setup)) in enumerate(  # noqa: B007 (returned)
                zip(tasks, pool.imap(_score, tasks, chunksize=1)), start=1
            ):
                if skipped is not None:
                    skip(item, skipped)
                elif part is not None:
                    with open(part, newline="", encoding="utf-8") as handle:
                        reader = csv.DictReader(handle)
                        if writer is None:  # the columns are the workers' (they depend on the expression model)
                            writer = CsvWriter(options.csv_path, list(reader.fieldnames or []))
                        while chunk := list(itertools.islice(reader, 10_000)):
                            writer.write(chunk)
                    os.unlink(part)
                for result in results:
                    emit(result)
                if progress is not None:
                    progress("inputs", done, len(tasks))
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return setup, writer
