"""Python API for the jobs the CLI runs, so scripts and notebooks get the same behaviour."""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from engage.data.dataset import FaceDataset
from engage.errors import EngageError
from engage.io.files import write_text
from engage.models.loading import FaceClassifier, load_model


def load_labelled_faces(data: str, classifier: FaceClassifier, label_column: str = "label", label_map: str | None = None,
                        subject_pattern: str | None = None, usages: list[str] | None = None,
                        log: Callable[[str], None] = print) -> FaceDataset:
    """A dataset file as is, or raw images pre-processed with the model's own recorded face settings."""
    if data.endswith(".npz"):
        dataset = FaceDataset.load(data)
        check_face_settings(dataset.settings.to_dict(), classifier.face_settings, data, classifier.name)
        if label_map:
            from engage.data.readers import parse_label_map

            mapping = parse_label_map(label_map)
            unknown = sorted(set(dataset.class_names) - set(mapping))
            if unknown:
                raise EngageError(f"--label-map does not say what to do with label(s) {', '.join(unknown)}")
            names = sorted(set(mapping.values()))
            index = np.array([names.index(mapping[n]) for n in dataset.class_names])
            dataset.labels = np.where(dataset.labels >= 0, index[np.maximum(dataset.labels, 0)], -1)
            dataset.class_names = names
        return dataset
    from engage.data.preprocess import PreprocessOptions, load_source, preprocess
    from engage.faces.crop import FaceSettings

    options = PreprocessOptions(label_column=label_column, label_map=label_map, subject_pattern=subject_pattern,
                                usages=usages)
    source = load_source(data, options)
    settings = FaceSettings.from_dict(classifier.face_settings) if classifier.face_settings else FaceSettings()
    name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]  # the images' data set: their folder or CSV
    dataset, report = preprocess(source, settings, corpus=name)
    log(f"pre-processed {report.images} images with the model's settings (detector {settings.detector}): "
        f"{report.faces} faces, {report.counts['no-face']} without a face, {report.counts['unreadable']} unreadable")
    return dataset


def check_face_settings(data_settings: dict, model_settings: dict, data: str, model: str) -> None:
    """Faces must be cut as the model was trained: a dataset file made with other crop settings is refused."""
    from engage.faces.crop import FaceSettings

    if not model_settings:
        return
    differ = FaceSettings.from_dict(data_settings).crop_differences(FaceSettings.from_dict(model_settings))
    if differ:
        raise EngageError(f"{data}: its faces were cut otherwise than {model} was trained "
                          f"({', '.join(differ).replace('(other:', '(model:')}); pre-process the images with the model's "
                          "settings, or give the images themselves")


def align_labels(dataset: FaceDataset, class_names: list[str]) -> np.ndarray:
    """The dataset's labels as indices of the model's classes; labels the model does not know are an error."""
    unknown = sorted(set(dataset.class_names[i] for i in np.unique(dataset.labels[dataset.labels >= 0])) - set(class_names))
    if unknown:
        raise EngageError(f"the data has label(s) {', '.join(unknown)} that the model does not know "
                          f"(it knows {', '.join(class_names)}); map them with --label-map")
    index = np.array([class_names.index(n) if n in class_names else -1 for n in dataset.class_names])
    return np.where(dataset.labels >= 0, index[np.maximum(dataset.labels, 0)], -1)


def evaluate_model(model: str, data: str | list[str], label_column: str = "label", label_map: str | None = None,
                   subject_pattern: str | None = None, usages: list[str] | None = None, split: str | None = None,
                   out_dir: str | None = None, n_boot: int = 1000, log: Callable[[str], None] = print) -> dict:
    """`engage evaluate`: metrics with CIs, and optionally predictions and plots in out_dir."""
    from engage.data.dataset import concatenate
    from engage.evaluation.metrics import (
        basic_metrics,
        evaluation_report,
        save_plots,
        write_predictions,
    )

    classifier = load_model(model)
    sources = [data] if isinstance(data, str) else list(data)
    dataset = concatenate([load_labelled_faces(source, classifier, label_column, label_map, subject_pattern, usages, log)
                           for source in sources], sources)
    data = ", ".join(sources)
    if split:
        present = sorted(set(dataset.split.tolist()) - {""})
        if split not in present:
            raise EngageError(f"{data} has no split {split!r} (it has: {', '.join(present) or 'no splits'})")
        dataset = dataset.subset(dataset.split == split)
    labelled = dataset.labels >= 0
    if not labelled.any():
        raise EngageError(f"{data}: no labelled faces to evaluate on")
    dataset = dataset.subset(labelled)
    labels = align_labels(dataset, classifier.class_names)
    if len(np.unique(labels)) < 2 and len(classifier.class_names) == 2:
        log("warning: the data holds one class only, so AUC and F1 are undefined or misleading")
    proba = classifier.predict_proba(dataset.faces)
    decision = classifier.decision
    report = evaluation_report(labels, proba, classifier.class_names,
                               dataset.subjects if dataset.has_subjects else None, n_boot=n_boot, decision=decision)
    report = {"model": model, "data": data, **report, "plots": []}
    if len(dataset.corpora) > 1:  # several data sets: each one's figures too (a pooled AUC can reward telling sets apart)
        report["per_corpus"] = {
            name: {"n": int((dataset.corpus == name).sum()),
                   **basic_metrics(labels[dataset.corpus == name], proba[dataset.corpus == name], decision)}
            for name in dataset.corpora if len(np.unique(labels[dataset.corpus == name])) == 2 or not decision.binary}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_predictions(os.path.join(out_dir, "predictions.csv"), dataset.paths, dataset.subjects, labels, proba,
                          classifier.class_names, decision)
        report["plots"] = save_plots(out_dir, labels, proba, classifier.class_names, title=os.path.basename(model),
                                     decision=decision)
        write_text(os.path.join(out_dir, "metrics.json"), json.dumps(report, indent=1))
    return report
