"""Metrics (scikit-learn), bootstrap confidence intervals, calibration, per-subject accuracy, plots."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from engage.evaluation.calibration import binary_ece, ece_at_rates, expected_calibration_error, rate_weights
from engage.io.files import atomic_write
from engage.models.decision import Decision

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _decision(decision: Decision | None, num_classes: int) -> Decision:
    """The given decision, or the default one for classes known only by index (positive: the second of two)."""
    return decision if decision is not None else Decision.for_classes([str(k) for k in range(num_classes)])


def basic_metrics(
    labels: np.ndarray, proba: np.ndarray, decision: Decision | None = None, predicted: np.ndarray | None = None
) -> dict:
    """Accuracy, balanced accuracy and macro F1 of the decided labels; for a binary model also the positive
    class's F1 (the paper's) and ROC AUC of p(positive). Labels are indices of the decision's classes;
    `predicted` gives the decided labels when they were not decided by one threshold (cross-fitting)."""
    labels = np.asarray(labels)
    proba = np.asarray(proba)
    decision = _decision(decision, proba.shape[1])
    predicted = decision.predict(proba) if predicted is None else np.asarray(predicted)
    num_classes = proba.shape[1]
    present = np.unique(labels)
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(np.mean([np.mean(predicted[labels == k] == k) for k in present])),
        "macro_f1": float(
            f1_score(labels, predicted, average="macro", labels=list(range(num_classes)), zero_division=0)
        ),
    }
    if decision.binary:
        positive = decision.positive_index
        metrics["f1"] = float(f1_score(labels, predicted, pos_label=positive, zero_division=0))
        metrics["auc"] = (
            float(roc_auc_score(labels == positive, decision.p_positive(proba))) if len(present) == 2 else float("nan")
        )
    return metrics


def fast_metrics(
    labels: np.ndarray, proba: np.ndarray, decision: Decision | None = None, predicted: np.ndarray | None = None
) -> dict:
    """The same numbers as basic_metrics, from counts and ranks: ~50x faster for thousands of bootstrap resamples.

    A departure from 'use scikit-learn's metrics', kept only for resampling; tests hold it equal to basic_metrics.
    """
    from scipy.stats import rankdata

    labels, proba = np.asarray(labels), np.asarray(proba)
    decision = _decision(decision, proba.shape[1])
    num_classes = proba.shape[1]
    predicted = decision.predict(proba) if predicted is None else np.asarray(predicted)
    f1s, recalls = [], []
    for k in range(num_classes):
        tp = np.sum((predicted == k) & (labels == k))
        denominator = np.sum(predicted == k) + np.sum(labels == k)
        f1s.append(2 * tp / denominator if denominator else 0.0)
        if np.any(labels == k):
            recalls.append(tp / np.sum(labels == k))
    metrics = {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(recalls)),
        "macro_f1": float(np.mean(f1s)),
    }
    if decision.binary:
        positive = decision.positive_index
        assert positive is not None  # a binary decision has its positive class
        metrics["f1"] = float(f1s[positive])
        positives = labels == decision.positive_index
        n_pos, n_neg = int(positives.sum()), int((~positives).sum())
        if n_pos and n_neg:
            ranks = rankdata(decision.p_positive(proba))
            metrics["auc"] = float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        else:
            metrics["auc"] = float("nan")
    return metrics


def resamples(labels: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Bootstrap resamples as index arrays: whole groups (subjects) drawn with replacement when there are several,
    else faces; resamples holding one class only are left out."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if groups is not None and len(set(np.asarray(groups).tolist())) > 1:
        unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
        draw = lambda: np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])  # noqa: E731
    else:
        draw = lambda: rng.integers(0, len(labels), len(labels))  # noqa: E731
    for _ in range(n_boot):
        index = draw()
        if len(np.unique(labels[index])) >= 2:
            yield index


def bootstrap_ci(
    labels: np.ndarray,
    proba: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    decision: Decision | None = None,
    predicted: np.ndarray | None = None,
    ece_rate: float | None = None,
) -> dict[str, list[float]]:
    """Percentile confidence intervals of every basic metric.

    With groups (subject ids) whole subjects are resampled: images of one student are not independent.
    ece_rate: the ECE of a binary model's probabilities with the faces re-weighted to this share of positives (the
    base rate they are calibrated for); None: as the faces come.
    """
    labels, proba = np.asarray(labels), np.asarray(proba)
    samples: dict[str, list[float]] = {}
    for index in resamples(labels, groups, n_boot, seed):
        chosen = None if predicted is None else np.asarray(predicted)[index]
        for key, value in fast_metrics(labels[index], proba[index], decision, chosen).items():
            samples.setdefault(key, []).append(value)
        samples.setdefault("ece", []).append(ece_of(labels[index], proba[index], decision, ece_rate))
    alpha = (1 - level) / 2
    return {k: [float(np.nanquantile(v, alpha)), float(np.nanquantile(v, 1 - alpha))] for k, v in samples.items()}


def ece_of(labels: np.ndarray, proba: np.ndarray, decision: Decision | None = None, rate: float | None = None) -> float:
    """ECE of the probabilities: for a binary model, of p(positive) (binary_ece), with the faces re-weighted to the
    share of positives `rate` when given (the base rate p assumes); for more classes, the top-label ECE."""
    decision = _decision(decision, np.asarray(proba).shape[1])
    if not decision.binary:
        return expected_calibration_error(labels, proba)
    positive = np.asarray(labels) == decision.positive_index
    return binary_ece(
        positive, decision.p_positive(proba), weights=None if rate is None else rate_weights(positive, rate)
    )


def per_subject_accuracy(
    labels: np.ndarray, proba: np.ndarray, subjects: np.ndarray, decision: Decision | None = None
) -> dict[str, dict]:
    predicted = _decision(decision, np.asarray(proba).shape[1]).predict(proba)
    result = {}
    for subject in sorted(set(subjects.tolist()) - {""}):
        mine = subjects == subject
        result[subject] = {"n": int(mine.sum()), "accuracy": float((predicted[mine] == labels[mine]).mean())}
    return result


def evaluation_report(
    labels: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    subjects: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    decision: Decision | None = None,
    ece_rate: float | None = None,
) -> dict:
    """Everything `engage evaluate` reports: metrics, 95% CIs, per-class recall, confusion, ECE, per-subject.
    Labels are decided as the model decides (its positive class and threshold; the argmax for multi-class).
    ece_rate: the base rate a binary model's probabilities are calibrated for; `ece` is then measured with the faces
    re-weighted to it, and `ece_own_rate` with the probabilities re-weighted to the data's own share of positives."""
    labels, proba = np.asarray(labels), np.asarray(proba)
    decision = decision or Decision.for_classes(class_names)
    predicted = decision.predict(proba)
    classes = list(range(len(class_names)))
    has_subjects = subjects is not None and len(subjects) and bool(np.all(np.asarray(subjects) != ""))
    report = {"n": len(labels), "classes": list(class_names), **basic_metrics(labels, proba, decision)}
    if decision.binary:
        report["decision"] = decision.to_dict()
    report["per_class_recall"] = {
        name: float(r)
        for name, r in zip(class_names, recall_score(labels, predicted, labels=classes, average=None, zero_division=0))
    }
    report["confusion_matrix"] = confusion_matrix(labels, predicted, labels=classes).tolist()
    report["ece"] = ece_of(labels, proba, decision, ece_rate)
    if decision.binary and ece_rate is not None:
        report["ece_rate"] = ece_rate
        positive = decision.positive_index
        assert positive is not None  # a binary decision has its positive class
        own = ece_at_rates(labels, decision.p_positive(proba), positive, ece_rate)
        if "own_rate" in own:
            report["ece_own_rate"], report["own_share"] = own["own_rate"], own["own_share"]
    report["ci95"] = bootstrap_ci(
        labels,
        proba,
        np.asarray(subjects) if has_subjects else None,
        n_boot,
        seed,
        decision=decision,
        ece_rate=ece_rate,
    )
    report["ci_method"] = f"{n_boot} bootstrap resamples of {'subjects' if has_subjects else 'images'}, percentile"
    if decision.binary:
        report["f1_definition"] = (
            f"f1: F1 of the positive class '{decision.positive}' at threshold "
            f"{decision.threshold:.3g} (as the paper); macro_f1: mean over both"
        )
    if has_subjects:
        report["per_subject"] = per_subject_accuracy(labels, proba, np.asarray(subjects), decision)
    return report


