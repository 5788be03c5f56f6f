"""How steady the engagement score is under the framing: the same face shown at 5 sizes (x0.8 to x1.25) and found
by the three detectors (MTCNN, YuNet, dlib's CNN), on real faces from ../shared/data, each setting measured in the
same run.

    python benchmarks/stability.py [--per-set 60] [--models engagement ...] [--json out.json]

Per setting: the share of faces whose label is not the same at all 5 sizes (target <= 3%); how far a face's rank
among all faces moves across the sizes, as a share of the range (median, target <= 5%; and 90th percentile); and
the spread (largest minus smallest) of p_engaged between the three detectors on the same image at its own size
(median, and the share of faces within 0.05; target: within 0.05). A face is counted where every size (or every
detector) found it. Settings: each --models entry with the cues on (its cue head, if any) and off.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = (0.8, 0.9, 1.0, 1.1, 1.25)
DETECTORS = ("mtcnn", "yunet", "dlib")
TARGETS = {"flips": 0.03, "rank_median": 0.05, "detector_spread": 0.05}


def faces_of_sets(per_set: int, seed: int) -> list[Path]:
    """Images of students: WACV (both formats) and DAiSEE val, `per_set` of each, chosen at random."""
    rng = random.Random(seed)
    chosen = []
    for folder in ("engagement/wacv", "engagement/daisee/val"):
        with open(DATA / folder / "labels.csv", newline="") as handle:
            paths = [DATA / folder / row["path"] for row in csv.DictReader(handle)]
        chosen += rng.sample(paths, min(per_set, len(paths)))
    return chosen


def score(predictor, rgb) -> float:
    """p_engaged (unsmoothed) of the biggest face; NaN when none is found."""
    faces = predictor.predict(rgb)
    return float(faces[0].p_engaged_raw) if faces else float("nan")


def stability(scores: np.ndarray, threshold: float) -> dict:
    """scores: (faces, sizes). Label flips and rank movement over the faces found at every size."""
    found = np.isfinite(scores).all(axis=1)
    scores = scores[found]
    labels = scores >= threshold
    flips = float(np.mean(labels.any(axis=1) & ~labels.all(axis=1)))
    ranks = np.argsort(np.argsort(scores, axis=0), axis=0) / max(len(scores) - 1, 1)
    moved = ranks.max(axis=1) - ranks.min(axis=1)
    return {
        "faces": int(found.sum()),
        "flips": round(flips, 4),
        "rank_median": round(float(np.median(moved)), 4),
        "rank_p90": round(float(np.percentile(moved, 90)), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=60)
    parser.add_argument("--models", nargs="+", default=["engagement"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    from engage.errors import EngageError
    from engage.inference.predictor import Predictor

    images = []
    for path in faces_of_sets(args.per_set, args.seed):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        pad = max(rgb.shape[:2]) // 4  # a little room around tight crops, as a frame would have
        images.append(cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE))
    report = {}
    from engage.models.loading import load_model

    for model in args.models:
        has_head = load_model(model).cue_head is not None  # without a head the cues do not move the score
        for cues in (False, True) if has_head else (False,):
            shown = model if not Path(model).is_file() else f"{Path(model).parent.name}/{Path(model).name}"
            name = f"{shown}, cues {'on' if cues else 'off'}"
            predictors = {}
            for detector in DETECTORS:
                try:
                    predictors[detector] = Predictor(model, detector=detector, cues=cues)
                except EngageError as error:
                    print(f"{name}: {detector} skipped ({error})")
            sizes = np.array(
                [
                    [
                        score(
                            predictors["mtcnn"],
                            cv2.resize(
                                rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
                            ),
                        )
                        for s in SIZES
                    ]
                    for rgb in images
                ]
            )
            threshold = predictors["mtcnn"].decision.threshold
            row = stability(sizes, threshold)
            by_detector = np.array([[score(predictor, rgb) for predictor in predictors.values()] for rgb in images])
            found = np.isfinite(by_detector).all(axis=1)
            spread = by_detector[found].max(axis=1) - by_detector[found].min(axis=1)
            row.update(
                {
                    "detector_faces": int(found.sum()),
                    "detector_spread_median": round(float(np.median(spread)), 4),
                    "detector_within_0.05": round(float(np.mean(spread <= 0.05)), 4),
                    "detectors": list(predictors),
                }
            )
            report[name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
    print(
        "\n| setting | faces | labels flip across 5 sizes (<= 3%) | rank moves, median (<= 5%) | rank moves, 90th pct | "
        "detectors' spread, median | within 0.05 of each other |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in report.items():
        print(
            f"| {name} | {row['faces']} | {100 * row['flips']:.1f}% | {100 * row['rank_median']:.1f}% | "
            f"{100 * row['rank_p90']:.1f}% | {row['detector_spread_median']:.3f} | {100 * row['detector_within_0.05']:.0f}% |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
