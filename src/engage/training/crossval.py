"""Cross-validation of a training recipe, by subject and per data set, and the model it ships.

`engage train engagement --cv K` trains the recipe K times, each time leaving out a K-th of every data set's
subjects, and scores the left-out faces after every epoch. From those out-of-fold predictions it chooses
the number of epochs (best mean ROC AUC over the data sets) and fits the calibration (Platt scaling with both
classes, and every data set within each, weighing the same: p is calibrated for a base rate of 0.5, so the decision
is at 0.5). The figures it reports are cross-fitted: each fold's faces are scored with the epoch and calibration
chosen on the other folds' out-of-fold predictions only (those folds' models saw fold k's faces in training: the usual
approximation, not a nested cross-validation). Finally the recipe is trained on every subject for the chosen number of epochs, and that
model is written with its calibration and threshold.

Every figure is given per data set (corpus), never pooled: data sets differ in their share of engaged faces,
so a pooled AUC can reward recognising the data set rather than the student.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np

from engage.data.dataset import FaceDataset, concatenate
from engage.errors import EngageError
from engage.evaluation.calibration import DegenerateCalibration, balanced_weights, ece_at_rates, fit_calibration
from engage.evaluation.metrics import basic_metrics, bootstrap_ci
from engage.io.files import atomic_write, write_text
from engage.models.calibration import BALANCED, calibrate
from engage.models.decision import Decision, best_threshold

if TYPE_CHECKING:
    from engage.models.networks import FaceNet
    from engage.training.loop import TrainConfig

# config fields that do not change what a fold computes (so a run may continue with other values)
NOT_IN_KEY = ("threads", "device", "save_every_s", "data", "val", "split", "val_fraction")


def corpus_folds(data: FaceDataset, folds: int, seed: int = 0) -> np.ndarray:
    """Fold (0..folds-1) per face: within each data set, whole subjects go to folds of about equal size, so every
    fold holds about a K-th of every data set."""
    from engage.data.splits import grouped_kfold

    fold_of = np.full(len(data), -1, np.int16)
    for corpus in data.corpora:
        members = data.corpus == corpus
        fold_of[members] = grouped_kfold(data.subjects[members], folds, seed)
    return fold_of


def data_fingerprint(data: FaceDataset) -> str:
    """sha256 over everything in a dataset that changes what is learnt from it."""
    digest = hashlib.sha256()
    for array in (data.faces, data.labels, data.subjects, data.corpus):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps([data.class_names, data.settings.to_dict()], sort_keys=True).encode())
    return digest.hexdigest()


def run_key(config: TrainConfig, data_hash: str, index: np.ndarray | None, what: str) -> str:
    """The identity of one training run: recipe (the model it starts from by its bytes, not its path), data, the
    faces it trains on, and what it is for."""
    from engage.models.checkpoint import sha256_of

    recipe = {k: v for k, v in asdict(config).items() if k not in NOT_IN_KEY}
    if recipe.get("init"):
        recipe["init"] = sha256_of(recipe["init"])
    faces = hashlib.sha256(np.ascontiguousarray(index).tobytes()).hexdigest() if index is not None else "all"
    return hashlib.sha256(
        json.dumps([recipe, data_hash, faces, what], sort_keys=True, default=str).encode()
    ).hexdigest()


def claim_folder(folder: str, key: str, description: str) -> bool:
    """Make `folder` hold the run `key`; True when it already holds (part of) that run, to be continued.
    A folder holding another run is refused, so results of another recipe or data are never reused."""
    path = os.path.join(folder, "run-key.json")
    os.makedirs(folder, exist_ok=True)
    try:  # exclusive: of two runs started at once on one folder, one claims it and the other is refused
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with open(path) as existing:
            recorded = json.load(existing).get("key")
        if recorded != key:
            raise EngageError(
                f"{folder} holds a run of another recipe, data or fold ({description}); "
                "choose another --out (nothing was changed)"
            ) from None
        return True
    with os.fdopen(handle, "w") as claimed:
        claimed.write(json.dumps({"key": key, "what": description}) + "\n")
        claimed.flush()
        os.fsync(claimed.fileno())
    return False


def _save_array(path: str, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    atomic_write(path, write)


def _scores_at_every_epoch(
    config: TrainConfig,
    train_set: FaceDataset,
    test: FaceDataset,
    run_dir: str,
    resume: bool,
    log: Callable[[str], None],
) -> dict[int, np.ndarray]:
    """Train one fold; the left-out faces' probabilities after every epoch (kept as files, so a killed run
    continues)."""
    from engage.models.networks import faces_to_tensor, predict_proba
    from engage.training.loop import train

    inputs = faces_to_tensor(test.faces, test.settings.normalize)

    def on_epoch(epoch: int, model: FaceNet) -> None:
        proba = predict_proba(model, inputs.to(next(model.parameters()).device)).numpy()
        _save_array(os.path.join(run_dir, f"test-epoch{epoch:03d}.npy"), proba)

    last = config.stop_after or config.epochs
    if not all(os.path.exists(os.path.join(run_dir, f"test-epoch{e:03d}.npy")) for e in range(1, last + 1)):
        train(
            config,
            train_set,
            None,
            run_dir,
            resume=resume and os.path.exists(os.path.join(run_dir, "last.safetensors")),
            log=log,
            on_epoch=on_epoch,
        )
    return {e: np.load(os.path.join(run_dir, f"test-epoch{e:03d}.npy")) for e in range(1, last + 1)}


def _mean_auc(
    labels: np.ndarray, proba: np.ndarray, corpus: np.ndarray, mask: np.ndarray, decision: Decision, fold_of: np.ndarray
) -> float:
    """The mean over data sets of the mean over folds of ROC AUC on the masked faces: each AUC ranks the faces
    of one model, as the shipped model will rank a researcher's students (folds or data sets with one class are
    left out)."""
    values = []
    for name in np.unique(corpus[mask]):
        per_fold = []
        for fold in np.unique(fold_of[mask]):
            members = mask & (corpus == name) & (fold_of == fold)
            if len(np.unique(labels[members])) == 2:
                per_fold.append(basic_metrics(labels[members], proba[members], decision)["auc"])
        if per_fold:
            values.append(float(np.mean(per_fold)))
    if not values:
        raise EngageError("no data set has both classes among the held-out faces: the epochs cannot be ranked")
    return float(np.mean(values))


IDENTITY_CALIBRATION = {"scale": 1.0, "bias": [0.0, 0.0], "method": "none"}
DECISION_RULE = (
    "0.5 on p calibrated for a balanced base rate (as many on-task as off-task faces): the Bayes decision "
    "for balanced accuracy"
)
CALIBRATION_RULE = (
    "Platt scaling of the log-odds on out-of-fold predictions, both classes and, within each, every data "
    "set weighing the same: p is calibrated for a base rate of 0.5"
)


def _choose(
    labels: np.ndarray,
    oof: dict[int, np.ndarray],
    corpus: np.ndarray,
    mask: np.ndarray,
    decision: Decision,
    fold_of: np.ndarray,
    epoch: int | None = None,
) -> dict:
    """Epoch and calibration chosen on the masked out-of-fold faces. The calibration is fitted with both classes
    weighing the same (and every data set within each), so p is calibrated for a base rate of 0.5 and the decision
    is at 0.5; where the scores do not separate the classes, it falls back to the network's own probabilities
    (scale 1, bias 0) and says so. The threshold with the best balanced accuracy is reported beside it.
    epoch: calibrate at this epoch instead of choosing one (a model trained for that many epochs)."""
    curve = {e: _mean_auc(labels, proba, corpus, mask, decision, fold_of) for e, proba in oof.items()}
    if epoch is None:
        epoch = max(curve, key=lambda e: (round(curve[e], 6), -e))  # the best; the earlier of equals
    positive = (labels[mask] == decision.positive_index).astype(int)
    try:
        calibration = fit_calibration(
            labels[mask], oof[epoch][mask], balanced_weights(positive, corpus[mask]), base_rate=BALANCED
        )
    except DegenerateCalibration as error:
        calibration = dict(
            IDENTITY_CALIBRATION,
            n=int(mask.sum()),
            base_rate=BALANCED,
            fallback=f"not fitted: {error}; the network's own probabilities are used",
        )
    p = decision.p_positive(calibrate(oof[epoch][mask], calibration))
    names = corpus[mask]
    best = best_threshold([positive[names == n] for n in np.unique(names)], [p[names == n] for n in np.unique(names)])
    return {
        "epoch": int(epoch),
        "curve": curve,
        "calibration": calibration,
        "threshold": BALANCED,
        "best_balanced_accuracy_threshold": float(best),
    }


def group_report(
    labels: np.ndarray,
    proba: np.ndarray,
    predicted: np.ndarray,
    subjects: np.ndarray,
    decision: Decision,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Metrics of one data set's out-of-fold faces with 95% CIs (whole subjects resampled); `ece` at the balanced
    rate the probabilities are calibrated for, `ece_own_rate` with them re-weighted to the data set's own share."""
    positive = decision.positive_index
    assert positive is not None  # cross-validation decides binary tasks only
    ece = ece_at_rates(labels, decision.p_positive(proba), positive, BALANCED)
    report = {
        "n": len(labels),
        "subjects": len(set(subjects.tolist())),
        "positive_share": float(np.mean(labels == decision.positive_index)),
        **basic_metrics(labels, proba, decision, predicted),
        "ece": ece["balanced"],
        "ece_own_rate": ece.get("own_rate", float("nan")),
    }
    report["ci95"] = bootstrap_ci(
        labels, proba, subjects, n_boot, seed, decision=decision, predicted=predicted, ece_rate=BALANCED
    )
    return report


