"""The bundled sample: licence-clean real photos from scikit-image (public domain), read from the installed package."""

from __future__ import annotations

import numpy as np


def _group_picture(astronaut: np.ndarray) -> np.ndarray:
    """Three copies of the astronaut at different sizes on one canvas: a 'group' with a known biggest face."""
    import cv2

    canvas = np.full((512, 1024, 3), 235, np.uint8)
    placements = [(1.0, 0, 0), (0.6, 540, 40), (0.4, 800, 260)]
    for scale, x, y in placements:
        tile = cv2.resize(astronaut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return canvas


def sample_images() -> dict[str, np.ndarray]:
    """name -> RGB image: a portrait, a 'group' of three faces, a gray portrait, and a picture with no face."""
    from skimage import data

    astronaut = data.astronaut()
    return {
        "astronaut.png": astronaut,
        "group.png": _group_picture(astronaut),
        "cameraman.png": np.repeat(data.camera()[:, :, None], 3, axis=2),
        "coffee.png": data.coffee(),  # no face: reported as such, not an error
    }
