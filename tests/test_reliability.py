"""Rows of docs/RELIABILITY.md that no other test covers: odd images, folders, CSVs, model files and a full disk."""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

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
    result = run_cli(
        "preprocess",
        str(tmp_path / "m.csv"),
        "--no-detect",
        "--label-map",
        "engaged=engaged,disengaged=disengaged",
        "--out",
        str(out),
    )
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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "predict",
            "--sample",
            "--csv",
            str(out_csv),
            "--annotate",
            str(annotated),
        ],
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=300,
    )
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
    command = [
        sys.executable,
        "-m",
        "engage.cli",
        "preprocess",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl+C as a terminal delivers it (a test runner may ignore it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
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


def assert_every_image_complete(out_csv: Path, images: int) -> None:
    """The CSV holds every one of the identical images with the same rows (boxes and scores), and nothing else.
    How many faces one image holds is not asked: the JPEG of the astronaut holds a tiny "face" that MTCNN finds at
    a confidence just above its cut with some JPEG encoders, a borderline no test should depend on."""
    import csv

    with open(out_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_image: dict[str, list] = {}
    for row in rows:
        by_image.setdefault(Path(row["source"]).name, []).append(
            tuple(row[k] for k in ("face_id", "x", "y", "w", "h", "p_engaged", "label"))
        )
    assert sorted(by_image) == sorted(f"a{i}.jpg" for i in range(images))
    assert len({tuple(faces) for faces in by_image.values()}) == 1 and len(by_image["a0.jpg"]) >= 1


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
    assert_every_image_complete(out_csv, 40)
    assert list((tmp_path / "out").glob(".tmp-*")) == []


def test_a_variable_frame_rate_video_is_timed_by_its_own_time_stamps(tmp_path, astronaut, engagement_model):
    """Phones write variable frame rates: five frames of 1/20 s, then five of 1/5 s. Timing by position / the
    average rate would put the last frame at 1.125 s instead of 1.05 s, and every frame between out of place."""
    import csv

    from mp4_boxes import patch

    from engage.io.video import write_video

    video = tmp_path / "phone.mp4"
    write_video(str(video), [astronaut[::2, ::2]] * 10, fps=10)
    per_second = patch(video)  # only reads the time units
    durations = [per_second // 20] * 5 + [per_second // 5] * 5
    patch(video, durations=durations)
    out_csv = tmp_path / "faces.csv"
    result = run_cli("predict", str(video), "--csv", str(out_csv))
    assert result.returncode == 0, result.stderr
    times = [float(row["time_s"]) for row in csv.DictReader(out_csv.open())]
    expected = [sum(durations[:i]) / per_second for i in range(10)]
    assert times == pytest.approx(expected, abs=1e-3)


def test_a_video_with_rotation_metadata_is_scored_upright(tmp_path, astronaut, engagement_model):
    """A portrait phone video is stored sideways with a rotation in its header: engage turns the frames upright
    (the face is found and scored as in the upright video); the same frames without the rotation show no face."""
    from mp4_boxes import patch

    from engage.inference.predictor import Predictor
    from engage.io.video import write_video

    upright = np.ascontiguousarray(astronaut[::2, 32:480:2])  # 256 tall, 224 wide
    sideways = np.ascontiguousarray(np.rot90(upright, 1))
    paths = {name: tmp_path / f"{name}.mp4" for name in ("upright", "sideways", "rotated")}
    write_video(str(paths["upright"]), [upright] * 3, fps=10)
    write_video(str(paths["sideways"]), [sideways] * 3, fps=10)
    write_video(str(paths["rotated"]), [sideways] * 3, fps=10)
    patch(paths["rotated"], rotation=90)
    predictor = Predictor("engagement")
    frames = {name: list(predictor.predict_video(str(path))) for name, path in paths.items()}
    assert all(not frame.faces for frame in frames["sideways"])  # so the rotation is what finds the face
    for rotated, plain in zip(frames["rotated"], frames["upright"], strict=True):
        assert (rotated.width, rotated.height) == (224, 256)
        assert len(rotated.faces) == len(plain.faces) == 1
        assert rotated.faces[0].p_engaged == pytest.approx(plain.faces[0].p_engaged, abs=0.02)


def _without_root_override():
    """Run the child as root without the capabilities that let root read any file (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH leave the bounding set, so the program started cannot have them): file permissions bite."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_file_is_named_as_unreadable_and_a_folder_goes_on(tmp_path, astronaut, engagement_model):
    """A file without read permission: alone, one line that says so (not "corrupt"); in a folder, reported and
    skipped while the other images are scored. The suite may run as root, which reads everything: the child
    then runs without root's override."""
    image, video = write_image(tmp_path / "in" / "locked.jpg", astronaut), tmp_path / "in" / "locked.mp4"
    write_image(tmp_path / "in" / "open.jpg", astronaut)
    from engage.io.video import write_video

    write_video(str(video), [astronaut[::2, ::2]] * 2, fps=10)
    image.chmod(0), video.chmod(0)
    as_user = _without_root_override if os.geteuid() == 0 else None

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "engage.cli", *args], capture_output=True, text=True, preexec_fn=as_user, timeout=300
        )

    for path in (image, video):
        line = assert_one_line_error(run("predict", str(path)), "permission denied")
        assert str(path) in line and "corrupt" not in line and "cannot be opened as a video" not in line
    folder = run("predict", str(tmp_path / "in"), "--json")
    assert folder.returncode == 0, folder.stderr
    assert [os.path.basename(r["source"]) for r in map(json.loads, folder.stdout.splitlines())] == ["open.jpg"]
    assert sum("permission denied" in line for line in folder.stderr.splitlines()) == 2


def _small_training_data(folder) -> tuple[str, str]:
    """96 training and 32 validation faces of 8 students, two classes told apart by brightness (trains in ms)."""
    from conftest import make_dataset

    rng = np.random.default_rng(0)
    labels = np.arange(128) % 2
    faces = rng.integers(0, 120, (128, 48, 48)) + labels[:, None, None] * 100
    data = make_dataset(faces, labels, ["disengaged", "engaged"], subjects=[f"s{i // 16}" for i in range(128)])
    train_path, val_path = str(folder / "train.npz"), str(folder / "val.npz")
    data.subset(np.arange(96)).save(train_path)
    data.subset(np.arange(96, 128)).save(val_path)
    return train_path, val_path


def _start(command: list[str]) -> subprocess.Popen:
    """A CLI process in its own session, with the default Ctrl+C handling (a test runner may ignore SIGINT)."""
    import signal

    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stop(process: subprocess.Popen, signal_name: str, ready, what: str) -> str:
    """Wait until `ready()` (the process is mid-way), send the signal to its group as a terminal would, and check
    the exit: Ctrl+C is "engage: aborted" and 130, with no traceback; SIGKILL cannot be caught."""
    import signal
    import time

    deadline = time.time() + 120
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None and ready(), f"{what} finished (or never started) before it could be stopped"
    os.killpg(process.pid, getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=120)
    if signal_name == "SIGINT":
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1] == "engage: aborted", stderr
    else:
        assert process.returncode == -9
    return stderr


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_a_training_run_stopped_by_a_signal_resumes_to_the_end(tmp_path, signal_name):
    """Stopped after its first epoch: the run folder holds whole files only (a checkpoint that loads, no temporary
    file), and `engage train resume` finishes every epoch once."""
    import csv

    from engage.models.checkpoint import read_file

    train_path, val_path = _small_training_data(tmp_path)
    run = tmp_path / "run"
    epochs = 4
    process = _start(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "train",
            "engagement",
            "--data",
            train_path,
            "--val",
            val_path,
            "--out",
            str(run),
            "--epochs",
            str(epochs),
            "--model",
            "compact",
            "--width",
            "8",
            "--batch-size",
            "16",
            "--threads",
            "1",
        ]
    )  # one thread: fast beside other tests
    _stop(process, signal_name, lambda: (run / "history.csv").exists(), "training")
    assert not list(run.glob(".tmp-*"))
    read_file(str(run / "last.safetensors"))  # whole: it loads and its checksum holds
    resumed = run_cli("train", "resume", "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr
    epochs_done = [int(row["epoch"]) for row in csv.DictReader((run / "history.csv").open())]
    assert epochs_done == list(range(1, epochs + 1))
    assert not list(run.glob(".tmp-*")) and (run / "best.safetensors").exists()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_an_export_stopped_by_a_signal_writes_nothing_and_a_rerun_completes(tmp_path, signal_name):
    """Stopped while the network is being exported (onnx loaded in the process): no model file, or a temporary file
    the re-run removes; the re-run writes a model onnxruntime loads."""
    from engage.models.onnx import OnnxClassifier

    out = tmp_path / "out" / "engagement.onnx"
    out.parent.mkdir()
    command = [sys.executable, "-m", "engage.cli", "export", "--model", "engagement", "--out", str(out)]
    process = _start(command)

    def exporting() -> bool:
        try:
            return "onnx" in Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:
            return False

    _stop(process, signal_name, exporting, "the export")
    assert not out.exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["engagement.onnx"]
    assert OnnxClassifier.load(str(out)).predict_proba(np.zeros((1, 48, 48), np.float32)).shape == (1, 2)


def test_ctrl_c_during_predict_writes_nothing_and_a_rerun_completes(tmp_path, astronaut, engagement_model):
    """Ctrl+C while predict stages its CSV rows: "engage: aborted", no CSV and no temporary file."""
    for i in range(40):
        write_image(tmp_path / "imgs" / f"a{i}.jpg", astronaut)
    out_csv = tmp_path / "out" / "faces.csv"
    command = [sys.executable, "-m", "engage.cli", "predict", str(tmp_path / "imgs"), "--csv", str(out_csv)]
    process = _start(command)
    _stop(process, "SIGINT", lambda: bool(list((tmp_path / "out").glob(".tmp-*"))), "predict")
    assert list((tmp_path / "out").iterdir()) == []
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_every_image_complete(out_csv, 40)


def _file_size_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_during_preprocess_train_and_export_is_one_line_and_leaves_nothing_half_written(
    tmp_path, astronaut
):
    """RLIMIT_FSIZE stands in for a full disk: the dataset (.npz), the checkpoint and the ONNX file are larger than
    the limit. Each command says so in one line, and no partial or temporary file is left; what was already
    there (the run's config) is kept whole."""

    def run(limit, *args):
        return subprocess.run(
            [sys.executable, "-m", "engage.cli", *args],
            capture_output=True,
            text=True,
            preexec_fn=_file_size_limit(limit),
            timeout=300,
        )

    for i in range(6):
        rgb = np.ascontiguousarray(np.roll(astronaut, 40 * i, axis=1))
        write_image(tmp_path / "imgs" / f"c{i % 2}" / f"a{i}.png", rgb)
    preprocess_out = tmp_path / "pre" / "faces.npz"
    assert_one_line_error(
        run(2_000, "preprocess", str(tmp_path / "imgs"), "--out", str(preprocess_out), "--workers", "1"),
        "disk is full or a file-size limit",
    )
    assert not preprocess_out.parent.exists() or list(preprocess_out.parent.iterdir()) == []

    train_path, val_path = _small_training_data(tmp_path)
    run_dir = tmp_path / "run"
    trained = run(
        100_000,
        "train",
        "engagement",
        "--data",
        train_path,
        "--val",
        val_path,
        "--out",
        str(run_dir),
        "--epochs",
        "2",
        "--model",
        "compact",
        "--width",
        "8",
        "--threads",
        "1",
    )
    # training reports its progress on stderr: the error is its last line
    assert trained.returncode == 1 and "Traceback" not in trained.stderr, trained.stderr
    assert "disk is full or a file-size limit" in trained.stderr.strip().splitlines()[-1], trained.stderr
    json.loads((run_dir / "config.json").read_text())  # written before the checkpoint, and whole
    assert not list(run_dir.glob("*.safetensors")) and not list(run_dir.glob(".tmp-*"))

    onnx_out = tmp_path / "onnx" / "engagement.onnx"
    onnx_out.parent.mkdir()
    assert_one_line_error(
        run(1_000_000, "export", "--model", "engagement", "--out", str(onnx_out)), "disk is full or a file-size limit"
    )
    assert list(onnx_out.parent.iterdir()) == []


def _detector_processes(parent: int) -> list[int]:
    """The spawned worker processes of `parent` (not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _predict_long_video_with_detector_processes(tmp_path) -> tuple[subprocess.Popen, list[int], Path]:
    """`engage predict` on a 30 s video with 2 detector processes, returned once both run and rows are being
    staged (mid-video): the process, its detector processes' ids, the CSV path."""
    import time

    from engage.inference.demo import write_demo_video

    video = tmp_path / "long.mp4"
    write_demo_video(str(video), frames=900)
    out_csv = tmp_path / "out" / "faces.csv"
    process = _start(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "predict",
            str(video),
            "--detector",
            "yunet",
            "--backend",
            "onnx",
            "--workers",
            "2",
            "--detect-every",
            "1",  # every frame to the detector processes: a run long enough to stop mid-way
            "--csv",
            str(out_csv),
        ]
    )
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and process.poll() is None:
        workers = _detector_processes(process.pid)
        staged = list((tmp_path / "out").glob(".tmp-*"))
        if len(workers) == 2 and staged and staged[0].stat().st_size > 0:  # rows flushed: frames were detected
            break
        time.sleep(0.05)
    assert process.poll() is None and len(workers) == 2, "predict finished (or never started) before it was mid-video"
    return process, workers, out_csv


