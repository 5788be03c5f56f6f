"""Facial landmarks in the original image: MediaPipe's face mesh (468 points in 3-D) and its iris network (the
eyelids and the iris of each eye), both converted once to ONNX (scripts/convert_landmarks.py, Apache-2.0; see
weights/landmarks.json) and run on onnxruntime.

A face is found by the detector in use; its box places a first square region (1.7 times the box's longer side,
turned by the line between the eyes the detector gives, when it gives them), and the mesh found there places a
second one, as MediaPipe's tracker does (1.5 times the mesh's extent, turned so that the eyes are level), where the
mesh is found again and kept: its points hardly depend on which detector gave the box or how tight it was. Each
image and each video frame is measured afresh (a frame scores as it would alone). Each eye is then cut (2.3 times
its corner-to-corner width, level) for the iris network, whose eyelid contour tells a closed eye from an open one
far better than the mesh's lids (ROC AUC 0.97 against 0.83, CEW's closed eyes against WACV's open ones, about 300
faces each, measured when choosing); the two eyes cost twice what the mesh costs (about 4 ms each on one core).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import cv2
import numpy as np

from engage.faces.detect import FaceBox

if TYPE_CHECKING:
    from onnxruntime import InferenceSession


class EyeContour(TypedDict):
    """Where EYE_CONTOUR's points sit in the iris network's eye contour."""

    outer: int
    inner: int
    spans: tuple[tuple[int, int], ...]  # (upper lid, lower lid) pairs across the eye


MESH_SIZE = 192  # the face mesh's input side
IRIS_SIZE = 64  # the iris network's input side
FIRST_SCALE = 1.7  # the first region's side over the detector box's longer side
MESH_SCALE = 1.5  # MediaPipe's: the region's side over the mesh's extent
EYE_SCALE = 2.3  # MediaPipe's: the eye region's side over the eye's width
# (outer, inner) corner of each of the subject's eyes in the mesh: right eye (image left when facing the camera)
EYE_CORNERS = {"right": (33, 133), "left": (263, 362)}
# the iris network's first 16 contour points: the lower lid from the outer to the inner corner (0-8), then the
# upper lid from the outer side to the inner (9-15), as MediaPipe maps them onto the mesh's eye points
EYE_CONTOUR: EyeContour = {"outer": 0, "inner": 8, "spans": ((12, 4), (13, 5), (11, 3))}
MIN_PRESENCE = 0.5  # the mesh's own face-presence probability below which no landmarks are given
# the landmark box (a model trained with FaceSettings(box="landmarks") is cut from it): its side is LANDMARK_BOX[0]
# times the 3-D distance between the outer eye corners, its centre the middle of the eyes' corners and the mouth
# moved by LANDMARK_BOX[1:] of that distance: the median of where MTCNN's box sits on 10,043 WACV and DAiSEE faces
# (scripts/landmark_box.py), the sideways shift set to 0 (measured -0.04, as those students turn right more often
# than left; a mirrored face must get the mirrored box)
BOX_POINTS = {"eyes": (33, 133, 263, 362), "mouth": (13, 14, 61, 291), "span": (33, 263)}
LANDMARK_BOX = (1.5244, 0.0, -0.1619)


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's landmarks in original image pixels: mesh (468, 3): x, y and a depth z in the same pixel scale
    (larger is further from the camera); eyes: per eye ('right', 'left': the subject's), the iris network's
    eye contour (71, 2: the first 16 the eyelids, as EYE_CONTOUR says) and iris (5, 2: centre, then 4 points on
    its edge); presence: the mesh's face
    probability."""

    mesh: np.ndarray
    eyes: dict[str, dict[str, np.ndarray]]
    presence: float


def _session(name: str, threads: int) -> InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights", name)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def region(center: np.ndarray, side: float, angle: float, size: int) -> np.ndarray:
    """The 2x3 affine map from image pixels to a size x size patch: a square of `side` pixels about `center`, turned
    by `angle` radians (counter-clockwise as seen), so that the square's content appears upright."""
    cos, sin = np.cos(angle), np.sin(angle)
    scale = size / side
    # patch = scale * R(angle) @ (p - center) + (size - 1) / 2, with R turning the image back by the region's angle
    rotation = np.array([[cos, -sin], [sin, cos]]) * scale
    offset = (size - 1) / 2.0 - rotation @ np.asarray(center, np.float64)  # pixel centres at whole numbers (OpenCV's)
    return np.hstack([rotation, offset[:, None]])


