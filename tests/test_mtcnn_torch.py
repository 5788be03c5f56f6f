"""MTCNN in PyTorch (engage.faces.mtcnn_torch) against the onnxruntime MTCNN it ports: the same faces, boxes,
confidences and landmarks on the sample photos and the demo video's frames; batches equal single frames; on a
GPU the boxes stay within 2 px of the CPU's."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from engage.errors import UsageError
from engage.faces.detect import FaceBox, MtcnnDetector
from engage.faces.mtcnn_torch import (
    MtcnnTorchDetector,
    create_gpu_detector,
    mtcnn_weights_folder,
    pyramid_scales,
    read_onnx_initializers,
    resize_area,
)
from engage.inference.demo import moving_faces_frames


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small networks on a shared CPU: one thread is as fast as several and does not stall when cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(sample_images) -> dict[str, np.ndarray]:
    """The sample photos, every third frame of the demo video and a smaller, wider video frame."""
    found = dict(sample_images)
    found.update({f"frame {i}": frame for i, frame in enumerate(moving_faces_frames()) if i % 3 == 0})
    found["small frame"] = next(iter(moving_faces_frames(3, size=(400, 240))))
    return found


def largest_gaps(expected: list[FaceBox], got: list[FaceBox]) -> tuple[float, float, float]:
    """(box, confidence, landmark) largest differences between two lists of the same faces."""
    box = max((max(abs(a - b) for a, b in zip(e.as_list(), g.as_list())) for e, g in zip(expected, got)), default=0)
    confidence = max((abs(e.confidence - g.confidence) for e, g in zip(expected, got)), default=0.0)
    landmark = max(
        (
            abs(a - b)
            for e, g in zip(expected, got)
            for ep, gp in zip(e.landmarks or (), g.landmarks or ())
            for a, b in zip(ep, gp)
        ),
        default=0.0,
    )
    return box, confidence, landmark


def test_reads_the_onnx_weights_as_the_onnx_package_does():
    onnx = pytest.importorskip("onnx", reason="needs the extra 'fast' (onnx): pip install 'engage[fast]'")
    from onnx import numpy_helper

    for net in ("pnet", "rnet", "onet"):
        path = os.path.join(mtcnn_weights_folder(), f"{net}.onnx")
        expected = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
        got = read_onnx_initializers(path)
        assert got.keys() == expected.keys()
        for name, array in expected.items():
            assert got[name].dtype == np.float32 and np.array_equal(got[name], array), (net, name)


def test_gives_the_faces_of_the_onnxruntime_mtcnn_on_a_cpu(images):
    reference, ported = MtcnnDetector(min_confidence=0.0), MtcnnTorchDetector(min_confidence=0.0)
    faces = 0
    for name, image in images.items():
        expected, got = reference.detect(image), ported.detect(image)
        assert len(got) == len(expected), name
        box, confidence, landmark = largest_gaps(expected, got)
        assert box <= 1 and confidence <= 1e-3 and landmark <= 1, (name, box, confidence, landmark)
        assert all(len(face.landmarks or ()) == 5 for face in got)
        faces += len(got)
    assert faces >= len(images)  # the photos and frames have faces to compare (coffee has none)
    assert ported.detect(images["coffee.png"]) == []


def test_a_batch_gives_what_single_frames_give(images):
    detector = MtcnnTorchDetector()
    frames = [images["frame 0"], images["group.png"], images["frame 3"], images["small frame"], images["frame 6"]]
    assert detector.detect_batch(frames) == [detector.detect(frame) for frame in frames]
    assert detector.detect_batch([]) == []


def test_the_gpu_path_on_a_cpu_pyramid_by_matrix_products_and_batched_frames(images):
    """The GPU's pyramid (resize_area) against cv2.resize(INTER_AREA): a value off by one only where a sum falls
    on .5, and the same faces when the detector takes that path and runs P-Net on several frames at once."""
    for name in ("astronaut.png", "frame 0"):
        image = images[name]
        height, width = image.shape[:2]
        for scale in pyramid_scales(height, width, 20):
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            expected = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(int)
            got = resize_area(torch.from_numpy(image)[None], size[1], size[0])[0].numpy().astype(int)
            assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 1e-4, (name, scale)
    like_a_gpu = MtcnnTorchDetector(min_confidence=0.0)  # the GPU's path: pyramid by resize_area, frames batched
    like_a_gpu._resize_on_device, like_a_gpu._pnet_pixels = True, 10**8
    reference = MtcnnTorchDetector(min_confidence=0.0)
    names = ("frame 0", "frame 9", "frame 21")
    for name, got in zip(names, like_a_gpu.detect_batch([images[name] for name in names])):
        expected = reference.detect(images[name])
        assert len(got) == len(expected) and largest_gaps(expected, got)[0] <= 1, name


def test_create_gpu_detector_takes_the_options_of_create_detector():
    detector = create_gpu_detector(min_confidence=0.5, detect_size=320, device="cpu")
    assert (detector.min_confidence, detector.max_side, detector.device, detector.name) == (0.5, 320, "cpu", "mtcnn")
    assert create_gpu_detector(device="cpu").min_confidence == MtcnnDetector().min_confidence
    with pytest.raises(UsageError, match="at least 64"):
        create_gpu_detector(detect_size=32, device="cpu")
    with pytest.raises(UsageError, match="unknown torch device"):
        create_gpu_detector(device="abacus")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            create_gpu_detector()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: runs on a GPU machine")
def test_on_a_gpu_the_boxes_stay_within_2_px_of_the_cpu(images):
    cpu, gpu = MtcnnTorchDetector(min_confidence=0.0), create_gpu_detector(min_confidence=0.0)
    frames = list(images.values())
    batched = gpu.detect_batch(frames)
    for name, image, on_gpu in zip(images, frames, batched):
        expected = cpu.detect(image)
        assert len(on_gpu) == len(expected), name
        box, confidence, landmark = largest_gaps(expected, on_gpu)
        assert box <= 2 and confidence <= 1e-3 and landmark <= 2, (name, box, confidence, landmark)
        single = gpu.detect(image)  # another batch size may pick other kernels: the last bit may move
        assert len(single) == len(on_gpu) and largest_gaps(on_gpu, single)[0] <= 1, name
