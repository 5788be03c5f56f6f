"""Scoring as a Ray actor: each actor of the pool loads the model once and scores the blocks of faces the
detection tasks send, as `Predictor.predict_proba` scores them for `engage predict`. The crops stop here."""

from __future__ import annotations

import numpy as np

from engage.cluster.options import BatchOptions
from engage.cluster.tasks import FACE
from engage.faces.cues import CUE_COLUMNS
from engage.models.device import CUDA_BATCH


class FaceScorer:
    """Ray Data callable class: a block of rows in, the same rows out without their crops and with `proba`,
    the model's probabilities per face (zeros on a source's closing row)."""

    def __init__(self, options: BatchOptions) -> None:
        self.predictor = options.predictor(options.device)  # settled by the runner: 'cpu' or 'cuda'
        self.batch = options.score_batch if self.predictor.device == "cpu" else CUDA_BATCH

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        crops = batch.pop("crop")
        faces = np.flatnonzero((batch["row_kind"] == FACE) & (batch["tracked"] == 0))  # followed: no crop to score
        proba = np.zeros((len(crops), len(self.predictor.class_names)), np.float32)
        for start in range(0, len(faces), self.batch):
            chosen = faces[start : start + self.batch]
            cues = np.column_stack([batch[name][chosen] for name in CUE_COLUMNS])
            proba[chosen] = self.predictor.predict_proba(crops[chosen], cues)
        batch["proba"] = proba
        return batch
