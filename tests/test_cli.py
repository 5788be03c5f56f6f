"""The command line as a user meets it: the sample run, the cache, and every kind of bad input."""

import json

import pytest
from conftest import assert_one_line_error, run_cli, write_image

from engage.data.dataset import FaceDataset


def test_sample_run_finds_faces_and_writes_crops(tmp_path):
    result = run_cli(
        "preprocess", "--sample", "--out", str(tmp_path / "s.npz"), "--save-crops", str(tmp_path / "crops"), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["detected"] == 3 and report["no-face"] == 1
    assert report["faces_per_image"] == {"astronaut.png": 1, "cameraman.png": 1, "coffee.png": 0, "group.png": 3}
    assert sorted(p.name for p in (tmp_path / "crops").iterdir()) == [
        "sample__astronaut.png",
        "sample__cameraman.png",
        "sample__group.png",
    ]
    dataset = FaceDataset.load(str(tmp_path / "s.npz"))
    assert dataset.faces.shape == (3, 48, 48) and list(dataset.labels) == [-1, -1, -1]
    assert dataset.meta["settings"]["detector"] == "mtcnn"


def test_readable_summary_says_no_face_plainly(tmp_path):
    result = run_cli("preprocess", "--sample", "--out", str(tmp_path / "s.npz"))
    assert result.returncode == 0
    assert "coffee.png: no face found" in result.stdout and "group.png: 3 face(s)" in result.stdout


def make_folder(root, astronaut, n=3):
    for label in ("engaged", "bored"):
        for i in range(n):
            write_image(root / label / f"img{i}_{label}.png", astronaut[::2, ::2])
    return root


def test_cache_is_reused_and_new_files_processed(tmp_path, astronaut):
    folder = make_folder(tmp_path / "data", astronaut)
    out = str(tmp_path / "d.npz")
    first = json.loads(run_cli("preprocess", str(folder), "--out", out, "--json").stdout)
    assert first["detected"] == 6 and first["reused_from_cache"] == 0
    second = json.loads(run_cli("preprocess", str(folder), "--out", out, "--json").stdout)
    assert second["reused_from_cache"] == 6 and second["up_to_date"] is True
    write_image(folder / "engaged" / "new.png", astronaut[::2, ::2])
    third = json.loads(run_cli("preprocess", str(folder), "--out", out, "--json").stdout)
    assert third["reused_from_cache"] == 6 and third["images"] == 7 and third["faces"] == 7
    changed = json.loads(run_cli("preprocess", str(folder), "--out", out, "--margin", "0.1", "--json").stdout)
    assert changed["reused_from_cache"] == 0  # other settings: nothing reused


def test_corrupt_files_are_reported_and_skipped_strict_makes_them_fatal(tmp_path, astronaut):
    folder = make_folder(tmp_path / "data", astronaut, n=2)
    (folder / "engaged" / "zero.jpg").write_bytes(b"")
    (folder / "engaged" / "text.png").write_text("hello")
    full = (folder / "bored" / "img0_bored.png").read_bytes()
    (folder / "bored" / "cut.png").write_bytes(full[: len(full) // 3])
    out = tmp_path / "d.npz"
    result = run_cli("preprocess", str(folder), "--out", str(out), "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["unreadable"] == 3 and report["faces"] == 4
    assert "zero.jpg" in result.stderr and "Traceback" not in result.stderr
    strict_out = tmp_path / "strict.npz"
    strict = run_cli("preprocess", str(folder), "--out", str(strict_out), "--strict")
    assert_one_line_error(strict, "--strict")
    assert strict.returncode == 1 and not strict_out.exists()


@pytest.mark.parametrize(
    "case", ["empty-folder", "missing", "all-corrupt", "bad-csv", "bad-pixels", "not-npz", "no-src"]
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, case):
    out = tmp_path / "out.npz"
    args = []
    if case == "empty-folder":
        (tmp_path / "empty").mkdir()
        args, words = [str(tmp_path / "empty")], ["holds no images"]
    elif case == "missing":
        args, words = [str(tmp_path / "nowhere")], ["no such file or folder"]
    elif case == "all-corrupt":
        for i in range(3):
            (tmp_path / "junk" / "a").mkdir(parents=True, exist_ok=True)
            (tmp_path / "junk" / "a" / f"{i}.jpg").write_bytes(b"\xff\xd8garbage")
        args, words = [str(tmp_path / "junk")], ["no image could be read"]
    elif case == "bad-csv":
        (tmp_path / "m.csv").write_text("filename,klass\nx.png,a\n")
        args, words = [str(tmp_path / "m.csv")], ["missing column", "path"]
    elif case == "bad-pixels":
        (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
        args, words = [str(tmp_path / "fer2013.csv")], ["row 2", "expected 2304"]
    elif case == "not-npz":
        out = tmp_path / "out.txt"
        args, words = ["--sample"], [".npz"]
    elif case == "no-src":
        args, words = [], ["--sample"]
    result = run_cli("preprocess", *args, "--out", str(out))
    assert_one_line_error(result, *words)
    assert not out.exists()
    assert list(tmp_path.rglob(".tmp-*")) == []


def test_existing_foreign_file_is_not_overwritten(tmp_path):
    out = tmp_path / "precious.npz"
    out.write_bytes(b"my own data")
    result = run_cli("preprocess", "--sample", "--out", str(out))
    assert_one_line_error(result, "not an engage dataset")
    assert out.read_bytes() == b"my own data"


def test_usage_errors_exit_2_and_help_shows_an_example():
    bad = run_cli("preprocess", "--sample", "--out", "x.npz", "--detector", "haar")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    help_text = run_cli("preprocess", "--help")
    assert help_text.returncode == 0 and "engage preprocess --sample" in help_text.stdout


def test_no_face_whole_image_and_no_detect_keep_crops(tmp_path, sample_images):
    folder = tmp_path / "data" / "x"
    write_image(folder / "coffee.png", sample_images["coffee.png"])
    write_image(folder / "astronaut.png", sample_images["astronaut.png"])
    out = str(tmp_path / "d.npz")
    report = json.loads(
        run_cli("preprocess", str(tmp_path / "data"), "--out", out, "--no-face", "whole-image", "--json").stdout
    )
    assert report["detected"] == 1 and report["whole-image"] == 1 and report["faces"] == 2
    report = json.loads(run_cli("preprocess", str(tmp_path / "data"), "--out", out, "--no-detect", "--json").stdout)
    assert report["no-detect"] == 2
    dataset = FaceDataset.load(out)
    assert set(dataset.face_source) == {"no-detect"} and dataset.settings.detector is None


def test_subject_split_and_folds_from_the_cli(tmp_path, astronaut):
    root = tmp_path / "data"
    for subject in range(6):
        for frame in range(2):
            label = "engaged" if (subject + frame) % 2 else "bored"
            write_image(root / label / f"img{subject}_{frame}.png", astronaut[::2, ::2])
    out = str(tmp_path / "d.npz")
    result = run_cli(
        "preprocess",
        str(root),
        "--out",
        out,
        "--subject-pattern",
        r"img(\d+)_",
        "--split",
        "subject",
        "--val-fraction",
        "0.34",
        "--folds",
        "3",
        "--no-detect",
    )
    assert result.returncode == 0, result.stderr
    dataset = FaceDataset.load(out)
    assert sorted(set(dataset.subjects)) == [str(i) for i in range(6)]
    for subject in set(dataset.subjects):
        assert len(set(dataset.split[dataset.subjects == subject])) == 1
        assert len(set(dataset.fold[dataset.subjects == subject])) == 1
    assert set(dataset.split) == {"train", "val"} and set(dataset.fold) == {0, 1, 2}


def test_leaking_source_split_is_refused(tmp_path, astronaut):
    write_image(tmp_path / "a.png", astronaut[::4, ::4])
    write_image(tmp_path / "b.png", astronaut[::4, ::4])
    (tmp_path / "m.csv").write_text("path,label,subject,split\na.png,x,s1,train\nb.png,y,s1,val\n")
    result = run_cli("preprocess", str(tmp_path / "m.csv"), "--out", str(tmp_path / "d.npz"), "--no-detect")
    assert_one_line_error(result, "s1", "more than one side")
