"""End-to-end prediction speed (frames/s) on a 640x480 video of real faces, for every detector and backend and
for the paper's pipeline (dlib's CNN detector + the full `vgg`), each the old way (everything on one thread) and
the way `engage predict VIDEO` runs now (faces detected in one process per core, decoding and scoring overlapped),
all measured in the same run.

    python benchmarks/predict_fps.py [--model engagement] [--frames 150] [--seconds 15] [--rounds 2]
    python benchmarks/predict_fps.py --expressions   # the fast settings with --expressions, per --expression-views
    python benchmarks/predict_fps.py --against OLD.safetensors   # the fast settings: --model against another model
    python benchmarks/predict_fps.py --cues [--against OLD.safetensors]   # with the attention cues and without (OLD: --no-cues)

"End to end" is what `engage predict VIDEO` does per frame: decode, detect, crop, score every face (batched),
track and smooth; model loading and start-up (up to the first batch of 8 frames' results, which includes starting
the detector processes) are excluded: steady state. Both ways' results (ids, boxes, p_engaged) are checked equal. Each setting and way runs `--rounds` times in turn (round robin,
so a burst of load from other jobs hits every setting alike) for at most `--seconds` each, and its best round is
reported, with the ratio to the paper's pipeline measured the same way in the same run. The paper's `vgg` is untrained
(random weights): its speed does not depend on its weights, its scores are meaningless.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# (detector, backend, --detect-size (None: the default), model: None = --model, 'vgg' = the paper's network)
SETTINGS = [
    ("mtcnn", "torch", None, None),
    ("mtcnn", "onnx", None, None),
    ("yunet", "torch", None, None),
    ("yunet", "onnx", None, None),  # the fast settings
    ("yunet", "onnx", 640, None),  # YuNet on the full frame, for comparison
    ("dlib", "torch", None, None),
    ("dlib", "onnx", None, None),
    ("dlib", "torch", None, "vgg"),  # the paper's pipeline
    ("yunet", "torch", None, "vgg"),  # the paper's network behind the fast detector: what the network costs
]
PAPER = ("dlib", "torch", None, "vgg")
FAST = ("yunet", "onnx", None, None)
VIDEO_FPS = 30.0
FIRST_BATCH = 8  # frames per network call in predict_video: the clock starts when the first batch is out
TARGET_FPS = 120.0  # issue 16: one 640x480 video with the fast settings on 2 cores
# the two ways a video is scored: before issue 16, and `engage predict VIDEO` now (--workers 0: one per core)
WAYS = {
    "one thread (before)": {"pipeline": False, "detect_processes": 1},
    "now": {"pipeline": True, "detect_processes": os.cpu_count() or 1},
}


def paper_model(folder: str) -> str:
    """The paper's VGG (44.5M parameters) with a 2-class head, untrained, saved as a model file."""
    from engage.faces.crop import FaceSettings
    from engage.models.checkpoint import model_config, save_model
    from engage.models.networks import build_model

    path = os.path.join(folder, "paper-vgg-untrained.safetensors")
    settings = FaceSettings(detector="dlib", normalize="paper").to_dict()
    save_model(path, build_model("vgg", 2), model_config("vgg", 2, ["disengaged", "engaged"], face_settings=settings))
    return path


def detected_side(predictor, frame_side: int = 640) -> str:
    """The longest side of the frames the detector looked at."""
    from engage.inference.predictor import half_size

    if predictor.half_size_detection:
        return f"{half_size(__import__('numpy').zeros((480, frame_side)))} (half)"
    return str(min(frame_side, predictor.detector.max_side))


