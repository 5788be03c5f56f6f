"""How `engage predict` uses the cores of one machine, against the single-thread path, all in the same run.

    python benchmarks/predict_scale.py [--frames 300] [--videos 4] [--rounds 2]

1. Time per frame of each stage, measured apart on one thread (a process of its own): decode (read + colour conversion), detect
   (YuNet), score (crop + the network on onnxruntime): where the physical limit of one video is.
2. One 640x480 video of real faces with the fast settings (YuNet + onnxruntime), steady state (model loaded,
   first 30 frames left out): the single-thread path (`pipeline=False`) against the pipeline (a thread decodes
   and detects ahead while the calling thread tracks and scores) and against what `engage predict VIDEO` does
   now: the pipeline with the faces detected in one process per core. Same results checked.
3. A folder of `--videos` such videos: `engage predict DIR --workers 1` against `--workers 2` (whole runs,
   start-up included), same CSV checked.
4. `--every 4`: skipping frames by grab() (decoded, not converted) against seeking (CAP_PROP_POS_FRAMES).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time

FAST = {"detector": "yunet", "backend": "onnx"}


def stage_times(video: str, frames: int) -> dict:
    from engage.faces.crop import to_gray
    from engage.inference.predictor import Predictor, crop_faces
    from engage.io.video import VideoSource

    predictor = Predictor("engagement", **FAST)
    started, cpu = time.perf_counter(), time.process_time()
    decoded = [frame.rgb for frame in VideoSource(video).frames(max_frames=frames)]
    decode, decode_cpu = (time.perf_counter() - started) / len(decoded), (time.process_time() - cpu) / len(decoded)
    predictor.detect(decoded[0])
    started, cpu = time.perf_counter(), time.process_time()
    boxes = [predictor.detect(rgb) for rgb in decoded]
    detect, detect_cpu = (time.perf_counter() - started) / len(decoded), (time.process_time() - cpu) / len(decoded)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(decoded), 8):  # as predict_video batches: 8 frames per network call
        predictor._score(list(zip(decoded[i : i + 8], boxes[i : i + 8])))
    score, score_cpu = (time.perf_counter() - started) / len(decoded), (time.process_time() - cpu) / len(decoded)
    crop = time.perf_counter()
    for rgb, found in zip(decoded, boxes):
        crop_faces(rgb, found, predictor.settings, False, to_gray(rgb))
    crop = (time.perf_counter() - crop) / len(decoded)
    faces = sum(len(found) for found in boxes) / len(decoded)
    return {
        "decode": decode,
        "detect": detect,
        "score": score,
        "crop": crop,
        "faces": faces,
        "cpu": (decode_cpu + detect_cpu + score_cpu) / (decode + detect + score),
    }  # ~1.0: one thread


def steady_fps(video: str, way: dict, predictor) -> tuple[float, list]:
    times, results = [], []
    for frame in predictor.predict_video(video, **way):
        times.append(time.perf_counter())
        results.append((frame.frame, [(f.face_id, f.p_engaged, f.box) for f in frame.faces]))
    steady = times[30:]
    return (len(steady) - 1) / (steady[-1] - steady[0]), results


def folder_run(folder: str, way: dict, csv_path: str) -> float:
    """One whole `engage predict FOLDER --csv` run (model loads included) in a fresh process, scored one way:
    run_predict's options and its number of worker processes."""
    code = (
        "import functools, sys; from engage.inference.job import PredictOptions, run_predict; "
        "from engage.inference.predictor import Predictor; from engage.io.inputs import expand_inputs\n"
        "if __name__ == '__main__':\n"
        f"    run_predict(expand_inputs([{folder!r}]), functools.partial(Predictor, 'engagement', **{FAST!r}), "
        f"PredictOptions(csv_path={csv_path!r}, pipeline={way['pipeline']!r}), workers={way['workers']!r}, "
        "warn=print)"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started


def every_cost(video: str, every: int) -> dict:
    import cv2

    def by_grab() -> int:
        capture, n, index = cv2.VideoCapture(video), 0, 0
        while True:
            if index % every == 0:
                ok, _ = capture.read()
                n += ok
            else:
                ok = capture.grab()
            if not ok:
                return n
            index += 1

    def by_seek() -> int:
        capture, n = cv2.VideoCapture(video), 0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in range(0, total, every):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, _ = capture.read()
            n += ok
        return n

    result = {}
    for name, method in (("grab", by_grab), ("seek", by_seek)):
        started = time.perf_counter()
        scored = method()
        result[name] = (time.perf_counter() - started) / scored
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from engage.inference.demo import write_demo_video
    from engage.inference.predictor import Predictor

    folder = tempfile.mkdtemp(prefix="engage-scale-")
    video = os.path.join(folder, "one.mp4")
    write_demo_video(video, frames=args.frames)
    print(
        f"{os.cpu_count()} cores; a 640x480 video of {args.frames} frames of real faces (two per frame); "
        "YuNet + onnxruntime"
    )

    # in a process of its own on one thread (yuface's OpenMP runtime reads OMP_NUM_THREADS when loaded)
    code = (
        f"import json, sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
        f"from predict_scale import stage_times; print(json.dumps(stage_times({video!r}, {args.frames})))"
    )
    stages = json.loads(
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        ).stdout.splitlines()[-1]
    )
    total = stages["decode"] + stages["detect"] + stages["score"]
    print(
        f"1. per frame, one thread: decode {1000 * stages['decode']:.2f} ms, detect {1000 * stages['detect']:.2f} ms, "
        f"score {1000 * stages['score']:.2f} ms (of which crop {1000 * stages['crop']:.2f}); sum {1000 * total:.1f} ms "
        f"= {1 / total:.0f} frames/s on one core (CPU time / wall time x{stages['cpu']:.2f}); "
        f"{stages['faces']:.1f} faces per frame"
    )
    print(
        f"   limit with every stage perfectly spread over {os.cpu_count()} cores: {os.cpu_count() / total:.0f} frames/s; "
        f"YuNet (yuface) holds the GIL, so with detection in the scoring process a video cannot beat "
        f"1 / (decode + detect) = {1 / (stages['decode'] + stages['detect']):.0f} frames/s"
    )

    predictor = Predictor("engagement", **FAST)
    cores = os.cpu_count() or 1
    ways = {
        "single thread": {"pipeline": False},
        "pipeline": {"pipeline": True},
        f"pipeline + detection in {cores} processes (now)": {"pipeline": True, "detect_processes": cores},
    }
    fps: dict[str, list[float]] = {name: [] for name in ways}
    serial_results = None
    for _ in range(args.rounds):
        for name, way in ways.items():
            rate, results = steady_fps(video, way, predictor)
            fps[name].append(rate)
            if serial_results is None:
                serial_results = results
            assert results == serial_results, f"{name} changed the results"
    single = max(fps["single thread"])
    print(
        "2. one video, steady state: "
        + ", ".join(f"{name} {max(rates):.1f} frames/s (x{max(rates) / single:.2f})" for name, rates in fps.items())
        + f"; same results; {max(max(rates) for rates in fps.values()) / (cores / total):.0%} of the limit above"
    )

    videos = os.path.join(folder, "videos")
    os.makedirs(videos)
    for i in range(args.videos):
        os.link(video, os.path.join(videos, f"lecture{i}.mp4"))
    runs = {
        "one process, single thread (before)": {"pipeline": False, "workers": 1},
        "--workers 1 (one process, pipeline)": {"pipeline": True, "workers": 1},
        "--workers 2": {"pipeline": True, "workers": 2},
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for index, (name, way) in enumerate(runs.items()):
            seconds[name].append(folder_run(videos, way, os.path.join(folder, f"run{index}.csv")))
    for index in range(1, len(runs)):
        assert filecmp.cmp(os.path.join(folder, "run0.csv"), os.path.join(folder, f"run{index}.csv"), shallow=False)
    frames = args.videos * args.frames
    baseline = min(seconds["one process, single thread (before)"])
    print(
        f"3. {args.videos} videos ({frames} frames), whole runs (model loads included): "
        + ", ".join(
            f"{name} {min(times):.1f} s ({frames / min(times):.1f} frames/s, x{baseline / min(times):.2f})"
            for name, times in seconds.items()
        )
        + "; the same CSV"
    )

    every = every_cost(video, 4)
    print(
        f"4. --every 4, per scored frame: grab() {1000 * every['grab']:.2f} ms, seek {1000 * every['seek']:.2f} ms "
        f"(x{every['seek'] / every['grab']:.2f})"
    )


if __name__ == "__main__":
    main()
