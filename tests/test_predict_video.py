"""Video: stable face ids for a face that moves, smoothing that keeps the raw values, every Nth frame, the
CSV rows as documented, annotated mp4 and timeline; the tracker's and summary's own rules."""

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import run_cli
from predict_fixtures import REAL_FACE

from engage.faces.detect import FaceBox
from engage.inference.records import CSV_COLUMNS, FaceResult, FrameResult, VideoSummary
from engage.inference.tracking import EmaSmoother, IouTracker

pytest_plugins = ["predict_fixtures"]

DEMO_FRAMES = 24
DEMO_FPS = 30.0


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory) -> str:
    """A real-face video: the astronaut sliding left to right, the cameraman still (640x480, 24 frames)."""
    from engage.inference.demo import write_demo_video

    path = str(tmp_path_factory.mktemp("video") / "lecture.mp4")
    write_demo_video(path, frames=DEMO_FRAMES, fps=DEMO_FPS)
    return path


def faces_by_id(frames):
    tracks = {}
    for frame in frames:
        for face in frame.faces:
            tracks.setdefault(face.face_id, []).append((frame.frame, face))
    return tracks


@pytest.fixture(scope="module")
def video_frames(predictor, demo_video):
    """Every frame of the demo video through the default pipeline (mtcnn, PyTorch, 1 s smoothing)."""
    return list(predictor.predict_video(demo_video))


def test_a_moving_face_keeps_its_id(video_frames):
    frames = video_frames
    assert [f.frame for f in frames] == list(range(DEMO_FRAMES))
    assert [f.time_s for f in frames] == pytest.approx([i / DEMO_FPS for i in range(DEMO_FRAMES)])
    assert all(len(f.faces) == 2 for f in frames)
    tracks = faces_by_id(frames)
    assert sorted(tracks) == [1, 2]  # two faces, two ids, kept over the whole video
    xs = {face_id: [face.box.x for _, face in track] for face_id, track in tracks.items()}
    moving = max(xs, key=lambda i: xs[i][-1] - xs[i][0])
    still = 3 - moving
    assert xs[moving][-1] - xs[moving][0] == pytest.approx(0.44 * 640, abs=25)  # the astronaut slides ~280 px
    assert np.all(np.diff(xs[moving]) > 0)
    assert max(xs[still]) - min(xs[still]) < 6


def test_smoothing_is_an_ema_over_time_and_raw_values_are_kept(video_frames, engagement_model):
    from engage.models.loading import load_model

    threshold = load_model(engagement_model).decision.threshold
    for track in faces_by_id(video_frames).values():
        raw = [face.p_engaged_raw for _, face in track]
        smoothed = [face.p_engaged for _, face in track]
        expected = [raw[0]]
        for value in raw[1:]:  # 1 s time constant, frames 1/30 s apart
            expected.append(expected[-1] + (1 - np.exp(-1 / DEMO_FPS / 1.0)) * (value - expected[-1]))
        assert smoothed == pytest.approx(expected, abs=1e-6)
        assert np.ptp(smoothed) <= np.ptp(raw) + 1e-9
        assert all(face.label == ("engaged" if face.p_engaged >= threshold else "disengaged") for _, face in track)


def test_every_nth_frame_without_smoothing(fast_predictor, demo_video):
    from engage.inference.predictor import Predictor

    assert fast_predictor.smoothing_s == 1.0
    unsmoothed = Predictor(fast_predictor.model_name, detector="yunet", backend="onnx", smoothing_s=0)
    frames = list(unsmoothed.predict_video(demo_video, every=5))
    assert [f.frame for f in frames] == [0, 5, 10, 15, 20]
    assert [f.time_s for f in frames] == pytest.approx([i / DEMO_FPS for i in (0, 5, 10, 15, 20)])
    real = {face_id: faces for face_id, faces in faces_by_id(frames).items() if faces[0][1].det_conf >= REAL_FACE}
    assert [len(faces) for faces in real.values()] == [5, 5]  # ~50 px jumps between scored frames: the same faces
    assert all(face.p_engaged == face.p_engaged_raw for f in frames for face in f.faces)
    assert len(list(unsmoothed.predict_video(demo_video, max_frames=3))) == 3


