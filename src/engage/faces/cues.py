"""Attention cues of one face from its landmarks (engage.faces.landmarks): head pose, gaze, eye openness and mouth
opening, each a number of its own (a column in every output).

Conventions (camera frame: x to the image's right, y down, z away from the camera; angles in degrees):
- yaw: the head turned towards the image's right (the subject's left) is positive; 0 facing the camera.
- pitch: the head raised (chin up) is positive; 0 facing the camera (the mesh's forehead-to-chin line leaning back
  by PITCH_ZERO, as it does on the median FER2013 portrait).
- roll: the head tilted counter-clockwise as seen in the image (the eye line rising to the image's right) is
  positive; 0 with the eyes level.
- gaze_yaw, gaze_pitch: where the eyes point, head pose plus the eyes' turn in the head (the iris centre's offset
  from the middle of the eye's corners over an eyeball radius of 0.43 eye widths, the mean of both eyes), same signs
  as yaw and pitch. An estimate from 2-D landmarks: good to tell "looking at the screen" from "looking down or
  away", not to point at a spot on the screen; unreliable beyond about 40 degrees of yaw (the far eye is hidden).
- eye_open_right, eye_open_left (the subject's eyes), eyes_open (their mean): the eyelids' opening over the eye's
  width (mean of three spans across the iris network's eyelid contour; about 0.3 open, 0.12 closed: the medians
  of WACV's faces and of the closed-eye faces).
- mouth_open: the gap between the inner lips over the mouth's width (0 closed, about 0.05 talking, 0.4 or more
  yawning; a broad smile that shows the teeth reads about 0.2 too).
- jaw_drop: the distance from the nose tip to the chin over the distance between the outer eye corners (both in 3-D,
  so turning the head does not change it): about 0.9 with the mouth closed or smiling, 1.0-1.2 in a yawn, when the
  jaw opens. It tells a yawn from an open smile, which mouth_open cannot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from engage.faces.landmarks import EYE_CONTOUR, FaceLandmarks

CUE_COLUMNS = (
    "yaw",
    "pitch",
    "roll",
    "gaze_yaw",
    "gaze_pitch",
    "eyes_open",
    "eye_open_right",
    "eye_open_left",
    "mouth_open",
    "jaw_drop",
)
# pairs of points mirrored across the face (subject's right, subject's left): eye corners, mouth corners, cheeks
SYMMETRIC_PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300))
FOREHEAD, CHIN = 10, 152
INNER_LIPS, MOUTH_CORNERS = (13, 14), (61, 291)
NOSE_TIP, OUTER_EYE_CORNERS = 1, (33, 263)
# the mesh's forehead-to-chin line leans back by this much (degrees) on a face looking at the camera: the median
# over 556 FER2013 validation faces (portraits, most of them facing the camera); pitch is measured from it
PITCH_ZERO = -7.9
EYEBALL_RADIUS = 0.43  # the eyeball's radius over the eye opening's width (about 12 mm over 28 mm)


@dataclass(frozen=True)
class FaceCues:
    """The attention cues of one face (see the module's docstring for what each means)."""

    yaw: float
    pitch: float
    roll: float
    gaze_yaw: float
    gaze_pitch: float
    eyes_open: float
    eye_open_right: float
    eye_open_left: float
    mouth_open: float
    jaw_drop: float

    def to_dict(self, digits: int = 4) -> dict:
        return {key: round(float(value), digits) for key, value in asdict(self).items()}

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in CUE_COLUMNS], np.float64)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def head_axes(mesh: np.ndarray) -> np.ndarray:
    """The head's axes in the camera frame as the columns of a rotation matrix: across the face (towards the
    subject's left), down the face (forehead to chin), and into the head (away from the camera when facing it)."""
    across = _unit(sum(mesh[left] - mesh[right] for right, left in SYMMETRIC_PAIRS))
    down = mesh[CHIN] - mesh[FOREHEAD]
    down = _unit(down - across * float(down @ across))
    return np.column_stack([across, down, np.cross(across, down)])


