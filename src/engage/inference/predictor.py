"""Predictor: images, video files and cameras -> one result per face (box, detection confidence, p_engaged,
label, and the FER model's expression probabilities when asked), faces cropped exactly as the model was
trained and scored together in one batch per frame (several frames per batch for video files)."""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from engage.errors import UsageError
from engage.faces.crop import (
    FaceSettings,
    box_on_landmarks,
    crop_face,
    cut_face,
    face_image,
    to_gray,
    whole_image_box,
)
from engage.faces.cues import CUE_COLUMNS, FaceCues, face_cues
from engage.faces.detect import DETECTORS, LANDMARK_DETECTORS, FaceBox, FaceDetector, create_detector
from engage.faces.quality import THRESHOLDS, UNCERTAIN, FaceQuality, measure_face, quality_label
from engage.inference.keyframes import (
    DEFAULT_DETECT_EVERY,
    FaceFollower,
    FrameFaces,
    check_detect_every,
    is_keyframe,
)
from engage.inference.records import FaceResult, FrameResult
from engage.inference.tracking import EmaSmoother, IouTracker
from engage.io.images import ImageLike, as_rgb_image
from engage.io.video import Frame, VideoSource

if TYPE_CHECKING:
    from engage.faces.landmarks import FaceLandmarks, FaceMesh
    from engage.models.calibration import SiteCalibration
    from engage.models.loading import FaceClassifier
    from engage.models.onnx import OnnxClassifier

DEFAULT_MODEL = "engagement"  # the shipped engagement model (disengaged / engaged: off task / on task)
DEFAULT_EXPRESSION_MODEL = "fer"  # the shipped FER model (7 expressions)
BACKENDS = ("torch", "onnx")
NO_DETECTOR = "none"  # the image is already a face crop
HALF_SIZE_RANGE = (320, 960)  # YuNet's detection size on images: half the image, within these bounds
# video frames are detected at this share of their longest side: the smallest at which each detector finds at least
# 98% of 40-px faces in 640x480 frames (benchmarks/detect_size.py: YuNet at 480 finds 98.8%, at 320 84.8%; MTCNN
# at 320 98.8%, 2.5x faster than at 640)
VIDEO_DETECT_SCALE = {"yunet": 0.75, "mtcnn": 0.5}
# memory for decoded frames: each pipeline thread holds at most this much ahead of the next, and the frames waiting
# to be scored at most this much (about 200 640x480 frames, 30 at 1080p)
MAX_FRAME_BYTES = 192 * 2**20

# one face as the network(s) scored it: (box, probabilities row, expression row or None, crop, cues or None)
ScoredFace = tuple[FaceBox, np.ndarray, np.ndarray | None, np.ndarray, FaceCues | None]
# what a face followed between key frames carries on from its last one: (probabilities row, expression row or
# None, cues or None, (quality measures, reasons))
# a frame's faces cut for the model, and their cues: Predictor.cut_and_cues
Prepared = tuple[np.ndarray, list[FaceCues | None]]
HeldFace = tuple[np.ndarray, np.ndarray | None, FaceCues | None, tuple[FaceQuality | None, list[str]]]
Item = TypeVar("Item")


def load_scoring_model(
    name_or_path: str, backend: str = "torch", threads: int | None = None, views: str = "model", device: str = "cpu"
) -> FaceClassifier | OnnxClassifier:
    """A model (shipped name, .safetensors or .onnx file) ready to score 48x48 faces on the chosen backend.

    views: the test-time views, 'model' (as the file records), 'flip' or 'one' (FaceClassifier.set_views).
    device: 'cpu', 'cuda' or 'auto' (engage.models.device.resolve_device; the torch backend only)."""
    from engage.models.device import resolve_device
    from engage.models.loading import load_model
    from engage.models.onnx import OnnxClassifier

    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    device = resolve_device(device, backend)
    if str(name_or_path).lower().endswith(".onnx"):
        if backend != "onnx":
            raise UsageError(f"{name_or_path} is an ONNX model: use --backend onnx")
        if views != "model":
            raise UsageError(
                f"{name_or_path} is an ONNX model: its test-time views are built in; use a .safetensors file"
            )
        return OnnxClassifier.load(str(name_or_path), threads=threads)
    classifier = load_model(str(name_or_path)).set_views(views)
    return OnnxClassifier.from_classifier(classifier, threads=threads) if backend == "onnx" else classifier.to(device)


