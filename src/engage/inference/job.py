"""`engage predict` as a job: inputs -> Predictor -> one summary per input, a CSV row per face per frame, and
(only when asked) annotated images and mp4s, p_engaged timelines and face crops. Nothing else is written."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engage.errors import EngageError, ImageReadError, UsageError
from engage.inference.annotate import draw_faces, plot_timeline, save_image
from engage.inference.keyframes import DEFAULT_DETECT_EVERY
from engage.inference.predictor import Predictor
from engage.inference.records import CsvWriter, FaceResult, FrameResult, VideoSummary, csv_columns
from engage.io.images import read_image, to_rgb
from engage.io.inputs import InputItem, Inputs
from engage.io.video import Mp4Writer, VideoSource

ANNOTATED_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class PredictOptions:
    every: int = 1  # score every Nth video frame
    detect_every: int = DEFAULT_DETECT_EVERY  # detect faces on every Nth scored frame, follow them in between
    max_frames: int | None = None  # stop each video (or the camera) after this many scored frames
    csv_path: str | None = None  # one row per face per frame
    annotate_dir: str | None = None  # annotated images / mp4s and video timelines
    timeline_dir: str | None = None  # video timelines only (no face pixels)
    crops_dir: str | None = None  # the faces that were scored, as the model saw them (personal data: only when asked)
    image_batch: int = 8  # images whose faces go through the network together
    pipeline: bool = True  # decode and detect a video's next frames on a thread of their own (see Predictor)
    detect_processes: int = 1  # detect each video file's faces in this many processes (see Predictor.predict_video)


@dataclass
class PredictRun:
    results: list[dict] = field(default_factory=list)  # one JSON-ready object per input
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, why) for unreadable inputs
    csv_rows: int = 0
    seconds: float = 0.0
    setup: str = ""  # which model, detector and backend scored the faces
    workers: int = 1  # processes that scored the inputs
    detect_processes: int = 1  # processes that detected the faces of a video file (1: the scoring process)


class _Skip(Exception):
    """An input that cannot be read: reported and skipped (fatal when it is the only input)."""


def _annotated_image_path(folder: str, item: InputItem) -> str:
    extension = os.path.splitext(item.path or item.name)[1].lower()
    return os.path.join(folder, item.stem + (extension if extension in ANNOTATED_IMAGE_EXTENSIONS else ".png"))


def _timeline_dirs(options: PredictOptions) -> set[str]:
    """The folders a video's timeline is drawn into (--annotate and --timeline, one folder when they are the same)."""
    return {folder for folder in (options.annotate_dir, options.timeline_dir) if folder is not None}


def planned_outputs(item: InputItem, options: PredictOptions) -> list[str]:
    """The files written about one input (crops aside), decided before anything runs."""
    paths = []
    if options.annotate_dir:
        if item.kind == "image":
            paths.append(_annotated_image_path(options.annotate_dir, item))
        else:
            paths.append(os.path.join(options.annotate_dir, item.stem + ".mp4"))
    for folder in _timeline_dirs(options):
        if item.kind != "image":
            paths.append(os.path.join(folder, item.stem + ".timeline.png"))
    return paths


def check_outputs(inputs: Inputs, options: PredictOptions) -> None:
    """Refuse before any work if an output would overwrite an input (e.g. --annotate pointing at the photos)."""
    sources = {os.path.abspath(item.path) for item in inputs.items if item.path}
    if options.csv_path and os.path.abspath(options.csv_path) in sources:
        raise UsageError(f"--csv {options.csv_path} is one of the inputs; choose another file name")
    for item in inputs.items:
        for path in planned_outputs(item, options):
            if os.path.abspath(path) in sources:
                raise UsageError(f"writing {path} would overwrite an input; choose another folder for the outputs")


def _open(item: InputItem) -> np.ndarray | VideoSource:
    """RGB pixels of an image, or an opened VideoSource; _Skip with the reason when it cannot be read."""
    if item.pixels is not None:
        return to_rgb(item.pixels)
    if item.kind == "camera":
        assert item.camera is not None  # a camera input has its number
        return VideoSource(item.camera)  # a missing camera is always an error
    assert item.path is not None  # the other inputs are files
    try:
        if item.kind == "image":
            return read_image(item.path)
        if item.kind == "video":
            return _video(item)
        try:  # a named file without a media extension: an image, else a video, else neither
            return read_image(item.path)
        except ImageReadError:
            try:
                return _video(item)
            except EngageError:
                raise _Skip(f"{item.path}: neither an image nor a video that Pillow or OpenCV can read") from None
    except EngageError as error:  # ImageReadError, or a video that cannot be opened
        raise _Skip(str(error)) from None


