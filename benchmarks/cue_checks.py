"""Label-free checks of the attention cues (engage.faces.cues) on varied real faces from ../shared/data: a mirrored
face must give yaw and roll of the opposite sign and the same pitch (each within 6 degrees), and a face turned by 20
degrees in the image plane must move roll by 20 +- 6 degrees (both ways). Target: each check passes for at least
90% of faces. Each transformed image is searched again by the detector, as a user's image would be (the face's box
moved with the image when the detector finds nothing there).

    python benchmarks/cue_checks.py [--per-set 100] [--detector mtcnn]

Also prints the cost of the cues per face (landmarks and cues, one thread) against the detector's per image, the
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOLERANCE = 6.0
TURN = 20.0
TARGET = 0.90


def images() -> dict[str, list[Path]]:
    """Image files of each set (engagement sets: WACV's two formats apart; behaviour sets)."""
    sets: dict[str, list[Path]] = {"wacv_100px": [], "wacv_colour": []}
    with open(DATA / "engagement/wacv/labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            path = DATA / "engagement/wacv" / row["path"]
            sets["wacv_colour" if cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[0] != 100 else "wacv_100px"].append(
                path
            )
    for name, folder in (
        ("daisee", "engagement/daisee/val"),
        ("yawn", "behaviour/yawn"),
        ("closed_eyes", "behaviour/closed_eyes"),
    ):
        with open(DATA / folder / "labels.csv", newline="") as handle:
            sets[name] = [DATA / folder / row["path"] for row in csv.DictReader(handle)]
    return sets


def biggest(detector, rgb, fallback):
    boxes = detector.detect(rgb)
    return max(boxes, key=lambda b: b.w * b.h) if boxes else fallback


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=100)
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return 0
    from engage.faces.cues import face_cues
    from engage.faces.detect import FaceBox, create_detector
    from engage.faces.landmarks import FaceMesh

    detector, mesh = create_detector(args.detector), FaceMesh()
    rng = random.Random(args.seed)
    results, timing = {}, {"detect": [], "cues": []}
    for name, paths in images().items():
        chosen = rng.sample(paths, min(args.per_set, len(paths)))
        rows = []
        for path in chosen:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            pad = (
                max(rgb.shape[:2]) // 2
            )  # room to turn the face (and the tight closed-eye crops, as their README says)
            rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            started = time.perf_counter()
            box = biggest(detector, rgb, None)
            timing["detect"].append(time.perf_counter() - started)
            if box is None:
                continue
            started = time.perf_counter()
            landmarks = mesh.landmarks(rgb, box)
            timing["cues"].append(time.perf_counter() - started)
            if landmarks is None:
                continue
            cues = face_cues(landmarks)
            height, width = rgb.shape[:2]
            mirrored = np.ascontiguousarray(rgb[:, ::-1])
            mirror_box = biggest(detector, mirrored, FaceBox(width - box.x - box.w, box.y, box.w, box.h))
            mirror = mesh.landmarks(mirrored, mirror_box)
            turns = []
            for angle in (TURN, -TURN):  # counter-clockwise as seen, then clockwise
                matrix = cv2.getRotationMatrix2D((box.x + box.w / 2, box.y + box.h / 2), angle, 1.0)
                turned = cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
                turned_landmarks = mesh.landmarks(turned, biggest(detector, turned, box))
                turns.append(None if turned_landmarks is None else face_cues(turned_landmarks).roll - cues.roll)
            row = {"mirror": None, "turn": turns}
            if mirror is not None:
                m = face_cues(mirror)
                row["mirror"] = (m.yaw + cues.yaw, m.roll + cues.roll, m.pitch - cues.pitch)
            rows.append(row)
        mirror_ok = [r["mirror"] is not None and max(abs(v) for v in r["mirror"]) <= TOLERANCE for r in rows]
        turn_ok = [
            all(
                t is not None and abs(abs(t) - TURN) <= TOLERANCE and (t > 0) == (i == 0)
                for i, t in enumerate(r["turn"])
            )
            for r in rows
        ]
        errors = np.array([r["mirror"] for r in rows if r["mirror"] is not None])
        moved = np.array([t for r in rows for t in r["turn"] if t is not None])
        results[name] = {
            "faces": len(rows),
            "mirror_pass": float(np.mean(mirror_ok)),
            "turn_pass": float(np.mean(turn_ok)),
            "mirror_median_abs_error_yaw_roll_pitch": np.median(np.abs(errors), axis=0).round(2).tolist(),
            "turn_median_roll_change": [float(np.median(moved[moved > 0])), float(np.median(moved[moved < 0]))],
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    faces = sum(r["faces"] for r in results.values())
    overall = {
        check: sum(r[check] * r["faces"] for r in results.values()) / faces for check in ("mirror_pass", "turn_pass")
    }
    print("\n| set | faces | mirror check passed | turn check passed |\n| --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['faces']} | {100 * r['mirror_pass']:.1f}% | {100 * r['turn_pass']:.1f}% |")
    print(f"| all | {faces} | **{100 * overall['mirror_pass']:.1f}%** | **{100 * overall['turn_pass']:.1f}%** |")
    for check, share in overall.items():
        print(
            f"{check}: {100 * share:.1f}% ({'meets' if share >= TARGET else 'misses'} the target of {100 * TARGET:.0f}%)"
        )
    detect_ms, cue_ms = 1000 * np.median(timing["detect"]), 1000 * np.median(timing["cues"])
    print(
        f"cost per face (median, one thread): landmarks and cues {cue_ms:.1f} ms, against {args.detector} per image "
        f"{detect_ms:.1f} ms (x{cue_ms / detect_ms:.2f})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"sets": results, "overall": overall, "cue_ms": cue_ms, "detect_ms": detect_ms}, indent=1) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
