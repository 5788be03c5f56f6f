"""Faces as the models see them: the face settings, the crop (margin, border, alignment, size, colour) of a found
box, the paper's pre-processing of one image (biggest face, gray, 48x48) and its per-image normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from engage.errors import EngageError, UsageError
from engage.faces.detect import (
    DETECTORS,
    LANDMARK_DETECTORS,
    FaceBox,
    FaceDetector,
    Point,
    biggest_face,
    clip_box,
)

if TYPE_CHECKING:
    from engage.faces.landmarks import FaceLandmarks

FACE_SIZE = 48  # the paper's (and FER2013's) face size
PAPER_NORM = 100.0  # the paper scales each mean-subtracted face to this L2 norm
NO_FACE_POLICIES = ("skip", "whole-image")
NORMALIZATIONS = ("standard", "paper")
BORDERS = ("clip", "pad")  # a grown box at the image edge: kept inside the image, or padded with the edge pixels
BOXES = ("detector", "landmarks")  # the box a face is cut from: the detector's own, or placed on its face mesh
CROP_FIELDS = ("detector", "box", "margin", "square", "border", "align", "size", "color", "normalize")

FaceSource = Literal["detected", "whole-image", "no-detect", "no-face"]


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
    box: str = "detector"  # cut from the detector's box, or from the landmark box (engage.faces.landmarks.landmark_box)

    def __post_init__(self) -> None:
        if self.no_face not in NO_FACE_POLICIES:
            raise UsageError(f"no-face policy must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.normalize not in NORMALIZATIONS:
            raise UsageError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.detector is not None and self.detector not in DETECTORS:
            raise UsageError(f"unknown detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}")
        if not 0.0 <= self.margin <= 1.0:
            raise UsageError(f"margin must be between 0 and 1, got {self.margin}")
        if self.box not in BOXES:
            raise UsageError(f"box must be one of {', '.join(BOXES)}, got {self.box!r}")
        if self.border not in BORDERS:
            raise UsageError(f"border must be one of {', '.join(BORDERS)}, got {self.border!r}")
        if not 16 <= int(self.size) <= 256 or int(self.size) % 16:
            raise UsageError(f"face size must be a multiple of 16 between 16 and 256 pixels, got {self.size}")
        if self.color and self.normalize == "paper":
            raise UsageError("the paper's normalisation is for gray faces; use --normalize standard with --color")
        if self.align and self.detector not in LANDMARK_DETECTORS:
            raise UsageError(
                f"--align turns faces upright on the detector's eye landmarks; detector {self.detector} "
                f"gives none (use {' or '.join(LANDMARK_DETECTORS)})"
            )

    def crop_differences(self, other: FaceSettings) -> list[str]:
        """The settings that cut a face differently from `other` (which faces are kept aside: no_face and
        min_confidence change which images give a face, not how a face is cut)."""
        return [
            f"{name} {getattr(self, name)!r} (other: {getattr(other, name)!r})"
            for name in CROP_FIELDS
            if getattr(self, name) != getattr(other, name)
        ]

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
    def from_dict(cls, values: dict) -> FaceSettings:
        """Settings as recorded in a dataset or model; an unknown key (a typo, a file from elsewhere) is an error,
        never silently dropped."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise EngageError(
                f"unknown face setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**values)


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


def cut_face(image: np.ndarray, box: FaceBox, settings: FaceSettings) -> np.ndarray:
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


def crop_box(box: FaceBox, width: int, height: int, settings: FaceSettings) -> FaceBox:
    """The region cut_face takes, before any rotation: with 'clip' inside the image, with 'pad' as grown."""
    if settings.border == "clip":
        return expand_box(box, width, height, settings.margin, settings.square)
    w, h = box.w * (1 + 2 * settings.margin), box.h * (1 + 2 * settings.margin)
    if settings.square:
        w = h = max(w, h)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    return FaceBox(int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(w)), int(round(h)), box.confidence)


def face_image(rgb: np.ndarray, settings: FaceSettings) -> np.ndarray:
    """The image faces are cut from: RGB for colour settings, else one gray channel."""
    return (
        np.repeat(rgb[:, :, None], 3, axis=2)
        if settings.color and rgb.ndim == 2
        else (rgb if settings.color else to_gray(rgb))
    )


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
        cut = landmark_cut(rgb, box, settings)
        if cut is not box:  # the landmark box of the face the image holds (it may run past the image: clipped)
            return FaceCrop(cut_face(image, cut, settings), crop_box(cut, width, height, settings), "no-detect")
        return FaceCrop(crop_face(image, box, settings.size), box, "no-detect")
    found = detector.detect(rgb)
    biggest = biggest_face(found)
    if biggest is not None:
        cut = landmark_cut(rgb, biggest, settings)
        return FaceCrop(
            cut_face(image, cut, settings), crop_box(cut, width, height, settings), "detected", len(found), biggest
        )
    if settings.no_face == "whole-image":
        box = whole_image_box(width, height, settings.square)
        return FaceCrop(crop_face(image, box, settings.size), box, "whole-image")
    return FaceCrop(None, None, "no-face")


def extract_faces(rgb: np.ndarray, detector: FaceDetector, settings: FaceSettings) -> list[tuple[np.ndarray, FaceBox]]:
    """Every face of an image (biggest first) cut as the settings say, for scoring group pictures and video."""
    image = face_image(rgb, settings)
    return [(cut_face(image, landmark_cut(rgb, found, settings), settings), found) for found in detector.detect(rgb)]


def box_on_landmarks(box: FaceBox, landmarks: FaceLandmarks | None) -> FaceBox:
    """The landmark box of a face (FaceLandmarks, or None: the detector's box stays), with the detector's confidence
    and 5 landmarks."""
    if landmarks is None:
        return box
    from engage.faces.landmarks import landmark_box

    x, y, w, h = landmark_box(landmarks.mesh)
    return FaceBox(
        int(round(x)), int(round(y)), max(2, int(round(w))), max(2, int(round(h))), box.confidence, box.landmarks
    )


def landmark_cut(rgb: np.ndarray, box: FaceBox, settings: FaceSettings) -> FaceBox:
    """The box a face is cut from: the detector's, or with settings.box 'landmarks' the box on its face mesh (the
    detector's box when the mesh finds no face there)."""
    if settings.box != "landmarks":
        return box
    from engage.faces.landmarks import shared_mesh

    return box_on_landmarks(box, shared_mesh().landmarks(rgb, box))


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
