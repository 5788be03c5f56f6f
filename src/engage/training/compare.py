"""Cross-validated comparison of models on the same subject-grouped folds, like the paper's table."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from engage.data.dataset import FaceDataset
from engage.errors import UsageError
from engage.evaluation.metrics import basic_metrics, bootstrap_ci, fast_metrics
from engage.io.files import atomic_write, write_text

if TYPE_CHECKING:
    from engage.models.decision import Decision
    from engage.training.estimators import FaceEstimator

NETWORKS = ("cnn", "vgg", "compact")


@dataclass
class ModelSpec:
    """One row of the table: a network from scratch, an ER model (network initialised from a FER model) or HOG+SVM."""

    label: str
    kind: str  # 'network', 'er' or 'hog-svm'
    model: str | None = None
    init: str | None = None
    model_args: dict = field(default_factory=dict)

    def estimator(self, train_overrides: dict, seed: int, run_dir: str, log: Callable[[str], None]) -> FaceEstimator:
        """This row's model as a FaceEstimator (engage.training.estimators): fit(train, val), predict_proba(faces).
        Networks train with the engagement task's defaults (class weights, best epoch by AUC) and the overrides."""
        from engage.training.estimators import HogSvmEstimator, NetworkEstimator

        if self.kind == "hog-svm":
            return HogSvmEstimator(seed=seed)
        from engage.training.loop import TrainConfig, task_defaults

        overrides = dict(task_defaults("engagement", self.init))
        overrides.update(train_overrides)
        recipe = overrides.pop("recipe", "default")
        if recipe == "paper":
            overrides = {k: v for k, v in overrides.items() if k not in ("epochs", "lr") or k in train_overrides}
        config = TrainConfig.from_recipe(
            recipe, task="engagement", model=self.model, init=self.init, seed=seed, save_every_s=1e9, **overrides
        )
        if self.init:
            from engage.models.checkpoint import read_file

            meta = read_file(self.init)[1]
            config.model_args = meta.get("config", meta).get("model_args", {})
        elif self.model_args:
            config.model_args = dict(self.model_args)
        return NetworkEstimator(
            config,
            run_dir,
            log=lambda line: log(f"    {line} (an interrupted fold continues)") if line.startswith("resumed") else None,
        )


def parse_model_specs(text: str) -> list[ModelSpec]:
    """'cnn,vgg,compact:width=48,er:runs/fer/best.safetensors,hog-svm' to specs."""
    specs = []
    for item in [part.strip() for part in text.split(",") if part.strip()]:
        name, _, args = item.partition(":")
        if name in NETWORKS:
            specs.append(ModelSpec(item, "network", model=name, model_args=_parse_args(name, args) if args else {}))
        elif item == "hog-svm":
            specs.append(ModelSpec(item, "hog-svm"))
        elif item.startswith("er:"):
            from engage.models.checkpoint import read_file
            from engage.models.loading import resolve_model

            path = resolve_model(item[3:])
            meta = read_file(path)[1]
            model = meta.get("config", meta)["model"]
            specs.append(ModelSpec(f"er ({model})", "er", model=model, init=path))
        else:
            raise UsageError(
                f"unknown model {item!r} in --models; use cnn, vgg, compact[:width=N], hog-svm or er:FER_MODEL_FILE"
            )
    if len(specs) < 2:
        raise UsageError("--models needs at least two models to compare")
    return specs


def _parse_args(name: str, text: str) -> dict:
    """('compact', 'width=48') to {'width': 48}: integer arguments of a network."""
    from engage.models.networks import build_model

    try:
        args = {key: int(value) for key, _, value in (pair.partition("=") for pair in text.split(":"))}
        build_model(name, 2, **args)
    except (TypeError, ValueError):
        raise UsageError(f"bad network arguments in {name + ':' + text!r}; write e.g. compact:width=48") from None
    return args


