"""CI forbids skips (ENGAGE_NO_SKIPS=1 in .ci/run); a user's fresh clone without ../shared/data still skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PROBE = """
import pytest

def test_needs_the_real_data(shared_data):
    pass

def test_skips_itself():
    pytest.skip("an extra is missing")
"""


def run_probe(tmp_path: Path, probe: str = PROBE, **env: str) -> subprocess.CompletedProcess:
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(probe)
    environment = {k: v for k, v in os.environ.items() if k != "ENGAGE_NO_SKIPS"}
    environment.update(ENGAGE_SHARED_DATA=str(tmp_path / "no-data"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fresh_clone_without_the_real_data_skips_with_the_reason(tmp_path):
    result = run_probe(tmp_path)
    assert result.returncode == 0 and "2 skipped" in result.stdout, result.stdout


def test_ci_turns_every_skip_into_a_failure_that_keeps_its_reason(tmp_path):
    result = run_probe(tmp_path, ENGAGE_NO_SKIPS="1")
    assert result.returncode != 0, result.stdout
    assert "1 failed, 1 error" in result.stdout, result.stdout
    assert "real data not found" in result.stdout and "an extra is missing" in result.stdout
    assert "ENGAGE_NO_SKIPS=1 forbids skips" in result.stdout


GPU_PROBE = """
import pytest
import torch

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: runs on a GPU machine")
def test_on_a_gpu():
    pass
"""


def test_ci_allows_the_skip_of_a_gpu_test_where_there_is_no_gpu(tmp_path):
    import torch

    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = gpu: needs a CUDA device\n")
    result = run_probe(tmp_path, GPU_PROBE, ENGAGE_NO_SKIPS="1")
    expected = "1 passed" if torch.cuda.is_available() else "1 skipped"
    assert result.returncode == 0 and expected in result.stdout, result.stdout
