"""Every input that once crashed a reader under benchmarks/fuzz.py (one per cause): read again, it gives a
result or engage's own one-line error, never another exception and never more than 1 GiB of memory (one was
a 48-byte PNG that made OpenCV allocate 3 GB)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted((ROOT / "tests" / "fuzz_cases").glob("*.bin"))
REPLAY = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from fuzz import replay
results = {}
for name in sys.argv[2:]:
    error = replay(name.rsplit("/", 1)[-1].split("-", 1)[0], open(name, "rb").read())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results[name] = (None if error is None else f"{type(error).__name__}: {error}", peak_mib)
print(json.dumps(results))
"""
PEAK_MIB = 1024  # reading any of these few-byte files must not take more memory than this (engage itself: ~150)


def replay_all(cases: list[Path]) -> dict[str, tuple[str | None, float]]:
    def cap():  # a safety cap far above PEAK_MIB, so that a regression is measured rather than fatal
        resource.setrlimit(resource.RLIMIT_DATA, (6 << 30, 6 << 30))

    result = subprocess.run(
        [sys.executable, "-c", REPLAY, str(ROOT / "benchmarks"), *map(str, cases)],
        capture_output=True,
        text=True,
        preexec_fn=cap,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_every_fuzzed_input_that_once_crashed_is_read_or_refused_in_one_line():
    assert len(CASES) >= 8  # the causes found so far: manifests, fer2013.csv, images
    results = replay_all(CASES)
    assert {name: error for name, (error, _) in results.items() if error is not None} == {}
    assert {name: peak for name, (_, peak) in results.items() if peak > PEAK_MIB} == {}


def test_the_replay_reports_a_reader_that_raises_something_else(monkeypatch):
    """The replay itself can fail: a reader that raises anything but engage's errors is reported."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fuzz

    def broken(path):
        raise ValueError("a bug")

    monkeypatch.setattr(fuzz, "target_function", lambda name: (broken, b""))
    assert isinstance(fuzz.replay("image", b"x"), ValueError)
