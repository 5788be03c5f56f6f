"""What `engage batch` is pointed at: the same files, folders and globs as `engage predict`, each source named
as `engage predict` names it (its rows' `source`) and keyed by its absolute path, so that a re-run finds the
results it already has whatever else it is given."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass

from engage.errors import UsageError
from engage.io.inputs import expand_inputs, safe_stem


@dataclass(frozen=True)
class BatchSource:
    """One image or video file to score."""

    name: str  # as `engage predict` names it: the path as given or found
    path: str  # absolute: workers open this (on a cluster, every node must see the same path)
    kind: str  # 'image', 'video' or 'unknown' (a named file without a media extension)
    key: str  # its results' folder name: readable, and unique per absolute path
    size: int
    mtime_ns: int

    def fingerprint(self) -> dict:
        """What must not have changed for earlier results of this source to stand."""
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}

    def to_dict(self) -> dict:
        return asdict(self)


def source_key(path: str) -> str:
    """The results folder of a file: its name, made safe, and a hash of its absolute path."""
    digest = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{safe_stem(os.path.basename(path))[:60]}-{digest}"


def list_sources(inputs: list[str]) -> tuple[list[BatchSource], list[str]]:
    """Every image and video under the inputs, in order, without duplicates; and the files that are neither.
    A path that does not exist, or a folder without images or videos, is an EngageError (one line)."""
    if not inputs:
        raise UsageError("nothing to score: give images, videos, folders or globs")
    expanded = expand_inputs(list(inputs))
    sources = []
    for item in expanded.items:
        assert item.path is not None  # files only: no camera, no sample
        stat = os.stat(item.path)
        sources.append(
            BatchSource(
                item.name, os.path.abspath(item.path), item.kind, source_key(item.path), stat.st_size, stat.st_mtime_ns
            )
        )
    return sources, expanded.ignored
