"""The public API in `engage/__init__.py`: a few names, each the real thing, and results as a DataFrame that holds
the same numbers as `engage predict --csv`."""

import csv

import numpy as np
import pytest
from conftest import run_cli

import engage

pytest_plugins = ["predict_fixtures"]


def test_the_public_names_are_the_pipelines_own():
    from engage.data.dataset import FaceDataset
    from engage.evaluation.evaluate import evaluate_model
    from engage.inference.predictor import Predictor
    from engage.models.loading import load_model

    assert engage.Predictor is Predictor and engage.FaceDataset is FaceDataset
    assert engage.load_model is load_model and engage.evaluate is evaluate_model
    assert set(engage.__all__) >= {
        "Predictor",
        "load_model",
        "create_model",
        "FaceDataset",
        "train",
        "evaluate",
        "to_dataframe",
    }
    with pytest.raises(AttributeError, match="no attribute 'predict'"):
        engage.predict  # noqa: B018


def test_create_model_builds_by_name_or_loads_a_trained_network(fer_model):
    fresh = engage.create_model("compact", num_classes=3, width=8)
    assert fresh.head.out_features == 3 and fresh.head.in_features == 64
    trained = engage.create_model(fer_model)
    assert trained.head.out_features == 7
    classifier = engage.load_model(fer_model)
    import torch

    assert torch.equal(trained.features[0].weight, classifier.network.features[0].weight)  # the shipped weights
    retargeted = engage.create_model(fer_model, num_classes=2)  # the ER model's start: fer's backbone, a new head
    assert retargeted.head.out_features == 2
    assert torch.equal(retargeted.features[0].weight, classifier.network.features[0].weight)
    from engage.errors import UsageError

    with pytest.raises(UsageError, match="architecture is fixed"):
        engage.create_model(fer_model, width=64)


def test_an_images_faces_become_a_dataframe(engagement_model, sample_images):
    predictor = engage.Predictor.from_pretrained(engagement_model, smoothing_s=0)
    faces = predictor.predict(sample_images["group.png"])
    table = engage.to_dataframe(faces)
    assert len(table) == 3 and list(table.columns[:12]) == [
        "source",
        "frame",
        "time_s",
        "face_id",
        "x",
        "y",
        "w",
        "h",
        "det_conf",
        "p_engaged",
        "label",
        "p_engaged_raw",
    ]
    assert table["p_engaged"].tolist() == pytest.approx([face.p_engaged for face in faces])
    assert table["face_id"].tolist() == [1, 2, 3] and table["w"].dtype.kind == "i"
    several = engage.to_dataframe(predictor.predict_batch([sample_images["astronaut.png"], sample_images["group.png"]]))
    assert several["frame"].tolist() == [0, 1, 1, 1]  # the image's index


def test_a_videos_faces_become_the_same_table_as_predict_csv(engagement_model, tmp_path):
    from engage.inference.demo import write_demo_video

    video = str(tmp_path / "faces.mp4")
    write_demo_video(video, frames=20, fps=10.0)
    result = run_cli("predict", video, "--model", engagement_model, "--csv", str(tmp_path / "faces.csv"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "faces.csv") as handle:
        rows = list(csv.DictReader(handle))
    predictor = engage.Predictor.from_pretrained(engagement_model)
    table = engage.to_dataframe(predictor.predict_video(video))
    assert len(table) == len(rows) > 20
    assert table["face_id"].tolist() == [int(row["face_id"]) for row in rows]
    assert np.allclose(table["p_engaged"], [float(row["p_engaged"]) for row in rows], atol=1e-4)
    assert np.allclose(table["time_s"], [float(row["time_s"]) for row in rows], atol=1e-3)
    assert table["label"].tolist() == [row["label"] for row in rows]
