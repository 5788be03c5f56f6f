"""Scoring throughput (faces/s) of a shipped network: memory format, batch size and test-time views, in one run.

    python benchmarks/inference_speed.py [--model fer] [--faces 2048] [--threads N]

The baseline is the old default measured in the same run (contiguous weights, batch 512, one view):
the ratios are what to read. Every variant scores the same faces with the same weights.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from engage.models.checkpoint import load_network
from engage.models.loading import shipped_models
from engage.models.networks import predict_proba
from engage.models.views import SHIFT_ZOOM


def faces_per_second(network, faces: torch.Tensor, channels_last: bool, batch: int, flip: bool, views) -> float:
    network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    network.test_time_flip, network.test_time_views = flip, views
    predict_proba(network, faces[:batch], batch_size=batch)  # warm-up
    started = time.perf_counter()
    predict_proba(network, faces, batch_size=batch)
    return len(faces) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fer", help="a shipped name or a .safetensors file")
    parser.add_argument("--faces", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    network, _ = load_network(shipped_models().get(args.model, args.model))
    faces = torch.rand(args.faces, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, {args.faces} faces, fp32")
    baseline = faces_per_second(network, faces, False, 512, False, ())
    print(f"{'baseline: contiguous, batch 512, 1 view':44s} {baseline:7.0f} faces/s  x1.00")
    for label, channels_last, batch, flip, views in [
        ("channels_last, batch 512, 1 view", True, 512, False, ()),
        ("channels_last, batch 32, 1 view", True, 32, False, ()),
        ("channels_last, batch 32, flip (2 views)", True, 32, True, ()),
        (f"channels_last, batch 32, shift-zoom x flip ({2 * len(SHIFT_ZOOM)} views)", True, 32, True, SHIFT_ZOOM),
    ]:
        speed = faces_per_second(network, faces, channels_last, batch, flip, views)
        print(f"{label:44s} {speed:7.0f} faces/s  x{speed / baseline:.2f}", flush=True)


if __name__ == "__main__":
    main()
