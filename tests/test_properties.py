"""Property-based tests (hypothesis) of the readers, the tracker and the splits, with a bounded budget: whatever the
input, a reader returns what it promises or raises engage's own error naming the file, the tracker never gives two
faces of a frame the same id, and a split never puts a student on two sides."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engage.data.readers import read_samples
from engage.data.splits import check_no_leak, grouped_kfold, subject_split
from engage.errors import EngageError, ImageReadError
from engage.faces.detect import FaceBox
from engage.inference.tracking import IouTracker
from engage.io.images import read_image

# a bounded, repeatable budget in the suite; ENGAGE_HYPOTHESIS_EXAMPLES=2000 searches longer (and at random)
EXAMPLES = int(os.environ.get("ENGAGE_HYPOTHESIS_EXAMPLES", "60"))
BUDGET = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="ENGAGE_HYPOTHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)


def png_bytes(seed: int, side: int, mode: str) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


@BUDGET
@given(
    seed=st.integers(0, 2**16),
    side=st.integers(1, 40),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "LA"]),
    cut=st.integers(0, 400),
    flips=st.lists(st.integers(0, 10**6), max_size=4),
)
def test_read_image_returns_rgb_or_names_the_file(tmp_path, seed, side, mode, cut, flips):
    """Valid PNGs of any mode, truncated anywhere, with bytes flipped anywhere."""
    data = bytearray(png_bytes(seed, side, mode))
    for position in flips:
        data[position % len(data)] ^= 0xA5
    data = bytes(data[: len(data) - cut] if cut < len(data) else data[:1])
    path = tmp_path / "x.png"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ImageReadError as error:
        assert str(path) in str(error)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= 1


@BUDGET
@given(text=st.text(alphabet=st.sampled_from(list('path,label;subject\n"x.pngab12 \ufeff\r')), max_size=120))
def test_read_samples_on_any_manifest_text_returns_samples_or_one_error(tmp_path, text):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    try:
        found = read_samples(str(manifest))
    except EngageError as error:
        assert str(error) and "\n" not in str(error).strip()
    else:
        assert all(sample.label for sample in found.samples)


boxes = st.lists(st.tuples(st.integers(0, 600), st.integers(0, 400), st.integers(10, 200)), max_size=6)


@BUDGET
@given(frames=st.lists(boxes, min_size=1, max_size=15), step=st.floats(0.01, 2.0))
def test_the_tracker_never_gives_two_faces_of_a_frame_the_same_id(frames, step):
    tracker, seen = IouTracker(), set()
    for index, frame in enumerate(frames):
        faces = [FaceBox(x, y, side, side, 0.99) for x, y, side in frame]
        ids = tracker.update(faces, index * step)
        assert len(ids) == len(faces) and len(set(ids)) == len(ids)
        assert all(i >= 1 for i in ids)
        seen.update(ids)
    assert seen == set(range(1, len(seen) + 1))  # ids are handed out in order, none skipped


@BUDGET
@given(
    subjects=st.lists(st.sampled_from([f"s{i}" for i in range(12)]), min_size=2, max_size=80),
    fraction=st.floats(0.05, 0.95),
    folds=st.integers(2, 6),
    seed=st.integers(0, 1000),
)
def test_splits_never_put_a_student_on_two_sides(subjects, fraction, folds, seed):
    subjects = np.array(subjects)
    students = len(set(subjects.tolist()))
    if students < 2:
        with pytest.raises(EngageError):
            subject_split(subjects, fraction, seed)
    else:
        split = subject_split(subjects, fraction, seed)
        assert set(split.tolist()) <= {"train", "val"} and "train" in split and "val" in split
        check_no_leak(subjects, split)
    if folds > students:
        with pytest.raises(EngageError, match="cannot make"):
            grouped_kfold(subjects, folds, seed)
    else:
        fold = grouped_kfold(subjects, folds, seed)
        assert sorted(set(fold.tolist())) == list(range(folds))
        for student in set(subjects.tolist()):
            assert len(set(fold[subjects == student].tolist())) == 1