def _video(item: InputItem) -> VideoSource:
    """A video file opened under the input's name (its rows' source), which is the path as given on the command line."""
    assert item.path is not None  # a video input is a file
    video = VideoSource(item.path)
    video.name = item.name
    return video


def run_predict(
    inputs: Inputs,
    predictor: Predictor | Callable[[], Predictor],
    options: PredictOptions,
    on_result: Callable[[dict], None] | None = None,
    warn: Callable[[str], None] = print,
    progress: Callable[[str, int, int | None], None] | None = None,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
) -> PredictRun:
    """Score every input in order; on_result gets each input's summary as soon as it is done.

    Unreadable inputs are reported through `warn` and skipped; when the only input cannot be read, or none
    can, that is an EngageError. `predictor` may be a factory, called only once the inputs are checked.
    workers > 1 (with a picklable factory, e.g. functools.partial(Predictor, ...)): whole inputs are scored
    in that many processes (engage.inference.parallel), with the same results, reported in the same order.
    """
    check_outputs(inputs, options)
    if workers > 1 and len(inputs.items) > 1 and not isinstance(predictor, Predictor):
        return _run_in_workers(inputs, predictor, options, on_result, warn, progress, workers)
    single = len(inputs.items) == 1
    opened = {0: _open_or_fail(inputs.items[0])} if single else {}  # a bad only input fails before any model loads
    if not isinstance(predictor, Predictor):
        try:
            predictor = predictor()
        except BaseException:
            for source in opened.values():
                if isinstance(source, VideoSource):
                    source.close()
            raise
    run = PredictRun(setup=setup_line(predictor))
    started = time.perf_counter()
    columns = csv_columns(predictor.expression_names)
    csv_writer = CsvWriter(options.csv_path, columns) if options.csv_path else None
    try:
        job = _Job(predictor, options, csv_writer, run, on_result, progress, log)
        images: list[tuple[InputItem, np.ndarray]] = []
        for index, item in enumerate(inputs.items):
            try:
                source = opened.pop(index) if index in opened else _open(item)
            except _Skip as skip:
                if single:
                    raise EngageError(str(skip)) from None
                warn(f"skipped {skip}")
                run.skipped.append((item.name, str(skip)))
                continue
            if isinstance(source, VideoSource):
                job.images(images)
                images = []
                job.video(item, source)
            else:
                images.append((item, source))
                if len(images) >= options.image_batch:
                    job.images(images)
                    images = []
        job.images(images)
    except BaseException:
        if csv_writer is not None:
            csv_writer.discard()
        raise
    _finish(run, csv_writer, len(inputs.items))
    run.seconds = time.perf_counter() - started
    return run


def _run_in_workers(
    inputs: Inputs,
    make_predictor: Callable[[], Predictor],
    options: PredictOptions,
    on_result: Callable[[dict], None] | None,
    warn: Callable[[str], None],
    progress: Callable[[str, int, int | None], None] | None,
    workers: int,
) -> PredictRun:
    from engage.inference.parallel import score_in_workers

    run = PredictRun(workers=workers)
    started = time.perf_counter()

    def emit(result: dict) -> None:
        run.results.append(result)
        if on_result is not None:
            on_result(result)

    def skip(item: InputItem, why: str) -> None:
        warn(f"skipped {why}")
        run.skipped.append((item.name, why))

    run.setup, csv_writer = score_in_workers(
        inputs, make_predictor, score_input, options, workers, emit, skip, progress
    )
    _finish(run, csv_writer, len(inputs.items))
    run.seconds = time.perf_counter() - started
    return run


def _finish(run: PredictRun, csv_writer: CsvWriter | None, inputs: int) -> None:
    """Put the CSV in place, unless no input could be read (then nothing is written)."""
    if not run.results:
        if csv_writer is not None:
            csv_writer.discard()
        raise EngageError(f"none of the {inputs} inputs could be read (see the warnings above)")
    if csv_writer is not None:
        csv_writer.commit()
        run.csv_rows = csv_writer.rows


