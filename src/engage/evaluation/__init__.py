"""Evaluation: metrics with confidence intervals over subjects, fitting and measuring calibration, scoring a model
on labelled data (`engage evaluate`) and fitting a site's correction (`engage calibrate`). Knows nothing of
training."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.evaluation.calibration import expected_calibration_error, fit_calibration
    from engage.evaluation.evaluate import evaluate_model
    from engage.evaluation.metrics import basic_metrics, bootstrap_ci, evaluation_report, save_plots
    from engage.evaluation.site import calibrate_site

__getattr__, __dir__, __all__ = attach(__name__, __file__)
