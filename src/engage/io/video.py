"""Video in and out: frames from a file or a camera (every Nth, streamed, constant memory), annotated mp4s."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engage.errors import EngageError, UsageError
from engage.io.files import StagedFile, unreadable_reason

# Whatever OpenCV's FFmpeg backend reads; other extensions are still tried when named explicitly.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)
DEFAULT_FPS = 30.0  # when a file does not say its frame rate


def is_video_file(path: str | os.PathLike) -> bool:
    """True if the file name has a video extension (content is checked on opening)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _quiet_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings ("can't open camera by index", "moov atom not found") to
    stderr; engage reports the problem itself, in one line. FFmpeg's level is read when OpenCV first uses it."""
    if not os.environ.get("ENGAGE_DEBUG"):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        cv2.utils.logging.setLogLevel(
            cv2.utils.logging.LOG_LEVEL_ERROR if os.environ.get("ENGAGE_DEBUG") else cv2.utils.logging.LOG_LEVEL_SILENT
        )
    except AttributeError:  # very old OpenCV builds
        pass


class VideoEndError(EngageError):
    """A file asked to start at a frame past its end (its frame count said it had more)."""


@dataclass
class Frame:
    index: int  # position in the video (0-based), counting skipped frames
    time_s: float
    rgb: np.ndarray


class VideoSource:
    """A video file or a camera, opened and checked: one clear error if it cannot be read."""

    def __init__(self, source: str | int) -> None:
        _quiet_opencv()
        self.is_camera = isinstance(source, int)
        self.name = f"webcam:{source}" if self.is_camera else str(source)
        if not self.is_camera and not os.path.isfile(source):
            raise EngageError(f"{source}: no such video file")
        reason = None if isinstance(source, int) else unreadable_reason(source)
        if reason:
            raise EngageError(f"{source}: {reason}")
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            self._capture.release()
            if self.is_camera:
                raise EngageError(
                    f"camera {source} cannot be opened: no such camera, or it is in use; "
                    "try another --webcam number (0 is the first camera)"
                )
            raise EngageError(
                f"{source}: cannot be opened as a video (unknown format or damaged file); "
                "convert it to mp4 or check that it plays"
            )
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            what = f"camera {source}" if self.is_camera else source
            raise EngageError(
                f"{what}: no frame could be read (empty, damaged or unsupported video); check that it plays"
            )
        self._first: np.ndarray | None = first
        self._start_ms = self._stamp_ms()
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.5 < fps < 1000 else DEFAULT_FPS
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.is_camera else None
        self.height, self.width = first.shape[:2]

    def frames(
        self, every: int = 1, max_frames: int | None = None, start: int = 0, stop: int | None = None
    ) -> Iterator[Frame]:
        """Every `every`-th frame as RGB (skipped frames are grabbed, not converted), one at a time; start: from this
        frame of a file on (frames keep their numbers in the file; every `every`-th counted from frame 0); stop:
        before this frame.

        File frames are timed by their own time stamps, so a variable frame rate (phones, screen recorders)
        keeps real time; where a container has none, by position / fps. Camera frames by the wall clock since
        the first frame. Rotation metadata is applied by OpenCV (frames come upright).
        """
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        started = time.perf_counter()
        index, yielded = (self._seek(start) if start else 0), 0
        last_index, last_s = 0, 0.0
        while (max_frames is None or yielded < max_frames) and (stop is None or index < stop):
            if index % every == 0:
                if self._first is not None:
                    bgr, self._first = self._first, None
                else:
                    ok, bgr = self._capture.read()
                    if not ok:
                        break
                if self.is_camera:
                    time_s = time.perf_counter() - started
                else:
                    time_s = self._file_time(index, last_index, last_s)
                    last_index, last_s = index, time_s
                yield Frame(index, time_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                yielded += 1
            elif not self._capture.grab():
                break
            index += 1

    def _seek(self, start: int) -> int:
        """Go to frame `start` of a file (the next read gives it); returns it."""
        if self.is_camera:
            raise UsageError("a camera cannot start at a later frame")
        if start < 0:
            raise UsageError(f"{self.name}: no frame {start}")
        self._first = None
        moved = self._capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        position = round(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
        if moved and position < start:  # OpenCV stops at the last frame
            raise VideoEndError(f"{self.name}: ends before frame {start} (at frame {position})")
        if not moved or position != start:
            raise EngageError(f"{self.name}: cannot seek to frame {start} in this file")
        return start

    def _stamp_ms(self) -> float | None:
        """The time stamp of the frame just read, in ms, or None where the container gives none."""
        if self.is_camera:
            return None
        ms = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        return ms if np.isfinite(ms) and ms >= 0 else None

    def _file_time(self, index: int, last_index: int, last_s: float) -> float:
        """Seconds from the first frame: the frame's own stamp where it moves forward, else counted on from the
        last frame at the nominal rate (a file without stamps is timed by position / fps, as before)."""
        if index == 0:
            return 0.0
        stamp = self._stamp_ms()
        if stamp is not None and self._start_ms is not None and (stamp - self._start_ms) / 1000.0 > last_s:
            return (stamp - self._start_ms) / 1000.0
        return last_s + (index - last_index) / self.fps

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Mp4Writer(StagedFile):
    """Writes RGB frames to an mp4 (codec mp4v) through a temporary file renamed on commit: never half a video."""

    def __init__(self, path: str, fps: float, width: int, height: int) -> None:
        _quiet_opencv()
        super().__init__(path, ".mp4")
        self.size = (width, height)
        self._writer = cv2.VideoWriter(self.tmp_path, cv2.VideoWriter.fourcc(*"mp4v"), fps, self.size)
        if not self._writer.isOpened():
            self._remove()
            raise EngageError(f"{path}: OpenCV cannot write mp4 video here (codec mp4v unavailable?)")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _close(self) -> None:
        self._writer.release()


def write_video(path: str, frames: list[np.ndarray] | Iterator[np.ndarray], fps: float = DEFAULT_FPS) -> int:
    """Write RGB frames (all the same size) as an mp4; returns the number written. For tests and benchmarks."""
    writer = None
    try:
        for rgb in frames:
            if writer is None:
                writer = Mp4Writer(path, fps, rgb.shape[1], rgb.shape[0])
            writer.write(rgb)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is None:
        raise EngageError(f"{path}: no frames to write")
    writer.commit()
    return writer.frames
