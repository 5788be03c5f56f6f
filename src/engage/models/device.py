"""Where a network runs (--device of predict, serve, batch, evaluate and train): 'auto' takes a CUDA GPU where
PyTorch sees one, else the CPU; a GPU asked for where there is none is refused in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engage.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")  # scoring; training also takes cuda:N
CUDA_BATCH = 8192  # faces per network call on a GPU (bf16 autocast): 48x48 faces are small, large batches keep it busy


def no_cuda(name: str) -> UsageError:
    """The one line for a GPU asked for where PyTorch sees none."""
    return UsageError(f"--device {name}: no CUDA device; use --device cpu")


def torch_device(name: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' as a torch.device (what `engage train` runs on)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise no_cuda(name)
    return device


def resolve_device(name: str, backend: str = "torch") -> str:
    """'cpu' or 'cuda': where a model scores faces. 'auto' takes a CUDA GPU for the torch backend where PyTorch sees
    one; onnxruntime (backend 'onnx', the CPU build) runs on the CPU, so 'cuda' with it is refused."""
    if name not in DEVICES:
        raise UsageError(f"--device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {name!r}")
    if backend == "onnx":
        if name == "cuda":
            raise UsageError("--device cuda: --backend onnx runs on the CPU; use --backend torch or --device cpu")
        return "cpu"
    return "cpu" if name == "cpu" else torch_device(name).type
