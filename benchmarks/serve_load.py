"""Load on `engage serve`: a bounded burst of image requests to a server on loopback, against `engage predict` on
the same files in the same run.

    python benchmarks/serve_load.py                     # 1,000 requests, 8 at a time
    python benchmarks/serve_load.py --requests 200      # a quick run

Starts `engage serve` on a free port, sends the bundled sample photos (a portrait, a group of three, a gray
portrait, a photo with no face) in turn, and prints requests/s, p50/p95/p99 latency, errors, the server's memory
(RSS) before and after the burst, and images/s of `engage predict` on copies of the same files (its own figure:
"N input(s) scored in S s") with the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_photos(folder: str, copies: int) -> list[str]:
    """The sample photos as PNG files, `copies` times each (distinct paths: `engage predict` scores each once)."""
    from PIL import Image

    from engage.io.sample_photos import sample_images

    originals = {}
    for name, rgb in sample_images().items():
        originals[name] = os.path.join(folder, name)
        Image.fromarray(rgb).save(originals[name])
    paths = []
    for copy in range(copies):
        for name, original in originals.items():
            path = os.path.join(folder, f"{os.path.splitext(name)[0]}-{copy:03d}.png")
            shutil.copyfile(original, path)
            paths.append(path)
    return paths


def predict_images_per_s(paths: list[str]) -> tuple[float, str]:
    """`engage predict FILES` as a user runs it; its own count and time (model loading excluded)."""
    done = subprocess.run(
        [sys.executable, "-m", "engage.cli", "predict", *paths], capture_output=True, text=True, check=True
    )
    match = re.search(r"(\d+) input\(s\) scored in ([\d.]+) s", done.stdout)
    count, seconds = int(match.group(1)), float(match.group(2))
    return count / seconds, match.group(0)


async def burst(
    url: str, files: list[tuple[str, bytes]], requests: int, concurrency: int
) -> tuple[list[float], int, float]:
    import httpx

    latencies, errors = [], 0
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def one(index: int) -> None:
            nonlocal errors
            name, data = files[index % len(files)]
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/images", files={"file": (name, data)})
                    ok = response.status_code == 200 and "faces" in response.json()
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--predict-files", type=int, default=200, help="files for the `engage predict` comparison")
    args = parser.parse_args()
    import httpx

    folder = tempfile.mkdtemp(prefix="engage-serve-load-")
    try:
        paths = write_photos(folder, max(1, args.predict_files // 4))
        files = [(os.path.basename(path), Path(path).read_bytes()) for path in paths[:4]]
        predict_rate, predict_line = predict_images_per_s(paths)

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "engage.cli", "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            asyncio.run(burst(url, files, 4 * args.concurrency, args.concurrency))  # warm-up: every thread's detector
            rss_before = rss_mb(server.pid)
            latencies, errors, seconds = asyncio.run(burst(url, files, args.requests, args.concurrency))
            rss_after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    rate = args.requests / seconds
    print(
        f"engage serve: {args.requests} image requests, {args.concurrency} concurrent, on loopback ({os.cpu_count()} cores)"
    )
    print(
        f"  {rate:.1f} requests/s; latency p50 {ms[0]:.0f} ms, p95 {ms[1]:.0f} ms, p99 {ms[2]:.0f} ms; errors {errors}"
    )
    print(f"  server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after ({rss_after - rss_before:+.0f} MB)")
    print(f"engage predict on {len(paths)} copies of the same files: {predict_line} = {predict_rate:.1f} images/s")
    print(f"serve / predict images/s: {rate / predict_rate:.2f}")


if __name__ == "__main__":
    main()
