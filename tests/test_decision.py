"""One meaning of p_engaged and one decision: the positive class by name, the stored threshold and calibration,
used alike by evaluate, predict and the metrics."""

import csv
import json

import numpy as np
import pytest
from conftest import make_dataset

from engage.errors import EngageError
from engage.evaluation.calibration import expected_calibration_error, fit_calibration
from engage.evaluation.metrics import basic_metrics
from engage.models.calibration import calibrate
from engage.models.checkpoint import save_model
from engage.models.decision import Decision, best_threshold
from engage.models.loading import load_model
from engage.models.networks import build_model


def test_the_positive_class_is_engaged_wherever_it_stands():
    first = Decision.for_classes(["engaged", "off_task"], threshold=0.7)
    assert (first.positive, first.positive_index, first.negative) == ("engaged", 0, "off_task")
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    assert first.predict(proba).tolist() == [0, 1, 1]  # 0.6 < 0.7: not engaged
    labels = np.array([0, 0, 1])
    metrics = basic_metrics(labels, proba, first)
    assert metrics["auc"] == 1.0 and metrics["accuracy"] == pytest.approx(2 / 3)
    # without the name, the second of two sorted classes; a multi-class model decides by its argmax
    assert Decision.for_classes(["a", "b"]).positive == "b"
    many = Decision.for_classes(["angry", "happy", "sad"])
    assert not many.binary and many.predict(np.array([[0.2, 0.5, 0.3]])).tolist() == [1]


def test_a_recorded_positive_class_must_match_the_classes():
    config = {"class_names": ["disengaged", "engaged"], "decision": {"positive_class": "disengaged", "threshold": 0.4}}
    with pytest.raises(EngageError, match="altered"):
        Decision.of(config)
    with pytest.raises(EngageError, match="threshold"):
        Decision.for_classes(["disengaged", "engaged"], threshold=1.5)


def test_platt_calibration_recovers_a_known_miscalibration_and_lowers_ece():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    shown = 2.5 * true_logit - 1.0  # an over-confident, biased network: logit' = 2.5 logit - 1
    proba = np.stack([1 / (1 + np.exp(shown)), 1 / (1 + np.exp(-shown))], axis=1)
    calibration = fit_calibration(labels, proba)
    assert calibration["scale"] == pytest.approx(1 / 2.5, rel=0.05)
    assert calibration["bias"][1] == pytest.approx(1 / 2.5, abs=0.08)
    fixed = calibrate(proba, calibration)
    assert expected_calibration_error(labels, fixed) < 0.015 < expected_calibration_error(labels, proba)
    assert np.allclose(fixed.sum(axis=1), 1, atol=1e-5)
    auc = lambda p: basic_metrics(labels, p)["auc"]  # noqa: E731
    assert auc(fixed) == pytest.approx(auc(proba), abs=1e-4)  # monotone: the ranking is kept
    assert np.array_equal(calibrate(proba, None), proba.astype(np.float32))


def test_the_threshold_maximises_balanced_accuracy_per_data_set():
    # set A: positives above 0.8; set B (small): positives above 0.3. The mean over sets weighs B like A.
    a_labels, a_p = np.array([0] * 50 + [1] * 50), np.r_[np.linspace(0.0, 0.79, 50), np.linspace(0.81, 1, 50)]
    b_labels, b_p = np.array([0] * 5 + [1] * 5), np.r_[np.linspace(0.0, 0.29, 5), np.linspace(0.31, 1, 5)]
    threshold = best_threshold([a_labels], [a_p])
    assert 0.79 < threshold <= 0.81
    both = best_threshold([a_labels, b_labels], [a_p, b_p])

    def mean_ba(t):
        return np.mean(
            [0.5 * ((p[y == 1] >= t).mean() + (p[y == 0] < t).mean()) for y, p in ((a_labels, a_p), (b_labels, b_p))]
        )

    assert mean_ba(both) >= max(mean_ba(t) for t in np.linspace(0, 1, 201)) and mean_ba(both) > mean_ba(0.5)


