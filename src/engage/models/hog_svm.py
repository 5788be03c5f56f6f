"""The paper's non-deep baseline: HOG features of the 48x48 faces and an RBF SVM (scikit-learn).

Multi-class problems use one binary SVM per class (one-vs-rest); each SVM's scores become probabilities
with Platt scaling fitted on out-of-fold scores. The fitted model is stored as plain arrays in safetensors
and scored with our own kernel expansion, so loading it needs no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from skimage.feature import hog
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import SVC

from engage.errors import EngageError

HOG_PARAMS = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
C_GRID = (0.3, 1.0, 3.0, 10.0)
GAMMA_GRID = (0.3, 1.0, 3.0)  # times 1 / n_features (scikit-learn's 'scale' on standardised features)


def hog_features(faces: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 faces (RGB faces are made gray first) to (N, 900) HOG descriptors."""
    from engage.faces.crop import to_gray

    faces = np.asarray(faces)
    if not len(faces):
        return np.zeros((0, 900), np.float32)
    return np.stack([hog(to_gray(face) if face.ndim == 3 else face, **HOG_PARAMS) for face in faces]).astype(np.float32)


@dataclass
class BinarySvm:
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    platt: tuple[float, float]  # p(positive) = sigmoid(a * score + b)

    def score(self, features: np.ndarray, gamma: float) -> np.ndarray:
        return (self.dual_coef @ rbf_kernel(self.support_vectors, features, gamma=gamma)).ravel() + self.intercept

    def proba(self, features: np.ndarray, gamma: float) -> np.ndarray:
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a * self.score(features, gamma) + b)))


