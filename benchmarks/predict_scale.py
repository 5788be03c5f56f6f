"""How `engage predict` uses the cores of one machine, against the single-thread path, all in the same run.

    python benchmarks/predict_scale.py [--frames 300] [--videos 4] [--rounds 2]

1. Time per frame of each stage, measured apart on one thread: decode (read + colour conversion), detect
   (YuNet), score (crop + the network on onnxruntime): where the physical limit of one video is.
2. One 640x480 video of real faces with the fast settings (YuNet + onnxruntime), steady state (model loaded,
   first 30 frames left out): the single-thread path (`pipeline=False`) against the pipeline (a thread decodes
   and detects ahead while the calling thread tracks and scores). Same results checked.
3. A folder of `--videos` such videos: `engage predict DIR --workers 1` against `--workers 2` (whole runs,
   start-up included), same CSV checked.
4. `--every 4`: skipping frames by grab() (decoded, not converted) against seeking (CAP_PROP_POS_FRAMES).
"""

from __future__ import annotations

import argparse
import filecmp
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
    started = time.perf_counter()
    decoded = [frame.rgb for frame in VideoSource(video).frames(max_frames=frames)]
    decode = (time.perf_counter() - started) / len(decoded)
    predictor.detect(decoded[0])
    started = time.perf_counter()
    boxes = [predictor.detect(rgb) for rgb in decoded]
    detect = (time.perf_counter() - started) / len(decoded)
    started = time.perf_counter()
    for i in range(0, len(decoded), 8):  # as predict_video batches: 8 frames per network call
        predictor._score(list(zip(decoded[i:i + 8], boxes[i:i + 8])))
    score = (time.perf_counter() - started) / len(decoded)
    crop = time.perf_counter()
    for rgb, found in zip(decoded, boxes):
        crop_faces(rgb, found, predictor.settings, False, to_gray(rgb))
    crop = (time.perf_counter() - crop) / len(decoded)
    faces = sum(len(found) for found in boxes) / len(decoded)
    return {"decode": decode, "detect": detect, "score": score, "crop": crop, "faces": faces}


def steady_fps(video: str, pipeline: bool, predictor) -> tuple[float, list]:
    times, results = [], []
    for frame in predictor.predict_video(video, pipeline=pipeline):
        times.append(time.perf_counter())
        results.append((frame.frame, [(f.face_id, f.p_engaged, f.box) for f in frame.faces]))
    steady = times[30:]
    return (len(steady) - 1) / (steady[-1] - steady[0]), results


def folder_run(folder: str, workers: int, csv_path: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engage.cli", "predict", folder, "--detector", "yunet", "--backend", "onnx",
                    "--workers", str(workers), "--csv", csv_path], check=True, capture_output=True)
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
    print(f"{os.cpu_count()} cores; a 640x480 video of {args.frames} frames of real faces (two per frame); "
          "YuNet + onnxruntime")

    stages = stage_times(video, args.frames)
    total = stages["decode"] + stages["detect"] + stages["score"]
    print(f"1. per frame, one thread: decode {1000 * stages['decode']:.2f} ms, detect {1000 * stages['detect']:.2f} ms, "
          f"score {1000 * stages['score']:.2f} ms (of which crop {1000 * stages['crop']:.2f}); sum {1000 * total:.1f} ms "
          f"= {1 / total:.0f} frames/s on one core; {stages['faces']:.1f} faces per frame")
    print(f"   limit with every stage perfectly spread over {os.cpu_count()} cores: {os.cpu_count() / total:.0f} frames/s; "
          f"YuNet (yuface) holds the GIL, so in one process a video cannot beat 1 / (decode + detect) = "
          f"{1 / (stages['decode'] + stages['detect']):.0f} frames/s")

    predictor = Predictor("engagement", **FAST)
    fps = {False: [], True: []}
    serial_results = None
    for _ in range(args.rounds):
        for pipeline in (False, True):
            rate, results = steady_fps(video, pipeline, predictor)
            fps[pipeline].append(rate)
            if pipeline:
                assert results == serial_results, "the pipeline changed the results"
            else:
                serial_results = results
    single, piped = max(fps[False]), max(fps[True])
    print(f"2. one video, steady state: single thread {single:.1f} frames/s, pipeline {piped:.1f} frames/s "
          f"(x{piped / single:.2f}; same results)")

    videos = os.path.join(folder, "videos")
    os.makedirs(videos)
    for i in range(args.videos):
        os.link(video, os.path.join(videos, f"lecture{i}.mp4"))
    seconds = {1: [], 2: []}
    for _ in range(args.rounds):
        for workers in (1, 2):
            seconds[workers].append(folder_run(videos, workers, os.path.join(folder, f"w{workers}.csv")))
    assert filecmp.cmp(os.path.join(folder, "w1.csv"), os.path.join(folder, "w2.csv"), shallow=False)
    one, two = min(seconds[1]), min(seconds[2])
    frames = args.videos * args.frames
    print(f"3. {args.videos} videos ({frames} frames), whole runs: --workers 1 {one:.1f} s ({frames / one:.1f} frames/s), "
          f"--workers 2 {two:.1f} s ({frames / two:.1f} frames/s): x{one / two:.2f}; the same CSV")

    every = every_cost(video, 4)
    print(f"4. --every 4, per scored frame: grab() {1000 * every['grab']:.2f} ms, seek {1000 * every['seek']:.2f} ms "
          f"(x{every['seek'] / every['grab']:.2f})")


if __name__ == "__main__":
    main()
