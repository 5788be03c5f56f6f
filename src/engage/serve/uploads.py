"""What the server accepts: size caps enforced while the body arrives, the kind of a file sniffed from its bytes
(never from its name or Content-Type), image pixel limits checked before decoding, and private temporary files
that are never named after the client's file name."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engage.errors import EngageError
from engage.io.images import PILLOW_SIGNATURES, read_image_bytes

MB = 1024 * 1024


@dataclass
class Limits:
    """The server's limits; every one is refused with a 4xx and a one-line reason."""

    image_bytes: int = 20 * MB  # one image upload or live frame
    video_bytes: int = 200 * MB  # one video upload
    other_bytes: int = 64 * 1024  # any other request body
    image_pixels: int = 40_000_000  # width x height, checked from the header before any decoding
    request_s: float = 60.0  # the longest one image request may take (queue included)
    video_s: float = 1800.0  # the longest video job (scored video time is about 1x real time with mtcnn on 2 cores)


class RefusedError(HTTPException):
    """A request the server refuses: HTTP status and a one-line reason (answered as JSON {"detail": reason}).
    An HTTPException, so that it passes through FastAPI's body parsing unchanged when raised while reading."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(status_code=status, detail=detail, headers=headers)


# first bytes -> (kind, extension); image signatures are the ones engage's reader trusts Pillow with
_VIDEO_SIGNATURES = (
    (4, b"ftyp", ".mp4"),  # mp4, mov, m4v, 3gp
    (0, b"\x1a\x45\xdf\xa3", ".mkv"),  # Matroska and WebM
    (0, b"FLV", ".flv"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", ".wmv"),  # ASF
    (0, b"\x00\x00\x01\xba", ".mpg"),  # MPEG program stream
    (0, b"OggS", ".ogv"),
)


def sniff(head: bytes) -> tuple[str, str] | None:
    """('image' | 'video', extension) from a file's first bytes, or None when it is neither."""
    if head.startswith(PILLOW_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image", ".img"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", ".avi"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video", ".ts"  # MPEG transport stream: a sync byte every 188 bytes
    for offset, signature, extension in _VIDEO_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return "video", extension
    return None


def describe(head: bytes) -> str:
    """A few words on what a refused file looks like, for the one-line reason (never its content)."""
    text = head[:64].lstrip().lower()
    if text.startswith((b"<", b"#!", b"mz", b"%pdf", b"pk\x03\x04")):
        return "a script, document, archive or program"
    return "neither an image nor a video"


_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_name(filename: str | None, default: str = "upload") -> str:
    """The client's file name as a harmless label (used in results and the CSV's source column, never as a path):
    plain characters only, no leading dot or spreadsheet formula sign. A name with a folder in it (a browser
    never sends one), '..' or control characters is refused."""
    filename = filename or ""
    if re.search(r"[\\/\x00-\x1f\x7f]", filename) or filename.strip() in (".", ".."):
        raise RefusedError(400, "the file name must be a plain name, without folders, '..' or control characters")
    name = _UNSAFE.sub("_", filename).strip(" ._-=+@")[:100]
    return name or default


def private_folder(prefix: str = "engage-serve-") -> str:
    """A new folder only this user can read (mkdtemp: mode 0700)."""
    return tempfile.mkdtemp(prefix=prefix)


def remove_folder(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded image as RGB uint8, decoded exactly as `engage predict` reads the same file, after checking
    that it is an image by its bytes and that its header promises no more pixels than the limit."""
    kind = sniff(data[:512])
    if kind is None:
        raise RefusedError(415, f"{name}: {describe(data)}; send a JPEG, PNG, BMP, GIF, TIFF or WebP image")
    if kind[0] == "video":
        raise RefusedError(415, f"{name}: this is a video; post it to /v1/videos")
    check_pixels(data, name, limits.image_pixels)
    try:
        return read_image_bytes(data, name)
    except EngageError as error:
        raise RefusedError(422, str(error)) from None


def check_pixels(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more pixels than max_pixels, before decoding it (a decompression
    bomb is a few kB that decode to gigabytes); headers Pillow cannot read are left to the decoder."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise RefusedError(
            413,
            f"{name}: declares too many pixels to decode safely (a decompression bomb?); "
            f"the limit is {max_pixels:,} pixels",
        ) from None
    except Exception:
        return
    if width * height > max_pixels:
        raise RefusedError(
            413,
            f"{name}: {width} x {height} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb, or too big); resize it first",
        )


async def save_upload(upload: UploadFile, folder: str, limit: int) -> tuple[str, tuple[str, str] | None]:
    """Copy an upload (starlette UploadFile) into `folder` under a fixed name, chunk by chunk; returns the path
    and what its first bytes say it is. The client's file name is never used for the path."""
    path = os.path.join(folder, "upload.bin")
    written, head = 0, b""
    with open(path, "wb") as out:
        while chunk := await upload.read(MB):
            written += len(chunk)
            if written > limit:
                raise RefusedError(413, f"upload over the limit of {limit // MB} MB")
            if len(head) < 512:
                head += chunk[: 512 - len(head)]
            out.write(chunk)
    if not written:
        raise RefusedError(422, "empty upload (0 bytes)")
    return path, sniff(head)


class BodyLimit:
    """ASGI middleware: refuse a request body over its path's cap with 413, from Content-Length before reading
    anything, or as soon as the bytes received pass the cap (a client may lie or send chunks)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    def cap(self, path: str) -> int:
        if path.startswith("/v1/videos"):
            return self.limits.video_bytes
        if path.startswith(("/v1/images", "/v1/live")):
            return self.limits.image_bytes + 64 * 1024  # the multipart envelope around the image
        return self.limits.other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.cap(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            return await _send_json(send, 413, f"request body over the limit of {_size(cap)} for {scope['path']}")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise RefusedError(413, f"request body over the limit of {_size(cap)} for {scope['path']}")
            return message

        await self.app(scope, limited_receive, send)


def _size(count: int) -> str:
    return f"{count // MB} MB" if count >= MB else f"{count // 1024} kB"


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