def setup_line(predictor: Predictor) -> str:
    """Which model, detector and backend scored the faces (the end of `engage predict`'s summary)."""
    return (
        f"model {predictor.model_name} ({', '.join(predictor.class_names)}), detector {predictor.detector_name}, "
        f"backend {predictor.backend}"
    )


def score_input(
    predictor: Predictor, item: InputItem, options: PredictOptions, part_path: str | None
) -> tuple[list[dict], int, str | None, str]:
    """One input scored in a worker process (engage.inference.parallel) exactly as the single-process run scores
    it: (its results, its CSV rows written to the part file, why it was skipped or None, the setup line)."""
    try:
        source = _open(item)
    except _Skip as skip:
        return [], 0, str(skip), setup_line(predictor)
    run = PredictRun()
    writer = CsvWriter(part_path, csv_columns(predictor.expression_names)) if part_path else None
    try:
        job = _Job(predictor, options, writer, run, None, None, None)
        if isinstance(source, VideoSource):
            job.video(item, source)
        else:
            job.images([(item, source)])
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.commit()
    return run.results, (writer.rows if writer else 0), None, setup_line(predictor)


def _open_or_fail(item: InputItem) -> np.ndarray | VideoSource:
    try:
        return _open(item)
    except _Skip as skip:
        raise EngageError(str(skip)) from None


