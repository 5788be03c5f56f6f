"""The training loop on real FER2013 faces: it learns, it resumes exactly, it refuses bad data."""

import numpy as np
import pytest
import torch
from conftest import make_dataset, real_fer_faces

from engage.errors import EngageError, UsageError
from engage.models.checkpoint import load_network, save_model
from engage.models.device import torch_device
from engage.models.networks import build_model, faces_to_tensor, predict_proba
from engage.training.augment import augment
from engage.training.loop import (
    TrainConfig,
    lr_at,
    resume_training,
    train,
)

CLASSES = ("happy", "surprise")


@pytest.fixture(scope="module")
def happy_vs_surprise(shared_data):
    train_faces, train_labels = real_fer_faces(shared_data, CLASSES, 300)
    test_faces, test_labels = real_fer_faces(shared_data, CLASSES, 100, split="val")
    return make_dataset(train_faces, train_labels, CLASSES), make_dataset(test_faces, test_labels, CLASSES)


def quick_config(**overrides):
    values = dict(epochs=4, batch_size=32, lr=0.05, threads=2, save_every_s=1e9, bf16=False)
    values.update(overrides)
    return TrainConfig.from_recipe("default", **values)


def test_short_real_training_beats_chance_on_held_out_faces(tmp_path, happy_vs_surprise, shared_data):
    train_set, val_set = happy_vs_surprise  # the validation faces pick the best epoch ...
    test_faces, test_labels = real_fer_faces(shared_data, CLASSES, 100, split="val", offset=100)  # ... these do not
    result = train(quick_config(epochs=6), train_set, val_set, str(tmp_path / "run"), log=lambda line: None)
    proba = predict_proba(result.model, faces_to_tensor(test_faces)).numpy()
    accuracy = float((proba.argmax(1) == test_labels).mean())
    # chance is 0.5 on these 200 held-out faces, which neither trained nor chose the epoch: 0.62 is 3.4 standard
    # deviations above it (a compact network from scratch on 600 faces learns slowly)
    assert accuracy > 0.62, accuracy
    assert len(result.history) == 6 and (tmp_path / "run" / "history.csv").exists()
    assert (tmp_path / "run" / "best.safetensors").exists() and (tmp_path / "run" / "config.json").exists()
    _reloaded, config = load_network(str(tmp_path / "run" / "best.safetensors"))
    assert config["class_names"] == list(CLASSES) and config["train_config"]["epochs"] == 6


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, happy_vs_surprise):
    train_set, val_set = happy_vs_surprise
    small = train_set.subset(np.r_[0:64, 300:364])
    data_path, val_path = tmp_path / "train.npz", tmp_path / "val.npz"
    small.save(str(data_path))
    val_set.subset(np.r_[0:20, 100:120]).save(str(val_path))
    config = quick_config(epochs=3, data=str(data_path), val=str(val_path))
    straight = train(
        config, small, val_set.subset(np.r_[0:20, 100:120]), str(tmp_path / "straight"), log=lambda line: None
    )

    class Killed(Exception):
        pass

    def kill_after_first_epoch(line):
        if line.startswith("epoch 1/3"):
            raise Killed()

    with pytest.raises(Killed):
        train(
            quick_config(epochs=3, data=str(data_path), val=str(val_path)),
            small,
            val_set.subset(np.r_[0:20, 100:120]),
            str(tmp_path / "killed"),
            log=kill_after_first_epoch,
        )
    resumed = resume_training(str(tmp_path / "killed"), log=lambda line: None)
    assert [row["train_loss"] for row in resumed.history] == [row["train_loss"] for row in straight.history]
    for (key, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key


def test_a_run_started_on_a_gpu_resumes_where_it_is_told(tmp_path, happy_vs_surprise):
    from engage.models.checkpoint import _write, read_file

    train_set, val_set = happy_vs_surprise
    small, val = train_set.subset(np.r_[0:64, 300:364]), val_set.subset(np.r_[0:20, 100:120])
    small.save(str(tmp_path / "train.npz"))
    val.save(str(tmp_path / "val.npz"))

    class Killed(Exception):
        pass

    def kill_after_first_epoch(line):
        if line.startswith("epoch 1/2"):
            raise Killed()

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(
            quick_config(epochs=2, data=str(tmp_path / "train.npz"), val=str(tmp_path / "val.npz")),
            small,
            val,
            str(run),
            log=kill_after_first_epoch,
        )
    tensors, meta = read_file(str(run / "last.safetensors"))
    meta["config"]["train_config"]["device"] = "cuda:0"  # as a GPU run's checkpoint records it
    _write(str(run / "last.safetensors"), tensors, meta)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device; use --device cpu"):
            resume_training(str(run), log=lambda line: None)
    resumed = resume_training(str(run), device="cpu", log=lambda line: None)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert read_file(str(run / "last.safetensors"))[1]["config"]["train_config"]["device"] == "cpu"


def test_fine_tuning_reports_what_it_took(tmp_path, happy_vs_surprise):
    train_set, val_set = happy_vs_surprise
    fer = build_model("compact", 7)
    save_model(
        str(tmp_path / "fer.safetensors"),
        fer,
        {
            "model": "compact",
            "num_classes": 7,
            "class_names": list("abcdefg"),
            "model_args": {},
            "face_settings": {"normalize": "standard"},
        },
    )
    lines = []
    train(
        quick_config(epochs=1, init=str(tmp_path / "fer.safetensors")),
        train_set,
        val_set,
        str(tmp_path / "er"),
        log=lines.append,
    )
    assert any("took" in line and "left 2 fresh (head.bias, head.weight)" in line for line in lines)
    vgg_init = quick_config(epochs=1, model="vgg", init=str(tmp_path / "fer.safetensors"))
    with pytest.raises(EngageError, match="is a 'compact' network"):
        train(vgg_init, train_set, val_set, str(tmp_path / "bad"), log=lambda line: None)


def test_bad_training_data_is_refused(tmp_path, happy_vs_surprise):
    train_set, val_set = happy_vs_surprise
    one_class = train_set.subset(train_set.labels == 0)
    with pytest.raises(EngageError, match="one class only \\(happy\\)"):
        train(quick_config(), one_class, val_set, str(tmp_path / "a"), log=lambda line: None)
    with pytest.raises(EngageError, match="validation split is empty"):
        train(
            quick_config(),
            train_set,
            val_set.subset(np.zeros(len(val_set), bool)),
            str(tmp_path / "b"),
            log=lambda line: None,
        )
    with pytest.raises(EngageError, match="training split is empty"):
        train(
            quick_config(),
            train_set.subset(np.zeros(len(train_set), bool)),
            val_set,
            str(tmp_path / "c"),
            log=lambda line: None,
        )


def test_paper_schedule_and_augmentation():
    paper = TrainConfig.from_recipe("paper")
    assert (paper.lr, paper.batch_size, paper.epochs, paper.schedule) == (0.02, 32, 20, "step")
    assert lr_at(paper, 0, 10_000) == 0.02 and lr_at(paper, 499, 10_000) == 0.02
    assert lr_at(paper, 500, 10_000) == pytest.approx(0.016) and lr_at(paper, 1000, 10_000) == pytest.approx(0.0128)
    default = TrainConfig.from_recipe("default", lr=0.1)
    assert (
        lr_at(default, 10_000 - 1, 10_000) < 1e-5
        and max(lr_at(default, s, 10_000) for s in range(0, 10_000, 50)) <= 0.1
    )
    batch = torch.rand(16, 1, 48, 48)
    generator = torch.Generator().manual_seed(0)
    same = augment(batch, generator, flip=False, pad=0, rotate=0)
    assert torch.equal(same, batch)
    moved = augment(batch, torch.Generator().manual_seed(0), flip=True, pad=4, rotate=16)
    assert moved.shape == batch.shape and not torch.equal(moved, batch)
    again = augment(batch, torch.Generator().manual_seed(0), flip=True, pad=4, rotate=16)
    assert torch.equal(moved, again)  # seeded: a resumed run sees the same augmentations


def test_training_device_is_chosen_and_checked():
    assert torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "gpu", "cuda:x"):
        with pytest.raises(UsageError, match="device must be auto, cpu or cuda"):
            TrainConfig.from_recipe("default", device=bad).validate()
    # the augmentations draw on the generator's device and keep the batch there
    batch = torch.rand(8, 1, 48, 48)
    moved = augment(batch, torch.Generator("cpu").manual_seed(0), True, 8, 16, 0.2, 0.5)
    assert moved.device == batch.device and moved.shape == batch.shape and not torch.equal(moved, batch)


