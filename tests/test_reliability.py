"""Rows of docs/RELIABILITY.md that no other test covers: odd images, folders, CSVs, model files and a full disk."""

from __future__ import annotations

import os
import pickle
import resource
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, write_image
from PIL import Image

from engage.data.readers import read_samples
from engage.errors import EngageError
from engage.io.files import walk_files
from engage.io.images import read_image

pytest_plugins = ["predict_fixtures"]


def test_odd_but_valid_images_are_read_as_rgb(tmp_path, astronaut):
    """1x1, CMYK, palette and animated images: read (the first frame of an animation), never an error."""
    Image.fromarray(astronaut[:1, :1]).save(tmp_path / "one.png")
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(astronaut).convert("P").save(tmp_path / "palette.png")
    frames = [Image.fromarray(astronaut), Image.fromarray(astronaut[::-1].copy())]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert read_image(tmp_path / "one.png").shape == (1, 1, 3)
    for name in ("cmyk.jpg", "palette.png", "anim.gif"):
        image = read_image(tmp_path / name)
        assert image.shape == astronaut.shape and image.dtype == np.uint8, name
        # the right colours, not inverted CMYK or palette indices: close to the original (lossy formats)
        assert np.abs(image.astype(int) - astronaut.astype(int)).mean() < 20, name


def test_a_1x1_image_is_a_picture_with_no_face(tmp_path, astronaut, engagement_model):
    one = write_image(tmp_path / "one.png", astronaut[:1, :1])
    result = run_cli("predict", str(one))
    assert result.returncode == 0 and "one.png: no face found" in result.stdout, result.stderr


def test_a_folder_holding_a_symlink_to_itself_is_walked_once(tmp_path, astronaut):
    folder = tmp_path / "photos"
    write_image(folder / "a.png", astronaut)
    os.symlink(folder, folder / "self")
    os.symlink(folder / "a.png", folder / "alias.png")  # a link to a file is a file the user named: kept
    found = sorted(os.path.relpath(p, folder) for p in walk_files(str(folder)))
    assert found == ["a.png", "alias.png"]


def test_a_video_with_no_frames_is_one_line(tmp_path, engagement_model):
    empty = str(tmp_path / "empty.mp4")
    writer = cv2.VideoWriter(empty, cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 64))
    writer.release()
    assert_one_line_error(run_cli("predict", empty), "empty.mp4")


def test_manifests_with_a_bom_are_read_and_another_delimiter_is_named(tmp_path, astronaut):
    write_image(tmp_path / "img" / "x.png", astronaut)
    (tmp_path / "bom.csv").write_text("path,label,subject\nimg/x.png,a,s1\n", encoding="utf-8-sig")
    samples = read_samples(str(tmp_path / "bom.csv"))
    assert [(s.label, s.subject) for s in samples.samples] == [("a", "s1")]
    (tmp_path / "semi.csv").write_text("path;label;subject\nimg/x.png;a;s1\n")
    with pytest.raises(EngageError, match=r"missing column.*it has path;label;subject"):
        read_samples(str(tmp_path / "semi.csv"))


def test_a_label_map_that_misses_a_label_names_it(tmp_path, astronaut):
    write_image(tmp_path / "img" / "x.png", astronaut)
    write_image(tmp_path / "img" / "y.png", astronaut[::-1].copy())
    (tmp_path / "m.csv").write_text("path,label\nimg/x.png,engaged\nimg/y.png,engagd\n")  # a typo in the data
    out = tmp_path / "out.npz"
    result = run_cli("preprocess", str(tmp_path / "m.csv"), "--no-detect", "--label-map",
                     "engaged=engaged,disengaged=disengaged", "--out", str(out))
    assert_one_line_error(result, "engagd")
    assert not out.exists()


def test_a_pickled_model_file_is_refused_unopened(tmp_path):
    """A pickle can run code when loaded: engage never unpickles, it says the file is not safetensors."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps(Payload()))
    assert_one_line_error(run_cli("predict", "--sample", "--model", str(model)), "model.pt", "not a safetensors file")
    assert not marker.exists()


def test_a_full_disk_while_writing_is_one_line_and_leaves_nothing_half_written(tmp_path, engagement_model):
    """RLIMIT_FSIZE stands in for a full disk: the CSV and the annotated images cannot be finished."""

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    out_csv, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    result = subprocess.run([sys.executable, "-m", "engage.cli", "predict", "--sample", "--csv", str(out_csv),
                             "--annotate", str(annotated)], capture_output=True, text=True, preexec_fn=small_files,
                            timeout=300)
    assert_one_line_error(result, "disk is full or a file-size limit was reached")
    assert not out_csv.exists()
    assert all(os.path.getsize(p) < 50_000 and not p.name.startswith(".tmp") for p in annotated.rglob("*"))


def test_ctrl_c_during_preprocess_writes_nothing_and_a_rerun_completes(tmp_path, astronaut):
    """SIGINT to the whole process group, as Ctrl+C sends it, while the workers detect faces."""
    import signal
    import time

    for i in range(80):
        write_image(tmp_path / "imgs" / f"c{i % 2}" / f"a{i}.jpg", astronaut)
    out = tmp_path / "faces.npz"
    # one worker: the faces are detected in the process that gets the signal, for about 0.1 s each, so the
    # signal lands mid-run on any machine
    command = [sys.executable, "-m", "engage.cli", "preprocess", str(tmp_path / "imgs"), "--out", str(out),
               "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True,  # Ctrl+C as a terminal delivers it (a test runner may ignore it)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3.0)
    assert process.poll() is None, "finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 130 and lines == ["engage: aborted"], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # nothing written, no temporary file left
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and out.exists(), rerun.stderr


def test_a_polyglot_file_is_read_as_the_image_it_starts_with(tmp_path, astronaut):
    """A JPEG with a ZIP archive appended (valid as both): engage reads the image and nothing else."""
    import io
    import zipfile

    jpeg = write_image(tmp_path / "plain.jpg", astronaut)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("payload.txt", "not for engage")
    polyglot = tmp_path / "polyglot.jpg"
    polyglot.write_bytes(jpeg.read_bytes() + archive.getvalue())
    assert zipfile.is_zipfile(polyglot)
    assert np.array_equal(read_image(polyglot), read_image(jpeg))


def test_sigkill_during_predict_leaves_no_output_and_the_rerun_cleans_up(tmp_path, astronaut, engagement_model):
    """SIGKILL cannot be caught: the CSV's staged rows stay behind as a temporary file, never as faces.csv; the
    re-run writes the whole CSV and removes what the killed run left."""
    import signal
    import time

    for i in range(40):
        write_image(tmp_path / "imgs" / f"a{i}.jpg", astronaut)
    out_csv = tmp_path / "out" / "faces.csv"
    command = [sys.executable, "-m", "engage.cli", "predict", str(tmp_path / "imgs"), "--csv", str(out_csv)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while not list((tmp_path / "out").glob(".tmp-*")) and time.time() < deadline:  # rows are being staged
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not out_csv.exists() and len(list((tmp_path / "out").glob(".tmp-*"))) == 1
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(out_csv.read_text().splitlines()) == 41  # the header and one face per image
    assert list((tmp_path / "out").glob(".tmp-*")) == []
