"""A results folder of `engage batch`, written so that a killed run never leaves half a source counted as done:

    RESULTS_DIR/batch.json                        the settings the results were made with
    RESULTS_DIR/faces/<source key>/part-0.parquet  one row per face per frame (the columns of `engage predict --csv`)
    RESULTS_DIR/faces/<source key>/_source.json    the completion marker: the source, its fingerprint, its summary
    RESULTS_DIR/summary.parquet                   one row per complete source
    RESULTS_DIR/failures.parquet                  the sources that failed in the last run, with the reason
    RESULTS_DIR/progress.json                     how far the run is (frames, sources, frames/s, time left)
    RESULTS_DIR/segments/<source key>/            the segments of a long video scored so far (engage.cluster.
                                                  segments), until the video is complete: a re-run scores the rest

A source's folder is written under RESULTS_DIR/.staging and renamed into faces/ whole, marker included, so a
source is either complete or absent. One run at a time writes to a folder (a lock, released if it dies)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engage.cluster.segments import Unit
from engage.cluster.sources import BatchSource
from engage.errors import EngageError, UsageError
from engage.inference.records import csv_columns
from engage.io.files import FILE_MODE, atomic_write, write_text

SETTINGS_FILE = "batch.json"
FACES_DIR = "faces"
PART_FILE = "part-0.parquet"
MARKER_FILE = "_source.json"  # "_": pyarrow, pandas and polars reading the folder pass it over
SUMMARY_FILE = "summary.parquet"
FAILURES_FILE = "failures.parquet"
STAGING_DIR = ".staging"
SEGMENTS_DIR = "segments"
PROGRESS_FILE = "progress.json"
LOCK_FILE = ".lock"

INT_COLUMNS = frozenset(
    {"frame", "face_id", "x", "y", "w", "h", "frames_scored", "frames_with_faces", "faces", "rows", "width", "height"}
)
BOOL_COLUMNS = frozenset({"tracked"})
STRING_COLUMNS = frozenset({"source", "label", "quality", "expression", "path", "kind", "key", "finished_at", "reason"})
SUMMARY_COLUMNS = (
    "source",
    "path",
    "kind",
    "key",
    "frames_scored",
    "frames_with_faces",
    "faces",
    "rows",
    "mean_p_engaged",
    "share_engaged",
    "share_uncertain",
    "duration_s",
    "width",
    "height",
    "fps",
    "detect_s",
    "finished_at",
)
FAILURE_COLUMNS = ("source", "path", "kind", "reason")
FOLDER_MODE = FILE_MODE | (FILE_MODE & 0o444) >> 2  # what mkdir would give (mkdtemp's folders are private)


def schema(columns: Iterable[str]) -> pa.Schema:
    """Typed columns: counts and pixels as int64, names and labels as strings, everything else float64."""

    def kind(name: str) -> pa.DataType:
        if name in BOOL_COLUMNS:
            return pa.bool_()
        return pa.int64() if name in INT_COLUMNS else pa.string() if name in STRING_COLUMNS else pa.float64()

    return pa.schema([(name, kind(name)) for name in columns])


FACE_SCHEMA = schema(csv_columns())


def _write_parquet(path: str, rows: list[dict], table_schema: pa.Schema) -> None:
    atomic_write(path, lambda tmp: pq.write_table(pa.Table.from_pylist(rows, schema=table_schema), tmp))


class ResultStore:
    """One results folder: what is complete, and writing a source, the summary and the failures."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.faces_dir = os.path.join(out_dir, FACES_DIR)
        self.staging_dir = os.path.join(out_dir, STAGING_DIR)
        self._lock: TextIO | None = None

    def check(self, settings: dict) -> None:
        """Refuse, writing nothing, a folder that is not a results folder or holds results of other settings."""
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise UsageError(f"--out {self.out_dir} is a file; give a folder for the results")
        settings_path = os.path.join(self.out_dir, SETTINGS_FILE)
        if not os.path.isfile(settings_path):
            if os.path.isdir(self.out_dir) and os.listdir(self.out_dir):
                raise UsageError(
                    f"--out {self.out_dir} is not empty and holds no engage batch results "
                    f"({SETTINGS_FILE}); give a new or empty folder"
                )
            return
        with open(settings_path, encoding="utf-8") as handle:
            recorded = json.load(handle)
        changed = [
            f"{name} {settings.get(name)!r} (the folder's: {recorded.get(name)!r})"
            for name in sorted(set(settings) | set(recorded))
            if settings.get(name) != recorded.get(name)
        ]
        if changed:
            raise UsageError(
                f"{self.out_dir} holds results made with other settings: {'; '.join(changed)}; "
                "give another --out, or the same settings to resume"
            )

    def open(self, settings: dict) -> None:
        """Lock the folder for this run, check and record the settings, and clear what a killed run left staged."""
        self.check(settings)
        os.makedirs(self.out_dir, exist_ok=True)
        self._lock = open(os.path.join(self.out_dir, LOCK_FILE), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise EngageError(
                f"{self.out_dir}: another engage batch is writing these results; wait for it to end"
            ) from None
        settings_path = os.path.join(self.out_dir, SETTINGS_FILE)
        if not os.path.isfile(settings_path):
            write_text(settings_path, json.dumps(settings, indent=1) + "\n")
        shutil.rmtree(self.staging_dir, ignore_errors=True)  # what a killed run left half-written (we hold the lock)
        os.makedirs(self.staging_dir, exist_ok=True)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    def marker(self, source: BatchSource) -> dict | None:
        """The completion marker of a source's results, or None when there are none."""
        try:
            with open(os.path.join(self.faces_dir, source.key, MARKER_FILE), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def is_complete(self, source: BatchSource) -> bool:
        """True when the source's results are all there and the file has not changed since they were made."""
        marker = self.marker(source)
        return (
            marker is not None
            and marker.get("fingerprint") == source.fingerprint()
            and os.path.isfile(os.path.join(self.faces_dir, source.key, PART_FILE))
        )

    def write_source(self, source: BatchSource, records: list[dict], summary: dict) -> None:
        """Write a source's rows and marker in a staging folder, then put the folder in place whole."""
        staged = tempfile.mkdtemp(prefix=f"{source.key}.", dir=self.staging_dir)
        pq.write_table(pa.Table.from_pylist(records, schema=FACE_SCHEMA), os.path.join(staged, PART_FILE))
        marker = {"source": source.to_dict(), "fingerprint": source.fingerprint(), "summary": summary}
        with open(os.path.join(staged, MARKER_FILE), "w", encoding="utf-8") as handle:
            json.dump(marker, handle, indent=1)
        for name in (PART_FILE, MARKER_FILE):  # on disk before the rename: a crash leaves the old folder or the new
            with open(os.path.join(staged, name), "rb+") as written:
                os.fsync(written.fileno())
        os.chmod(staged, FOLDER_MODE)
        final = os.path.join(self.faces_dir, source.key)
        os.makedirs(self.faces_dir, exist_ok=True)
        if os.path.exists(final):  # stale results of a changed file, or a folder left without its marker
            old = tempfile.mkdtemp(prefix=f"old.{source.key}.", dir=self.staging_dir)
            os.replace(final, os.path.join(old, source.key))
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staged, final)

    # ---- segments of long videos: kept between runs until their video is complete ----------------------------
    def _segment_base(self, unit: Unit) -> str:
        return os.path.join(self.out_dir, SEGMENTS_DIR, unit.source.key, f"{unit.index:04d}-of-{unit.count:04d}")

    def segment_info(self, unit: Unit) -> dict | None:
        """What detection found in a segment scored before (by this run or an earlier one), or None."""
        try:
            with open(self._segment_base(unit) + ".json", encoding="utf-8") as handle:
                marker = json.load(handle)
        except (OSError, ValueError):
            return None
        plan = {"start": unit.start, "stop": unit.stop, "scan_start": unit.scan_start}
        if marker.get("fingerprint") != unit.source.fingerprint() or marker.get("plan") != plan:
            return None
        return marker["info"] if os.path.isfile(self._segment_base(unit) + ".npz") else None

    def write_segment(self, unit: Unit, faces: dict[str, np.ndarray] | None, info: dict) -> None:
        """A scored segment's faces (the columns that came back) and what detection found, the marker last."""
        base = self._segment_base(unit)
        os.makedirs(os.path.dirname(base), exist_ok=True)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as handle:
                save_arrays: Any = np.savez  # numpy's stubs take the keyword arrays for its own options
                save_arrays(handle, **(faces or {}))

        atomic_write(base + ".npz", save)
        plan = {"start": unit.start, "stop": unit.stop, "scan_start": unit.scan_start}
        marker = {"fingerprint": unit.source.fingerprint(), "plan": plan, "info": info}
        write_text(base + ".json", json.dumps(marker) + "\n")

    def read_segment(self, unit: Unit) -> dict[str, np.ndarray] | None:
        """A segment's faces as written (None: it had none)."""
        with np.load(self._segment_base(unit) + ".npz", allow_pickle=False) as stored:
            faces = {name: stored[name] for name in stored.files}
        return faces or None

    def drop_segments(self, source: BatchSource) -> None:
        """A complete video's segments, no longer needed."""
        shutil.rmtree(os.path.join(self.out_dir, SEGMENTS_DIR, source.key), ignore_errors=True)

    def write_progress(self, progress: dict) -> None:
        """RESULTS_DIR/progress.json, replaced whole (another terminal or a web page can follow the run)."""
        write_text(os.path.join(self.out_dir, PROGRESS_FILE), json.dumps(progress) + "\n")

    def write_tables(self, failures: list[dict]) -> int:
        """The summary of every complete source in the folder, and this run's failures; returns the summary's rows."""
        summaries = []
        if os.path.isdir(self.faces_dir):
            for key in sorted(os.listdir(self.faces_dir)):
                try:
                    with open(os.path.join(self.faces_dir, key, MARKER_FILE), encoding="utf-8") as handle:
                        summaries.append(json.load(handle)["summary"])
                except (OSError, ValueError, KeyError):
                    continue  # not complete: absent from the summary, scored again by the next run
        _write_parquet(os.path.join(self.out_dir, SUMMARY_FILE), summaries, schema(SUMMARY_COLUMNS))
        _write_parquet(os.path.join(self.out_dir, FAILURES_FILE), failures, schema(FAILURE_COLUMNS))
        return len(summaries)
