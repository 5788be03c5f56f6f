"""Following a face box from one video frame to the next without the detector: median flow (Kalal et al., ICPR
2010). A grid of points inside the box is tracked by pyramidal Lucas-Kanade optical flow from the last frame to
this one and back; the points that come back to where they started (forward-backward error) move the box by their
median shift and scale it by the median change of their pairwise distances. When too few points survive, or the
box would leave the picture, or what the box holds no longer looks like what it held (normalised correlation), the
face is lost (None) and the caller detects again.

It costs a fraction of a millisecond per face on a 640x480 frame (only a region about the box is looked at), where
detection costs 5-80 ms per frame. It knows nothing of faces: it follows the pixels in the box, so a face that turns
away is followed until the points disagree; the detector, run every few frames, sets the box right again."""

from __future__ import annotations

import cv2
import numpy as np

from engage.faces.detect import FaceBox, clip_box

GRID = 6  # points per side of the grid inside the box
INNER = 0.6  # the grid spans this share of the box's side, about its centre (the face, not the background)
MARGIN = 0.5  # the region looked at: the box grown by this share of its side on every side
MAX_FB_ERROR = 1.0  # px: a point that comes back further than this from where it started is dropped
MIN_POINTS = 0.4  # share of the grid's points that must survive, else the face is lost
MAX_SCALE_STEP = 0.15  # a box may grow or shrink by at most this share between two frames, else it is lost
MIN_SIMILARITY = 0.5  # the followed box's pixels must correlate this well with the box's in the last frame
WORK_SIDE = 48.0  # px: the region is shrunk so that the box's side is at most this (the cost stays small)
WINDOW = (9, 9)  # Lucas-Kanade's window, px (of the shrunk region)
LEVELS = 2  # pyramid levels above the region itself
CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)


def follow_box(previous: np.ndarray, current: np.ndarray, box: FaceBox) -> FaceBox | None:
    """Where `box` (found in the gray uint8 frame `previous`) is in the gray frame `current`: the box (and its
    landmarks, if any) moved and scaled as its inner points moved, with the same confidence; None when the face is
    lost."""
    height, width = current.shape[:2]
    side = max(box.w, box.h)
    # the region about the box, the same in both frames: flow is computed on it alone
    x0, y0 = max(0, int(box.x - MARGIN * side)), max(0, int(box.y - MARGIN * side))
    x1, y1 = min(width, int(box.x + box.w + MARGIN * side)), min(height, int(box.y + box.h + MARGIN * side))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    before, after = previous[y0:y1, x0:x1], current[y0:y1, x0:x1]
    shrink = min(1.0, WORK_SIDE / side)
    if shrink < 1.0:
        size = (max(8, round((x1 - x0) * shrink)), max(8, round((y1 - y0) * shrink)))
        before = cv2.resize(before, size, interpolation=cv2.INTER_AREA)
        after = cv2.resize(after, size, interpolation=cv2.INTER_AREA)
    steps = (np.arange(GRID) + 0.5) / GRID - 0.5  # -0.42 .. 0.42
    cx, cy = (box.x + box.w / 2.0 - x0) * shrink, (box.y + box.h / 2.0 - y0) * shrink
    gx, gy = np.meshgrid(cx + steps * INNER * box.w * shrink, cy + steps * INNER * box.h * shrink)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)
    moved, ok, _ = cv2.calcOpticalFlowPyrLK(
        before, after, points, None, winSize=WINDOW, maxLevel=LEVELS, criteria=CRITERIA
    )
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(
        after, before, moved, None, winSize=WINDOW, maxLevel=LEVELS, criteria=CRITERIA
    )
    error = np.linalg.norm((back - points).reshape(-1, 2), axis=1) / shrink  # in frame pixels
    good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (error <= MAX_FB_ERROR)
    if good.sum() < max(3, MIN_POINTS * len(points)):
        return None
    start, end = points.reshape(-1, 2)[good], moved.reshape(-1, 2)[good]
    dx, dy = np.median(end - start, axis=0) / shrink
    scale = _scale(start, end)
    if abs(scale - 1.0) > MAX_SCALE_STEP:
        return None
    w, h = box.w * scale, box.h * scale
    x = box.x + box.w / 2.0 + dx - w / 2.0
    y = box.y + box.h / 2.0 + dy - h / 2.0
    if x < -0.25 * w or y < -0.25 * h or x + 0.75 * w > width or y + 0.75 * h > height:
        return None  # mostly out of the picture: gone, not followed
    landmarks = None
    if box.landmarks:  # the detector's points, moved and scaled with the box (an aligned model cuts on its eyes)
        cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
        landmarks = tuple(
            (float(cx + dx + (px - cx) * scale), float(cy + dy + (py - cy) * scale)) for px, py in box.landmarks
        )
    followed = clip_box(x, y, w, h, width, height, box.confidence, landmarks)
    if followed is None or similarity(patch(previous, box), patch(current, followed)) < MIN_SIMILARITY:
        return None  # the points moved together, but what is in the box now is something else (the face left)
    return followed


def patch(gray: np.ndarray, box: FaceBox) -> np.ndarray:
    """The box's pixels shrunk to 16x16, centred and scaled to unit length (a vector to correlate)."""
    small = cv2.resize(gray[box.y : box.y + box.h, box.x : box.x + box.w], (16, 16), interpolation=cv2.INTER_AREA)
    values = small.astype(np.float32).ravel()
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 1e-6 else values


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The normalised correlation of two patches (1: the same picture; 1 also when one is flat)."""
    if not a.any() or not b.any():
        return 1.0
    return float(np.dot(a, b))


def _scale(start: np.ndarray, end: np.ndarray) -> float:
    """The median ratio of the points' pairwise distances after and before (1: no change of size)."""
    first, second = np.triu_indices(len(start), k=1)
    before = np.linalg.norm(start[first] - start[second], axis=1)
    after = np.linalg.norm(end[first] - end[second], axis=1)
    usable = before > 1.0
    return float(np.median(after[usable] / before[usable])) if usable.any() else 1.0
