"""`engage serve` in its own process, as a user starts it: started on a free port, waited for, stopped, and checked
to leave no upload or job folder behind. Used by the browser and the contract tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def engage_server(*arguments: str) -> Iterator[str]:
    """The server's base URL while `engage serve ARGUMENTS` runs."""
    import httpx

    port = free_port()
    env = dict(os.environ, TMPDIR=tempfile.mkdtemp(prefix="engage-serve-test-"))
    process = subprocess.Popen(
        [sys.executable, "-m", "engage.cli", "serve", "--port", str(port), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"engage serve exited: {process.stdout.read() if process.stdout else ''}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("engage serve did not answer /healthz within 60 s")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        left = [name for name in os.listdir(env["TMPDIR"]) if name.startswith("engage-serve-")]
        shutil.rmtree(env["TMPDIR"], ignore_errors=True)
        assert left == [], f"the server left upload or job folders behind: {left}"
