"""FaceDataset: uint8 faces (48x48 gray by default) with labels, subjects and provenance, saved as one
self-describing .npz."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engage.errors import EngageError
from engage.faces.crop import FaceSettings, normalize_paper
from engage.io.files import atomic_write
from engage.version import __version__

FORMAT = "engage-faces/1"


NO_LANDMARKS = np.full((5, 2), np.nan, np.float32)


@dataclass
class FaceDataset:
    """Faces ready for training: (N, size, size) uint8 gray, or (N, size, size, 3) RGB, as the face settings in
    meta say (48x48 gray by default), plus one entry per face in every other array."""

    faces: np.ndarray
    labels: np.ndarray  # int64 index into class_names, -1 when unlabelled
    class_names: list[str]
    subjects: np.ndarray  # str, '' when unknown
    paths: np.ndarray  # str, relative to meta['root'] where possible
    boxes: np.ndarray  # (N, 4) int32 x, y, w, h of the crop in its source image
    det_conf: np.ndarray  # float32 detector confidence (1 for whole-image crops)
    face_source: np.ndarray  # str: 'detected', 'whole-image' or 'no-detect'
    split: np.ndarray  # str: '' or a split name ('train', 'val', 'PublicTest', ...)
    fold: np.ndarray  # int16 fold index, -1 when not folded
    meta: dict = field(default_factory=dict)  # settings, source, report, cache
    landmarks: np.ndarray | None = None  # (N, 5, 2) float32 detector landmarks in image pixels, NaN when none
    corpus: np.ndarray | None = None  # str: which data set each face comes from (e.g. 'wacv', 'daisee')
    cues: np.ndarray | None = None  # (N, len(CUE_COLUMNS)) attention cues, NaN without landmarks; measured, not saved

    def __post_init__(self) -> None:
        n = len(self.faces)
        if self.landmarks is None:
            self.landmarks = np.repeat(NO_LANDMARKS[None], n, axis=0)
        if self.corpus is None:
            self.corpus = np.full(n, self.meta.get("corpus", ""), dtype=object).astype(str)
        for name in (
            "labels",
            "subjects",
            "paths",
            "boxes",
            "det_conf",
            "face_source",
            "split",
            "fold",
            "landmarks",
            "corpus",
            "cues",
        ):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"FaceDataset.{name} has {len(getattr(self, name))} entries for {n} faces")

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def settings(self) -> FaceSettings:
        return FaceSettings.from_dict(self.meta.get("settings", {}))

    @property
    def has_subjects(self) -> bool:
        return len(self) > 0 and bool(np.all(self.subjects != ""))

    def subset(self, index: npt.ArrayLike) -> FaceDataset:
        """The faces picked by an index array or boolean mask (same classes and meta)."""
        index = np.asarray(index)
        assert self.landmarks is not None and self.corpus is not None  # set by __post_init__
        return FaceDataset(
            self.faces[index],
            self.labels[index],
            list(self.class_names),
            self.subjects[index],
            self.paths[index],
            self.boxes[index],
            self.det_conf[index],
            self.face_source[index],
            self.split[index],
            self.fold[index],
            dict(self.meta),
            self.landmarks[index],
            self.corpus[index],
            None if self.cues is None else self.cues[index],
        )

    @property
    def corpora(self) -> list[str]:
        """The data sets the faces come from, in order of first appearance."""
        assert self.corpus is not None  # set by __post_init__
        return list(dict.fromkeys(self.corpus.tolist()))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def normalized(self) -> np.ndarray:
        """Faces as float32 in the dataset's recorded normalisation (before any per-channel standardisation)."""
        if self.settings.normalize == "paper":
            return normalize_paper(self.faces)
        return self.faces.astype(np.float32) / 255.0

    def save(self, path: str) -> None:
        """Write atomically to a compressed .npz that needs no pickle to load."""
        meta = dict(self.meta, format=FORMAT, class_names=list(self.class_names), engage_version=__version__)
        meta.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
        assert self.landmarks is not None and self.corpus is not None  # set by __post_init__
        # Any: NumPy 2's stub types savez_compressed's allow_pickle keyword, which **arrays would otherwise meet
        arrays: dict[str, Any] = dict(
            faces=self.faces.astype(np.uint8),
            labels=self.labels.astype(np.int64),
            subjects=self.subjects.astype(str),
            paths=self.paths.astype(str),
            boxes=self.boxes.astype(np.int32),
            det_conf=self.det_conf.astype(np.float32),
            face_source=self.face_source.astype(str),
            split=self.split.astype(str),
            fold=self.fold.astype(np.int16),
            meta=np.array(json.dumps(meta)),
            landmarks=self.landmarks.astype(np.float32),
            corpus=self.corpus.astype(str),
        )

        def write(tmp_path: str) -> None:
            with open(tmp_path, "wb") as handle:
                np.savez_compressed(handle, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str) -> FaceDataset:
        """Read a dataset written by save(); a foreign or damaged file is an EngageError naming it."""
        if not os.path.isfile(path):
            raise EngageError(f"{path}: no such dataset file; make one with 'engage preprocess'")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    raise KeyError("format")
                faces = data["faces"]
                optional = {name: data[name] for name in ("landmarks", "corpus") if name in data.files}
                dataset = cls(
                    faces,
                    data["labels"],
                    list(meta["class_names"]),
                    data["subjects"],
                    data["paths"],
                    data["boxes"],
                    data["det_conf"],
                    data["face_source"],
                    data["split"],
                    data["fold"],
                    meta,
                    **optional,
                )
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
            raise EngageError(
                f"{path}: not an engage dataset or damaged; re-create it with 'engage preprocess'"
            ) from None
        expected = dataset.settings.shape
        if faces.shape[1:] != expected:
            raise EngageError(
                f"{path}: faces have shape {faces.shape}; its face settings say (N, {', '.join(map(str, expected))})"
            )
        if "corpus" not in optional:  # written before data sets were named: the file's own name
            dataset.corpus = np.full(len(dataset), os.path.splitext(os.path.basename(path))[0], dtype=object).astype(
                str
            )
        return dataset


