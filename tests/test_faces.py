import numpy as np
import pytest

from engage.errors import EngageError, UsageError
from engage.faces.crop import (
    FACE_SIZE,
    FaceSettings,
    crop_face,
    expand_box,
    extract_face,
    extract_faces,
    normalize_paper,
)
from engage.faces.detect import (
    FaceBox,
    biggest_face,
    clip_box,
    create_detector,
    sort_biggest_first,
)


def test_biggest_face_rule():
    small, big, medium = FaceBox(0, 0, 10, 10, 0.99), FaceBox(50, 50, 40, 30, 0.8), FaceBox(5, 5, 20, 20, 0.95)
    assert biggest_face([small, big, medium]) == big
    assert sort_biggest_first([small, big, medium]) == [big, medium, small]
    assert biggest_face([]) is None
    # equal areas: the more confident face wins
    assert biggest_face([FaceBox(0, 0, 10, 10, 0.5), FaceBox(20, 0, 10, 10, 0.9)]).confidence == 0.9


def test_boxes_past_the_edge_are_clipped():
    assert clip_box(-5, -10, 30, 30, 20, 15).as_list() == [0, 0, 20, 15]
    assert clip_box(100, 100, 10, 10, 50, 50) is None
    # squared around its centre (20, 30), kept inside the image
    assert expand_box(FaceBox(10, 10, 20, 40), 100, 100, square=True).as_list() == [0, 10, 40, 40]
    assert expand_box(FaceBox(10, 10, 20, 40), 100, 100, square=False).as_list() == [10, 10, 20, 40]
    # grown by the margin, then capped by the image's short side
    assert expand_box(FaceBox(0, 0, 90, 90), 100, 60, margin=0.2).as_list() == [15, 0, 60, 60]


def test_crop_is_48x48_gray_uint8():
    gray = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300) % 256
    face = crop_face(gray.astype(np.uint8), FaceBox(10, 20, 100, 120))
    assert face.shape == (FACE_SIZE, FACE_SIZE) and face.dtype == np.uint8


def test_paper_normalisation_has_mean_zero_and_norm_100():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48)).astype(np.uint8)
    normalised = normalize_paper(faces)
    assert normalised.shape == faces.shape and normalised.dtype == np.float32
    flat = normalised.reshape(5, -1)
    assert np.allclose(flat.mean(axis=1), 0, atol=1e-4)
    assert np.allclose(np.linalg.norm(flat, axis=1), 100, atol=1e-2)
    assert np.all(normalize_paper(np.full((48, 48), 7, np.uint8)) == 0)  # a flat face stays zero
    # brightness and contrast do not matter after the normalisation
    assert np.allclose(normalize_paper(faces[0] * 0.5 + 20), normalised[0], atol=1e-3)


def test_mtcnn_finds_the_astronaut(astronaut):
    detector = create_detector("mtcnn")
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    box = boxes[0]
    # her face is around x 180-270, y 60-175 in the 512x512 picture
    assert 160 < box.x < 200 and 50 < box.y < 80 and 70 < box.w < 110 and 90 < box.h < 130 and box.confidence > 0.95


def test_group_picture_biggest_face_first(sample_images):
    detector = create_detector("mtcnn")
    group = sample_images["group.png"]
    boxes = detector.detect(group)
    assert len(boxes) == 3
    assert [b.area for b in boxes] == sorted((b.area for b in boxes), reverse=True)
    assert boxes[0].x < 300  # the full-size astronaut is on the left
    crops = extract_faces(group, detector, FaceSettings())
    assert len(crops) == 3 and all(c.shape == (48, 48) for c, _ in crops)
    crop = extract_face(group, detector, FaceSettings())
    assert crop.source == "detected" and crop.faces_found == 3 and crop.box.x < 300


def test_no_face_policies(sample_images):
    detector = create_detector("mtcnn")
    coffee = sample_images["coffee.png"]
    skipped = extract_face(coffee, detector, FaceSettings(no_face="skip"))
    assert skipped.face is None and skipped.source == "no-face"
    whole = extract_face(coffee, detector, FaceSettings(no_face="whole-image"))
    assert whole.face.shape == (48, 48) and whole.source == "whole-image"
    assert whole.box.as_list() == [100, 0, 400, 400]  # the centred square of a 600x400 picture
    as_given = extract_face(coffee, None, FaceSettings(detector=None))
    assert as_given.source == "no-detect"


def test_detector_registry_errors():
    with pytest.raises(UsageError, match="unknown detector 'haar'"):
        create_detector("haar")
    with pytest.raises(UsageError, match="no-face policy"):
        FaceSettings(no_face="guess")


@pytest.mark.parametrize("name", ["yunet", "dlib"])
def test_optional_detectors_find_the_astronaut(name, astronaut):
    try:
        detector = create_detector(name)
    except EngageError as error:
        assert f"engage[{'fast' if name == 'yunet' else 'dlib'}]" in str(error)
        pytest.skip(f"{name} is not installed: {error}")
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    assert abs(boxes[0].x + boxes[0].w / 2 - 225) < 25 and abs(boxes[0].y + boxes[0].h / 2 - 120) < 30


