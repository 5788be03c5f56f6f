"""Progress you can watch: on a terminal, `engage predict VIDEO` and `engage batch` show a progress bar with
frames/s and the time left (rich); without a terminal they print only their results."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from engage.inference.demo import write_demo_video

pytest_plugins = ["predict_fixtures"]


def on_a_terminal(*args: str, timeout: float = 300) -> tuple[int, str]:
    """Run `engage ARGS` with stdout and stderr on a pseudo-terminal, as in a user's shell; (exit code, all it
    drew, escape sequences included)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "140", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, "-m", "engage.cli", *args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("progress") / "lecture.mp4"
    write_demo_video(str(path), frames=900)  # 30 s: a few seconds to score, so the bar shows a rate
    return str(path)


def test_predict_shows_frames_per_second_and_time_left_on_a_terminal(video, engagement_model, fast_extra):
    code, drawn = on_a_terminal(
        "predict", video, "--model", engagement_model, "--detector", "yunet", "--backend", "onnx"
    )
    assert code == 0, drawn
    assert "frames/s" in drawn and "/900" in drawn, drawn[-2000:]  # frames done of the 900, and the rate
    assert "0:00:" in drawn  # the time left
    assert "900 frames scored" in drawn
    args = ["predict", video, "--model", engagement_model, "--detector", "yunet", "--backend", "onnx"]
    quiet = subprocess.run(
        [sys.executable, "-m", "engage.cli", *args, "--max-frames", "60"],
        capture_output=True,
        text=True,
    )
    assert quiet.returncode == 0 and "frames/s" not in quiet.stderr and "\x1b[" not in quiet.stdout + quiet.stderr


def test_batch_shows_frames_per_second_and_time_left_on_a_terminal(video, engagement_model, tmp_path):
    pytest.importorskip("ray", reason="needs the extra 'cluster' (Ray Data, pyarrow): pip install 'engage[cluster]'")
    out = tmp_path / "results"
    code, drawn = on_a_terminal(
        "batch", video, "--out", str(out), "--model", engagement_model, "--segment-s", "10", "--num-cpus", "2"
    )
    assert code == 0, drawn[-3000:]
    assert "frames/s" in drawn and "/900" in drawn, drawn[-3000:]
    assert "0:00:" in drawn
    assert "1 source(s) scored" in drawn
