"""Subject-wise splits: no student on both sides of a split, ever."""

from __future__ import annotations

from collections import Counter

import numpy as np

from engage.errors import EngageError, UsageError


def _known_subjects(subjects: np.ndarray) -> np.ndarray:
    subjects = np.asarray(subjects).astype(str)
    unknown = int(np.sum(subjects == ""))
    if unknown:
        raise UsageError(
            f"{unknown} image(s) have no subject id; a subject split needs one for every image "
            f"(a 'subject' manifest column or --subject-pattern)"
        )
    return subjects


def check_no_leak(subjects: np.ndarray, groups: np.ndarray) -> None:
    """Refuse a split in which a subject appears in more than one group (split or fold)."""
    subjects, groups = np.asarray(subjects).astype(str), np.asarray(groups).astype(str)
    seen: dict[str, set[str]] = {}
    for subject, group in zip(subjects, groups):
        if subject and group:
            seen.setdefault(subject, set()).add(group)
    leaking = sorted(s for s, where in seen.items() if len(where) > 1)
    if leaking:
        example = leaking[0]
        raise EngageError(
            f"refusing a split that puts subject(s) {', '.join(leaking[:5])}{' ...' if len(leaking) > 5 else ''} "
            f"on more than one side (e.g. {example} in {', '.join(sorted(seen[example]))}); split by subject instead"
        )


def subject_split(subjects: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Assign whole subjects to 'train' or 'val' so that about val_fraction of the images are in 'val'."""
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    subjects = _known_subjects(subjects)
    counts = Counter(subjects.tolist())
    if len(counts) < 2:
        raise EngageError(f"a subject split needs at least 2 subjects; this data has {len(counts)}")
    order = sorted(counts)
    np.random.default_rng(seed).shuffle(order)
    target = val_fraction * len(subjects)
    val_subjects: set[str] = set()
    taken = 0
    for subject in order:
        if taken >= target or len(val_subjects) == len(counts) - 1:
            break
        # take the subject if it brings the val share closer to the target
        if abs(taken + counts[subject] - target) <= abs(taken - target) or not val_subjects:
            val_subjects.add(subject)
            taken += counts[subject]
    split = np.where(np.isin(subjects, list(val_subjects)), "val", "train")
    check_no_leak(subjects, split)
    return split


def grouped_kfold(subjects: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index (0..folds-1) per image; each subject in exactly one fold, folds balanced by image count."""
    subjects = _known_subjects(subjects)
    counts = Counter(subjects.tolist())
    if folds < 2:
        raise UsageError(f"--folds must be at least 2, got {folds}")
    if folds > len(counts):
        raise EngageError(
            f"cannot make {folds} subject folds from {len(counts)} subjects; use --folds {len(counts)} or fewer"
        )
    rng = np.random.default_rng(seed)
    order = sorted(counts, key=lambda s: (-counts[s], rng.random()))
    sizes = np.zeros(folds, dtype=np.int64)
    fold_of: dict[str, int] = {}
    for subject in order:  # biggest subjects first, each into the currently smallest fold
        fold = int(np.argmin(sizes))
        fold_of[subject] = fold
        sizes[fold] += counts[subject]
    assignment = np.array([fold_of[s] for s in subjects], dtype=np.int16)
    check_no_leak(subjects, assignment.astype(str))
    return assignment