def fold_report(
    labels: np.ndarray,
    proba: np.ndarray,
    predicted: np.ndarray,
    fold_of: np.ndarray,
    mask: np.ndarray,
    folds: int,
    decision: Decision,
) -> dict:
    """Each metric per fold (the faces of one model) and their mean with a 95% t-interval over folds; folds
    whose faces hold one class only are left out of AUC and balanced accuracy."""
    from scipy import stats

    result = {}
    for metric in ("auc", "balanced_accuracy", "accuracy", "f1"):
        values = []
        for fold in range(folds):
            members = mask & (fold_of == fold)
            if members.any() and (len(np.unique(labels[members])) == 2 or metric in ("accuracy", "f1")):
                values.append(basic_metrics(labels[members], proba[members], decision, predicted[members])[metric])
        values = [v for v in values if np.isfinite(v)]
        mean = float(np.mean(values)) if values else float("nan")
        half = (
            float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
            if len(values) > 1
            else float("nan")
        )
        result[metric] = {"mean": mean, "ci95": [mean - half, mean + half], "per_fold": values}
    return result


def cross_validate(
    config: TrainConfig,
    paths: list[str],
    folds: int,
    out_dir: str,
    log: Callable[[str], None] = print,
    final: bool = True,
    n_boot: int = 1000,
    epoch: int | None = None,
) -> dict:
    """Cross-validate the recipe `config` (a TrainConfig) on the dataset files, then (final) train the model
    that ships: see the module's docstring. Writes into out_dir: foldK/ (a run each), final/ (the last run),
    model.safetensors, oof.npz and crossval.json. A killed run continues where it stopped.
    epoch: score and calibrate at this epoch instead of choosing one (e.g. to calibrate a model already trained
    for that many epochs with this recipe); the folds' runs are the same, so an earlier run's are reused."""
    from engage.models.checkpoint import load_network, save_model

    datasets = [FaceDataset.load(path) for path in paths]
    data = concatenate(datasets, paths)
    file_of = np.concatenate([np.full(len(d), i) for i, d in enumerate(datasets)])
    if not data.has_subjects:
        raise EngageError(
            "cross-validation by subject needs a subject id for every face (a 'subject' column "
            "or --subject-pattern when pre-processing)"
        )
    if (data.labels < 0).any():
        raise EngageError("cross-validation needs labelled faces only")
    decision = Decision.for_classes(data.class_names)
    if not decision.binary:
        raise EngageError(
            f"--cv chooses a threshold for a binary task; these classes are {', '.join(data.class_names)}"
        )
    positive = decision.positive_index
    assert positive is not None  # binary
    corpus = data.corpus
    assert corpus is not None  # FaceDataset.__post_init__ fills it
    from engage.models.device import torch_device
    from engage.training.loop import native_bf16, network_args

    config = replace(config, data=list(paths), val=None, split="none")
    config.validate()
    if config.bf16 is None:  # settled once, so every fold's key and run are the same
        config.bf16 = native_bf16(torch_device(config.device))
    config.model_args = network_args(config, data.settings)
    data_hash = data_fingerprint(data)
    fold_of = corpus_folds(data, folds, config.seed)
    labels = data.labels
    oof: dict[int, np.ndarray] = {}
    for k in range(folds):
        test_mask = fold_of == k
        run_dir = os.path.join(out_dir, f"fold{k + 1}")
        started = claim_folder(
            run_dir,
            run_key(config, data_hash, np.flatnonzero(test_mask), f"fold {k + 1}/{folds}"),
            f"fold {k + 1} of {folds}",
        )
        log(
            f"fold {k + 1}/{folds}: training on {int((~test_mask).sum()):,} faces, scoring {int(test_mask.sum()):,}"
            + (" (continuing)" if started else "")
        )
        # data=None: a fold is continued by re-running the cross-validation, never alone on every face
        scores = _scores_at_every_epoch(
            replace(config, data=None), data.subset(~test_mask), data.subset(test_mask), run_dir, started, log
        )
        for scored_epoch, proba in scores.items():
            oof.setdefault(scored_epoch, np.full((len(data), proba.shape[1]), np.nan, np.float32))[test_mask] = proba

    if epoch is not None and epoch not in oof:
        raise EngageError(f"--cv-epoch {epoch}: the recipe trains {len(oof)} epochs (1 to {max(oof)})")
    everyone = np.ones(len(data), bool)
    chosen = _choose(labels, oof, corpus, everyone, decision, fold_of, epoch)
    # cross-fitted figures: fold k scored with what the other folds chose
    honest = np.zeros_like(oof[chosen["epoch"]])
    predicted = np.zeros(len(data), np.int64)
    fold_choices = []
    for k in range(folds):
        test_mask = fold_of == k
        choice = _choose(labels, oof, corpus, ~test_mask, decision, fold_of, epoch)
        honest[test_mask] = calibrate(oof[choice["epoch"]][test_mask], choice["calibration"])
        fold_decision = replace(decision, threshold=choice["threshold"])
        predicted[test_mask] = fold_decision.predict(honest[test_mask])
        fold_choices.append({k2: v for k2, v in choice.items() if k2 != "curve"})
    groups = {name: corpus == name for name in data.corpora}
    for i, path in enumerate(paths):  # a data set spread over several files: each file too
        name = corpus[file_of == i][0] if (file_of == i).any() else ""
        if len(set(file_of[corpus == name].tolist())) > 1:
            groups[f"{name}: {os.path.basename(path)}"] = file_of == i
    report = {
        "folds": folds,
        "n": len(data),
        "files": list(paths),
        "classes": data.class_names,
        "decision_rule": DECISION_RULE,
        "epoch_rule": (
            "epoch with the best mean over data sets of the mean over folds of out-of-fold ROC AUC (the "
            "earlier of equals)"
        )
        if epoch is None
        else f"fixed: epoch {epoch} (--cv-epoch)",
        "calibration_rule": CALIBRATION_RULE,
        "base_rate": BALANCED,
        "best_balanced_accuracy_threshold": chosen["best_balanced_accuracy_threshold"],
        "chosen_epoch": chosen["epoch"],
        "calibration": chosen["calibration"],
        "threshold": chosen["threshold"],
        "epoch_curve": {str(e): round(v, 5) for e, v in chosen["curve"].items()},
        "epoch_curve_per_corpus": {
            name: {str(e): round(basic_metrics(labels[m], p[m], decision)["auc"], 5) for e, p in oof.items()}
            for name, m in groups.items()
            if len(np.unique(labels[m])) == 2
        },
        "fold_choices": fold_choices,
        "cross_fitted": {
            name: group_report(labels[m], honest[m], predicted[m], data.subjects[m], decision, n_boot)
            for name, m in groups.items()
            if len(np.unique(labels[m])) == 2
        },
        "cross_fitted_per_fold": {
            name: fold_report(labels, honest, predicted, fold_of, m, folds, decision)
            for name, m in groups.items()
            if len(np.unique(labels[m])) == 2
        },
        "not_cross_fitted": "epoch_curve, epoch_curve_per_corpus and uncalibrated_at_0.5 use every fold's predictions "
        "at the epoch chosen on all folds",
        "uncalibrated_at_0.5": {
            name: {
                **basic_metrics(labels[m], oof[chosen["epoch"]][m], decision),
                "ece": ece_at_rates(labels[m], decision.p_positive(oof[chosen["epoch"]][m]), positive)["balanced"],
            }
            for name, m in groups.items()
            if len(np.unique(labels[m])) == 2
        },
        "method": "cross-fitted: each fold's faces are scored with the epoch, calibration and threshold chosen on the "
        f"other folds' out-of-fold predictions; 95% CIs from {n_boot} bootstrap resamples of whole subjects",
        "recipe": {k: v for k, v in asdict(config).items() if k not in ("data", "val", "split", "val_fraction")},
    }

    def write_oof(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                labels=labels,
                corpus=corpus,
                subjects=data.subjects,
                paths=data.paths,
                fold=fold_of,
                file_index=file_of,
                proba=oof[chosen["epoch"]],
                calibrated=honest,
                predicted=predicted,
                class_names=np.array(data.class_names),
            )

    atomic_write(os.path.join(out_dir, "oof.npz"), write_oof)
    if final:
        final_config = replace(config, stop_after=chosen["epoch"])
        final_dir = os.path.join(out_dir, "final")
        started = claim_folder(final_dir, run_key(final_config, data_hash, None, "final"), "the final model")
        log(
            f"final model: every subject, {chosen['epoch']} of the recipe's {config.epochs} epochs"
            + (" (continuing)" if started else "")
        )
        from engage.training.loop import train

        last = os.path.join(final_dir, "last.safetensors")
        if not (started and os.path.exists(os.path.join(final_dir, "final-done"))):
            train(final_config, data, None, final_dir, resume=started and os.path.exists(last), log=log)
            write_text(os.path.join(final_dir, "final-done"), "done\n")
        network, model_config = load_network(last)
        model_config = {k: v for k, v in model_config.items() if k not in ("metrics",)}
        model_config.update(
            calibration=chosen["calibration"],
            decision=replace(decision, threshold=chosen["threshold"], rule=report["decision_rule"]).to_dict(),
            epoch=chosen["epoch"],
            crossval={
                "folds": folds,
                "chosen_epoch": chosen["epoch"],
                "cross_fitted": {
                    name: {k: v for k, v in r.items() if k != "ci95"} for name, r in report["cross_fitted"].items()
                },
            },
        )
        save_model(os.path.join(out_dir, "model.safetensors"), network, model_config)
        report["model"] = os.path.join(out_dir, "model.safetensors")
    write_text(os.path.join(out_dir, "crossval.json"), json.dumps(report, indent=1))
    return report


