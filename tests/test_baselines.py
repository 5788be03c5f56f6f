import numpy as np
import pytest
from conftest import real_fer_faces
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import SVC

from engage.errors import EngageError
from engage.models.hog_svm import HogSvm, hog_features
from engage.models.loading import load_model, save_hog_svm


def test_hog_svm_end_to_end_on_real_faces(tmp_path, shared_data):
    classes = ("happy", "surprise")
    faces, labels = real_fer_faces(shared_data, classes, 150)
    val_faces, val_labels = real_fer_faces(shared_data, classes, 50, split="val")
    test_faces, test_labels = real_fer_faces(shared_data, classes, 50, split="val", offset=50)
    assert hog_features(faces[:2]).shape == (2, 900)
    model = HogSvm(seed=0).fit(faces, labels, list(classes), val_faces, val_labels)
    assert model.C is not None and model.selection_["metric"] == "auc" and model.selection_["val_auc"] > 0.7
    proba = model.predict_proba(test_faces)
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1)
    accuracy = float((proba.argmax(1) == test_labels).mean())
    assert accuracy > 0.7, accuracy

    path = str(tmp_path / "hog.safetensors")
    save_hog_svm(path, model, {"normalize": "standard"})
    loaded = load_model(path)
    assert loaded.class_names == list(classes)
    assert np.allclose(loaded.predict_proba(test_faces), proba, atol=1e-6)


def test_our_kernel_expansion_matches_scikit_learn():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 10)).astype(np.float32)
    labels = (features[:, 0] + 0.3 * rng.normal(size=120) > 0).astype(int)
    svc = SVC(C=1.0, gamma=0.1).fit(features, labels)
    ours = (svc.dual_coef_ @ rbf_kernel(svc.support_vectors_, features, gamma=0.1)).ravel() + svc.intercept_[0]
    assert np.allclose(ours, svc.decision_function(features), atol=1e-5)


def test_one_class_and_missing_validation_are_refused():
    faces = np.zeros((10, 48, 48), np.uint8)
    with pytest.raises(EngageError, match="two classes"):
        HogSvm().fit(faces, np.zeros(10, int), ["a", "b"])
    with pytest.raises(EngageError, match="validation faces"):
        HogSvm().fit(faces, np.arange(10) % 2, ["a", "b"])


def test_hog_svm_is_weighted_and_chosen_like_the_networks(shared_data):
    # 30 surprised faces for 100 happy ones: the rare class must count, and AUC (not accuracy) picks C and gamma
    faces, labels = real_fer_faces(shared_data, ("happy", "surprise"), 100)
    keep = np.r_[0:100, 100:130]
    val_faces, val_labels = real_fer_faces(shared_data, ("happy", "surprise"), 40, split="val")
    model = HogSvm(seed=0).fit(faces[keep], labels[keep], ["happy", "surprise"], val_faces, val_labels)
    assert model.selection_["metric"] == "auc" and model.config()["class_weight"] == "balanced"
    features, val = model._standardise(hog_features(faces[keep])), model._standardise(hog_features(val_faces))
    from sklearn.metrics import roc_auc_score

    chosen = model._svc(model.C, model.gamma).fit(features, labels[keep])
    assert model.selection_["val_auc"] == pytest.approx(roc_auc_score(val_labels, chosen.decision_function(val)))
    unweighted = SVC(C=1.0, gamma=model.gamma).fit(features, labels[keep])
    weighted = model._svc(1.0, model.gamma).fit(features, labels[keep])
    # at the same C the unweighted SVM finds 10% of the surprised faces, the weighted one 30% (measured)
    found = lambda svm: (svm.predict(val)[val_labels == 1] == 1).mean()  # noqa: E731
    assert found(weighted) >= found(unweighted) + 0.15