def empty_dataset(class_names: list[str], meta: dict) -> FaceDataset:
    shape = FaceSettings.from_dict(meta.get("settings", {})).shape
    return FaceDataset(
        np.zeros((0, *shape), np.uint8),
        np.zeros(0, np.int64),
        class_names,
        np.zeros(0, "<U1"),
        np.zeros(0, "<U1"),
        np.zeros((0, 4), np.int32),
        np.zeros(0, np.float32),
        np.zeros(0, "<U1"),
        np.zeros(0, "<U1"),
        np.zeros(0, np.int16),
        meta,
    )


def concatenate(datasets: list[FaceDataset], names: list[str] | None = None) -> FaceDataset:
    """Several datasets as one, for training on all of them: the same classes and face settings are required.
    When they come from more than one corpus, subject ids become 'corpus/subject' so that two sets can never
    share a student by accident."""
    if not datasets:
        raise EngageError("no dataset to combine")
    names = names or [f"dataset {i + 1}" for i in range(len(datasets))]
    first = datasets[0]
    for name, other in zip(names[1:], datasets[1:]):
        if other.class_names != first.class_names:
            raise EngageError(
                f"{name}: classes {other.class_names} differ from {names[0]}'s {first.class_names}; "
                "pre-process both with label maps to the same classes"
            )
        differ = other.settings.crop_differences(first.settings)
        if differ:
            raise EngageError(
                f"{name}: its faces were cut otherwise than {names[0]}'s ({', '.join(differ)}); "
                "pre-process both the same way"
            )
    if len(datasets) == 1:
        return first
    corpus = np.concatenate([d.corpus for d in datasets])
    subjects = np.concatenate([d.subjects for d in datasets]).astype(object)
    if len(set(corpus.tolist())) > 1:
        subjects = np.array([f"{c}/{s}" if s else "" for c, s in zip(corpus, subjects)], dtype=object)
    join = lambda name: np.concatenate([getattr(d, name) for d in datasets])  # noqa: E731
    meta = dict(first.meta, combined=[str(n) for n in names])
    cues = None
    if any(d.cues is not None for d in datasets):  # a set without cues joins with rows of NaN (no cues)
        width = next(d.cues.shape[1] for d in datasets if d.cues is not None)
        cues = np.concatenate([d.cues if d.cues is not None else np.full((len(d), width), np.nan) for d in datasets])
    return FaceDataset(
        join("faces"),
        join("labels"),
        list(first.class_names),
        subjects.astype(str),
        join("paths"),
        join("boxes"),
        join("det_conf"),
        join("face_source"),
        join("split"),
        join("fold"),
        meta,
        join("landmarks"),
        corpus.astype(str),
        cues,
    )
