"""The cue head: how a model's attention cues (engage.faces.cues) move its engagement score, a constrained
combination whose signs follow what each cue means.

    logit(p_engaged) = scale * logit(p_appearance) + bias + sum over terms of shift(term)

Each term measures how far one cue is from where on-task students hold it (`center`): `abs` either way (head pose,
gaze), `below` only lower (eyes closing), `above` only higher (mouth opening). Within the normal range (`bound`:
the deviation 99% of on-task training faces stay inside) the score moves by `inside` per range; beyond it by
`beyond` per range. Both weights are <= 0, so a turned, closed-eyed or yawning face can never score higher for
it; for the cues the fit vetoes (the shipped head: roll, eye closing, jaw drop) `beyond` is at least a fixed veto
strength, so a face far outside what students on task do reads as off task however its expression looks, even for
behaviours the training sets hardly hold. A face without landmarks keeps its appearance score (with `scale` and
`bias`).

The head is stored in the model file's card (`cue_head`) and fitted by scripts/attention_model.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

KINDS = ("abs", "below", "above")


@dataclass(frozen=True)
class CueTerm:
    """One cue's effect: deviation from `center` of kind `abs`, `below` or `above`, in units of `bound`;
    weights `inside` (within the bound) and `beyond` (past it), both <= 0."""

    cue: str
    kind: str
    center: float
    bound: float
    inside: float
    beyond: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cue term {self.cue}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.bound > 0:
            raise ValueError(f"cue term {self.cue}: bound must be > 0, got {self.bound}")
        if self.inside > 0 or self.beyond > 0:
            raise ValueError(f"cue term {self.cue}: weights must be <= 0 (a cue can only lower the score)")

    def deviation(self, values: np.ndarray) -> np.ndarray:
        """How far the cue is from on-task, in units of the normal range (0 where it is on the good side)."""
        if self.kind == "abs":
            distance = np.abs(values - self.center)
        elif self.kind == "below":
            distance = np.maximum(0.0, self.center - values)
        else:
            distance = np.maximum(0.0, values - self.center)
        return distance / self.bound

    def features(self, values: np.ndarray) -> np.ndarray:
        """(N, 2): the deviation within the normal range (0-1) and beyond it (0 or more)."""
        deviation = self.deviation(values)
        return np.column_stack([np.minimum(deviation, 1.0), np.maximum(deviation - 1.0, 0.0)])

    def shift(self, values: np.ndarray) -> np.ndarray:
        within, beyond = self.features(values).T
        return self.inside * within + self.beyond * beyond


@dataclass(frozen=True)
class CueHead:
    """Appearance logit times `scale` plus `bias`, plus each term's shift (see the module's docstring)."""

    columns: tuple[str, ...]
    terms: tuple[CueTerm, ...]
    scale: float = 1.0
    bias: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> CueHead:
        return cls(
            tuple(values["columns"]),
            tuple(CueTerm(**term) for term in values["terms"]),
            float(values.get("scale", 1.0)),
            float(values.get("bias", 0.0)),
        )

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "terms": [asdict(term) for term in self.terms],
            "scale": self.scale,
            "bias": self.bias,
        }

    def check_columns(self, columns: Sequence[str], model: str = "the model") -> None:
        """Refuse to run where the cues come in another order than the head was fitted on (another engage)."""
        if tuple(columns) != tuple(self.columns):
            from engage.errors import EngageError

            raise EngageError(
                f"{model}: its cue head reads the cues {', '.join(self.columns)}, but this engage measures "
                f"{', '.join(columns)}; use the engage it was made with, or --no-cues"
            )

    def shifts(self, cues: np.ndarray) -> np.ndarray:
        """(N,) the cues' summed shift of the logit; 0 for a face without cues (a row of NaN)."""
        cues = np.atleast_2d(np.asarray(cues, np.float64))
        total = np.zeros(len(cues))
        known = np.isfinite(cues).all(axis=1)
        for term in self.terms:
            values = cues[known, self.columns.index(term.cue)]
            total[known] += term.shift(values)
        return total

    def logit(self, appearance: np.ndarray, cues: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(appearance, np.float64) + self.bias + self.shifts(cues)

    def apply(self, proba: np.ndarray, cues: np.ndarray, positive: int) -> np.ndarray:
        """Two-class probabilities (N, 2) with the cues' effect on the positive class."""
        p = np.clip(np.asarray(proba, np.float64)[:, positive], 1e-7, 1 - 1e-7)
        fused = 1.0 / (1.0 + np.exp(-self.logit(np.log(p / (1 - p)), cues)))
        out = np.empty((len(p), 2), np.float32)
        out[:, positive], out[:, 1 - positive] = fused, 1.0 - fused
        return out
