"""Dataset readers: image-folder trees, manifest CSVs and fer2013.csv, with label maps and subject ids."""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engage.errors import EngageError, UsageError
from engage.faces.crop import FACE_SIZE
from engage.io.files import walk_files
from engage.io.images import is_image_file

# fer2013.csv's emotion codes; folder trees use the same names, and class order is always alphabetical.
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_USAGES = ("Training", "PublicTest", "PrivateTest")
ENGAGEMENT_BINARY_MAP = "2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged"


@dataclass
class Sample:
    """One image to pre-process: a file (path) or in-memory pixels, with what is known about it."""

    path: str  # the file, or 'file.csv#row' for an image stored in a CSV
    label: str | None = None
    subject: str | None = None
    split: str | None = None  # a split given by the source (fer2013 Usage, a manifest 'split' column)
    pixels: np.ndarray | None = None  # the image itself when it is not a file
    fingerprint: tuple[int, int] = (0, 0)  # (size, mtime_ns) of the file holding it, for the cache

    @property
    def name(self) -> str:
        return os.path.basename(self.path.split("#", 1)[0]) if "#" in self.path else os.path.basename(self.path)


@dataclass
class SampleList:
    """What a reader found: the samples, the folder their paths are relative to, and what it ignored."""

    samples: list[Sample]
    root: str
    kind: str  # 'folder', 'manifest', 'fer2013-csv', 'sample'
    ignored: list[str]


def file_fingerprint(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, or (-1, -1) if it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def list_image_files(folder: str) -> tuple[list[str], list[str]]:
    """Image files under a folder (recursive, sorted) and the other files it ignored."""
    images: list[str] = []
    ignored: list[str] = []
    for path in sorted(walk_files(folder)):
        (images if is_image_file(path) else ignored).append(path)
    return images, ignored


def read_image_folder(root: str) -> SampleList:
    """An image-folder tree: one sub-folder per class (FER2013 layout), or a flat folder of unlabelled images."""
    if not os.path.isdir(root):
        raise EngageError(f"{root}: no such folder")
    root = os.path.abspath(root)
    entries = sorted(os.listdir(root))
    class_dirs = [e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(root, e))]
    samples, ignored = [], []
    for class_name in class_dirs:
        images, skipped = list_image_files(os.path.join(root, class_name))
        ignored += skipped
        samples += [Sample(path, label=class_name, fingerprint=file_fingerprint(path)) for path in images]
    top_level = [
        os.path.join(root, e) for e in entries if os.path.isfile(os.path.join(root, e)) and not e.startswith(".")
    ]
    if samples:
        ignored += top_level  # loose files beside class folders have no class
    else:
        for path in top_level:
            if is_image_file(path):
                samples.append(Sample(path, fingerprint=file_fingerprint(path)))
            else:
                ignored.append(path)
    if not samples:
        raise EngageError(
            f"{root}: holds no images (looked for .jpg, .png, .bmp, .webp, .tif, .gif); point to a folder of images"
        )
    return SampleList(samples, root, "folder", ignored)


def _read_csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except OSError as error:
        raise EngageError(f"{path}: cannot open ({error.strerror or error})") from None
    except (UnicodeDecodeError, csv.Error):
        raise EngageError(f"{path}: not a text CSV file; give a CSV with a header row") from None
    if not header:
        raise EngageError(f"{path}: empty CSV; it needs a header row such as 'path,label,subject'")
    return [column.strip() for column in header]


