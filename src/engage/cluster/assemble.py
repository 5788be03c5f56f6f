"""The per-source steps that depend on frame order, run where the scored faces come back: blocks arrive in any
order, so each source's faces are gathered until its closing row and all its faces are in, then put in frame
order, smoothed per face id over time (as `engage predict` smooths them), labelled and made into the rows of
`engage predict --csv` (`FrameResult.records`: numbers as numbers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np

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
    """Gathers scored blocks per source; `add` gives back the sources that are now whole (or failed)."""

    def __init__(self, sources: list[BatchSource]) -> None:
        self.sources = {source.key: source for source in sources}
        self.pending = {source.key: _Pending() for source in sources}

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

    def take(self, key: str) -> tuple[BatchSource, _Pending]:
        return self.sources[key], self.pending.pop(key)

    def unfinished(self) -> list[str]:
        return list(self.pending)


def face_cues_of(faces: dict[str, np.ndarray], index: int) -> FaceCues | None:
    """The attention cues of row `index` as the detection task measured them (None: no landmarks, NaN there)."""
    values = [float(faces[name][index]) for name in CUE_COLUMNS]
    return None if any(np.isnan(values)) else FaceCues(*values)


def source_records(source: BatchSource, pending: _Pending, predictor: Predictor) -> list[dict]:
    """One source's rows in frame order, biggest face first in each frame: the values of `engage predict --csv`."""
    if not pending.parts:
        return []
    faces = {name: np.concatenate([part[name] for part in pending.parts]) for name in FACE_COLUMNS}
    order = np.lexsort((faces["face_index"], faces["frame"]))
    faces = {name: values[order] for name, values in faces.items()}
    info = pending.info
    assert info is not None  # a source is scored once its END row is in (a FAILED one is not scored)
    video = info["kind"] == "video"
    smoother = EmaSmoother(predictor.smoothing_s) if video else None
    width, height = info["width"], info["height"]
    records: list[dict] = []
    starts = np.flatnonzero(np.diff(faces["frame"], prepend=-1))
    for start, stop in zip(starts, [*starts[1:], len(order)]):
        time_s = float(faces["time_s"][start])
        results = []
        for i in range(start, stop):
            face_id, proba = int(faces["face_id"][i]), faces["proba"][i]
            x, y, w, h = (int(faces[name][i]) for name in ("x", "y", "w", "h"))
            box = FaceBox(x, y, w, h, float(faces["det_conf"][i]))
            turn = float(faces["turn"][i])
            measures = FaceQuality(
                float(min(box.w, box.h)), float(faces["sharpness"][i]), None if np.isnan(turn) else turn, box.confidence
            )  # measured where the crop was cut
            quality = (measures, predictor.quality_reasons(measures))
            # images: p_engaged is the face's own; videos: smoothed per face as predict smooths it
            results.append(
                predictor.judged(face_id, box, proba, None, None, face_cues_of(faces, i), time_s, smoother, quality)
            )
        frame = FrameResult(source.name, int(faces["frame"][start]), time_s, results, width, height)
        records.extend(frame.records())
    return records


def source_summary(source: BatchSource, pending: _Pending, records: list[dict], predictor: Predictor) -> dict:
    """One row of the summary table: what was scored of this source and how engaged its faces looked."""
    info = pending.info
    assert info is not None  # a source is scored once its END row is in (a FAILED one is not scored)
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
