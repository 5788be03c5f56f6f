"""How many labelled students a site calibration needs: calibrate on a few students of a site, measure on the others.

    python scripts/site_calibration.py --site daisee-val=runs/cv-engagement/oof.npz:daisee_val.npz \
        --site "daisee-val, model without DAiSEE=runs/cv-wacv/model.safetensors:runs/data/daisee_val.npz" \
        [--fit 5] [--rotations 19] [--out runs/site-calibration.json]

A site is a model's p(engaged) on the faces of one data set, by student:
- from a cross-validation's oof.npz (PATH:FILE, FILE the dataset file's name as trained): each student's faces as
  scored by the fold model that never saw that student, with the cross-fitted calibration (the shipped recipe's own
  students, as a site would meet the shipped model if it were one of them);
- or a model file and a dataset file (MODEL:DATA.npz): a model that never saw the site at all.
For each rotation, `--fit` students (the next ones of one fixed shuffled order) are the site's labelled frames:
`engage.evaluation.site.fit_site` fits the correction on their judged faces exactly as `engage calibrate` does, and
the other students are scored before and after. Printed: ECE (at the balanced rate and at the students' own share)
and balanced accuracy at the decision point, mean [min, max] over rotations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def site_scores(spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
    """(labels 1 = engaged, p(engaged) calibrated for the balanced rate, subjects, the decision point, description)."""
    from engage.data.dataset import FaceDataset
    from engage.evaluation.evaluate import dataset_quality
    from engage.models.calibration import BALANCED, model_rate, shift_base_rate

    source, data = spec.rsplit(":", 1)
    if source.endswith(".npz"):  # a cross-validation's out-of-fold predictions
        with np.load(source, allow_pickle=False) as oof:
            names = [str(c) for c in oof["class_names"]]
            files = oof["file_index"]
            crossval = json.load(open(os.path.join(os.path.dirname(source), "crossval.json")))
            index = [os.path.basename(f) for f in crossval["files"]].index(os.path.basename(data))
            mine = files == index
            labels = (oof["labels"][mine] == names.index("engaged")).astype(int)
            p = oof["calibrated"][mine][:, names.index("engaged")].astype(np.float64)
            subjects = oof["subjects"][mine]
            dataset = FaceDataset.load(crossval["files"][index])
        judged = dataset_quality(dataset) == "ok"
        return labels[judged], p[judged], subjects[judged], BALANCED, f"out-of-fold predictions of {source}"
    from engage.models.loading import load_model

    model = load_model(source)
    dataset = FaceDataset.load(data)
    dataset = dataset.subset(dataset_quality(dataset) == "ok")
    proba = model.predict_proba(dataset.faces)
    index = model.class_names.index("engaged")
    p = proba[:, index].astype(np.float64)
    rate = model_rate(model.config)
    if rate is not None:
        p = shift_base_rate(p, rate, BALANCED)
    labels = (np.array(dataset.class_names)[dataset.labels] == "engaged").astype(int)
    return labels, p, dataset.subjects, BALANCED, f"{source} on {data}"


def figures(labels: np.ndarray, p: np.ndarray, threshold: float, floor: bool = False, seed: int = 0) -> dict:
    """ECE at the balanced rate and at the faces' own share, balanced accuracy at the threshold; with floor, the ECE a
    perfectly calibrated p would show on as many faces (labels drawn from p itself: the sampling noise of ECE)."""
    from engage.evaluation.calibration import ece_at_rates
    from engage.models.calibration import shift_base_rate

    decided = p >= threshold
    ece = ece_at_rates(labels, p, 1, 0.5)
    result = {
        "ece": ece["balanced"],
        "ece_own_rate": ece.get("own_rate", float("nan")),
        "balanced_accuracy": 0.5 * (decided[labels == 1].mean() + (~decided[labels == 0]).mean()),
    }
    if floor:
        rng = np.random.default_rng(seed)
        own = labels.mean()
        draws = []
        for _ in range(20):
            drawn = (rng.random(len(p)) < shift_base_rate(p, 0.5, own)).astype(int)
            if 0 < drawn.sum() < len(drawn):
                at = ece_at_rates(drawn, p, 1, 0.5)
                draws.append([at["balanced"], at.get("own_rate", np.nan)])
        result["ece_floor"], result["ece_own_rate_floor"] = (float(v) for v in np.nanmean(draws, axis=0))
    return result


def rotate(labels, p, subjects, threshold, fit: int, rotations: int, seed: int = 0) -> dict:
    from engage.evaluation.calibration import DegenerateCalibration
    from engage.evaluation.site import MIN_PER_CLASS, fit_site

    rng = np.random.default_rng(seed)
    order = list(rng.permutation(sorted(set(subjects.tolist()))))
    rows, skipped = [], 0
    for r in range(min(rotations, len(order))):
        chosen = {order[(r + k) % len(order)] for k in range(fit)}
        calibration = np.isin(subjects, list(chosen))
        if min(labels[calibration].sum(), (1 - labels[calibration]).sum()) < MIN_PER_CLASS:
            skipped += 1  # engage calibrate would refuse these frames (too few of a class)
            continue
        try:
            site = fit_site(labels[calibration], p[calibration], subjects[calibration], False, "m", "-")
        except DegenerateCalibration:
            skipped += 1
            continue
        held = ~calibration
        rows.append(
            {
                "calibrated_on": sorted(chosen),
                "faces_fitted": int(calibration.sum()),
                "off_task_fitted": int((1 - labels[calibration]).sum()),
                "before": figures(labels[held], p[held], threshold),
                "after": figures(labels[held], site.apply(p[held]), 0.5, floor=True, seed=r),
                "temperature": site.temperature,
                "bias": site.bias,
            }
        )
    summary = {}
    for side in ("before", "after"):  # mean, min and max over rotations
        summary[side] = {
            key: [
                float(np.mean([row[side][key] for row in rows])),
                float(np.min([row[side][key] for row in rows])),
                float(np.max([row[side][key] for row in rows])),
            ]
            for key in rows[0][side]
        }
    lower = sum(row["after"]["balanced_accuracy"] < row["before"]["balanced_accuracy"] - 1e-9 for row in rows)
    return {
        "students": len(order),
        "fit": fit,
        "rotations": len(rows),
        "skipped": skipped,
        "summary": summary,
        "rotations_with_lower_balanced_accuracy": int(lower),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", action="append", required=True, metavar="NAME=SOURCE:DATA")
    parser.add_argument("--fit", type=int, default=5, help="students whose frames fit the correction")
    parser.add_argument("--rotations", type=int, default=19)
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "site-calibration.json"))
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(REPO, "src"))
    from engage.io.files import write_text

    results = {}
    for spec in args.site:
        name, source = spec.split("=", 1)
        labels, p, subjects, threshold, description = site_scores(source)
        result = rotate(labels, p, subjects, threshold, args.fit, args.rotations)
        result["source"] = description
        results[name] = result
        print(
            f"{name} ({description}): {result['students']} students, calibrate on {args.fit}, measure on the other "
            f"{result['students'] - args.fit}; {result['rotations']} rotations ({result['skipped']} skipped: too few "
            f"off-task faces among the {args.fit})"
        )
        for key in ("ece", "ece_own_rate", "balanced_accuracy"):
            before, after = result["summary"]["before"][key], result["summary"]["after"][key]
            floor = (
                result["summary"]["after"].get("ece_floor" if key == "ece" else "ece_own_rate_floor")
                if key != "balanced_accuracy"
                else None
            )
            print(
                f"  {key:18s} before {before[0]:.3f} [{before[1]:.3f}, {before[2]:.3f}]   "
                f"after {after[0]:.3f} [{after[1]:.3f}, {after[2]:.3f}]"
                + (f"   (a perfectly calibrated p would show {floor[0]:.3f} on as many faces)" if floor else "")
            )
        print(
            f"  rotations where balanced accuracy fell: {result['rotations_with_lower_balanced_accuracy']} of "
            f"{result['rotations']}"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_text(args.out, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
