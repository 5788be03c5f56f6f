"""What a binary model's p(positive) means, and how it is corrected for a base rate or a new site.

- Platt scaling (two classes) and temperature scaling (more), fitted on held-out predictions: `fit_calibration`,
  applied by `calibrate`. The fit is bounded: its scale is never zero, negative, infinite or NaN.
- The base rate: the share of positive (on-task) faces that calibrated probabilities assume. engage fits the
  calibration of a cross-validated model with both classes weighing the same (`balanced_weights`), so that its
  p_engaged is calibrated for as many on-task as off-task faces (base rate 0.5) and 0.5 is the decision point.
  `shift_base_rate` re-weights p to another share with the standard prior-shift correction (Saerens, Latinne and
  Decaestecker, Neural Computation 2002): the odds are multiplied by R / (1 - R) and divided by R0 / (1 - R0).
- A site calibration (`SiteCalibration`): a temperature and a bias on a model's log-odds, optionally a threshold,
  fitted on a few labelled frames of a new camera or classroom by `engage calibrate` and kept in a small JSON file.
- `Adjustment`: the base rate and site calibration a user asks for, applied in one place for predict, serve, batch
  and evaluate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from engage.errors import EngageError, UsageError

BALANCED = 0.5  # the base rate a cross-validated model's calibration assumes: as many on-task as off-task faces
SCALE_BOUNDS = (0.02, 50.0)  # a fitted scale (1 / temperature) stays within these: never 0, negative or infinite
BIAS_BOUND = 30.0
SITE_FILE_KIND = "engage site calibration"


class DegenerateCalibration(EngageError):
    """The held-out scores do not separate the classes, so a calibration fit would be a constant."""


def _significant(value: float, digits: int = 7) -> float:
    return float(f"{value:.{digits}g}")


def calibrate(proba: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Probabilities after a recorded calibration: softmax(scale * log p + bias); unchanged without one."""
    proba = np.asarray(proba, np.float32)
    if not calibration or len(proba) == 0:
        return proba
    scale = float(calibration["scale"])
    bias = np.asarray(calibration["bias"], np.float64)
    if bias.shape != (proba.shape[1],) or not (math.isfinite(scale) and scale > 0) or not np.isfinite(bias).all():
        raise EngageError(f"calibration must have a positive scale and one finite bias per class, got {calibration}")
    logits = scale * np.log(np.clip(proba.astype(np.float64), 1e-12, 1.0)) + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


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


def fit_calibration(labels: np.ndarray, proba: np.ndarray, weights: np.ndarray | None = None,
                    base_rate: float | None = None) -> dict:
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
            f"bound {SCALE_BOUNDS[0]}): a calibration would score every face alike")
    bias = [0.0] * num_classes
    if num_classes == 2:
        bias[1] = _significant(float(fitted.x[1]))
    result = {"scale": _significant(scale), "bias": bias, "method": "platt" if num_classes == 2 else "temperature",
              "n": int(len(labels))}
    if base_rate is not None:
        result["base_rate"] = float(base_rate)
    return result


# ---- the base rate -------------------------------------------------------------------------------------------
def check_rate(rate: float, what: str = "--base-rate") -> float:
    rate = float(rate)
    if not 0.0 < rate < 1.0 or not math.isfinite(rate):
        raise UsageError(f"{what} must be a share strictly between 0 and 1 (e.g. 0.8 for 80% on task), got {rate:g}")
    return rate


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def sigmoid(log_odds: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(log_odds, np.float64)))


