"""Video at key frames: faces detected every K frames and followed in between (median flow), their scores carried on;
the rows agree with detection on every frame; a lost face is detected again at once; the detector sizes for video;
start and stop frames; a video that ends before its frame count."""

import itertools

import cv2
import numpy as np
import pytest
from conftest import write_cut_avi

from engage.faces.detect import FaceBox
from engage.faces.flow import follow_box
from engage.inference.demo import moving_faces_frames, write_demo_video
from engage.inference.keyframes import DEFAULT_DETECT_EVERY, is_keyframe

pytest_plugins = ["predict_fixtures"]

FRAMES = 60


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """The demo video, 60 frames (2 s): the astronaut sliding across, the cameraman still."""
    path = str(tmp_path_factory.mktemp("keyframes") / "clip.mp4")
    write_demo_video(path, frames=FRAMES)
    return path


@pytest.fixture(scope="module")
def default_predictor(engagement_model):
    """The default settings (the model's own detector, MTCNN; PyTorch), without expressions."""
    from engage.inference.predictor import Predictor

    return Predictor(engagement_model)


def rows(frames) -> dict[tuple[int, int], object]:
    return {(frame.frame, face.face_id): face for frame in frames for face in frame.faces}


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_followed_rows_agree_with_detection_on_every_frame(default_predictor, clip):
    every = rows(default_predictor.predict_video(clip, detect_every=1))
    keyed = rows(default_predictor.predict_video(clip, detect_every=10))
    assert set(keyed) == set(every)  # the same faces, ids and rows
    assert {face_id for _, face_id in keyed} == {1, 2}
    tracked = {key for key, face in keyed.items() if face.tracked}
    assert tracked == {key for key in keyed if key[0] % 10}  # followed between key frames, detected on them
    assert not any(face.tracked for face in every.values())
    for key, face in keyed.items():
        if key[0] % 10 == 0:  # a key frame is detected and scored as with every frame
            assert face.box == every[key].box and face.p_engaged_raw == pytest.approx(
                every[key].p_engaged_raw, abs=1e-6
            )
        else:  # followed: the box stays on the face, the raw score is the last key frame's
            ours, theirs = face.box, every[key].box  # within the detector's own jitter between frames
            shift = np.hypot(
                ours.x + ours.w / 2 - theirs.x - theirs.w / 2, ours.y + ours.h / 2 - theirs.y - theirs.h / 2
            )
            assert shift <= 0.15 * theirs.w, (key, ours, theirs)
            last = keyed[(key[0] // 10 * 10, key[1])]
            assert face.p_engaged_raw == last.p_engaged_raw and face.cues == last.cues
            assert face.face is None  # no crop of its own
    diff = np.mean([abs(keyed[key].p_engaged - every[key].p_engaged) for key in keyed])
    same = np.mean([keyed[key].label == every[key].label for key in keyed])
    assert diff <= 0.02 and same >= 0.97, (diff, same)


def test_the_moving_face_is_followed_within_a_few_pixels():
    frames = list(moving_faces_frames(30))
    start = FaceBox(62, 116, 82, 94, 0.9)
    box = start
    for previous, current in itertools.pairwise(frames):
        box = follow_box(gray(previous), gray(current), box)
        assert box is not None
    shift = round((0.47 - 0.03) * 640)  # the astronaut crosses this far in 30 frames
    assert abs(box.x - (start.x + shift)) <= 4 and abs(box.y - start.y) <= 3
    assert abs(box.w - start.w) <= 4 and box.confidence == start.confidence


def test_a_face_that_leaves_is_lost_not_followed():
    with_face = list(moving_faces_frames(4))
    without = list(moving_faces_frames(4, still_face=False))
    still = FaceBox(504, 218, 66, 80, 0.8)  # the cameraman
    assert follow_box(gray(with_face[1]), gray(with_face[2]), still) == FaceBox(504, 218, 66, 80, 0.8)
    assert follow_box(gray(with_face[1]), gray(without[2]), still) is None


def test_a_lost_face_is_detected_again_at_once(default_predictor, tmp_path):
    from engage.io.video import write_video

    both, alone = list(moving_faces_frames(30)), list(moving_faces_frames(30, still_face=False))
    frames = both[:15] + alone[15:]  # the cameraman leaves at frame 15
    path = str(tmp_path / "leaves.mp4")
    write_video(path, frames)
    keyed = rows(default_predictor.predict_video(path, detect_every=30))
    every = rows(default_predictor.predict_video(path, detect_every=1))
    assert set(keyed) == set(every)  # no row of the cameraman after he left, though no key frame came
    assert max(frame for frame, face_id in keyed if face_id == 2) == 14
    assert not keyed[(15, 1)].tracked  # the frame he left on was detected again


def test_key_frames_sit_at_fixed_frame_numbers():
    assert [index for index in range(40) if is_keyframe(index, 2, 5)] == [0, 10, 20, 30]
    assert DEFAULT_DETECT_EVERY == 10


def test_video_frames_are_detected_at_the_size_that_finds_40_px_faces(fast_predictor, predictor):
    frame = np.zeros((480, 640, 3), np.uint8)
    assert fast_predictor.detect_side(frame, video=True) == 480  # YuNet: 0.75 of the frame
    assert fast_predictor.detect_side(frame) == 320  # images: half, as before
    assert predictor.detect_side(frame, video=True) == 320  # MTCNN: half the frame


def test_start_and_stop_frames_give_the_rows_of_a_whole_run(fast_predictor, clip):
    whole = rows(fast_predictor.predict_video(clip, detect_every=10))
    part = list(fast_predictor.predict_video(clip, detect_every=10, start_frame=20))
    assert [frame.frame for frame in part] == list(range(20, FRAMES))
    for key, face in rows(part).items():
        same = [other for (frame, _), other in whole.items() if frame == key[0] and other.box == face.box]
        assert same and same[0].p_engaged_raw == pytest.approx(face.p_engaged_raw, abs=1e-6)


def test_a_video_that_ends_before_its_frame_count_gives_what_it_has(fast_predictor, tmp_path):
    """An AVI cut short: its header still says 60 frames; the frames there are scored, without an error."""
    path = write_cut_avi(tmp_path / "cut.avi", FRAMES, keep=0.5)
    from engage.io.video import VideoSource

    with VideoSource(str(path)) as video:
        said = video.frame_count
    got = list(fast_predictor.predict_video(str(path)))
    assert said == FRAMES and 0 < len(got) < FRAMES
    assert all(len(frame.faces) >= 2 for frame in got)  # the astronaut and the cameraman in every frame


def test_a_face_that_changes_look_between_key_frames_is_scored_again(default_predictor, tmp_path):
    from engage.io.video import write_video

    frames = list(moving_faces_frames(20))
    for rgb in frames[5:]:  # from frame 5 on a shadow over the cameraman's eyes
        rgb[228:252, 504:570] = (rgb[228:252, 504:570] * 0.4).astype(np.uint8)
    path = str(tmp_path / "turns.mp4")
    write_video(path, frames)
    keyed = rows(default_predictor.predict_video(path, detect_every=10))
    assert [frame for (frame, face_id), face in sorted(keyed.items()) if face_id == 2 and not face.tracked] == [
        0,
        5,
        10,
    ]
    assert keyed[(6, 2)].p_engaged_raw == keyed[(5, 2)].p_engaged_raw != keyed[(4, 2)].p_engaged_raw
    assert [frame for (frame, face_id), face in sorted(keyed.items()) if face_id == 1 and not face.tracked] == [0, 10]


def test_a_face_the_detector_misses_once_is_followed_on_but_a_one_off_face_is_not(default_predictor):
    """The follower given the detector's real boxes on key frames 0, 10, 20 and 30, less the cameraman's on 20 and 30
    (a miss), plus a false face on 10 alone."""
    from engage.inference.keyframes import FaceFollower
    from engage.inference.tracking import IouTracker
    from engage.io.video import Frame

    frames = list(moving_faces_frames(40))
    follower = FaceFollower(IouTracker(), default_predictor.detect, follow=True)
    false_face = FaceBox(300, 380, 60, 60, 0.6)  # the coffee cup, as a detector might see a face in it
    seen = {}
    for index, rgb in enumerate(frames):
        boxes = None
        if index % 10 == 0:
            boxes = default_predictor.detect(rgb, video=True)
            if index >= 20:
                boxes = [box for box in boxes if box.x < 450]  # the detector misses the cameraman
            if index == 10:
                boxes = [*boxes, false_face]
        faces = follower.step(Frame(index, index / 30, rgb), boxes)
        seen[index] = dict(zip(faces.ids, faces.detected))
    assert seen[20] == {1: True, 2: False}  # missed once, after two detections: followed on
    assert all(2 in seen[index] for index in range(20, 30))
    assert seen[30] == {1: True}  # missed again: dropped
    assert 3 in seen[10] and 3 not in seen[20]  # the false face, found once, is not carried past the next key frame