def write_predictions(
    path: str,
    paths: np.ndarray,
    subjects: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    decision: Decision | None = None,
    quality: np.ndarray | None = None,
) -> None:
    """One row per face: path, subject, true label, predicted label (as the model decides; 'uncertain' where the
    face's quality is not 'ok'), a probability per class, and the quality when given."""
    predicted = [class_names[int(k)] for k in (decision or Decision.for_classes(class_names)).predict(proba)]
    if quality is not None:
        predicted = [name if q == "ok" else "uncertain" for name, q in zip(predicted, quality)]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["path", "subject", "label", "predicted"]
                + [f"p_{name}" for name in class_names]
                + (["quality"] if quality is not None else [])
            )
            for i, (p, s, y, row, k) in enumerate(zip(paths, subjects, labels, proba, predicted)):
                true = class_names[y] if y >= 0 else ""
                writer.writerow(
                    [p, s, true, k] + [f"{v:.6f}" for v in row] + ([quality[i]] if quality is not None else [])
                )

    atomic_write(path, write)


def risk_coverage(
    labels: np.ndarray, proba: np.ndarray, decision: Decision, judged: np.ndarray | None = None, points: int = 21
) -> dict:
    """The risk-coverage curve of selective classification (Geifman and El-Yaniv 2017): faces are kept in order of
    the model's confidence (for a binary model, the distance of the log-odds from its threshold; else the top
    probability), and the risk of the kept faces (balanced error, 1 - balanced accuracy, for a binary model; else
    the error rate) is given at each coverage, with its area (AURC). `judged`: the faces the quality rule keeps,
    whose coverage and risk are given as one point beside the curve."""
    from engage.models.calibration import logit

    labels, proba = np.asarray(labels), np.asarray(proba)
    predicted = decision.predict(proba)
    if decision.binary:
        confidence = np.abs(logit(decision.p_positive(proba)) - logit(decision.threshold))
    else:
        confidence = proba.max(axis=1)

    def risk(kept: np.ndarray) -> float:
        if not kept.any():
            return float("nan")
        if decision.binary:
            recalls = [float((predicted[kept & (labels == c)] == c).mean()) for c in np.unique(labels[kept])]
            return 1.0 - float(np.mean(recalls))
        return float((predicted[kept] != labels[kept]).mean())

    order = np.argsort(-confidence, kind="stable")
    coverages = np.linspace(1.0 / points, 1.0, points)
    curve = []
    for coverage in coverages:
        kept = np.zeros(len(labels), bool)
        kept[order[: max(1, int(round(coverage * len(labels))))]] = True
        curve.append([round(float(coverage), 4), risk(kept)])
    risks = np.array([r for _, r in curve], np.float64)
    result: dict[str, Any] = {
        "confidence": "distance of the log-odds from the threshold" if decision.binary else "top probability",
        "risk": "balanced error (1 - balanced accuracy)" if decision.binary else "error rate",
        "curve": curve,
        "aurc": float(np.nanmean(risks)),
    }
    if judged is not None:
        judged = np.asarray(judged, bool)
        result["quality_rule"] = {
            "coverage": float(judged.mean()),
            "risk": risk(judged),
            "risk_all_faces": risk(np.ones(len(labels), bool)),
        }
    return result


