"""What `engage predict` is pointed at: files, folders (recursive), globs, a camera or the bundled sample,
expanded into a list of images and videos with unique, safe names for the files written about them."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import numpy as np

from engage.errors import EngageError, UsageError
from engage.io.files import walk_files
from engage.io.images import is_image_file
from engage.io.video import is_video_file

KINDS = ("image", "video", "camera", "unknown")  # 'unknown': a named file without a media extension


@dataclass
class InputItem:
    """One image, video or camera to score."""

    kind: str
    name: str  # as the user sees it: the path as given or found, 'webcam:N', or the sample photo's name
    path: str | None = None
    camera: int | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)  # in-memory images (the bundled sample)
    stem: str = ""  # unique file-name stem for annotated images, videos, timelines and crops


@dataclass
class Inputs:
    items: list[InputItem]
    ignored: list[str]  # files in folders that are neither images nor videos


def safe_stem(text: str) -> str:
    """A file-name stem made of letters, digits, "-", "_" and "." from a path or name (folders joined by "__")."""
    stem = os.path.splitext(text)[0].replace(os.sep, "__").replace("/", "__").replace(":", "-")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("_.") or "input"


def _media_kind(path: str) -> str | None:
    return "image" if is_image_file(path) else "video" if is_video_file(path) else None


def expand_inputs(inputs: list[str], webcam: int | None = None, sample: bool = False) -> Inputs:
    """Files, folders (searched recursively for images and videos), glob patterns, a camera and/or the
    bundled sample photos, in the order given, without duplicates. A path that does not exist, a glob that
    matches nothing or a folder without images or videos is an error."""
    items: list[InputItem] = []
    ignored: list[str] = []
    seen: set[str] = set()

    def add(kind: str, path: str, stem_source: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            items.append(InputItem(kind, path, path=path, stem=safe_stem(stem_source)))

    if sample:
        from engage.io.sample_photos import sample_images

        for name, rgb in sample_images().items():
            items.append(InputItem("image", name, pixels=rgb, stem=safe_stem(name)))
    for given in inputs:
        if os.path.isdir(given):
            found = 0
            for path in walk_files(given):
                kind = _media_kind(path)
                if kind is None:
                    ignored.append(path)
                    continue
                relative = os.path.relpath(path, given)
                add(kind, path, os.path.join(os.path.basename(os.path.abspath(given)), relative))
                found += 1
            if not found:
                raise EngageError(
                    f"{given}: holds no images or videos (looked for .jpg, .png, ..., .mp4, .avi, .mkv, "
                    ".webm, ...); point to a folder of images or videos"
                )
        elif os.path.isfile(given):
            add(_media_kind(given) or "unknown", given, os.path.basename(given))
        elif glob.has_magic(given):
            matches = sorted(p for p in glob.glob(given, recursive=True) if os.path.isfile(p))
            media = [p for p in matches if _media_kind(p)]
            ignored += [p for p in matches if not _media_kind(p)]
            if not media:
                raise EngageError(f"{given}: no image or video matches this pattern")
            for path in media:
                kind = _media_kind(path)
                assert kind is not None  # media holds only the matches with a media kind
                add(kind, path, os.path.basename(path))
        else:
            raise EngageError(f"{given}: no such file or folder")
    if webcam is not None:
        if webcam < 0:
            raise UsageError(f"--webcam takes a camera number (0 is the first camera), got {webcam}")
        items.append(InputItem("camera", f"webcam:{webcam}", camera=webcam, stem=f"webcam{webcam}"))
    if not items:
        raise UsageError("nothing to score: give images, folders, videos or globs, --webcam N, or --sample")
    _make_stems_unique(items)
    return Inputs(items, ignored)


def _make_stems_unique(items: list[InputItem]) -> None:
    used: set[str] = set()
    for item in items:
        stem, count = item.stem, 1
        while stem in used:
            count += 1
            stem = f"{item.stem}-{count}"
        used.add(stem)
        item.stem = stem
