"""Pre-processing throughput (images/s) on real data, with a one-worker baseline measured in the same run.

    python benchmarks/preprocess_throughput.py [--data ../shared/data] [--limit N]

Prints images/s for FER2013 train (--no-detect, mtcnn, yunet) and the WACV engagement set (mtcnn), and the
speed-up of the default (all cores) over one worker on the same images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from engage.data.preprocess import PreprocessOptions, load_source, preprocess
from engage.data.readers import ENGAGEMENT_BINARY_MAP, SampleList, read_samples
from engage.errors import EngageError


def measure(source: SampleList, options: PreprocessOptions, workers: int | None) -> tuple[float, dict]:
    started = time.perf_counter()
    _dataset, report = preprocess(source, options.face_settings(), workers=workers)
    seconds = time.perf_counter() - started
    return len(source.samples) / seconds, report.to_dict()


def limited(source: SampleList, limit: int | None) -> SampleList:
    if not limit or limit >= len(source.samples):
        return source
    step = len(source.samples) / limit  # spread over every class
    samples = [source.samples[int(i * step)] for i in range(limit)]
    return SampleList(samples, source.root, source.kind, [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--limit", type=int, default=None, help="use only N images of each set")
    args = parser.parse_args()
    fer = os.path.join(args.data, "fer2013", "train")
    wacv = os.path.join(args.data, "engagement", "wacv", "labels.csv")
    if not os.path.isdir(fer):
        print(f"real data not found under {args.data}", file=sys.stderr)
        return 1
    cores = os.cpu_count()
    rows = []
    fer_source = limited(read_samples(fer), args.limit)
    runs = [
        ("fer2013 train", fer_source, PreprocessOptions(detector=None)),
        ("fer2013 train", fer_source, PreprocessOptions(detector="mtcnn", no_face="whole-image")),
        ("fer2013 train", fer_source, PreprocessOptions(detector="yunet", no_face="whole-image")),
    ]
    wacv_options = PreprocessOptions(detector="mtcnn", no_face="whole-image", label_map=ENGAGEMENT_BINARY_MAP)
    runs.append(("wacv engagement", limited(load_source(wacv, wacv_options), args.limit), wacv_options))
    for name, source, options in runs:
        try:
            rate, report = measure(source, options, None)
        except EngageError as error:
            print(f"{name} {options.detector}: skipped ({error})")
            continue
        detector = options.detector or "--no-detect"
        rows.append((name, detector, len(source.samples), rate, report))
        print(
            f"{name:16s} {detector:11s} {len(source.samples):6d} images  {rate:8.1f} images/s  "
            f"detected {report['detected']}, whole-image {report['whole-image']}, no-detect {report['no-detect']}",
            flush=True,
        )
    # baseline in the same run: one worker on the first 1,000 FER images with mtcnn
    base_source = limited(fer_source, 1000)
    mtcnn = PreprocessOptions(detector="mtcnn", no_face="whole-image")
    one, _ = measure(base_source, mtcnn, 1)
    many, _ = measure(base_source, mtcnn, None)
    print(
        f"baseline: mtcnn on {len(base_source.samples)} FER images, 1 worker {one:.1f} images/s, "
        f"{cores} workers {many:.1f} images/s: speed-up x{many / one:.2f}"
    )
    for name, detector, _count, rate, _ in rows:
        if name == "fer2013 train" and detector == "mtcnn":
            print(
                f"whole FER2013 train set (28,709 images) through mtcnn: {28709 / rate / 60:.1f} min (target < 10 min)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
