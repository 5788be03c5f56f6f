"""Fit the landmark box (engage.faces.landmarks.landmark_box): where MTCNN's box sits, on average, relative to the
face mesh, so that a crop cut from the landmarks frames a face as the detector's box framed the training faces, but
does not move with the detector or the box's jitter.

    python scripts/attention_cues.py      # the mesh points of every development face (runs/cues)
    python scripts/landmark_box.py        # prints LANDMARK_BOX for engage/faces/landmarks.py

Scale: the 3-D distance between the outer eye corners (turning the head does not shorten it). Centre: the middle of
the eye corners and the mouth (lips and corners), moved by a share of that scale. Each is the median over the
faces MTCNN found in WACV and DAiSEE; the spread (interquartile range of the log size ratio) says how much MTCNN's
own boxes jitter around it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main() -> int:
    points, boxes = [], []
    for name in ("wacv", "daisee_train", "daisee_val"):
        data = np.load(Path("runs/cues") / f"{name}.npz", allow_pickle=True)
        found = (data["face_source"] == "detected") & np.isfinite(data["points"][:, 0, 0])
        index = {int(k): i for i, k in enumerate(data["point_ids"])}
        points.append(data["points"][found])
        boxes.append(data["boxes"][found].astype(np.float64))
    points, boxes = np.concatenate(points), np.concatenate(boxes)
    from engage.faces.landmarks import BOX_POINTS

    eyes, mouth = (points[:, [index[k] for k in ids]] for ids in (BOX_POINTS["eyes"], BOX_POINTS["mouth"]))
    span = np.linalg.norm(points[:, index[BOX_POINTS["span"][0]]] - points[:, index[BOX_POINTS["span"][1]]], axis=1)
    middle = (eyes[:, :, :2].mean(axis=1) + mouth[:, :, :2].mean(axis=1)) / 2
    side = np.maximum(boxes[:, 2], boxes[:, 3])
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    ratio = np.log(side / span)
    shift = (centre - middle) / span[:, None]
    print(
        f"{len(points)} faces; size/span median {np.exp(np.median(ratio)):.4f} (IQR of log {np.subtract(*np.percentile(ratio, [75, 25])):.3f}), "
        f"centre shift {np.median(shift[:, 0]):.4f}, {np.median(shift[:, 1]):.4f} spans"
    )
    print(
        f"LANDMARK_BOX = ({np.exp(np.median(ratio)):.4f}, 0.0, {np.median(shift[:, 1]):.4f})  "
        "(no sideways shift: a mirrored face gets the mirrored box)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