def format_report(report: dict) -> str:
    """The cross-validation in a few lines: per data set, the cross-fitted figures with 95% CIs."""

    def cell(row: dict, metric: str) -> str:
        low, high = row["ci95"].get(metric, [float("nan")] * 2)
        return f"{100 * row[metric]:5.1f} [{100 * low:4.1f}, {100 * high:4.1f}]"

    calibration = report["calibration"]
    lines = [
        f"{report['folds']} subject folds per data set; chosen: {report['chosen_epoch']} epochs, calibration scale "
        f"{calibration['scale']:.3f} bias {calibration['bias'][1]:+.3f}"
        + (f" ({calibration['fallback']})" if calibration.get("fallback") else "")
        + f"; p calibrated for a base rate of {report.get('base_rate', 0.5):g}, threshold {report['threshold']:.3f}",
        "",
        f"{'data set':28s} {'n':>6s} {'engaged':>8s} {'AUC % (folds)':>20s} {'AUC % (pooled)':>18s} "
        f"{'bal. acc. %':>18s} {'accuracy %':>18s} {'F1 %':>18s} {'ECE':>6s} {'ECE own':>7s}",
    ]
    for name, row in report["cross_fitted"].items():
        folds = report["cross_fitted_per_fold"][name]["auc"]
        per_fold = f"{100 * folds['mean']:5.1f} [{100 * folds['ci95'][0]:4.1f}, {100 * folds['ci95'][1]:4.1f}]"
        lines.append(
            f"{name[:28]:28s} {row['n']:6d} {100 * row['positive_share']:7.1f}% {per_fold:>20s} "
            f"{cell(row, 'auc'):>18s} {cell(row, 'balanced_accuracy'):>18s} {cell(row, 'accuracy'):>18s} "
            f"{cell(row, 'f1'):>18s} {row['ece']:6.3f} {row.get('ece_own_rate', float('nan')):7.3f}"
        )
    lines += [
        "",
        "AUC (folds): mean over the folds of each fold's AUC (the faces of one model), 95% t-interval; "
        "the others: all out-of-fold faces together, 95% CI over students; ECE of p_engaged at the balanced "
        "rate (both classes weighing the same), ECE own: with p re-weighted to the data set's own share",
    ]
    if report.get("model"):
        lines += ["", f"model (every subject, calibrated, threshold recorded): {report['model']}"]
    return "\n".join(lines)
