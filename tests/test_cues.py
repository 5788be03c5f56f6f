"""The attention cues (head pose, gaze, eye and mouth opening): their meaning checked without labels on real faces,
their columns in every output, and the shipped model's cue head (signs, loading, its effect on p_engaged)."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engage.faces.cues import CUE_COLUMNS, face_cues
from engage.faces.detect import FaceBox, create_detector
from engage.faces.landmarks import FaceMesh
from engage.inference.predictor import Predictor, cue_array
from engage.inference.records import VideoSummary, csv_columns, to_dataframe
from engage.io.sample_photos import sample_images
from engage.models.calibration import logit, sigmoid
from engage.models.cue_head import CueHead, CueTerm
from engage.models.loading import WEIGHTS_DIR

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh()


@pytest.fixture(scope="module")
def faces() -> dict:
    """The sample's astronaut (facing the camera) and cameraman (turned about 50 degrees), with MTCNN's boxes."""
    detector, images = create_detector("mtcnn"), sample_images()
    return {
        name: (images[f"{name}.png"], detector.detect(images[f"{name}.png"])[0]) for name in ("astronaut", "cameraman")
    }


def test_landmark_networks_are_the_converted_files_their_card_names():
    card = json.loads(Path(WEIGHTS_DIR, "landmarks.json").read_text())
    assert "Apache-2.0" in card["licence"]
    for name, entry in card["networks"].items():
        data = Path(WEIGHTS_DIR, name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["onnx_sha256"]
        assert len(data) <= 10_000_000 and entry["max_abs_difference"] < 1e-3


@pytest.mark.parametrize("name", ["astronaut", "cameraman"])
def test_a_mirrored_face_gives_opposite_yaw_and_roll_and_the_same_pitch(mesh, faces, name):
    rgb, box = faces[name]
    cues = face_cues(mesh.landmarks(rgb, box))
    width = rgb.shape[1]
    mirrored = face_cues(
        mesh.landmarks(np.ascontiguousarray(rgb[:, ::-1]), FaceBox(width - box.x - box.w, box.y, box.w, box.h))
    )
    assert abs(mirrored.yaw + cues.yaw) <= 6 and abs(mirrored.roll + cues.roll) <= 6
    assert abs(mirrored.pitch - cues.pitch) <= 6
    if name == "astronaut":  # facing the camera: both eyes seen alike (turned 50 degrees, the far eye is half hidden)
        assert abs(mirrored.eyes_open - cues.eyes_open) <= 0.05


def test_the_cameraman_is_turned_and_the_astronaut_faces_the_camera(mesh, faces):
    astronaut = face_cues(mesh.landmarks(*faces["astronaut"]))
    cameraman = face_cues(mesh.landmarks(*faces["cameraman"]))
    assert abs(astronaut.yaw) < 8 and abs(astronaut.pitch) < 10 and abs(astronaut.roll) < 8
    assert cameraman.yaw > 30  # he looks towards the image's right
    assert 0.25 < astronaut.eyes_open < 0.5


@pytest.mark.parametrize("angle", [20.0, -20.0])
def test_a_face_turned_in_the_image_moves_roll_by_the_turn(mesh, faces, angle):
    rgb, box = faces["astronaut"]
    before = face_cues(mesh.landmarks(rgb, box)).roll
    matrix = cv2.getRotationMatrix2D((box.x + box.w / 2, box.y + box.h / 2), angle, 1.0)  # counter-clockwise when > 0
    turned = cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    after = face_cues(mesh.landmarks(turned, box)).roll
    assert after - before == pytest.approx(angle, abs=6)


def test_no_landmarks_on_a_box_without_a_face(mesh):
    wall = np.full((200, 200, 3), 128, np.uint8)
    assert mesh.landmarks(wall, FaceBox(50, 50, 100, 100)) is None


def test_cues_are_columns_of_every_output(faces):
    predictor = Predictor("engagement", detector="mtcnn")
    [face] = predictor.predict(faces["astronaut"][0])
    assert face.cues is not None
    values = face.to_dict()["cues"]
    assert set(values) == set(CUE_COLUMNS) and all(np.isfinite(v) for v in values.values())
    assert set(CUE_COLUMNS) <= set(csv_columns())
    frame = to_dataframe([face])
    assert frame.loc[0, "yaw"] == pytest.approx(face.cues.yaw)
    off = Predictor("engagement", detector="mtcnn", cues=False).predict(faces["astronaut"][0])[0]
    assert off.cues is None and off.to_dict()["cues"] is None


def test_cue_columns_in_the_csv_of_predict(tmp_path):
    from click.testing import CliRunner

    from engage.cli import app

    out = tmp_path / "faces.csv"
    result = CliRunner().invoke(app, ["predict", "--sample", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[-len(CUE_COLUMNS) :] == list(CUE_COLUMNS)
    cameraman = next(row for row in rows if row["source"] == "cameraman.png")
    assert float(cameraman["yaw"]) > 30


def test_shipped_model_moves_p_engaged_by_its_cue_head(faces):
    with_cues = Predictor("engagement", detector="mtcnn")
    without = Predictor("engagement", detector="mtcnn", cues=False)
    head = with_cues.cue_head
    assert isinstance(head, CueHead) and without.cue_head is None
    for rgb, _ in faces.values():
        [fused], [plain] = with_cues.predict(rgb), without.predict(rgb)
        expected = sigmoid(head.logit(logit(np.array([plain.p_engaged_raw])), cue_array([fused.cues])))[0]
        assert fused.p_engaged_raw == pytest.approx(expected, abs=1e-4)


def test_cue_head_weights_can_only_lower_the_score():
    head = Predictor("engagement", detector="none", cues=True).cue_head
    assert all(term.inside <= 0 and term.beyond <= 0 for term in head.terms)
    rng = np.random.default_rng(0)
    center = np.array([[0, 0, 0, 0, 0, 0.33, 0.33, 0.33, 0.02, 0.9]], float)
    base = head.shifts(center)[0]
    for column in ("yaw", "roll", "mouth_open", "jaw_drop"):
        row = center.copy()
        index = CUE_COLUMNS.index(column)
        steps = [row.copy() for _ in range(6)]
        for k, step in enumerate(steps):
            step[0, index] += k * {"mouth_open": 0.1, "jaw_drop": 0.05}.get(column, 10)
        shifts = [head.shifts(step)[0] for step in steps]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(shifts)), column  # further off: never higher
        if column in ("roll", "jaw_drop"):  # vetoed past the normal range: far off is clearly lower
            assert shifts[-1] < base - 1, column
    closing = [head.shifts(np.array([[0, 0, 0, 0, 0, e, e, e, 0.02, 0.9]]))[0] for e in (0.35, 0.25, 0.15, 0.05)]
    assert all(b <= a for a, b in itertools.pairwise(closing)) and closing[-1] < closing[0] - 2
    assert head.shifts(np.full((1, len(CUE_COLUMNS)), np.nan))[0] == 0.0  # no landmarks: the appearance alone
    assert np.all(head.shifts(rng.normal(0, 20, (200, len(CUE_COLUMNS)))) <= 1e-12)


def test_a_cue_term_that_would_raise_the_score_is_refused():
    with pytest.raises(ValueError, match="<= 0"):
        CueTerm("yaw", "abs", 0.0, 10.0, 0.5, -1.0)
    with pytest.raises(ValueError, match="kind"):
        CueTerm("yaw", "sideways", 0.0, 10.0, 0.0, 0.0)


def test_video_timeline_keeps_the_cues_of_each_point():
    from engage.inference.records import TIMELINE_CUES, FaceResult, FrameResult

    summary = VideoSummary("engaged")
    rgb = sample_images()["astronaut.png"]
    [face] = Predictor("engagement", detector="mtcnn").predict(rgb)
    for index in range(3):
        summary.add(FrameResult("v", index, index / 10, [face], 512, 512))
    points = np.array(summary.timeline[face.face_id])
    assert points.shape == (3, 3 + len(TIMELINE_CUES))
    assert points[0, 3] == pytest.approx(face.cues.yaw)
    assert isinstance(face, FaceResult)


@pytest.mark.skipif(not (DATA / "behaviour").is_dir(), reason="../shared/data/behaviour is absent (real data)")
def test_closed_eyes_and_yawns_read_as_such_on_real_faces(mesh):
    detector = create_detector("mtcnn")

    def cues_of(folder: str, label: str, count: int = 12) -> list:
        with open(DATA / folder / "labels.csv", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["label"] == label][:count]
        found = []
        for row in rows:
            rgb = cv2.cvtColor(cv2.imread(str(DATA / folder / row["path"])), cv2.COLOR_BGR2RGB)
            pad = max(rgb.shape[:2]) // 2
            rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            boxes = detector.detect(rgb)
            landmarks = mesh.landmarks(rgb, boxes[0]) if boxes else None
            if landmarks is not None:
                found.append(face_cues(landmarks))
        return found

    closed = cues_of("behaviour/closed_eyes", "closed")
    yawns, others = cues_of("behaviour/yawn", "yawn"), cues_of("behaviour/yawn", "no_yawn")
    assert len(closed) >= 8 and len(yawns) >= 8 and len(others) >= 8
    assert np.median([c.eyes_open for c in closed]) < 0.2
    assert np.median([c.mouth_open for c in yawns]) > 3 * np.median([c.mouth_open for c in others])


def test_the_landmark_box_frames_a_face_alike_whichever_detector_found_it(mesh, faces):
    """Cut from the box its face mesh places, the astronaut's crop hardly depends on the detector (MTCNN or YuNet) or
    on a box grown or shifted by a tenth; cut from the detectors' own boxes it moves more."""
    from engage.faces.crop import FaceSettings, box_on_landmarks, cut_face, to_gray

    rgb, mtcnn_box = faces["astronaut"]
    yunet_box = create_detector("yunet").detect(rgb)[0]
    jittered = FaceBox(
        mtcnn_box.x - mtcnn_box.w // 10,
        mtcnn_box.y + mtcnn_box.h // 10,
        int(mtcnn_box.w * 1.1),
        int(mtcnn_box.h * 1.1),
        mtcnn_box.confidence,
    )
    gray, settings = to_gray(rgb), FaceSettings()

    def crops(on_landmarks: bool) -> list[np.ndarray]:
        boxes = [mtcnn_box, yunet_box, jittered]
        if on_landmarks:
            boxes = [box_on_landmarks(box, mesh.landmarks(rgb, box)) for box in boxes]
        return [cut_face(gray, box, settings).astype(float) for box in boxes]

    def difference(cut: list[np.ndarray]) -> float:
        return max(float(np.abs(a - cut[0]).mean()) for a in cut[1:])

    assert difference(crops(True)) < 0.5 * difference(crops(False))
    assert difference(crops(True)) < 8.0  # gray levels, out of 255