class _Job:
    """The per-input work of one run, sharing the predictor and the CSV."""

    def __init__(
        self,
        predictor: Predictor,
        options: PredictOptions,
        csv_writer: CsvWriter | None,
        run: PredictRun,
        on_result: Callable[[dict], None] | None,
        progress: Callable[[str, int, int | None], None] | None,
        log: Callable[[str], None] | None,
    ) -> None:
        self.log = log
        self.predictor = predictor
        self.options = options
        self.csv = csv_writer
        self.run = run
        self.on_result = on_result
        self.progress = progress
        self.images_done = 0

    def _emit(self, result: dict) -> None:
        self.run.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def _save_crops(self, item: InputItem, frame: FrameResult, video: bool) -> None:
        folder = self.options.crops_dir
        assert folder is not None  # called for --save-crops only
        for face in frame.faces:
            if face.tracked:  # followed, not scored, in this frame: its crop is its key frame's
                continue
            where = f"_f{frame.frame:06d}" if video else ""
            path = os.path.join(folder, f"{item.stem}{where}_face{face.face_id}.png")
            crop = face.face
            assert crop is not None  # the predictor keeps the crop of every face it scored
            save_image(path, crop if crop.ndim == 3 else np.repeat(crop[:, :, None], 3, axis=2))

    def images(self, batch: list[tuple[InputItem, np.ndarray]]) -> None:
        if not batch:
            return
        all_faces = self.predictor.predict_batch([rgb for _, rgb in batch])
        for (item, rgb), faces in zip(batch, all_faces):
            height, width = rgb.shape[:2]
            frame = FrameResult(item.name, 0, 0.0, faces, width, height)
            if self.csv is not None:
                self.csv.write(frame.rows(self.predictor.expression_names))
            outputs = []
            if self.options.annotate_dir:
                path = _annotated_image_path(self.options.annotate_dir, item)
                save_image(path, draw_faces(rgb, faces, self.predictor.positive_class))
                outputs.append(path)
            if self.options.crops_dir:
                self._save_crops(item, frame, video=False)
            result = image_result(item.name, width, height, faces)
            if outputs:
                result["outputs"] = outputs
            self._emit(result)
            self.images_done += 1
            if self.progress is not None:
                self.progress("images", self.images_done, None)

    def video(self, item: InputItem, video: VideoSource) -> None:
        options, predictor = self.options, self.predictor
        summary = VideoSummary(predictor.positive_class, threshold=predictor.decision.threshold)
        total = None
        if video.frame_count:
            total = -(-video.frame_count // options.every)
            if options.max_frames:
                total = min(total, options.max_frames)
        writer = None
        stopped_by_user = False
        if video.is_camera and self.log is not None:
            self.log(f"scoring {item.name} live; press Ctrl+C to stop")
        started = time.perf_counter()
        self.run.detect_processes = max(
            self.run.detect_processes, predictor.detect_processes_for(video, options.detect_processes)
        )
        try:
            if options.annotate_dir:
                writer = Mp4Writer(
                    os.path.join(options.annotate_dir, item.stem + ".mp4"),
                    video.fps / options.every,
                    video.width,
                    video.height,
                )
            try:
                for frame in predictor.predict_video(
                    video,
                    every=options.every,
                    detect_every=options.detect_every,
                    max_frames=options.max_frames,
                    keep_images=writer is not None,
                    pipeline=options.pipeline,
                    detect_processes=options.detect_processes,
                ):
                    if self.csv is not None:
                        self.csv.write(frame.rows(predictor.expression_names))
                    summary.add(frame)
                    if writer is not None:
                        assert frame.image is not None  # kept for the writer (keep_images)
                        writer.write(draw_faces(frame.image, frame.faces, predictor.positive_class))
                    if options.crops_dir:
                        self._save_crops(item, frame, video=True)
                    if self.progress is not None:
                        self.progress(item.name, summary.frames, total)
            except KeyboardInterrupt:
                if not video.is_camera:
                    raise
                stopped_by_user = True  # Ctrl+C is how a camera run ends: keep what was scored
        except BaseException:
            if writer is not None:
                writer.discard()
            raise
        finally:
            video.close()
        seconds = time.perf_counter() - started
        outputs = []
        if writer is not None:
            writer.commit()
            outputs.append(writer.path)
        for folder in _timeline_dirs(options):
            path = os.path.join(folder, item.stem + ".timeline.png")
            plot_timeline(summary, path, f"{item.name}: p_engaged per face ({predictor.model_name})")
            outputs.append(path)
        result = {
            "source": item.name,
            "kind": "camera" if video.is_camera else "video",
            "width": video.width,
            "height": video.height,
            "fps": round(video.fps, 3),
            "every": options.every,
            "detect_every": options.detect_every,
            "frames_scored": summary.frames,
            "frames_with_faces": summary.frames_with_faces,
            "duration_s": round(summary.last_time_s, 3),
            "faces": summary.face_list(),
            "seconds": round(seconds, 3),
            "frames_per_s": round(summary.frames / seconds, 2) if seconds > 0 else None,
        }
        if stopped_by_user:
            result["stopped_by_user"] = True
        if outputs:
            result["outputs"] = outputs
        self._emit(result)


def image_result(source: str, width: int, height: int, faces: list[FaceResult]) -> dict:
    """One image's JSON-ready result, as `engage predict --json` prints it and `engage serve` answers."""
    return {
        "source": source,
        "kind": "image",
        "width": width,
        "height": height,
        "faces": [face.to_dict() for face in faces],
    }


def format_result(result: dict) -> str:
    """A readable summary of one input's result, for the terminal."""
    if result["kind"] == "image":
        faces = result["faces"]
        if not faces:
            return f"{result['source']}: no face found"
        parts = []
        for face in faces:
            score = f" {face['p_engaged']:.2f}" if face["p_engaged"] is not None else ""
            expression = f" ({face['expression']})" if face.get("expression") else ""
            why = f" ({face['quality'].replace('+', ', ')})" if face.get("quality", "ok") != "ok" else ""
            parts.append(f"#{face['face_id']} {face['label']}{why}{score}{expression}")
        noun = "face" if len(faces) == 1 else "faces"
        return f"{result['source']}: {len(faces)} {noun}: " + ", ".join(parts)
    lines = [
        f"{result['source']}: {result['frames_scored']} frames scored ({result['duration_s']:.1f} s of video"
        f"{', every ' + str(result['every']) + ' frames' if result['every'] > 1 else ''}), "
        f"{len(result['faces'])} face(s) tracked, {result['frames_per_s'] or 0:.1f} frames/s"
        + (", stopped by Ctrl+C" if result.get("stopped_by_user") else "")
    ]
    if not result["faces"]:
        lines[0] = lines[0].replace("0 face(s) tracked", "no face found")
    for face in result["faces"]:
        line = f"  face {face['face_id']}: {face['first_s']:.1f}-{face['last_s']:.1f} s, {face['frames']} frames"
        if face["mean_p_engaged"] is not None:
            line += f", mean p_engaged {face['mean_p_engaged']:.2f}"
        if "share_engaged" in face:
            line += f", engaged {100 * face['share_engaged']:.0f}% of the time"
        if face.get("share_uncertain"):
            line += f" judged; not judged {100 * face['share_uncertain']:.0f}% (uncertain)"
        lines.append(line)
    return "\n".join(lines)