def head_pose(mesh: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a 468-point mesh in image pixels (x, y, depth)."""
    axes = head_axes(mesh)
    facing = -axes[:, 2]  # out of the face, towards the camera when facing it
    yaw = np.degrees(np.arctan2(facing[0], -facing[2]))
    pitch = np.degrees(np.arctan2(-facing[1], np.hypot(facing[0], facing[2]))) - PITCH_ZERO
    roll = np.degrees(np.arctan2(-axes[1, 0], axes[0, 0]))
    return float(yaw), float(pitch), float(roll)


def eye_opening(contour: np.ndarray) -> float:
    """The eyelids' mean opening (three spans across the eye) over the eye's corner-to-corner width, from the iris
    network's eye contour."""
    width = float(np.linalg.norm(contour[EYE_CONTOUR["outer"]] - contour[EYE_CONTOUR["inner"]]))
    spans = [float(np.linalg.norm(contour[upper] - contour[lower])) for upper, lower in EYE_CONTOUR["spans"]]
    return float(np.mean(spans) / max(width, 1e-6))


def eye_turn(eye: dict, roll_deg: float) -> tuple[float, float]:
    """(yaw, pitch) in degrees of one eye in the head: its iris centre's offset from the middle of its corners (the
    iris network's own, which sit on the eye better than the mesh's), in the face's level frame, over the eyeball's
    radius."""
    contour = eye["contour"]
    outer, inner = contour[EYE_CONTOUR["outer"]], contour[EYE_CONTOUR["inner"]]
    width = float(np.linalg.norm(inner - outer))
    offset = eye["iris"][0] - (outer + inner) / 2.0
    angle = np.radians(roll_deg)  # turn the offset back into the face's level frame
    cos, sin = np.cos(angle), np.sin(angle)
    level = np.array([cos * offset[0] - sin * offset[1], sin * offset[0] + cos * offset[1]])
    radius = max(EYEBALL_RADIUS * width, 1e-6)
    yaw = np.degrees(np.arcsin(np.clip(level[0] / radius, -1.0, 1.0)))
    pitch = np.degrees(np.arcsin(np.clip(-level[1] / radius, -1.0, 1.0)))
    return float(yaw), float(pitch)


def mouth_opening(mesh: np.ndarray) -> float:
    """The inner lips' gap over the mouth's corner-to-corner width."""
    gap = float(np.linalg.norm(mesh[INNER_LIPS[0], :2] - mesh[INNER_LIPS[1], :2]))
    width = float(np.linalg.norm(mesh[MOUTH_CORNERS[0], :2] - mesh[MOUTH_CORNERS[1], :2]))
    return gap / max(width, 1e-6)


def jaw_drop(mesh: np.ndarray) -> float:
    """The nose tip's 3-D distance to the chin over the outer eye corners' 3-D distance."""
    span = float(np.linalg.norm(mesh[OUTER_EYE_CORNERS[0]] - mesh[OUTER_EYE_CORNERS[1]]))
    return float(np.linalg.norm(mesh[NOSE_TIP] - mesh[CHIN])) / max(span, 1e-6)


def face_cues(landmarks: FaceLandmarks) -> FaceCues:
    """The attention cues of one face's landmarks."""
    mesh = landmarks.mesh
    yaw, pitch, roll = head_pose(mesh)
    turns = [eye_turn(points, roll) for points in landmarks.eyes.values()]
    right, left = (eye_opening(landmarks.eyes[eye]["contour"]) for eye in ("right", "left"))
    return FaceCues(
        yaw,
        pitch,
        roll,
        yaw + float(np.mean([t[0] for t in turns])),
        pitch + float(np.mean([t[1] for t in turns])),
        (right + left) / 2.0,
        right,
        left,
        mouth_opening(mesh),
        jaw_drop(mesh),
    )
