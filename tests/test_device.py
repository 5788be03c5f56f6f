"""--device cpu|cuda|auto of predict, serve, batch and evaluate: resolved once, refused in one line where there is no
GPU, the CPU's answer unchanged; on a GPU machine, bf16 scores close to the CPU's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, make_dataset, write_image

from engage.cluster.options import BatchOptions
from engage.errors import UsageError
from engage.models.device import CUDA_BATCH, resolve_device, torch_device
from engage.models.loading import FaceClassifier, load_model

NO_CUDA = "--device cuda: no CUDA device; use --device cpu"


def run_without_gpu(*args: str) -> subprocess.CompletedProcess:
    """`engage ARGS` in a fresh interpreter that sees no CUDA device, also on a GPU machine."""
    return subprocess.run(
        [sys.executable, "-m", "engage.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_devices_resolve_and_bad_ones_are_refused_in_one_line(monkeypatch):
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu" and resolve_device("auto", backend="onnx") == "cpu"
    for bad in ("tpu", "gpu", "cuda:0", "CPU"):
        with pytest.raises(UsageError, match="--device must be auto, cpu or cuda, got"):
            resolve_device(bad)
    with pytest.raises(UsageError, match="--backend onnx runs on the CPU"):
        resolve_device("cuda", backend="onnx")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UsageError) as refused:
        resolve_device("cuda")
    assert str(refused.value) == NO_CUDA
    with pytest.raises(UsageError, match="--device cuda:1: no CUDA device"):
        torch_device("cuda:1")  # engage train's devices: the same check
    with pytest.raises(UsageError, match="HOG\\+SVM model, which runs on the CPU"):
        FaceClassifier("hog.safetensors", {}, svm=object()).to("cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["predict", "serve", "batch", "evaluate"])
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(command, tmp_path, sample_images):
    photos = tmp_path / "photos"
    write_image(photos / "astronaut.png", sample_images["astronaut.png"])
    out = tmp_path / "out"
    data = tmp_path / "faces.npz"
    make_dataset(np.zeros((4, 48, 48), np.uint8), [0, 1, 0, 1], ["disengaged", "engaged"]).save(str(data))
    arguments = {
        "predict": ["predict", str(photos), "--csv", str(out)],
        "serve": ["serve", "--port", "0"],
        "batch": ["batch", str(photos), "--out", str(out)],
        "evaluate": ["evaluate", "--model", "engagement", "--data", str(data), "--out", str(out)],
    }[command]
    line = assert_one_line_error(run_without_gpu(*arguments, "--device", "cuda"))
    assert line == f"engage: error: {NO_CUDA}"
    assert not out.exists()


def test_device_cpu_gives_the_same_p_engaged_as_before():
    def p_engaged(*args: str) -> list:
        result = run_without_gpu("predict", "--sample", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [[face["p_engaged"] for face in json.loads(line)["faces"]] for line in result.stdout.splitlines()]

    default = p_engaged()
    assert default == p_engaged("--device", "cpu") == p_engaged("--device", "auto")  # auto: no GPU seen here
    assert sum(len(faces) for faces in default) >= 3


def test_batch_scorers_get_the_gpus_and_the_results_folder_does_not_record_the_device():
    assert BatchOptions(device="cuda", scorers=1).on_ray(1)[0].device == "cuda"
    assert BatchOptions(device="cuda", scorers=1).on_ray(1)[1] == 1.0
    assert BatchOptions(device="auto", scorers=3).on_ray(2)[1] == 0.5  # two scorers share a GPU: all three fit
    assert BatchOptions(device="auto", scorers=4).on_ray(1)[1] == 0.25
    assert BatchOptions(device="auto").on_ray(0) == (BatchOptions(device="cpu"), 0.0)
    assert BatchOptions(device="auto", backend="onnx").on_ray(2) == (BatchOptions(device="cpu", backend="onnx"), 0.0)
    assert BatchOptions(device="cpu").on_ray(8)[1] == 0.0
    with pytest.raises(UsageError) as refused:
        BatchOptions(device="cuda").on_ray(0)
    assert str(refused.value) == NO_CUDA
    with pytest.raises(UsageError, match="--device must be"):
        BatchOptions(device="gpu").on_ray(1)
    assert BatchOptions(device="auto", scorers=2).settings() == BatchOptions().settings()
    assert "device" not in BatchOptions().settings()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: runs on a GPU machine")
class TestOnAGpu:
    def test_predictor_on_cuda_scores_the_sample_within_002_of_the_cpu(self, sample_images):
        from engage.inference.predictor import Predictor

        cpu, gpu = Predictor(device="cpu"), Predictor(device="auto")
        assert (cpu.device, gpu.device) == ("cpu", "cuda")
        for name, rgb in sample_images.items():
            on_cpu, on_gpu = cpu.predict(rgb), gpu.predict(rgb)
            assert [face.box for face in on_cpu] == [face.box for face in on_gpu], name
            for a, b in zip(on_cpu, on_gpu):
                assert abs(a.p_engaged - b.p_engaged) <= 0.02, (name, a.p_engaged, b.p_engaged)

    def test_the_network_alone_at_batch_8192(self):
        faces = np.random.default_rng(0).integers(0, 256, (CUDA_BATCH, 48, 48), dtype=np.uint8)
        model = load_model("engagement")
        on_cpu = model.predict_proba(faces[:512], batch_size=256)
        model.to("cuda")
        model.predict_proba(faces)  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        on_gpu = model.predict_proba(faces)
        seconds = time.perf_counter() - started
        assert on_gpu.dtype == np.float32 and on_gpu.shape == (CUDA_BATCH, 2)
        assert np.abs(on_gpu[:512] - on_cpu).max() <= 0.02
        print(f"network on cuda, bf16, batch {CUDA_BATCH}: {CUDA_BATCH / seconds:,.0f} faces/s")
