"""The attention cues (engage.faces.cues) of every face of the development sets and the behaviour sets, saved for
the cue checks, the fusion fit and the ablation (scripts/attention_model.py).

    python scripts/attention_cues.py [--out runs/cues]

Engagement sets: the faces of runs/data/*.npz (the shipped settings' MTCNN boxes, as `engage preprocess` made
them), their cues measured in the original image on those boxes. Behaviour sets (../shared/data/behaviour): each
image's biggest MTCNN face (the closed-eye crops are tight: padded by half their size on each side first), its
shipped-model score and its cues.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engage.faces.cues import CUE_COLUMNS, face_cues
from engage.faces.landmarks import FaceMesh

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ENGAGEMENT_SETS = ("wacv", "daisee_train", "daisee_val")
BEHAVIOUR_SETS = {"yawn": "behaviour/yawn", "closed_eyes": "behaviour/closed_eyes"}
PAD = {"closed_eyes": 0.5}
# mesh points kept per face (x, y, depth in image pixels), for fitting a box on the landmarks (scripts/stability.py):
# eye corners, nose tip, inner lips, mouth corners, chin, forehead, cheeks
KEPT_POINTS = (33, 133, 263, 362, 1, 13, 14, 61, 291, 152, 10, 234, 454)


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def cues_or_nan(mesh: FaceMesh, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """The face's cues and KEPT_POINTS of its mesh (NaN without landmarks)."""
    landmarks = mesh.landmarks(rgb, box)
    if landmarks is None:
        return np.full(len(CUE_COLUMNS), np.nan), np.full((len(KEPT_POINTS), 3), np.nan)
    return face_cues(landmarks).as_array(), landmarks.mesh[list(KEPT_POINTS)]


def engagement_set(name: str, runs: Path, out: Path, mesh: FaceMesh) -> None:
    data = np.load(runs / "data" / f"{name}.npz", allow_pickle=True)
    root = Path(json.loads(str(data["meta"]))["root"])
    cues = np.zeros((len(data["paths"]), len(CUE_COLUMNS)))
    points = np.zeros((len(data["paths"]), len(KEPT_POINTS), 3))
    for i, (path, box) in enumerate(zip(data["paths"], data["boxes"])):
        cues[i], points[i] = cues_or_nan(mesh, read_rgb(root / path), tuple(int(v) for v in box))
    np.savez_compressed(
        out / f"{name}.npz",
        paths=data["paths"],
        cues=cues,
        columns=np.array(CUE_COLUMNS),
        boxes=data["boxes"],
        face_source=data["face_source"],
        points=points,
        point_ids=np.array(KEPT_POINTS),
    )
    print(f"{name}: {len(cues)} faces, landmarks on {np.isfinite(cues[:, 0]).mean():.1%}", flush=True)


def behaviour_set(name: str, folder: str, out: Path, mesh: FaceMesh) -> None:
    from engage.inference.predictor import Predictor

    predictor = Predictor("engagement", detector="mtcnn", cues=False)  # the appearance score alone
    root = DATA / folder
    with open(root / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cues = np.full((len(rows), len(CUE_COLUMNS)), np.nan)
    p_engaged, boxes = np.full(len(rows), np.nan), np.full((len(rows), 4), -1)
    labels = np.array([""] * len(rows), dtype=object)
    for i, row in enumerate(rows):
        rgb = read_rgb(root / row["path"])
        pad = int(round(PAD.get(name, 0.0) * max(rgb.shape[:2])))
        if pad:
            rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = predictor.predict(rgb)
        if not faces:
            continue
        face = faces[0]
        p_engaged[i], labels[i], boxes[i] = face.p_engaged, face.label, face.box.as_list()
        cues[i] = cues_or_nan(mesh, rgb, face.box)[0]
    np.savez_compressed(
        out / f"{name}.npz",
        paths=np.array([r["path"] for r in rows]),
        labels=np.array([r["label"] for r in rows]),
        groups=np.array([r["group"] for r in rows]),
        cues=cues,
        columns=np.array(CUE_COLUMNS),
        p_engaged=p_engaged,
        predicted=labels.astype(str),
        boxes=boxes,
    )
    print(
        f"{name}: {len(rows)} images, a face in {np.isfinite(p_engaged).mean():.1%}, "
        f"landmarks on {np.isfinite(cues[:, 0]).mean():.1%}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--out", default="runs/cues")
    parser.add_argument("--sets", nargs="*", default=[*ENGAGEMENT_SETS, *BEHAVIOUR_SETS])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mesh = FaceMesh()
    for name in args.sets:
        start = time.perf_counter()
        if name in BEHAVIOUR_SETS:
            behaviour_set(name, BEHAVIOUR_SETS[name], out, mesh)
        else:
            engagement_set(name, Path(args.runs), out, mesh)
        print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
