"""What a binary model's p(positive) means, and how it is corrected for a base rate or a new site: the part of
calibration a trained model carries and applies (fitting it and measuring it are engage.evaluation.calibration's).

- A recorded calibration (Platt scaling for two classes, temperature scaling for more) is applied by `calibrate`.
- The base rate: the share of positive (on-task) faces that calibrated probabilities assume. engage fits the
  calibration of a cross-validated model with both classes weighing the same, so that its p_engaged is calibrated
  for as many on-task as off-task faces (base rate 0.5) and 0.5 is the decision point. `shift_base_rate`
  re-weights p to another share with the standard prior-shift correction (Saerens, Latinne and Decaestecker,
  Neural Computation 2002): the odds are multiplied by R / (1 - R) and divided by R0 / (1 - R0).
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
SITE_FILE_KIND = "engage site calibration"


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


def shift_base_rate(p_positive: np.ndarray | float, from_rate: np.ndarray | float, to_rate: float) -> np.ndarray:
    """p(positive) calibrated for a share `from_rate` of positives, re-weighted for a share `to_rate`
    (prior-shift correction: log-odds + logit(to_rate) - logit(from_rate)); p and from_rate may be one value or one
    per face."""
    return sigmoid(logit(p_positive) + logit(to_rate) - logit(from_rate))


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

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0) or not math.isfinite(self.bias):
            raise EngageError(
                f"a site calibration needs a positive temperature and a finite bias, got "
                f"{self.temperature}, {self.bias}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise EngageError(f"a site calibration's threshold must be in [0, 1], got {self.threshold}")

    def apply(self, p_positive: np.ndarray) -> np.ndarray:
        return sigmoid(logit(p_positive) / self.temperature + self.bias)

    def to_dict(self) -> dict:
        return {
            "kind": SITE_FILE_KIND,
            "version": 1,
            "model": {"name": self.model_name, "tensors_sha256": self.model_sha256},
            "temperature": self.temperature,
            "bias": self.bias,
            "threshold": self.threshold,
            "base_rate": self.base_rate,
            "formula": "p = sigmoid(logit(p_model) / temperature + bias)",
            "fitted_on": self.fitted_on,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, values: dict, source: str = "site calibration") -> SiteCalibration:
        if not isinstance(values, dict) or values.get("kind") != SITE_FILE_KIND:
            raise EngageError(f"{source}: not an engage site calibration (make one with engage calibrate)")
        try:
            return cls(
                temperature=float(values["temperature"]),
                bias=float(values["bias"]),
                model_name=str(values["model"]["name"]),
                model_sha256=str(values["model"]["tensors_sha256"]),
                threshold=None if values.get("threshold") is None else float(values["threshold"]),
                base_rate=check_rate(values.get("base_rate", BALANCED), f"{source}: base_rate"),
                fitted_on=dict(values.get("fitted_on") or {}),
                report=dict(values.get("report") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise EngageError(f"{source}: a damaged site calibration ({type(error).__name__}: {error})") from None

    @classmethod
    def load(cls, path: str) -> SiteCalibration:
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except FileNotFoundError:
            raise EngageError(f"{path}: no such site calibration file") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EngageError(
                f"{path}: not an engage site calibration (not JSON; make one with engage calibrate)"
            ) from None
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
        from engage.models.decision import Decision

        if not Decision.of(config).binary:
            raise UsageError(
                f"{model_name} is not a binary model: --base-rate and --calibration apply to p_engaged only"
            )
        if self.site is not None and self.site.model_sha256 != config.get("tensors_sha256"):
            raise EngageError(
                f"the site calibration was fitted for model {self.site.model_name!r} (weights "
                f"{self.site.model_sha256[:12]}), not for {model_name} (weights "
                f"{str(config.get('tensors_sha256'))[:12]}); fit one for this model with engage calibrate"
            )
        if self.base_rate is not None and self.site is None and model_rate(config) is None:
            raise UsageError(
                f"{model_name} does not state the base rate its probabilities are calibrated for, so "
                "--base-rate cannot re-weight them; cross-validate it (engage train --cv) or fit a site "
                "calibration (engage calibrate)"
            )

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
            assert rate is not None  # check() refuses a base rate for a model that does not state its own
            p = shift_base_rate(p, rate, self.base_rate)
        return p

    def apply_proba(self, proba: np.ndarray, config: dict, positive_index: int | None) -> np.ndarray:
        """(N, 2) probabilities with the adjustment applied to the positive class (positive_index None: a model that
        is not binary, which takes no adjustment)."""
        proba = np.asarray(proba, np.float32)
        if self.empty or len(proba) == 0:
            return proba
        assert positive_index is not None  # check() refuses an adjustment for a model that is not binary
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