@contextmanager
def csv_text(path: str) -> Iterator:
    """The CSV file opened as UTF-8 text (a BOM is dropped); text that is not UTF-8 or not CSV, wherever it
    shows up while the rows are read, becomes one error naming the file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            yield handle
    except UnicodeDecodeError as error:
        raise EngageError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at position {error.start}); "
            "save it as a UTF-8 CSV"
        ) from None
    except csv.Error as error:
        raise EngageError(f"{path}: not a readable CSV ({error})") from None


def shown_cell(text: str) -> str:
    """A CSV cell as it can be shown inside a one-line message: line breaks and other control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def read_manifest(csv_path: str, label_column: str | None = "label", subject_column: str = "subject") -> SampleList:
    """A manifest CSV: `path` and a label column (plus optional `subject`, `split`); paths relative to the CSV."""
    header = _read_csv_header(csv_path)
    needed = ["path"] + ([label_column] if label_column else [])
    missing = [column for column in needed if column not in header]
    if missing:
        raise EngageError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; it has {', '.join(shown_cell(name) for name in header)} "
            f"(a manifest needs 'path' and a label column, chosen by --label-column)"
        )
    root = os.path.dirname(os.path.abspath(csv_path))
    fingerprints: dict[str, tuple[int, int]] = {}
    samples = []
    with csv_text(csv_path) as handle:
        for row_number, row in enumerate(csv.DictReader(handle, fieldnames=header), start=1):
            if row_number == 1:
                continue  # the header itself
            relative = (row.get("path") or "").strip()
            if not relative:
                raise EngageError(f"{csv_path}: row {row_number} has an empty path")
            if "\0" in relative:
                raise EngageError(f"{csv_path}: row {row_number} has a NUL byte in its path ({shown_cell(relative)})")
            label = (row.get(label_column) or "").strip() if label_column else None
            if label_column and label == "":
                raise EngageError(f"{csv_path}: row {row_number} ({relative}) has no value in column {label_column!r}")
            path = os.path.normpath(os.path.join(root, relative))
            if path not in fingerprints:
                fingerprints[path] = file_fingerprint(path)
            subject = (row.get(subject_column) or "").strip() or None
            split = (row.get("split") or "").strip() or None
            samples.append(Sample(path, label=label, subject=subject, split=split, fingerprint=fingerprints[path]))
    if not samples:
        raise EngageError(f"{csv_path}: the manifest lists no images")
    return SampleList(samples, root, "manifest", [])


def read_fer2013_csv(csv_path: str, usages: list[str] | None = None) -> SampleList:
    """The original fer2013.csv (`emotion,pixels,Usage`); usages picks its splits (all by default)."""
    header = _read_csv_header(csv_path)
    for column in ("emotion", "pixels"):
        if column not in header:
            raise EngageError(f"{csv_path}: missing column {column!r}; fer2013.csv has emotion,pixels,Usage")
    if usages:
        unknown = [u for u in usages if u not in FER_USAGES]
        if unknown:
            raise UsageError(f"unknown fer2013 usage {', '.join(unknown)}; choose from {', '.join(FER_USAGES)}")
    fingerprint = file_fingerprint(csv_path)
    name = os.path.basename(csv_path)
    samples = []
    with csv_text(csv_path) as handle:
        reader = csv.DictReader(handle, fieldnames=header)  # the stripped header names, as checked above
        next(reader, None)  # the header row itself
        for row_number, row in enumerate(reader, start=2):
            usage = (row.get("Usage") or "").strip() or None
            if usages and usage not in usages:
                continue
            try:
                emotion = int(row["emotion"])
                label = FER_EMOTIONS[emotion]
            except (ValueError, TypeError, IndexError):
                raise EngageError(
                    f"{csv_path}: row {row_number} has emotion {row.get('emotion')!r}; expected 0-6"
                ) from None
            try:
                pixels = np.array((row["pixels"] or "").split(), dtype=np.float32)
            except ValueError:
                raise EngageError(f"{csv_path}: row {row_number} has non-numeric pixels") from None
            if pixels.size != FACE_SIZE * FACE_SIZE:
                raise EngageError(
                    f"{csv_path}: row {row_number} has {pixels.size} pixel values; expected {FACE_SIZE * FACE_SIZE} (48x48)"
                )
            image = np.clip(pixels, 0, 255).astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)
            samples.append(
                Sample(f"{name}#{row_number}", label=label, split=usage, pixels=image, fingerprint=fingerprint)
            )
    if not samples:
        wanted = f" with usage {', '.join(usages)}" if usages else ""
        raise EngageError(f"{csv_path}: no rows{wanted}")
    return SampleList(samples, os.path.dirname(os.path.abspath(csv_path)), "fer2013-csv", [])


