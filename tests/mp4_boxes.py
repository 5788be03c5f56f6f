"""Rewrite the boxes of an mp4 written by OpenCV (moov after mdat), as phones and screen recorders write them:
variable frame durations (stts) and a rotation matrix (tkhd). For the reliability tests; no ffmpeg needed."""

from __future__ import annotations

import struct
from pathlib import Path

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def parse(data, start=0, end=None):
    end = len(data) if end is None else end
    boxes, at = [], start
    while at < end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        boxes.append([kind, data[at + 8 : at + size] if kind not in CONTAINERS else parse(data, at + 8, at + size)])
        at += size
    return boxes


def build(boxes):
    out = b""
    for kind, body in boxes:
        payload = build(body) if isinstance(body, list) else body
        out += struct.pack(">I4s", 8 + len(payload), kind) + payload
    return out


def find(boxes, kind):
    for box in boxes:
        if box[0] == kind:
            yield box
        if isinstance(box[1], list):
            yield from find(box[1], kind)


def patch(path, durations: list[int] | None = None, rotation: int | None = None) -> int:
    """Give each frame its own duration (in the track's time units), and/or a display rotation (90, 180, 270).
    Returns the track's time units per second."""
    data = Path(path).read_bytes()
    boxes = parse(data)
    kinds = [b[0] for b in boxes]
    assert kinds.index(b"mdat") < kinds.index(b"moov"), kinds
    mdhd = next(find(boxes, b"mdhd"))  # version 0: timescale at 12, duration at 16
    media_scale = struct.unpack(">I", mdhd[1][12:16])[0]
    if durations is not None:
        stts = next(find(boxes, b"stts"))
        stts[1] = (
            b"\0\0\0\0" + struct.pack(">I", len(durations)) + b"".join(struct.pack(">II", 1, d) for d in durations)
        )
        total = sum(durations)
        mdhd[1] = mdhd[1][:16] + struct.pack(">I", total) + mdhd[1][20:]
        mvhd = next(find(boxes, b"mvhd"))  # version 0: timescale at 12, duration at 16
        movie_total = round(total * struct.unpack(">I", mvhd[1][12:16])[0] / media_scale)
        mvhd[1] = mvhd[1][:16] + struct.pack(">I", movie_total) + mvhd[1][20:]
        tkhd = next(find(boxes, b"tkhd"))  # version 0: duration at 20
        tkhd[1] = tkhd[1][:20] + struct.pack(">I", movie_total) + tkhd[1][24:]
        for elst in find(boxes, b"elst"):  # version 0, one entry: segment duration at 8
            elst[1] = elst[1][:8] + struct.pack(">I", movie_total) + elst[1][12:]
    if rotation is not None:
        a, b, c, d = {90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}[rotation]
        for tkhd in find(boxes, b"tkhd"):  # version 0: matrix at 40
            body = bytearray(tkhd[1])
            body[40:76] = struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
            tkhd[1] = bytes(body)
    Path(path).write_bytes(build(boxes))
    return media_scale
