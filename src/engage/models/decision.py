"""What a model's probabilities mean and where it decides, defined once for predict, evaluate, train and compare.

A binary model reports p(positive class): the class named `engaged` when it has one, else the second of its
two classes (class names are sorted, like scikit-learn's positive label). Its model file may record:

- `calibration` (applied by engage.models.calibration, fitted by engage.evaluation.calibration):
  logits' = scale * logits + bias, fitted on out-of-fold predictions, with the base rate its probabilities assume;
- `decision`: the positive class and the threshold at which a face is labelled positive, with the rule that
  chose it. Without one the threshold is 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    def for_classes(
        cls, class_names: Iterable[str], threshold: float = DEFAULT_THRESHOLD, rule: str = "default: 0.5"
    ) -> Decision:
        names = tuple(class_names)
        positive = positive_class(list(names))
        if not 0.0 <= threshold <= 1.0:
            raise EngageError(f"decision threshold must be in [0, 1], got {threshold}")
        return cls(names, positive, float(threshold), rule)

    @classmethod
    def of(cls, config: dict) -> Decision:
        """The decision a model file records (its positive class must be one of its classes)."""
        names = list(config["class_names"])
        recorded = config.get("decision") or {}
        decision = cls.for_classes(
            names, recorded.get("threshold", DEFAULT_THRESHOLD), recorded.get("rule", "default: 0.5")
        )
        if recorded.get("positive_class") not in (None, decision.positive):
            raise EngageError(
                f"the model records positive class {recorded['positive_class']!r}, but its classes "
                f"{names} make it {decision.positive!r}; the file was altered"
            )
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
        positive = self.positive_index
        assert positive is not None  # a binary decision has its positive class
        return np.where(self.p_positive(proba) >= self.threshold, positive, 1 - positive)

    def label(self, p: float) -> str:
        """The label of one face from its p(positive) (a binary model's)."""
        assert self.positive is not None and self.negative is not None  # binary: both classes are named
        return self.positive if p >= self.threshold else self.negative

    def to_dict(self) -> dict:
        return {"positive_class": self.positive, "threshold": self.threshold, "rule": self.rule}


# ---- thresholds ----------------------------------------------------------------------------------------------
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
