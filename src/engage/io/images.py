"""Read any image a user has (JPEG, PNG, BMP, WebP, TIFF; gray, RGB, RGBA, 16-bit) as RGB uint8."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engage.errors import ImageReadError
from engage.io.files import NO_PERMISSION

# the first bytes of the formats Pillow reads (PNG, JPEG, GIF, BMP, TIFF both byte orders, PGM/PPM)
PILLOW_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"P5", b"P6")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"})
# what as_rgb_image takes: a path, a numpy array (RGB or gray) or a PIL image
ImageLike: TypeAlias = str | os.PathLike | np.ndarray | Image.Image


def is_image_file(path: str | os.PathLike) -> bool:
    """True if the file name has an image extension (content is checked on reading)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit or float pixel values to uint8."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating) and values.size and values.max() <= 1.0 and values.min() >= 0.0:
        values = values * 255.0
    elif values.size and values.max() > 255:
        values = values * (255.0 / values.max())
    return np.clip(values, 0, 255).astype(np.uint8)


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Any HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array to contiguous RGB uint8.

    Alpha is composited over white, so transparent backgrounds do not turn black.
    """
    array = to_uint8(np.asarray(array))
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.ndim == 3 and array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.ndim == 3 and array.shape[2] == 2:  # gray + alpha
        gray, alpha = array[:, :, :1].astype(np.float32), array[:, :, 1:].astype(np.float32) / 255.0
        gray = gray * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.repeat(gray.astype(np.uint8), 3, axis=2))
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        rgb, alpha = array[:, :, :3].astype(np.float32), array[:, :, 3:].astype(np.float32) / 255.0
        return np.ascontiguousarray((rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8))
    raise ValueError(f"expected an image array of shape HxW or HxWxC (C in 1..4), got {array.shape}")


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image)
        if image.mode.startswith("I;16"):
            array = array.astype(np.uint16)
        return to_uint8(array)
    if image.mode in ("RGB", "L", "RGBA", "LA"):
        return np.asarray(image)
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an RGB uint8 array, honouring EXIF orientation.

    Raises ImageReadError (naming the file) for missing, empty, truncated or non-image files.
    """
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise ImageReadError(path, f"cannot open ({error.strerror or error})") from None
    if os.path.isdir(path):
        raise ImageReadError(path, "is a folder, not an image")
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes); re-copy or remove it")
    return _decode(path, path, lambda: np.fromfile(path, dtype=np.uint8))


def read_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """An image held in memory (an upload, a camera frame) read exactly as read_image reads a file; errors name `name`."""
    if not data:
        raise ImageReadError(name, "empty file (0 bytes); re-copy or remove it")
    return _decode(io.BytesIO(data), name, lambda: np.frombuffer(data, dtype=np.uint8))


def _decode(source: str | io.BytesIO, name: str, raw_bytes: Callable[[], np.ndarray]) -> np.ndarray:
    """Pillow first (EXIF orientation, bomb guard), then OpenCV for the formats only it knows."""
    try:
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
            array = _pillow_to_array(image)
        return to_rgb(array)
    except UnidentifiedImageError:
        pass  # Pillow does not know the format: try OpenCV below
    except Image.DecompressionBombError as error:  # over 2x Pillow's pixel limit: a decompression bomb, or huge
        raise ImageReadError(name, f"too many pixels to read safely ({error}); resize it first") from None
    except PermissionError:  # opening the file, not its content: say so rather than "corrupt"
        raise ImageReadError(name, NO_PERMISSION) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(name, f"corrupt or truncated image ({error}); re-export or remove it") from None
    data = raw_bytes()
    if bytes(data[:12]).startswith(PILLOW_SIGNATURES) or bytes(data[8:12]) == b"WEBP":
        # a format Pillow reads, whose header Pillow refused: corrupt. OpenCV is not asked: its decoders trust such
        # headers (a 48-byte PNG with a bad bit depth makes it allocate 3 GB)
        raise ImageReadError(name, "corrupt image (its header cannot be read); re-export or remove it")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageReadError(name, "not an image that Pillow or OpenCV can read; remove it or convert it to PNG/JPEG")
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    elif decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    return to_rgb(decoded)


def as_rgb_image(image: ImageLike) -> np.ndarray:
    """A path, numpy array (RGB or gray) or PIL image to RGB uint8."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(_pillow_to_array(ImageOps.exif_transpose(image)))
    return to_rgb(np.asarray(image))