def use_torch_threads(count: int | None) -> None:
    """Set PyTorch's (OpenMP) thread count for this process, once (not around every call). A frame holds a few
    faces: one thread is 3-10x faster than OpenMP threads spinning against video decoding or any other job on 2
    cores. YuNet (yuface) bundles an OpenMP runtime of its own, which this does not reach (it reads
    OMP_NUM_THREADS when loaded); its worker processes (engage.faces.detect_pool) use one thread each.
    None or 0 leaves the default."""
    if not count:
        return
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def video_gap_s(every: int, fps: float) -> float:
    """How long a face may go unseen in a video and keep its id: 1 s, or 3 scored frames when they are sparser."""
    return max(1.0, 3.0 * every / fps)


def half_size(rgb: np.ndarray, smallest: int = HALF_SIZE_RANGE[0], largest: int = HALF_SIZE_RANGE[1]) -> int:
    """Half the image's longest side, kept within [smallest, largest] pixels."""
    return int(min(largest, max(smallest, max(rgb.shape[:2]) // 2)))


def crop_faces(
    rgb: np.ndarray,
    boxes: list[FaceBox],
    settings: FaceSettings,
    whole_image: bool | list[bool] = False,
    gray: np.ndarray | None = None,
) -> np.ndarray:
    """(N, size, size[, 3]) uint8 crops of the found boxes, cut as the model was trained (the same functions
    `engage preprocess` uses); whole_image: the boxes are whole images (no detector), taken as they are (one flag for
    all boxes, or one per box). gray: the frame's gray image when already made (it is made once per frame)."""
    image = face_image(rgb, settings) if settings.color or gray is None else gray
    whole = whole_image if isinstance(whole_image, list) else [whole_image] * len(boxes)
    crops = [
        crop_face(image, box, settings.size) if taken else cut_face(image, box, settings)
        for box, taken in zip(boxes, whole)
    ]
    return np.stack(crops) if crops else np.zeros((0, *settings.shape), np.uint8)


class Predictor:
    """Scores every face in images and videos with a trained model (the shipped 'engagement' by default).

    >>> predictor = Predictor.from_pretrained("engagement", detector="mtcnn")
    >>> faces = predictor.predict("photo.jpg")          # one FaceResult per face, biggest first
    >>> for frame in predictor.predict_video("lecture.mp4", every=2):
    ...     print(frame.time_s, [(f.face_id, f.p_engaged) for f in frame.faces])

    model: shipped name or file (.safetensors; .onnx with backend 'onnx'). detector: None for the model's
    own (mtcnn when it records none), 'mtcnn', 'yunet', 'dlib' or 'none' (each image is one face crop).
    backend: 'torch' or 'onnx' (onnxruntime). expressions: also score every face with expression_model, with
    expression_views 'model' (as its file records: the shipped fer averages 16 views), 'flip' or 'one' (fastest).
    detect_size: longest side of the frame the detector sees (default: the detector's own limit; YuNet
    looks at half-size frames, see below). smoothing_s: time constant of p_engaged's moving average in
    video. threads: CPU threads for detector and network (1 is fastest for a few faces per frame); PyTorch's
    thread count is set for the whole process when the Predictor is made (None leaves it).
    base_rate: the share of on-task faces expected at the site; p_engaged is re-weighted to it (prior shift) and the
    label follows (None: the rate the model's probabilities are calibrated for, 0.5 for the shipped model).
    calibration: a site calibration (a file from `engage calibrate`, or a SiteCalibration) applied first.
    abstain: a face too small, blurred, turned to the side or weakly detected is labelled 'uncertain' (its reasons
    in FaceResult.quality) instead of being judged (engage.faces.quality).
    cues: measure every face's attention cues (head pose, gaze, eye and mouth opening: engage.faces.cues) from its
    landmarks in the original image, in FaceResult.cues and every output; a model with a cue head (the shipped
    'engagement') moves p_engaged by them. False: the appearance score alone, faster (a model cut from the landmark
    box, as the shipped one, still finds each face's mesh, without the iris networks).
    device: where the network(s) run: 'cpu' (float32, the same answer on every machine), 'cuda' (bf16 autocast in
    large batches: p_engaged within about 0.02 of the CPU's) or 'auto' (cuda where PyTorch sees a GPU and the backend
    is torch, else cpu).

    Video files run as a pipeline: a thread decodes and detects the next frames while the calling thread
    tracks and scores (onnxruntime and PyTorch release the GIL), with the same results in the same order.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        detector: str | None = None,
        backend: str = "torch",
        expressions: bool = False,
        expression_model: str = DEFAULT_EXPRESSION_MODEL,
        expression_views: str = "model",
        min_confidence: float | None = None,
        detect_size: int | None = None,
        smoothing_s: float = 1.0,
        threads: int | None = 1,
        base_rate: float | None = None,
        calibration: str | SiteCalibration | None = None,
        abstain: bool = True,
        cues: bool = True,
        device: str = "cpu",
    ) -> None:
        if smoothing_s < 0:
            raise UsageError(f"smoothing must be >= 0 seconds, got {smoothing_s}")
        self.model_name = str(model)
        self.backend = backend
        self.smoothing_s = smoothing_s
        self.threads = threads
        use_torch_threads(threads)
        from engage.models.device import resolve_device

        self.device = resolve_device(device, backend)  # 'cpu' or 'cuda'
        self.model = load_scoring_model(model, backend, threads, device=self.device)
        self.settings = FaceSettings.from_dict(self.model.face_settings)
        self.class_names = self.model.class_names
        from engage.models.calibration import make_adjustment

        self.adjustment = make_adjustment(base_rate, calibration)  # a site's correction and base rate, checked here
        self.adjustment.check(self.model.config, self.model_name)
        decision = self.model.decision  # positive class and threshold, as the model file records (or the site's)
        self.decision = replace(decision, threshold=self.adjustment.threshold(decision.threshold))
        self.positive_class = self.decision.positive
        self.abstain = abstain
        self.quality_thresholds = THRESHOLDS
        self.measure_cues = cues
        # landmarks: for the cues, and for a model cut from the landmark box (settings.box)
        self.face_mesh: FaceMesh | None = None
        if cues or self.settings.box == "landmarks":
            from engage.faces.landmarks import FaceMesh

            self.face_mesh = FaceMesh(threads=threads or 1)
        self.cue_head = self.model.cue_head if cues and self.decision.binary else None
        if self.cue_head is not None:
            self.cue_head.check_columns(CUE_COLUMNS, self.model_name)
        self.expression_model: FaceClassifier | OnnxClassifier | None = (
            load_scoring_model(expression_model, backend, threads, expression_views, self.device)
            if expressions
            else None
        )
        self.expression_names: list[str] | None = self.expression_model.class_names if self.expression_model else None
        self.expression_settings: FaceSettings | None = (
            FaceSettings.from_dict(self.expression_model.face_settings) if self.expression_model else None
        )
        # the model's own detector (and threshold) unless another is asked for; FER-style models trained on
        # ready-made crops record none, so they get the default detector
        self.detector_name = detector or self.settings.detector or "mtcnn"
        if self.detector_name not in (*DETECTORS, NO_DETECTOR):
            raise UsageError(
                f"unknown detector {self.detector_name!r}; choose one of: {', '.join(DETECTORS)}, {NO_DETECTOR}"
            )
        if self.settings.align and self.detector_name not in LANDMARK_DETECTORS:
            raise UsageError(
                f"{model} turns faces upright on the eye landmarks of {', '.join(LANDMARK_DETECTORS)}; "
                f"detector {self.detector_name} cannot cut its faces (use --detector "
                f"{LANDMARK_DETECTORS[0]})"
            )
        self.detector: FaceDetector | None
        if self.detector_name == NO_DETECTOR:
            self.detector = None
        else:
            if min_confidence is None and self.detector_name == self.settings.detector:
                min_confidence = self.settings.min_confidence
            self.detector = self._make_detector(min_confidence, detect_size)
        self._detector_args = (min_confidence, detect_size)
        self._detect_lock = threading.Lock()
        # YuNet finds faces down to ~10 px, MTCNN (the default) down to 20 px: on frames at half size YuNet
        # still finds every face MTCNN would, 3x faster, with fewer tiny false faces. Not when YuNet is the
        # model's own detector (then it detects exactly as at training) or a size is given.
        self.half_size_detection = (
            self.detector_name == "yunet" and detect_size is None and self.settings.detector != "yunet"
        )
        # video: each detector at the smallest size that still finds 40-px faces (VIDEO_DETECT_SCALE), unless a size
        # is given; the detector's own limit otherwise
        self.video_detect_scale = VIDEO_DETECT_SCALE.get(self.detector_name) if detect_size is None else None
        self._full_side = self.detector.max_side if self.detector is not None else 0

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, **options: Any) -> Predictor:
        """A predictor for a shipped model by name ('engagement', 'fer') or any model file."""
        return cls(model, **options)

    def fork(self, expressions: bool = True) -> Predictor:
        """A predictor sharing this one's loaded model(s) with a face detector of its own, so that threads can
        score at the same time (a server loads each model once); expressions=False leaves the expression model out."""
        twin = copy.copy(self)
        if self.detector is not None:
            twin.detector = self._make_detector(*self._detector_args)
        twin._detect_lock = threading.Lock()
        if not expressions:
            twin.expression_model = twin.expression_names = twin.expression_settings = None
        return twin

    def _make_detector(self, min_confidence: float | None, detect_size: int | None) -> FaceDetector:
        """The face detector: with device 'cuda', MTCNN runs in PyTorch on the GPU (engage.faces.mtcnn_torch, the
        same weights and faces); every other detector on the CPU."""
        if self.device == "cuda" and self.detector_name == "mtcnn":
            from engage.faces.mtcnn_torch import create_gpu_detector

            return create_gpu_detector(min_confidence, detect_size, device="cuda")
        return create_detector(self.detector_name, min_confidence, detect_size)

    # ---- faces -------------------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray, video: bool = False) -> list[FaceBox]:
        """Faces in an RGB image, biggest first (the whole image when the detector is 'none'); video: a video frame,
        detected at the video's size (detect_side)."""
        if self.detector is None:
            height, width = rgb.shape[:2]
            return [whole_image_box(width, height, self.settings.square)]
        with self._detect_lock:  # a video's pipeline thread and its follower (a lost face) share the detector
            self.detector.max_side = self.detect_side(rgb, video)
            return self.detector.detect(rgb)

    def detect_side(self, rgb: np.ndarray, video: bool = False) -> int:
        """The longest side of the image the detector looks at: for a video frame, the frame scaled by
        VIDEO_DETECT_SCALE; for YuNet on images, half the image (half_size); else the detector's own limit (or
        the detect_size asked for)."""
        if video and self.video_detect_scale is not None:
            return max(64, min(self._full_side, round(max(rgb.shape[:2]) * self.video_detect_scale)))
        return half_size(rgb) if self.half_size_detection else self._full_side

    def predict_proba(self, faces: np.ndarray, cues: np.ndarray | None = None) -> np.ndarray:
        """(N, size, size[, 3]) uint8 faces (48x48 gray for the shipped models) to (N, C) probabilities, calibrated
        as the model records, moved by the faces' attention cues (N, len(CUE_COLUMNS); a row of NaN: none) when the
        model has a cue head, then corrected for the site and re-weighted to the base rate when asked."""
        proba = np.asarray(self.model.predict_proba(np.asarray(faces, np.uint8)), np.float32)
        if self.cue_head is not None and len(proba):  # no cues given: as faces without landmarks (scale and bias)
            positive = self.decision.positive_index
            assert positive is not None  # a cue head is kept for a binary decision only
            proba = self.cue_head.apply(proba, no_cues(len(proba)) if cues is None else cues, positive)
        return self.adjustment.apply_proba(proba, self.model.config, self.decision.positive_index)

    def prepare(self, rgb: np.ndarray, boxes: list[FaceBox] | None) -> Prepared | None:
        """A key frame's faces cut and measured ahead of scoring (on a pipeline thread); None for other frames."""
        return self.cut_and_cues(rgb, boxes) if boxes else None

    def cut_and_cues(
        self, rgb: np.ndarray, boxes: list[FaceBox], gray: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[FaceCues | None]]:
        """The faces' crops for the model and their attention cues (None: no landmarks, or cues off), from the face
        mesh of each face: a model trained on landmark boxes (settings.box) is cut from them."""
        found: list[FaceLandmarks | None]
        if self.face_mesh is None:
            found = [None] * len(boxes)
        else:
            found = [self.face_mesh.landmarks(rgb, box, eyes=self.measure_cues) for box in boxes]
        whole = self.detector is None
        if self.settings.box == "landmarks":  # a landmark box can run past the image: cut_face clips it, as preprocess
            cut = [box_on_landmarks(box, landmarks) for box, landmarks in zip(boxes, found)]
            crops = crop_faces(rgb, cut, self.settings, [whole and landmarks is None for landmarks in found], gray)
        else:
            crops = crop_faces(rgb, boxes, self.settings, whole, gray)
        cues = [face_cues(landmarks) if landmarks is not None and self.measure_cues else None for landmarks in found]
        return crops, cues

    def _score(
        self, frames: list[tuple[np.ndarray, list[FaceBox]]], prepared: list[Prepared | None] | None = None
    ) -> list[list[ScoredFace]]:
        """All faces of all frames through the network(s) in one batch; per frame, per face:
        (box, probabilities row, expression row or None, crop, cues or None). prepared: per frame, its faces' crops
        and cues when already cut (`prepare`), else None."""
        crops: list[np.ndarray] = []
        expression_crops: list[np.ndarray] = []
        counts: list[int] = []
        cues: list[FaceCues | None] = []
        whole = self.detector is None
        for (rgb, boxes), ready in zip(frames, prepared or [None] * len(frames)):
            gray = to_gray(rgb)
            faces, found = ready if ready is not None else self.cut_and_cues(rgb, boxes, gray)
            crops.append(faces)
            cues.extend(found)
            if self.expression_model is not None:
                assert self.expression_settings is not None  # set with the expression model
                expression_crops.append(crop_faces(rgb, boxes, self.expression_settings, whole, gray))
            counts.append(len(boxes))
        faces = np.concatenate(crops) if crops else np.zeros((0, *self.settings.shape), np.uint8)
        proba = (
            self.predict_proba(faces, cue_array(cues))
            if len(faces)
            else np.zeros((0, len(self.class_names)), np.float32)
        )
        expression_proba = None
        if self.expression_model is not None and len(faces):
            expression_proba = self.expression_model.predict_proba(np.concatenate(expression_crops))
        scored: list[list[ScoredFace]] = []
        start = 0
        for (_rgb, boxes), count in zip(frames, counts):
            scored.append(
                [
                    (
                        boxes[i],
                        proba[start + i],
                        None if expression_proba is None else expression_proba[start + i],
                        faces[start + i],
                        cues[start + i],
                    )
                    for i in range(count)
                ]
            )
            start += count
        return scored

    def quality_reasons(self, measures: FaceQuality) -> list[str]:
        """Why a face with these measures cannot be judged (engage.faces.quality); detector confidence is checked
        only for a detector's faces (not for the whole images of detector 'none')."""
        return self.quality_thresholds.reasons(measures, self.detector_name if self.detector is not None else None)

    def quality_of(self, box: FaceBox, crop: np.ndarray | None) -> tuple[FaceQuality | None, list[str]]:
        """A face's quality measures and the reasons it cannot be judged (nothing to measure without its crop)."""
        if crop is None:
            return None, []
        measures = measure_face(box, crop)
        return measures, self.quality_reasons(measures)

    def face_result(
        self,
        face_id: int,
        box: FaceBox,
        proba: np.ndarray,
        expression: np.ndarray | None,
        crop: np.ndarray | None,
        cues: FaceCues | None = None,
        p_smoothed: float | None = None,
        quality: tuple[FaceQuality | None, list[str]] | None = None,
    ) -> FaceResult:
        """One face's result: p_engaged (smoothed when given), its label as the model decides, or 'uncertain' when
        the face cannot be judged (quality: measures and reasons, else measured from box and crop)."""
        probabilities = {name: float(p) for name, p in zip(self.class_names, proba)}
        p_raw = probabilities[self.positive_class] if self.positive_class else None
        p_engaged = p_raw if p_smoothed is None else p_smoothed
        if p_engaged is not None and self.decision.binary:
            label = self.decision.label(p_engaged)
        else:
            label = self.class_names[int(np.argmax(proba))]
        measures, reasons = quality if quality is not None else self.quality_of(box, crop)
        if reasons and self.abstain:
            label = UNCERTAIN
        expressions = None
        if expression is not None:
            assert self.expression_names is not None  # an expression row comes from the expression model
            expressions = {name: float(p) for name, p in zip(self.expression_names, expression)}
        return FaceResult(
            face_id,
            box,
            probabilities,
            label,
            p_engaged,
            p_raw,
            expressions,
            crop,
            quality_label(reasons),
            measures,
            cues,
        )

    def judged(
        self,
        face_id: int,
        box: FaceBox,
        proba: np.ndarray,
        expression: np.ndarray | None,
        crop: np.ndarray | None,
        cues: FaceCues | None,
        time_s: float,
        smoother: EmaSmoother | None,
        quality: tuple[FaceQuality | None, list[str]] | None = None,
    ) -> FaceResult:
        """A face of a video or stream: p_engaged smoothed per face over time. A face that cannot be judged keeps
        its own score and stays out of the smoothing, so a blurred frame does not move its neighbours."""
        quality = quality if quality is not None else self.quality_of(box, crop)
        p_smoothed = None
        if self.positive_class is not None and smoother is not None and not (quality[1] and self.abstain):
            p_raw = float(proba[self.class_names.index(self.positive_class)])
            p_smoothed = smoother.update(face_id, time_s, p_raw)
        return self.face_result(face_id, box, proba, expression, crop, cues, p_smoothed, quality)

    # ---- images ------------------------------------------------------------------------------------
    def predict(self, image: ImageLike) -> list[FaceResult]:
        """Every face of one image (a path, numpy array or PIL image), biggest first, ids 1, 2, ...;
        an empty list when there is no face."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Iterable[ImageLike]) -> list[list[FaceResult]]:
        """Several images; all their faces go through the network in one batch."""
        frames: list[tuple[np.ndarray, list[FaceBox]]] = []
        for image in images:
            rgb = as_rgb_image(image)
            frames.append((rgb, self.detect(rgb)))
        return [[self.face_result(i + 1, *face) for i, face in enumerate(faces)] for faces in self._score(frames)]

    # ---- video -------------------------------------------------------------------------------------
    def predict_video(
        self,
        source: str | int | VideoSource,
        every: int = 1,
        max_frames: int | None = None,
        batch_frames: int = 8,
        keep_images: bool = False,
        pipeline: bool = True,
        detect_processes: int = 1,
        detect_every: int = DEFAULT_DETECT_EVERY,
        start_frame: int = 0,
    ) -> Iterator[FrameResult]:
        """Per-frame results of a video file or camera (an int), streamed with constant memory.

        Every `every`-th frame is scored; faces keep a stable face_id across frames (see engage.inference.tracking
        for the tracker's limits) and p_engaged is smoothed per face over `smoothing_s` seconds
        (p_engaged_raw keeps the frame's own value). detect_every: faces are detected on every `detect_every`-th
        scored frame (a key frame) and whenever one is lost, and followed in between, their scores carried on from
        their last key frame (engage.inference.keyframes); 1 detects and scores every face in every frame.
        Files are scored `batch_frames` key frames per network call (fewer when MAX_FRAME_BYTES of frames wait); cameras one frame at a time. keep_images
        attaches each frame's RGB pixels (for annotation). start_frame: begin at this frame of a file (its
        numbers and times stay the file's).
        pipeline: files are decoded and their faces detected on a thread of their own, a few frames ahead
        (False: everything on the calling thread, one step after another; the results are the same).
        detect_processes: for files, detect faces in this many worker processes (engage.faces.detect_pool), each
        with a detector of its own, the frames in order; for detectors that hold the GIL (YuNet, dlib) this is
        how detection uses more than one core. The results are the same.
        """
        video = source if isinstance(source, VideoSource) else VideoSource(source)
        try:
            follower = self.follower(video, every, detect_every)
            smoother = EmaSmoother(self.smoothing_s)
            batch = 1 if video.is_camera else max(1, batch_frames)
            most = frames_in_memory(video)
            faces_of = self.video_faces(
                video, follower, every, max_frames, detect_every, start_frame, None, pipeline, detect_processes, batch
            )
            held: dict[int, HeldFace] = {}
            pending: list[FrameFaces] = []
            keyframes = 0
            try:
                for faces in faces_of:
                    pending.append(faces)
                    keyframes += any(faces.detected)
                    # scored a batch of key frames at a time, holding at most MAX_FRAME_BYTES of frames
                    if video.is_camera or keyframes >= batch or len(pending) >= most:
                        yield from self._frame_results(video.name, pending, smoother, keep_images, held)
                        live = [track.face_id for track in follower.tracker.tracks]
                        smoother.keep_only(live)
                        held = {face_id: held[face_id] for face_id in live if face_id in held}
                        pending, keyframes = [], 0
                yield from self._frame_results(video.name, pending, smoother, keep_images, held)
            finally:
                faces_of.close()  # stops the threads (and the detector processes), if any, before the video is closed
        finally:
            if not isinstance(source, VideoSource):
                video.close()

    def follower(self, video: VideoSource, every: int = 1, detect_every: int = DEFAULT_DETECT_EVERY) -> FaceFollower:
        """What carries a video's faces from frame to frame (ids, and the faces to follow between key frames)."""
        if every < 1:
            raise UsageError(f"--every must be 1 or more, got {every}")
        check_detect_every(detect_every)
        detect = functools.partial(self.detect, video=True)
        return FaceFollower(IouTracker(max_gap_s=video_gap_s(every, video.fps)), detect, follow=detect_every > 1)

    def video_faces(
        self,
        video: VideoSource,
        follower: FaceFollower,
        every: int = 1,
        max_frames: int | None = None,
        detect_every: int = DEFAULT_DETECT_EVERY,
        start_frame: int = 0,
        stop_frame: int | None = None,
        pipeline: bool = False,
        detect_processes: int = 1,
        batch: int = 8,
    ) -> Generator[FrameFaces, None, None]:
        """The faces of a video's scored frames, one FrameFaces per frame in order (engage.inference.keyframes):
        detected on key frames, followed in between; frames from start_frame up to stop_frame (excluded). With
        pipeline (files), frames are decoded and detected on one thread and the key frames' faces cut and measured
        on another (FrameFaces.prepared), ahead of the caller; detect_processes: detection in worker processes.
        Close it to stop them."""
        frames = video.frames(every, max_frames, start=start_frame, stop=stop_frame)
        key = functools.partial(is_keyframe, every=every, detect_every=detect_every)
        detected: Generator[tuple[Frame, list[FaceBox] | None], None, None]
        if self.detect_processes_for(video, detect_processes) > 1:
            detected = self._detected_in_processes(frames, detect_processes, key)
        else:
            detected = ((frame, self.detect(frame.rgb, video=True) if key(frame.index) else None) for frame in frames)
        # key frames' faces cut and their landmarks found on a thread of their own, behind detection
        prepared: Iterator[tuple[Frame, list[FaceBox] | None, Prepared | None]]
        if (pipeline or detect_processes > 1) and not video.is_camera:
            most = frames_in_memory(video)
            depth = min(most, max(2 * batch * detect_every, 3 * detect_processes))
            detected = ahead(detected, depth)
            prepared = ahead(((f, b, self.prepare(f.rgb, b)) for f, b in detected), depth)
        else:
            prepared = ((frame, boxes, None) for frame, boxes in detected)
        try:
            for frame, boxes, ready in prepared:
                yield follower.step(frame, boxes, ready)
        finally:
            if isinstance(prepared, Generator):
                prepared.close()
            detected.close()

    def detect_processes_for(self, video: VideoSource, requested: int) -> int:
        """How many processes predict_video detects this video's faces in when asked for `requested`: those, for a
        file with a detector; else 1 (the calling process: cameras, and 'none')."""
        on_gpu = self.device == "cuda" and self.detector_name == "mtcnn"  # CUDA stays in this process
        return requested if requested > 1 and self.detector is not None and not video.is_camera and not on_gpu else 1

    def _detected_in_processes(
        self, frames: Iterator[Frame], processes: int, key: Callable[[int], bool]
    ) -> Generator[tuple[Frame, list[FaceBox] | None], None, None]:
        """(frame, its faces) in order, the key frames' faces (key(frame number)) detected by `processes` worker
        processes that live as long as this generator (made, used and stopped on the thread that iterates it); None
        for the other frames."""
        from engage.faces.detect_pool import DetectorPool

        with DetectorPool(self.detector_name, *self._detector_args, processes=processes) as pool:
            yield from pool.detect_all(
                frames,
                image=lambda frame: frame.rgb,
                max_side=functools.partial(self.detect_side, video=True),
                wanted=lambda frame: key(frame.index),
            )

    def predict_stream_frame(self, rgb: np.ndarray, time_s: float, stream: FaceStream) -> FrameResult:
        """One frame of a live stream whose frames arrive one at a time (a browser's camera): faces keep their ids
        and p_engaged is smoothed from frame to frame, as in predict_video, through the state `stream` carries."""
        rgb = as_rgb_image(rgb)
        boxes = self.detect(rgb)
        ids = stream.tracker.update(boxes, time_s)
        pending = [FrameFaces(Frame(stream.frames, time_s, rgb), boxes, ids, [True] * len(boxes))]
        frame = next(self._frame_results(stream.name, pending, stream.smoother, keep_images=False))
        stream.smoother.keep_only(track.face_id for track in stream.tracker.tracks)
        stream.frames += 1
        return frame

    def _frame_results(
        self,
        name: str,
        pending: list[FrameFaces],
        smoother: EmaSmoother,
        keep_images: bool,
        held: dict[int, HeldFace] | None = None,
    ) -> Iterator[FrameResult]:
        """The frames' results, in order: the faces detected in them scored together in one batch, the faces followed
        into them with the scores of their last key frame (`held`: per face id, updated here)."""
        if not pending:
            return
        held = {} if held is None else held
        keyframes = [faces for faces in pending if any(faces.detected)]
        scored = iter(
            self._score(
                [
                    (faces.frame.rgb, [box for box, found in zip(faces.boxes, faces.detected) if found])
                    for faces in keyframes
                ],
                [faces.prepared for faces in keyframes],
            )
        )
        for faces in pending:
            fresh = iter(next(scored) if any(faces.detected) else ())
            results = []
            for face_id, box, found in zip(faces.ids, faces.boxes, faces.detected):
                if found:
                    _, proba, expression, crop, cues = next(fresh)
                    quality = self.quality_of(box, crop)
                    held[face_id] = (proba, expression, cues, quality)
                    results.append(
                        self.judged(face_id, box, proba, expression, crop, cues, faces.frame.time_s, smoother, quality)
                    )
                else:
                    proba, expression, cues, quality = held[face_id]
                    result = self.judged(
                        face_id, box, proba, expression, None, cues, faces.frame.time_s, smoother, quality
                    )
                    result.tracked = True
                    results.append(result)
            height, width = faces.frame.rgb.shape[:2]
            yield FrameResult(
                name,
                faces.frame.index,
                faces.frame.time_s,
                results,
                width,
                height,
                faces.frame.rgb if keep_images else None,
            )


def frames_in_memory(video: VideoSource) -> int:
    """How many of a video's decoded frames fit in MAX_FRAME_BYTES."""
    return max(1, MAX_FRAME_BYTES // max(1, video.width * video.height * 3))


def no_cues(count: int) -> np.ndarray:
    """The cue rows of faces without landmarks."""
    return np.full((count, len(CUE_COLUMNS)), np.nan)


def cue_array(cues: list[FaceCues | None]) -> np.ndarray:
    """(N, len(CUE_COLUMNS)) cue values, a row of NaN for a face without cues."""
    rows = [np.full(len(CUE_COLUMNS), np.nan) if c is None else c.as_array() for c in cues]
    return np.array(rows, np.float64).reshape(len(rows), len(CUE_COLUMNS))


def ahead(items: Iterator[Item], depth: int) -> Generator[Item, None, None]:
    """The items of a generator, produced on a thread of its own up to `depth` items ahead of the consumer, in
    order. An exception in the producer is raised to the consumer; closing the returned generator (or stopping
    early) stops the producer and waits for it."""
    import queue
    import threading

    done = object()
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as error:  # handed to the consumer, which raises it
            slots.put((done, error))
        finally:
            if hasattr(items, "close"):
                items.close()

    producer = threading.Thread(target=produce, name="engage-decode-detect", daemon=True)
    producer.start()

    def consume() -> Generator[Item, None, None]:
        try:
            while True:
                item, error = slots.get()
                if item is done:
                    if error is not None:
                        raise error
                    return
                yield item
        finally:
            stop.set()
            while producer.is_alive():  # free a producer blocked on a full queue
                try:
                    slots.get_nowait()
                except queue.Empty:
                    producer.join(0.05)

    return consume()


class FaceStream:
    """What a live stream carries from one frame to the next (Predictor.predict_stream_frame): the tracker that
    keeps face ids and the per-face smoothing of p_engaged. No frame is kept."""

    def __init__(self, name: str = "live", smoothing_s: float = 1.0, max_gap_s: float = 1.0) -> None:
        self.name = name
        self.tracker = IouTracker(max_gap_s=max_gap_s)
        self.smoother = EmaSmoother(smoothing_s)
        self.frames = 0
