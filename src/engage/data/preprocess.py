"""Run the face pipeline over a whole dataset: both cores, a progress bar, a cache, and a report."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engage.data.dataset import FaceDataset, empty_dataset
from engage.data.readers import Sample, SampleList, class_names_of, relative_path
from engage.errors import EngageError, ImageReadError, UsageError
from engage.faces.crop import FACE_SIZE, FaceSettings, extract_face
from engage.faces.detect import FaceDetector, Point, create_detector
from engage.io.files import atomic_write
from engage.io.images import read_image, to_rgb
from engage.processes import ctrl_c_left_to_parent

# What happened to each image; 'detected', 'whole-image' and 'no-detect' give a face.
FACE_PATHS = ("detected", "whole-image", "no-detect")

Task = tuple[int, str, np.ndarray | None]  # (index, path, the pixels when the image is not a file)
# (index, path taken, face bytes, box, confidence, faces found (int) or the read error (str), landmarks)
Outcome = tuple[int, str, bytes | None, list[int] | None, float, int | str, tuple[Point, ...] | None]


@dataclass
class PreprocessReport:
    """How many images took each path, and which could not be read."""

    images: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # detected / whole-image / no-detect / no-face / unreadable
    reused: int = 0  # results taken from the cache
    faces_found: dict[str, int] = field(default_factory=dict)  # faces the detector saw per processed image
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # non-image files that were not looked at
    seconds: float = 0.0

    @property
    def faces(self) -> int:
        return sum(self.counts[p] for p in FACE_PATHS)

    @property
    def images_per_second(self) -> float:
        processed = self.images - self.reused
        return processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "faces": self.faces,
            "reused_from_cache": self.reused,
            **{path: self.counts[path] for path in (*FACE_PATHS, "no-face", "unreadable")},
            "ignored_files": len(self.ignored),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
        }


# ---- worker side -------------------------------------------------------------------------------
_worker_detector: FaceDetector | None = None
_worker_settings: FaceSettings | None = None


def _init_worker(settings_dict: dict, threads: int | None) -> None:
    global _worker_detector, _worker_settings
    if threads is not None:  # a pool worker: Ctrl+C is the parent's to handle (it stops the pool, writes nothing)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # one thread per worker process; OpenMP (yuface) spins badly when processes share 2 cores
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import cv2

        cv2.setNumThreads(threads)
    _worker_settings = FaceSettings.from_dict(settings_dict)
    detector = _worker_settings.detector
    _worker_detector = create_detector(detector, _worker_settings.min_confidence) if detector else None


def _process(task: Task) -> Outcome:
    """One image to (index, path taken, face bytes, box, confidence, faces found or the read error)."""
    index, path, pixels = task
    try:
        rgb = to_rgb(pixels) if pixels is not None else read_image(path)
    except ImageReadError as error:
        return index, "unreadable", None, None, 0.0, error.reason, None
    assert _worker_settings is not None  # set by _init_worker
    crop = extract_face(rgb, _worker_detector, _worker_settings)
    if crop.face is None:
        return index, crop.source, None, None, 0.0, crop.faces_found, None
    assert crop.box is not None  # a face has its box
    landmarks = crop.found.landmarks if crop.found is not None else None
    return (
        index,
        crop.source,
        crop.face.tobytes(),
        crop.box.as_list(),
        crop.box.confidence,
        crop.faces_found,
        landmarks,
    )


def _run_parallel(
    tasks: list[Task], settings: FaceSettings, workers: int, on_result: Callable[[Outcome], None]
) -> None:
    if workers <= 1 or len(tasks) < 64:
        _init_worker(settings.to_dict(), None)
        for task in tasks:
            on_result(_process(task))
        return
    # spawn, not fork: a parent that already ran OpenCV or OpenMP threads would deadlock forked children
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(64, len(tasks) // (workers * 8)))
    with ctrl_c_left_to_parent():
        pool = context.Pool(workers, initializer=_init_worker, initargs=(settings.to_dict(), 1))
    with pool:
        for result in pool.imap_unordered(_process, tasks, chunksize=chunk):
            on_result(result)


# ---- driver side ---------------------------------------------------------------------------------
def source_key(sample: Sample, root: str) -> str:
    """A stable identity for an image: its absolute path (or 'csv-path#row')."""
    return sample.path if os.path.isabs(sample.path) else os.path.join(root, sample.path)


def _cache_from(
    previous: FaceDataset | None, settings: FaceSettings
) -> tuple[dict[str, tuple[int, ...]], dict[str, int | None]]:
    """(key -> (fingerprint, face row or None)) from a previous run with the same face settings."""
    if previous is None or previous.meta.get("settings") != settings.to_dict():
        return {}, {}
    cache = previous.meta.get("cache", {})
    fingerprints = {key: tuple(fp) for key, fp in cache.get("fingerprints", {}).items()}
    rows: dict[str, int | None] = {}
    root = previous.meta.get("root", "")
    for row, path in enumerate(previous.paths):
        rows[path if os.path.isabs(path) else os.path.join(root, path)] = row
    for key in cache.get("no_face", []):
        rows.setdefault(key, None)
    return fingerprints, rows


def preprocess(
    source: SampleList,
    settings: FaceSettings,
    workers: int | None = None,
    strict: bool = False,
    previous: FaceDataset | None = None,
    progress: Callable[[int, int], None] | None = None,
    corpus: str = "",
) -> tuple[FaceDataset, PreprocessReport]:
    """Turn every sample into a 48x48 face (or report why not); reuse results of a previous run when possible."""
    started = time.perf_counter()
    samples = source.samples
    workers = workers or min(os.cpu_count() or 1, 8)
    report = PreprocessReport(images=len(samples), ignored=list(source.ignored))
    fingerprints, cached_rows = _cache_from(previous, settings)

    n = len(samples)
    faces = np.zeros((n, *settings.shape), np.uint8)
    landmarks = np.full((n, 5, 2), np.nan, np.float32)
    boxes = np.full((n, 4), -1, np.int32)
    det_conf = np.zeros(n, np.float32)
    status = np.full(n, "", dtype=object)
    tasks: list[Task] = []
    for index, sample in enumerate(samples):
        key = source_key(sample, source.root)
        if key in cached_rows and fingerprints.get(key) == tuple(sample.fingerprint) and sample.fingerprint[0] >= 0:
            row = cached_rows[key]
            if row is None:
                status[index] = "no-face"
            else:
                assert previous is not None and previous.landmarks is not None  # the cached rows are previous's
                faces[index], boxes[index] = previous.faces[row], previous.boxes[row]
                landmarks[index] = previous.landmarks[row]
                det_conf[index], status[index] = previous.det_conf[row], previous.face_source[row]
            report.reused += 1
        else:
            tasks.append((index, sample.path, sample.pixels))

    done = report.reused
    if progress:
        progress(done, n)

    def on_result(result: Outcome) -> None:
        nonlocal done
        index, path_taken, face_bytes, box, confidence, error, points = result
        status[index] = path_taken
        if path_taken == "unreadable":
            assert isinstance(error, str)  # the read error
            if strict:
                raise EngageError(f"{samples[index].path}: {error} (--strict stops at the first unreadable image)")
            report.unreadable.append((samples[index].path, error))
        else:
            assert isinstance(error, int)  # the faces found
            report.faces_found[samples[index].path] = error
        if face_bytes is not None:
            assert box is not None  # a face comes with its box
            faces[index] = np.frombuffer(face_bytes, np.uint8).reshape(settings.shape)
            boxes[index], det_conf[index] = box, confidence
            if points:
                landmarks[index] = points
        done += 1
        if progress and (done % 50 == 0 or done == n):
            progress(done, n)

    _run_parallel(tasks, settings, workers, on_result)
    report.counts = Counter(status.tolist())
    report.unreadable.sort()
    if report.counts["unreadable"] == n:
        first_path, first_error = report.unreadable[0]
        raise EngageError(f"no image could be read ({n} tried); e.g. {first_path}: {first_error}")

    keep = np.isin(status.astype(str), FACE_PATHS)
    class_names = class_names_of(samples)
    label_index = {name: i for i, name in enumerate(class_names)}
    kept = [samples[i] for i in np.flatnonzero(keep)]
    meta = {
        "settings": settings.to_dict(),
        "corpus": corpus,
        "root": source.root,
        "source_kind": source.kind,
        "cache": {
            "fingerprints": {
                source_key(s, source.root): list(s.fingerprint) for s, st in zip(samples, status) if st != "unreadable"
            },
            "no_face": [source_key(s, source.root) for s, st in zip(samples, status) if st == "no-face"],
        },
    }
    if not kept:
        dataset = empty_dataset(class_names, meta)
    else:
        dataset = FaceDataset(
            faces=faces[keep],
            labels=np.array([label_index[s.label] if s.label is not None else -1 for s in kept], np.int64),
            class_names=class_names,
            subjects=np.array([s.subject or "" for s in kept], dtype=str),
            paths=np.array([relative_path(s.path, source.root) for s in kept], dtype=str),
            boxes=boxes[keep],
            det_conf=det_conf[keep],
            face_source=status[keep].astype(str),
            split=np.array([s.split or "" for s in kept], dtype=str),
            fold=np.full(len(kept), -1, np.int16),
            meta=meta,
            landmarks=landmarks[keep],
            corpus=np.full(len(kept), corpus, dtype=object).astype(str),
        )
    report.seconds = time.perf_counter() - started
    dataset.meta["report"] = report.to_dict()
    return dataset, report


@dataclass
class PreprocessOptions:
    """Everything `engage preprocess` can be told, besides the source and the output file."""

    detector: str | None = "mtcnn"
    no_face: str = "skip"
    min_confidence: float | None = None
    margin: float = 0.0
    square: bool = True
    normalize: str = "standard"
    size: int = FACE_SIZE
    border: str = "clip"
    align: bool = False
    box: str = "detector"  # 'landmarks': cut each face from the box its face mesh places (FaceSettings.box)
    color: bool = False
    corpus: str | None = None  # the data set's name (default: the output file's name)
    label_column: str | None = "label"
    label_map: str | None = None
    subject_pattern: str | None = None
    usages: list[str] | None = None
    split: str = "source"  # 'source' (keep the source's split), 'subject' (new subject split) or 'none'
    val_fraction: float = 0.2
    folds: int = 0
    seed: int = 0
    strict: bool = False
    workers: int | None = None
    force: bool = False

    def face_settings(self) -> FaceSettings:
        return FaceSettings(
            detector=self.detector,
            no_face=self.no_face,
            min_confidence=self.min_confidence,
            margin=self.margin,
            square=self.square,
            normalize=self.normalize,
            size=self.size,
            border=self.border,
            align=self.align,
            box=self.box,
            color=self.color,
        )


@dataclass
class PreprocessResult:
    dataset: FaceDataset
    report: PreprocessReport
    up_to_date: bool = False
    sample: bool = False

    @property
    def report_dict(self) -> dict:
        return self.dataset.meta["report"]

    @property
    def faces_per_source(self) -> dict[str, int]:
        return {path.split("#", 1)[-1]: n for path, n in sorted(self.report.faces_found.items())}

    def summary(self) -> dict:
        """What a script wants to know about the run (the --json output)."""
        summary = dict(
            self.report_dict,
            up_to_date=self.up_to_date,
            class_counts=self.dataset.class_counts(),
            subjects=len(set(self.dataset.subjects.tolist()) - {""}),
            unreadable_files=[{"path": p, "reason": r} for p, r in self.report.unreadable],
        )
        if self.sample:
            summary["faces_per_image"] = self.faces_per_source
        return summary


def load_source(src: str | None, options: PreprocessOptions, sample: bool = False) -> SampleList:
    """Read the samples and apply the label map and subject pattern."""
    from engage.data.readers import (
        apply_label_map,
        apply_subject_pattern,
        parse_label_map,
        read_samples,
    )

    if sample:
        from engage.io.sample_photos import sample_images

        # the bundled photos as an unlabelled source, in memory
        samples = [Sample(f"sample#{name}", pixels=image) for name, image in sample_images().items()]
        source = SampleList(samples, root="", kind="sample", ignored=[])
    else:
        assert src is not None  # a source is given unless the sample is asked for
        source = read_samples(src, options.label_column, options.usages)
    apply_label_map(source.samples, parse_label_map(options.label_map))
    if options.subject_pattern:
        apply_subject_pattern(source.samples, options.subject_pattern, source.root)
    return source


def assign_splits(dataset: FaceDataset, options: PreprocessOptions) -> None:
    """Apply the split and fold options; any split that would leak a subject is refused."""
    from engage.data.splits import check_no_leak, grouped_kfold, subject_split

    if options.split == "subject":
        dataset.split = subject_split(dataset.subjects, options.val_fraction, options.seed)
    elif options.split == "none":
        dataset.split = np.full(len(dataset), "", dtype=str)
    elif options.split != "source":
        raise UsageError(f"--split must be source, subject or none, got {options.split!r}")
    if dataset.has_subjects and (dataset.split != "").any():
        check_no_leak(dataset.subjects, dataset.split)
    if options.folds:
        dataset.fold = grouped_kfold(dataset.subjects, options.folds, options.seed)


def _same_content(a: FaceDataset, b: FaceDataset) -> bool:
    return (
        len(a) == len(b)
        and a.class_names == b.class_names
        and a.meta.get("settings") == b.meta.get("settings")
        and all(
            np.array_equal(getattr(a, name), getattr(b, name))
            for name in ("faces", "labels", "subjects", "paths", "split", "fold", "corpus")
        )
    )


def run_preprocess(
    src: str | None,
    out_path: str,
    options: PreprocessOptions,
    sample: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """Pre-process a source into a dataset file, reusing an earlier run's results; writes atomically."""
    if not out_path.endswith(".npz"):
        raise UsageError(f"--out {out_path}: the dataset file must end in .npz")
    if os.path.isdir(out_path):
        raise UsageError(f"--out {out_path} is a folder; give a file name ending in .npz")
    settings = options.face_settings()
    source = load_source(src, options, sample)
    previous = None
    if os.path.exists(out_path):
        try:
            previous = FaceDataset.load(out_path)
        except EngageError:
            raise EngageError(
                f"{out_path} exists and is not an engage dataset; choose another --out (it was left as is)"
            ) from None
    corpus = options.corpus or os.path.splitext(os.path.basename(out_path))[0]
    dataset, report = preprocess(
        source, settings, options.workers, options.strict, None if options.force else previous, progress, corpus
    )
    if len(dataset) == 0:
        hint = "; if the images are face crops, use --no-face whole-image or --no-detect"
        raise EngageError(f"no face found in any of the {report.images} images, so nothing was written{hint}")
    assign_splits(dataset, options)
    up_to_date = previous is not None and report.reused == report.images and _same_content(dataset, previous)
    if not up_to_date:
        dataset.save(out_path)
    return PreprocessResult(dataset, report, up_to_date, sample)


def crop_file_name(path: str) -> str:
    """A flat, safe PNG name for a face taken from path."""
    stem = os.path.splitext(path)[0]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem.replace("/", "__").replace("#", "__"))
    return safe.strip("_") + ".png"


def write_crops(dataset: FaceDataset, folder: str) -> int:
    """Write every face as a 48x48 PNG (only when the user asks: faces are personal data)."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    for face, path in zip(dataset.faces, dataset.paths):
        target = os.path.join(folder, crop_file_name(str(path)))
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR) if face.ndim == 3 else face)
        if not ok:
            raise EngageError(f"could not encode the face of {path} as PNG")
        atomic_write(target, encoded.tofile)
    return len(dataset)
