"""Fuzz engage's readers with atheris (coverage-guided) for a given time; every crash becomes a regression case.

    pip install atheris            # or: pip install -e '.[fuzz]'
    python benchmarks/fuzz.py --target image --seconds 300
    python benchmarks/fuzz.py --target manifest --seconds 300

A "crash" is any exception other than engage's own errors (which are the one-line answers users get) or a
hang past libFuzzer's timeout, or more than 1 GiB of memory (libFuzzer then stops and leaves the input in
tests/fuzz_cases/TARGET-oom-SHA or TARGET-timeout-SHA; rename it to end in .bin). The first input of each cause (exception type and message) is written to
tests/fuzz_cases/TARGET-SHA.bin, where
tests/test_fuzz_cases.py replays it in the suite, so it stays fixed once fixed. The run prints how many inputs
it tried, per second, against a baseline measured in the same run (the same reader on one valid input), and the
crashes it found.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = os.path.join(REPO, "tests", "fuzz_cases")
sys.path.insert(0, os.path.join(REPO, "tests"))


def target_function(name: str):
    """(function of a file path that reads it as engage would, a valid seed input)."""
    from engage.errors import EngageError  # noqa: F401  (imported before fuzzing: not part of the coverage)

    if name == "image":
        import numpy as np
        from PIL import Image

        from engage.io.images import read_image

        buffer = io.BytesIO()
        Image.fromarray(np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3)).save(buffer, format="PNG")
        return read_image, buffer.getvalue()
    if name == "manifest":
        from engage.data.readers import read_samples

        return read_samples, b"path,label,subject\nimg/a.png,engaged,s1\nimg/b.png,disengaged,s2\n"
    if name == "fer2013":
        from engage.data.readers import read_fer2013_csv

        row = " ".join(["7"] * 2304)
        return read_fer2013_csv, f"emotion,pixels,Usage\n0,{row},Training\n".encode()
    raise SystemExit(f"fuzz: unknown target {name!r}; choose image, manifest or fer2013")


def replay(target: str, data: bytes) -> BaseException | None:
    """Read `data` as the target does; the unexpected exception it raised, or None."""
    from engage.errors import EngageError

    read, _ = target_function(target)
    suffix = {"image": ".png", "manifest": ".csv", "fer2013": ".csv"}[target]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, ("fer2013" if target == "fer2013" else "input") + suffix)
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            read(path)
        except EngageError:
            return None
        except Exception as error:
            return error
    return None


def save_case(target: str, data: bytes) -> str:
    os.makedirs(CASES, exist_ok=True)
    path = os.path.join(CASES, f"{target}-{hashlib.sha256(data).hexdigest()[:16]}.bin")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as handle:
            handle.write(data)
        os.replace(path + ".tmp", path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="image", choices=["image", "manifest", "fer2013"])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--max-len", type=int, default=4096)
    args = parser.parse_args()
    try:
        import atheris
    except ImportError:
        sys.exit("fuzz: needs atheris (pip install atheris)")
    with atheris.instrument_imports(include=["engage"]):  # coverage guidance over engage's own code
        _, seed = target_function(args.target)
    started = time.perf_counter()
    rounds = 0
    while time.perf_counter() - started < 2.0:  # the baseline: the valid seed, read over and over
        replay(args.target, seed)
        rounds += 1
    baseline = rounds / (time.perf_counter() - started)
    corpus = tempfile.mkdtemp(prefix="engage-fuzz-")
    with open(os.path.join(corpus, "seed"), "wb") as handle:
        handle.write(seed)
    found: dict[tuple[str, str], str] = {}  # one kept input per cause: the exception's type and its message
    tried = [0]
    fuzz_started = time.perf_counter()

    def one_input(data: bytes) -> None:
        tried[0] += 1
        error = replay(args.target, data)
        if error is not None:
            cause = (type(error).__name__, re.sub(r"0x[0-9a-f]+|\d+", "N", str(error))[:60])
            if cause not in found:
                found[cause] = save_case(args.target, data)
                print(f"fuzz: new crash {cause[0]}: {error} -> {found[cause]}", flush=True)
        if time.perf_counter() - fuzz_started >= args.seconds:  # libFuzzer's own exit skips Python's atexit
            report()
            sys.stdout.flush()
            os._exit(0)

    def report() -> None:
        rate = tried[0] / max(time.perf_counter() - fuzz_started, 1e-9)
        print(
            f"fuzz {args.target}: {tried[0]:,} inputs in {time.perf_counter() - fuzz_started:.0f} s, {rate:.0f}/s "
            f"(x{rate / baseline:.2f} of reading the valid seed, {baseline:.0f}/s); "
            f"{len(found)} cause(s) of crashes, one input each kept in tests/fuzz_cases/"
        )

    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={args.seconds + 60}",
            f"-max_len={args.max_len}",
            "-timeout=20",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={os.path.join(CASES, args.target)}-",
            corpus,
        ],
        one_input,
    )
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
