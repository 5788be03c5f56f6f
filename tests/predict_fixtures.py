"""Fixtures shared by the tests of `engage predict` (a pytest plugin: `pytest_plugins = ["predict_fixtures"]`):
the shipped models and predictors, built once per session."""

from __future__ import annotations

import os

import pytest

# the demo video's two real faces have detector confidences of 0.88 and more; at the video size (480 px) YuNet also
# finds a weak false face (0.58: labelled uncertain) in the coffee picture of its first frames
REAL_FACE = 0.7


def shipped_or_env(name: str, env: str) -> str:
    """The shipped model `name`, or (until the weights ship) the model file named by the environment
    variable `env`; otherwise skip. Never a mock: these tests check real numbers of a real model."""
    from engage.models.loading import shipped_models

    if name in shipped_models():
        return name
    path = os.environ.get(env)
    if path and os.path.isfile(path):
        return path
    pytest.skip(f"the shipped '{name}' model is not in src/engage/weights yet (or set {env} to a model file)")


@pytest.fixture(scope="session")
def engagement_model() -> str:
    return shipped_or_env("engagement", "ENGAGE_TEST_MODEL")


@pytest.fixture(scope="session")
def fer_model() -> str:
    return shipped_or_env("fer", "ENGAGE_TEST_FER_MODEL")


@pytest.fixture(scope="session")
def predictor(engagement_model, fer_model):
    """The default pipeline: the model's own detector (mtcnn), PyTorch, with expressions."""
    from engage.inference.predictor import Predictor

    return Predictor.from_pretrained(engagement_model, expressions=True, expression_model=fer_model)


@pytest.fixture(scope="session")
def fast_extra() -> None:
    """YuNet and onnxruntime come with the extra 'fast' (installed by the README's set-up and CI)."""
    for module in ("yuface", "onnx", "onnxruntime"):
        pytest.importorskip(module, reason="needs the extra 'fast': pip install 'engage[fast]'")


@pytest.fixture(scope="session")
def fast_predictor(engagement_model, fast_extra):
    """The fast settings (--detector yunet --backend onnx): YuNet on half-size frames, onnxruntime."""
    from engage.inference.predictor import Predictor

    return Predictor(engagement_model, detector="yunet", backend="onnx")