def read_samples(source: str, label_column: str | None = "label", usages: list[str] | None = None) -> SampleList:
    """Any supported source: a folder tree, a manifest CSV or fer2013.csv (told apart by its columns)."""
    if os.path.isdir(source):
        return read_image_folder(source)
    if not os.path.exists(source):
        raise EngageError(f"{source}: no such file or folder")
    if source.lower().endswith(".csv"):
        header = _read_csv_header(source)
        if "pixels" in header and "emotion" in header:
            return read_fer2013_csv(source, usages)
        return read_manifest(source, label_column)
    raise EngageError(f"{source}: not a folder or a CSV; give an image folder, a manifest CSV or fer2013.csv")


def parse_label_map(text: str | None) -> dict[str, str]:
    """'a=x,b=y' to {'a': 'x', 'b': 'y'}."""
    if not text:
        return {}
    mapping = {}
    for piece in text.split(","):
        if not piece.strip():
            continue
        if "=" not in piece:
            raise UsageError(f"bad --label-map entry {piece!r}; write OLD=NEW pairs separated by commas")
        old, new = (part.strip() for part in piece.split("=", 1))
        if not old or not new:
            raise UsageError(f"bad --label-map entry {piece!r}; both sides of '=' must be non-empty")
        mapping[old] = new
    return mapping


def apply_label_map(samples: list[Sample], mapping: dict[str, str]) -> None:
    """Rename labels in place; a label the map does not name is an error listing them."""
    if not mapping:
        return
    unknown = sorted({s.label for s in samples if s.label is not None and s.label not in mapping})
    if unknown:
        raise UsageError(
            f"--label-map does not say what to do with label(s) {', '.join(unknown)}; it maps {', '.join(mapping)}"
        )
    for sample in samples:
        if sample.label is not None:
            sample.label = mapping[sample.label]


def compile_subject_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise UsageError(f"bad --subject-pattern {pattern!r}: {error}") from None


def subject_from_name(name: str, pattern: re.Pattern) -> str | None:
    """The subject id in a file name: the regex's first group (or whole match)."""
    match = pattern.search(name)
    if not match:
        return None
    return match.group(1) if pattern.groups else match.group(0)


def apply_subject_pattern(samples: list[Sample], pattern: str, root: str) -> None:
    """Set each sample's subject from its file name (then its relative path); every file must match."""
    regex = compile_subject_pattern(pattern)
    misses = []
    for sample in samples:
        subject = subject_from_name(sample.name, regex)
        if subject is None:
            subject = subject_from_name(os.path.relpath(sample.path, root), regex)
        if subject is None:
            misses.append(sample.path)
        sample.subject = subject
    if misses:
        raise UsageError(
            f"--subject-pattern {pattern!r} matches no subject in {len(misses)} file name(s), e.g. {misses[0]}"
        )


def class_names_of(samples: list[Sample]) -> list[str]:
    """The class names, in a stable (sorted) order; numeric labels sort as numbers."""
    labels = {s.label for s in samples if s.label is not None}
    return sorted(labels, key=lambda label: (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label))


def label_counts(samples: list[Sample]) -> Counter:
    return Counter(s.label for s in samples if s.label is not None)


def relative_path(path: str, root: str) -> str:
    """A sample's path as stored in a dataset: relative to the source root where possible."""
    if "#" in path and not os.path.isabs(path):
        return path
    try:
        relative = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if relative.startswith("..") else Path(relative).as_posix()
