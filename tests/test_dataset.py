import os

import numpy as np
import pytest

from engage.data.dataset import FaceDataset
from engage.errors import EngageError


def tiny_dataset(n=6):
    rng = np.random.default_rng(0)
    return FaceDataset(
        faces=rng.integers(0, 256, (n, 48, 48)).astype(np.uint8),
        labels=np.arange(n) % 2,
        class_names=["disengaged", "engaged"],
        subjects=np.array([f"s{i % 3}" for i in range(n)]),
        paths=np.array([f"img{i}.png" for i in range(n)]),
        boxes=np.zeros((n, 4), np.int32),
        det_conf=np.ones(n, np.float32),
        face_source=np.array(["detected"] * n),
        split=np.array([""] * n),
        fold=np.full(n, -1, np.int16),
        meta={"settings": {"detector": "mtcnn", "normalize": "paper"}},
    )


def test_round_trip_without_pickle(tmp_path):
    dataset = tiny_dataset()
    path = tmp_path / "d.npz"
    dataset.save(str(path))
    loaded = FaceDataset.load(str(path))
    assert np.array_equal(loaded.faces, dataset.faces) and np.array_equal(loaded.labels, dataset.labels)
    assert loaded.class_names == ["disengaged", "engaged"] and list(loaded.subjects) == list(dataset.subjects)
    assert loaded.settings.normalize == "paper"
    normalised = loaded.normalized()
    assert np.allclose(np.linalg.norm(normalised.reshape(len(loaded), -1), axis=1), 100, atol=0.01)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []
    assert loaded.subset(loaded.labels == 1).class_counts() == {"disengaged": 0, "engaged": 3}


def test_damaged_or_foreign_file_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    tiny_dataset().save(str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EngageError, match="not an engage dataset or damaged"):
        FaceDataset.load(str(path))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(EngageError, match="not an engage dataset"):
        FaceDataset.load(str(tmp_path / "other.npz"))
    with pytest.raises(EngageError, match="no such dataset"):
        FaceDataset.load(str(tmp_path / "missing.npz"))


def test_mismatched_arrays_are_a_bug_not_a_dataset():
    dataset = tiny_dataset()
    with pytest.raises(ValueError, match="labels"):
        FaceDataset(
            dataset.faces,
            dataset.labels[:2],
            dataset.class_names,
            dataset.subjects,
            dataset.paths,
            dataset.boxes,
            dataset.det_conf,
            dataset.face_source,
            dataset.split,
            dataset.fold,
        )


def test_colour_faces_landmarks_and_corpus_travel_with_the_file(tmp_path):
    rng = np.random.default_rng(1)
    dataset = tiny_dataset()
    dataset.faces = rng.integers(0, 256, (6, 64, 64, 3)).astype(np.uint8)
    dataset.meta["settings"] = {"detector": "mtcnn", "normalize": "standard", "size": 64, "color": True}
    dataset.landmarks = rng.random((6, 5, 2)).astype(np.float32)
    dataset.corpus = np.array(["wacv"] * 6)
    dataset.save(str(tmp_path / "c.npz"))
    loaded = FaceDataset.load(str(tmp_path / "c.npz"))
    assert loaded.faces.shape == (6, 64, 64, 3) and np.array_equal(loaded.landmarks, dataset.landmarks)
    assert loaded.corpora == ["wacv"]
    # faces that do not have the shape their settings say are refused
    dataset.meta["settings"] = {"detector": "mtcnn", "normalize": "standard", "size": 48}
    dataset.save(str(tmp_path / "bad.npz"))
    with pytest.raises(EngageError, match="faces have shape \\(6, 64, 64, 3\\); its face settings say \\(N, 48, 48\\)"):
        FaceDataset.load(str(tmp_path / "bad.npz"))
    # a file written before data sets were named: its corpus is its file name
    old = tiny_dataset()
    old.corpus = np.array([""] * 6)
    path = tmp_path / "daisee_val.npz"
    old.save(str(path))
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files if k != "corpus"}
    np.savez_compressed(path, **arrays)
    assert FaceDataset.load(str(path)).corpora == ["daisee_val"]


def test_concatenating_data_sets_keeps_their_students_apart():
    from engage.data.dataset import concatenate

    a, b = tiny_dataset(), tiny_dataset(4)
    a.corpus, b.corpus = np.array(["wacv"] * 6), np.array(["daisee"] * 4)
    both = concatenate([a, b], ["a.npz", "b.npz"])
    assert len(both) == 10 and both.corpora == ["wacv", "daisee"]
    assert "wacv/s0" in both.subjects and "daisee/s0" in both.subjects  # the same id in two sets: two students
    c = tiny_dataset()
    c.corpus = np.array(["wacv"] * 6)
    same = concatenate([a, c], ["a.npz", "c.npz"])
    assert "s0" in same.subjects  # one corpus: ids as they are
    b.meta = {"settings": {"detector": None, "normalize": "paper"}}
    with pytest.raises(EngageError, match=r"b.npz: its faces were cut otherwise than a.npz.s"):
        concatenate([a, b], ["a.npz", "b.npz"])
    b.meta, b.class_names = dict(a.meta), ["bored", "engaged"]
    with pytest.raises(EngageError, match="classes"):
        concatenate([a, b], ["a.npz", "b.npz"])
