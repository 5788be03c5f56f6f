"""GPU throughput (issue 26): the network alone, one video and a folder of videos, on a CUDA device beside the CPU,
in one run.

    python benchmarks/gpu_throughput.py                                  # on a machine with a GPU: both halves
    python benchmarks/gpu_throughput.py --frames 300 --videos 8 --cpu-batch 256

(a) the network alone: faces/s of the model's predict_proba on 8192 random 48x48 faces, best of 3 after a warm-up:
    cuda in bf16 autocast at batch 8192 (CUDA_BATCH, what --device cuda uses; faces moved to the GPU in the call,
    probabilities back as float32), the CPU in float32 at batch --cpu-batch (256: what engage batch's scorers use)
    on every core, on the first 2048 faces.
(b) one 640x480 video (the demo video: two real faces, one moving), end to end as `engage predict VIDEO` scores it
    (Predictor.predict_video, faces detected in one process per core; model loading and a 2-frame warm-up left out):
    frames/s with --device cuda and cpu, and the largest difference of p_engaged between them.
(c) a folder of --videos such videos end to end with `engage batch` (run_batch on a local Ray on every core, a
    warm-up run first; Ray Data's start, detection, scoring and Parquet included): frames/s with --device cuda and cpu.
Targets printed beside the figures: network >= 100,000 faces/s and folder >= 2,000 frames/s on the GPU. Without a
CUDA device the CPU half runs and the GPU half is reported as skipped; without the extra 'cluster', (c) is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch

TARGET_FACES = 100_000  # faces/s, the network alone on the GPU
TARGET_FRAMES = 2_000  # frames/s, a folder of videos end to end on the GPU


def network_rate(model, faces: np.ndarray, batch: int) -> float:
    """Faces/s of model.predict_proba over `faces`, best of 3 after a warm-up."""
    model.predict_proba(faces[:batch], batch_size=batch)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        model.predict_proba(faces, batch_size=batch)  # returns numpy: the GPU has finished
        best = max(best, len(faces) / (time.perf_counter() - started))
    return best


def video_rate(predictor, video: str) -> tuple[float, list[float]]:
    """(frames/s, every face's p_engaged) of one pass over the video as `engage predict VIDEO` makes it."""
    for _ in predictor.predict_video(video, max_frames=2, pipeline=False):  # warm-up: first calls allocate
        pass
    started, frames, scores = time.perf_counter(), 0, []
    for frame in predictor.predict_video(video, detect_processes=os.cpu_count() or 1):
        frames += 1
        scores += [face.p_engaged for face in frame.faces if face.p_engaged is not None]
    return frames / (time.perf_counter() - started), scores


def folder_rate(videos: list[str], warm: str, folder: str, device: str, model: str) -> float:
    """Frames/s of `engage batch --device DEVICE` over the videos, on a local Ray with every core."""
    import ray

    from engage.cluster.runner import BatchOptions, run_batch

    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # as engage batch: Ray Data's notices left out
    options = BatchOptions(model=model, device=device)
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        run_batch([warm], os.path.join(folder, f"warm-{device}"), options)
        run = run_batch(videos, os.path.join(folder, f"results-{device}"), options)
    finally:
        ray.shutdown()
    assert not run.failures and len(run.scored) == len(videos), run.failures
    return run.frames / run.seconds


def versus(gpu: float, cpu: float, unit: str, target: float | None = None) -> str:
    goal = f"; target >= {target:,.0f} {unit}: {'met' if gpu >= target else 'NOT met'}" if target else ""
    return f"cuda {gpu:,.1f} {unit}, cpu {cpu:,.1f} {unit}: x{gpu / cpu:.1f}{goal}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="engagement")
    parser.add_argument("--frames", type=int, default=300, help="frames per test video")
    parser.add_argument("--videos", type=int, default=8, help="videos in the folder of (c)")
    parser.add_argument("--cpu-batch", type=int, default=256, help="faces per network call on the CPU")
    args = parser.parse_args()

    from engage.inference.demo import write_demo_video
    from engage.inference.predictor import Predictor
    from engage.models.device import CUDA_BATCH
    from engage.models.loading import load_model

    gpu = torch.cuda.is_available()
    where = torch.cuda.get_device_name(0) if gpu else "no CUDA device: the GPU half is skipped"
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {where}; model {args.model}")

    faces = np.random.default_rng(0).integers(0, 256, (CUDA_BATCH, 48, 48), dtype=np.uint8)
    cpu_faces = network_rate(load_model(args.model), faces[:2048], args.cpu_batch)
    print(f"(a) network alone, cpu fp32 batch {args.cpu_batch}: {cpu_faces:,.0f} faces/s")
    if gpu:
        gpu_faces = network_rate(load_model(args.model).to("cuda"), faces, CUDA_BATCH)
        print(
            f"(a) network alone, cuda bf16 batch {CUDA_BATCH}: {versus(gpu_faces, cpu_faces, 'faces/s', TARGET_FACES)}"
        )

    folder = tempfile.mkdtemp(prefix="engage-gpu-bench-")
    try:
        video = os.path.join(folder, "lecture00.mp4")
        write_demo_video(video, frames=args.frames)
        cpu_fps, cpu_scores = video_rate(Predictor(args.model, device="cpu"), video)
        print(f"(b) one 640x480 video of {args.frames} frames, cpu: {cpu_fps:,.1f} frames/s")
        if gpu:
            gpu_fps, gpu_scores = video_rate(Predictor(args.model, device="cuda"), video)
            same = len(gpu_scores) == len(cpu_scores)
            worst = max((abs(a - b) for a, b in zip(gpu_scores, cpu_scores)), default=0.0) if same else float("nan")
            print(f"(b) {versus(gpu_fps, cpu_fps, 'frames/s')}; largest |p_engaged cuda - cpu| {worst:.4f}")
        try:
            import ray  # noqa: F401
        except ImportError:
            print("(c) skipped: engage batch needs the extra 'cluster'")
            return
        warm = os.path.join(folder, "warm.mp4")
        write_demo_video(warm, frames=8)
        videos = [video]
        for index in range(1, args.videos):
            videos.append(os.path.join(folder, f"lecture{index:02d}.mp4"))
            shutil.copy(video, videos[-1])
        cpu_folder = folder_rate(videos, warm, folder, "cpu", args.model)
        print(f"(c) a folder of {args.videos} videos, engage batch --device cpu: {cpu_folder:,.1f} frames/s")
        if gpu:
            gpu_folder = folder_rate(videos, warm, folder, "cuda", args.model)
            print(f"(c) engage batch: {versus(gpu_folder, cpu_folder, 'frames/s', TARGET_FRAMES)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
