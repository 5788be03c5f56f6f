"""ONNX: export a model (network, classes and face settings in one .onnx file) and score faces with onnxruntime.

The exported graph takes (N, C, H, W) float32 faces (C = 1, H = W = 48 for the shipped models), exactly what
`models.faces_to_tensor` makes, and
returns (N, C) probabilities (the softmax is inside the graph). The model's config (class names, face
settings, the source's tensor checksum) travels in the file's metadata, so an .onnx file is self-contained.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from engage.errors import EngageError, UsageError
from engage.models.loading import ModelInfo

if TYPE_CHECKING:
    import torch

    from engage.models.loading import FaceClassifier
    from engage.models.networks import FaceNet

META_KEY = "engage"
OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs difference of probabilities between PyTorch and onnxruntime


def _require_onnx() -> tuple[ModuleType, ModuleType]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise EngageError(
            "the ONNX backend needs onnx and onnxruntime (extra 'fast'): pip install 'engage[fast]'"
        ) from None
    return onnx, onnxruntime


def graph_config(config: dict) -> dict:
    """The config an exported graph carries: the calibration is inside the graph, so it says so."""
    return dict(config, calibration_in_graph=bool(config.get("calibration")))


def onnx_bytes(network: FaceNet, config: dict) -> tuple[bytes, dict]:
    """The network (in eval mode, its recorded calibration and a softmax appended) as an ONNX model with a dynamic
    batch size, and the config it carries. Its probabilities are the calibrated ones the model's threshold is
    for, so the file is right outside engage too."""
    import torch

    class Calibration(torch.nn.Module):
        """logits -> scale * logits + bias: softmax of it equals softmax(scale * log p + bias), the recorded one."""

        def __init__(self, scale: float, bias: list[float]) -> None:
            super().__init__()
            self.scale = scale
            self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))
            self.bias: torch.Tensor

        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            return logits * self.scale + self.bias

    onnx, _ = _require_onnx()
    layers: list[torch.nn.Module] = [network]
    calibration = config.get("calibration")
    if calibration:
        layers.append(Calibration(float(calibration["scale"]), [float(b) for b in calibration["bias"]]))
    wrapper = torch.nn.Sequential(*layers, torch.nn.Softmax(dim=1)).eval()
    config = graph_config(config)
    buffer = io.BytesIO()
    # Any: mypy would match a dict[str, bool] given as ** against every keyword of export
    options: dict[str, Any] = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():  # the TorchScript exporter: ~1 s here, no onnxscript needed (dynamo: ~10 s)
        warnings.simplefilter("ignore")
        from engage.faces.crop import FaceSettings

        settings = FaceSettings.from_dict(config.get("face_settings") or {})
        example = torch.zeros(2, settings.channels, settings.size, settings.size)
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,  # type: ignore[arg-type]  # torch annotates paths only; its TorchScript exporter writes to files too
            input_names=["faces"],
            output_names=["probabilities"],
            opset_version=OPSET,
            dynamic_axes={"faces": {0: "n"}, "probabilities": {0: "n"}},
            **options,
        )
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(config)
    model.producer_name = "engage"
    return model.SerializeToString(), config


class OnnxClassifier(ModelInfo):
    """An ONNX model as faces -> probabilities, with FaceClassifier's interface (class_names, face_settings,
    predict_proba)."""

    def __init__(self, model: bytes, name: str, config: dict | None = None, threads: int | None = None) -> None:
        _, ort = _require_onnx()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 1  # a frame holds a few faces: one thread, no spinning, is fastest
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise EngageError(f"{name}: not a valid ONNX model ({str(error).splitlines()[0][:160]})") from None
        if config is None:
            metadata = self.session.get_modelmeta().custom_metadata_map
            if META_KEY not in metadata:
                raise EngageError(f"{name}: an ONNX model without engage's config; export it with 'engage export'")
            config = json.loads(metadata[META_KEY])
        self.name = name
        self.config = config
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def load(cls, path: str, threads: int | None = None) -> OnnxClassifier:
        """An .onnx file written by `engage export`."""
        if not os.path.isfile(path):
            raise EngageError(f"{path}: no such model file")
        with open(path, "rb") as handle:
            return cls(handle.read(), path, threads=threads)

    @classmethod
    def from_classifier(cls, classifier: FaceClassifier, threads: int | None = None) -> OnnxClassifier:
        """Export a loaded network in memory (nothing is written) and open it with onnxruntime."""
        if classifier.network is None:
            raise UsageError(
                f"{classifier.name}: only networks run on the ONNX backend (this is a HOG+SVM model); "
                "use --backend torch"
            )
        data, config = onnx_bytes(classifier.network, classifier.config)
        return cls(data, classifier.name, config, threads)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 network inputs to (N, C) probabilities."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]

    def predict_proba(self, faces: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """(N, size, size[, 3]) uint8 faces to (N, C) float32 probabilities (calibrated as the model records)."""
        from engage.models.networks import faces_to_tensor

        inputs = faces_to_tensor(faces, self.normalize).numpy()
        parts = [self.run(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        proba = np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)
        return proba if self.config.get("calibration_in_graph") else self.calibrated(proba)


def sample_faces(face_settings: dict) -> np.ndarray:
    """The real faces of the bundled sample photos, cropped the way the model expects (for parity checks)."""
    from engage.faces.crop import FaceSettings, extract_faces
    from engage.faces.detect import create_detector
    from engage.io.sample_photos import sample_images

    settings = FaceSettings.from_dict(face_settings) if face_settings else FaceSettings()
    detector = create_detector(settings.detector or "mtcnn")
    faces = [face for rgb in sample_images().values() for face, _ in extract_faces(rgb, detector, settings)]
    return np.stack(faces)


@contextmanager
def _ctrl_c_after_native_code() -> Iterator[None]:
    """Hold Ctrl+C until the block ends: onnx's C++ code calls back into Python, and a KeyboardInterrupt raised
    there ends the process in std::terminate (a C++ traceback, exit 134) instead of engage's "aborted"."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, None)
        raise KeyboardInterrupt


