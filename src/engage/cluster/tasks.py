"""Decoding and detection as Ray CPU tasks, one per unit of work (an image, a video, or a segment of a long video:
engage.cluster.segments): the frames `engage predict` would score (every Nth, with the file's own time stamps), their
faces detected on key frames and followed in between by the same code (Predictor.video_faces), given face ids by the
same tracker, and the detected faces' crops cut as the model expects (a followed face's row carries no crop: its
scores are its last key frame's, filled in by engage.cluster.assemble). Faces stream out in blocks; each unit's last
row says how it ended, or why it failed, so one broken file never stops the others."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from engage.cluster.options import BatchOptions
from engage.errors import EngageError, ImageReadError
from engage.faces.crop import to_gray
from engage.faces.cues import CUE_COLUMNS
from engage.faces.detect import FaceBox
from engage.faces.quality import measure_face
from engage.inference.predictor import Predictor, cue_array
from engage.io.images import read_image
from engage.io.video import VideoEndError, VideoSource

FACE, END, FAILED = "face", "end", "failed"  # row kinds: a face to score; a source done (info) or failed (reason)
FACES_PER_BLOCK = 512  # faces sent on to scoring together
# the quality measures and the attention cues travel with each face (turn and cues: NaN without landmarks)
FLOAT_COLUMNS = ("det_conf", "sharpness", "turn", *CUE_COLUMNS)
UNIT_FIELDS = ("key", "name", "path", "kind", "unit", "start", "stop", "scan_start")


class _Rows:
    """One source's face rows, collected into column arrays and handed on a block at a time."""

    def __init__(self, source: dict, crop_shape: tuple[int, ...]) -> None:
        self.source = source
        self.crop_shape = crop_shape
        self.sent = 0
        self._clear()

    def _clear(self) -> None:
        self.columns: dict[str, list] = {
            name: []
            for name in ("frame", "time_s", "face_index", "face_id", "tracked", "x", "y", "w", "h", *FLOAT_COLUMNS)
        }
        self.crops: list[np.ndarray] = []

    def add(
        self,
        frame: int,
        time_s: float,
        boxes: list[FaceBox],
        face_ids: list[int],
        crops: np.ndarray,
        cues: np.ndarray,
        detected: list[bool] | None = None,
    ) -> None:
        """One frame's faces; detected (per face, default all): False for a face followed into the frame, whose crop
        and cues rows are not used (its scores come from its last key frame)."""
        crops_of, cues_of = iter(crops), iter(cues)
        no_cues = np.full(len(CUE_COLUMNS), np.nan)
        for index, (box, face_id, found) in enumerate(zip(boxes, face_ids, detected or [True] * len(boxes))):
            crop = next(crops_of) if found else np.zeros(self.crop_shape, np.uint8)
            values = next(cues_of) if found else no_cues
            quality = measure_face(box, crop) if found else None
            for name, value in zip(CUE_COLUMNS, values):
                self.columns[name].append(value)
            for name, value in (
                ("frame", frame),
                ("time_s", time_s),
                ("face_index", index),
                ("face_id", face_id),
                ("tracked", int(not found)),
                ("x", box.x),
                ("y", box.y),
                ("w", box.w),
                ("h", box.h),
                ("det_conf", box.confidence),
                ("sharpness", np.nan if quality is None else quality.sharpness),
                ("turn", np.nan if quality is None or quality.turn is None else quality.turn),
            ):
                self.columns[name].append(value)
            self.crops.append(crop)

    def full(self) -> bool:
        return len(self.crops) >= FACES_PER_BLOCK

    def block(self) -> dict[str, np.ndarray]:
        """The faces collected so far as one block (then cleared)."""
        count = len(self.crops)
        block = self._frame(FACE, count, "")
        for name, values in self.columns.items():
            block[name] = np.asarray(values, np.float64 if name in ("time_s", *FLOAT_COLUMNS) else np.int64)
        block["crop"] = np.stack(self.crops).astype(np.uint8) if count else np.zeros((0, *self.crop_shape), np.uint8)
        self.sent += count
        self._clear()
        return block

    def last(self, kind: str, info: dict) -> dict[str, np.ndarray]:
        """The source's closing row: END with what detection found, or FAILED with the reason."""
        block = self._frame(kind, 1, json.dumps(info))
        for name in self.columns:
            block[name] = np.zeros(1, np.float64 if name in ("time_s", *FLOAT_COLUMNS) else np.int64)
        block["crop"] = np.zeros((1, *self.crop_shape), np.uint8)
        return block

    def _frame(self, kind: str, count: int, info: str) -> dict[str, np.ndarray]:
        return {
            "key": np.array([self.source["key"]] * count, dtype=object),
            "row_kind": np.array([kind] * count, dtype=object),
            "info": np.array([info] * count, dtype=object),
        }