@dataclass
class HogSvm:
    """HOG + RBF SVM with the scikit-learn contract: hyper-parameters in __init__, fit, predict_proba."""

    C: float | None = None  # None: chosen on the validation data from C_GRID
    gamma: float | None = None  # None: chosen from GAMMA_GRID / n_features
    seed: int = 0
    class_weight: str | None = "balanced"  # weigh classes by inverse frequency, as the networks' loss does
    select: str = "auc"  # what picks C and gamma on the validation faces: 'auc' (binary) or 'balanced_accuracy'
    class_names: list[str] = field(default_factory=list)
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    svms_: list[BinarySvm] = field(default_factory=list)
    selection_: dict = field(default_factory=dict)

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean_) / self.scale_

    def _svc(self, C: float, gamma: float) -> SVC:
        return SVC(C=C, gamma=gamma, kernel="rbf", class_weight=self.class_weight)

    def _fit_binary(self, features: np.ndarray, positive: np.ndarray, C: float, gamma: float) -> BinarySvm:
        svc = self._svc(C, gamma)
        folds = StratifiedKFold(3, shuffle=True, random_state=self.seed)
        out_of_fold = cross_val_predict(svc, features, positive, cv=folds, method="decision_function")
        platt = LogisticRegression(C=1e4).fit(out_of_fold[:, None], positive)
        svc.fit(features, positive)
        return BinarySvm(
            svc.support_vectors_.astype(np.float32),
            svc.dual_coef_.astype(np.float32),
            float(svc.intercept_[0]),
            (float(platt.coef_[0, 0]), float(platt.intercept_[0])),
        )

    def _fit_all(self, features: np.ndarray, labels: np.ndarray, C: float, gamma: float) -> list[BinarySvm]:
        classes = [1] if len(self.class_names) == 2 else range(len(self.class_names))
        return [self._fit_binary(features, (labels == k).astype(int), C, gamma) for k in classes]

    def fit(
        self,
        faces: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        val_faces: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
    ) -> HogSvm:
        """Learn from (N, 48, 48) faces; C and gamma, when not given, are chosen on the validation faces by ROC AUC
        (binary tasks) or balanced accuracy, as the networks' best epoch is."""
        labels = np.asarray(labels)
        if len(np.unique(labels)) < 2:
            raise EngageError("HOG+SVM needs at least two classes in the training data")
        self.class_names = list(class_names)
        features = hog_features(faces)
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0) + 1e-6
        features = self._standardise(features)
        base_gamma = 1.0 / features.shape[1]
        c_grid = [self.C] if self.C else list(C_GRID)
        g_grid = [self.gamma] if self.gamma else [g * base_gamma for g in GAMMA_GRID]
        if len(c_grid) * len(g_grid) > 1:
            if val_faces is None or len(val_faces) == 0:
                raise EngageError(
                    "HOG+SVM chooses C and gamma on validation faces: give validation data or fix C and gamma"
                )
            val_features = self._standardise(hog_features(val_faces))
            val_labels = np.asarray(val_labels)
            metric = self.select if len(self.class_names) == 2 else "balanced_accuracy"
            if metric == "auc" and len(np.unique(val_labels)) < 2:
                raise EngageError("HOG+SVM: the validation faces hold one class only, so AUC cannot choose C and gamma")
            scores = {}
            for C in c_grid:
                for gamma in g_grid:
                    svc = self._svc(C, gamma).fit(features, labels)
                    if metric == "auc":
                        scores[(C, gamma)] = float(roc_auc_score(val_labels == 1, svc.decision_function(val_features)))
                    else:
                        scores[(C, gamma)] = float(balanced_accuracy_score(val_labels, svc.predict(val_features)))
            (self.C, self.gamma), best = max(scores.items(), key=lambda item: item[1])
            self.selection_ = {
                "metric": metric,
                f"val_{metric}": best,
                "grid": {f"C={c:g},gamma={g:.3g}": s for (c, g), s in scores.items()},
            }
        else:
            self.C, self.gamma = c_grid[0], g_grid[0]
        self.svms_ = self._fit_all(features, labels, self.C, self.gamma)
        return self

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities for (N, 48, 48) uint8 faces."""
        if not self.svms_:
            raise EngageError("this HOG+SVM model is not fitted")
        gamma = self.gamma
        assert gamma is not None  # fit and from_tensors set it with the SVMs
        features = self._standardise(hog_features(faces))
        if len(self.class_names) == 2:
            positive = self.svms_[0].proba(features, gamma)
            return np.stack([1 - positive, positive], axis=1)
        scores = np.stack([svm.proba(features, gamma) for svm in self.svms_], axis=1)
        return scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return self.predict_proba(faces).argmax(axis=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fitted model as named arrays (for safetensors)."""
        tensors = {"hog.mean": torch.from_numpy(self.mean_), "hog.scale": torch.from_numpy(self.scale_)}
        for i, svm in enumerate(self.svms_):
            tensors[f"svm.{i}.support_vectors"] = torch.from_numpy(svm.support_vectors)
            tensors[f"svm.{i}.dual_coef"] = torch.from_numpy(svm.dual_coef)
            tensors[f"svm.{i}.params"] = torch.tensor([svm.intercept, *svm.platt], dtype=torch.float64)
        return tensors

    def config(self) -> dict:
        return {
            "model": "hog-svm",
            "num_classes": len(self.class_names),
            "class_names": self.class_names,
            "C": self.C,
            "gamma": self.gamma,
            "class_weight": self.class_weight,
            "hog": {k: list(v) if isinstance(v, tuple) else v for k, v in HOG_PARAMS.items()},
            "selection": self.selection_,
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], config: dict) -> HogSvm:
        model = cls(C=config["C"], gamma=config["gamma"], class_names=list(config["class_names"]))
        model.mean_, model.scale_ = tensors["hog.mean"].numpy(), tensors["hog.scale"].numpy()
        count = 1 if len(model.class_names) == 2 else len(model.class_names)
        try:
            for i in range(count):
                intercept, a, b = tensors[f"svm.{i}.params"].tolist()
                model.svms_.append(
                    BinarySvm(
                        tensors[f"svm.{i}.support_vectors"].numpy(),
                        tensors[f"svm.{i}.dual_coef"].numpy(),
                        intercept,
                        (a, b),
                    )
                )
        except KeyError as missing:
            raise EngageError(f"HOG+SVM file lacks {missing}; it is damaged or of another model") from None
        return model