def fold_key(
    spec: ModelSpec, overrides: dict, seed: int, val_fraction: float, data_hash: str, fold: int, test_index: np.ndarray
) -> str:
    """Everything that changes one model's predictions on one fold: the model (and the bytes of the model it
    starts from), the recipe and options, the seed, the data, and which faces are held out."""
    import hashlib

    from engage.models.checkpoint import sha256_of
    from engage.version import __version__

    init = sha256_of(spec.init) if spec.init else None
    # HOG+SVM takes no training recipe; thread counts change no result
    recipe = {} if spec.kind == "hog-svm" else {k: v for k, v in overrides.items() if k != "threads"}
    identity = [
        spec.kind,
        spec.model,
        spec.model_args,
        init,
        recipe,
        seed,
        val_fraction,
        data_hash,
        fold,
        hashlib.sha256(np.ascontiguousarray(test_index).tobytes()).hexdigest(),
        __version__,
    ]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fold_cache(out_dir: str, fold: int, label: str, key: str) -> str:
    """Where one model's held-out and validation probabilities on one fold are kept: the file name holds the
    fold's key, so a result of another model, recipe, option, data or fold is never reused."""
    name = label.replace(" ", "_").replace("(", "").replace(")", "")
    return os.path.join(out_dir, f"fold{fold}-{name}-{key}.npz")


def fold_assignment(dataset: FaceDataset, folds: int, seed: int) -> np.ndarray:
    from engage.data.splits import check_no_leak, grouped_kfold

    if not dataset.has_subjects:
        raise UsageError("comparing models needs subject ids (a manifest 'subject' column or --subject-pattern)")
    if (dataset.fold >= 0).all() and len(set(dataset.fold.tolist())) == folds:
        check_no_leak(dataset.subjects, dataset.fold.astype(str))
        return dataset.fold.astype(int)
    return grouped_kfold(dataset.subjects, folds, seed).astype(int)


def _fit_predict(
    spec: ModelSpec,
    train_set: FaceDataset,
    val: FaceDataset,
    test: FaceDataset,
    run_dir: str,
    train_overrides: dict,
    seed: int,
    log: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one model on one fold; its probabilities on the held-out faces and on the validation faces."""
    model = spec.estimator(train_overrides, seed, run_dir, log).fit(train_set, val)
    best = getattr(model, "best_metrics_", None)  # a network's best epoch
    if best:
        log(f"    best epoch {best.get('epoch')}: val auc {best.get('val_auc')}")
    return model.predict_proba(test.faces), model.predict_proba(val.faces)


def run_comparison(
    dataset: FaceDataset,
    specs: list[ModelSpec],
    out_dir: str,
    folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
    train_overrides: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and test every model on the same subject folds. Each model's threshold on each fold is chosen on
    that fold's validation faces by the shipped rule (best balanced accuracy), so accuracy and F1 are read at an
    operating point chosen without the held-out students. Fold results are cached in out_dir under a key of
    everything that changes them; an interrupted fold continues its training."""
    from engage.data.splits import subject_split
    from engage.models.decision import Decision, best_threshold
    from engage.training.crossval import data_fingerprint

    if len(dataset.class_names) != 2:
        raise UsageError("engage compare reproduces the paper's binary task; pre-process with a two-class --label-map")
    os.makedirs(out_dir, exist_ok=True)
    decision = Decision.for_classes(dataset.class_names)
    positive = decision.positive_index
    assert positive is not None  # two classes
    fold_of = fold_assignment(dataset, folds, seed)
    from engage.models.device import torch_device
    from engage.training.loop import native_bf16

    data_hash = data_fingerprint(dataset)
    overrides = dict(train_overrides or {})
    if overrides.get("bf16") is None:  # settled here, so it is part of every fold's key (GPU bf16 != CPU fp32)
        overrides["bf16"] = native_bf16(torch_device(overrides.get("device", "auto")))
    oof = {spec.label: np.full((len(dataset), 2), np.nan, np.float32) for spec in specs}
    predicted = {spec.label: np.zeros(len(dataset), np.int64) for spec in specs}
    thresholds: dict[str, list[float]] = {spec.label: [] for spec in specs}
    for fold in range(folds):
        test_mask = fold_of == fold
        rest = dataset.subset(~test_mask)
        inner = subject_split(rest.subjects, val_fraction, seed + fold)
        train_set, val, test = rest.subset(inner == "train"), rest.subset(inner == "val"), dataset.subset(test_mask)
        for spec in specs:
            key = fold_key(spec, overrides, seed, val_fraction, data_hash, fold, np.flatnonzero(test_mask))
            cache = fold_cache(out_dir, fold, spec.label, key)
            if os.path.exists(cache):
                with np.load(cache) as stored:
                    proba, val_proba = stored["test"], stored["val"]
            else:
                log(
                    f"fold {fold + 1}/{folds}: {spec.label} on {len(train_set)} train / {len(val)} val / {len(test)} test faces"
                )
                proba, val_proba = _fit_predict(spec, train_set, val, test, cache[:-4], overrides, seed, log)

                def write(tmp: str, test_p: np.ndarray = proba, val_p: np.ndarray = val_proba) -> None:
                    with open(tmp, "wb") as handle:
                        np.savez(handle, test=test_p, val=val_p)

                atomic_write(cache, write)
            threshold = best_threshold([(val.labels == positive).astype(int)], [val_proba[:, positive]])
            thresholds[spec.label].append(threshold)
            oof[spec.label][test_mask] = proba
            predicted[spec.label][test_mask] = replace(decision, threshold=threshold).predict(proba)
    result = summarise(dataset, fold_of, oof, folds, seed, predicted, decision)
    for label, values in thresholds.items():
        result["models"][label]["thresholds"] = values

    def write_oof(tmp: str) -> None:
        # Any: mypy would match a dict of arrays given as ** against savez's allow_pickle: bool too
        per_model: dict[str, Any] = {
            **{f"proba_{i}": oof[spec.label] for i, spec in enumerate(specs)},
            **{f"predicted_{i}": predicted[spec.label] for i, spec in enumerate(specs)},
        }
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                labels=dataset.labels,
                subjects=dataset.subjects,
                fold=fold_of,
                labels_order=np.array([spec.label for spec in specs]),
                **per_model,
            )

    atomic_write(os.path.join(out_dir, "oof.npz"), write_oof)
    return result


