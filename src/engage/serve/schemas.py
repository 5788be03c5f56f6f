"""The HTTP API's bodies as pydantic models: what each route answers, and the one shape of every refusal. The
OpenAPI schema is generated from them, so a client generated from the schema reads exactly what the server sends.

The answers are the objects `engage predict --json` prints (a face, an image, a video's summary); their fields are
described once, here. No model allows fields it does not name (additionalProperties: false), so a field the server
sent without declaring it is a failed response check, not a surprise for a client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(_Strict):
    """Every refusal of the server (4xx) and an internal error (500): one line saying what was wrong and the fix.
    Only FastAPI's own request validation answers 422 with its list (HTTPValidationError) instead."""

    detail: str = Field(description="One line: what was refused and why", examples=["no job 'abc' (unknown, ...)"])


class FaceMeasures(_Strict):
    """What was measured of a face to decide whether it can be judged."""

    size_px: float | None = Field(description="The box's shorter side in image pixels")
    sharpness: float = Field(description="High-frequency content of the crop relative to its contrast")
    turn: float | None = Field(description="Head turn from the detector's landmarks (None without landmarks)")
    det_conf: float = Field(description="The detector's confidence")


class FaceCuesBody(_Strict):
    """A face's attention cues, measured on its landmarks (conventions: engage.faces.cues; angles in degrees, 0
    facing the camera)."""

    yaw: float = Field(description="Head turned towards the image's right (the subject's left) is positive")
    pitch: float = Field(description="Head raised (chin up) is positive")
    roll: float = Field(description="Head tilted counter-clockwise as seen in the image is positive")
    gaze_yaw: float = Field(description="Where the eyes point: head pose plus the eyes' turn in the head; as yaw")
    gaze_pitch: float = Field(description="Where the eyes point: head pose plus the eyes' turn in the head; as pitch")
    eyes_open: float = Field(description="Mean eyelid opening over the eye's width: about 0.3 open, 0.12 closed")
    eye_open_right: float = Field(description="The subject's right eye, as eyes_open")
    eye_open_left: float = Field(description="The subject's left eye, as eyes_open")
    mouth_open: float = Field(description="Inner lips' gap over the mouth's width: 0 closed, 0.4 or more yawning")
    jaw_drop: float = Field(
        description="Nose tip to chin over the outer eye corners' span: about 0.9 closed or smiling, 1.0-1.2 yawning"
    )


class Face(_Strict):
    """One face, biggest first in its image: the object `engage predict --json` prints per face."""

    face_id: int = Field(ge=0, description="The face's number: its rank by size in an image, its track in a video")
    box: list[int] = Field(min_length=4, max_length=4, description="x, y, width, height in image pixels")
    det_conf: float = Field(description="The detector's confidence")
    p_engaged: float | None = Field(
        description="p(engaged) as reported: calibrated, smoothed over time in live sessions (a face that cannot "
        "be judged keeps its score, labelled uncertain); None when the model has no positive class"
    )
    p_engaged_raw: float | None = Field(description="The model's own p(engaged) for this image alone")
    label: str = Field(description="engaged, disengaged or uncertain (a face that cannot be judged), or a class")
    quality: str = Field(description="ok, or why the face cannot be judged: small, blurred, side-view, ...")
    tracked: bool = Field(
        description="In a video: the face was followed into this frame and its scores carried on from its last key "
        "frame (false: detected and scored in this frame; always false for an image or a live frame)"
    )
    probabilities: dict[str, float | None] = Field(description="Every class of the model")
    measures: FaceMeasures | None = None
    cues: FaceCuesBody | None = Field(description="The attention cues; None without landmarks (--no-cues)")
    expression: str | None = Field(default=None, description="The most likely expression (when asked)")
    expressions: dict[str, float | None] | None = Field(
        default=None, description="The FER model's 7 probabilities (when asked)"
    )


class ImageResult(_Strict):
    """Every face of one image, biggest first (an empty list: no face found, which is a result)."""

    source: str = Field(description="The upload's file name, made safe")
    kind: Literal["image"]
    width: int
    height: int
    faces: list[Face]
    annotated_png: str | None = Field(default=None, description="The image with boxes and scores, base64 PNG")


class FaceSummary(_Strict):
    """One tracked face of a video."""

    face_id: int
    frames: int
    first_s: float
    last_s: float
    mean_p_engaged: float | None
    share_engaged: float | None = Field(default=None, description="Share of its judged frames labelled engaged")
    share_uncertain: float = Field(description="Share of all its frames that could not be judged")
    label_shares: dict[str, float] = Field(
        description="Per label, its share of the judged frames (for uncertain: of all frames)"
    )


class VideoResult(_Strict):
    """A scored video: the summary `engage predict --json` prints for the file."""

    source: str
    kind: Literal["video"]
    width: int
    height: int
    fps: float
    every: int
    detect_every: int = Field(description="Faces detected on every Nth scored frame, followed in between")
    frames_scored: int
    frames_with_faces: int
    duration_s: float
    faces: list[FaceSummary]
    seconds: float
    frames_per_s: float | None


class JobLinks(_Strict):
    """Where a finished job's files are."""

    faces_csv: str = Field(alias="faces.csv", description="One row per face per frame (engage predict --csv)")
    timeline_png: str = Field(alias="timeline.png", description="p_engaged per face over time")


class VideoJob(_Strict):
    """A video job: its state, progress and, when done, its result and files."""

    id: str = Field(description="The job's id (32 hexadecimal characters)")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    source: str
    frames_done: int
    frames_total: int | None
    progress: float | None = Field(description="0-1, None while the frame count is unknown")
    created: float = Field(description="Unix time")
    result: VideoResult | None = None
    links: JobLinks | None = None
    error: str | None = None


class LiveSession(_Strict):
    """A live session: post frames to frames_url; it ends after idle_s seconds without a frame."""

    id: str
    frames_url: str
    idle_s: float


class LiveFrame(_Strict):
    """The faces of one live frame, ids kept across frames and p_engaged smoothed over time."""

    frame: int
    time_s: float
    width: int
    height: int
    faces: list[Face]


class Health(_Strict):
    """The server answers, and what it scores with."""

    status: Literal["ok"]
    version: str
    model: str
    jobs: int = Field(description="Video jobs held (any state)")
    live_sessions: int
    auth: bool = Field(description="Whether /v1 needs 'Authorization: Bearer TOKEN'")


class Serving(_Strict):
    """The settings this server scores with."""

    model: str
    classes: list[str]
    positive_class: str | None
    threshold: float
    detector: str
    backend: str
    device: Literal["cpu", "cuda"] = Field(description="Where the networks run: 'cpu' (float32) or 'cuda' (bf16)")
    expression_classes: list[str] | None
    base_rate: float | None
    site_calibration: dict[str, Any] | None = Field(description="The site calibration file's content, if any")
    abstain: bool
    quality_thresholds: dict[str, Any]
    cues: bool
    cue_head: bool


class Models(_Strict):
    """The shipped models' cards (as in src/engage/weights/*.json) and the settings this server scores with."""

    serving: Serving
    cards: dict[str, dict[str, Any]]
