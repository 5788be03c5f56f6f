"""Face recall and time per frame of the YuNet and MTCNN detectors against the detection size S (the longest side of
the frame the detector looks at), for faces W px wide in a 640x480 frame (issue 26: the detector runs at the smallest
size that still finds the faces users have; which size finds a 40-px face).

    python benchmarks/detect_size.py [--sizes 640 480 400 320 256 213 160] [--widths 24 32 40 48 64 96]
                                     [--faces 250] [--per-frame 4] [--seed 0]

Faces: WACV's colour crops from ../shared/data/engagement/wacv (face and some of the room around it; DAiSEE's crops
are cut to the face itself, too tight to paste). Each crop's true face box is MTCNN's at full size on the crop, and
only crops with exactly one face, clear of the crop's edges and at least as wide as the widest W, are used. A crop is
scaled so that its face box is W px wide and its face with some head and shoulders around it is pasted (soft edges,
mirrored at random) at a random place of a 640x480 background: a random part of skimage's coffee or rocket photo,
resized and darkened as engage.inference.demo does. A frame holds --per-frame faces of one width, not overlapping;
--faces faces per width (fixed seed). A face is found when a detected box has IoU >= 0.4 with its box. "false/frame":
detected boxes that match no pasted face, per frame.

Every (detector, S) runs on every frame in turn (so that load from other jobs hits every setting alike), one thread
(OMP_NUM_THREADS=1, cv2.setNumThreads(1); engage's MTCNN runs onnxruntime on one thread), `create_detector(name,
detect_size=S)` with its default confidence threshold; ms/frame is the median time of `detect` per frame (the
downscale included). What engage uses today for video: YuNet at half the frame's longest side (half_size: 320 for
640x480) and MTCNN at its max_side 1280 (the full 640x480 frame), min_face_size 20.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy, cv2 and yuface load their thread pools

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRAME = (640, 480)  # width, height
SIZES = [640, 480, 400, 320, 256, 213, 160]
WIDTHS = [24, 32, 40, 48, 64, 96]
DETECTORS = ["yunet", "mtcnn"]
IOU = 0.4
TARGET_WIDTH = 40  # issue 26: the face size users have
TARGET_RECALL = 0.98
EDGE = 3  # px: a crop's face box must be this far from the crop's edges (not cut by them)
# around the face box, in face widths (sides) and heights (top, bottom): what of the head and shoulders is pasted
MARGIN = (0.5, 0.6, 0.6)


@dataclass
class Face:
    rgb: np.ndarray  # the crop
    box: tuple[float, float, float, float]  # x, y, w, h of the face in the crop (MTCNN at full size)
    subject: str


def load_faces(data: Path, widest: int) -> tuple[list[Face], int]:
    """WACV's colour crops whose face MTCNN finds alone at full size, clear of the edges, at least `widest` px wide;
    and how many colour crops were looked at."""
    from engage.faces.detect import create_detector

    mtcnn = create_detector("mtcnn")
    faces, seen = [], 0
    with open(data / "engagement" / "wacv" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        bgr = cv2.imread(str(data / "engagement" / "wacv" / row["path"]), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] == (100, 100):  # the 100x100 gray face crops
            continue
        seen += 1
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        boxes = mtcnn.detect(rgb)
        if len(boxes) != 1:
            continue
        b = boxes[0]
        height, width = rgb.shape[:2]
        clear = b.x >= EDGE and b.y >= EDGE and b.x + b.w <= width - EDGE and b.y + b.h <= height - EDGE
        if clear and b.w >= widest:
            faces.append(Face(rgb, (float(b.x), float(b.y), float(b.w), float(b.h)), row["subject"]))
    return faces, seen


def backgrounds() -> list[np.ndarray]:
    from skimage import data

    return [data.coffee(), data.rocket()]


def background(photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random 4:3 part (60-100% of the photo's height) of a random photo, at 640x480, darkened as the demo does."""
    photo = photos[rng.integers(len(photos))]
    ph, pw = photo.shape[:2]
    h = int(ph * rng.uniform(0.6, 1.0))
    w = min(pw, int(h * 4 / 3))
    h = int(w * 3 / 4)
    y, x = rng.integers(0, ph - h + 1), rng.integers(0, pw - w + 1)
    part = photo[y : y + h, x : x + w]
    if rng.random() < 0.5:
        part = part[:, ::-1]
    frame = cv2.resize(np.ascontiguousarray(part), FRAME, interpolation=cv2.INTER_AREA)
    return (frame.astype(np.float32) * 0.6 + 40).astype(np.uint8)


