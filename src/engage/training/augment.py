"""Augmentation of a whole batch in one tensor operation: flip, shift, rotation, zoom (the paper's 4-px pad and
random crop, flip and rotation) and random erasing; the random draws come from a generator seeded by the step,
so a resumed run augments exactly as an uninterrupted one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(
    batch: torch.Tensor,
    generator: torch.Generator,
    flip: bool,
    pad: int,
    rotate: float,
    scale: float = 0.0,
    erase: float = 0.0,
) -> torch.Tensor:
    """Random flip, translation (up to pad px), rotation (up to rotate degrees), zoom (by up to +-scale) and
    random erasing (a rectangle of 2-20% of the face blanked with probability erase) of a whole batch at once."""
    n, _, height, width = batch.shape
    device = generator.device  # the batch's device: a CUDA run draws on the GPU
    if flip:
        flipped = torch.rand(n, generator=generator, device=device) < 0.5
        batch = torch.where(flipped[:, None, None, None], batch.flip(-1), batch)
    if pad > 0 or rotate > 0 or scale > 0:
        angle = (torch.rand(n, generator=generator, device=device) * 2 - 1) * math.radians(rotate)
        shift = (
            torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=device).float()
            if pad > 0
            else torch.zeros(n, 2, device=batch.device)
        )
        zoom = (
            1 + (torch.rand(n, generator=generator, device=device) * 2 - 1) * scale
            if scale > 0
            else torch.ones(n, device=batch.device)
        )
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [
                torch.stack([cos, -sin, shift[:, 0] * 2 / width], dim=1),
                torch.stack([sin, cos, shift[:, 1] * 2 / height], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if erase > 0:
        batch = random_erase(batch, generator, erase)
    return batch


def random_erase(batch: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """Blank one random rectangle (2-20% of the area, aspect 0.3-3.3) in each face with the given probability
    (Zhong et al. 2020): the network cannot lean on one region such as the mouth alone."""
    n, _, height, width = batch.shape
    device = generator.device
    chosen = torch.rand(n, generator=generator, device=device) < probability
    area = (0.02 + torch.rand(n, generator=generator, device=device) * 0.18) * height * width
    aspect = torch.exp((torch.rand(n, generator=generator, device=device) * 2 - 1) * math.log(3.3))
    box_h = torch.sqrt(area * aspect).clamp(1, height).floor()
    box_w = torch.sqrt(area / aspect).clamp(1, width).floor()
    top = (torch.rand(n, generator=generator, device=device) * (height - box_h + 1)).floor()
    left = (torch.rand(n, generator=generator, device=device) * (width - box_w + 1)).floor()
    rows = torch.arange(height, dtype=torch.float32, device=batch.device)[None, :, None]
    cols = torch.arange(width, dtype=torch.float32, device=batch.device)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + box_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + box_w)[:, None, None])
        & chosen[:, None, None]
    )
    return batch.masked_fill(inside[:, None], 0.0)
