"""Python API for the jobs the CLI runs, so scripts and notebooks get the same behaviour."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from engage.data.dataset import FaceDataset
from engage.errors import EngageError
from engage.io.files import write_text
from engage.models.loading import FaceClassifier, load_model

if TYPE_CHECKING:
    from engage.faces.quality import QualityThresholds
    from engage.models.calibration import SiteCalibration


def dataset_cues(dataset: FaceDataset) -> np.ndarray:
    """The dataset's measured cues, or rows of NaN (no cues) where none were measured."""
    from engage.faces.cues import CUE_COLUMNS

    return dataset.cues if dataset.cues is not None else np.full((len(dataset), len(CUE_COLUMNS)), np.nan)


def measure_cues(dataset: FaceDataset, log: Callable[[str], None] = print) -> np.ndarray:
    """The attention cues of every face of a dataset, measured from its original image (meta root + path) on the
    box it was cut from and the detector's eye landmarks, as `engage predict` measures them (the face mesh is
    placed by that box, not the detector's own, so a face turned far aside may read a little otherwise); NaN where
    there are no landmarks, the image is gone, or the face was stored in a CSV (fer2013.csv)."""
    from engage.faces.cues import CUE_COLUMNS, face_cues
    from engage.faces.detect import FaceBox
    from engage.faces.landmarks import shared_mesh
    from engage.io.images import read_image

    root = dataset.meta.get("root") or ""
    cues = np.full((len(dataset), len(CUE_COLUMNS)), np.nan)
    read = 0
    assert dataset.landmarks is not None  # FaceDataset.__post_init__ fills it
    for i, (path, box, points) in enumerate(zip(dataset.paths, dataset.boxes, dataset.landmarks)):
        if "#" in str(path):  # a face stored in a CSV (fer2013.csv#row): no original image to measure
            continue
        full = str(path) if os.path.isabs(str(path)) else os.path.join(root, str(path))
        if not os.path.isfile(full):
            continue
        try:
            rgb = read_image(full)
        except EngageError:
            continue
        read += 1
        eyes = tuple(map(tuple, points)) if np.isfinite(points).all() else None  # the detector's: they turn the region
        x, y, w, h = (int(v) for v in box)
        landmarks = shared_mesh().landmarks(rgb, FaceBox(x, y, w, h, 1.0, eyes))
        if landmarks is not None:
            cues[i] = face_cues(landmarks).as_array()
    if not read:
        log(
            f"the cues cannot be measured: none of the {len(dataset)} faces has its image under "
            f"{root or 'the current folder'}; they are scored without (the cue head's scale and bias only)"
        )
    return cues