def patch(face: Face, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face (with the head around it) scaled so its box is `width` px wide: RGB patch, alpha (soft edges) and
    the face box in the patch (x, y, w, h)."""
    x, y, w, h = face.box
    height, width_crop = face.rgb.shape[:2]
    x0, y0 = max(0, int(x - MARGIN[0] * w)), max(0, int(y - MARGIN[1] * h))
    x1, y1 = min(width_crop, int(x + w + MARGIN[0] * w)), min(height, int(y + h + MARGIN[2] * h))
    region = face.rgb[y0:y1, x0:x1]
    box = np.array([x - x0, y - y0, w, h])
    if rng.random() < 0.5:
        region = region[:, ::-1]
        box[0] = region.shape[1] - box[0] - box[2]
    scale = width / w
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    small = cv2.resize(np.ascontiguousarray(region), size, interpolation=cv2.INTER_AREA)
    ramp = max(2.0, 0.08 * min(size))  # soft edges: no hard rectangle around the pasted face
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    inside = np.minimum(np.minimum(xs, size[0] - 1 - xs), np.minimum(ys, size[1] - 1 - ys))
    alpha = np.clip((inside + 1) / ramp, 0, 1).astype(np.float32)[:, :, None]
    return small, alpha, box * scale


def make_frame(
    faces: list[Face], photos: list[np.ndarray], width: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A 640x480 frame with up to `count` faces `width` px wide, not overlapping; and their boxes in the frame."""
    frame = background(photos, rng).astype(np.float32)
    taken: list[tuple[int, int, int, int]] = []
    boxes = []
    for _ in range(count):
        small, alpha, box = patch(faces[rng.integers(len(faces))], width, rng)
        ph, pw = small.shape[:2]
        if pw > FRAME[0] or ph > FRAME[1]:
            continue
        for _try in range(200):
            px, py = int(rng.integers(0, FRAME[0] - pw + 1)), int(rng.integers(0, FRAME[1] - ph + 1))
            if all(px + pw <= tx or tx + tw <= px or py + ph <= ty or ty + th <= py for tx, ty, tw, th in taken):
                break
        else:
            continue
        taken.append((px, py, pw, ph))
        area = frame[py : py + ph, px : px + pw]
        frame[py : py + ph, px : px + pw] = alpha * small + (1 - alpha) * area
        boxes.append(box + np.array([px, py, 0, 0]))
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), boxes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def today(name: str) -> int:
    """The detection size engage uses for a 640x480 video today."""
    from engage.faces.detect import create_detector
    from engage.inference.predictor import half_size

    if name == "yunet":
        return half_size(np.zeros((FRAME[1], FRAME[0], 3), np.uint8))
    return min(max(FRAME), create_detector(name).max_side)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="detection sizes S (longest side)")
    parser.add_argument("--widths", type=int, nargs="+", default=WIDTHS, help="face widths W in the 640x480 frame")
    parser.add_argument("--faces", type=int, default=250, help="faces per width")
    parser.add_argument("--per-frame", type=int, default=4, help="faces per frame")
    parser.add_argument("--detectors", nargs="+", default=DETECTORS, choices=DETECTORS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    args = parser.parse_args()

    if not (args.data / "engagement" / "wacv" / "labels.csv").exists():
        print(f"needs real faces: {args.data / 'engagement' / 'wacv'} is absent (see ../shared/data/README.md)")
        return 2
    cv2.setNumThreads(1)
    from engage.faces.detect import create_detector

    start = time.perf_counter()
    faces, seen = load_faces(args.data, max(args.widths))
    subjects = len({face.subject for face in faces})
    print(
        f"faces: {len(faces)} of {seen} WACV colour crops ({subjects} subjects), in {time.perf_counter() - start:.0f} s"
    )
    if not faces:
        print("no usable face crops")
        return 1

    rng = np.random.default_rng(args.seed)
    photos = backgrounds()
    settings = [(name, size) for name in args.detectors for size in sorted(args.sizes, reverse=True)]
    detectors = {setting: create_detector(setting[0], detect_size=setting[1]) for setting in settings}
    warm = background(photos, rng)
    for detector in detectors.values():
        detector.detect(warm)

    found = {(setting, w): 0 for setting in settings for w in args.widths}
    total = dict.fromkeys(args.widths, 0)
    false = dict.fromkeys(settings, 0)
    ious: dict[tuple, list[float]] = {setting: [] for setting in settings}
    times: dict[tuple, list[float]] = {setting: [] for setting in settings}
    frames = 0
    start = time.perf_counter()
    for width in args.widths:
        while total[width] < args.faces:
            frame, truth = make_frame(faces, photos, width, min(args.per_frame, args.faces - total[width]), rng)
            if not truth:
                continue
            frames += 1
            total[width] += len(truth)
            for setting in settings:
                t0 = time.perf_counter()
                boxes = detectors[setting].detect(frame)
                times[setting].append(time.perf_counter() - t0)
                detected = [np.array(box.as_list(), np.float64) for box in boxes]
                matched = set()
                for face in truth:
                    scores = [iou(face, box) for box in detected]
                    best = int(np.argmax(scores)) if scores else -1
                    if best >= 0 and scores[best] >= IOU:
                        found[setting, width] += 1
                        ious[setting].append(scores[best])
                    matched.update(i for i, score in enumerate(scores) if score >= IOU)
                false[setting] += len(detected) - len(matched)
    print(
        f"{frames} frames, {sum(total.values())} faces ({', '.join(f'{w} px: {n}' for w, n in total.items())}), "
        f"seed {args.seed}, in {time.perf_counter() - start:.0f} s\n"
    )

    def recall(setting: tuple, width: int) -> float:
        return found[setting, width] / total[width]

    now = {name: today(name) for name in args.detectors}
    header = ["detector", "S", *(f"{w} px" for w in args.widths), "false/frame", "ms/frame"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for setting in settings:
        name, size = setting
        label = f"{size} (today)" if now[name] == size else str(size)
        cells = [name, label, *(f"{recall(setting, w):.1%}" for w in args.widths)]
        cells += [f"{false[setting] / frames:.2f}", f"{1000 * float(np.median(times[setting])):.1f}"]
        print("| " + " | ".join(cells) + " |")
    print()
    for name in args.detectors:
        rows = [setting for setting in settings if setting[0] == name]
        ms = {setting: 1000 * float(np.median(times[setting])) for setting in rows}
        line = f"{name}: median IoU of found faces {np.median([v for s in rows for v in ious[s]]):.2f}; "
        if TARGET_WIDTH in args.widths:
            good = [s for s in rows if recall(s, TARGET_WIDTH) >= TARGET_RECALL]
            n = total[TARGET_WIDTH]
            if good:
                best = min(good, key=lambda s: s[1])
                line += (
                    f"smallest size that finds >= {TARGET_RECALL:.0%} of {TARGET_WIDTH}-px faces: {best[1]} "
                    f"({found[best, TARGET_WIDTH]}/{n} = {recall(best, TARGET_WIDTH):.1%}, {ms[best]:.1f} ms/frame; "
                    f"the face is {TARGET_WIDTH * best[1] / max(FRAME):.0f} px there)"
                )
            else:
                line += f"no size finds >= {TARGET_RECALL:.0%} of {TARGET_WIDTH}-px faces"
            current = (name, now[name])
            if current in ms:
                line += (
                    f"; today {now[name]}: {found[current, TARGET_WIDTH]}/{n} = {recall(current, TARGET_WIDTH):.1%}, "
                    f"{ms[current]:.1f} ms/frame"
                )
            else:
                line += f"; today {now[name]} (not measured: add it to --sizes)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