def test_cli_writes_documented_csv_annotated_video_and_timeline(demo_video, engagement_model, fast_extra, tmp_path):
    csv_path, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    result = run_cli(
        "predict",
        demo_video,
        "--model",
        engagement_model,
        "--detector",
        "yunet",
        "--backend",
        "onnx",
        "--every",
        "2",
        "--csv",
        str(csv_path),
        "--annotate",
        str(annotated),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kind"] == "video" and summary["frames_scored"] == DEMO_FRAMES // 2
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames[: len(CSV_COLUMNS)]) == CSV_COLUMNS
        rows = list(reader)
    assert sum(float(row["det_conf"]) >= REAL_FACE for row in rows) == 2 * DEMO_FRAMES // 2  # both, in every frame
    assert {row["source"] for row in rows} == {demo_video}
    assert sorted({int(row["frame"]) for row in rows}) == list(range(0, DEMO_FRAMES, 2))
    from engage.models.loading import load_model

    threshold = load_model(engagement_model).decision.threshold  # the model's own operating point
    for row in rows:
        assert float(row["time_s"]) == pytest.approx(int(row["frame"]) / DEMO_FPS, abs=1e-3)
        if row["quality"] == "ok":
            assert row["label"] == ("engaged" if float(row["p_engaged"]) >= threshold else "disengaged")
        else:  # not judged (the cameraman's face is a weak detection for YuNet on some frames)
            assert row["label"] == "uncertain"
        assert int(row["w"]) > 30 and 0.5 < float(row["det_conf"]) <= 1  # YuNet's own threshold is 0.5
    for face in summary["faces"]:  # the per-face summary is the mean of that face's judged rows
        mine = [r for r in rows if int(r["face_id"]) == face["face_id"]]
        values = [float(r["p_engaged"]) for r in mine if r["quality"] == "ok"]
        assert face["frames"] == len(mine)
        assert len(mine) == DEMO_FRAMES // 2 or float(mine[0]["det_conf"]) < REAL_FACE
        assert face["share_uncertain"] == pytest.approx(1 - len(values) / len(mine), abs=1e-3)
        if not values:  # the weak false face: never judged
            assert face["mean_p_engaged"] is None and face["share_uncertain"] == 1.0
            continue
        assert face["mean_p_engaged"] == pytest.approx(np.mean(values), abs=1e-3)
        assert face["share_engaged"] == pytest.approx(np.mean([v >= threshold for v in values]), abs=1e-3)
    video = cv2.VideoCapture(str(annotated / "lecture.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == DEMO_FRAMES // 2
    ok, frame = video.read()
    assert ok and frame.shape == (480, 640, 3)
    timeline = cv2.imread(str(annotated / "lecture.timeline.png"))
    assert timeline is not None and timeline.shape[1] >= 600
    assert sorted(p.name for p in annotated.iterdir()) == ["lecture.mp4", "lecture.timeline.png"]


def box(x, y, side=80):
    return FaceBox(x, y, side, side, 0.99)


def test_tracker_keeps_ids_through_motion_and_gives_new_ids_after_gaps_and_jumps():
    tracker = IouTracker(max_gap_s=1.0)
    assert tracker.update([box(0, 0), box(400, 0)], 0.0) == [1, 2]
    assert tracker.update([box(400, 5), box(30, 0)], 0.1) == [2, 1]  # order of detection does not matter
    assert tracker.update([box(95, 0)], 0.2) == [1]  # no overlap any more, but within one box width: same face
    assert tracker.update([box(400, 5)], 0.5) == [2]  # face 2 was missed for 0.4 s: still face 2
    assert tracker.update([box(300, 300)], 0.6) == [3]  # a jump of several box widths: a new face
    assert tracker.update([box(95, 0)], 2.0) == [4]  # face 1 unseen for 1.8 s: its track ended


def test_tracker_keeps_ids_of_faces_that_cross():
    tracker = IouTracker()
    for frame in range(31):  # two faces walk past each other at 300 px/s, 30 frames/s, fully overlapping mid-way
        time_s = frame / 30
        ids = tracker.update([box(10 * frame, 100), box(305 - 10 * frame, 100)], time_s)
        assert ids == [1, 2], (frame, ids)
    # face 1 missed for 0.3 s while it kept walking: it is found 90 px on (more than a box side), where it should be
    assert tracker.update([box(390, 100)], 30 / 30 + 0.3) == [1]


def test_ema_smoother_weighs_by_elapsed_time():
    smoother = EmaSmoother(seconds=2.0)
    assert smoother.update(1, 0.0, 1.0) == 1.0
    assert smoother.update(1, 2.0, 0.0) == pytest.approx(np.exp(-1.0))  # one time constant later
    assert EmaSmoother(0).update(1, 0.0, 0.3) == 0.3 and EmaSmoother(0).update(1, 1.0, 0.7) == 0.7
    smoother.keep_only([])
    assert smoother.update(1, 3.0, 0.5) == 0.5  # forgotten: starts afresh


def test_summary_memory_is_bounded_on_long_videos():
    summary = VideoSummary("engaged", max_points=100)
    for index in range(20_000):  # 11 minutes at 30 frames/s
        p = 0.8 if index < 10_000 else 0.2
        face = FaceResult(
            1, box(0, 0), {"disengaged": 1 - p, "engaged": p}, "engaged" if p >= 0.5 else "disengaged", p, p
        )
        summary.add(FrameResult("v.mp4", index, index / 30, [face], 640, 480))
    points = summary.timeline[1]
    assert 50 <= len(points) <= 100
    assert points[0][0] == 0.0 and points[-1][0] > 0.95 * 19_999 / 30
    stats = summary.face_list()[0]
    assert stats["frames"] == 20_000 and stats["mean_p_engaged"] == pytest.approx(0.5)
    assert stats["share_engaged"] == pytest.approx(0.5)