def test_zoom_and_random_erasing():
    ones = torch.ones(2000, 1, 48, 48)
    erased = augment(ones, torch.Generator().manual_seed(0), flip=False, pad=0, rotate=0, erase=0.5)
    blanked = (erased == 0).float().mean(dim=(1, 2, 3))
    assert 0.45 < (blanked > 0).float().mean() < 0.55  # about half the faces lose a rectangle
    assert 0.01 < blanked[blanked > 0].min() and blanked.max() <= 0.2 + 1e-6  # of 2-20% of the face
    assert set(erased.unique().tolist()) == {0.0, 1.0}  # nothing else changes
    # the blanked pixels form one rectangle: their rows and columns span exactly their count
    rows, cols = (
        (erased[0, 0] == 0).nonzero(as_tuple=True) if blanked[0] > 0 else (erased[1, 0] == 0).nonzero(as_tuple=True)
    )
    assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == len(rows)
    zoomed = augment(ones, torch.Generator().manual_seed(0), flip=False, pad=0, rotate=0, scale=0.2)
    border = zoomed.mean(dim=(1, 2, 3)) < 0.999  # zooming out leaves an empty border, zooming in does not
    assert 0.4 < border.float().mean() < 0.6
    assert zoomed[border].mean(dim=(1, 2, 3)).min() > 0.8**2 * 0.9  # never smaller than 80%
    # without zoom or erasing the random stream is unchanged, so older runs resume as they were
    batch = torch.rand(16, 1, 48, 48)
    assert torch.equal(
        augment(batch, torch.Generator().manual_seed(0), True, 4, 16),
        augment(batch, torch.Generator().manual_seed(0), True, 4, 16, 0.0, 0.0),
    )
    with pytest.raises(UsageError, match="augmentation"):
        TrainConfig.from_recipe("default", erase=1.5).validate()


