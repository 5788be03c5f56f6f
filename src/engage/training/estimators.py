"""One fit / predict_proba protocol for every kind of model (the scikit-learn contract over face datasets), so
that comparing models never branches on what they are: a network trained by the one loop, or HOG+SVM."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engage.data.dataset import FaceDataset

if TYPE_CHECKING:
    from engage.models.networks import FaceNet
    from engage.training.loop import TrainConfig


class FaceEstimator(Protocol):
    """Learns from labelled faces (with validation faces to choose its epoch or hyper-parameters) and answers
    class probabilities for faces."""

    def fit(self, train: FaceDataset, val: FaceDataset | None) -> FaceEstimator: ...

    def predict_proba(self, faces: np.ndarray) -> np.ndarray: ...


class NetworkEstimator:
    """A network trained by engage's loop: `config` is its TrainConfig; the run folder keeps its checkpoints, so
    an interrupted fit continues where it stopped."""

    def __init__(self, config: TrainConfig, run_dir: str, log: Callable[[str], None] = lambda line: None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.log = log
        self.model_: FaceNet | None = None
        self.normalize_ = "standard"
        self.best_metrics_: dict = {}

    def fit(self, train: FaceDataset, val: FaceDataset | None) -> NetworkEstimator:
        from engage.training.loop import train as train_network

        resume = os.path.exists(os.path.join(self.run_dir, "last.safetensors"))  # an interrupted fit continues
        result = train_network(self.config, train, val, self.run_dir, resume=resume, log=self.log)
        self.model_, self.normalize_, self.best_metrics_ = result.model, train.settings.normalize, result.best_metrics
        return self

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        from engage.models.networks import faces_to_tensor, predict_proba

        assert self.model_ is not None, "fit the estimator first"
        return predict_proba(self.model_, faces_to_tensor(faces, self.normalize_)).numpy()


class HogSvmEstimator:
    """HOG + SVM (engage.models.hog_svm) over face datasets: C and gamma chosen on the validation faces."""

    def __init__(self, seed: int = 0) -> None:
        from engage.models.hog_svm import HogSvm

        self.model_ = HogSvm(seed=seed)

    def fit(self, train: FaceDataset, val: FaceDataset | None) -> HogSvmEstimator:
        self.model_.fit(
            train.faces,
            train.labels,
            train.class_names,
            None if val is None else val.faces,
            None if val is None else val.labels,
        )
        return self

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(faces)
