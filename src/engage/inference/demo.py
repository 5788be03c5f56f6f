"""Demo video made from the bundled sample photos: real faces moving over a real background, for tests,
benchmarks and trying `engage predict` on video without recording anyone."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

FRAME_SIZE = (640, 480)  # width, height: a typical webcam / lecture-capture frame


def _tile(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, scale: float) -> np.ndarray:
    return cv2.resize(image[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def moving_faces_frames(
    frames: int = 30, size: tuple[int, int] = FRAME_SIZE, still_face: bool = True
) -> Iterator[np.ndarray]:
    """RGB frames: the astronaut's head and shoulders sliding from left to right (about 10 px per frame at
    30 frames) and, if still_face, the cameraman standing still on the right, over the coffee photo."""
    from skimage import data

    width, height = size
    background = cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    background = (background.astype(np.float32) * 0.6 + 40).astype(np.uint8)  # darker: faces stand out
    scale = height / 480
    moving = _tile(data.astronaut(), 130, 20, 330, 240, 0.9 * scale)
    still = _tile(np.repeat(data.camera()[:, :, None], 3, axis=2), 150, 60, 310, 240, 0.9 * scale)
    start_x, end_x = int(0.03 * width), int(0.47 * width)
    top = int(0.15 * height)
    for index in range(frames):
        frame = background.copy()
        if still_face:
            x, y = int(0.73 * width), int(0.35 * height)
            frame[y : y + still.shape[0], x : x + still.shape[1]] = still
        x = start_x + round((end_x - start_x) * index / max(frames - 1, 1))
        frame[top : top + moving.shape[0], x : x + moving.shape[1]] = moving
        yield frame


def write_demo_video(
    path: str, frames: int = 30, fps: float = 30.0, size: tuple[int, int] = FRAME_SIZE, still_face: bool = True
) -> int:
    """Write the demo video as an mp4 (mp4v); returns the number of frames."""
    from engage.io.video import write_video

    return write_video(path, moving_faces_frames(frames, size, still_face), fps)