def test_validation_faces_come_from_the_sources_split(tmp_path):
    from engage.training.loop import split_datasets

    faces = np.zeros((6, 48, 48), np.uint8)
    data = make_dataset(faces, [0, 1, 0, 1, 0, 1], ["a", "b"])
    data.split = np.array(["Training"] * 4 + ["PublicTest"] * 2)  # fer2013.csv's Usage
    data.save(str(tmp_path / "fer.npz"))
    train_set, val_set = split_datasets(TrainConfig(data=str(tmp_path / "fer.npz")))
    assert (len(train_set), len(val_set)) == (4, 2)
    leaking = make_dataset(faces, [0, 1, 0, 1, 0, 1], ["a", "b"], subjects=["s1", "s1", "s2", "s2", "s1", "s3"])
    leaking.split = np.array(["train"] * 4 + ["val"] * 2)
    leaking.save(str(tmp_path / "leak.npz"))
    with pytest.raises(EngageError, match="s1 on more than one side"):
        split_datasets(TrainConfig(data=str(tmp_path / "leak.npz")))
    by_subject = make_dataset(faces, [0, 1, 0, 1, 0, 1], ["a", "b"], subjects=["s1", "s1", "s2", "s2", "s3", "s3"])
    by_subject.save(str(tmp_path / "subjects.npz"))
    train_set, val_set = split_datasets(TrainConfig(data=str(tmp_path / "subjects.npz"), val_fraction=0.3))
    assert not set(train_set.subjects) & set(val_set.subjects) and len(val_set) == 2


