"""FaceDataset: 48x48 uint8 faces with labels, subjects and provenance, saved as one self-describing .npz."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from engage import __version__
from engage.errors import EngageError
from engage.faces import FACE_SIZE, FaceSettings, normalize_paper

FORMAT = "engage-faces/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temp files are private (0600)


def atomic_write(path: str, write) -> None:
    """Call write(tmp_path) then rename over path, so a crash never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(handle)
    try:
        write(tmp_path)
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


@dataclass
class FaceDataset:
    """Faces ready for training: (N, 48, 48) uint8 plus one entry per face in every other array."""

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

    def __post_init__(self):
        n = len(self.faces)
        for name in ("labels", "subjects", "paths", "boxes", "det_conf", "face_source", "split", "fold"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceDataset.{name} has {len(getattr(self, name))} entries for {n} faces")

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def settings(self) -> FaceSettings:
        return FaceSettings.from_dict(self.meta.get("settings", {}))

    @property
    def has_subjects(self) -> bool:
        return len(self) > 0 and bool(np.all(self.subjects != ""))

    def subset(self, index) -> "FaceDataset":
        """The faces picked by an index array or boolean mask (same classes and meta)."""
        index = np.asarray(index)
        return FaceDataset(
            self.faces[index], self.labels[index], list(self.class_names), self.subjects[index], self.paths[index],
            self.boxes[index], self.det_conf[index], self.face_source[index], self.split[index], self.fold[index],
            dict(self.meta),
        )

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
        meta.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        arrays = dict(
            faces=self.faces.astype(np.uint8), labels=self.labels.astype(np.int64),
            subjects=self.subjects.astype(str), paths=self.paths.astype(str), boxes=self.boxes.astype(np.int32),
            det_conf=self.det_conf.astype(np.float32), face_source=self.face_source.astype(str),
            split=self.split.astype(str), fold=self.fold.astype(np.int16), meta=np.array(json.dumps(meta)),
        )

        def write(tmp_path: str) -> None:
            with open(tmp_path, "wb") as handle:
                np.savez_compressed(handle, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str) -> "FaceDataset":
        """Read a dataset written by save(); a foreign or damaged file is an EngageError naming it."""
        if not os.path.isfile(path):
            raise EngageError(f"{path}: no such dataset file; make one with 'engage preprocess'")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    raise KeyError("format")
                faces = data["faces"]
                dataset = cls(
                    faces, data["labels"], list(meta["class_names"]), data["subjects"], data["paths"], data["boxes"],
                    data["det_conf"], data["face_source"], data["split"], data["fold"], meta,
                )
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError, EOFError):
            raise EngageError(f"{path}: not an engage dataset or damaged; re-create it with 'engage preprocess'") from None
        if faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE):
            raise EngageError(f"{path}: faces have shape {faces.shape}; expected (N, 48, 48)")
        return dataset


def empty_dataset(class_names: list[str], meta: dict) -> FaceDataset:
    return FaceDataset(
        np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), np.zeros(0, np.int64), class_names, np.zeros(0, "<U1"),
        np.zeros(0, "<U1"), np.zeros((0, 4), np.int32), np.zeros(0, np.float32), np.zeros(0, "<U1"),
        np.zeros(0, "<U1"), np.zeros(0, np.int16), meta,
    )
