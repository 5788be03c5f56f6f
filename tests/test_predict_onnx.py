"""The fast path: an exported ONNX model scores real faces like PyTorch (max abs difference <= 1e-4)."""

import json

import numpy as np
import pytest
from conftest import run_cli

pytest_plugins = ["predict_fixtures"]


@pytest.fixture(scope="module")
def real_faces(engagement_model, fast_extra):
    """The 5 real faces of the bundled sample, cropped as the engagement model expects, plus flipped copies."""
    from engage.models.loading import load_model
    from engage.models.onnx import sample_faces

    faces = sample_faces(load_model(engagement_model).face_settings)
    assert len(faces) == 5
    return np.concatenate([faces, faces[:, :, ::-1]])


@pytest.mark.parametrize("which", ["engagement", "fer"])
def test_onnxruntime_matches_pytorch_on_real_faces(which, engagement_model, fer_model, real_faces):
    from engage.models.loading import load_model
    from engage.models.onnx import OnnxClassifier

    classifier = load_model(engagement_model if which == "engagement" else fer_model)
    onnx_model = OnnxClassifier.from_classifier(classifier)
    assert onnx_model.class_names == classifier.class_names
    torch_proba = classifier.predict_proba(real_faces)
    onnx_proba = onnx_model.predict_proba(real_faces)
    assert onnx_proba.shape == torch_proba.shape == (10, len(classifier.class_names))
    assert np.abs(onnx_proba - torch_proba).max() <= 1e-4
    assert np.array_equal(onnx_proba.argmax(1), torch_proba.argmax(1))


def test_export_writes_a_self_contained_file_that_predict_uses(
    engagement_model, predictor, sample_images, tmp_path, fast_extra
):
    out = tmp_path / "engagement.onnx"
    result = run_cli("export", "--format", "onnx", "--model", engagement_model, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["max_abs_difference"] <= 1e-4 and report["real_faces"] == 5
    assert out.stat().st_size > 100_000 and [p.name for p in tmp_path.iterdir()] == ["engagement.onnx"]
    scored = run_cli("predict", "--sample", "--model", str(out), "--backend", "onnx", "--json")
    assert scored.returncode == 0, scored.stderr
    results = {r["source"]: r for r in map(json.loads, scored.stdout.splitlines())}
    for name in ("astronaut.png", "group.png"):
        expected = predictor.predict(sample_images[name])
        got = results[name]["faces"]
        assert [f["box"] for f in got] == [f.box.as_list() for f in expected]
        assert [f["p_engaged"] for f in got] == pytest.approx([f.p_engaged for f in expected], abs=2e-4)


def test_an_onnx_file_needs_the_onnx_backend(tmp_path, fast_extra):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really")
    result = run_cli("predict", "--sample", "--model", str(model))
    assert result.returncode == 2 and "use --backend onnx" in result.stderr and "Traceback" not in result.stderr
    broken = run_cli("predict", "--sample", "--model", str(model), "--backend", "onnx")
    assert broken.returncode == 1 and "not a valid ONNX model" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_an_exported_colour_model_carries_its_calibration_inside_the_graph(tmp_path, sample_images, fast_extra):
    """A 64x64 colour model with a calibration and a threshold: the .onnx file's own probabilities are the calibrated
    ones (right outside engage too), and engage's ONNX backend does not calibrate twice."""
    import onnxruntime
    import torch

    from engage.models.checkpoint import save_model
    from engage.models.loading import load_model
    from engage.models.networks import build_model
    from engage.models.onnx import export_onnx, sample_faces

    torch.manual_seed(0)
    network = build_model("compact", 2, width=8, in_channels=3)
    settings = {"detector": "mtcnn", "normalize": "standard", "size": 64, "color": True, "border": "pad", "margin": 0.2}
    config = {
        "model": "compact",
        "num_classes": 2,
        "class_names": ["disengaged", "engaged"],
        "model_args": {"width": 8, "in_channels": 3},
        "face_settings": settings,
        "calibration": {"scale": 2.0, "bias": [0.0, -1.5]},
        "decision": {"positive_class": "engaged", "threshold": 0.3, "rule": "test"},
    }
    save_model(str(tmp_path / "colour.safetensors"), network, config)
    faces = sample_faces(settings)
    assert faces.shape == (5, 64, 64, 3)
    report = export_onnx(str(tmp_path / "colour.safetensors"), str(tmp_path / "colour.onnx"))
    assert report["max_abs_difference"] <= 1e-4
    classifier = load_model(str(tmp_path / "colour.safetensors"))
    expected = classifier.predict_proba(faces)
    from engage.models.networks import faces_to_tensor

    session = onnxruntime.InferenceSession(str(tmp_path / "colour.onnx"), providers=["CPUExecutionProvider"])
    raw = session.run(None, {"faces": faces_to_tensor(faces).numpy()})[0]
    assert np.abs(raw - expected).max() <= 1e-4  # calibrated inside the file itself
    from engage.models.onnx import OnnxClassifier

    assert np.abs(OnnxClassifier.load(str(tmp_path / "colour.onnx")).predict_proba(faces) - expected).max() <= 1e-4