def test_best_epoch_selection_fails_loudly_instead_of_falling_back(tmp_path, happy_vs_surprise):
    from engage.training.loop import selection_score

    train_set, val_set = happy_vs_surprise
    small = train_set.subset(np.r_[0:32, 300:332])
    one_class = val_set.subset(np.arange(20))  # happy only
    with pytest.raises(EngageError, match=r"one class only \(happy\).*auc cannot pick"):
        train(quick_config(epochs=1, select="auc"), small, one_class, str(tmp_path / "one"), log=lambda line: None)
    assert not (tmp_path / "one").exists()  # refused before anything was written
    three = make_dataset(val_set.faces[:30], np.arange(30) % 3, ("a", "b", "c"))
    with pytest.raises(EngageError, match="needs a binary task"):
        train(
            quick_config(epochs=1, select="auc"),
            make_dataset(small.faces, np.arange(64) % 3, ("a", "b", "c")),
            three,
            str(tmp_path / "three"),
            log=lambda line: None,
        )
    with pytest.raises(UsageError, match="select must be one of"):
        quick_config(select="loss").validate()
    config = quick_config(select="auc")
    with pytest.raises(EngageError, match="validation auc is nan"):
        selection_score({"epoch": 3, "val_accuracy": 0.9, "val_auc": float("nan")}, config)
    with pytest.raises(EngageError, match="epoch 2 has no validation auc"):
        selection_score({"epoch": 2, "val_accuracy": 0.9}, config)
    assert selection_score({"epoch": 1, "val_auc": 0.75}, config) == 0.75


def test_balanced_sampling_gives_every_corpus_and_subject_the_same_weight():
    from engage.training.loop import epoch_order, sampling_weights

    # corpus a: 2 subjects with 90 and 10 faces; corpus b: 1 subject with 20 faces
    data = make_dataset(
        np.zeros((120, 48, 48), np.uint8), np.arange(120) % 2, CLASSES, ["s1"] * 90 + ["s2"] * 10 + ["t1"] * 20
    )
    data.corpus = np.array(["a"] * 100 + ["b"] * 20)
    weights = sampling_weights(data, "corpus,subject")
    assert weights[:90].sum() == pytest.approx(0.25) and weights[90:100].sum() == pytest.approx(0.25)
    assert weights[100:].sum() == pytest.approx(0.5)
    order = epoch_order(quick_config(epoch_size=20000), len(data), 0, weights)
    assert len(order) == 20000 and abs(np.mean(order >= 100) - 0.5) < 0.02 and abs(np.mean(order >= 90) - 0.75) < 0.02
    assert np.array_equal(order, epoch_order(quick_config(epoch_size=20000), len(data), 0, weights))  # resumable
    plain = epoch_order(quick_config(), len(data), 0, None)
    assert sorted(plain.tolist()) == list(range(120))  # no balance: one pass over every face, as before
    assert sampling_weights(data, "corpus")[:100].sum() == pytest.approx(0.5)


def test_freezing_keeps_the_initialised_first_blocks_fixed(tmp_path, happy_vs_surprise):
    train_set, _val_set = happy_vs_surprise
    donor = build_model("compact", 2, width=8)
    save_model(
        str(tmp_path / "donor.safetensors"),
        donor,
        {
            "model": "compact",
            "num_classes": 2,
            "class_names": list(CLASSES),
            "model_args": {"width": 8},
            "face_settings": {"normalize": "standard"},
        },
    )
    config = quick_config(epochs=1, init=str(tmp_path / "donor.safetensors"), freeze=2, model_args={"width": 8})
    result = train(config, train_set.subset(np.r_[0:64, 300:364]), None, str(tmp_path / "run"), log=lambda line: None)
    before, after = donor.state_dict(), result.model.state_dict()
    for key in ("features.0.weight", "features.1.running_mean", "features.11.weight"):  # blocks 1 and 2
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["features.16.weight"], after["features.16.weight"])  # block 3 learnt
    with pytest.raises(UsageError, match="--freeze"):
        quick_config(freeze=1).validate()
