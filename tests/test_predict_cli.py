"""`engage predict` as a user meets it: the sample run, folders with broken files, outputs only when asked,
and one clear line for every kind of bad input."""

import csv
import json

import pytest
from conftest import assert_one_line_error, run_cli, write_image
from PIL import Image

pytest_plugins = ["predict_fixtures"]


def test_sample_run_prints_a_summary_per_photo_and_writes_nothing(engagement_model, tmp_path):
    result = run_cli("predict", "--sample", "--model", engagement_model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("astronaut.png: 1 face: #1 ")
    assert lines[1].startswith("group.png: 3 faces: #1 ")
    assert lines[2].startswith("cameraman.png: 1 face: #1 ")
    assert lines[3] == "coffee.png: no face found"
    assert "4 input(s) scored" in lines[4] and "detector mtcnn" in lines[4]
    assert list(tmp_path.iterdir()) == []  # privacy: nothing but the printed results


def test_json_is_one_object_per_input(engagement_model):
    result = run_cli("predict", "--sample", "--model", engagement_model, "--json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["source"]: len(o["faces"]) for o in objects} == {
        "astronaut.png": 1,
        "group.png": 3,
        "cameraman.png": 1,
        "coffee.png": 0,
    }
    face = objects[0]["faces"][0]
    assert set(face) >= {"face_id", "box", "det_conf", "p_engaged", "p_engaged_raw", "label", "probabilities"}
    assert face["probabilities"]["engaged"] == pytest.approx(face["p_engaged"], abs=1e-4)


def test_expressions_with_fewer_test_time_views(engagement_model, fer_model, sample_images, tmp_path):
    photo = write_image(tmp_path / "astronaut.png", sample_images["astronaut.png"])
    result = run_cli(
        "predict",
        str(photo),
        "--model",
        engagement_model,
        "--expressions",
        "--fer-model",
        fer_model,
        "--expression-views",
        "one",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    face = json.loads(result.stdout)["faces"][0]
    # each of the 7 probabilities is rounded to 4 decimals in the JSON, so their sum is 1 within 7 x 0.00005
    assert face["expression"] == "happy" and sum(face["expressions"].values()) == pytest.approx(1.0, abs=3.5e-4)


def test_folder_broken_files_are_reported_and_skipped(engagement_model, sample_images, tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "astronaut.jpg", sample_images["astronaut.png"])
    write_image(photos / "day2" / "group.png", sample_images["group.png"])
    write_image(photos / "day2" / "coffee.png", sample_images["coffee.png"])
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "day2" / "notes.png").write_text("not a picture")
    (photos / "readme.txt").write_text("ignored: neither an image nor a video")
    out_csv, annotated, crops = tmp_path / "faces.csv", tmp_path / "annotated", tmp_path / "crops"
    # --min-confidence 0.95: the JPEG of the astronaut holds a "face" of 27x35 px that MTCNN finds at a confidence
    # of about 0.906, just above its default cut of 0.9, with some JPEG encoders only; the real faces score >= 0.999
    result = run_cli(
        "predict",
        str(photos),
        "--model",
        engagement_model,
        "--csv",
        str(out_csv),
        "--annotate",
        str(annotated),
        "--save-crops",
        str(crops),
        "--min-confidence",
        "0.95",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2 and "zero.jpg" in result.stderr and "notes.png" in result.stderr
    assert "day2/coffee.png: no face found" in result.stdout
    assert "skipped 2 unreadable input(s)" in result.stdout and "ignored 1 file(s)" in result.stdout
    with open(out_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["source"].split("photos/")[1], r["face_id"]) for r in rows) == [
        ("astronaut.jpg", "1"),
        ("day2/group.png", "1"),
        ("day2/group.png", "2"),
        ("day2/group.png", "3"),
    ]
    assert all(r["frame"] == "0" and r["time_s"] == "0.000" for r in rows)
    assert sorted(p.name for p in annotated.iterdir()) == [
        "photos__astronaut.jpg",
        "photos__day2__coffee.png",
        "photos__day2__group.png",
    ]
    assert sorted(p.name for p in crops.iterdir()) == [  # the 48x48 faces that were scored, only when asked
        "photos__astronaut_face1.png",
        "photos__day2__group_face1.png",
        "photos__day2__group_face2.png",
        "photos__day2__group_face3.png",
    ]
    assert Image.open(crops / "photos__astronaut_face1.png").size == (48, 48)


@pytest.mark.parametrize(
    "case",
    [
        "broken-video",
        "missing-camera",
        "unknown-model",
        "empty-folder",
        "missing-path",
        "corrupt-image",
        "annotate-over-input",
        "views-of-an-onnx-model",
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(case, tmp_path, sample_images):
    out_csv = tmp_path / "out" / "faces.csv"
    args = {
        "broken-video": lambda: [str(_write(tmp_path / "talk.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(3000)))],
        "missing-camera": lambda: ["--webcam", "9"],
        "unknown-model": lambda: ["--sample", "--model", "no-such-model"],
        "empty-folder": lambda: [str(_mkdir(tmp_path / "empty"))],
        "missing-path": lambda: [str(tmp_path / "nowhere.jpg")],
        "corrupt-image": lambda: [str(_write(tmp_path / "cut.jpg", b"\xff\xd8\xff\xe0" + bytes(100)))],
        "annotate-over-input": lambda: [
            str(write_image(tmp_path / "in" / "a.png", sample_images["astronaut.png"])),
            "--annotate",
            str(tmp_path / "in"),
        ],
        "views-of-an-onnx-model": lambda: [
            "--sample",
            "--expressions",
            "--backend",
            "onnx",
            "--fer-model",
            str(tmp_path / "fer.onnx"),
            "--expression-views",
            "one",
        ],
    }[case]()
    expected = {
        "broken-video": ["talk.mp4", "cannot be opened as a video"],
        "missing-camera": ["camera 9", "--webcam"],
        "unknown-model": ["no-such-model", "shipped model"],
        "empty-folder": ["empty", "holds no images or videos"],
        "missing-path": ["nowhere.jpg", "no such file or folder"],
        "corrupt-image": ["cut.jpg"],
        "annotate-over-input": ["a.png", "overwrite an input"],
        "views-of-an-onnx-model": ["fer.onnx", "test-time views are built in"],
    }[case]
    result = run_cli("predict", *args, "--csv", str(out_csv))
    assert_one_line_error(result, *expected)
    assert not out_csv.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []  # no temp file left


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    return path
