"""schemathesis hooks for engage's HTTP API (loaded through schemathesis.toml): real files for the media types
the schema's file fields take, so that generated requests reach the scoring and answer with faces, and a video
job exists for the stateful phase to follow. Arbitrary bytes are still generated where the schema allows them
(the fields are `format: binary`), and are refused as the schema documents (415, 422)."""

import os
import tempfile

import cv2
import numpy as np
import schemathesis
from hypothesis import strategies as st
from skimage import data


def _encoded(rgb: np.ndarray, extension: str) -> bytes:
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, extension
    return encoded.tobytes()


def _video(frames: int = 6) -> bytes:
    """A few frames of a face moving, as an mp4 (mp4v): a video job that scores in well under a second."""
    face = cv2.resize(data.astronaut()[0:220, 120:340], (96, 96))
    folder = tempfile.mkdtemp(prefix="engage-contract-")
    path = os.path.join(folder, "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for index in range(frames):
        frame = np.full((120, 160, 3), 200, np.uint8)
        frame[12 : 12 + 96, 10 + 4 * index : 106 + 4 * index] = face
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    with open(path, "rb") as handle:
        content = handle.read()
    os.remove(path)
    os.rmdir(folder)
    return content


_astronaut = data.astronaut()
_portrait = cv2.resize(_astronaut[0:300, 100:400], (200, 200))  # one face, big enough for every detector
_coffee = cv2.resize(data.coffee(), (160, 120))  # no face: a result, not an error
IMAGES = [
    _encoded(_portrait, ".jpg"),
    _encoded(_portrait, ".png"),
    _encoded(_coffee, ".jpg"),
    _encoded(_coffee, ".bmp"),
]
VIDEOS = [_video()]

images = st.sampled_from(IMAGES)
schemathesis.openapi.media_type(
    "image/jpeg", images, aliases=["image/png", "image/bmp", "image/gif", "image/tiff", "image/webp"]
)
schemathesis.openapi.media_type("video/mp4", st.sampled_from(VIDEOS), aliases=["video/quicktime"])


@schemathesis.hook
def filter_body(context, body) -> bool:
    """Leave out form bodies with a field whose value is an empty list or object: multipart sends nothing for it,
    so the request the server gets is not the one the case describes (schemathesis would call a valid request
    that omits an optional field 'schema-violating', as it cannot validate a body holding file bytes)."""
    return not (isinstance(body, dict) and any(value in ([], {}) for value in body.values()))
