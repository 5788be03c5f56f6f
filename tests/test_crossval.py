"""`engage train --cv`: subject folds in every data set, epochs, calibration and threshold chosen out of fold,
figures per data set, a final model that records its decision, and a killed run that continues."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from engage.data.dataset import FaceDataset, concatenate
from engage.errors import EngageError
from engage.models.checkpoint import load_network
from engage.training.crossval import corpus_folds, cross_validate
from engage.training.loop import TrainConfig

ON_TASK_WACV = "0_disengaged=disengaged,1_partial=engaged,2_engaged=engaged"
ON_TASK_DAISEE = "0=disengaged,1=disengaged,2=engaged,3=engaged"


def small_manifest(folder, root, rows, name):
    with open(folder / f"{name}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label"])
        writer.writerows([[str(root / r["path"]), r["subject"], r["label"]] for r in rows])
    return folder / f"{name}.csv"


@pytest.fixture(scope="module")
def two_corpora(shared_data, tmp_path_factory):
    """Real faces of 6 WACV and 6 DAiSEE students (on-task labels), as two dataset files of two corpora."""
    folder = tmp_path_factory.mktemp("corpora")
    wacv = shared_data / "engagement" / "wacv"
    rows = list(csv.DictReader(open(wacv / "labels.csv")))
    picked = []
    for subject in ["s01", "s04", "s05", "s08", "s10", "s11"]:
        for label, count in (("0_disengaged", 8), ("1_partial", 8), ("2_engaged", 8)):
            picked += [r for r in rows if r["subject"] == subject and r["label"] == label][:count]
    daisee = shared_data / "engagement" / "daisee" / "train"
    rows = list(csv.DictReader(open(daisee / "labels.csv")))
    subjects = ["411021", "310075", "310082", "210058", "210057", "111003"]  # each has off-task clips
    chosen = []
    for subject in subjects:
        mine = [r for r in rows if r["subject"] == subject]
        chosen += [r for r in mine if int(r["engagement"]) < 2][:5] + [r for r in mine if int(r["engagement"]) >= 2][
            :15
        ]
    for r in chosen:
        r["label"] = r["engagement"]
    paths = []
    for name, manifest, label_map in (
        ("wacv", small_manifest(folder, wacv, picked, "wacv"), ON_TASK_WACV),
        ("daisee", small_manifest(folder, daisee, chosen, "daisee"), ON_TASK_DAISEE),
    ):
        out = folder / f"{name}.npz"
        result = run_cli(
            "preprocess", str(manifest), "--no-detect", "--label-map", label_map, "--corpus", name, "--out", str(out)
        )
        assert result.returncode == 0, result.stderr
        paths.append(str(out))
    return paths


def quick(**overrides):
    values = dict(
        task="engagement",
        model="compact",
        model_args={"width": 8},
        epochs=3,
        batch_size=16,
        lr=0.05,
        class_weights=True,
        balance="corpus,subject",
        epoch_size=96,
        threads=1,
        bf16=False,
        save_every_s=1e9,
    )
    values.update(overrides)
    return TrainConfig.from_recipe("default", **values)


def test_folds_hold_every_data_set_and_never_split_a_student(two_corpora):
    data = concatenate([FaceDataset.load(p) for p in two_corpora], two_corpora)
    assert set(data.corpus) == {"wacv", "daisee"} and all("/" in s for s in data.subjects)
    fold_of = corpus_folds(data, 3)
    for fold in range(3):
        for corpus in ("wacv", "daisee"):  # every fold holds 2 of each data set's 6 students
            assert len(set(data.subjects[(fold_of == fold) & (data.corpus == corpus)])) == 2
    for subject in set(data.subjects):
        assert len(set(fold_of[data.subjects == subject])) == 1


def test_cross_validation_reports_each_data_set_and_ships_its_decision(tmp_path, two_corpora):
    report = cross_validate(quick(), two_corpora, 3, str(tmp_path / "cv"), log=lambda line: None, n_boot=100)
    assert set(report["cross_fitted"]) == {"wacv", "daisee"}  # per data set, never pooled
    for name, row in report["cross_fitted"].items():
        assert row["n"] == (144 if name == "wacv" else 120) and row["subjects"] == 6
        assert row["ci95"]["auc"][0] <= row["auc"] <= row["ci95"]["auc"][1]
        assert {"balanced_accuracy", "ece", "f1", "accuracy"} <= set(row)
    assert report["chosen_epoch"] in (1, 2, 3) and set(report["epoch_curve"]) == {"1", "2", "3"}
    curve = report["epoch_curve"]
    assert curve[str(report["chosen_epoch"])] == max(curve.values())
    # p is calibrated for a balanced rate (both classes weighing the same), so the decision is at 0.5
    assert report["base_rate"] == 0.5 and report["threshold"] == 0.5 and report["calibration"]["base_rate"] == 0.5
    assert 0 < report["best_balanced_accuracy_threshold"] < 1
    for row in report["cross_fitted"].values():
        assert 0 <= row["ece"] <= 1 and 0 <= row["ece_own_rate"] <= 1
    _network, config = load_network(report["model"])
    assert config["decision"]["positive_class"] == "engaged"
    assert config["decision"]["threshold"] == pytest.approx(report["threshold"])
    assert config["calibration"] == report["calibration"] and config["epoch"] == report["chosen_epoch"]
    history = json.load(open(tmp_path / "cv" / "final" / "history.json"))
    assert len(history) == report["chosen_epoch"]  # the final run stopped at the chosen epoch
    with np.load(tmp_path / "cv" / "oof.npz") as oof:
        assert oof["calibrated"].shape == (264, 2) and set(oof["fold"]) == {0, 1, 2}
        assert np.allclose(oof["calibrated"].sum(axis=1), 1, atol=1e-5)


def test_a_killed_cross_validation_continues_to_the_same_result(tmp_path, two_corpora):
    straight = cross_validate(
        quick(epochs=2), two_corpora, 3, str(tmp_path / "straight"), log=lambda line: None, final=False, n_boot=50
    )

    class Killed(Exception):
        pass

    def kill_in_fold_two(line: str) -> None:
        if line.startswith("fold 2/3"):
            kill_in_fold_two.armed = True
        elif getattr(kill_in_fold_two, "armed", False) and line.startswith("epoch 1/2"):
            raise Killed()

    with pytest.raises(Killed):
        cross_validate(quick(epochs=2), two_corpora, 3, str(tmp_path / "killed"), log=kill_in_fold_two, final=False)
    assert (tmp_path / "killed" / "fold1" / "test-epoch002.npy").exists()
    assert not (tmp_path / "killed" / "fold2" / "test-epoch002.npy").exists()
    lines = []
    resumed = cross_validate(
        quick(epochs=2), two_corpora, 3, str(tmp_path / "killed"), log=lines.append, final=False, n_boot=50
    )
    assert any("fold 2/3" in line and "continuing" in line for line in lines)
    assert any(
        line.startswith("resumed") and "fold2" in line and "at epoch 2" in line for line in lines
    )  # not restarted
    assert resumed["cross_fitted"] == straight["cross_fitted"]
    for name in ("fold1", "fold2", "fold3"):
        a = load_network(str(tmp_path / "straight" / name / "last.safetensors"))[0].state_dict()
        b = load_network(str(tmp_path / "killed" / name / "last.safetensors"))[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    # the same folder with another recipe is refused, so results are never mixed
    with pytest.raises(EngageError, match="another recipe"):
        cross_validate(quick(epochs=2, lr=0.01), two_corpora, 3, str(tmp_path / "killed"), log=lambda line: None)


def test_cross_validation_from_the_command_line(tmp_path, two_corpora):
    result = run_cli(
        "train",
        "engagement",
        "--data",
        two_corpora[0],
        "--data",
        two_corpora[1],
        "--cv",
        "3",
        "--width",
        "8",
        "--epochs",
        "2",
        "--epoch-size",
        "64",
        "--balance",
        "corpus,subject",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "cv"),
    )
    assert result.returncode == 0, result.stderr
    assert "wacv" in result.stdout and "daisee" in result.stdout and "threshold" in result.stdout
    assert (tmp_path / "cv" / "model.safetensors").exists() and (tmp_path / "cv" / "crossval.json").exists()
    bad = run_cli(
        "train",
        "engagement",
        "--data",
        two_corpora[0],
        "--val",
        two_corpora[1],
        "--cv",
        "3",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "--cv" in bad.stderr


def test_a_run_is_known_by_the_bytes_of_its_initial_model_not_its_path(tmp_path):
    import shutil

    from engage.models.loading import resolve_model
    from engage.training.crossval import run_key

    fer = resolve_model("fer")
    moved = tmp_path / "fer-copy.safetensors"
    shutil.copy(fer, moved)
    index = np.arange(10)
    assert run_key(quick(init=fer), "data", index, "fold 1/5") == run_key(
        quick(init=str(moved)), "data", index, "fold 1/5"
    )
    changed = bytearray(moved.read_bytes())
    changed[-10] ^= 1
    moved.write_bytes(bytes(changed))
    assert run_key(quick(init=fer), "data", index, "fold 1/5") != run_key(
        quick(init=str(moved)), "data", index, "fold 1/5"
    )
    assert run_key(quick(), "data", index, "fold 1/5") != run_key(quick(), "data", index + 1, "fold 1/5")
    assert run_key(quick(), "data", index, "fold 1/5") == run_key(quick(threads=2), "data", index, "fold 1/5")


def test_each_folds_choices_ignore_that_fold():
    """The cross-fitted choices of fold k come from the other folds only: changing fold k's predictions as much as
    one likes changes nothing of what is chosen for it."""
    from engage.models.decision import Decision
    from engage.training.crossval import _choose

    rng = np.random.default_rng(0)
    n = 600
    labels = (rng.random(n) < 0.8).astype(int)
    corpus = np.array(["a", "b"] * (n // 2))
    fold_of = np.arange(n) % 3
    oof = {}
    for epoch in (1, 2, 3):
        p = np.clip(0.5 + (labels - 0.5) * 0.1 * epoch + rng.normal(0, 0.3, n), 0.01, 0.99)
        oof[epoch] = np.stack([1 - p, p], axis=1)
    decision = Decision.for_classes(["disengaged", "engaged"])
    held_out = fold_of == 0
    before = _choose(labels, oof, corpus, ~held_out, decision, fold_of)
    for epoch in oof:  # fold 0's predictions scrambled: its own choices must not move
        oof[epoch][held_out] = oof[epoch][held_out][::-1]
    after = _choose(labels, oof, corpus, ~held_out, decision, fold_of)
    assert before["epoch"] == after["epoch"] and before["threshold"] == after["threshold"]
    assert before["calibration"] == after["calibration"]
    everyone = _choose(labels, oof, corpus, np.ones(n, bool), decision, fold_of)
    assert everyone["calibration"] != after["calibration"]  # ... while choices made on every fold do move


def test_a_fold_cannot_be_resumed_alone_on_every_face(tmp_path, two_corpora):
    from engage.errors import EngageError
    from engage.training.loop import resume_training

    cross_validate(quick(epochs=1), two_corpora, 3, str(tmp_path / "cv"), log=lambda line: None, final=False, n_boot=20)
    with pytest.raises(EngageError, match="one fold of a cross-validation"):
        resume_training(str(tmp_path / "cv" / "fold1"), log=lambda line: None)
