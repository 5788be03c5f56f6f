"""What a model's probabilities mean and where it decides, defined once for predict, evaluate, train and compare.

A binary model reports p(positive class): the class named `engaged` when it has one, else the second of its
two classes (class names are sorted, like scikit-learn's positive label). Its model file may record:

- `calibration`: logits' = scale * logits + bias, fitted on out-of-fold predictions (Platt scaling for two
  classes, temperature for more); applied to log-probabilities, which differ from logits by a constant per
  face, so it works the same for PyTorch, ONNX and HOG+SVM models;
- `decision`: the positive class and the threshold at which a face is labelled positive, with the rule that
  chose it. Without one the threshold is 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage.errors import EngageError

POSITIVE_CLASS = "engaged"
DEFAULT_THRESHOLD = 0.5


def positive_class(class_names: list[str]) -> str | None:
    """The class whose probability is reported as p_engaged: 'engaged', else the second of two classes;
    None for a multi-class model without 'engaged' (it is read by its most likely class)."""
    if POSITIVE_CLASS in class_names:
        return POSITIVE_CLASS
    return class_names[1] if len(class_names) == 2 else None


@dataclass(frozen=True)
class Decision:
    """The positive class and threshold of a model; multi-class models decide by their most likely class."""

    class_names: tuple[str, ...]
    positive: str | None
    threshold: float = DEFAULT_THRESHOLD
    rule: str = "default: 0.5"

    @classmethod
    def for_classes(cls, class_names, threshold: float = DEFAULT_THRESHOLD, rule: str = "default: 0.5") -> "Decision":
        names = tuple(class_names)
        positive = positive_class(list(names))
        if not 0.0 <= threshold <= 1.0:
            raise EngageError(f"decision threshold must be in [0, 1], got {threshold}")
        return cls(names, positive, float(threshold), rule)

    @classmethod
    def of(cls, config: dict) -> "Decision":
        """The decision a model file records (its positive class must be one of its classes)."""
        names = list(config["class_names"])
        recorded = config.get("decision") or {}
        decision = cls.for_classes(names, recorded.get("threshold", DEFAULT_THRESHOLD), recorded.get("rule", "default: 0.5"))
        if recorded.get("positive_class") not in (None, decision.positive):
            raise EngageError(f"the model records positive class {recorded['positive_class']!r}, but its classes "
                              f"{names} make it {decision.positive!r}; the file was altered")
        return decision

    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2 and self.positive is not None

    @property
    def positive_index(self) -> int | None:
        return self.class_names.index(self.positive) if self.positive is not None else None

    @property
    def negative(self) -> str | None:
        return next(name for name in self.class_names if name != self.positive) if self.binary else None

    def p_positive(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba)[:, self.positive_index]

    def predict(self, proba: np.ndarray) -> np.ndarray:
        """Class index per face: binary models compare p(positive) with the threshold, others take the argmax."""
        proba = np.asarray(proba)
        if not self.binary:
            return proba.argmax(axis=1)
        return np.where(self.p_positive(proba) >= self.threshold, self.positive_index, 1 - self.positive_index)

    def label(self, p: float) -> str:
        """The label of one face from its p(positive)."""
        return self.positive if p >= self.threshold else self.negative

    def to_dict(self) -> dict:
        return {"positive_class": self.positive, "threshold": self.threshold, "rule": self.rule}


# ---- calibration ---------------------------------------------------------------------------------------------
def calibrate(proba: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Probabilities after the recorded calibration: softmax(scale * log p + bias); unchanged without one."""
    proba = np.asarray(proba, np.float32)
    if not calibration or len(proba) == 0:
        return proba
    scale = float(calibration["scale"])
    bias = np.asarray(calibration["bias"], np.float64)
    if bias.shape != (proba.shape[1],) or not scale > 0:
        raise EngageError(f"calibration must have a positive scale and one bias per class, got {calibration}")
    logits = scale * np.log(np.clip(proba.astype(np.float64), 1e-12, 1.0)) + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_calibration(labels: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Fit calibration on held-out predictions: Platt scaling (scale and bias of the log-odds) for two
    classes, temperature scaling for more; `weights` per face (e.g. each data set weighing the same).
    Returns {'scale', 'bias', 'method', 'n'}."""
    from scipy.optimize import minimize

    labels, proba = np.asarray(labels), np.asarray(proba, np.float64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    weights = weights / weights.sum()
    if len(np.unique(labels)) < 2:
        raise EngageError("calibration needs held-out faces of at least two classes")
    log_p = np.log(np.clip(proba, 1e-12, 1.0))
    num_classes = proba.shape[1]

    def nll(params: np.ndarray) -> float:
        scale = np.exp(params[0])
        bias = np.zeros(num_classes)
        if num_classes == 2:
            bias[1] = params[1]
        logits = scale * log_p + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        return float(np.sum(weights * (log_norm - logits[np.arange(len(labels)), labels])))

    start = np.zeros(2 if num_classes == 2 else 1)
    fitted = minimize(nll, start, method="L-BFGS-B" if num_classes == 2 else "Nelder-Mead")
    scale = float(np.exp(fitted.x[0]))
    bias = [0.0] * num_classes
    if num_classes == 2:
        bias[1] = float(fitted.x[1])
    return {"scale": round(scale, 6), "bias": [round(b, 6) for b in bias],
            "method": "platt" if num_classes == 2 else "temperature", "n": int(len(labels))}


def best_threshold(labels_by_group: list[np.ndarray], p_by_group: list[np.ndarray]) -> float:
    """The threshold that maximises balanced accuracy (Youden's J), averaged over groups (data sets) so that a
    large set does not choose for a small one. Candidates lie midway between neighbouring scores, so no face sits
    on the threshold; of equally good ones the middle is taken."""
    scores = np.unique(np.concatenate([np.asarray(p, np.float64) for p in p_by_group]))
    if len(scores) < 2:
        return DEFAULT_THRESHOLD
    candidates = np.concatenate([[scores[0] / 2], (scores[:-1] + scores[1:]) / 2, [(scores[-1] + 1) / 2]])
    total, counted = np.zeros(len(candidates)), 0
    for labels, p in zip(labels_by_group, p_by_group):
        labels, p = np.asarray(labels), np.asarray(p, np.float64)
        positive, negative = np.sort(p[labels == 1]), np.sort(p[labels != 1])
        if not len(positive) or not len(negative):
            continue
        recall_positive = 1 - np.searchsorted(positive, candidates, side="left") / len(positive)  # p >= t
        recall_negative = np.searchsorted(negative, candidates, side="left") / len(negative)  # p < t
        total += 0.5 * (recall_positive + recall_negative)
        counted += 1
    if not counted:
        return DEFAULT_THRESHOLD
    best = np.flatnonzero(total >= total.max() - 1e-12)
    return float(candidates[best[len(best) // 2]])
