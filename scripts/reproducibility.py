"""How far the same images score apart on other CPUs and package versions: the sample photos and real WACV, DAiSEE
and YawDD images (JPEG, whole frames through MTCNN and the shipped model, as `engage predict` scores them), in this
environment and in others, compared face by face.

    python scripts/reproducibility.py [--images 300] [--overlay NAME=DIR ...]

Environments: this one; the same with PyTorch's and oneDNN's kernels for AVX2 and for SSE4.1 (machines of our kind
differ in AVX-512); with OpenCV 5.0.0's dnn engine (what MTCNN ran on before it moved to onnxruntime) when
--opencv50 DIR holds it; and each --overlay, a folder of other package versions put first on the path (made with
`pip install --target DIR --no-deps pillow==11.3.0 ...`). Printed per environment: faces found alike, the largest
box difference, the largest and the 99th percentile |difference| of p_engaged, and labels that differ.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

SCORE = r"""
import json, sys
from engage.inference.predictor import Predictor
from engage.io.sample_photos import sample_images
import cv2, numpy, PIL, onnxruntime, torch
paths = json.load(open(sys.argv[1]))
predictor = Predictor("engagement", smoothing_s=0)
rows = []
for name, image in list(sample_images().items()) + [(p, p) for p in paths]:
    for face in predictor.predict(image):
        rows.append([name, face.face_id, face.box.as_list(), face.p_engaged_raw, face.label])
versions = {"opencv": cv2.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
print(json.dumps({"rows": rows, "versions": versions}))
"""


def images(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    found = []
    for sub in ("engagement/wacv", "engagement/daisee/val", "behaviour/yawn"):
        root = os.path.join(SHARED, sub)
        with open(os.path.join(root, "labels.csv")) as handle:
            paths = [os.path.join(root, row["path"]) for row in csv.DictReader(handle)]
        found += list(rng.choice(paths, min(count // 3, len(paths)), replace=False))
    return found


def score(paths_file: str, environment: dict, python_path: str | None = None) -> dict:
    env = {**os.environ, **environment}
    if python_path:
        env["PYTHONPATH"] = python_path + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", SCORE, paths_file], capture_output=True, text=True, env=env, timeout=3600
    )
    if result.returncode != 0:
        raise SystemExit(f"scoring failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def compare(base: dict, other: dict) -> dict:
    key = lambda row: (row[0], row[1])  # noqa: E731
    a, b = {key(r): r for r in base["rows"]}, {key(r): r for r in other["rows"]}
    common = sorted(set(a) & set(b))
    box = max((max(abs(x - y) for x, y in zip(a[k][2], b[k][2])) for k in common), default=0)
    diff = np.array([abs(a[k][3] - b[k][3]) for k in common])
    same_box = [k for k in common if a[k][2] == b[k][2]]
    diff_same_box = np.array([abs(a[k][3] - b[k][3]) for k in same_box]) if same_box else np.zeros(1)
    return {
        "faces": len(a),
        "faces_other": len(b),
        "in_both": len(common),
        "boxes_identical": len(same_box),
        "largest_box_difference_px": int(box),
        "max_abs_dp": float(diff.max()) if len(diff) else 0.0,
        "p99_abs_dp": float(np.quantile(diff, 0.99)) if len(diff) else 0.0,
        "max_abs_dp_same_box": float(diff_same_box.max()),
        "labels_differ": sum(a[k][4] != b[k][4] for k in common),
        "versions": other["versions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--overlay", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--opencv50", default=None, help="a --target folder holding opencv-python-headless 5.0.0.93")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "reproducibility.json"))
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(images(args.images), handle)
        paths_file = handle.name
    base = score(paths_file, {})
    print(f"this environment: {len(base['rows'])} faces; {base['versions']}", flush=True)
    environments = {
        "AVX2 kernels": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, None),
        "SSE4.1 kernels": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}, None),
    }
    if args.opencv50:
        environments["OpenCV 5.0.0 (dnn no longer used)"] = ({}, args.opencv50)
    for overlay in args.overlay:
        name, folder = overlay.split("=", 1)
        environments[name] = ({}, folder)
    report = {"base": base["versions"], "images": args.images + 4, "environments": {}}
    for name, (environment, folder) in environments.items():
        result = compare(base, score(paths_file, environment, folder))
        report["environments"][name] = result
        print(f"{name}: {json.dumps(result)}", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    os.unlink(paths_file)


if __name__ == "__main__":
    main()
