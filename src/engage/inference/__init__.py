"""Inference: the Predictor (images, videos, cameras), face tracking and smoothing, result records and tables,
drawings, and `engage predict` as a job (on one process or several)."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.inference.annotate import draw_faces, plot_timeline
    from engage.inference.job import PredictOptions, PredictRun, run_predict
    from engage.inference.predictor import FaceStream, Predictor
    from engage.inference.records import FaceResult, FrameResult, VideoSummary, to_dataframe
    from engage.inference.tracking import EmaSmoother, IouTracker

__getattr__, __dir__, __all__ = attach(__name__, __file__)
