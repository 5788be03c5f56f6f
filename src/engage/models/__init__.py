"""Models: the networks by name, test-time views, HOG+SVM, model files and cards, loading any model by name or
file, what a model's probabilities mean (decision, calibration, the cue head), and ONNX. Knows nothing of data
sets, metrics or training."""

from typing import TYPE_CHECKING

from engage.lazy import attach

if TYPE_CHECKING:
    from engage.models.calibration import Adjustment, SiteCalibration, calibrate, make_adjustment
    from engage.models.checkpoint import load_network, save_model
    from engage.models.cue_head import CueHead
    from engage.models.decision import Decision, best_threshold
    from engage.models.hog_svm import HogSvm
    from engage.models.loading import FaceClassifier, ModelInfo, create_model, load_model, shipped_models
    from engage.models.networks import MODELS, FaceNet, build_model, predict_proba
    from engage.models.onnx import OnnxClassifier, export_onnx

__getattr__, __dir__, __all__ = attach(__name__, __file__)
