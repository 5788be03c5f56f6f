"""Why engage measures its cues with MediaPipe's face mesh and iris networks rather than dlib's 68 landmarks, on
landmarks that can be checked without annotations: telling closed eyes (../shared/data/behaviour/closed_eyes) from
the open eyes of WACV's students by eye opening, each face on the same box, and the cost per face of each, measured
in the same run.

    python benchmarks/landmark_choice.py [--every 4]

dlib's model is shape_predictor_68_face_landmarks.dat of face-recognition-models (99.7 MB, trained on iBUG 300-W,
whose images are licensed for research only); its eye opening is the usual eye aspect ratio of the 6 points per eye.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4, help="take every Nth image of each set")
    args = parser.parse_args()
    if not DATA.is_dir() or importlib.util.find_spec("dlib") is None:
        print("skipped: needs ../shared/data and the extra 'dlib'")
        return 0
    import dlib

    from engage.faces.cues import face_cues
    from engage.faces.detect import create_detector
    from engage.faces.landmarks import FaceMesh

    folder = os.path.dirname(importlib.util.find_spec("face_recognition_models").origin)
    dlib68 = dlib.shape_predictor(os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat"))
    mesh, detector = FaceMesh(), create_detector("mtcnn")

    def eye_ratio(rgb, box) -> float:
        shape = dlib68(rgb, dlib.rectangle(box.x, box.y, box.x + box.w, box.y + box.h))
        points = np.array([[p.x, p.y] for p in shape.parts()], float)

        def one(eye):
            p = points[list(eye)]
            return (np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * np.linalg.norm(p[0] - p[3]))

        return 0.5 * (one(range(36, 42)) + one(range(42, 48)))

    scores = {"closed": [], "open": []}
    times = {"dlib68": [], "mesh": []}
    sets = (("closed", DATA / "behaviour/closed_eyes", 0.5), ("open", DATA / "engagement/wacv", 0.0))
    for kind, root, pad in sets:
        with open(root / "labels.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))[:: args.every * (1 if kind == "closed" else 2)]
        for row in rows:
            rgb = cv2.cvtColor(cv2.imread(str(root / row["path"])), cv2.COLOR_BGR2RGB)
            border = int(round(pad * max(rgb.shape[:2])))
            rgb = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_REPLICATE)
            boxes = detector.detect(rgb)
            if not boxes:
                continue
            started = time.perf_counter()
            ratio = eye_ratio(rgb, boxes[0])
            times["dlib68"].append(time.perf_counter() - started)
            started = time.perf_counter()
            landmarks = mesh.landmarks(rgb, boxes[0])
            times["mesh"].append(time.perf_counter() - started)
            if landmarks is not None:
                scores[kind].append((ratio, face_cues(landmarks).eyes_open))
    closed, opened = np.array(scores["closed"]), np.array(scores["open"])
    truth = np.r_[np.ones(len(closed)), np.zeros(len(opened))]
    result = {
        "closed_faces": len(closed),
        "open_faces": len(opened),
        "auc_dlib68_eye_aspect_ratio": round(float(roc_auc_score(truth, -np.r_[closed[:, 0], opened[:, 0]])), 4),
        "auc_mesh_iris_eyes_open": round(float(roc_auc_score(truth, -np.r_[closed[:, 1], opened[:, 1]])), 4),
        "ms_per_face_dlib68": round(1000 * float(np.median(times["dlib68"])), 2),
        "ms_per_face_mesh_iris": round(1000 * float(np.median(times["mesh"])), 2),
        "model_mb_dlib68": round(
            os.path.getsize(os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat")) / 1e6, 1
        ),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
