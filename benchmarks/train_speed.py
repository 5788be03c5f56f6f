"""Training throughput (images/s) of each network, fp32 vs bf16 autocast, channels_last, in one run.

    python benchmarks/train_speed.py [--steps 20] [--batch 64] [--models compact,vgg,cnn] [--threads N] [--device cuda]

The baseline is fp32 of the same network measured in the same run: the ratio is what to read.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from engage.errors import UsageError
from engage.models.device import torch_device
from engage.models.networks import build_model, count_parameters
from engage.training.augment import augment
from engage.training.loop import native_bf16


def images_per_second(
    name: str, model_args: dict, bf16: bool, steps: int, batch: int, device: torch.device | None = None
) -> float:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(name, 7, **model_args).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    faces = torch.rand(batch * 4, 1, 48, 48, device=device)
    labels = torch.randint(0, 7, (batch * 4,), device=device)
    generator = torch.Generator(device).manual_seed(0)
    warm_up = 2 if device.type == "cpu" else 10

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for step in range(steps + warm_up):
        if step == warm_up:
            sync()
            started = time.perf_counter()
        index = torch.randint(0, len(faces), (batch,), generator=generator, device=device)
        x = augment(faces[index], generator, True, 4, 16.0).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default="compact,compact:48,compact:64,cnn,vgg")
    parser.add_argument("--threads", type=int, default=0, help="0: all cores (a busy machine: use 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (as engage train --device)")
    args = parser.parse_args()
    try:
        device = torch_device(args.device)
    except UsageError as error:
        raise SystemExit(f"train_speed: {error}") from None
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"native bf16: {native_bf16(device)}"
    )
    for spec in args.models.split(","):
        name, _, width = spec.partition(":")
        model_args = {"width": int(width)} if width else {}
        params = count_parameters(build_model(name, 7, **model_args))
        big = name == "vgg"  # 44.5M parameters: fewer, smaller steps keep the benchmark short
        steps, batch = (max(2, args.steps // 5), max(8, args.batch // 4)) if big else (args.steps, args.batch)
        fp32 = images_per_second(name, model_args, False, steps, batch, device)
        bf16 = images_per_second(name, model_args, True, steps, batch, device)
        epoch = 28709 / max(fp32, bf16)
        print(
            f"{spec:11s} {params / 1e6:6.2f}M params  batch {batch:3d}  fp32 {fp32:7.1f} img/s  bf16 {bf16:7.1f} img/s  "
            f"bf16/fp32 x{bf16 / fp32:.2f}  FER epoch ~{epoch:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
