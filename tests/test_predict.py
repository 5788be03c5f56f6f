"""Predictor on real photos: every face found, biggest first, sensible boxes, scores exactly as `engage evaluate`
computes them, any image form, and plain answers for pictures without a face."""

import numpy as np
import pytest
from conftest import write_image
from PIL import Image

from engage.errors import EngageError, UsageError

pytest_plugins = ["predict_fixtures"]  # the shared model and predictor fixtures

# The astronaut's face in scikit-image's astronaut photo (x, y, w, h), labelled by hand.
ASTRONAUT_FACE = (180, 60, 92, 118)
# How engage.sample tiles the astronaut into its 'group' picture: (scale, x, y).
GROUP_PLACEMENTS = [(1.0, 0, 0), (0.6, 540, 40), (0.4, 800, 260)]

FER_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def box_iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_group_picture_every_face_biggest_first_in_the_right_place(predictor, sample_images):
    faces = predictor.predict(sample_images["group.png"])
    assert len(faces) == 3
    assert [face.face_id for face in faces] == [1, 2, 3]
    areas = [face.box.area for face in faces]
    assert areas == sorted(areas, reverse=True) and areas[0] > 4 * areas[2]
    for face, (scale, x, y) in zip(faces, GROUP_PLACEMENTS):
        fx, fy, fw, fh = ASTRONAUT_FACE
        expected = (x + scale * fx, y + scale * fy, scale * fw, scale * fh)
        assert box_iou(face.box.as_list(), expected) > 0.5, (face.box, expected)
        assert face.det_conf > 0.9


def test_scores_are_the_models_probabilities_on_the_trained_crop(predictor, sample_images, engagement_model):
    """The biggest face is cropped exactly as pre-processing did at training, so the score is what
    `engage evaluate` would give for this photo, moved by the face's attention cues as the model's cue head says."""
    from engage.faces.crop import FaceSettings, extract_face
    from engage.inference.predictor import cue_array
    from engage.models.loading import load_model

    classifier = load_model(engagement_model)
    assert classifier.class_names == ["disengaged", "engaged"]
    for name in ("astronaut.png", "cameraman.png"):
        rgb = sample_images[name]
        crop = extract_face(rgb, predictor.detector, FaceSettings.from_dict(classifier.face_settings))
        expected = classifier.predict_proba(crop.face[None])[0]
        face = predictor.predict(rgb)[0]
        assert face.cues is not None and classifier.cue_head is not None
        expected = classifier.cue_head.apply(expected[None], cue_array([face.cues]), 1)[0]
        assert np.array_equal(face.face, crop.face)  # the very same 48x48 pixels
        np.testing.assert_allclose(
            [face.probabilities["disengaged"], face.probabilities["engaged"]], expected, atol=1e-6
        )
        assert face.p_engaged == pytest.approx(float(expected[1]), abs=1e-6)
        assert face.p_engaged == face.p_engaged_raw
        assert face.label == ("engaged" if face.p_engaged >= classifier.decision.threshold else "disengaged")


def test_path_array_gray_and_pil_give_the_same_faces(predictor, sample_images, tmp_path):
    rgb = sample_images["astronaut.png"]
    path = write_image(tmp_path / "astronaut.png", rgb)
    from_array = predictor.predict(rgb)
    for image in (str(path), path, Image.fromarray(rgb)):
        faces = predictor.predict(image)
        assert [f.box for f in faces] == [f.box for f in from_array]
        assert faces[0].p_engaged == pytest.approx(from_array[0].p_engaged, abs=1e-6)
    gray = predictor.predict(sample_images["cameraman.png"][:, :, 0])  # a 2-D gray array
    assert len(gray) == 1


def test_no_face_is_an_empty_result(predictor, sample_images):
    assert predictor.predict(sample_images["coffee.png"]) == []


def test_a_batch_scores_like_single_images(predictor, sample_images):
    images = [sample_images[n] for n in ("group.png", "coffee.png", "astronaut.png")]
    batch = predictor.predict_batch(images)
    assert [len(faces) for faces in batch] == [3, 0, 1]
    single = predictor.predict(images[2])
    assert batch[2][0].p_engaged == pytest.approx(single[0].p_engaged, abs=1e-5)


def test_expressions_are_the_fer_models_seven_probabilities(predictor, sample_images):
    face = predictor.predict(sample_images["astronaut.png"])[0]
    assert list(face.expressions) == FER_CLASSES
    assert sum(face.expressions.values()) == pytest.approx(1.0, abs=1e-4)
    assert face.expression == "happy"  # she is smiling broadly
    as_dict = face.to_dict()
    assert as_dict["expression"] == "happy" and as_dict["box"] == face.box.as_list()


