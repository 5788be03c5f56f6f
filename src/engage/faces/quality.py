"""Whether a face can be judged at all: its size, its sharpness, how far it is turned (from the detector's
landmarks) and how sure the detector was. A face that fails one of these gets the label "uncertain" and its reasons
in the `quality` column instead of a confident guess (`--no-abstain` switches this off).

The thresholds were chosen on validation data by `scripts/abstention.py` (docs/RESULTS.md, section 9): the size and
the sharpness below which the cross-validated models lose half of their skill (ROC AUC halfway between its value on
the same faces unchanged and chance) when WACV and DAiSEE faces are shrunk or blurred; the detector confidence below
which a "face" is as often not a face as it is (MTCNN: its own cut, 0.9, already; YuNet: 0.79); and a head turn
beyond any the validation faces reach (turned faces are mostly off task and judged right, so they are kept).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from engage.faces.detect import FaceBox, Point

OK = "ok"
UNCERTAIN = "uncertain"  # the label of a face that cannot be judged


@dataclass(frozen=True)
class FaceQuality:
    """What can be measured of one detected face: its box's shorter side in image pixels (None when unknown), the
    sharpness of the crop the model sees, the head turn from the landmarks (None without landmarks) and the
    detector's confidence."""

    size_px: float | None
    sharpness: float
    turn: float | None
    det_conf: float

    def to_dict(self) -> dict:
        return {key: (None if value is None else round(float(value), 4)) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """Below min_size_px, below min_sharpness, beyond max_turn or below min_det_conf[detector], a face is not
    judged. A detector not named in min_det_conf is not checked for confidence."""

    min_size_px: float
    min_sharpness: float
    max_turn: float
    min_det_conf: dict

    def reasons(self, quality: FaceQuality, detector: str | None) -> list[str]:
        """Why a face cannot be judged; an empty list when it can."""
        reasons = []
        if quality.size_px is not None and quality.size_px < self.min_size_px:
            reasons.append("small")
        if quality.sharpness < self.min_sharpness:
            reasons.append("blurred")
        if quality.turn is not None and quality.turn > self.max_turn:
            reasons.append("side-view")
        floor = self.min_det_conf.get(detector) if detector else None
        if floor is not None and quality.det_conf < floor:
            reasons.append("weak-detection")
        return reasons

    def to_dict(self) -> dict:
        return asdict(self)


# chosen by scripts/abstention.py on WACV and DAiSEE (see the module's docstring); printed and checked by it
THRESHOLDS = QualityThresholds(
    min_size_px=20, min_sharpness=0.182, max_turn=1.5, min_det_conf={"mtcnn": 0.9, "yunet": 0.79}
)


def sharpness(face: np.ndarray) -> float:
    """The crop's high-frequency content relative to its contrast: the standard deviation of its Laplacian over
    that of its pixels (a blurred or enlarged small face scores low; the same face brighter or darker does not move)."""
    gray = face.astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    spread = float(gray.std())
    if spread < 1e-3:  # a flat patch: nothing to see
        return 0.0
    return float(cv2.Laplacian(gray, cv2.CV_32F).std() / spread)


def head_turn(landmarks: tuple[Point, ...] | None) -> float | None:
    """How far the head is turned: the nose tip's horizontal offset from the midpoint of the eyes, in units of the
    distance between the eyes (0 facing the camera; a profile gives 1 or more). None without landmarks."""
    if landmarks is None:
        return None
    points = np.asarray(landmarks, np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return None
    left, right, nose = points[0], points[1], points[2]
    between = float(np.hypot(*(right - left)))
    offset = abs(nose[0] - (left[0] + right[0]) / 2)
    return float(min(offset / max(between, 1e-6), 10.0))


def measure_face(box: FaceBox, face: np.ndarray) -> FaceQuality:
    """The quality measures of one detected face (a FaceBox) and the crop cut from it (a box of no size: unknown)."""
    size = float(min(box.w, box.h)) if min(box.w, box.h) > 0 else None
    return FaceQuality(size, sharpness(face), head_turn(box.landmarks), float(box.confidence))


def quality_label(reasons: list[str]) -> str:
    """The `quality` column: 'ok', or the reasons joined by '+' (e.g. 'small+blurred')."""
    return "+".join(reasons) if reasons else OK