def to_image(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Patch coordinates (N, 2 or 3) back to image pixels (a depth column is scaled, not moved)."""
    inverse = cv2.invertAffineTransform(affine)
    out = np.array(points, np.float64, copy=True)
    out[:, :2] = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    if out.shape[1] > 2:
        out[:, 2] *= float(np.sqrt(abs(np.linalg.det(inverse[:, :2]))))
    return out


def eye_line_angle(mesh: np.ndarray) -> float:
    """The angle (radians, counter-clockwise as seen) of the line from the subject's right eye's outer corner to
    the left's."""
    right, left = mesh[EYE_CORNERS["right"][0], :2], mesh[EYE_CORNERS["left"][0], :2]
    return float(np.arctan2(-(left[1] - right[1]), left[0] - right[0]))


def landmark_box(mesh: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, w, h) of the square box where the detector's box sits on average relative to this face's mesh."""
    span = float(np.linalg.norm(mesh[BOX_POINTS["span"][0]] - mesh[BOX_POINTS["span"][1]]))
    middle = (mesh[list(BOX_POINTS["eyes"]), :2].mean(axis=0) + mesh[list(BOX_POINTS["mouth"]), :2].mean(axis=0)) / 2
    centre = middle + np.array(LANDMARK_BOX[1:]) * span
    side = LANDMARK_BOX[0] * span
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side, side


def detector_eye_angle(box: FaceBox | tuple[float, float, float, float]) -> float:
    """The angle (radians, counter-clockwise as seen) of the line between the eyes the detector gives with its box
    (MTCNN's and YuNet's first two landmarks, in image order); 0 without them. The first region is turned by it, as
    MediaPipe turns its region by its detector's eye keypoints: a tilted face is then found upright (YuNet's eye
    line follows a tilt less than MTCNN's; the second pass, placed by the mesh itself, levels the rest)."""
    points = getattr(box, "landmarks", None)
    if not points or len(points) < 2 or not np.isfinite(np.asarray(points[:2], float)).all():
        return 0.0
    (lx, ly), (rx, ry) = points[0], points[1]
    return float(np.arctan2(-(ry - ly), rx - lx)) if (lx, ly) != (rx, ry) else 0.0


def tracked_region(mesh: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of the region MediaPipe's tracker looks in next: the mesh's extent times 1.5, level."""
    low, high = mesh[:, :2].min(axis=0), mesh[:, :2].max(axis=0)
    return (low + high) / 2.0, MESH_SCALE * float(max(high - low)), eye_line_angle(mesh)


_SHARED: list[FaceMesh] = []


def shared_mesh() -> FaceMesh:
    """One FaceMesh per process, made when first asked for (pre-processing's workers each make their own)."""
    if not _SHARED:
        _SHARED.append(FaceMesh())
    return _SHARED[0]


class FaceMesh:
    """The face mesh and iris networks on onnxruntime: `landmarks(rgb, box)` gives a face's FaceLandmarks, or None
    when the mesh sees no face in the box's region.

    >>> mesh = FaceMesh()
    >>> points = mesh.landmarks(rgb, predictor.detect(rgb)[0])
    """

    def __init__(self, threads: int = 1) -> None:
        self._mesh = _session("facemesh.onnx", threads)
        self._iris = _session("iris.onnx", threads)
        self._mesh_input = self._mesh.get_inputs()[0].name
        self._iris_input = self._iris.get_inputs()[0].name

    def _run_mesh(self, rgb: np.ndarray, center: np.ndarray, side: float, angle: float) -> tuple[np.ndarray, float]:
        affine = region(center, side, angle, MESH_SIZE)
        patch = cv2.warpAffine(
            rgb, affine, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        points, presence = self._mesh.run(None, {self._mesh_input: (patch[None].astype(np.float32) / 255.0)})
        presence = float(1.0 / (1.0 + np.exp(-float(np.ravel(presence)[0]))))
        return to_image(points.reshape(-1, 3), affine), presence

    def _run_eyes(
        self, rgb: np.ndarray, mesh: np.ndarray, angle: float, eyes: tuple[str, ...] = tuple(EYE_CORNERS)
    ) -> dict[str, dict[str, np.ndarray]]:
        """The eyes named through the iris network in one batch; the left eye is mirrored in and out, as MediaPipe
        does (the network knows right eyes)."""
        patches, affines = [], []
        for eye in eyes:
            outer_index, inner_index = EYE_CORNERS[eye]
            outer, inner = mesh[outer_index, :2], mesh[inner_index, :2]
            side = max(EYE_SCALE * float(np.hypot(*(inner - outer))), 4.0)
            affine = region((outer + inner) / 2.0, side, angle, IRIS_SIZE)
            patch = cv2.warpAffine(
                rgb, affine, (IRIS_SIZE, IRIS_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            patches.append(patch[:, ::-1] if eye == "left" else patch)
            affines.append(affine)
        contours, irises = self._iris.run(None, {self._iris_input: np.stack(patches).astype(np.float32) / 255.0})
        found = {}
        for row, (eye, affine) in enumerate(zip(eyes, affines)):
            contour = contours[row].reshape(-1, 3)[:, :2].astype(np.float64)
            iris = irises[row].reshape(-1, 3)[:, :2].astype(np.float64)
            if eye == "left":
                contour[:, 0] = IRIS_SIZE - 1 - contour[:, 0]  # pixel centres at whole numbers
                iris[:, 0] = IRIS_SIZE - 1 - iris[:, 0]
            found[eye] = {"contour": to_image(contour, affine), "iris": to_image(iris, affine)}
        return found

    def landmarks(
        self, rgb: np.ndarray, box: FaceBox | tuple[float, float, float, float], eyes: bool = True
    ) -> FaceLandmarks | None:
        """The landmarks of the face in `box` (a FaceBox, or (x, y, w, h)) of an RGB uint8 image. eyes=False: the
        mesh alone (no iris network; FaceLandmarks.eyes is empty), enough for the landmark box."""
        x, y, w, h = (box.x, box.y, box.w, box.h) if isinstance(box, FaceBox) else box
        if min(w, h) < 2:
            return None
        rgb = np.ascontiguousarray(rgb)
        center = np.array([x + w / 2.0, y + h / 2.0])
        mesh, presence = self._run_mesh(rgb, center, FIRST_SCALE * max(w, h), detector_eye_angle(box))
        if presence < MIN_PRESENCE:
            return None
        # found again where MediaPipe's tracker would look for it: the first mesh's extent, turned level. The second
        # mesh hardly depends on the first region (boxes from MTCNN, YuNet or one grown by a tenth give landmark boxes
        # within 1 px; the first meshes differ by up to 7%)
        mesh, presence = self._run_mesh(rgb, *tracked_region(mesh))
        if presence < MIN_PRESENCE:
            return None
        return FaceLandmarks(mesh, self._run_eyes(rgb, mesh, eye_line_angle(mesh)) if eyes else {}, presence)
