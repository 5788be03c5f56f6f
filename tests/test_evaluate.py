import numpy as np
import pytest

from engage.evaluation.metrics import (
    basic_metrics,
    bootstrap_ci,
    evaluation_report,
    expected_calibration_error,
    fast_metrics,
    save_plots,
)

LABELS = np.array([0, 0, 1, 1])
PROBA = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8]])


def test_binary_metrics_by_hand():
    metrics = basic_metrics(LABELS, PROBA)
    assert metrics["accuracy"] == 0.75  # predictions 0, 1, 1, 1
    assert metrics["f1"] == pytest.approx(0.8)  # precision 2/3, recall 1
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # class 0: precision 1, recall 1/2
    assert metrics["auc"] == 1.0  # both positives score above both negatives


def test_expected_calibration_error_by_hand():
    # confidences 0.9 (right), 0.6 (wrong), 0.65 (right), 0.8 (right), one per bin
    assert expected_calibration_error(LABELS, PROBA) == pytest.approx((0.1 + 0.6 + 0.35 + 0.2) / 4)
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) == 0.0


def test_multiclass_report_and_subject_bootstrap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    proba = np.full((300, 3), 0.1)
    proba[np.arange(300), labels] = 0.8
    proba[:60] = proba[:60, ::-1]  # 60 of 300 wrong where the label is not the middle class
    subjects = np.array([f"s{i % 10}" for i in range(300)])
    report = evaluation_report(labels, proba, ["a", "b", "c"], subjects, n_boot=200)
    expected = 1 - np.mean(labels[:60] != 1) * 60 / 300
    assert report["accuracy"] == pytest.approx(expected)
    assert set(report["per_class_recall"]) == {"a", "b", "c"} and report["per_class_recall"]["b"] == 1.0
    low, high = report["ci95"]["accuracy"]
    assert low < report["accuracy"] < high and high - low < 0.2
    assert sum(map(sum, report["confusion_matrix"])) == 300 and len(report["per_subject"]) == 10
    assert "subjects" in report["ci_method"]


def test_bootstrap_interval_narrows_with_more_data():
    rng = np.random.default_rng(1)

    def interval(n):
        labels = rng.integers(0, 2, n)
        proba = np.where(rng.random(n) < 0.8, labels, 1 - labels)[:, None] * np.array([-1.0, 1.0]) + np.array(
            [1.0, 0.0]
        )
        low, high = bootstrap_ci(labels, proba, n_boot=300)["accuracy"]
        return high - low

    assert interval(2000) < interval(100)


def test_plots_are_written(tmp_path):
    written = save_plots(str(tmp_path), LABELS, PROBA, ["disengaged", "engaged"])
    assert sorted(p.split("/")[-1] for p in written) == ["confusion.png", "reliability.png", "roc.png"]
    for path in written:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("classes", [2, 4])
def test_fast_bootstrap_metrics_equal_scikit_learn(classes):
    rng = np.random.default_rng(classes)
    for _ in range(20):
        labels = rng.integers(0, classes, 57)
        proba = rng.dirichlet(np.ones(classes), 57).round(2)  # rounding makes ties, which AUC must handle
        expected, fast = basic_metrics(labels, proba), fast_metrics(labels, proba)
        assert fast.keys() == expected.keys()
        for key in expected:
            assert fast[key] == pytest.approx(expected[key], abs=1e-12), key
