"""Test-time views of a face batch: shifted and zoomed copies whose logits a network averages.

A view is (dx, dy, zoom): move the face dx px right and dy px down, then scale it about the centre
by zoom (>1 zooms in); borders are filled with the edge pixels (training's augmentation fills zeros).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from engage.errors import EngageError

View = tuple[int, int, float]

# the views `fer` ships with (chosen on FER2013 val): centre, 2 px each way, zoom 1.05 / 1.1 / 0.9
SHIFT_ZOOM: tuple[View, ...] = (
    (0, 0, 1.0),
    (2, 0, 1.0),
    (-2, 0, 1.0),
    (0, 2, 1.0),
    (0, -2, 1.0),
    (0, 0, 1.05),
    (0, 0, 1.1),
    (0, 0, 0.9),
)
PRESETS: dict[str, tuple[View, ...]] = {"centre": ((0, 0, 1.0),), "shift-zoom": SHIFT_ZOOM}
MAX_SHIFT = 8
ZOOM_RANGE = (0.5, 2.0)


def checked_views(views: Iterable[Any] | None, where: str = "test_time_views") -> tuple[View, ...]:
    """Views from a model config ([[dx, dy, zoom], ...]), refused with one clear line when malformed."""
    checked = []
    for view in views or ():
        try:
            dx, dy, zoom = view
            ok = (
                float(dx).is_integer()
                and float(dy).is_integer()
                and abs(dx) <= MAX_SHIFT
                and abs(dy) <= MAX_SHIFT
                and ZOOM_RANGE[0] <= float(zoom) <= ZOOM_RANGE[1]
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise EngageError(
                f"{where}: each view must be [dx, dy, zoom] with whole shifts of at most {MAX_SHIFT} px "
                f"and zoom in [{ZOOM_RANGE[0]}, {ZOOM_RANGE[1]}], got {view!r}"
            )
        checked.append((int(dx), int(dy), float(zoom)))
    return tuple(checked)


def view(batch: torch.Tensor, dx: int, dy: int, zoom: float) -> torch.Tensor:
    """One view of an (N, C, H, W) batch, the same size as the batch."""
    height, width = int(batch.shape[-2]), int(batch.shape[-1])  # plain ints, also when traced for ONNX
    if dx or dy:
        pad = max(abs(dx), abs(dy))
        padded = F.pad(batch, (pad, pad, pad, pad), mode="replicate")
        batch = padded[:, :, pad - dy : pad - dy + height, pad - dx : pad - dx + width]
    if zoom != 1.0:
        size = (max(1, round(height * zoom)), max(1, round(width * zoom)))
        scaled = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        if zoom > 1.0:
            top, left = (size[0] - height) // 2, (size[1] - width) // 2
            batch = scaled[:, :, top : top + height, left : left + width]
        else:
            top, left = (height - size[0]) // 2, (width - size[1]) // 2
            batch = F.pad(scaled, (left, width - size[1] - left, top, height - size[0] - top), mode="replicate")
    return batch


def each_view(batch: torch.Tensor, views: tuple[View, ...], flip: bool) -> Iterator[torch.Tensor]:
    """Every view of the batch in turn (the centre alone when views is empty), each followed by its mirror
    image when flip is set. One view at a time keeps the working set small, which is faster on a CPU."""
    for dx, dy, zoom in views or ((0, 0, 1.0),):
        one = view(batch, dx, dy, zoom)
        yield one
        if flip:
            yield one.flip(-1)
