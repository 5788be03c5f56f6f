"""Any trained model (a network or HOG+SVM), by shipped name or file, as faces -> class probabilities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engage.errors import EngageError, UsageError
from engage.models.calibration import calibrate
from engage.models.decision import Decision

if TYPE_CHECKING:
    from engage.models.cue_head import CueHead
    from engage.models.hog_svm import HogSvm
    from engage.models.networks import FaceNet

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights")
VIEWS = ("model", "flip", "one")  # test-time views: as the model file records, the face and its mirror, the face alone


class ModelInfo:
    """What every loaded model tells from its config: its classes and the pre-processing it was trained with."""

    config: dict

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def face_settings(self) -> dict:
        return dict(self.config.get("face_settings") or {})

    @property
    def normalize(self) -> str:
        return self.face_settings.get("normalize", "standard")

    @property
    def decision(self) -> Decision:
        """The model's positive class and threshold (engage.models.decision): one definition for every command."""
        return Decision.of(self.config)

    def calibrated(self, proba: np.ndarray) -> np.ndarray:
        """The network's probabilities after the calibration its file records (none: unchanged)."""
        return calibrate(proba, self.config.get("calibration"))

    @property
    def cue_head(self) -> CueHead | None:
        """How the attention cues move the score (engage.models.cue_head.CueHead), when the model has one; None."""
        from engage.models.cue_head import CueHead

        values = self.config.get("cue_head")
        return CueHead.from_dict(values) if values else None


@dataclass
class FaceClassifier(ModelInfo):
    """A model ready to score 48x48 faces: predict_proba(faces) -> (N, C), with its classes and settings."""

    name: str
    config: dict
    network: FaceNet | None = None
    svm: HogSvm | None = None
    device: str = "cpu"  # where the network runs: 'cpu' (float32) or 'cuda' (bf16 autocast, CUDA_BATCH faces a call)

    def predict_proba(self, faces: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, 48, 48) uint8 faces to (N, C) float32 probabilities."""
        if self.svm is not None:
            return self.calibrated(self.svm.predict_proba(faces).astype(np.float32))
        from engage.models.networks import faces_to_tensor, predict_proba

        inputs = faces_to_tensor(faces, self.normalize)
        assert self.network is not None  # a classifier holds a network or an SVM
        if self.device != "cpu":  # the faces go to the GPU once per call
            from engage.models.device import CUDA_BATCH

            inputs = inputs.to(self.device)
            return self.calibrated(
                predict_proba(self.network, inputs, batch_size=max(batch_size, CUDA_BATCH), bf16=True).numpy()
            )
        return self.calibrated(predict_proba(self.network, inputs, batch_size=batch_size).numpy())

    def to(self, device: str) -> FaceClassifier:
        """Score on 'cpu' or 'cuda' (engage.models.device.resolve_device says which). Returns self."""
        if device != "cpu" and self.network is None:
            raise UsageError(
                f"--device {device}: {self.name} is a HOG+SVM model, which runs on the CPU; use --device cpu"
            )
        if self.network is not None:
            self.network.to(device)
        self.device = device
        return self

    def set_views(self, views: str) -> FaceClassifier:
        """Test-time views: 'model' (as the model file records; the shipped fer: 16), 'flip' (the face and its
        mirror image) or 'one' (the face alone: fastest). Returns self."""
        if views not in VIEWS:
            raise UsageError(f"unknown views {views!r}; choose one of: {', '.join(VIEWS)}")
        if views != "model" and self.network is not None:
            self.network.test_time_flip, self.network.test_time_views = views == "flip", ()
            self.config = dict(self.config, test_time_flip=views == "flip", test_time_views=[])
        return self


def shipped_models() -> dict[str, str]:
    """Shipped model names and their files."""
    if not os.path.isdir(WEIGHTS_DIR):
        return {}
    return {
        f[: -len(".safetensors")]: os.path.join(WEIGHTS_DIR, f)
        for f in sorted(os.listdir(WEIGHTS_DIR))
        if f.endswith(".safetensors")
    }


def resolve_model(name_or_path: str) -> str:
    """A shipped model name or a file path to a file path; an unknown name lists what exists."""
    if os.path.exists(name_or_path):
        return name_or_path
    shipped = shipped_models()
    if name_or_path in shipped:
        return shipped[name_or_path]
    names = ", ".join(shipped) or "none shipped yet"
    raise EngageError(f"model {name_or_path!r} is neither a file nor a shipped model ({names})")


def check_card(path: str) -> dict | None:
    """A shipped model must have its model card and match its sha256; any other file is checked if it has a card."""
    from engage.models.cards import card_path, read_card, verify_weights

    card = read_card(path)
    shipped = os.path.dirname(os.path.abspath(path)) == os.path.abspath(WEIGHTS_DIR)
    if card is None and shipped:
        raise EngageError(
            f"{path}: shipped model without its model card {os.path.basename(card_path(path))}; reinstall engage"
        )
    if card is not None:
        verify_weights(path, card)
    return card


def load_model(name_or_path: str) -> FaceClassifier:
    """Load a network or HOG+SVM model file (or a shipped model by name, checked against its model card)."""
    from engage.models.checkpoint import load_network, read_file

    path = resolve_model(name_or_path)
    check_card(path)
    tensors, meta = read_file(path)
    config = meta.get("config", meta)
    if config.get("model") == "hog-svm":
        from engage.models.hog_svm import HogSvm

        return FaceClassifier(name_or_path, config, svm=HogSvm.from_tensors(tensors, config))
    network, config = load_network(path)
    return FaceClassifier(name_or_path, config, network=network)


def create_model(name_or_file: str, num_classes: int | None = None, **kwargs: Any) -> FaceNet:
    """A network, in the spirit of timm's create_model: an architecture by name ('cnn', 'vgg', 'compact', with
    its arguments, e.g. width=48) with fresh weights, or a trained network (a shipped name such as 'fer', or a
    model file) with its weights; num_classes gives a trained network a fresh head for another task."""
    from engage.models.networks import MODELS, build_model

    if name_or_file in MODELS:
        return build_model(name_or_file, num_classes or 2, **kwargs)
    classifier = load_model(name_or_file)
    if classifier.network is None:
        raise UsageError(f"{name_or_file} is a HOG+SVM model, not a network; load it with load_model")
    if kwargs:
        raise UsageError(f"{name_or_file} is a trained network: its architecture is fixed ({', '.join(kwargs)} given)")
    network = classifier.network
    if num_classes is not None and num_classes != network.num_classes:
        network.reset_head(num_classes)
    return network


def save_hog_svm(path: str, model: HogSvm, face_settings: dict | None = None) -> None:
    """Write a fitted HogSvm like a network: safetensors arrays + config in the metadata."""
    from engage.models.checkpoint import _write

    _write(path, model.tensors(), dict(model.config(), face_settings=dict(face_settings or {}), kind="model"))