def load_oof(out_dir: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(probabilities, decided labels, fold) per model label from a comparison's oof.npz."""
    with np.load(os.path.join(out_dir, "oof.npz")) as stored:
        labels = [str(label) for label in stored["labels_order"]]
        return (
            {label: stored[f"proba_{i}"] for i, label in enumerate(labels)},
            {label: stored[f"predicted_{i}"] for i, label in enumerate(labels)},
            stored["fold"],
        )


def _mean_ci(values: list[float]) -> list[float]:
    from scipy import stats

    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return [float(array.mean())] * 2
    half = stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / np.sqrt(len(array))
    return [float(array.mean() - half), float(array.mean() + half)]


def paired_test(
    dataset: FaceDataset,
    fold_of: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    metric: str,
    folds: int,
    n_boot: int = 2000,
    seed: int = 0,
    predicted_a: np.ndarray | None = None,
    predicted_b: np.ndarray | None = None,
    decision: Decision | None = None,
) -> dict:
    """A minus B on the same faces: paired t-test over folds and a paired bootstrap over subjects.
    predicted_*: each model's decided labels (at its per-fold thresholds); default: decided at 0.5."""
    from scipy import stats

    labels = dataset.labels

    def on(index: np.ndarray, proba: np.ndarray, chosen: np.ndarray | None, fast: bool = False) -> float:
        measure = fast_metrics if fast else basic_metrics
        return measure(labels[index], proba[index], decision, None if chosen is None else chosen[index])[metric]

    per_fold_a = [on(fold_of == f, a, predicted_a) for f in range(folds)]
    per_fold_b = [on(fold_of == f, b, predicted_b) for f in range(folds)]
    t_result = stats.ttest_rel(per_fold_a, per_fold_b)
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(dataset.subjects, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    boot: list[float] = []
    for _ in range(n_boot):
        index = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        if len(np.unique(labels[index])) < 2:
            continue
        boot.append(on(index, a, predicted_a, True) - on(index, b, predicted_b, True))
    differences = np.asarray(boot)
    p_boot = float(min(1.0, 2 * min((differences <= 0).mean(), (differences >= 0).mean())))
    everyone = np.arange(len(labels))
    observed = on(everyone, a, predicted_a) - on(everyone, b, predicted_b)
    return {
        "metric": metric,
        "difference": float(observed),
        "difference_ci95": [float(np.quantile(differences, 0.025)), float(np.quantile(differences, 0.975))],
        "p_bootstrap_subjects": p_boot,
        "p_paired_t_folds": float(t_result.pvalue),
        "per_fold_a": per_fold_a,
        "per_fold_b": per_fold_b,
    }


def summarise(
    dataset: FaceDataset,
    fold_of: np.ndarray,
    oof: dict[str, np.ndarray],
    folds: int,
    seed: int,
    predicted: dict[str, np.ndarray] | None = None,
    decision: Decision | None = None,
) -> dict:
    rows: dict[str, dict[str, Any]] = {}
    predicted = predicted or {}
    labels = dataset.labels
    for label, proba in oof.items():
        chosen = predicted.get(label)
        per_fold = [
            basic_metrics(
                labels[fold_of == f], proba[fold_of == f], decision, None if chosen is None else chosen[fold_of == f]
            )
            for f in range(folds)
        ]
        row: dict[str, Any] = {}
        for metric in ("accuracy", "balanced_accuracy", "f1", "auc", "macro_f1"):
            values = [m[metric] for m in per_fold]
            row[metric] = {"mean": float(np.mean(values)), "ci95": _mean_ci(values), "per_fold": values}
        row["pooled"] = basic_metrics(labels, proba, decision, chosen)
        row["pooled_ci95"] = bootstrap_ci(
            labels, proba, dataset.subjects, 1000, seed, decision=decision, predicted=chosen
        )
        rows[label] = row
    ranked = sorted(rows, key=lambda k: rows[k]["auc"]["mean"], reverse=True)
    result = {
        "n": len(dataset),
        "subjects": len(set(dataset.subjects.tolist())),
        "folds": folds,
        "class_names": dataset.class_names,
        "models": rows,
        "ranking_by_auc": ranked,
        "threshold_rule": "per fold, the threshold with the best balanced accuracy on that fold's validation faces",
        "ci_method": "mean over subject folds with a t-interval; pooled: out-of-fold predictions, subject bootstrap",
    }
    if decision is not None and decision.binary:
        result["positive_class"] = decision.positive
    if len(ranked) >= 2:
        best, second = ranked[0], ranked[1]
        result["paired"] = {
            "a": best,
            "b": second,
            **paired_test(dataset, fold_of, oof[best], oof[second], "auc", folds, seed=seed, decision=decision),
        }
    return result


def format_table(result: dict) -> str:
    """The paper's table: accuracy / F1 / AUC in %, mean over folds with 95% CI."""
    lines = [
        f"{result['n']} faces, {result['subjects']} subjects, {result['folds']} subject folds "
        f"(positive class: {result.get('positive_class', result['class_names'][1])}; accuracy and F1 at each fold's "
        "threshold, chosen on its validation faces)",
        "",
        f"{'model':22s} {'accuracy %':>22s} {'F1 %':>22s} {'AUC %':>22s}",
    ]
    for label, row in result["models"].items():
        cells = []
        for metric in ("accuracy", "f1", "auc"):
            mean, (low, high) = row[metric]["mean"], row[metric]["ci95"]
            cells.append(f"{100 * mean:6.2f} [{100 * low:5.1f}, {100 * high:5.1f}]")
        lines.append(f"{label:22s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s}")
    if "paired" in result:
        p = result["paired"]
        lines += [
            "",
            f"paired, {p['a']} minus {p['b']} (AUC): {100 * p['difference']:+.2f} points, "
            f"95% CI [{100 * p['difference_ci95'][0]:+.2f}, {100 * p['difference_ci95'][1]:+.2f}], "
            f"p = {p['p_bootstrap_subjects']:.3f} (subject bootstrap), {p['p_paired_t_folds']:.3f} (paired t over folds)",
        ]
    return "\n".join(lines)


def save_result(path: str, result: dict) -> None:
    write_text(path, json.dumps(result, indent=1))
