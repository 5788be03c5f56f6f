"""`engage batch` on a local Ray (num_cpus=2, started once for the module), on real short videos made from
real photos: its Parquet rows are `engage predict --csv`'s, a run killed with SIGKILL resumes without
duplicates, a corrupt video lands in the failures table while the others complete; and its one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, write_image
from ray_fixtures import EXTRA

pytest_plugins = ["predict_fixtures", "ray_fixtures"]

VIDEO_FRAMES = 12


@pytest.fixture(scope="module")
def media(tmp_path_factory, sample_images) -> dict[str, Path]:
    """Two real-face videos (the astronaut moving, the cameraman still; 640x480, 12 frames) and a folder of
    photos: three faces, and none."""
    from engage.inference.demo import write_demo_video

    folder = tmp_path_factory.mktemp("media")
    paths = {}
    for name in ("lecture", "seminar"):
        paths[name] = folder / f"{name}.mp4"
        write_demo_video(str(paths[name]), frames=VIDEO_FRAMES)
    paths["photos"] = folder / "photos"
    for name in ("group", "coffee"):
        write_image(paths["photos"] / f"{name}.png", sample_images[f"{name}.png"])
    return paths


def batch_rows(out_dir: Path) -> list[dict]:
    """Every face row of a results folder, read with pyarrow as a user would (the marker files pass over)."""
    import pyarrow.parquet as pq

    return pq.read_table(out_dir / "faces").to_pylist()


def table(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def by_key(rows):
    return sorted(rows, key=lambda row: (row["source"], int(row["frame"]), int(row["face_id"])))


def test_parquet_rows_equal_engage_predict_csv(ray_local, media, engagement_model, tmp_path, capsys):
    import pyarrow.parquet as pq

    from engage.cli import main
    from engage.cluster.runner import BatchOptions, run_batch
    from engage.inference.records import csv_columns, to_dataframe

    inputs = [str(media["lecture"]), str(media["photos"])]
    csv_path = tmp_path / "faces.csv"
    assert main(["predict", *inputs, "--model", engagement_model, "--csv", str(csv_path)]) == 0, capsys.readouterr()
    options = BatchOptions(model=engagement_model)
    run = run_batch(inputs, str(tmp_path / "results"), options)
    assert not run.failures and len(run.scored) == 3 and run.complete == 3

    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames
        expected = by_key(reader)
    got = by_key(batch_rows(tmp_path / "results"))
    schema = pq.read_schema(next((tmp_path / "results" / "faces").glob("*/*.parquet")))
    assert schema.names == columns == csv_columns()
    assert {
        name: str(schema.field(name).type)
        for name in ("source", "frame", "face_id", "x", "det_conf", "p_engaged", "label", "p_engaged_raw")
    } == {
        "source": "string",
        "frame": "int64",
        "face_id": "int64",
        "x": "int64",
        "det_conf": "double",
        "p_engaged": "double",
        "label": "string",
        "p_engaged_raw": "double",
    }
    assert len(got) == len(expected) == 2 * VIDEO_FRAMES + 3  # two faces per frame, three in the group photo
    for mine, theirs in zip(got, expected):
        for name in ("source", "frame", "face_id", "x", "y", "w", "h", "label"):
            assert str(mine[name]) == theirs[name], (name, mine, theirs)
        for name, decimals in (
            ("time_s", 3),
            ("det_conf", 4),
            ("p_engaged", 4),
            ("p_engaged_raw", 4),
            ("yaw", 4),
            ("eyes_open", 4),
            ("mouth_open", 4),
        ):
            # the CSV rounds; within its last digit's half and 1e-5 (the cues: measured in the detection tasks)
            assert abs(mine[name] - float(theirs[name])) <= 0.5 * 10.0**-decimals + 1e-5, (name, mine, theirs)

    # full precision: the values `engage predict` computes before writing them, within 1e-5
    predictor = options.predictor()
    video = to_dataframe(predictor.predict_video(str(media["lecture"])))
    lecture = [row for row in got if row["source"] == str(media["lecture"])]
    assert len(lecture) == len(video) == 2 * VIDEO_FRAMES
    assert [(r["frame"], r["face_id"]) for r in lecture] == list(zip(video["frame"], video["face_id"]))
    assert np.abs(np.array([r["p_engaged"] for r in lecture]) - video["p_engaged"].to_numpy()).max() < 1e-5
    assert np.abs(np.array([r["p_engaged_raw"] for r in lecture]) - video["p_engaged_raw"].to_numpy()).max() < 1e-5
    group = predictor.predict(str(media["photos"] / "group.png"))
    photo = [row for row in got if row["source"].endswith("group.png")]
    assert [r["p_engaged"] for r in photo] == pytest.approx([face.p_engaged for face in group], abs=1e-5)

    summary = {row["source"]: row for row in table(tmp_path / "results" / "summary.parquet")}
    assert summary[str(media["lecture"])]["frames_scored"] == VIDEO_FRAMES
    assert summary[str(media["lecture"])]["faces"] == 2 and summary[str(media["lecture"])]["rows"] == 2 * VIDEO_FRAMES
    coffee = next(row for name, row in summary.items() if name.endswith("coffee.png"))
    assert coffee["rows"] == 0 and coffee["frames_with_faces"] == 0  # no face is a result: complete, no rows
    assert table(tmp_path / "results" / "failures.parquet") == []


def test_killed_run_resumes_without_duplicates(ray_local, media, engagement_model, tmp_path):
    from engage.cluster.runner import BatchOptions, run_batch

    videos = []
    for index in range(4):  # four copies of the lecture: four sources, two at a time on the 2 CPUs
        videos.append(tmp_path / f"copy{index}.mp4")
        videos[-1].write_bytes(media["lecture"].read_bytes())
    inputs = [str(video) for video in videos]
    out = tmp_path / "results"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engage.cli",
            "batch",
            *inputs,
            "--out",
            str(out),
            "--model",
            engagement_model,
            "--address",
            ray_local,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("faces/*/_source.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed: {stdout}{stderr}"
    done = {path.parent.name for path in out.glob("faces/*/_source.json")}
    assert 1 <= len(done) < len(videos), "the kill should land after the first source and before the last"
    first_marker = {key: (out / "faces" / key / "_source.json").stat().st_mtime_ns for key in done}

    # and what a kill mid-write can leave: a source's rows in place without their completion marker
    from engage.cluster.sources import list_sources

    sources, _ = list_sources(inputs)
    unfinished = next(source for source in sources if source.key not in done)
    (out / "faces" / unfinished.key).mkdir(parents=True, exist_ok=True)
    (out / "faces" / unfinished.key / "part-0.parquet").write_bytes(
        (out / "faces" / sorted(done)[0] / "part-0.parquet").read_bytes()
    )

    run = run_batch(inputs, str(out), BatchOptions(model=engagement_model))
    assert sorted(run.skipped) == sorted(source.name for source in sources if source.key in done)
    assert len(run.scored) == len(videos) - len(done) and not run.failures and run.complete == len(videos)
    assert {key: (out / "faces" / key / "_source.json").stat().st_mtime_ns for key in done} == first_marker
    rows = batch_rows(out)
    keys = [(row["source"], row["frame"], row["face_id"]) for row in rows]
    assert len(keys) == len(set(keys)) == len(videos) * 2 * VIDEO_FRAMES  # every face of every frame, once
    per_video = {}
    for row in by_key(rows):  # the copies give the same rows, resumed or not
        per_video.setdefault(row["source"], []).append(row)
    assert len(per_video) == len(videos)
    first, *others = per_video.values()
    for other in others:
        for name in ("frame", "face_id", "x", "y", "w", "h", "label"):
            assert [row[name] for row in other] == [row[name] for row in first]
        assert [row["p_engaged"] for row in other] == pytest.approx([row["p_engaged"] for row in first], abs=1e-5)
    assert not list((out / ".staging").iterdir())  # nothing half-written is left behind
    assert len(table(out / "summary.parquet")) == len(videos)


def test_corrupt_video_lands_in_failures_table_and_others_complete(
    ray_local, media, engagement_model, tmp_path, capsys
):
    from engage.cli import main

    broken = tmp_path / "broken.mp4"  # a real video cut in half, as a failed copy leaves it
    data = media["seminar"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "results"
    code = main(
        [
            "batch",
            str(broken),
            str(media["lecture"]),
            str(media["photos"] / "group.png"),
            "--out",
            str(out),
            "--model",
            engagement_model,
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in captured.err, captured.err
    assert f"{broken} failed" in captured.err and "1 of 3 source(s) failed" in captured.err
    failures = table(out / "failures.parquet")
    assert [row["source"] for row in failures] == [str(broken)]
    assert "cannot be opened as a video" in failures[0]["reason"]
    summary = {row["source"] for row in table(out / "summary.parquet")}
    assert summary == {str(media["lecture"]), str(media["photos"] / "group.png")}
    assert {row["source"] for row in batch_rows(out)} == summary
    from engage.cluster.sources import list_sources
    from engage.cluster.store import ResultStore

    (failed,), _ = list_sources([str(broken)])
    assert not ResultStore(str(out)).is_complete(failed)  # so a re-run tries it again


def test_bad_input_and_other_settings_are_one_line(ray_local, media, engagement_model, tmp_path, capsys):
    from engage.cli import main

    assert (
        main(["batch", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "a"), "--model", engagement_model]) == 1
    )
    assert capsys.readouterr().err.strip() == f"engage: error: {tmp_path / 'missing.mp4'}: no such file or folder"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not results")
    assert (
        main(
            ["batch", str(media["photos"] / "group.png"), "--out", str(tmp_path / "notes"), "--model", engagement_model]
        )
        == 2
    )
    assert "holds no engage batch results" in capsys.readouterr().err
    from engage.cluster.runner import BatchOptions
    from engage.cluster.store import ResultStore

    out = tmp_path / "results"  # a results folder made with --every 1
    store = ResultStore(str(out))
    store.open(BatchOptions(model=engagement_model).settings())
    store.close()
    assert (
        main(
            [
                "batch",
                str(media["photos"] / "coffee.png"),
                "--out",
                str(out),
                "--model",
                engagement_model,
                "--every",
                "2",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "other settings: every 2 (the folder's: 1)" in error[0], error


def test_without_the_extra_batch_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; from engage.cli import main; "
        f"sys.exit(main(['batch', {str(tmp_path)!r}, '--out', {str(tmp_path / 'out')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert_one_line_error(result, "engage batch needs the extra 'cluster'", "pip install 'engage[cluster]'")
    assert not (tmp_path / "out").exists()


def test_marker_makes_a_source_complete(tmp_path):
    """Without its completion marker a source's rows do not count as done, and a changed file is scored again."""
    pytest.importorskip("pyarrow", reason=EXTRA)
    from engage.cluster.sources import list_sources
    from engage.cluster.store import ResultStore

    photo = write_image(tmp_path / "in" / "face.png", np.full((64, 64, 3), 128, np.uint8))
    (source,), _ = list_sources([str(photo)])
    store = ResultStore(str(tmp_path / "out"))
    store.open({"every": 1})
    try:
        assert not store.is_complete(source)
        store.write_source(source, [], {"source": source.name})
        assert store.is_complete(source)
        marker = tmp_path / "out" / "faces" / source.key / "_source.json"
        saved = marker.read_text()
        marker.unlink()
        assert not store.is_complete(source)
        marker.write_text(saved)
        os.utime(photo, ns=(source.mtime_ns + 10**9, source.mtime_ns + 10**9))
        (changed,), _ = list_sources([str(photo)])
        assert not store.is_complete(changed)
        assert json.loads(saved)["fingerprint"]["path"] == os.path.abspath(photo)
    finally:
        store.close()