def test_an_unknown_box_setting_is_refused():
    from engage.errors import UsageError
    from engage.faces.crop import FaceSettings

    with pytest.raises(UsageError, match="box must be one of detector, landmarks"):
        FaceSettings(box="nose")


def test_evaluate_measures_the_cues_from_the_images_and_applies_the_models_head(tmp_path):
    """engage evaluate on images scores them as predict does: the shipped model's cue head moves p_engaged, the cues
    measured from the original images (and --no-cues gives the appearance alone)."""
    from engage.evaluation.evaluate import evaluate_model

    images = sample_images()
    for label, names in (("engaged", ("astronaut.png", "group.png")), ("disengaged", ("cameraman.png",))):
        (tmp_path / "faces" / label).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(tmp_path / "faces" / label / name), cv2.cvtColor(images[name], cv2.COLOR_RGB2BGR))
    out_on, out_off = tmp_path / "on", tmp_path / "off"
    on = evaluate_model("engagement", str(tmp_path / "faces"), out_dir=str(out_on), n_boot=0, log=lambda line: None)
    off = evaluate_model(
        "engagement", str(tmp_path / "faces"), out_dir=str(out_off), n_boot=0, log=lambda line: None, cues=False
    )
    assert on["cues"] == {"cue_head": True, "applied": True, "faces_with_cues": 3}
    assert off["cues"]["applied"] is False
    predicted = {
        row["path"].split("/")[-1]: float(row["p_engaged"])
        for row in csv.DictReader((out_on / "predictions.csv").open())
    }
    faces = {name: Predictor("engagement", detector="mtcnn").predict(images[name])[0] for name in predicted}
    for name, p in predicted.items():  # the biggest face of each image, as predict scores it
        assert (p >= 0.5) == (faces[name].p_engaged_raw >= 0.5), name
        if abs(faces[name].cues.yaw) < 30:  # a face turned far aside: its mesh, placed by another box, moves more
            assert p == pytest.approx(faces[name].p_engaged_raw, abs=2e-3), name