@pytest.fixture()
def thresholded_model(tmp_path, sample_images):
    """A small network whose file records a calibration and a threshold (between its scores of the sample's
    faces, so that both labels occur), with classes in an order where 'engaged' is first."""
    import torch

    from engage.models.networks import faces_to_tensor, predict_proba

    torch.manual_seed(0)
    network = build_model("compact", 2, width=8)
    network.train()
    with torch.no_grad():  # batch-norm statistics of real faces, so that the scores differ from face to face
        network(faces_to_tensor(np.random.default_rng(0).integers(0, 256, (64, 48, 48)).astype(np.uint8)))
    network.eval()
    calibration = {"scale": 0.5, "bias": [0.2, 0.0]}
    from engage.faces.crop import FaceSettings, extract_faces
    from engage.faces.detect import create_detector

    detector = create_detector("mtcnn")
    faces = np.stack(
        [face for image in sample_images.values() for face, _ in extract_faces(image, detector, FaceSettings())]
    )
    scores = calibrate(predict_proba(network, faces_to_tensor(faces)).numpy(), calibration)[:, 0]
    ordered = np.sort(scores)
    threshold = float(np.round((ordered[1] + ordered[2]) / 2, 6))  # 2 faces below it, 3 above, none near it
    config = {
        "model": "compact",
        "num_classes": 2,
        "class_names": ["engaged", "off_task"],
        "model_args": {"width": 8},
        "face_settings": {"detector": None, "normalize": "standard"},
        "decision": {"positive_class": "engaged", "threshold": threshold, "rule": "test"},
        "calibration": calibration,
    }
    path = str(tmp_path / "model.safetensors")
    save_model(path, network, config)
    return path, network, threshold, faces


def test_evaluate_decides_with_the_stored_threshold_and_calibration(tmp_path, thresholded_model):
    from engage.evaluation.evaluate import evaluate_model
    from engage.models.networks import faces_to_tensor, predict_proba

    path, network, threshold, faces = thresholded_model
    make_dataset(faces, np.arange(len(faces)) % 2, ["engaged", "off_task"]).save(str(tmp_path / "data.npz"))
    classifier = load_model(path)
    assert classifier.decision.threshold == threshold and classifier.decision.positive == "engaged"
    raw = predict_proba(network, faces_to_tensor(faces)).numpy()
    expected = calibrate(raw, {"scale": 0.5, "bias": [0.2, 0.0]})
    assert np.allclose(classifier.predict_proba(faces), expected, atol=1e-6)
    assert not np.allclose(expected, raw, atol=1e-3)
    report = evaluate_model(
        path, str(tmp_path / "data.npz"), out_dir=str(tmp_path / "eval"), n_boot=50, log=lambda line: None
    )
    assert report["decision"] == {"positive_class": "engaged", "threshold": threshold, "rule": "test"}
    with open(tmp_path / "eval" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    decided = [row["predicted"] == "engaged" for row in rows]
    assert decided == [float(row["p_engaged"]) >= threshold for row in rows]
    assert decided != [float(row["p_engaged"]) >= 0.5 for row in rows]  # 0.5 would decide otherwise
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["decision"]["threshold"] == threshold


def test_predict_labels_faces_with_the_stored_threshold(thresholded_model, sample_images):
    from engage.inference.predictor import Predictor

    path, _, threshold, _ = thresholded_model
    predictor = Predictor(path, detector="mtcnn", smoothing_s=0)
    faces = [face for image in sample_images.values() for face in predictor.predict(image)]
    assert len(faces) == 5 and predictor.decision.threshold == threshold
    for face in faces:
        assert face.p_engaged == pytest.approx(face.probabilities["engaged"])
        assert face.label == ("engaged" if face.p_engaged >= threshold else "off_task")
    assert {face.label for face in faces} == {"engaged", "off_task"}


def test_evaluate_refuses_faces_cut_otherwise_than_the_model_was_trained(tmp_path, thresholded_model):
    from conftest import run_cli

    path, _network, _, faces = thresholded_model
    dataset = make_dataset(faces, np.arange(len(faces)) % 2, ["engaged", "off_task"])
    dataset.meta["settings"] = {"detector": "mtcnn", "normalize": "standard", "margin": 0.2}
    dataset.save(str(tmp_path / "other.npz"))
    result = run_cli("evaluate", "--model", path, "--data", str(tmp_path / "other.npz"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "cut otherwise" in line
    assert "detector 'mtcnn' (model: None)" in line and "margin 0.2 (model: 0.0)" in line
