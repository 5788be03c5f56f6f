"""The shipped models: they load, match their model cards, refuse tampering and score well on real data."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import real_fer_faces, run_cli
from engage.cards import read_card
from engage.classifiers import WEIGHTS_DIR, load_classifier, shipped_models
from engage.checkpoint import sha256_of
from engage.errors import EngageError

FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_the_shipped_models_and_their_cards():
    shipped = shipped_models()
    assert {"fer", "engagement"} <= set(shipped)
    total = 0
    for name, path in shipped.items():
        card = read_card(path)
        assert card["sha256"] == sha256_of(path) and card["name"] == name
        for key in ("task", "classes", "architecture", "preprocessing", "training", "validation", "date"):
            assert card[key], key
        assert "research" in card["training"]["terms"] and card["training"]["commands"]
        assert 0 < card["validation"]["ci95"]["accuracy"][0] <= card["validation"]["accuracy"] <= card["validation"]["ci95"]["accuracy"][1]
        classifier = load_classifier(name)
        assert classifier.class_names == card["classes"]
        total += card["size_bytes"]
    assert total <= 25e6  # the budget for everything shipped
    assert load_classifier("fer").class_names == list(FER_CLASSES)
    assert load_classifier("engagement").class_names == ["disengaged", "engaged"]
    assert load_classifier("fer").face_settings["detector"] is None  # FER2013 is already cropped
    assert load_classifier("engagement").face_settings["detector"] == "mtcnn"


def test_tampered_or_cardless_shipped_weights_are_refused(tmp_path):
    source = shipped_models()["engagement"]
    copy = tmp_path / "engagement.safetensors"
    shutil.copy(source, copy)
    shutil.copy(source[: -len(".safetensors")] + ".json", tmp_path / "engagement.json")
    assert load_classifier(str(copy)).class_names == ["disengaged", "engaged"]  # an intact copy with its card loads
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    with pytest.raises(EngageError, match="does not match its model card"):
        load_classifier(str(copy))
    result = run_cli("evaluate", "--model", str(copy), "--data", str(tmp_path / "nothing.npz"))
    assert result.returncode == 1 and "does not match its model card" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "engagement.json").write_text("{broken")
    with pytest.raises(EngageError, match="damaged model card"):
        load_classifier(str(copy))


def test_shipped_card_is_required_inside_the_package(tmp_path, monkeypatch):
    import engage.classifiers as classifiers

    shutil.copy(shipped_models()["fer"], tmp_path / "fer.safetensors")
    monkeypatch.setattr(classifiers, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(EngageError, match="without its model card"):
        load_classifier("fer")


@pytest.mark.slow
def test_the_fer_model_on_every_real_validation_face(shared_data):
    """All 3,589 FER2013 PublicTest images, read from the folders: the card's figure is reproduced and meets the floor."""
    faces, labels = real_fer_faces(shared_data, FER_CLASSES, per_class=10**6, split="val")
    assert len(faces) == 3589
    classifier = load_classifier("fer")
    assert classifier.network.test_time_flip and len(classifier.network.test_time_views) == 8
    predicted = classifier.predict_proba(faces).argmax(axis=1)
    accuracy = (predicted == labels).mean()
    card = read_card(shipped_models()["fer"])
    assert accuracy == pytest.approx(card["validation"]["accuracy"], abs=1e-3), accuracy
    assert accuracy >= 0.70, accuracy  # the project's floor (chance is 1/7)
    happy = labels == FER_CLASSES.index("happy")
    assert (predicted[happy] == labels[happy]).mean() >= 0.80
    classifier.set_views("flip")  # the network itself clears the floor, not only the 16 views (70.97% here)
    flip_only = (classifier.predict_proba(faces).argmax(axis=1) == labels).mean()
    assert 0.70 <= flip_only < accuracy, flip_only


@pytest.mark.slow
def test_the_engagement_model_on_unseen_real_students(shared_data, tmp_path):
    """Raw WACV images of the model's validation students (never trained on), through `engage evaluate`."""
    card = read_card(shipped_models()["engagement"])
    unseen = set(card["validation"]["subjects"])
    wacv = shared_data / "engagement" / "wacv"
    with open(wacv / "labels.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["subject"] in unseen]
    rows = rows[::3]
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label"])
        writer.writerows([[str(wacv / row["path"]), row["subject"], row["label"]] for row in rows])
    result = run_cli("evaluate", "--model", "engagement", "--data", str(tmp_path / "labels.csv"), "--label-map",
                     "2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == len(rows) and set(report["per_subject"]) == unseen
    majority = max(np.mean([row["label"] == "2_engaged" for row in rows]), np.mean([row["label"] != "2_engaged" for row in rows]))
    assert report["auc"] >= AUC_FLOOR, report["auc"]
    assert report["accuracy"] >= majority + 0.05, (report["accuracy"], majority)


AUC_FLOOR = 0.70


def test_evaluate_scores_one_split_of_a_dataset(shared_data, tmp_path):
    from conftest import make_dataset

    faces, labels = real_fer_faces(shared_data, FER_CLASSES, per_class=10, split="val")
    dataset = make_dataset(faces, labels, FER_CLASSES)
    dataset.split = np.array(["train", "val"] * (len(faces) // 2))
    dataset.save(str(tmp_path / "faces.npz"))
    result = run_cli("evaluate", "--model", "fer", "--data", str(tmp_path / "faces.npz"), "--split", "val", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n"] == len(faces) // 2
    missing = run_cli("evaluate", "--model", "fer", "--data", str(tmp_path / "faces.npz"), "--split", "test")
    assert missing.returncode == 1 and "has no split 'test' (it has: train, val)" in missing.stderr
