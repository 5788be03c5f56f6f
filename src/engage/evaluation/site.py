"""`engage calibrate`: correct a model's p_engaged for a new site (camera, classroom, population) from a few
labelled frames of it.

The correction is a temperature and a bias on the model's log-odds (Platt scaling on top of the model's own
calibration), fitted with both classes weighing the same, and within each every subject, so that the corrected
p_engaged is calibrated for a balanced base rate like the shipped model's (`--base-rate` re-weights it to the site's
share afterwards). Optionally it also chooses the site's threshold (best balanced accuracy). Before and after are
measured out of sample when the frames name their subjects (or come from several folders, taken as sessions): each
group is scored with a correction fitted on the other groups only; 95% CIs resample whole groups.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from engage.errors import EngageError, UsageError
from engage.evaluation.calibration import DegenerateCalibration, balanced_weights, ece_at_rates, fit_calibration
from engage.models.calibration import BALANCED, SiteCalibration, model_rate, shift_base_rate
from engage.models.decision import Decision, best_threshold
from engage.version import __version__

MIN_PER_CLASS = 10  # judged faces of each class a site calibration needs at least
FOLDS = 5  # groups (subjects or sessions) are held out in at most this many folds to measure "after"


def fit_site(
    labels: np.ndarray,
    p_model: np.ndarray,
    groups: np.ndarray | None,
    fit_threshold: bool,
    model_name: str,
    model_sha256: str,
) -> SiteCalibration:
    """The site correction of p_model (the model's p(positive), labels 1 = positive) on these faces."""
    proba = np.stack([1 - p_model, p_model], axis=1)
    calibration = fit_calibration(labels, proba, balanced_weights(labels, groups), base_rate=BALANCED)
    temperature, bias = 1.0 / float(calibration["scale"]), float(calibration["bias"][1])
    site = SiteCalibration(temperature=temperature, bias=bias, model_name=model_name, model_sha256=model_sha256)
    if fit_threshold:
        site = replace(site, threshold=best_threshold([labels], [site.apply(p_model)]))
    return site


def group_folds(groups: np.ndarray, folds: int = FOLDS) -> np.ndarray | None:
    """Fold per face, whole groups to a fold (None when there are fewer than 2 groups)."""
    from engage.data.splits import grouped_kfold

    names = np.unique(groups)
    if len(names) < 2:
        return None
    return np.asarray(grouped_kfold(groups, min(folds, len(names)), 0))


def measure(
    labels: np.ndarray,
    p: np.ndarray,
    threshold: float,
    groups: np.ndarray | None,
    n_boot: int,
    rate: float = BALANCED,
    seed: int = 0,
) -> dict:
    """Balanced accuracy at the threshold, ROC AUC and ECE (at the balanced rate and at the data's own share of
    positives) of p(positive) calibrated for `rate`, with 95% CIs over whole groups (else faces)."""
    from sklearn.metrics import roc_auc_score

    def figures(index: np.ndarray) -> dict:
        y, q = labels[index], p[index]
        decided = q >= threshold
        recalls = [float((decided[y == 1]).mean()), float((~decided[y == 0]).mean())]
        ece = ece_at_rates(y, q, 1, rate)
        return {
            "balanced_accuracy": float(np.mean(recalls)),
            "auc": float(roc_auc_score(y, q)),
            "ece": ece["balanced"],
            "ece_own_rate": ece.get("own_rate", float("nan")),
        }

    from engage.evaluation.metrics import resamples

    result = figures(np.arange(len(labels)))
    samples: dict[str, list[float]] = {}
    for index in resamples(labels, groups, n_boot, seed):
        for key, value in figures(index).items():
            samples.setdefault(key, []).append(value)
    result["ci95"] = {
        key: [float(np.nanquantile(v, 0.025)), float(np.nanquantile(v, 0.975))] for key, v in samples.items()
    }
    return result


def calibrate_site(
    model: str,
    data: str | list[str],
    out_path: str,
    label_column: str = "label",
    label_map: str | None = None,
    subject_pattern: str | None = None,
    usages: list[str] | None = None,
    split: str | None = None,
    fit_threshold: bool = False,
    abstain: bool = True,
    n_boot: int = 1000,
    log: Callable[[str], None] = print,
    cues: bool = True,
) -> SiteCalibration:
    """Fit a site calibration for `model` on labelled frames (`engage evaluate`'s data forms) and write it to
    out_path (JSON). Refuses, writing nothing: one class only, fewer than MIN_PER_CLASS judged faces of a class, no
    face found, a label the label map does not name. The model's cue head, when it has one, moves the scores first
    (as in predict, where the site's correction comes after it) unless cues is False."""
    from engage.evaluation.evaluate import align_labels, dataset_cues, dataset_quality, load_data
    from engage.models.loading import load_model

    if os.path.isdir(out_path):
        raise UsageError(f"--out {out_path} is a folder; give the JSON file to write (e.g. site.json)")
    classifier = load_model(model)
    decision: Decision = classifier.decision
    if not decision.binary:
        raise UsageError(f"{model} is not a binary model: a site calibration corrects p_engaged only")
    sha256 = classifier.config.get("tensors_sha256")
    if not sha256:
        raise EngageError(
            f"{model} does not record the sha256 of its weights, so a site calibration could not be "
            "tied to it; save it with engage (train, or scripts/ship_model.py)"
        )
    dataset, data = load_data(data, classifier, label_column, label_map, subject_pattern, usages, split, log, cues)
    dataset = dataset.subset(dataset.labels >= 0)
    if not len(dataset):
        raise EngageError(f"{data}: no labelled face found; a site calibration needs labelled frames with faces")
    quality = dataset_quality(dataset)
    judged = quality == "ok" if abstain else np.ones(len(dataset), bool)
    if not judged.any():
        reasons = ", ".join(sorted(set(quality.tolist())))
        raise EngageError(
            f"{data}: no face found that can be judged in its {len(dataset)} labelled image(s) "
            f"(quality: {reasons}); a site calibration needs frames with visible faces"
        )
    dataset = dataset.subset(judged)
    labels = (align_labels(dataset, classifier.class_names) == decision.positive_index).astype(int)
    counts = {decision.positive: int(labels.sum()), decision.negative: int((1 - labels).sum())}
    if min(counts.values()) == 0:
        present = next(name for name, count in counts.items() if count)
        raise EngageError(
            f"{data}: every judged face is {present}; a site calibration needs faces of both classes "
            f"(at least {MIN_PER_CLASS} of each)"
        )
    if min(counts.values()) < MIN_PER_CLASS:
        raise EngageError(
            f"{data}: {counts[decision.positive]} {decision.positive} and {counts[decision.negative]} "
            f"{decision.negative} face(s) can be judged; a site calibration needs at least "
            f"{MIN_PER_CLASS} of each"
        )
    groups: np.ndarray | None
    if dataset.has_subjects:
        groups, grouped_by = dataset.subjects, "subject"
    else:
        folders = np.array([os.path.dirname(str(path)) for path in dataset.paths])
        groups, grouped_by = (folders, "session (folder)") if len(np.unique(folders)) > 1 else (None, "face")
    proba = classifier.predict_proba(dataset.faces)
    if cues and classifier.cue_head is not None:
        positive = decision.positive_index
        assert positive is not None  # binary (checked above)
        proba = classifier.cue_head.apply(proba, dataset_cues(dataset), positive)
    p_model = decision.p_positive(proba).astype(np.float64)
    stated = model_rate(classifier.config)  # the rate the model's p assumes, when its file says
    p_model_balanced = p_model if stated is None else shift_base_rate(p_model, stated, BALANCED)
    try:
        site = fit_site(labels, p_model, groups, fit_threshold, model, sha256)
    except DegenerateCalibration as error:
        raise EngageError(
            f"{data}: {error}; no site calibration was written (the model cannot tell these frames' "
            "classes apart, so a correction cannot help)"
        ) from None

    # after, out of sample: each group scored with a correction fitted on the other groups
    fold_of = group_folds(groups) if groups is not None else None
    p_after = site.apply(p_model)
    threshold_after = np.full(len(labels), site.threshold if site.threshold is not None else BALANCED)
    out_of_sample = False
    if fold_of is not None and groups is not None:  # (fold_of is set only where groups are)
        held = np.empty(len(labels))
        try:
            for fold in np.unique(fold_of):
                rest = fold_of != fold
                if min(labels[rest].sum(), (1 - labels[rest]).sum()) < 2:
                    raise DegenerateCalibration("a fold's other groups hold too few faces of one class")
                fitted = fit_site(labels[rest], p_model[rest], groups[rest], fit_threshold, model, sha256)
                held[~rest] = fitted.apply(p_model[~rest])
                if fitted.threshold is not None:
                    threshold_after[~rest] = fitted.threshold
            p_after, out_of_sample = held, True
        except DegenerateCalibration:
            pass
    threshold_before = decision.threshold  # the model's threshold, moved with its p to the balanced rate
    if stated is not None:
        threshold_before = float(shift_base_rate(decision.threshold, stated, BALANCED))
    before = measure(labels, p_model_balanced, threshold_before, groups, n_boot)
    if site.threshold is None:
        after = measure(labels, p_after, BALANCED, groups, n_boot)
    else:  # thresholds may differ per fold: each face is decided at the one fitted without its group
        after = _measure_varying(labels, p_after, threshold_after, groups, n_boot)
    n_groups = len(np.unique(groups)) if groups is not None else 0
    site = replace(
        site,
        fitted_on={
            "data": data,
            "faces": len(labels),
            "not_judged": int((~judged).sum()),
            grouped_by + "s": n_groups,
            "label_column": label_column,
            "label_map": label_map,
            "positive_share": float(labels.mean()),
            "counts": counts,
            "weights": "both classes, and every " + grouped_by + " within each, weighing the same",
            "model": model,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "engage": __version__,
        },
        report={
            "before": before,
            "after": after,
            "after_measured": (
                f"out of sample: each {grouped_by} scored with a correction fitted on the others "
                f"({len(np.unique(fold_of))} folds)"
            )
            if out_of_sample and fold_of is not None  # (out of sample: fold_of is set)
            else "in sample (on the frames it was fitted on: too few groups to hold any out)",
            "ece": "at the balanced rate (both classes weighing the same), and at the frames' own share of on-task faces",
            "ci95": f"{n_boot} bootstrap resamples of whole {grouped_by}s"
            if groups is not None
            else f"{n_boot} bootstrap resamples of faces",
            "threshold_before": float(decision.threshold),
            "model_base_rate": stated,
        },
    )
    site.save(out_path)
    return site


def _measure_varying(
    labels: np.ndarray, p: np.ndarray, thresholds: np.ndarray, groups: np.ndarray | None, n_boot: int
) -> dict:
    """measure() where each face has its own threshold (the one chosen without its group): p is shifted so that
    each face's threshold sits at 0.5, which keeps every decision and ranking within a fold."""
    shifted = shift_base_rate(p, thresholds, BALANCED)
    result = measure(labels, shifted, BALANCED, groups, n_boot)
    result["note"] = "ECE of p with each face's own fitted threshold moved to 0.5"
    return result


def format_site(site: SiteCalibration, out_path: str) -> str:
    """engage calibrate's summary: the correction, then before and after with their CIs."""
    fitted, report = site.fitted_on, site.report
    lines = [
        f"{out_path}: temperature {site.temperature:.3f}, bias {site.bias:+.3f}"
        + (f", threshold {site.threshold:.3f}" if site.threshold is not None else "")
        + f" for model {site.model_name}",
        f"  fitted on {fitted['faces']:,} judged faces of {fitted['data']} ("
        + ", ".join(f"{count:,} {name}" for name, count in fitted["counts"].items())
        + (f"; {fitted['not_judged']:,} not judged" if fitted["not_judged"] else "")
        + ")",
        f"  after: {report['after_measured']}; CIs: {report['ci95']}",
        f"  {'':22s} {'before':>24s} {'after':>24s}",
    ]

    def cell(row: dict, key: str, percent: bool) -> str:
        low, high = row["ci95"].get(key, [float("nan")] * 2)
        scale = 100 if percent else 1
        digits = 1 if percent else 3
        return f"{scale * row[key]:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"

    for key, name, percent in (
        ("ece", "ECE (balanced rate)", False),
        ("ece_own_rate", "ECE (own rate)", False),
        ("balanced_accuracy", "balanced accuracy %", True),
        ("auc", "ROC AUC %", True),
    ):
        lines.append(
            f"  {name:22s} {cell(report['before'], key, percent):>24s} {cell(report['after'], key, percent):>24s}"
        )
    share = fitted["positive_share"]
    lines.append(
        f"  p_engaged is calibrated for a balanced rate; this site's frames are {100 * share:.0f}% on task: "
        f"add --base-rate {share:.2f} to read p at that rate (the label follows)"
    )
    lines.append(f"  use it: engage predict ... --calibration {out_path} (also serve, batch, evaluate)")
    return "\n".join(lines)
