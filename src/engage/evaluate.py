"""Metrics (scikit-learn), bootstrap confidence intervals, calibration, per-subject accuracy, plots."""

from __future__ import annotations

import csv
import os

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score, roc_curve

from engage.dataset import atomic_write


def basic_metrics(labels: np.ndarray, proba: np.ndarray) -> dict:
    """Accuracy and macro F1; for two classes also the positive-class F1 (the paper's) and ROC AUC."""
    labels = np.asarray(labels)
    proba = np.asarray(proba)
    predicted = proba.argmax(axis=1)
    num_classes = proba.shape[1]
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=list(range(num_classes)), zero_division=0)),
    }
    if num_classes == 2:
        metrics["f1"] = float(f1_score(labels, predicted, pos_label=1, zero_division=0))
        metrics["auc"] = float(roc_auc_score(labels, proba[:, 1])) if len(np.unique(labels)) == 2 else float("nan")
    return metrics


def fast_metrics(labels: np.ndarray, proba: np.ndarray) -> dict:
    """The same numbers as basic_metrics, from counts and ranks: ~50x faster for thousands of bootstrap resamples.

    A departure from 'use scikit-learn's metrics', kept only for resampling; tests hold it equal to basic_metrics.
    """
    from scipy.stats import rankdata

    labels, proba = np.asarray(labels), np.asarray(proba)
    num_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    f1s = []
    for k in range(num_classes):
        tp = np.sum((predicted == k) & (labels == k))
        denominator = np.sum(predicted == k) + np.sum(labels == k)
        f1s.append(2 * tp / denominator if denominator else 0.0)
    metrics = {"accuracy": float(np.mean(predicted == labels)), "macro_f1": float(np.mean(f1s))}
    if num_classes == 2:
        metrics["f1"] = float(f1s[1])
        positives = labels == 1
        n_pos, n_neg = int(positives.sum()), int((~positives).sum())
        if n_pos and n_neg:
            ranks = rankdata(proba[:, 1])
            metrics["auc"] = float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        else:
            metrics["auc"] = float("nan")
    return metrics


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def bootstrap_ci(labels: np.ndarray, proba: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile confidence intervals of every basic metric.

    With groups (subject ids) whole subjects are resampled: images of one student are not independent.
    """
    labels, proba = np.asarray(labels), np.asarray(proba)
    rng = np.random.default_rng(seed)
    if groups is not None and len(set(groups.tolist())) > 1:
        unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
        draw = lambda: np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])  # noqa: E731
    else:
        draw = lambda: rng.integers(0, len(labels), len(labels))  # noqa: E731
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        index = draw()
        if len(np.unique(labels[index])) < 2:
            continue
        for key, value in fast_metrics(labels[index], proba[index]).items():
            samples.setdefault(key, []).append(value)
    alpha = (1 - level) / 2
    return {k: [float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))] for k, v in samples.items()}


def per_subject_accuracy(labels: np.ndarray, proba: np.ndarray, subjects: np.ndarray) -> dict[str, dict]:
    predicted = np.asarray(proba).argmax(axis=1)
    result = {}
    for subject in sorted(set(subjects.tolist()) - {""}):
        mine = subjects == subject
        result[subject] = {"n": int(mine.sum()), "accuracy": float((predicted[mine] == labels[mine]).mean())}
    return result


def evaluation_report(labels: np.ndarray, proba: np.ndarray, class_names: list[str],
                      subjects: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything `engage evaluate` reports: metrics, 95% CIs, per-class recall, confusion, ECE, per-subject."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    predicted = proba.argmax(axis=1)
    classes = list(range(len(class_names)))
    has_subjects = subjects is not None and len(subjects) and bool(np.all(np.asarray(subjects) != ""))
    report = {"n": int(len(labels)), "classes": list(class_names), **basic_metrics(labels, proba)}
    report["per_class_recall"] = {
        name: float(r) for name, r in zip(class_names, recall_score(labels, predicted, labels=classes, average=None, zero_division=0))
    }
    report["confusion_matrix"] = confusion_matrix(labels, predicted, labels=classes).tolist()
    report["ece"] = expected_calibration_error(labels, proba)
    report["ci95"] = bootstrap_ci(labels, proba, np.asarray(subjects) if has_subjects else None, n_boot, seed)
    report["ci_method"] = f"{n_boot} bootstrap resamples of {'subjects' if has_subjects else 'images'}, percentile"
    if len(class_names) == 2:
        report["f1_definition"] = f"f1: F1 of the positive class '{class_names[1]}' (as the paper); macro_f1: mean over both"
    if has_subjects:
        report["per_subject"] = per_subject_accuracy(labels, proba, np.asarray(subjects))
    return report


def write_predictions(path: str, paths: np.ndarray, subjects: np.ndarray, labels: np.ndarray, proba: np.ndarray,
                      class_names: list[str]) -> None:
    """One row per face: path, subject, true label, predicted label, a probability per class."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "subject", "label", "predicted"] + [f"p_{name}" for name in class_names])
            for p, s, y, row in zip(paths, subjects, labels, proba):
                true = class_names[y] if y >= 0 else ""
                writer.writerow([p, s, true, class_names[int(np.argmax(row))]] + [f"{v:.6f}" for v in row])

    atomic_write(path, write)


def save_plots(folder: str, labels: np.ndarray, proba: np.ndarray, class_names: list[str], title: str = "") -> list[str]:
    """confusion.png, reliability.png and (binary) roc.png in folder; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    written = []
    predicted = proba.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(class_names))))
    figure, axis = plt.subplots(figsize=(1.2 + 0.8 * len(class_names), 1 + 0.7 * len(class_names)))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(j, i, f"{matrix[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8,
                      color="white" if shares[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title} confusion (row %)".strip())
    written.append(_save(figure, os.path.join(folder, "confusion.png")))

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    confidence, correct = proba.max(axis=1), predicted == labels
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, 9)
    centres = [(edges[b] + edges[b + 1]) / 2 for b in range(10) if (which == b).any()]
    accuracy = [correct[which == b].mean() for b in range(10) if (which == b).any()]
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.bar(centres, accuracy, width=0.09, alpha=0.7, label="accuracy in bin")
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{title} reliability (ECE {expected_calibration_error(labels, proba):.3f})".strip())
    axis.legend(loc="upper left")
    written.append(_save(figure, os.path.join(folder, "reliability.png")))

    if len(class_names) == 2 and len(np.unique(labels)) == 2:
        figure, axis = plt.subplots(figsize=(4.5, 4.5))
        fpr, tpr, _ = roc_curve(labels, proba[:, 1])
        axis.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, proba[:, 1]):.3f}")
        axis.plot([0, 1], [0, 1], "--", color="gray")
        axis.set_xlabel(f"false positive rate ({class_names[0]} called {class_names[1]})")
        axis.set_ylabel("true positive rate")
        axis.set_title(f"{title} ROC".strip())
        axis.legend(loc="lower right")
        written.append(_save(figure, os.path.join(folder, "roc.png")))
    return written


def _save(figure, path: str) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    return path