def export_onnx(model: str, out: str, check_faces: np.ndarray | None = None) -> dict:
    """Write `model` (shipped name or file) as a self-contained .onnx file, after checking that onnxruntime's
    probabilities match PyTorch's within PARITY_TOLERANCE on real faces (the sample's, unless given) and on
    random ones. Nothing is written if they do not."""
    from engage.io.files import write_bytes
    from engage.models.loading import load_model

    classifier = load_model(model)
    if classifier.network is None:
        raise UsageError(f"{model}: only networks can be exported to ONNX (this is a HOG+SVM model)")
    with _ctrl_c_after_native_code():
        data, config = onnx_bytes(classifier.network, classifier.config)
        onnx_model = OnnxClassifier(data, model, config)
    if check_faces is None:
        check_faces = sample_faces(classifier.face_settings)
    from engage.faces.crop import FaceSettings

    shape = FaceSettings.from_dict(classifier.face_settings).shape
    random_faces = np.random.default_rng(0).integers(0, 256, (32, *shape), dtype=np.uint8)
    faces = np.concatenate([check_faces.astype(np.uint8), random_faces])
    difference = float(np.abs(classifier.predict_proba(faces) - onnx_model.predict_proba(faces)).max())
    if difference > PARITY_TOLERANCE:
        raise EngageError(
            f"{model}: onnxruntime differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE:g}); not exported"
        )
    write_bytes(out, data)
    return {
        "model": model,
        "out": out,
        "format": "onnx",
        "opset": OPSET,
        "class_names": classifier.class_names,
        "bytes": len(data),
        "checked_faces": len(faces),
        "real_faces": len(check_faces),
        "max_abs_difference": difference,
    }
