"""What prediction gives back: a result per face per frame, its flat table (CSV) and JSON forms, and the
per-face summary of a video (mean p_engaged, share of time engaged, a bounded timeline)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from engage.faces.cues import CUE_COLUMNS, FaceCues
from engage.faces.detect import FaceBox
from engage.faces.quality import OK, UNCERTAIN, FaceQuality
from engage.io.files import StagedFile

if TYPE_CHECKING:
    import pandas

# One row per face per frame (OpenFace-style stable names); images are frame 0 at time 0.
CSV_COLUMNS = ("source", "frame", "time_s", "face_id", "x", "y", "w", "h", "det_conf", "p_engaged", "label")
RAW_COLUMN = "p_engaged_raw"  # the unsmoothed score, always written after the documented columns
QUALITY_COLUMN = "quality"  # 'ok', or why the face was not judged (label 'uncertain'): after the raw score
# in video, whether the face was followed into this frame and its scores carried on from its last key frame (False:
# detected and scored in this frame; engage.inference.keyframes): after the quality
TRACKED_COLUMN = "tracked"
# the attention cues (engage.faces.cues: head pose, gaze, eye and mouth opening) after the quality; empty where the
# face's landmarks were not found or cues were not asked for


@dataclass
class FaceResult:
    """One face: where it is, how sure the detector was, and what the model says.

    p_engaged is the (smoothed, in video) probability of the positive class; p_engaged_raw the network's
    own value for this frame; probabilities holds every class of the model; expressions the FER model's
    7 probabilities when asked. quality is 'ok', or the reasons the face cannot be judged ('small', 'blurred',
    'side-view', 'weak-detection', joined by '+'; its label is then 'uncertain'); measures holds what was measured;
    cues the attention cues (head pose, gaze, eye and mouth opening), None without landmarks.
    """

    face_id: int
    box: FaceBox
    probabilities: dict[str, float]
    label: str
    p_engaged: float | None = None
    p_engaged_raw: float | None = None
    expressions: dict[str, float] | None = None
    face: np.ndarray | None = field(
        default=None, repr=False, compare=False
    )  # the crop that was scored, as the model saw it
    quality: str = OK
    measures: FaceQuality | None = field(default=None, compare=False)
    cues: FaceCues | None = None
    tracked: bool = False  # video: the box was followed and the scores carried on from the face's last key frame

    @property
    def det_conf(self) -> float:
        return self.box.confidence

    @property
    def expression(self) -> str | None:
        """The most likely expression, when expressions were asked for."""
        expressions = self.expressions
        return max(expressions, key=expressions.__getitem__) if expressions else None

    def to_dict(self) -> dict:
        values = {
            "face_id": self.face_id,
            "box": self.box.as_list(),
            "det_conf": round(self.det_conf, 4),
            "p_engaged": _round(self.p_engaged),
            "p_engaged_raw": _round(self.p_engaged_raw),
            "label": self.label,
            "quality": self.quality,
            "tracked": self.tracked,
            "probabilities": {name: _round(p) for name, p in self.probabilities.items()},
        }
        if self.measures is not None:
            values["measures"] = self.measures.to_dict()
        values["cues"] = self.cues.to_dict() if self.cues is not None else None
        if self.expressions is not None:
            values["expression"] = self.expression
            values["expressions"] = {name: _round(p) for name, p in self.expressions.items()}
        return values


def cue_values(cues: FaceCues | None) -> dict:
    """The cue columns of one face (None each when there are no cues)."""
    if cues is None:
        return dict.fromkeys(CUE_COLUMNS)
    return {name: float(value) for name, value in zip(CUE_COLUMNS, cues.as_array())}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class FrameResult:
    """Every face of one image or video frame, biggest first."""

    source: str
    frame: int
    time_s: float
    faces: list[FaceResult]
    width: int
    height: int
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # RGB, only when asked (annotation)

    def records(self) -> list[dict]:
        """One typed record per face (the table's columns, numbers as numbers, None where there is none)."""
        records = []
        for face in self.faces:
            record = {
                "source": self.source,
                "frame": self.frame,
                "time_s": float(self.time_s),
                "face_id": face.face_id,
                "x": face.box.x,
                "y": face.box.y,
                "w": face.box.w,
                "h": face.box.h,
                "det_conf": float(face.det_conf),
                "p_engaged": face.p_engaged,
                "label": face.label,
                RAW_COLUMN: face.p_engaged_raw,
                QUALITY_COLUMN: face.quality,
                TRACKED_COLUMN: face.tracked,
                **cue_values(face.cues),
            }
            if face.expressions is not None:
                record["expression"] = face.expression
                record.update({f"p_{name}": p for name, p in face.expressions.items()})
            records.append(record)
        return records

    def rows(self, expression_names: list[str] | None = None) -> list[dict]:
        """The CSV rows of this frame (one per face; none when no face was found)."""
        rows = []
        for record in self.records():
            row = {
                **record,
                "time_s": f"{record['time_s']:.3f}",
                "det_conf": f"{record['det_conf']:.4f}",
                "p_engaged": _fmt(record["p_engaged"]),
                RAW_COLUMN: _fmt(record[RAW_COLUMN]),
                **{name: _fmt(record[name]) for name in CUE_COLUMNS},
            }
            for name in expression_names or ():
                row[f"p_{name}"] = _fmt(record.get(f"p_{name}"))
            if expression_names:
                row["expression"] = record.get("expression") or ""
            else:
                row = {
                    key: value
                    for key, value in row.items()
                    if key in CSV_COLUMNS or key in (RAW_COLUMN, QUALITY_COLUMN, TRACKED_COLUMN, *CUE_COLUMNS)
                }
            rows.append(row)
        return rows


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def csv_columns(expression_names: list[str] | None = None) -> list[str]:
    """The documented columns, the raw score, the quality, whether the face was tracked, the attention cues, then (when asked) the expression and its
    7 probabilities."""
    columns = [*CSV_COLUMNS, RAW_COLUMN, QUALITY_COLUMN, TRACKED_COLUMN, *CUE_COLUMNS]
    if expression_names:
        columns += ["expression"] + [f"p_{name}" for name in expression_names]
    return columns


class CsvWriter(StagedFile):
    """Streams rows to a temporary file beside `path` and renames it over `path` on commit, so memory stays
    constant and a failed or interrupted run never leaves half a CSV."""

    def __init__(self, path: str, columns: list[str]) -> None:
        super().__init__(path, ".csv")
        self._file = open(self.tmp_path, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=columns)
        self._writer.writeheader()
        self.rows = 0

    def write(self, rows: list[dict]) -> None:
        self._writer.writerows(rows)
        self.rows += len(rows)

    def _close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


@dataclass
class FaceSummary:
    """One tracked face over a video: how long it was seen and how engaged it looked. Frames in which the face
    could not be judged (label 'uncertain') count for time on screen, not for its mean or shares of engagement."""

    face_id: int
    frames: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    p_sum: float = 0.0
    p_count: int = 0
    labels: Counter[str] = field(default_factory=Counter)

    @property
    def mean_p_engaged(self) -> float | None:
        """Mean p_engaged over the frames in which the face was judged."""
        return self.p_sum / self.p_count if self.p_count else None

    @property
    def judged(self) -> int:
        return self.frames - self.labels[UNCERTAIN]

    def share(self, label: str) -> float:
        """Share of this face's judged frames (hence of its judged time on screen) with this label; for
        'uncertain', the share of all its frames."""
        if label == UNCERTAIN:
            return self.labels[label] / self.frames if self.frames else 0.0
        return self.labels[label] / self.judged if self.judged else 0.0

    def to_dict(self, positive_label: str | None) -> dict:
        values: dict[str, Any] = {
            "face_id": self.face_id,
            "frames": self.frames,
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
            "mean_p_engaged": _round(self.mean_p_engaged),
        }
        if positive_label is not None:
            values["share_engaged"] = round(self.share(positive_label), 4)
        values["share_uncertain"] = round(self.share(UNCERTAIN), 4)
        values["label_shares"] = {label: round(self.share(label), 4) for label in sorted(self.labels)}
        return values


TIMELINE_CUES = ("yaw", "pitch", "roll", "gaze_yaw", "gaze_pitch", "eyes_open", "mouth_open")  # drawn per face


class VideoSummary:
    """Per-face statistics and a p_engaged timeline for a whole video, updated frame by frame.

    Memory is bounded: each face's timeline keeps at most `max_points` points, thinned evenly (every 2nd,
    then every 4th, ... point) as a long video goes on.
    """

    def __init__(self, positive_label: str | None, max_points: int = 4000, threshold: float = 0.5) -> None:
        self.positive_label = positive_label
        self.threshold = threshold  # the model's decision threshold (drawn on the timeline)
        self.max_points = max_points
        self.faces: dict[int, FaceSummary] = {}
        # face_id -> (time_s, p, p_raw, *TIMELINE_CUES) (a cue NaN where the face had no landmarks)
        self.timeline: dict[int, list[tuple[float | None, ...]]] = {}
        self._stride: dict[int, int] = {}
        self.frames = 0
        self.frames_with_faces = 0
        self.last_time_s = 0.0

    def add(self, frame: FrameResult) -> None:
        self.frames += 1
        self.frames_with_faces += bool(frame.faces)
        self.last_time_s = frame.time_s
        for face in frame.faces:
            summary = self.faces.get(face.face_id)
            if summary is None:
                summary = self.faces[face.face_id] = FaceSummary(face.face_id, first_s=frame.time_s)
            summary.frames += 1
            summary.last_s = frame.time_s
            summary.labels[face.label] += 1
            if face.p_engaged is not None and face.label != UNCERTAIN:
                summary.p_sum += face.p_engaged
                summary.p_count += 1
                cues = [np.nan if face.cues is None else getattr(face.cues, name) for name in TIMELINE_CUES]
                self._add_point(
                    face.face_id, summary.frames - 1, (frame.time_s, face.p_engaged, face.p_engaged_raw, *cues)
                )

    def _add_point(self, face_id: int, index: int, point: tuple[float | None, ...]) -> None:
        stride = self._stride.setdefault(face_id, 1)
        if index % stride:
            return
        points = self.timeline.setdefault(face_id, [])
        points.append(point)
        if len(points) > self.max_points:
            self.timeline[face_id] = points[::2]
            self._stride[face_id] = stride * 2

    def face_list(self) -> list[dict]:
        return [self.faces[i].to_dict(self.positive_label) for i in sorted(self.faces)]


def to_dataframe(results: FrameResult | Iterable[FaceResult | FrameResult | list[FaceResult]]) -> pandas.DataFrame:
    """The per-face table (one row per face per frame, the columns of `engage predict --csv`, numbers as numbers)
    as a pandas DataFrame, from what Predictor gives: one image's FaceResults, a FrameResult, or an iterable of
    FrameResults (a video), or of FaceResult lists (several images: frame = the image's index)."""
    import pandas

    frames: list[FrameResult] = []
    if isinstance(results, FrameResult):
        frames = [results]
    else:
        items = list(results)
        if items and all(isinstance(item, FaceResult) for item in items):
            frames = [FrameResult("", 0, 0.0, cast(list[FaceResult], items), 0, 0)]  # all FaceResults: checked
        else:
            for index, item in enumerate(items):
                if isinstance(item, FrameResult):
                    frames.append(item)
                elif isinstance(item, list) and all(isinstance(face, FaceResult) for face in item):
                    frames.append(FrameResult("", index, 0.0, item, 0, 0))
                else:
                    raise TypeError(f"to_dataframe takes FaceResults or FrameResults, not {type(item).__name__}")
    records = [record for frame in frames for record in frame.records()]
    columns = list(dict.fromkeys([*csv_columns(), *(key for record in records for key in record)]))
    frame = pandas.DataFrame.from_records(records, columns=columns)
    return frame.astype(dict.fromkeys(CUE_COLUMNS, "float64"))  # NaN where a face has no cues, as in Parquet
