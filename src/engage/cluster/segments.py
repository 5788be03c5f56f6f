"""The units of work of `engage batch`: an image, a video, or a segment of a video longer than `--segment-s`, so that
one long recording is scored by many workers at once.

A segment covers frames [start, stop) of its video; it is scanned from `scan_start`, a short overlap earlier, so that
its faces can be given the ids the segment before gave them (the tracks are matched on the overlap's frames, where
both segments find the same boxes: key frames sit at the same frame numbers in every segment, engage.inference.
keyframes). Segment boundaries are multiples of the key frame spacing (every x detect_every frames); the last segment
runs to the video's real end, whatever its frame count says. The smoothing of p_engaged is done once over the whole
video's rows, in frame order, when every segment is in (engage.cluster.assemble), so it needs no warm-up."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engage.cluster.sources import BatchSource
from engage.errors import UsageError
from engage.inference.predictor import video_gap_s

DEFAULT_SEGMENT_S = 300.0  # five minutes of video per task
OVERLAP_S = 2.0  # at least this much before each segment is scanned again, to join the ids (more than a track's gap)


@dataclass(frozen=True)
class Unit:
    """One task's work: a whole source (count 1), or segment `index` of `count` of a video."""

    source: BatchSource
    index: int = 0
    count: int = 1
    start: int = 0  # the first frame that is this unit's own
    stop: int = -1  # the frame it stops before (-1: the video's end)
    scan_start: int = 0  # where it starts reading: `start` less the overlap
    frames: int | None = None  # the frames it covers, as the file's frame count says (None: not known)

    @property
    def key(self) -> str:
        return self.source.key if self.count == 1 else f"{self.source.key}@{self.index:04d}"

    def describe(self) -> str:
        """Which part of the source this is, for a failure's reason."""
        if self.count == 1:
            return ""
        end = "the end" if self.stop < 0 else str(self.stop - 1)
        return f"segment {self.index + 1} of {self.count} (frames {self.start} to {end})"

    def to_item(self) -> dict:
        """The row a detection task gets (engage.cluster.tasks.UNIT_FIELDS)."""
        source = self.source
        return {
            "key": self.key,
            "name": source.name,
            "path": source.path,
            "kind": source.kind,
            "unit": self.index,
            "start": self.start,
            "stop": self.stop,
            "scan_start": self.scan_start,
        }


def check_segment_s(segment_s: float) -> float:
    if not segment_s > 0 or not math.isfinite(segment_s):
        raise UsageError(f"--segment-s must be more than 0 seconds, got {segment_s:g}")
    return segment_s


def video_length(path: str) -> tuple[int | None, float]:
    """(frame count as the file says, frames/s) of a video; (None, 0) when it cannot be read (its task will say)."""
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return None, 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return (count if count > 0 else None), fps
    finally:
        capture.release()


def _scored(start: int, stop: int, every: int) -> int:
    """How many frames of [start, stop) are scored when every `every`-th from frame 0 is."""
    return len(range(-(-start // every) * every, stop, every))


def plan_units(sources: list[BatchSource], segment_s: float, every: int = 1, detect_every: int = 1) -> list[Unit]:
    """Every source as one unit, each video longer than segment_s seconds as segments of about segment_s."""
    check_segment_s(segment_s)
    units: list[Unit] = []
    step = every * detect_every  # segment boundaries on key frames
    for source in sources:
        if source.kind != "video":
            units.append(Unit(source))
            continue
        count, fps = video_length(source.path)
        if count is None or not 0.5 < fps < 1000:
            units.append(Unit(source, frames=count))
            continue
        overlap = max(3 * step, math.ceil(max(OVERLAP_S, 2 * video_gap_s(every, fps)) * fps / step) * step)
        length = max(overlap, math.ceil(segment_s * fps / step) * step)  # an overlap reaches one segment back only
        if count <= length:
            units.append(Unit(source, frames=_scored(0, count, every)))
            continue
        starts = list(range(0, count, length))
        for index, start in enumerate(starts):
            last = index == len(starts) - 1
            stop = -1 if last else start + length
            units.append(
                Unit(
                    source,
                    index,
                    len(starts),
                    start,
                    stop,
                    max(0, start - overlap),
                    _scored(start, count if last else stop, every),
                )
            )
    return units
