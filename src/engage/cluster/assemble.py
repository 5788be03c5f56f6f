"""The per-source steps that depend on frame order, run where the scored faces come back: blocks arrive in any
order, so each source's faces are gathered until its closing row and all its faces are in, then put in frame
order, smoothed per face id over time (as `engage predict` smooths them), labelled and made into the rows of
`engage predict --csv` (`FrameResult.records`: numbers as numbers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np

from engage.cluster.segments import Unit
from engage.cluster.sources import BatchSource
from engage.cluster.tasks import END, FACE, FAILED
from engage.faces.cues import CUE_COLUMNS, FaceCues
from engage.faces.detect import FaceBox
from engage.faces.quality import UNCERTAIN, FaceQuality
from engage.inference.predictor import Predictor
from engage.inference.records import FrameResult
from engage.inference.tracking import EmaSmoother

FACE_COLUMNS = (
    "frame",
    "time_s",
    "face_index",
    "face_id",
    "tracked",
    "x",
    "y",
    "w",
    "h",
    "det_conf",
    "sharpness",
    "turn",
    *CUE_COLUMNS,
    "proba",
)


class _Pending:
    """What has come back of one source so far."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.faces = 0
        self.info: dict | None = None  # from the END row: what detection found
        self.reason: str | None = None  # from the FAILED row


class Collector:
    """Gathers scored blocks per unit (a source, or a segment of a video); `add` gives back the units that are now
    whole (or failed)."""

    def __init__(self, units: list[Unit]) -> None:
        self.units = {unit.key: unit for unit in units}
        self.pending = {unit.key: _Pending() for unit in units}

    def add(self, batch: dict[str, np.ndarray]) -> list[str]:
        ready = []
        for key in dict.fromkeys(batch["key"].tolist()):
            pending = self.pending.get(key)
            if pending is None:  # already finished: a repeated block is never counted twice
                continue
            mine = batch["key"] == key
            kinds = batch["row_kind"][mine]
            faces = kinds == FACE
            if faces.any():
                pending.parts.append({name: batch[name][mine][faces] for name in FACE_COLUMNS})
                pending.faces += int(faces.sum())
            for kind, info in zip(kinds[~faces], batch["info"][mine][~faces]):
                if kind == END:
                    pending.info = json.loads(info)
                elif kind == FAILED:
                    pending.reason = json.loads(info)["reason"]
            if pending.reason is not None or (pending.info is not None and pending.faces >= pending.info["faces"]):
                ready.append(key)
        return ready

    def take(self, key: str) -> tuple[Unit, _Pending]:
        return self.units[key], self.pending.pop(key)

    def unfinished(self) -> list[str]:
        return list(self.pending)


def face_cues_of(faces: dict[str, np.ndarray], index: int) -> FaceCues | None:
    """The attention cues of row `index` as the detection task measured them (None: no landmarks, NaN there)."""
    values = [float(faces[name][index]) for name in CUE_COLUMNS]
    return None if any(np.isnan(values)) else FaceCues(*values)


def gathered(pending: _Pending) -> dict[str, np.ndarray] | None:
    """What came back of one unit, as one set of columns (None: no face)."""
    if not pending.parts:
        return None
    return {name: np.concatenate([part[name] for part in pending.parts]) for name in FACE_COLUMNS}


def stitch(parts: list[tuple[int, dict[str, np.ndarray] | None]]) -> dict[str, np.ndarray] | None:
    """A segmented video's faces as one: per segment in order, (its first own frame, its faces). A segment's faces on
    the frames before its own (the overlap) are matched to the segment before's on the same frames (the same box:
    key frames are shared) to carry their ids on, then dropped; every other face gets the next new id in order of
    first appearance, as one tracker over the whole video numbers them."""
    joined: list[dict[str, np.ndarray]] = []
    previous: dict[str, np.ndarray] | None = None
    next_id = 1
    for start, found in parts:
        if found is None:
            previous = None
            continue
        faces = _in_order(found)
        mapping: dict[int, int] = {}
        if previous is not None:
            seen = {key: int(face_id) for key, face_id in zip(_box_keys(previous), previous["face_id"])}
            for key, frame, local in zip(_box_keys(faces), faces["frame"], faces["face_id"]):
                if frame < start and int(local) not in mapping and key in seen:
                    mapping[int(local)] = seen[key]
        own = faces["frame"] >= start
        faces = {name: values[own] for name, values in faces.items()}
        ids = faces["face_id"].copy()
        for row, local in enumerate(faces["face_id"].tolist()):
            if local not in mapping:
                mapping[local] = next_id
                next_id += 1
            ids[row] = mapping[local]
        faces["face_id"] = ids
        joined.append(faces)
        previous = faces
    if not joined:
        return None
    return {name: np.concatenate([part[name] for part in joined]) for name in joined[0]}