def load_labelled_faces(
    data: str,
    classifier: FaceClassifier,
    label_column: str = "label",
    label_map: str | None = None,
    subject_pattern: str | None = None,
    usages: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> FaceDataset:
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

    options = PreprocessOptions(
        label_column=label_column, label_map=label_map, subject_pattern=subject_pattern, usages=usages
    )
    source = load_source(data, options)
    settings = FaceSettings.from_dict(classifier.face_settings) if classifier.face_settings else FaceSettings()
    name = os.path.splitext(os.path.basename(os.path.normpath(data)))[0]  # the images' data set: their folder or CSV
    dataset, report = preprocess(source, settings, corpus=name)
    log(
        f"pre-processed {report.images} images with the model's settings (detector {settings.detector}): "
        f"{report.counts['detected'] + report.counts['no-detect']} faces, {report.counts['whole-image']} used whole "
        "(no face found), "
        f"{report.counts['no-face']} skipped (no face found), {report.counts['unreadable']} unreadable"
    )
    return dataset


def check_face_settings(data_settings: dict, model_settings: dict, data: str, model: str) -> None:
    """Faces must be cut as the model was trained: a dataset file made with other crop settings is refused."""
    from engage.faces.crop import FaceSettings

    if not model_settings:
        return
    differ = FaceSettings.from_dict(data_settings).crop_differences(FaceSettings.from_dict(model_settings))
    if differ:
        raise EngageError(
            f"{data}: its faces were cut otherwise than {model} was trained "
            f"({', '.join(differ).replace('(other:', '(model:')}); pre-process the images with the model's "
            "settings, or give the images themselves"
        )


def align_labels(dataset: FaceDataset, class_names: list[str]) -> np.ndarray:
    """The dataset's labels as indices of the model's classes; labels the model does not know are an error."""
    unknown = sorted(
        {dataset.class_names[i] for i in np.unique(dataset.labels[dataset.labels >= 0])} - set(class_names)
    )
    if unknown:
        raise EngageError(
            f"the data has label(s) {', '.join(unknown)} that the model does not know "
            f"(it knows {', '.join(class_names)}); map them with --label-map"
        )
    index = np.array([class_names.index(n) if n in class_names else -1 for n in dataset.class_names])
    return np.where(dataset.labels >= 0, index[np.maximum(dataset.labels, 0)], -1)


def load_data(
    data: str | list[str],
    classifier: FaceClassifier,
    label_column: str = "label",
    label_map: str | None = None,
    subject_pattern: str | None = None,
    usages: list[str] | None = None,
    split: str | None = None,
    log: Callable[[str], None] = print,
    cues: bool = False,
) -> tuple[FaceDataset, str]:
    """One or several data sources (any form the readers take) as one dataset for this model, and their name;
    split: only the faces of that split of a .npz; cues: measure the faces' attention cues (FaceDataset.cues) when
    the model has a cue head."""
    from engage.data.dataset import concatenate

    sources = [data] if isinstance(data, str) else list(data)
    loaded = [
        load_labelled_faces(source, classifier, label_column, label_map, subject_pattern, usages, log)
        for source in sources
    ]
    if cues and classifier.cue_head is not None:  # measured per source: each has its own image folder
        for source in loaded:
            source.cues = measure_cues(source, log)
    dataset = concatenate(loaded, sources)
    name = ", ".join(sources)
    if split:
        present = sorted(set(dataset.split.tolist()) - {""})
        if split not in present:
            raise EngageError(f"{name} has no split {split!r} (it has: {', '.join(present) or 'no splits'})")
        dataset = dataset.subset(dataset.split == split)
    return dataset, name


def dataset_quality(dataset: FaceDataset, thresholds: QualityThresholds | None = None) -> np.ndarray:
    """The `quality` of every face of a dataset, as `engage predict` would give it: 'ok', or why it cannot be judged
    (engage.faces.quality, measured from the stored box, landmarks, confidence and crop); a face used whole because
    the detector found none is 'no-face' (predict reports such an image as having no face)."""
    from engage.faces.detect import FaceBox
    from engage.faces.quality import THRESHOLDS, measure_face, quality_label

    thresholds = thresholds or THRESHOLDS
    detector = dataset.settings.detector
    assert dataset.landmarks is not None  # FaceDataset.__post_init__ fills it
    quality = []
    for i in range(len(dataset)):
        source = dataset.face_source[i]
        if source == "whole-image":
            quality.append("no-face")
            continue
        landmarks = dataset.landmarks[i]
        x, y, w, h = (int(v) for v in dataset.boxes[i])
        points = tuple(map(tuple, landmarks)) if np.isfinite(landmarks).all() else None
        box = FaceBox(x, y, w, h, float(dataset.det_conf[i]), points)
        measures = measure_face(box, dataset.faces[i])
        quality.append(quality_label(thresholds.reasons(measures, detector if source == "detected" else None)))
    return np.asarray(quality, dtype=object).astype(str)


def evaluate_model(
    model: str,
    data: str | list[str],
    label_column: str = "label",
    label_map: str | None = None,
    subject_pattern: str | None = None,
    usages: list[str] | None = None,
    split: str | None = None,
    out_dir: str | None = None,
    n_boot: int = 1000,
    log: Callable[[str], None] = print,
    base_rate: float | None = None,
    calibration: str | SiteCalibration | None = None,
    abstain: bool = True,
    cues: bool = True,
    device: str = "cpu",
) -> dict:
    """`engage evaluate`: metrics with CIs, and optionally predictions and plots in out_dir.

    base_rate and calibration (a site calibration file or object) adjust p(positive) as predict does. With abstain
    (the default, as predict), faces that cannot be judged (engage.faces.quality) are left out of the metrics and
    `coverage` says what share was judged; `all_faces` gives the figures without abstention, and `risk_coverage`
    the risk of the faces kept at every coverage. A model with a cue head has its faces' attention cues measured
    from the original images (as predict does) unless cues is False; `cues` in the report says on how many.
    device: where the network scores, 'cpu', 'cuda' (bf16) or 'auto' (engage.models.device.resolve_device)."""
    from dataclasses import replace

    from engage.evaluation.metrics import (
        basic_metrics,
        ece_of,
        evaluation_report,
        risk_coverage,
        save_plots,
        write_predictions,
    )
    from engage.models.calibration import make_adjustment
    from engage.models.device import resolve_device

    device = resolve_device(device)  # a GPU asked for where there is none: one line, before any data is read
    classifier = load_model(model).to(device)
    adjustment = make_adjustment(base_rate, calibration)
    adjustment.check(classifier.config, model)
    dataset, data = load_data(data, classifier, label_column, label_map, subject_pattern, usages, split, log, cues)
    labelled = dataset.labels >= 0
    if not labelled.any():
        raise EngageError(f"{data}: no labelled faces to evaluate on")
    dataset = dataset.subset(labelled)
    labels = align_labels(dataset, classifier.class_names)
    if len(np.unique(labels)) < 2 and len(classifier.class_names) == 2:
        log("warning: the data holds one class only, so AUC and F1 are undefined or misleading")
    decision = classifier.decision
    decision = replace(decision, threshold=adjustment.threshold(decision.threshold))
    proba = classifier.predict_proba(dataset.faces)
    head = classifier.cue_head if cues and decision.binary else None
    if head is not None:  # faces without cues (no landmarks, no image) keep their appearance with scale and bias
        positive = decision.positive_index
        assert positive is not None  # the head applies to binary models only
        proba = head.apply(proba, dataset_cues(dataset), positive)
    proba = adjustment.apply_proba(proba, classifier.config, decision.positive_index)
    rate = adjustment.rate(classifier.config)
    quality = dataset_quality(dataset)
    judged = quality == "ok" if abstain else np.ones(len(dataset), bool)
    if not judged.any():
        raise EngageError(
            f"{data}: none of its {len(dataset)} faces can be judged (quality: "
            f"{', '.join(sorted(set(quality.tolist())))}); --no-abstain scores them anyway"
        )
    kept = dataset.subset(judged)
    report = evaluation_report(
        labels[judged],
        proba[judged],
        classifier.class_names,
        kept.subjects if kept.has_subjects else None,
        n_boot=n_boot,
        decision=decision,
        ece_rate=rate if decision.binary else None,
    )
    reasons: dict[str, int] = {}
    for value in quality[quality != "ok"]:
        for reason in value.split("+"):
            reasons[reason] = reasons.get(reason, 0) + 1
    report = {
        "model": model,
        "data": data,
        **report,
        "coverage": float(judged.mean()),
        "abstention": {
            "on": bool(abstain),
            "faces": len(dataset),
            "judged": int(judged.sum()),
            "not_judged_by_reason": reasons,
        },
        "cues": {
            "cue_head": classifier.cue_head is not None,
            "applied": head is not None,
            "faces_with_cues": int(np.isfinite(dataset_cues(dataset)).all(axis=1).sum()),
        },
        "plots": [],
    }
    if not adjustment.empty:
        report["adjustment"] = {
            "base_rate": adjustment.base_rate,
            "site_calibration": adjustment.site.to_dict() if adjustment.site else None,
        }
    if judged.sum() < len(dataset):
        report["all_faces"] = {
            "n": len(dataset),
            "coverage": 1.0,
            **basic_metrics(labels, proba, decision),
            "ece": ece_of(labels, proba, decision, rate if decision.binary else None),
        }
    curve = risk_coverage(labels, proba, decision, judged) if len(np.unique(labels)) > 1 else None
    if curve is not None:
        report["risk_coverage"] = curve
    if (
        len(dataset.corpora) > 1
    ):  # several data sets: each one's figures too (a pooled AUC can reward telling sets apart)
        report["per_corpus"] = {}
        for name in dataset.corpora:
            mine = (dataset.corpus == name) & judged
            if len(np.unique(labels[mine])) == 2 or (mine.any() and not decision.binary):
                report["per_corpus"][name] = {
                    "n": int(mine.sum()),
                    "coverage": float(judged[dataset.corpus == name].mean()),
                    **basic_metrics(labels[mine], proba[mine], decision),
                }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_predictions(
            os.path.join(out_dir, "predictions.csv"),
            dataset.paths,
            dataset.subjects,
            labels,
            proba,
            classifier.class_names,
            decision,
            quality=quality if abstain else None,
        )
        report["plots"] = save_plots(
            out_dir,
            labels[judged],
            proba[judged],
            classifier.class_names,
            title=os.path.basename(model),
            decision=decision,
            ece_rate=rate if decision.binary else None,
            curve=curve,
        )
        write_text(os.path.join(out_dir, "metrics.json"), json.dumps(report, indent=1))
    return report
