"""Which faces each video frame holds: found by the detector on key frames (every `detect_every`-th scored frame,
counted from the video's first frame, and whenever a face is lost) and followed in between by median flow
(engage.faces.flow), each face keeping its id (engage.inference.tracking).

Faces in a lecture video barely move from one frame to the next, so detecting and scoring every face in every frame
is mostly spent finding the same faces again. On a key frame the faces are exactly those that detection on every
frame finds, and they are scored in full (landmarks, crop, network); in between, each face's box is followed and its
scores are carried on from its last key frame (`FaceResult.tracked`), so p_engaged, smoothed over time, moves as it
would with every frame scored. A face that enters the picture is found at the next key frame, at most
`detect_every - 1` frames late; a face the detector misses on one key frame, having found it on the two detections
before, is followed on to the next. Key frames sit at fixed frame numbers, so a video cut into segments (engage batch)
gives the same key frames in each, and the same rows from the first key frame of a segment on.

A followed face whose look changes (its box's pixels correlate less than RESCORE_BELOW with those it was last scored
on: a yawn, a turn, closing eyes) is scored again in that frame, on its followed box: the scoring costs what it is
worth, little for still faces and more for changing ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engage.errors import UsageError

if TYPE_CHECKING:  # imported when first used: the CLI reads DEFAULT_DETECT_EVERY without loading OpenCV
    import numpy as np

    from engage.faces.detect import FaceBox
    from engage.inference.tracking import IouTracker
    from engage.io.video import Frame

DEFAULT_DETECT_EVERY = 10  # a key frame every 10 scored frames: a third of a second at 30 frames/s
# a followed face is scored again when its box's pixels correlate less than this with those it was last scored on
RESCORE_BELOW = 0.9


def check_detect_every(detect_every: int) -> int:
    if detect_every < 1:
        raise UsageError(f"--detect-every must be 1 or more, got {detect_every}")
    return detect_every


def is_keyframe(index: int, every: int, detect_every: int) -> bool:
    """Whether frame number `index` (from the video's first frame) is a key frame when every `every`-th frame is
    scored and every `detect_every`-th scored frame is detected."""
    return index % (every * detect_every) == 0


@dataclass
class FrameFaces:
    """One frame's faces, biggest first: boxes, face ids, and per face whether the detector found it in this frame
    (it is scored) or its box was followed from the frame before (its scores are carried on)."""

    frame: Frame
    boxes: list[FaceBox]
    ids: list[int]
    detected: list[bool]  # per face: scored in this frame (found by the detector, or changed since it was scored)
    prepared: Any = None  # what the caller made of the detected faces ahead of time (Predictor: crops and cues)


class FaceFollower:
    """The faces of a video's scored frames, one frame after another: `step(frame, boxes)` with the detector's boxes
    on a key frame (None in between, where the last frame's faces are followed; `detect` is called when one of them
    is lost)."""

    def __init__(
        self,
        tracker: IouTracker,
        detect: Callable[[np.ndarray], list[FaceBox]],
        follow: bool,
        rescore_below: float = RESCORE_BELOW,
    ) -> None:
        self.tracker = tracker
        self.detect = detect
        self.follow = follow  # False (detection on every frame): no gray frames are kept
        self.rescore_below = rescore_below
        self._gray: np.ndarray | None = None
        self._faces: list[tuple[int, FaceBox]] = []  # the last frame's (id, box)
        self._scored: dict[int, np.ndarray] = {}  # per face id, its box's pixels when it was last scored (flow.patch)
        self._found: list[set[int]] = [set(), set()]  # the ids the detector found at the last two detections

    def step(self, frame: Frame, boxes: list[FaceBox] | None, prepared: Any = None) -> FrameFaces:
        import cv2

        from engage.faces.flow import patch

        gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY) if self.follow else None
        faces = None
        if boxes is None:
            faces = self._followed(gray)
            if faces is None:  # a face was lost (or nothing to follow from): detect now
                boxes = self.detect(frame.rgb)
        if faces is not None:
            changed = []
            for face_id, box in faces:
                self.tracker.follow(face_id, box, frame.time_s)
                changed.append(self._changed(gray, face_id, box))
            result = FrameFaces(frame, [box for _, box in faces], [face_id for face_id, _ in faces], changed)
        else:
            assert boxes is not None  # detected on this frame
            ids = self.tracker.update(boxes, frame.time_s)
            carried = self._carried(gray, ids, boxes, frame.time_s)
            faces_now = sorted(
                [(face_id, box, True) for face_id, box in zip(ids, boxes)] + [(i, b, False) for i, b in carried],
                key=lambda face: face[1].area,
                reverse=True,
            )  # stable: the detected faces keep the detector's order (that of `prepared`)
            result = FrameFaces(
                frame,
                [box for _, box, _ in faces_now],
                [face_id for face_id, _, _ in faces_now],
                [found for _, _, found in faces_now],
                prepared,
            )
            self._found = [self._found[1], set(ids)]
            if gray is not None:  # what each face looked like when scored
                kept = {face_id: self._scored[face_id] for face_id, _ in carried if face_id in self._scored}
                self._scored = {**{face_id: patch(gray, box) for face_id, box in zip(ids, boxes)}, **kept}
        self._gray = gray
        self._faces = list(zip(result.ids, result.boxes))
        return result

    def _carried(
        self, gray: np.ndarray | None, ids: list[int], boxes: list[FaceBox], time_s: float
    ) -> list[tuple[int, FaceBox]]:
        """The faces of the last frame that the detector missed here but found at its last two detections (not a
        one-off false face), followed into this frame: a miss of one detection does not drop a face for a whole
        interval. Decided from the last two detections only, so a segment of a video read from a few key frames
        earlier carries the same faces."""
        from engage.faces.flow import follow_box
        from engage.inference.tracking import iou

        if gray is None or self._gray is None:
            return []
        carried = []
        for face_id, box in self._faces:
            if face_id in ids or not all(face_id in found for found in self._found):
                continue
            moved = follow_box(self._gray, gray, box)
            if moved is not None and all(iou(moved, other) < 0.3 for other in boxes):
                self.tracker.follow(face_id, moved, time_s)
                carried.append((face_id, moved))
        return carried

    def _changed(self, gray: np.ndarray | None, face_id: int, box: FaceBox) -> bool:
        """Whether a followed face no longer looks as it did when last scored (then it is scored again here)."""
        from engage.faces.flow import patch, similarity

        if gray is None or face_id not in self._scored:
            return False
        now = patch(gray, box)
        if similarity(self._scored[face_id], now) >= self.rescore_below:
            return False
        self._scored[face_id] = now
        return True

    def _followed(self, gray: np.ndarray | None) -> list[tuple[int, FaceBox]] | None:
        """The last frame's faces followed into this one, biggest first; None when one is lost."""
        from engage.faces.flow import follow_box

        if gray is None or self._gray is None:
            return None
        faces = []
        for face_id, box in self._faces:
            moved = follow_box(self._gray, gray, box)
            if moved is None:
                return None
            faces.append((face_id, moved))
        return sorted(faces, key=lambda face: face[1].area, reverse=True)