def _box_keys(faces: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """(frame, rank in the frame, x, y, w, h) of every face: the same face in two segments has the same box and
    rank on the same frame."""
    names = ("frame", "face_index", "x", "y", "w", "h")
    return [tuple(int(v) for v in row) for row in zip(*(faces[name] for name in names))]


def _in_order(faces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.lexsort((faces["face_index"], faces["frame"]))
    return {name: values[order] for name, values in faces.items()}


def source_records(
    source: BatchSource, faces: dict[str, np.ndarray] | None, info: dict, predictor: Predictor
) -> list[dict]:
    """One source's rows in frame order, biggest face first in each frame: the values of `engage predict --csv`. A
    face followed into a frame (tracked) takes the scores, cues and quality of its last key frame, as
    Predictor.predict_video carries them on."""
    if faces is None:
        return []
    faces = _in_order(faces)
    video = info["kind"] == "video"
    smoother = EmaSmoother(predictor.smoothing_s) if video else None
    width, height = info["width"], info["height"]
    held: dict[int, tuple[np.ndarray, FaceCues | None, tuple[FaceQuality, list[str]]]] = {}
    records: list[dict] = []
    starts = np.flatnonzero(np.diff(faces["frame"], prepend=-1))
    for start, stop in zip(starts, [*starts[1:], len(faces["frame"])]):
        time_s = float(faces["time_s"][start])
        results = []
        for i in range(start, stop):
            face_id = int(faces["face_id"][i])
            x, y, w, h = (int(faces[name][i]) for name in ("x", "y", "w", "h"))
            box = FaceBox(x, y, w, h, float(faces["det_conf"][i]))
            tracked = bool(faces["tracked"][i])
            if tracked:
                assert face_id in held, f"frame {int(faces['frame'][i])}: face {face_id} followed before it was scored"
                proba, cues, quality = held[face_id]
            else:
                turn = float(faces["turn"][i])
                measures = FaceQuality(
                    float(min(box.w, box.h)),
                    float(faces["sharpness"][i]),
                    None if np.isnan(turn) else turn,
                    box.confidence,
                )  # measured where the crop was cut
                proba, cues = faces["proba"][i], face_cues_of(faces, i)
                quality = (measures, predictor.quality_reasons(measures))
                held[face_id] = (proba, cues, quality)
            # images: p_engaged is the face's own; videos: smoothed per face as predict smooths it
            result = predictor.judged(face_id, box, proba, None, None, cues, time_s, smoother, quality)
            result.tracked = tracked
            results.append(result)
        frame = FrameResult(source.name, int(faces["frame"][start]), time_s, results, width, height)
        records.extend(frame.records())
    return records


def joined_info(infos: list[dict]) -> dict:
    """What detection found in a source, from what it found in each of its units (in order)."""
    if len(infos) == 1:
        return infos[0]
    first = next((info for info in infos if not info.get("past_end")), infos[0])
    return {
        **first,
        "frames_scored": sum(info["frames_scored"] for info in infos),
        "frames_with_faces": sum(info["frames_with_faces"] for info in infos),
        "duration_s": max(info["duration_s"] for info in infos),
        "faces": sum(info.get("faces", 0) for info in infos),
        "detect_s": round(sum(info.get("detect_s", 0.0) for info in infos), 3),
    }


def source_summary(source: BatchSource, info: dict, records: list[dict], predictor: Predictor) -> dict:
    """One row of the summary table: what was scored of this source and how engaged its faces looked."""
    judged = [record for record in records if record["label"] != UNCERTAIN]  # as predict's summary counts them
    scores = [record["p_engaged"] for record in judged if record["p_engaged"] is not None]
    positive = predictor.positive_class
    return {
        "source": source.name,
        "path": source.path,
        "kind": info["kind"],
        "key": source.key,
        "frames_scored": info["frames_scored"],
        "frames_with_faces": info["frames_with_faces"],
        "faces": len({record["face_id"] for record in records}),
        "rows": len(records),
        "mean_p_engaged": float(np.mean(scores)) if scores else None,
        "share_engaged": (
            sum(record["label"] == positive for record in judged) / len(judged) if judged and positive else None
        ),
        "share_uncertain": (len(records) - len(judged)) / len(records) if records else None,
        "duration_s": info["duration_s"],
        "width": info["width"],
        "height": info["height"],
        "fps": info["fps"],
        "detect_s": info["detect_s"],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