def test_a_detector_process_killed_mid_video_is_one_line_and_writes_nothing(tmp_path, fast_extra):
    """A video's faces are detected in worker processes (one per core); one of them is killed (as the kernel's
    out-of-memory killer would): predict stops with one line, the CSV is not put in place, no temporary file is
    left, no worker is left running."""
    import signal

    process, workers, out_csv = _predict_long_video_with_detector_processes(tmp_path)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "engage: error: face detection stopped: a detector process ended unexpectedly (out of memory?)"
    ), stderr
    assert list(out_csv.parent.iterdir()) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers[1:])


def test_detector_processes_end_with_a_killed_predict_and_leave_no_shared_memory(tmp_path, fast_extra):
    """predict itself killed outright mid-video (SIGKILL to it alone, as the out-of-memory killer does): its detector
    processes notice and end within seconds, and the frames' shared memory is removed (by Python's resource
    tracker, once they are gone)."""
    import signal
    import time

    process, workers, _ = _predict_long_video_with_detector_processes(tmp_path)
    # the frame slots this predict uses: mapped by its detector processes (other tests may use /dev/shm too)
    slots = {
        line.split()[-1]
        for pid in workers
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if "/dev/shm/psm_" in line
    }
    assert slots, "no frame slots in use"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    deadline = time.time() + 20
    while time.time() < deadline and (
        any(Path(f"/proc/{pid}").exists() for pid in workers) or any(os.path.exists(slot) for slot in slots)
    ):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a detector process outlived predict"
    assert not any(os.path.exists(slot) for slot in slots), "predict's frame slots were left in /dev/shm"


def test_ctrl_c_while_detector_processes_start_is_aborted_without_their_tracebacks(tmp_path, fast_extra):
    """Ctrl+C reaches the whole process group (as from a terminal) just as the detector processes of a video start:
    "engage: aborted", 130 (a Ctrl+C that arrives while they are being spawned is held for predict, not lost), no
    traceback of a worker, nothing written, no worker left."""
    from engage.inference.demo import write_demo_video

    video = tmp_path / "long.mp4"
    write_demo_video(str(video), frames=300)
    out_csv = tmp_path / "out" / "faces.csv"
    process = _start(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "predict",
            str(video),
            "--detector",
            "yunet",
            "--backend",
            "onnx",
            "--workers",
            "2",
            "--csv",
            str(out_csv),
        ]
    )
    workers: list[int] = []

    def starting() -> bool:
        workers[:] = _detector_processes(process.pid)
        return len(workers) == 2

    stderr = _stop(process, "SIGINT", starting, "predict")
    assert "KeyboardInterrupt" not in stderr, stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
