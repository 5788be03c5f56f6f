"""Throughput of `engage batch` (extra 'cluster') with 1 and 2 Ray workers in the same run.

    python benchmarks/batch_throughput.py                     # 8 videos of 60 frames, local Ray with 1 then 2 CPUs
    python benchmarks/batch_throughput.py --videos 4 --frames 30

Writes the demo video (the astronaut moving and the cameraman still, 640x480, real photos) `--videos` times,
then for each worker count starts a local Ray with that many CPUs (one detection task per CPU; the scoring actor
takes no CPU slot), warms it with one short run, times `run_batch` on all the videos into a fresh results folder
(Ray Data's start, detection, scoring and writing Parquet included), and prints frames/s for each and the ratio,
and, for scale, frames/s of the same videos scored in this process without Ray (Predictor.predict_video).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--workers", default="1,2", help="Ray CPU counts to compare, in one run")
    parser.add_argument("--model", default="engagement")
    args = parser.parse_args()

    import ray

    from engage.cluster.runner import BatchOptions, run_batch
    from engage.inference.demo import write_demo_video

    folder = tempfile.mkdtemp(prefix="engage-batch-bench-")
    try:
        warm = os.path.join(folder, "warm.mp4")
        write_demo_video(warm, frames=8)
        videos = []
        for index in range(args.videos):
            videos.append(os.path.join(folder, f"lecture{index:02d}.mp4"))
            write_demo_video(videos[-1], frames=args.frames)
        options = BatchOptions(model=args.model)
        rates = {}
        print(
            f"engage batch: {args.videos} videos x {args.frames} frames (640x480, 2 real faces each), "
            f"model {args.model}, detector {options.predictor().detector_name}, {os.cpu_count()} cores"
        )
        for workers in (int(w) for w in args.workers.split(",")):
            ray.init(
                address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="warning"
            )
            try:
                run_batch([warm], os.path.join(folder, f"warm-{workers}"), options)
                run = run_batch(videos, os.path.join(folder, f"results-{workers}"), options)
            finally:
                ray.shutdown()
            assert not run.failures and len(run.scored) == args.videos, run.failures
            rates[workers] = run.frames / run.seconds
            print(
                f"  {workers} Ray worker(s): {run.frames} frames in {run.seconds:.1f} s = {rates[workers]:.1f} frames/s"
            )
        started = time.perf_counter()  # the same videos without Ray: Predictor.predict_video, as `engage predict`
        frames = sum(len(list(options.predictor().predict_video(video, every=options.every))) for video in videos)
        seconds = time.perf_counter() - started
        print(
            f"  without Ray (Predictor.predict_video, one process): {frames} frames in {seconds:.1f} s = "
            f"{frames / seconds:.1f} frames/s"
        )
        counts = sorted(rates)
        if len(counts) >= 2:
            print(f"{counts[-1]} / {counts[0]} worker(s): x{rates[counts[-1]] / rates[counts[0]]:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