def test_a_face_crop_without_a_detector_is_cut_from_its_landmark_box_inside_the_image(faces):
    """With detector 'none' (the image is a face crop) the shipped model cuts the crop's landmark box, which may run
    past the crop's edge: it is kept inside the image, and the tight crop scores as the face in its photo does."""
    rgb, box = faces["astronaut"]
    tight = np.ascontiguousarray(rgb[box.y : box.y + box.h, box.x : box.x + box.w])
    [whole] = Predictor("engagement", detector="none").predict(tight)
    [found] = Predictor("engagement", detector="mtcnn").predict(rgb)
    assert whole.label == found.label == "engaged"
    assert abs(whole.p_engaged - found.p_engaged) < 0.15


def test_predict_proba_without_cues_is_a_face_without_landmarks(faces):
    """The public predict_proba with no cues applies the cue head's scale and bias, as predict does for a face whose
    landmarks were not found."""
    predictor = Predictor("engagement", detector="mtcnn")
    [face] = predictor.predict(faces["astronaut"][0])
    without = predictor.predict_proba(face.face[None])
    nan = predictor.predict_proba(face.face[None], np.full((1, len(CUE_COLUMNS)), np.nan))
    plain = Predictor("engagement", detector="mtcnn", cues=False).predict_proba(face.face[None])
    assert without == pytest.approx(nan) and not np.allclose(without, plain)
