"""Model files and training checkpoints: safetensors with the config that built them in the metadata."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from engage.errors import EngageError
from engage.io.files import write_bytes
from engage.models.networks import FaceNet, build_model
from engage.models.views import checked_views

META_KEY = "engage"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: detects a tampered or corrupted weights file."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].detach().contiguous().cpu()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _write(path: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = dict(meta, tensors_sha256=tensors_digest(tensors))
    # serialised in memory, written by Python: a full disk is an OSError engage reports in one line (safetensors'
    # own file writer raises its own error type)
    write_bytes(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


def read_file(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and engage metadata of a safetensors file; a missing, truncated or foreign file is an EngageError."""
    if not os.path.isfile(path):
        raise EngageError(
            f"{path}: no such model file; give a shipped model name or a .safetensors file from 'engage train'"
        )
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise EngageError(f"{path}: damaged or not a safetensors file ({error}); re-download or re-train it") from None
    if META_KEY not in metadata:
        raise EngageError(f"{path}: a safetensors file without engage's config; it was not written by engage")
    try:
        meta = json.loads(metadata[META_KEY])
    except json.JSONDecodeError:
        raise EngageError(f"{path}: its engage metadata is damaged") from None
    if meta.get("tensors_sha256") and meta["tensors_sha256"] != tensors_digest(tensors):
        raise EngageError(
            f"{path}: the weights do not match their recorded checksum: the file was altered or corrupted"
        )
    return tensors, meta


def rewrite_config(path: str, out: str, **changes: Any) -> None:
    """Write `path`'s stored tensors, unchanged, to `out` with its config updated by `changes` (e.g. a cue head)."""
    tensors, meta = read_file(path)
    _write(out, tensors, {**meta, **changes})


def model_config(
    model_name: str,
    num_classes: int,
    class_names: list[str],
    model_args: dict | None = None,
    face_settings: dict | None = None,
    **extra: Any,
) -> dict:
    """Everything needed to rebuild a network and feed it the way it was trained."""
    return dict(
        model=model_name,
        num_classes=num_classes,
        class_names=list(class_names),
        model_args=dict(model_args or {}),
        face_settings=dict(face_settings or {}),
        **extra,
    )


STORAGE = ("float32", "float16", "int8")
SCALE_SUFFIX = ".int8_scale"


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: weight ~= int8 * scale, the scale kept in float32."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    values = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return values.reshape(weight.shape), scale


def _stored(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {STORAGE}, not {storage!r}")
    if storage == "float32":
        return dict(state)
    stored = {}
    for key, value in state.items():
        if storage == "int8" and value.is_floating_point() and value.dim() >= 2:
            stored[key], stored[key + SCALE_SUFFIX] = quantize_int8(value)
        else:
            stored[key] = value.half() if value.is_floating_point() else value
    return stored


def _restored(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 weights from any storage: int8 tensors are multiplied back by their scales."""
    restored = {}
    for key, value in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(key + SCALE_SUFFIX)
        if value.dtype == torch.int8 and scale is None:
            raise RuntimeError(f"no scale for {key}")
        if scale is not None:
            value = (value.float().reshape(value.shape[0], -1) * scale.float()[:, None]).reshape(value.shape)
        restored[key] = value.float() if value.is_floating_point() else value
    return restored


def save_model(path: str, model: FaceNet, config: dict, storage: str = "float32") -> None:
    """A self-contained model file (weights + config); storage "float16" or "int8" (weights per output
    channel, the rest float16) makes the small files we ship; computation is always float32."""
    state = _stored(model.state_dict(), storage)
    _write(path, {f"model.{k}": v for k, v in state.items()}, dict(config, kind="model", dtype=storage))


def load_network(path: str) -> tuple[FaceNet, dict]:
    """Rebuild a network from a model file or checkpoint, with no other knowledge of its recipe."""
    tensors, meta = read_file(path)
    config = meta.get("config", meta)
    try:
        model = build_model(config["model"], config["num_classes"], **config.get("model_args", {}))
    except (KeyError, TypeError) as error:
        raise EngageError(f"{path}: its config does not describe an engage network ({error})") from None
    try:
        state = _restored({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as error:
        raise EngageError(
            f"{path}: int8 weights without a fitting scale ({error}); the file was altered or damaged"
        ) from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        problem = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape mismatch at {wrong[:3]}"
        )
        raise EngageError(
            f"{path}: weights do not fit a {config['model']!r} network ({problem}); "
            "the file is of another architecture or was altered"
        )
    model.load_state_dict(state)
    model.test_time_flip = bool(config.get("test_time_flip", False))
    model.test_time_views = checked_views(config.get("test_time_views"), f"{path}: test_time_views")
    # 1.6-1.9x faster inference on a CPU (benchmarks/inference_speed.py)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack the documented to(memory_format=)
    model.eval()
    return model, config


def save_checkpoint(path: str, model: FaceNet, optimizer: torch.optim.Optimizer, config: dict, state: dict) -> None:
    """Everything a killed run needs to continue exactly: weights, optimiser state, step and history."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    extra = {}
    for index, param_state in optimizer_state["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                extra[f"{index}.{key}"] = value
    meta = dict(
        kind="checkpoint",
        config=config,
        state=state,
        optimizer={"param_groups": optimizer_state["param_groups"], "scalars": extra},
    )
    _write(path, tensors, meta)


def load_checkpoint(path: str, model: FaceNet, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights and optimiser state in place; returns the saved training state."""
    tensors, meta = read_file(path)
    if meta.get("kind") != "checkpoint":
        raise EngageError(f"{path}: a model file, not a training checkpoint")
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return meta["state"]