def test_expression_views_trade_views_for_speed_and_stay_close(engagement_model, fer_model, predictor, sample_images):
    from engage.errors import UsageError
    from engage.inference.predictor import Predictor, load_scoring_model
    from engage.models.loading import load_model

    faces = load_model(fer_model)
    assert len(faces.network.test_time_views) == 8 and faces.network.test_time_flip  # 'model': as the card says
    group = sample_images["group.png"]
    full = [face.expressions for face in predictor.predict(group)]
    for views, flip in (("flip", True), ("one", False)):
        fewer = Predictor(engagement_model, expressions=True, expression_model=fer_model, expression_views=views)
        assert (
            fewer.expression_model.network.test_time_views == ()
            and fewer.expression_model.network.test_time_flip == flip
        )
        changed = [face.expressions for face in fewer.predict(group)]
        assert len(changed) == len(full) == 3
        gaps = [max(abs(a[k] - b[k]) for k in a) for a, b in zip(full, changed)]
        assert max(gaps) < 0.25 and max(gaps) > 1e-4, gaps  # other views, so other (but similar) probabilities
    with pytest.raises(UsageError, match="unknown views 'all'"):
        load_scoring_model(fer_model, views="all")


def test_fast_settings_find_the_same_faces(fast_predictor, predictor, sample_images):
    assert fast_predictor.half_size_detection and fast_predictor.backend == "onnx"
    for name, count in (("astronaut.png", 1), ("group.png", 3), ("cameraman.png", 1), ("coffee.png", 0)):
        fast = fast_predictor.predict(sample_images[name])
        slow = predictor.predict(sample_images[name])
        assert len(fast) == count
        for a, b in zip(fast, slow):
            assert box_iou(a.box.as_list(), b.box.as_list()) > 0.5


def test_bad_settings_and_models_are_clear_errors(engagement_model):
    from engage.inference.predictor import Predictor

    with pytest.raises(UsageError, match="unknown detector 'retina'"):
        Predictor(engagement_model, detector="retina")
    with pytest.raises(UsageError, match="unknown backend"):
        Predictor(engagement_model, backend="tensorrt")
    with pytest.raises(EngageError, match="'no-such-model' is neither a file nor a shipped model"):
        Predictor("no-such-model")


@pytest.mark.parametrize(
    "options",
    [
        ["--margin", "0.3", "--border", "pad", "--align", "--size", "64", "--color"],
        ["--margin", "0.5", "--size", "32"],
        ["--box", "landmarks"],
        ["--box", "landmarks", "--margin", "0.2", "--border", "pad"],
    ],
)
def test_predict_cuts_faces_exactly_as_preprocess_did_for_any_crop_setting(options, tmp_path, sample_images):
    """The crop a model was trained on (preprocess) and the crop predict scores are the same pixels, whatever the
    margin, border, alignment, size or colour."""

    from conftest import run_cli

    from engage.data.dataset import FaceDataset
    from engage.inference.predictor import Predictor
    from engage.models.checkpoint import save_model
    from engage.models.networks import build_model

    result = run_cli("preprocess", "--sample", "--out", str(tmp_path / "s.npz"), *options)
    assert result.returncode == 0, result.stderr
    dataset = FaceDataset.load(str(tmp_path / "s.npz"))
    settings = dataset.settings
    network = build_model("compact", 2, width=8, in_channels=settings.channels)
    save_model(
        str(tmp_path / "m.safetensors"),
        network,
        {
            "model": "compact",
            "num_classes": 2,
            "class_names": ["disengaged", "engaged"],
            "model_args": {"width": 8, "in_channels": settings.channels},
            "face_settings": settings.to_dict(),
        },
    )
    predictor = Predictor(str(tmp_path / "m.safetensors"), smoothing_s=0)
    for path, face in zip(dataset.paths, dataset.faces):
        name = str(path).split("#")[-1].split("/")[-1]
        scored = predictor.predict(sample_images[name])[0].face  # the biggest face, as preprocess keeps
        assert scored.shape == settings.shape
        assert np.array_equal(scored, face), name


def test_an_aligned_model_refuses_a_detector_without_reliable_landmarks(tmp_path):
    from engage.faces.crop import FaceSettings
    from engage.inference.predictor import Predictor
    from engage.models.checkpoint import save_model
    from engage.models.networks import build_model

    settings = FaceSettings(align=True).to_dict()
    save_model(
        str(tmp_path / "m.safetensors"),
        build_model("compact", 2, width=8),
        {
            "model": "compact",
            "num_classes": 2,
            "class_names": ["disengaged", "engaged"],
            "model_args": {"width": 8},
            "face_settings": settings,
        },
    )
    for detector in ("yunet", "dlib", "none"):
        with pytest.raises(UsageError, match="upright on the eye landmarks of mtcnn"):
            Predictor(str(tmp_path / "m.safetensors"), detector=detector)
    with pytest.raises(UsageError, match="--align"):
        FaceSettings(align=True, detector=None)