def shift_base_rate(p_positive: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """p(positive) calibrated for a share `from_rate` of positives, re-weighted for a share `to_rate`
    (prior-shift correction: log-odds + logit(to_rate) - logit(from_rate))."""
    return sigmoid(logit(p_positive) + logit(to_rate) - logit(from_rate))


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
    return float(sum(abs(np.sum(weights[which == b] * (outcomes[which == b] - scores[which == b])))
                     for b in range(bins)))


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    return _binned_gap(proba.max(axis=1), proba.argmax(axis=1) == labels, bins, None)


def binary_ece(positive: np.ndarray, p_positive: np.ndarray, bins: int = 10, weights: np.ndarray | None = None) -> float:
    """ECE of a binary model's p(positive), the number it reports: the gap between the share of positives and the
    mean p in equal-width bins of p, weighted by each bin's share of the faces (with `weights`: of their weight).
    Unlike the top-label ECE, it sees a probability that is right on average for the wrong share of positives."""
    return _binned_gap(p_positive, positive, bins, weights)


def ece_at_rates(labels: np.ndarray, p_positive: np.ndarray, positive_index: int = 1,
                 model_rate: float = BALANCED) -> dict:
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


# ---- a site's correction -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteCalibration:
    """A correction of a model's p(positive) for one site: p' = sigmoid(logit(p) / temperature + bias), calibrated
    for `base_rate` (0.5: fitted with both classes weighing the same), optionally with its own threshold. It
    belongs to one model (the sha256 of its tensors) and says what it was fitted on."""

    temperature: float
    bias: float
    model_name: str
    model_sha256: str
    threshold: float | None = None
    base_rate: float = BALANCED
    fitted_on: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def __post_init__(self):
        if not (math.isfinite(self.temperature) and self.temperature > 0) or not math.isfinite(self.bias):
            raise EngageError(f"a site calibration needs a positive temperature and a finite bias, got "
                              f"{self.temperature}, {self.bias}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise EngageError(f"a site calibration's threshold must be in [0, 1], got {self.threshold}")

    def apply(self, p_positive: np.ndarray) -> np.ndarray:
        return sigmoid(logit(p_positive) / self.temperature + self.bias)

    def to_dict(self) -> dict:
        return {"kind": SITE_FILE_KIND, "version": 1,
                "model": {"name": self.model_name, "tensors_sha256": self.model_sha256},
                "temperature": self.temperature, "bias": self.bias, "threshold": self.threshold,
                "base_rate": self.base_rate, "formula": "p = sigmoid(logit(p_model) / temperature + bias)",
                "fitted_on": self.fitted_on, "report": self.report}

    @classmethod
    def from_dict(cls, values: dict, source: str = "site calibration") -> "SiteCalibration":
        if not isinstance(values, dict) or values.get("kind") != SITE_FILE_KIND:
            raise EngageError(f"{source}: not an engage site calibration (make one with engage calibrate)")
        try:
            return cls(temperature=float(values["temperature"]), bias=float(values["bias"]),
                       model_name=str(values["model"]["name"]), model_sha256=str(values["model"]["tensors_sha256"]),
                       threshold=None if values.get("threshold") is None else float(values["threshold"]),
                       base_rate=check_rate(values.get("base_rate", BALANCED), f"{source}: base_rate"),
                       fitted_on=dict(values.get("fitted_on") or {}), report=dict(values.get("report") or {}))
        except (KeyError, TypeError, ValueError) as error:
            raise EngageError(f"{source}: a damaged site calibration ({type(error).__name__}: {error})") from None

    @classmethod
    def load(cls, path: str) -> "SiteCalibration":
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise EngageError(f"{path}: no such site calibration file") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EngageError(f"{path}: not an engage site calibration (not JSON; make one with engage calibrate)") from None
        return cls.from_dict(values, path)

    def save(self, path: str) -> None:
        from engage.io.files import write_text

        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


@dataclass(frozen=True)
class Adjustment:
    """What a user asks for on top of a binary model's calibrated p(positive): a site calibration, then the base
    rate of the site (the share of on-task faces expected there; None: the rate the probabilities are calibrated
    for). One definition for predict, serve, batch and evaluate."""

    base_rate: float | None = None
    site: SiteCalibration | None = None

    @property
    def empty(self) -> bool:
        return self.base_rate is None and self.site is None

    def check(self, config: dict, model_name: str) -> None:
        """Refuse what cannot be applied to this model: a site file of another model, a base rate for a model whose
        probabilities do not say which rate they assume, anything on a model that is not binary."""
        if self.empty:
            return
        from engage.evaluation.decision import Decision

        if not Decision.of(config).binary:
            raise UsageError(f"{model_name} is not a binary model: --base-rate and --calibration apply to p_engaged only")
        if self.site is not None and self.site.model_sha256 != config.get("tensors_sha256"):
            raise EngageError(f"the site calibration was fitted for model {self.site.model_name!r} (weights "
                              f"{self.site.model_sha256[:12]}), not for {model_name} (weights "
                              f"{str(config.get('tensors_sha256'))[:12]}); fit one for this model with engage calibrate")
        if self.base_rate is not None and self.site is None and model_rate(config) is None:
            raise UsageError(f"{model_name} does not state the base rate its probabilities are calibrated for, so "
                             "--base-rate cannot re-weight them; cross-validate it (engage train --cv) or fit a site "
                             "calibration (engage calibrate)")

    def rate(self, config: dict) -> float | None:
        """The base rate the adjusted p assumes: the one asked for, else the site's, else the model's (None: unstated)."""
        if self.base_rate is not None:
            return self.base_rate
        return self.site.base_rate if self.site is not None else model_rate(config)

    def apply(self, p_positive: np.ndarray, config: dict) -> np.ndarray:
        """p(positive) as calibrated by the model (config) -> corrected for the site and re-weighted to the base rate."""
        p = np.asarray(p_positive, np.float64)
        rate = model_rate(config)
        if self.site is not None:
            p, rate = self.site.apply(p), self.site.base_rate
        if self.base_rate is not None:
            p = shift_base_rate(p, rate, self.base_rate)
        return p

    def apply_proba(self, proba: np.ndarray, config: dict, positive_index: int) -> np.ndarray:
        """(N, 2) probabilities with the adjustment applied to the positive class."""
        proba = np.asarray(proba, np.float32)
        if self.empty or len(proba) == 0:
            return proba
        p = self.apply(proba[:, positive_index], config).astype(np.float32)
        adjusted = np.empty_like(proba)
        adjusted[:, positive_index], adjusted[:, 1 - positive_index] = p, 1 - p
        return adjusted

    def threshold(self, recorded: float) -> float:
        return self.site.threshold if self.site is not None and self.site.threshold is not None else recorded


def model_rate(config: dict) -> float | None:
    """The base rate a model's probabilities are calibrated for, when its file states one."""
    calibration = config.get("calibration") or {}
    rate = calibration.get("base_rate")
    return None if rate is None else float(rate)


def make_adjustment(base_rate: float | None = None, calibration: str | SiteCalibration | None = None) -> Adjustment:
    """An Adjustment from what a user gives: a base rate (a share in (0, 1)) and a site calibration (file or object)."""
    site = SiteCalibration.load(calibration) if isinstance(calibration, str) else calibration
    return Adjustment(None if base_rate is None else check_rate(base_rate), site)
