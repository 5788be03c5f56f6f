"""Fitting a model's calibration and measuring it: Platt scaling (two classes) and temperature scaling (more),
fitted on held-out predictions by `fit_calibration` (applied by engage.models.calibration.calibrate), and the
expected calibration error at the rates a site may have. The fit is bounded: its scale is never zero, negative,
infinite or NaN.
"""

from __future__ import annotations

import math

import numpy as np

from engage.errors import EngageError
from engage.models.calibration import BALANCED, shift_base_rate

SCALE_BOUNDS = (0.02, 50.0)  # a fitted scale (1 / temperature) stays within these: never 0, negative or infinite
BIAS_BOUND = 30.0


class DegenerateCalibration(EngageError):
    """The held-out scores do not separate the classes, so a calibration fit would be a constant."""


def _significant(value: float, digits: int = 7) -> float:
    return float(f"{value:.{digits}g}")


def balanced_weights(labels: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Per-face weights under which both classes weigh the same (half each) and, within a class, every group (data
    set) that holds it weighs the same: fitted with them, a calibration is calibrated for a base rate of 0.5."""
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), int) if groups is None else np.asarray(groups)
    weights = np.zeros(len(labels), np.float64)
    classes = np.unique(labels)
    for label in classes:
        of_class = labels == label
        names, inverse, counts = np.unique(groups[of_class], return_inverse=True, return_counts=True)
        weights[of_class] = 1.0 / (len(classes) * len(names) * counts[inverse])
    return weights


def rate_weights(positive: np.ndarray, rate: float) -> np.ndarray:
    """Per-face weights under which the positives make a share `rate` of the data (0.5: both classes weigh the same);
    a data set holding one class only keeps equal weights."""
    positive = np.asarray(positive, bool)
    share = positive.mean() if len(positive) else 0.0
    if share in (0.0, 1.0):
        return np.ones(len(positive))
    return np.where(positive, rate / share, (1 - rate) / (1 - share))


def fit_calibration(
    labels: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None, base_rate: float | None = None
) -> dict:
    """Fit calibration on held-out predictions: Platt scaling (scale and bias of the log-odds) for two classes,
    temperature scaling for more; `weights` per face (balanced_weights: both classes weigh the same). base_rate: the
    share of the positive class the weights make (recorded with the fit; 0.5 for balanced weights).

    The scale is bounded to SCALE_BOUNDS, so it is never zero, negative or infinite; a fit whose scale ends on the
    lower bound means the scores do not separate the classes (they rank them the wrong way round, or not at all),
    and raises DegenerateCalibration."""
    from scipy.optimize import minimize

    labels, proba = np.asarray(labels), np.asarray(proba, np.float64)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        raise EngageError("calibration needs held-out faces of at least two classes")
    if not np.isfinite(proba).all():
        raise EngageError("calibration: the held-out probabilities hold NaN or infinite values")
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise EngageError("calibration: the face weights must be finite, non-negative and not all zero")
    weights = weights / weights.sum()
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

    log_bounds = (math.log(SCALE_BOUNDS[0]), math.log(SCALE_BOUNDS[1]))
    bounds = [log_bounds] + ([(-BIAS_BOUND, BIAS_BOUND)] if num_classes == 2 else [])
    start = np.zeros(len(bounds))
    fitted = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
    if not np.isfinite(fitted.x).all() or not math.isfinite(fitted.fun):
        raise EngageError(f"calibration: the fit did not converge ({fitted.message})")
    scale = float(np.exp(fitted.x[0]))
    if fitted.x[0] <= log_bounds[0] + 1e-6:
        raise DegenerateCalibration(
            f"the scores do not separate the classes on these {len(labels)} faces (the fitted scale fell to its "
            f"bound {SCALE_BOUNDS[0]}): a calibration would score every face alike"
        )
    bias = [0.0] * num_classes
    if num_classes == 2:
        bias[1] = _significant(float(fitted.x[1]))
    result = {
        "scale": _significant(scale),
        "bias": bias,
        "method": "platt" if num_classes == 2 else "temperature",
        "n": len(labels),
    }
    if base_rate is not None:
        result["base_rate"] = float(base_rate)
    return result


def _binned_gap(scores: np.ndarray, outcomes: np.ndarray, bins: int, weights: np.ndarray | None) -> float:
    """Sum over equal-width bins of the scores of |weighted outcomes - weighted scores|, the weights summing to 1:
    the expected calibration error of scores that claim those outcomes."""
    scores, outcomes = np.asarray(scores, np.float64), np.asarray(outcomes, np.float64)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    if len(scores) == 0 or weights.sum() <= 0:
        return float("nan")
    weights = weights / weights.sum()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1], right=True), 0, bins - 1)
    return float(
        sum(abs(np.sum(weights[which == b] * (outcomes[which == b] - scores[which == b]))) for b in range(bins))
    )


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    return _binned_gap(proba.max(axis=1), proba.argmax(axis=1) == labels, bins, None)


def binary_ece(
    positive: np.ndarray, p_positive: np.ndarray, bins: int = 10, weights: np.ndarray | None = None
) -> float:
    """ECE of a binary model's p(positive), the number it reports: the gap between the share of positives and the
    mean p in equal-width bins of p, weighted by each bin's share of the faces (with `weights`: of their weight).
    Unlike the top-label ECE, it sees a probability that is right on average for the wrong share of positives."""
    return _binned_gap(p_positive, positive, bins, weights)


def ece_at_rates(
    labels: np.ndarray, p_positive: np.ndarray, positive_index: int = 1, model_rate: float = BALANCED
) -> dict:
    """ECE (binary_ece) of p(positive) calibrated for `model_rate`: at the balanced rate (both classes weighing the
    same, p shifted to 0.5) and at the data's own rate (p shifted to the share of positives the data holds)."""
    labels = np.asarray(labels)
    positive = labels == positive_index
    own = float(positive.mean())
    at_half = shift_base_rate(p_positive, model_rate, BALANCED)
    result = {"balanced": binary_ece(positive, at_half, weights=rate_weights(positive, BALANCED))}
    if 0 < own < 1:
        result["own_rate"] = binary_ece(positive, shift_base_rate(p_positive, model_rate, own))
        result["own_share"] = own
    return result
