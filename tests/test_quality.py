"""No judgement where there is nothing to judge: a face too small, too blurred, turned to the side or weakly
detected is labelled 'uncertain' with its reasons in the quality column (default on, --no-abstain switches it off),
and evaluate reports the coverage beside every metric and a risk-coverage curve."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import make_dataset, run_cli, write_image

from engage.faces.detect import FaceBox
from engage.faces.quality import THRESHOLDS, FaceQuality, head_turn, measure_face, sharpness

ASTRONAUT_FACE = (179, 60, 89, 113)  # MTCNN's box of the astronaut's face


def face_crop(astronaut: np.ndarray, side: int, blur_sigma: float = 0.0, gray: bool = False) -> np.ndarray:
    """The astronaut's face as a square crop of `side` pixels (a ready-made crop, as --detector none takes it);
    gray: one channel, as the shipped model sees it."""
    x, y, w, h = ASTRONAUT_FACE
    square = astronaut[y : y + h, x - (h - w) // 2 : x - (h - w) // 2 + h]
    if blur_sigma:
        square = cv2.GaussianBlur(square, (0, 0), blur_sigma)
    crop = cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if gray else crop


def test_the_measures_mean_what_they_say(astronaut):
    sharp = face_crop(astronaut, 48)
    assert sharpness(sharp) > 2 * sharpness(cv2.GaussianBlur(sharp, (0, 0), 2.0))
    assert sharpness(sharp) == pytest.approx(sharpness(np.clip(sharp * 0.5 + 40, 0, 255).astype(np.uint8)), rel=0.05)
    assert sharpness(np.full((48, 48), 128, np.uint8)) == 0.0  # a flat patch shows nothing
    frontal = ((100, 100), (140, 100), (120, 125), (105, 150), (135, 150))
    turned = ((100, 100), (120, 100), (135, 125), (105, 150), (125, 150))  # nose far past the eyes' middle
    assert head_turn(frontal) == pytest.approx(0.0) and head_turn(turned) == pytest.approx(1.25)
    assert head_turn(None) is None and head_turn(np.full((5, 2), np.nan)) is None
    quality = measure_face(FaceBox(0, 0, 30, 40, 0.93, frontal), sharp)
    assert (quality.size_px, quality.turn, quality.det_conf) == (30.0, 0.0, 0.93)


def test_each_reason_is_given_by_its_own_threshold():
    good = FaceQuality(size_px=90.0, sharpness=0.6, turn=0.1, det_conf=0.999)
    assert THRESHOLDS.reasons(good, "mtcnn") == []
    below = {
        "size_px": THRESHOLDS.min_size_px - 1,
        "sharpness": THRESHOLDS.min_sharpness / 2,
        "turn": THRESHOLDS.max_turn + 0.5,
        "det_conf": THRESHOLDS.min_det_conf["mtcnn"] - 0.01,
    }
    reason = {"size_px": "small", "sharpness": "blurred", "turn": "side-view", "det_conf": "weak-detection"}
    for field, value in below.items():
        assert THRESHOLDS.reasons(FaceQuality(**{**good.__dict__, field: value}), "mtcnn") == [reason[field]]
    # confidence is a detector's own scale: a whole image given as a face (detector 'none') is not checked for it
    assert THRESHOLDS.reasons(FaceQuality(**{**good.__dict__, "det_conf": 0.5}), None) == []
    assert THRESHOLDS.reasons(FaceQuality(90.0, 0.6, None, 0.999), "dlib") == []  # no landmarks: no turn to judge


def test_a_tiny_or_blurred_face_is_uncertain_and_says_why_and_no_abstain_judges_it(astronaut, tmp_path):
    sharp = write_image(tmp_path / "sharp.png", face_crop(astronaut, 96))
    tiny = write_image(tmp_path / "tiny.png", face_crop(astronaut, int(THRESHOLDS.min_size_px) // 2))
    blurred = write_image(tmp_path / "blurred.png", face_crop(astronaut, 96, blur_sigma=8.0))
    out = tmp_path / "faces.csv"
    result = run_cli("predict", str(sharp), str(tiny), str(blurred), "--detector", "none", "--csv", str(out), "--json")
    assert result.returncode == 0, result.stderr
    faces = {
        json.loads(line)["source"].split("/")[-1]: json.loads(line)["faces"][0] for line in result.stdout.splitlines()
    }
    assert faces["sharp.png"]["quality"] == "ok" and faces["sharp.png"]["label"] != "uncertain"
    assert faces["tiny.png"]["label"] == "uncertain" and "small" in faces["tiny.png"]["quality"].split("+")
    assert faces["blurred.png"]["label"] == "uncertain" and faces["blurred.png"]["quality"] == "blurred"
    assert all(face["p_engaged"] is not None for face in faces.values())  # the score is still there to see
    with open(out, newline="") as handle:
        rows = {row["source"].split("/")[-1]: row for row in csv.DictReader(handle)}
    assert rows["tiny.png"]["label"] == "uncertain" and rows["blurred.png"]["quality"] == "blurred"
    text = run_cli("predict", str(blurred), "--detector", "none")
    assert "#1 uncertain (blurred)" in text.stdout
    judged = run_cli("predict", str(tiny), str(blurred), "--detector", "none", "--no-abstain", "--json")
    assert judged.returncode == 0, judged.stderr
    for line in judged.stdout.splitlines():
        face = json.loads(line)["faces"][0]
        assert face["label"] in ("engaged", "disengaged") and face["quality"] != "ok"  # judged, reasons still told


def test_an_uncertain_frame_stays_out_of_the_smoothing(astronaut):
    from engage.inference.predictor import Predictor
    from engage.inference.tracking import EmaSmoother

    predictor = Predictor("engagement", detector="none", smoothing_s=1.0)
    smoother = EmaSmoother(1.0)
    box = FaceBox(0, 0, 96, 96, 1.0)
    good, bad = face_crop(astronaut, 48, gray=True), face_crop(astronaut, 48, blur_sigma=8.0, gray=True)
    proba = predictor.predict_proba(np.stack([good, bad]))
    first = predictor.judged(1, box, proba[0], None, good, None, 0.0, smoother)
    blurred = predictor.judged(1, box, proba[1], None, bad, None, 0.1, smoother)
    after = predictor.judged(1, box, proba[0], None, good, None, 0.2, smoother)
    assert blurred.label == "uncertain" and blurred.p_engaged == pytest.approx(blurred.p_engaged_raw)
    assert after.p_engaged == pytest.approx(first.p_engaged, abs=1e-6)  # the blurred frame moved nothing


def test_evaluate_reports_coverage_beside_every_metric_and_a_risk_coverage_curve(tmp_path, astronaut):
    from engage.models.loading import load_model

    rng = np.random.default_rng(0)
    good = [face_crop(astronaut, 48, gray=True)] * 10
    faces = np.stack(
        good
        + [face_crop(astronaut, 48, blur_sigma=8.0, gray=True)] * 4
        + list(rng.integers(0, 256, (10, 48, 48)).astype(np.uint8))
    )
    labels = [1] * 7 + [0] * 3 + [1, 0, 1, 0] + [0] * 5 + [1] * 5
    dataset = make_dataset(faces, labels, ["disengaged", "engaged"], subjects=[f"s{i % 4}" for i in range(24)])
    dataset.meta["settings"] = load_model("engagement").face_settings
    dataset.face_source = np.array(["detected"] * 24)
    dataset.boxes = np.tile(np.array([0, 0, 96, 96], np.int32), (24, 1))
    dataset.save(str(tmp_path / "faces.npz"))
    result = run_cli(
        "evaluate",
        "--model",
        "engagement",
        "--data",
        str(tmp_path / "faces.npz"),
        "--bootstrap",
        "20",
        "--out",
        str(tmp_path / "eval"),
    )
    assert result.returncode == 0, result.stderr
    assert "24 faces, 20 judged (coverage 83.3%: not judged blurred 4)" in result.stdout
    assert "all faces" in result.stdout and "risk-coverage" in result.stdout
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["n"] == 20 and report["coverage"] == pytest.approx(20 / 24) and report["all_faces"]["n"] == 24
    curve = report["risk_coverage"]
    assert curve["curve"][-1][0] == 1.0 and curve["quality_rule"]["coverage"] == pytest.approx(20 / 24)
    assert (tmp_path / "eval" / "risk_coverage.png").exists()
    with open(tmp_path / "eval" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(row["predicted"] == "uncertain" for row in rows) == 4 and rows[10]["quality"] == "blurred"
    everything = json.loads(
        run_cli(
            "evaluate",
            "--model",
            "engagement",
            "--data",
            str(tmp_path / "faces.npz"),
            "--bootstrap",
            "20",
            "--no-abstain",
            "--json",
        ).stdout
    )
    assert everything["n"] == 24 and everything["coverage"] == 1.0
