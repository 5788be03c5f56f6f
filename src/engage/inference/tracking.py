"""Stable face ids across video frames (an IoU / centre-distance tracker) and per-face temporal smoothing.

Each track predicts where its face is now from its last box and its velocity (constant motion, at most one
box side ahead), so two faces that walk past each other keep their ids. Limits: there is no appearance
model, so faces that stop or turn while overlapping heavily can still swap ids; a face unseen for longer
than `max_gap_s` (occluded, turned away, out of the picture, a camera cut) comes back with a new id; a face
that jumps further than `max_shift` box widths between two scored frames (fast motion with a large `--every`)
gets a new id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from engage.faces.detect import FaceBox


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def centre(box: FaceBox) -> tuple[float, float]:
    return box.x + box.w / 2.0, box.y + box.h / 2.0


def centre_shift(a: FaceBox, b: FaceBox) -> float:
    """Distance between the box centres, in units of the boxes' mean side."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    dx, dy = ax - bx, ay - by
    side = (a.w + a.h + b.w + b.h) / 4.0
    return math.hypot(dx, dy) / max(side, 1.0)


@dataclass
class Track:
    face_id: int
    box: FaceBox
    last_seen_s: float
    velocity: tuple[float, float] | None = None  # of the box centre, px per second (None: seen once)

    def predicted(self, time_s: float) -> FaceBox:
        """The last box moved on by the velocity, at most one box side."""
        if self.velocity is None:
            return self.box
        dt = max(time_s - self.last_seen_s, 0.0)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        side = (self.box.w + self.box.h) / 2.0
        scale = min(1.0, side / max(math.hypot(dx, dy), 1e-9))
        return FaceBox(
            int(round(self.box.x + dx * scale)),
            int(round(self.box.y + dy * scale)),
            self.box.w,
            self.box.h,
            self.box.confidence,
        )

    def move_to(self, box: FaceBox, time_s: float) -> None:
        dt = time_s - self.last_seen_s
        if dt > 0:
            (x1, y1), (x0, y0) = centre(box), centre(self.box)
            measured = ((x1 - x0) / dt, (y1 - y0) / dt)
            old = self.velocity or measured  # smoothed: detector jitter should not throw the prediction
            self.velocity = ((old[0] + measured[0]) / 2.0, (old[1] + measured[1]) / 2.0)
        self.box, self.last_seen_s = box, time_s


class IouTracker:
    """Gives every face a stable id (1, 2, ... in order of first appearance) by matching it to where each live
    track's face should be now: by IoU first, by centre distance when boxes no longer overlap (optimal assignment)."""

    def __init__(self, min_iou: float = 0.2, max_shift: float = 1.0, max_gap_s: float = 1.0) -> None:
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.max_gap_s = max_gap_s
        self.tracks: list[Track] = []
        self.next_id = 1

    def _cost(self, track: Track, box: FaceBox, time_s: float) -> float:
        expected = track.predicted(time_s)
        overlap = iou(expected, box)
        if overlap >= self.min_iou:
            return 1.0 - overlap  # 0..0.8: overlapping boxes always win over distant ones
        shift = min(
            centre_shift(expected, box), centre_shift(track.box, box)
        )  # a face that stopped is near its last box
        return 1.0 + shift if shift <= self.max_shift else math.inf

    def follow(self, face_id: int, box: FaceBox, time_s: float) -> None:
        """A live track's face followed to `box` without detection (engage.inference.keyframes)."""
        for track in self.tracks:
            if track.face_id == face_id:
                track.move_to(box, time_s)
                return

    def update(self, boxes: list[FaceBox], time_s: float) -> list[int]:
        """The face ids of this frame's boxes (in the order given); unmatched boxes start new tracks."""
        self.tracks = [t for t in self.tracks if time_s - t.last_seen_s <= self.max_gap_s]
        ids = [0] * len(boxes)
        if self.tracks and boxes:
            cost = np.array([[self._cost(track, box, time_s) for box in boxes] for track in self.tracks])
            finite = np.where(np.isfinite(cost), cost, 1e6)
            for row, col in zip(*linear_sum_assignment(finite)):
                if np.isfinite(cost[row, col]):
                    self.tracks[row].move_to(boxes[col], time_s)
                    ids[col] = self.tracks[row].face_id
        for index, box in enumerate(boxes):
            if ids[index] == 0:
                ids[index] = self.next_id
                self.tracks.append(Track(self.next_id, box, time_s))
                self.next_id += 1
        return ids


class EmaSmoother:
    """Exponential moving average of a value per face, with a time constant in seconds (0: no smoothing).

    Weighting by elapsed time makes it independent of the frame rate and of `--every`:
    new = old + (1 - exp(-dt / seconds)) * (value - old).
    """

    def __init__(self, seconds: float = 1.0) -> None:
        if seconds < 0:
            raise ValueError(f"smoothing time must be >= 0 seconds, got {seconds}")
        self.seconds = seconds
        self.state: dict[int, tuple[float, float]] = {}  # face_id -> (time_s, smoothed value)

    def update(self, face_id: int, time_s: float, value: float) -> float:
        previous = self.state.get(face_id)
        if previous is None or self.seconds == 0:
            smoothed = value
        else:
            last_time, last_value = previous
            alpha = 1.0 - math.exp(-max(time_s - last_time, 0.0) / self.seconds)
            smoothed = last_value + alpha * (value - last_value)
        self.state[face_id] = (time_s, smoothed)
        return smoothed

    def keep_only(self, face_ids: Iterable[int]) -> None:
        """Forget faces whose tracks ended, so memory stays constant over long videos."""
        live = set(face_ids)
        self.state = {face_id: value for face_id, value in self.state.items() if face_id in live}
