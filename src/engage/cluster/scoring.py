"""Scoring as a Ray actor: each actor of the pool loads the model once and scores the blocks of faces the
detection tasks send, as `Predictor.predict_proba` scores them for `engage predict`. The crops stop here."""

from __future__ import annotations

import numpy as np

from engage.cluster.options import BatchOptions
from engage.cluster.tasks import FACE
from engage.faces.cues import CUE_COLUMNS


class FaceScorer:
    """Ray Data callable class: a block of rows in, the same rows out without their crops and with `proba`,
    the model's probabilities per face (zeros on a source's closing row)."""

    def __init__(self, options: BatchOptions) -> None:
        self.predictor = options.predictor()
        self.batch = options.score_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        crops = batch.pop("crop")
        faces = np.flatnonzero(batch["row_kind"] == FACE)
        proba = np.zeros((len(crops), len(self.predictor.class_names)), np.float32)
        for start in range(0, len(faces), self.batch):
            chosen = faces[start : start + self.batch]
            cues = np.column_stack([batch[name][chosen] for name in CUE_COLUMNS])
            proba[chosen] = self.predictor.predict_proba(crops[chosen], cues)
        batch["proba"] = proba
        return batch
