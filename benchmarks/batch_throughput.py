"""Throughput of `engage batch` (extra 'cluster') with 1 and 2 Ray workers in the same run.

    python benchmarks/batch_throughput.py                     # 8 videos of 60 frames, local Ray with 1 then 2 CPUs
    python benchmarks/batch_throughput.py --videos 4 --frames 30
    python benchmarks/batch_throughput.py --long              # one long video (3 min) in segments of 20 s

Writes the demo video (the astronaut moving and the cameraman still, 640x480, real photos) `--videos` times,
then for each worker count starts a local Ray with that many CPUs (one detection task per CPU; the scoring actor
takes no CPU slot), warms it with one short run, times `run_batch` on all the videos into a fresh results folder
(Ray Data's start, detection, scoring and writing Parquet included), and prints frames/s for each and the ratio,
and, for scale, frames/s of the same videos scored in this process without Ray (Predictor.predict_video).
With --long: one video of --long-frames frames (the demo video's motion, slowed to that length), cut into segments
of --segment-s seconds; the rows of each run are checked equal to Predictor.predict_video's.
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
    parser.add_argument("--long", action="store_true", help="instead: one long video, in segments, 1 and 2 workers")
    parser.add_argument("--long-frames", type=int, default=5400, help="frames of the long video (3 min at 30/s)")
    parser.add_argument("--segment-s", type=float, default=20.0, help="segment length for --long")
    parser.add_argument("--detector", default=None, help="face detector (default: the model's own)")
    args = parser.parse_args()
    if args.long:
        return long_video(args)

    from engage.cluster.runner import BatchOptions
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
            run = timed_run(workers, warm, videos, os.path.join(folder, f"results-{workers}"), options)
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


def timed_run(workers: int, warm: str, inputs: list[str], out: str, options):
    """run_batch on a local Ray of `workers` CPUs, warmed first with one short video (not timed)."""
    import ray

    from engage.cluster.runner import run_batch

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        run_batch([warm], out + "-warm", options)
        return run_batch(inputs, out, options)
    finally:
        ray.shutdown()


def long_video(args: argparse.Namespace) -> None:
    """One long video in segments on 1 and 2 Ray workers, and in one process without Ray, rows checked equal."""
    import numpy as np

    from engage.cluster.runner import BatchOptions
    from engage.cluster.segments import plan_units
    from engage.cluster.sources import list_sources
    from engage.inference.demo import write_demo_video
    from engage.inference.records import to_dataframe

    folder = tempfile.mkdtemp(prefix="engage-batch-long-")
    try:
        video = os.path.join(folder, "lecture.mp4")
        write_demo_video(video, frames=args.long_frames)
        warm = os.path.join(folder, "warm.mp4")
        write_demo_video(warm, frames=8)
        options = BatchOptions(model=args.model, detector=args.detector, segment_s=args.segment_s)
        units = plan_units(list_sources([video])[0], args.segment_s, options.every, options.detect_every)
        print(
            f"engage batch: one video of {args.long_frames} frames (640x480 at 30 frames/s, 2 real faces) in "
            f"{len(units)} segments of {args.segment_s:g} s, model {args.model}, detector "
            f"{options.predictor().detector_name}, --detect-every {options.detect_every}, {os.cpu_count()} cores"
        )
        started = time.perf_counter()  # without Ray: Predictor.predict_video, as `engage predict`
        expected = to_dataframe(options.predictor().predict_video(video, detect_processes=os.cpu_count() or 1))
        expected = expected.sort_values(["frame", "face_id"])
        seconds = time.perf_counter() - started
        print(
            f"  without Ray (engage predict's way, one process): {len(set(expected['frame']))} frames in "
            f"{seconds:.1f} s = {len(set(expected['frame'])) / seconds:.1f} frames/s"
        )
        rates = {}
        for workers in (int(w) for w in args.workers.split(",")):
            out = os.path.join(folder, f"results-{workers}")
            run = timed_run(workers, warm, [video], out, options)
            assert not run.failures and len(run.scored) == 1, run.failures
            import pyarrow.parquet as pq

            rows = pq.read_table(os.path.join(out, "faces")).to_pandas().sort_values(["frame", "face_id"])
            same = (
                len(rows) == len(expected)
                and (rows["face_id"].to_numpy() == expected["face_id"].to_numpy()).all()
                and float(np.abs(rows["p_engaged_raw"].to_numpy() - expected["p_engaged_raw"].to_numpy()).max()) < 1e-4
            )
            rates[workers] = run.frames / run.seconds
            print(
                f"  {workers} Ray worker(s): {run.frames} frames in {run.seconds:.1f} s = {rates[workers]:.1f} "
                f"frames/s; rows equal to engage predict's: {'yes' if same else 'NO'}"
            )
        counts = sorted(rates)
        if len(counts) >= 2:
            print(f"{counts[-1]} / {counts[0]} worker(s): x{rates[counts[-1]] / rates[counts[0]]:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
