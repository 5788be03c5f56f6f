"""What a batch run is asked to do: the scoring settings (which decide the results) and where it runs (which
do not). Every Ray worker builds its Predictor from these, once per process."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace

from engage.cluster.segments import DEFAULT_SEGMENT_S, check_segment_s
from engage.errors import UsageError
from engage.inference.keyframes import DEFAULT_DETECT_EVERY, check_detect_every
from engage.inference.predictor import DEFAULT_MODEL, Predictor

_PREDICTORS: dict[tuple, Predictor] = {}  # one per process and scoring settings: Ray reuses its worker processes


@dataclass(frozen=True)
class BatchOptions:
    # scoring: as `engage predict` (the results depend on these, and a results folder records them)
    model: str = DEFAULT_MODEL
    detector: str | None = None  # None: the model's own (else mtcnn)
    backend: str = "torch"
    min_confidence: float | None = None
    detect_size: int | None = None
    every: int = 1  # score every Nth video frame
    detect_every: int = DEFAULT_DETECT_EVERY  # detect faces on every Nth scored frame, follow them in between
    segment_s: float = DEFAULT_SEGMENT_S  # a video longer than this is scored in segments of about this, in parallel
    smooth: float = 1.0  # seconds of p_engaged's moving average per face in video (0: off)
    base_rate: float | None = None  # share of on-task faces expected at the site (None: the model's own rate)
    calibration: str | None = None  # a site calibration file (engage calibrate)
    abstain: bool = True  # faces that cannot be judged are 'uncertain'
    cues: bool = True  # attention cues per face (and their effect on p_engaged)
    # where and how it runs (the results do not depend on these)
    address: str | None = None  # None: start a local Ray on this machine; 'auto' or 'ray://HOST:PORT'
    num_cpus: int | None = None  # CPUs of the local Ray (None: every core); ignored with an address
    scorers: int = 1  # actors in the scoring pool, each holding the model once
    scorer_cpus: float = 0.0  # CPUs each scoring actor reserves (scoring is a small share of detection's work)
    score_batch: int = 256  # faces per network call in a scoring actor (on a GPU: CUDA_BATCH)
    # the scoring actors' network: 'cpu', 'cuda' (a GPU each, or an equal share when there are more scorers than
    # GPUs; bf16) or 'auto' (cuda where the Ray cluster has a GPU); detection stays on the CPUs
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.every < 1:
            raise UsageError(f"--every must be 1 or more, got {self.every}")
        check_detect_every(self.detect_every)
        check_segment_s(self.segment_s)
        if self.smooth < 0:
            raise UsageError(f"--smooth must be >= 0 seconds, got {self.smooth}")
        if self.scorers < 1:
            raise UsageError(f"--scorers must be 1 or more, got {self.scorers}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UsageError(f"--num-cpus must be 1 or more, got {self.num_cpus}")
        if os.path.isfile(self.model):  # a model file: the same file for every worker, wherever it runs
            object.__setattr__(self, "model", os.path.abspath(self.model))
        if self.calibration is not None and os.path.isfile(self.calibration):
            object.__setattr__(self, "calibration", os.path.abspath(self.calibration))

    def predictor(self, device: str = "cpu") -> Predictor:
        """This process's Predictor for these settings (loaded once; the model is read once per worker), its network
        on `device` (the scoring actors': the driver and the detection tasks only detect, on the CPU)."""
        key = (*self._scoring_key(), device)
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor(
                self.model,
                detector=self.detector,
                backend=self.backend,
                min_confidence=self.min_confidence,
                detect_size=self.detect_size,
                smoothing_s=self.smooth,
                base_rate=self.base_rate,
                calibration=self.calibration,
                abstain=self.abstain,
                cues=self.cues,
                device=device,
            )
        return _PREDICTORS[key]

    def on_ray(self, cluster_gpus: float) -> tuple[BatchOptions, float]:
        """These options with the scoring device settled for a Ray cluster holding `cluster_gpus` GPUs, and the
        GPUs each scoring actor reserves: one, or an equal share when there are more scorers than GPUs."""
        from engage.models.device import DEVICES, no_cuda, resolve_device

        if self.device not in DEVICES or self.backend == "onnx" or self.device == "cpu":
            return replace(self, device=resolve_device(self.device, self.backend)), 0.0  # one line if refused
        cluster_gpus = int(cluster_gpus)
        if not cluster_gpus:
            if self.device == "cuda":
                raise no_cuda(self.device)
            return replace(self, device="cpu"), 0.0
        return replace(self, device="cuda"), 1.0 / math.ceil(self.scorers / cluster_gpus)  # a share fits on one GPU

    def _scoring_key(self) -> tuple:
        return (
            self.model,
            self.detector,
            self.backend,
            self.min_confidence,
            self.detect_size,
            self.smooth,
            self.base_rate,
            self.calibration,
            self.abstain,
            self.cues,
        )

    def settings(self) -> dict:
        """The settings the results depend on, as a results folder records them (with the detector chosen)."""
        predictor = self.predictor()
        scoring = {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name
            in (
                "model",
                "backend",
                "min_confidence",
                "detect_size",
                "every",
                "detect_every",
                "smooth",
                "base_rate",
                "abstain",
                "cues",
            )
        }
        site = predictor.adjustment.site  # by what it does, not its path: an edited file is other settings
        scoring["calibration"] = (
            None
            if site is None
            else {
                key: value
                for key, value in site.to_dict().items()
                if key in ("temperature", "bias", "threshold", "base_rate")
            }
        )
        return {**scoring, "detector": predictor.detector_name, "classes": list(predictor.class_names)}