@pytest.mark.parametrize("name", ["mtcnn", "yunet"])
def test_detectors_give_five_landmarks_in_place(name, astronaut):
    try:
        detector = create_detector(name)
    except EngageError as error:
        pytest.skip(f"{name} is not installed: {error}")
    box = detector.detect(astronaut)[0]
    assert box.landmarks is not None and len(box.landmarks) == 5
    (eye_x1, eye_y1), (eye_x2, eye_y2), (nose_x, nose_y), (mouth_x1, mouth_y1), (mouth_x2, mouth_y2) = box.landmarks
    assert eye_x1 < nose_x < eye_x2 and mouth_x1 < mouth_x2  # in image order, left to right
    assert max(eye_y1, eye_y2) < nose_y < min(mouth_y1, mouth_y2)  # eyes above the nose above the mouth
    for x, y in box.landmarks:
        assert box.x <= x <= box.x + box.w and box.y <= y <= box.y + box.h


def test_pad_keeps_the_face_centred_where_clip_moves_the_box():
    from engage.faces.crop import cut_face

    image = np.full((100, 100), 200, np.uint8)
    image[48:52, 8:12] = 0  # a dark mark at the centre of a face at the left edge
    corner = FaceBox(0, 40, 20, 20)
    clipped = cut_face(image, corner, FaceSettings(margin=0.5, size=32))
    padded = cut_face(image, corner, FaceSettings(margin=0.5, border="pad", size=32))
    assert clipped.shape == padded.shape == (32, 32)
    # pad: the 40-px square stays centred on the face (x -10..30), the outside repeats the edge pixels
    assert np.unravel_index(padded.argmin(), padded.shape)[1] in range(14, 18)
    # clip: the square is moved right to fit inside the image (x 0..40), so the face sits off centre
    assert np.unravel_index(clipped.argmin(), clipped.shape)[1] in range(6, 10)
    assert padded[:, :6].min() > 150  # the padded edge repeats the bright border, no black fill
    assert cut_face(image, FaceBox(80, 80, 20, 20), FaceSettings(margin=0.5, border="pad", size=16)).shape == (16, 16)


def test_align_turns_a_tilted_face_upright():
    import cv2

    from engage.faces.crop import cut_face

    upright = np.zeros((200, 200), np.uint8)
    cv2.circle(upright, (80, 90), 8, 255, -1)  # two eyes
    cv2.circle(upright, (120, 90), 8, 255, -1)
    cv2.rectangle(upright, (85, 130), (115, 138), 180, -1)  # a mouth
    rotation = cv2.getRotationMatrix2D((100, 100), -20, 1.0)  # tilt the face 20 degrees clockwise
    tilted = cv2.warpAffine(upright, rotation, (200, 200))
    eyes = [tuple(rotation @ np.array([x, y, 1.0])) for x, y in ((80, 90), (120, 90))]
    landmarks = (*eyes, (100.0, 110.0), (85.0, 134.0), (115.0, 134.0))
    box = FaceBox(50, 50, 100, 100, 1.0, landmarks)
    settings = FaceSettings(align=True, border="pad")
    aligned = cut_face(tilted, box, settings).astype(float)
    reference = cut_face(upright, FaceBox(50, 50, 100, 100), FaceSettings(border="pad")).astype(float)
    unaligned = cut_face(tilted, box, FaceSettings(border="pad")).astype(float)
    assert np.abs(aligned - reference).mean() < 0.3 * np.abs(unaligned - reference).mean()
    no_landmarks = FaceBox(50, 50, 100, 100)  # a detector without landmarks: the face is cut as it is
    assert np.array_equal(cut_face(tilted, no_landmarks, settings), unaligned.astype(np.uint8))


def test_colour_and_size_settings_shape_the_crop(astronaut):
    detector = create_detector("mtcnn")
    colour = extract_face(astronaut, detector, FaceSettings(color=True, size=64))
    assert colour.face.shape == (64, 64, 3) and colour.found.landmarks is not None
    gray = extract_face(astronaut, detector, FaceSettings())
    assert gray.face.shape == (48, 48)
    assert colour.face[..., 0].mean() > colour.face[..., 2].mean()  # her skin and the red suit: red > blue
    with pytest.raises(UsageError, match="multiple of 16"):
        FaceSettings(size=50)
    with pytest.raises(UsageError, match="border"):
        FaceSettings(border="mirror")


def test_unknown_face_settings_are_an_error_that_names_them(tmp_path):
    """A typo or a foreign key in recorded face settings is refused, never dropped (dropping it would cut faces
    otherwise than the file says); a dataset file carrying one fails to load with one line naming it."""
    from conftest import make_dataset

    from engage.data.dataset import FaceDataset

    assert FaceSettings.from_dict({"margin": 0.2, "border": "pad"}) == FaceSettings(margin=0.2, border="pad")
    with pytest.raises(EngageError, match=r"unknown face setting.*'margni'"):
        FaceSettings.from_dict({"margni": 0.2})
    dataset = make_dataset(np.zeros((2, 48, 48), np.uint8), [0, 1], ["a", "b"])
    dataset.meta["settings"]["zoom"] = 2
    path = str(tmp_path / "faces.npz")
    dataset.save(path)
    with pytest.raises(EngageError, match="'zoom'"):
        _ = FaceDataset.load(path).settings