def save_plots(
    folder: str,
    labels: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    title: str = "",
    decision: Decision | None = None,
    ece_rate: float | None = None,
    curve: dict | None = None,
) -> list[str]:
    """confusion.png, reliability.png, (binary) roc.png and, given a risk-coverage curve, risk_coverage.png in
    folder; returns the files written. ece_rate: the reliability diagram weighs the faces to that base rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    written = []
    decision = decision or Decision.for_classes(class_names)
    predicted = decision.predict(proba)
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(class_names))))
    figure, axis = plt.subplots(figsize=(1.2 + 0.8 * len(class_names), 1 + 0.7 * len(class_names)))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(
                j,
                i,
                f"{matrix[i, j]}\n{shares[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title} confusion (row %)".strip())
    written.append(_save(figure, os.path.join(folder, "confusion.png")))

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    if decision.binary:  # p(positive) against the share of positives, as the ECE
        confidence, correct = decision.p_positive(proba), labels == decision.positive_index
        weights = rate_weights(correct, ece_rate) if ece_rate is not None else np.ones(len(labels))
        x_name, y_name = f"p({decision.positive})", f"share {decision.positive}"
    else:  # top-label calibration, as the ECE
        confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == labels
        weights, x_name, y_name = np.ones(len(labels)), "confidence", "accuracy"
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, 9)
    centres = [(edges[b] + edges[b + 1]) / 2 for b in range(10) if (which == b).any()]
    accuracy = [np.average(correct[which == b], weights=weights[which == b]) for b in range(10) if (which == b).any()]
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.bar(centres, accuracy, width=0.09, alpha=0.7, label=f"{y_name} in bin")
    axis.set_xlabel(x_name)
    axis.set_ylabel(y_name + (f" (faces weighed to base rate {ece_rate:g})" if ece_rate is not None else ""))
    axis.set_title(f"{title} reliability (ECE {ece_of(labels, proba, decision, ece_rate):.3f})".strip())
    axis.legend(loc="upper left")
    written.append(_save(figure, os.path.join(folder, "reliability.png")))

    if decision.binary and len(np.unique(labels)) == 2:
        figure, axis = plt.subplots(figsize=(4.5, 4.5))
        positive, p = labels == decision.positive_index, decision.p_positive(proba)
        fpr, tpr, _ = roc_curve(positive, p)
        axis.plot(fpr, tpr, label=f"AUC {roc_auc_score(positive, p):.3f}")
        at = p >= decision.threshold
        axis.plot(
            [at[~positive].mean()],
            [at[positive].mean()],
            "o",
            color="black",
            label=f"threshold {decision.threshold:.3g}",
        )
        axis.plot([0, 1], [0, 1], "--", color="gray")
        axis.set_xlabel(f"false positive rate ({decision.negative} called {decision.positive})")
        axis.set_ylabel("true positive rate")
        axis.set_title(f"{title} ROC".strip())
        axis.legend(loc="lower right")
        written.append(_save(figure, os.path.join(folder, "roc.png")))
    if curve is not None:
        figure, axis = plt.subplots(figsize=(4.5, 4.5))
        coverage, risks = zip(*curve["curve"])
        axis.plot(coverage, risks, "-o", markersize=3, label=f"kept by confidence (AURC {curve['aurc']:.3f})")
        rule = curve.get("quality_rule")
        if rule:
            axis.plot(
                [rule["coverage"]],
                [rule["risk"]],
                "s",
                color="black",
                label=f"quality rule: {100 * rule['coverage']:.1f}% judged",
            )
        axis.set_xlabel("coverage (share of faces judged)")
        axis.set_ylabel(curve["risk"])
        axis.set_xlim(0, 1.02)
        axis.set_title(f"{title} risk-coverage".strip())
        axis.legend(loc="upper left", fontsize=8)
        written.append(_save(figure, os.path.join(folder, "risk_coverage.png")))
    return written


def _save(figure: Figure, path: str) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)
    return path