def measure(
    predictor, video: str, frames: int, seconds: float, way: dict | None = None
) -> tuple[float, int, float, list]:
    """(frames/s, frames scored, faces per frame, results) for one pass over the video in the given way
    (Predictor.predict_video's options), timed between the ends of batches of 8 frames (results come out a batch
    at a time) from the end of the first (start-up, and the detector processes' start, left out), stopped at the
    first batch that ends after `seconds`; results: per frame its index and per face
    (id, box, p_engaged), to check that both ways agree."""
    way = way or {}
    for _ in predictor.predict_video(video, max_frames=2, pipeline=False):  # warm up: first calls allocate
        pass
    scored = faces = counted = counted_faces = (
        0  # counted: up to the last batch's end (a last partial batch is left out)
    )
    started = elapsed = None
    results = []
    for index, frame in enumerate(predictor.predict_video(video, max_frames=frames, **way)):
        results.append((frame.frame, [(face.face_id, face.box, face.p_engaged) for face in frame.faces]))
        if started is not None:
            scored += 1
            faces += len(frame.faces)
        if (index + 1) % FIRST_BATCH:  # results come out a batch at a time: read the clock between batches only
            continue
        now = time.perf_counter()
        if started is None:
            started = now
            continue
        elapsed, counted, counted_faces = now - started, scored, faces
        if elapsed > seconds:
            break
    if elapsed is None:
        raise SystemExit(f"the video is too short: at least {2 * FIRST_BATCH} frames are needed")
    return counted / elapsed, counted, counted_faces / max(counted, 1), results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="engagement", help="model for the engage settings (shipped name or file)")
    parser.add_argument("--frames", type=int, default=150, help="frames in the test video (5 s at 30 frames/s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time limit per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--against",
        default=None,
        metavar="MODEL",
        help="instead: the fast settings with --model and with this model (e.g. the previous shipped "
        "one), round robin in the same run, with their ratio",
    )
    parser.add_argument(
        "--cues",
        action="store_true",
        help="instead: the default and the fast settings with and without the attention cues, as "
        "`engage predict VIDEO` runs (target: with cues at least 85%% of the frames/s without)",
    )
    parser.add_argument(
        "--expressions",
        action="store_true",
        help="instead: the fast settings without and with --expressions, for each --expression-views",
    )
    args = parser.parse_args()

    from engage.errors import EngageError
    from engage.inference.demo import write_demo_video
    from engage.inference.predictor import Predictor

    folder = tempfile.mkdtemp(prefix="engage-bench-")
    video = os.path.join(folder, "faces-640x480.mp4")
    write_demo_video(video, frames=args.frames, fps=VIDEO_FPS)
    if args.expressions:
        return expressions_cost(args, video)
    if args.cues:
        return cues_cost(args, video)
    if args.against and not args.cues:
        return against(args, video)
    vgg = paper_model(folder)
    print(
        f"video: {args.frames} frames 640x480 at {VIDEO_FPS:g} frames/s, two real faces (one moving); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"
    )
    predictors = {}
    for setting in SETTINGS:
        detector, backend, size, model = setting
        try:
            started = time.perf_counter()
            predictors[setting] = Predictor(
                vgg if model == "vgg" else args.model, detector=detector, backend=backend, detect_size=size
            )
            load = time.perf_counter() - started
            print(
                f"loaded {detector}/{backend}{'' if size is None else f'@{size}'}/{model or args.model} in {load:.1f} s",
                flush=True,
            )
        except EngageError as error:
            print(f"{detector}/{backend}/{model or args.model}: skipped ({error})", flush=True)
    best: dict[tuple, tuple[float, int, float]] = {}  # (setting, way) -> best round
    for round_index in range(args.rounds):
        for setting, predictor in predictors.items():
            outputs = []
            for name, way in WAYS.items():
                *result, output = measure(predictor, video, args.frames, args.seconds, way)
                outputs.append(output)
                if (setting, name) not in best or result[0] > best[setting, name][0]:
                    best[setting, name] = tuple(result)
                print(
                    f"round {round_index + 1}: {setting[0]}/{setting[1]}/{setting[2] or 'default'}/"
                    f"{setting[3] or 'engage'}, {name}: {result[0]:.1f} frames/s ({result[1]} frames)",
                    flush=True,
                )
            common = min(len(output) for output in outputs)
            assert all(output[:common] == outputs[0][:common] for output in outputs), f"{setting}: the ways disagree"
    before, now = WAYS
    paper = {name: best.get((PAPER, name), (float("nan"),))[0] for name in WAYS}
    rate = lambda fps: f"{fps:.1f}" if fps >= 10 else f"{fps:.2f}"  # noqa: E731
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print(
        f"| detector | detect size | network | backend | frames/s {before} | frames/s {now} | speed-up | "
        "x real time (30 fps) now | x the paper's pipeline now |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for setting in predictors:
        detector, backend, size, model = setting
        network = "vgg (paper, untrained)" if model == "vgg" else os.path.basename(args.model)
        old, new = best[setting, before][0], best[setting, now][0]
        print(
            f"| {detector} | {detected_side(predictors[setting])} | {network} | {backend} | {rate(old)} | {rate(new)} | "
            f"x{new / old:.2f} | {new / VIDEO_FPS:.2f} | {new / paper[now]:.0f} |"
        )
    if (FAST, now) in best:
        fast = best[FAST, now][0]
        verdict = "meets" if fast >= TARGET_FPS else "misses"
        print(
            f"\nfast settings (--detector yunet --backend onnx) now: {fast:.1f} frames/s (one thread: "
            f"{best[FAST, before][0]:.1f}), {verdict} the target of {TARGET_FPS:g} frames/s on {os.cpu_count()} cores"
        )
    return 0


def expressions_cost(args, video: str) -> int:
    """Frames/s of the fast settings without expressions (the baseline) and with each --expression-views."""
    from engage.inference.predictor import Predictor

    variants = {"no expressions": {}}
    variants.update(
        {
            f"--expressions --expression-views {views}": dict(expressions=True, expression_views=views)
            for views in ("model", "flip", "one")
        }
    )
    predictors = {
        name: Predictor(args.model, detector=FAST[0], backend=FAST[1], **kwargs) for name, kwargs in variants.items()
    }
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, predictor in predictors.items():
            best[name] = max(best.get(name, 0.0), measure(predictor, video, args.frames, args.seconds)[0])
    baseline = best["no expressions"]
    print(f"fast settings ({FAST[0]}, {FAST[1]}), best of {args.rounds} rounds:")
    for name, fps in best.items():
        print(f"  {name:40s} {fps:6.1f} frames/s  x{fps / baseline:.2f}")
    return 0


CUES_TARGET = 0.85  # issue 24: with the cues at least 85% of the frames/s without them


def cues_cost(args, video: str) -> int:
    """Frames/s of the default settings (mtcnn, torch) and the fast settings (yunet, onnx), each with --no-cues (the
    baseline) and with the cues, as `engage predict VIDEO` runs (WAYS['now']), round robin in one run."""
    from engage.inference.predictor import Predictor

    settings = {"default (mtcnn, torch)": ("mtcnn", "torch"), "fast (yunet, onnx)": FAST[:2]}
    without = args.against or args.model  # --against: the baseline is another model (e.g. one that needs no landmarks)
    predictors = {
        (name, cues): Predictor(args.model if cues else without, detector=detector, backend=backend, cues=cues)
        for name, (detector, backend) in settings.items()
        for cues in (False, True)
    }
    best: dict[tuple, float] = {}
    for round_index in range(args.rounds):
        for key, predictor in predictors.items():
            fps = measure(predictor, video, args.frames, args.seconds, WAYS["now"])[0]
            best[key] = max(best.get(key, 0.0), fps)
            print(
                f"round {round_index + 1}: {key[0]}, cues {'on' if key[1] else 'off'}: {fps:.1f} frames/s", flush=True
            )
    print(
        f"\n{os.cpu_count()} cores, best of {args.rounds} rounds, `engage predict VIDEO` as it runs now; without: "
        f"{without} --no-cues, with: {args.model}:\n"
    )
    print("| settings | frames/s without cues | frames/s with cues | ratio | target >= 0.85 |")
    print("| --- | --- | --- | --- | --- |")
    for name in settings:
        off, on = best[name, False], best[name, True]
        print(f"| {name} | {off:.1f} | {on:.1f} | {on / off:.2f} | {'met' if on / off >= CUES_TARGET else 'not met'} |")
    return 0


def against(args, video: str) -> int:
    """Frames/s of the fast settings with --model and with --against, measured round robin in one run."""
    from engage.inference.predictor import Predictor

    models = {"model": args.model, "against": args.against}
    predictors = {name: Predictor(path, detector=FAST[0], backend=FAST[1]) for name, path in models.items()}
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, predictor in predictors.items():
            best[name] = max(best.get(name, 0.0), measure(predictor, video, args.frames, args.seconds)[0])
    print(f"fast settings ({FAST[0]}, {FAST[1]}), best of {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}:")
    for name, path in models.items():
        print(f"  {path:50s} {best[name]:6.1f} frames/s")
    print(f"  ratio {args.model} / {args.against}: x{best['model'] / best['against']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
