"""Pictures of results: frames with boxes, ids and scores drawn, and a video's p_engaged timeline per face."""

from __future__ import annotations

import os

import cv2
import numpy as np

from engage.errors import EngageError
from engage.faces.quality import UNCERTAIN
from engage.inference.records import TIMELINE_CUES, FaceResult, VideoSummary
from engage.io.files import atomic_write

ENGAGED_RGB = (40, 180, 60)
OTHER_RGB = (225, 60, 40)
UNKNOWN_RGB = (240, 200, 30)
UNCERTAIN_RGB = (140, 140, 140)  # not judged (engage.faces.quality)


def face_colour(face: FaceResult, positive_label: str | None) -> tuple[int, int, int]:
    if face.label == UNCERTAIN:
        return UNCERTAIN_RGB
    if positive_label is None:
        return UNKNOWN_RGB
    return ENGAGED_RGB if face.label == positive_label else OTHER_RGB


def face_caption(face: FaceResult) -> str:
    """'#2 engaged 0.83' (plus the top expression when known)."""
    score = f" {face.p_engaged:.2f}" if face.p_engaged is not None else ""
    expression = f" {face.expression}" if face.expression else ""
    return f"#{face.face_id} {face.label}{score}{expression}"


def draw_faces(rgb: np.ndarray, faces: list[FaceResult], positive_label: str | None) -> np.ndarray:
    """A copy of the image with every face's box, id, label and score drawn on it."""
    canvas = np.ascontiguousarray(rgb.copy())
    height, width = canvas.shape[:2]
    scale = max(0.4, min(width, height) / 900.0)
    thickness = max(1, round(2 * scale))
    for face in faces:
        colour = face_colour(face, positive_label)
        box = face.box
        cv2.rectangle(canvas, (box.x, box.y), (box.x + box.w - 1, box.y + box.h - 1), colour, thickness)
        caption = face_caption(face)
        (text_w, text_h), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = (
            box.y - text_h - baseline - 2
            if box.y - text_h - baseline - 2 >= 0
            else min(box.y + box.h, height - text_h - baseline)
        )
        left = max(0, min(box.x, width - text_w - 3))  # keep the caption inside the picture
        cv2.rectangle(canvas, (left, top), (left + text_w + 2, top + text_h + baseline + 2), colour, -1)
        cv2.putText(
            canvas,
            caption,
            (left + 1, top + text_h + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def encode_image(rgb: np.ndarray, extension: str = ".png", name: str = "image") -> np.ndarray:
    """An RGB image encoded as a file's bytes (uint8 array) in the format of `extension` (PNG when OpenCV cannot write it)."""
    extension = extension.lower()
    ok, encoded = cv2.imencode(
        extension if extension in (".png", ".jpg", ".jpeg", ".bmp", ".webp") else ".png",
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
    )
    if not ok:
        raise EngageError(f"{name}: could not encode the annotated image")
    return encoded


def save_image(path: str, rgb: np.ndarray) -> None:
    """Write an RGB image atomically; the format follows the extension (PNG when OpenCV cannot write it)."""
    atomic_write(path, encode_image(rgb, os.path.splitext(path)[1], path).tofile)


def plot_timeline(summary: VideoSummary, path: str, title: str) -> None:
    """p_engaged over time for every face (smoothed line, raw values as dots), with each face's mean and share of
    time engaged in the legend; below it, when the faces' attention cues were measured, head pose and gaze
    (degrees) and eye and mouth opening, per face. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timelines = {face_id: np.array(points, dtype=np.float64) for face_id, points in summary.timeline.items()}
    with_cues = any(points.shape[1] > 3 and np.isfinite(points[:, 3:]).any() for points in timelines.values())
    rows = 3 if with_cues else 1
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(10, 4 + 2.6 * (rows - 1)),
        dpi=100,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1.6, 1, 1][:rows]},
    )
    score, pose, openness = axes[0, 0], axes[min(1, rows - 1), 0], axes[min(2, rows - 1), 0]
    colours = plt.get_cmap("tab10")
    angle_styles = {"yaw": "-", "pitch": "--", "roll": ":", "gaze_yaw": "-.", "gaze_pitch": (0, (1, 3))}
    for order, face_id in enumerate(sorted(timelines)):
        points = timelines[face_id]
        stats = summary.faces[face_id]
        colour = colours(order % 10)
        label = f"face {face_id}: mean {stats.mean_p_engaged:.2f}"
        if summary.positive_label is not None:
            label += f", {summary.positive_label} {100 * stats.share(summary.positive_label):.0f}% of the time"
        score.plot(points[:, 0], points[:, 1], "-", color=colour, linewidth=1.5, label=label)
        score.plot(points[:, 0], points[:, 2], ".", color=colour, markersize=2, alpha=0.35)
        if with_cues:
            cues = dict(zip(TIMELINE_CUES, points[:, 3:].T))
            for name, style in angle_styles.items():
                pose.plot(
                    points[:, 0],
                    cues[name],
                    linestyle=style,
                    color=colour,
                    linewidth=1,
                    label=name if order == 0 else None,
                )
            openness.plot(
                points[:, 0],
                cues["eyes_open"],
                "-",
                color=colour,
                linewidth=1,
                label="eyes_open" if order == 0 else None,
            )
            openness.plot(
                points[:, 0],
                cues["mouth_open"],
                "--",
                color=colour,
                linewidth=1,
                label="mouth_open" if order == 0 else None,
            )
    score.axhline(summary.threshold, color="gray", linestyle="--", linewidth=0.8)
    score.set_ylim(-0.02, 1.02)
    score.set_xlim(left=0)
    score.set_ylabel("p_engaged (line: smoothed, dots: raw)")
    score.set_title(title if summary.timeline else f"{title}: no face found")
    if summary.timeline:
        score.legend(loc="lower left", fontsize=8)
    if with_cues:
        pose.axhline(0, color="gray", linewidth=0.6)
        pose.set_ylabel("head pose, gaze (deg)")
        pose.legend(loc="upper right", fontsize=7, ncol=5)
        openness.set_ylabel("opening (ratio)")
        openness.legend(loc="upper right", fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    try:
        atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    finally:
        plt.close(figure)
