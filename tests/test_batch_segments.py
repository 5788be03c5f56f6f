"""`engage batch` on long videos: split into segments scored as separate Ray tasks and joined into the rows and ids
of `engage predict --csv`; a segment that fails is tried again, then reported, and a re-run scores only the segments
still missing; a Ray worker killed mid-segment; a video whose frame count lies; a segment length of 0."""

import csv
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli, write_cut_avi
from ray_fixtures import EXTRA

from engage.inference.demo import write_demo_video

pytest_plugins = ["predict_fixtures", "ray_fixtures"]

FRAMES = 240  # 8 s at 30 frames/s: 4 segments of 2 s (60 frames) with --segment-s 2
SEGMENT_S = 2.0


@pytest.fixture(scope="module")
def lecture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "lecture.mp4"
    write_demo_video(str(path), frames=FRAMES)
    return path


@pytest.fixture(scope="module")
def predicted(lecture, engagement_model, tmp_path_factory) -> list[dict]:
    """`engage predict --csv` on the lecture, the rows the batch results must equal."""
    from engage.cli import main

    path = tmp_path_factory.mktemp("predicted") / "faces.csv"
    assert main(["predict", str(lecture), "--model", engagement_model, "--csv", str(path)]) == 0
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def parquet_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(out / "faces").to_pylist(), key=lambda row: (row["frame"], row["face_id"]))


def assert_equal_to_predict(rows: list[dict], predicted: list[dict]) -> None:
    expected = sorted(predicted, key=lambda row: (int(row["frame"]), int(row["face_id"])))
    assert len(rows) == len(expected) > 0
    for mine, theirs in zip(rows, expected):
        for name in ("frame", "face_id", "x", "y", "w", "h", "label", "quality"):
            assert str(mine[name]) == theirs[name], (name, mine, theirs)
        assert str(mine["tracked"]) == theirs["tracked"]
        assert abs(mine["p_engaged_raw"] - float(theirs["p_engaged_raw"])) <= 1e-4
        assert abs(mine["p_engaged"] - float(theirs["p_engaged"])) <= 1e-4


def test_segments_join_into_the_rows_of_predict_and_a_rerun_scores_only_what_is_missing(
    ray_local, lecture, predicted, engagement_model, tmp_path
):
    from engage.cluster.runner import BatchOptions, run_batch
    from engage.cluster.segments import plan_units
    from engage.cluster.sources import list_sources

    options = BatchOptions(model=engagement_model, segment_s=SEGMENT_S)
    sources, _ = list_sources([str(lecture)])
    units = plan_units(sources, SEGMENT_S, 1, options.detect_every)
    assert [(unit.start, unit.stop, unit.scan_start) for unit in units] == [
        (0, 60, 0),
        (60, 120, 0),
        (120, 180, 60),
        (180, -1, 120),
    ]  # 2 s segments on key frames, each scanned from 2 s before to join the ids

    # the file is gone when the tasks open it: each segment fails, is tried once more, and the video is reported
    copy = tmp_path / "lecture.mp4"
    copy.write_bytes(lecture.read_bytes())
    moved = tmp_path / "away.mp4"
    out = tmp_path / "results"
    states = []

    def take_away(state: dict) -> None:
        states.append(state)
        if copy.exists():
            copy.rename(moved)

    run = run_batch([str(copy)], str(out), options, on_progress=take_away)
    assert not run.scored and len(run.failures) == 1 and run.units == 4 and run.retried == 4
    reason = run.failures[0]["reason"]
    assert reason.startswith("segment 1 of 4 (frames 0 to 59): ") and "lecture.mp4" in reason, reason
    assert not (out / "faces").exists()  # nothing half-written: the video is not complete
    assert states[0]["frames_total"] == FRAMES and states[-1]["units_done"] == 0
    moved.rename(copy)

    # a run stopped (Ctrl+C) once a segment is in keeps the segments done
    def stop(state: dict) -> None:
        if state["units_done"] >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch([str(copy)], str(out), options, on_progress=stop)
    kept = len(glob.glob(str(out / "segments" / "*" / "*.json")))
    assert 1 <= kept < 4 and not (out / "faces").exists()

    # the next run scores only the missing segments
    run = run_batch([str(copy)], str(out), options)
    assert len(run.scored) == 1 and not run.failures and run.resumed == kept
    rows = parquet_rows(out)
    for row in predicted:
        row["source"] = str(copy)
    assert_equal_to_predict(rows, predicted)
    assert run.scored[0]["frames_scored"] == FRAMES and run.scored[0]["faces"] == 2
    assert not (out / "segments" / units[0].source.key).exists()  # no longer needed once the video is complete
    import json

    progress = json.loads((out / "progress.json").read_text())
    assert progress["running"] is False and progress["frames_done"] == progress["frames_total"] == FRAMES


def test_a_killed_worker_does_not_lose_or_repeat_a_frame(ray_local, lecture, predicted, engagement_model, tmp_path):
    out = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "batch",
            str(lecture),
            "--out",
            str(out),
            "--model",
            engagement_model,
            "--segment-s",
            str(SEGMENT_S),
            "--address",
            ray_local,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            if "ray::" in line and "detect_sources" in line:
                killed = int(line.split()[0])
                os.kill(killed, signal.SIGKILL)  # a detection task, mid-segment
                break
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=600)
    assert killed is not None, "no detection task was seen running"
    assert process.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    assert_equal_to_predict(parquet_rows(out), [{**row, "source": str(lecture)} for row in predicted])


def test_a_video_whose_frame_count_lies_is_scored_to_its_real_end(ray_local, fast_predictor, tmp_path):
    """An AVI cut short keeps a header that says 240 frames: the segments past its real end are empty, not failed."""

    from engage.cluster.runner import BatchOptions, run_batch
    from engage.inference.records import to_dataframe

    path = write_cut_avi(tmp_path / "cut.avi", FRAMES, keep=0.4)  # about 96 of the 240 frames are left
    options = BatchOptions(model=fast_predictor.model_name, detector="yunet", backend="onnx", segment_s=SEGMENT_S)
    run = run_batch([str(path)], str(tmp_path / "results"), options)
    assert not run.failures and run.units == 4
    expected = to_dataframe(fast_predictor.predict_video(str(path)))
    rows = parquet_rows(tmp_path / "results")
    assert 0 < run.scored[0]["frames_scored"] < FRAMES
    assert [(row["frame"], row["face_id"]) for row in rows] == list(zip(expected["frame"], expected["face_id"]))
    assert max(abs(row["p_engaged_raw"] - raw) for row, raw in zip(rows, expected["p_engaged_raw"])) <= 1e-4


def test_a_segment_length_of_0_is_one_line(lecture, tmp_path):
    pytest.importorskip("ray", reason=EXTRA)
    result = run_cli("batch", str(lecture), "--out", str(tmp_path / "results"), "--segment-s", "0")
    assert_one_line_error(result, "--segment-s must be more than 0 seconds, got 0")
    assert not (tmp_path / "results").exists()
