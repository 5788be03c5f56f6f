"""The networks, built by name from one registry; each splits a backbone (forward_features) from its head."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from engage.errors import UsageError
from engage.faces.crop import FACE_SIZE
from engage.models.views import each_view


class FaceNet(nn.Module):
    """Base of every network: faces (48x48 gray by default; any multiple of 16, or RGB) in, class logits out.

    Inputs are faces scaled to [0, 1] (or the paper's per-image normalisation); the per-channel
    standardisation (input_mean, input_std) lives in the model so a weights file is self-contained.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("input_mean", torch.zeros(1))
        self.register_buffer("input_std", torch.ones(1))
        self.input_mean: torch.Tensor
        self.input_std: torch.Tensor
        self.test_time_flip = False  # in eval mode, average the logits of the face and its mirror image
        self.test_time_views: tuple = ()  # in eval mode, average over these (dx, dy, zoom) views (engage.models.views)
        self.features: nn.Sequential
        self.head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone: (N, C, H, W) faces to (N, D) features."""
        return self.features((x - self.input_mean) / self.input_std)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not (self.test_time_flip or self.test_time_views):
            return self.forward_head(self.forward_features(x))
        total: torch.Tensor | int = 0
        count = 0
        for one in each_view(x, self.test_time_views, self.test_time_flip):  # one view in memory at a time
            total, count = total + self.forward_head(self.forward_features(one)), count + 1
        assert isinstance(total, torch.Tensor)  # each_view yields at least the face itself
        return total / count

    def reset_head(self, num_classes: int) -> None:
        """A fresh classifier for another task (the ER model: FER backbone, 2-class head)."""
        self.head = nn.Linear(self.head.in_features, num_classes)
        self.num_classes = num_classes


class PaperCNN(FaceNet):
    """The paper's baseline CNN: conv 5x5x64 + LRN, pool 3/2; conv 3x3x128, pool 3/2; dense 1024-1024."""

    def __init__(self, num_classes: int = 2, dropout: float = 0.5, in_channels: int = 1, input_size: int = FACE_SIZE):
        super().__init__(num_classes)
        side = ((input_size - 3) // 2 + 1 - 3) // 2 + 1  # after the two 3/2 poolings: 11 for 48
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5),
            nn.MaxPool2d(3, 2),
            nn.Dropout(0.25),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(128 * side * side, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(1024, num_classes)


def _vgg_blocks(widths: tuple[int, ...], batch_norm: bool, dropout: float, in_channels: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        for _ in range(2):
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            channels = width
        layers += [nn.MaxPool2d(2), nn.Dropout(dropout)]
    return layers


class PaperVGG(FaceNet):
    """The paper's VGG: conv blocks 64-64, 128-128, 256-256, 512-512 (3x3, ReLU, 2x2 pool, dropout),
    dense 4096-4096-1024. 44.5M parameters: kept for faithful reproduction."""

    def __init__(
        self,
        num_classes: int = 7,
        dropout: float = 0.5,
        conv_dropout: float = 0.25,
        in_channels: int = 1,
        input_size: int = FACE_SIZE,
    ):
        super().__init__(num_classes)
        side = input_size // 16
        self.features = nn.Sequential(
            *_vgg_blocks((64, 128, 256, 512), batch_norm=False, dropout=conv_dropout, in_channels=in_channels),
            nn.Flatten(),
            nn.Linear(512 * side * side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(1024, num_classes)


class CompactVGG(FaceNet):
    """engage's default: the paper's conv stack (two 3x3 convs per block, 2x2 pool, dropout) with batch
    norm, global average pooling and a single linear head; `width` scales the channels (paper: 64)."""

    def __init__(
        self,
        num_classes: int = 7,
        width: int = 32,
        dropout: float = 0.3,
        conv_dropout: float = 0.1,
        in_channels: int = 1,
    ):
        super().__init__(num_classes)
        widths = (width, width * 2, width * 4, width * 8)
        self.features = nn.Sequential(
            *_vgg_blocks(widths, batch_norm=True, dropout=conv_dropout, in_channels=in_channels),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(widths[-1], num_classes)


MODELS: dict[str, Callable[..., FaceNet]] = {"cnn": PaperCNN, "vgg": PaperVGG, "compact": CompactVGG}


def build_model(name: str, num_classes: int, **kwargs: Any) -> FaceNet:
    """A network by name ('cnn', 'vgg', 'compact') with a num_classes head."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    if num_classes < 2:
        raise UsageError(f"a classifier needs at least 2 classes, got {num_classes}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def transfer_backbone(model: FaceNet, state_dict: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Load every backbone weight that fits (strict=False), never the head. A gray network's first filters
    initialise a colour network's (each channel gets a third: a gray face gives the same response).

    Returns (taken, left): the keys copied from state_dict, and the model's keys left as initialised.
    """
    own = model.state_dict()
    usable = {}
    for key, value in state_dict.items():
        if key.startswith("head.") or key not in own:
            continue
        if own[key].shape == value.shape:
            usable[key] = value
        elif value.ndim == 4 and value.shape[1] == 1 and own[key].shape == (value.shape[0], 3, *value.shape[2:]):
            usable[key] = value.repeat(1, 3, 1, 1) / 3.0
    model.load_state_dict(usable, strict=False)
    taken = sorted(usable)
    left = sorted(key for key in own if key not in usable)
    return taken, left


def faces_to_tensor(faces: np.ndarray, normalize: str = "standard") -> torch.Tensor:
    """(N, H, W) gray or (N, H, W, 3) RGB uint8 faces (one face without N also) to the (N, C, H, W) float32
    input of every network. Faces are at least 16 px wide, so a last axis of 3 means colour."""
    from engage.faces.crop import normalize_paper

    faces = np.asarray(faces)
    color = faces.shape[-1] == 3
    if faces.ndim == (3 if color else 2):
        faces = faces[None]
    if normalize == "paper":
        if color:
            raise UsageError("the paper's normalisation is for gray faces; use --normalize standard with --color")
        values = normalize_paper(faces)
    elif normalize == "standard":
        values = faces.astype(np.float32) / 255.0 if faces.dtype == np.uint8 else faces.astype(np.float32)
    else:
        raise UsageError(f"normalize must be 'standard' or 'paper', got {normalize!r}")
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    return tensor.permute(0, 3, 1, 2).contiguous() if color else tensor[:, None]


@torch.no_grad()
def predict_proba(model: FaceNet, inputs: torch.Tensor, batch_size: int = 32, bf16: bool = False) -> torch.Tensor:
    """Class probabilities (N, C) in float32 on the CPU for (N, 1, 48, 48) inputs on the model's device, in eval
    mode, in batches."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].contiguous(memory_format=torch.channels_last)
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch)
        outputs.append(torch.softmax(logits.float(), dim=1).cpu())
    model.train(was_training)
    if not outputs:
        return torch.zeros((0, model.num_classes))
    return torch.cat(outputs)