def detect_sources(batch: dict[str, np.ndarray], options: BatchOptions) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data map_batches function: the units of `batch` (one per task) to blocks of faces, each unit closed by
    an END or FAILED row."""
    predictor = options.predictor()
    for index in range(len(batch["key"])):
        source = {name: batch[name][index] for name in UNIT_FIELDS}
        rows = _Rows(source, predictor.settings.shape)
        started = time.perf_counter()
        try:
            info = yield from _detect(source, predictor, options, rows)
        except Exception as error:
            reason = str(error) if isinstance(error, EngageError) else f"{type(error).__name__}: {error}"
            yield rows.last(FAILED, {"reason": reason})
            continue
        if rows.crops:
            yield rows.block()
        yield rows.last(END, {**info, "faces": rows.sent, "detect_s": round(time.perf_counter() - started, 3)})


def _detect(
    source: dict, predictor: Predictor, options: BatchOptions, rows: _Rows
) -> Generator[dict[str, np.ndarray], None, dict[str, Any]]:
    """Find and cut every face of one source into `rows`, yielding full blocks; returns what was found."""
    opened = _open(source)
    if isinstance(opened, np.ndarray):  # an image: frame 0 at time 0, faces numbered biggest first
        boxes = predictor.detect(opened)
        rows.add(0, 0.0, boxes, list(range(1, len(boxes) + 1)), *_crops(predictor, opened, boxes))
        height, width = opened.shape[:2]
        return {
            "kind": "image",
            "width": width,
            "height": height,
            "fps": None,
            "frames_scored": 1,
            "frames_with_faces": int(bool(boxes)),
            "duration_s": 0.0,
        }
    video = opened
    start, stop, scan_start = int(source["start"]), int(source["stop"]), int(source["scan_start"])
    frames = with_faces = 0
    last_time_s = 0.0
    try:
        follower = predictor.follower(video, options.every, options.detect_every)  # as Predictor.predict_video
        faces_of = predictor.video_faces(
            video, follower, options.every, None, options.detect_every, scan_start, stop if stop >= 0 else None
        )
        for faces in faces_of:
            frame = faces.frame
            found = [box for box, detected in zip(faces.boxes, faces.detected) if detected]
            rows.add(
                frame.index, frame.time_s, faces.boxes, faces.ids, *_crops(predictor, frame.rgb, found), faces.detected
            )
            if frame.index >= start:  # the overlap before a segment is for joining the ids only
                frames += 1
                with_faces += bool(faces.boxes)
                last_time_s = frame.time_s
            if rows.full():
                yield rows.block()
    except VideoEndError:
        # a segment that starts past the video's end (its frame count said more): nothing of it, not a failure
        return {
            "kind": "video",
            "width": video.width,
            "height": video.height,
            "fps": round(video.fps, 3),
            "frames_scored": 0,
            "frames_with_faces": 0,
            "duration_s": 0.0,
            "past_end": True,
        }
    finally:
        video.close()
    return {
        "kind": "video",
        "width": video.width,
        "height": video.height,
        "fps": round(video.fps, 3),
        "frames_scored": frames,
        "frames_with_faces": with_faces,
        "duration_s": round(last_time_s, 3),
    }


def _crops(predictor: Predictor, rgb: np.ndarray, boxes: list[FaceBox]) -> tuple[np.ndarray, np.ndarray]:
    """The faces' crops as the model expects them and their cues (rows of NaN where there are none)."""
    crops, cues = predictor.cut_and_cues(rgb, boxes, to_gray(rgb))
    return crops, cue_array(cues)


def _open(source: dict) -> np.ndarray | VideoSource:
    """RGB pixels of an image, or an opened VideoSource (named as `engage predict` names it)."""
    if source["kind"] == "image":
        return read_image(source["path"])
    if source["kind"] == "unknown":  # a named file without a media extension: an image, else a video
        try:
            return read_image(source["path"])
        except ImageReadError:
            pass
    try:
        video = VideoSource(source["path"])
    except EngageError:
        if source["kind"] == "unknown":
            raise EngageError(
                f"{source['name']}: neither an image nor a video that Pillow or OpenCV can read"
            ) from None
        raise
    video.name = source["name"]
    return video
