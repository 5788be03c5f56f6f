"""engage train / evaluate / compare from the command line, on small real data, and their bad inputs."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import make_dataset, real_fer_faces, run_cli

from engage.data.dataset import FaceDataset
from engage.models.checkpoint import load_network, save_model
from engage.models.networks import build_model

BINARY = "2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged"


@pytest.fixture(scope="module")
def wacv_small(shared_data, tmp_path_factory):
    """A few real WACV faces of 6 subjects as a binary dataset with subject folds."""
    folder = tmp_path_factory.mktemp("wacv")
    wacv = shared_data / "engagement" / "wacv"
    with open(wacv / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    picked = []
    for subject in ["s01", "s04", "s05", "s06", "s10", "s11"]:
        for label in ("0_disengaged", "1_partial", "2_engaged"):
            picked += [r for r in rows if r["subject"] == subject and r["label"] == label][:12]
    with open(folder / "m.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "subject", "label"])
        writer.writerows([[str(wacv / r["path"]), r["subject"], r["label"]] for r in picked])
    out = folder / "wacv.npz"
    result = run_cli("preprocess", str(folder / "m.csv"), "--out", str(out), "--no-detect", "--label-map", BINARY)
    assert result.returncode == 0, result.stderr
    return out


def test_compare_prints_the_table_and_reuses_fold_predictions(tmp_path, wacv_small):
    args = [
        "compare",
        "--data",
        str(wacv_small),
        "--models",
        "compact:width=8,hog-svm",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "cmp"),
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "compact:width=8" in first.stdout and "hog-svm" in first.stdout and "paired" in first.stdout
    result = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert result["folds"] == 3 and result["subjects"] == 6 and set(result["models"]) == {"compact:width=8", "hog-svm"}
    [run_dir] = [p for p in (tmp_path / "cmp").glob("fold0-compact:width=8-*") if p.is_dir()]
    network, _ = load_network(str(run_dir / "best.safetensors"))
    assert network.head.in_features == 64  # width 8: the last block has 8 x 8 channels
    # the table's figures are those of the stored out-of-fold predictions: every face scored once, by the model
    # of the fold that held its student out, and each fold's AUC recomputed from them
    from sklearn.metrics import roc_auc_score

    from engage.training.compare import load_oof

    data = FaceDataset.load(str(wacv_small))
    oof, _, fold_of = load_oof(str(tmp_path / "cmp"))
    positive = data.class_names.index("engaged")
    for student in np.unique(data.subjects):
        assert len(np.unique(fold_of[data.subjects == student])) == 1
    per_fold = {}
    for label, row in result["models"].items():
        assert not np.isnan(oof[label]).any()
        per_fold[label] = [
            roc_auc_score(data.labels[fold_of == f] == positive, oof[label][fold_of == f, positive]) for f in range(3)
        ]
        assert row["auc"]["per_fold"] == pytest.approx(per_fold[label], abs=1e-6)
        assert row["auc"]["mean"] == pytest.approx(np.mean(per_fold[label]), abs=1e-6)
    # the paired comparison of the two best, recomputed: AUC difference on every face, t-test over the folds
    from scipy import stats

    paired = result["paired"]
    engaged = data.labels == positive
    assert paired["difference"] == pytest.approx(
        roc_auc_score(engaged, oof[paired["a"]][:, positive]) - roc_auc_score(engaged, oof[paired["b"]][:, positive]),
        abs=1e-6,
    )
    assert paired["p_paired_t_folds"] == pytest.approx(
        stats.ttest_rel(per_fold[paired["a"]], per_fold[paired["b"]]).pvalue, abs=1e-6
    )
    second = run_cli(*args)
    assert second.returncode == 0 and second.stdout == first.stdout  # every fold came from the cache
    assert "fold" not in second.stderr


def test_train_and_evaluate_from_the_cli(tmp_path, shared_data):
    classes = ("happy", "surprise")
    train_faces, train_labels = real_fer_faces(shared_data, classes, 60)
    val_faces, val_labels = real_fer_faces(shared_data, classes, 30, split="val")
    make_dataset(train_faces, train_labels, classes).save(str(tmp_path / "train.npz"))
    make_dataset(val_faces, val_labels, classes).save(str(tmp_path / "val.npz"))
    result = run_cli(
        "train",
        "fer",
        "--data",
        str(tmp_path / "train.npz"),
        "--val",
        str(tmp_path / "val.npz"),
        "--epochs",
        "2",
        "--scale",
        "0.1",
        "--erase",
        "0.25",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    assert "best epoch" in result.stdout and "epoch 2/2" in result.stderr
    recorded = json.load(open(tmp_path / "run" / "config.json"))
    recorded = recorded.get("train_config", recorded)
    assert (recorded["scale"], recorded["erase"], recorded["pad"]) == (0.1, 0.25, 4)  # resume needs no flags
    bad = run_cli("train", "fer", "--data", str(tmp_path / "train.npz"), "--erase", "2", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--erase" in bad.stderr and not (tmp_path / "bad").exists()
    history = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(history) == 2 and "val_accuracy" in history[0]
    resumed = run_cli("train", "resume", "--out", str(tmp_path / "run"), "--threads", "1")
    assert resumed.returncode == 0 and "resumed" in resumed.stderr  # nothing left to do, still clean
    best = (tmp_path / "run" / "best.safetensors").read_bytes()
    again = run_cli(
        "train",
        "fer",
        "--data",
        str(tmp_path / "train.npz"),
        "--val",
        str(tmp_path / "val.npz"),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    )
    assert again.returncode == 1 and "already holds a run" in again.stderr
    assert (tmp_path / "run" / "best.safetensors").read_bytes() == best  # nothing overwritten

    evaluated = run_cli(
        "evaluate",
        "--model",
        str(tmp_path / "run" / "best.safetensors"),
        "--data",
        str(tmp_path / "val.npz"),
        "--json",
        "--out",
        str(tmp_path / "eval"),
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["n"] == 60 and {"accuracy", "f1", "auc", "ci95", "ece", "per_class_recall"} <= set(report)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "confusion.png",
        "metrics.json",
        "predictions.csv",
        "reliability.png",
        "risk_coverage.png",
        "roc.png",
    ]
    predictions = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert len(predictions) == 60 and set(predictions[0]) >= {"path", "label", "p_happy", "p_surprise"}


def assert_one_line_error(result, *words):
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_model_file_problems_are_one_line(tmp_path):
    model = build_model("compact", 2)
    good = tmp_path / "good.safetensors"
    save_model(str(good), model, {"model": "compact", "num_classes": 2, "class_names": ["a", "b"], "model_args": {}})
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    make_dataset(faces, [0, 1, 0, 1, 0, 1], ["a", "b"]).save(str(tmp_path / "d.npz"))
    make_dataset(faces, [0, 1, 2, 0, 1, 2], ["a", "b", "zzz"]).save(str(tmp_path / "unknown.npz"))

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray(good.read_bytes())
    data[-100] ^= 0xFF  # one weight byte changed
    tampered.write_bytes(bytes(data))
    other = tmp_path / "other.safetensors"
    save_model(
        str(other),
        build_model("cnn", 2),
        {"model": "compact", "num_classes": 2, "class_names": ["a", "b"], "model_args": {}},
    )

    cases = [
        (truncated, "damaged"),
        (tampered, "checksum"),
        (other, "another architecture"),
        (tmp_path / "missing.safetensors", "neither a file nor a shipped model"),
    ]
    for path, words in cases:
        assert_one_line_error(run_cli("evaluate", "--model", str(path), "--data", str(tmp_path / "d.npz")), words)
    assert_one_line_error(
        run_cli("evaluate", "--model", str(good), "--data", str(tmp_path / "unknown.npz")), "zzz", "does not know"
    )
    assert load_network(str(good))[1]["class_names"] == ["a", "b"]


def test_training_data_problems_are_one_line(tmp_path):
    faces = np.random.default_rng(0).integers(0, 256, (8, 48, 48)).astype(np.uint8)
    make_dataset(faces, [0] * 8, ["a", "b"]).save(str(tmp_path / "one.npz"))
    make_dataset(faces, [0, 1] * 4, ["a", "b"], subjects=["s1"] * 8).save(str(tmp_path / "onesubject.npz"))
    out = tmp_path / "run"
    assert_one_line_error(
        run_cli("train", "fer", "--data", str(tmp_path / "one.npz"), "--split", "none", "--out", str(out)),
        "one class only",
    )
    assert_one_line_error(
        run_cli(
            "train", "engagement", "--data", str(tmp_path / "onesubject.npz"), "--split", "subject", "--out", str(out)
        ),
        "at least 2 subjects",
    )
    assert_one_line_error(run_cli("train", "resume", "--out", str(tmp_path / "never")), "nothing to resume")
    two = tmp_path / "two.npz"
    make_dataset(faces, [0, 1] * 4, ["a", "b"]).save(str(two))
    assert_one_line_error(
        run_cli("train", "fer", "--data", str(two), "--split", "none", "--device", "tpu", "--out", str(out)),
        "device must be auto, cpu or cuda",
    )
    if not torch.cuda.is_available():
        assert_one_line_error(
            run_cli("train", "fer", "--data", str(two), "--split", "none", "--device", "cuda", "--out", str(out)),
            "--device cuda: no CUDA device; use --device cpu",
        )
    assert not out.exists()  # nothing was written for a refused run
    assert_one_line_error(
        run_cli("compare", "--data", str(tmp_path / "one.npz"), "--models", "compact", "--out", str(out)),
        "at least two models",
    )
    assert_one_line_error(
        run_cli("compare", "--data", str(tmp_path / "one.npz"), "--models", "compact:depth=3,cnn", "--out", str(out)),
        "bad network arguments in 'compact:depth=3'",
    )


def test_fine_tuning_from_the_shipped_fer_model_by_name(tmp_path, wacv_small):
    result = run_cli(
        "train",
        "engagement",
        "--init",
        "fer",
        "--data",
        str(wacv_small),
        "--split",
        "subject",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "er"),
    )
    assert result.returncode == 0, result.stderr
    assert "weights/fer.safetensors: took 50 tensors (backbone), left 2 fresh (head.bias, head.weight)" in result.stderr
    missing = run_cli(
        "train", "engagement", "--init", "no-such-model", "--data", str(wacv_small), "--out", str(tmp_path / "x")
    )
    assert (
        missing.returncode == 1
        and "neither a file nor a shipped model (engagement, engagement3, fer)" in missing.stderr
    )


def test_the_fold_cache_is_keyed_by_everything_that_changes_it(tmp_path, wacv_small):
    from engage.training.compare import parse_model_specs, run_comparison

    dataset = FaceDataset.load(str(wacv_small))
    specs = parse_model_specs("compact:width=8,hog-svm")
    out = str(tmp_path / "cmp")
    logged = []
    first = run_comparison(dataset, specs, out, folds=3, train_overrides={"epochs": 1, "threads": 1}, log=logged.append)
    assert sum(line.startswith("fold") for line in logged) == 6  # 2 models x 3 folds trained
    logged.clear()
    again = run_comparison(dataset, specs, out, folds=3, train_overrides={"epochs": 1, "threads": 2}, log=logged.append)
    assert logged == [] and again["models"] == first["models"]  # threads change nothing: every fold reused
    run_comparison(dataset, specs, out, folds=3, train_overrides={"epochs": 2, "threads": 1}, log=logged.append)
    assert sum("compact" in line for line in logged if line.startswith("fold")) == 3  # another recipe: retrained
    assert not any("hog-svm" in line for line in logged)  # ... but HOG+SVM does not depend on epochs
    logged.clear()
    changed = dataset.subset(np.arange(len(dataset)))
    changed.labels = 1 - changed.labels  # other data, same file name
    run_comparison(changed, specs, out, folds=3, train_overrides={"epochs": 1, "threads": 1}, log=logged.append)
    assert sum(line.startswith("fold") for line in logged) == 6  # nothing stale was reused
    caches = list((tmp_path / "cmp").glob("fold0-hog-svm-*.npz"))
    assert len(caches) == 2  # one per data


def test_an_interrupted_fold_continues_its_training(tmp_path, wacv_small, monkeypatch):
    import engage.training.loop
    from engage.training.compare import parse_model_specs, run_comparison

    dataset = FaceDataset.load(str(wacv_small))
    specs = parse_model_specs("compact:width=8,hog-svm")
    overrides = {"epochs": 2, "threads": 1}
    straight = run_comparison(
        dataset, specs, str(tmp_path / "straight"), folds=3, train_overrides=overrides, log=lambda line: None
    )
    original = engage.training.loop.train

    class Killed(Exception):
        pass

    def killed_in_the_second_epoch(config, train_set, val, run_dir, resume=False, log=print, on_epoch=None):
        def stop(epoch, model):
            if epoch == 2 and "fold1" in run_dir:  # after epoch 1 was saved
                raise Killed()

        return original(config, train_set, val, run_dir, resume=resume, log=log, on_epoch=stop)

    monkeypatch.setattr(engage.training.loop, "train", killed_in_the_second_epoch)
    with pytest.raises(Killed):
        run_comparison(
            dataset, specs, str(tmp_path / "killed"), folds=3, train_overrides=overrides, log=lambda line: None
        )
    monkeypatch.setattr(engage.training.loop, "train", original)
    logged = []
    resumed = run_comparison(
        dataset, specs, str(tmp_path / "killed"), folds=3, train_overrides=overrides, log=logged.append
    )
    assert any(
        line.strip().startswith("resumed") and "fold1-compact" in line and "at epoch 2" in line for line in logged
    )  # the killed fold went on from its checkpoint, not from scratch
    assert resumed["models"] == straight["models"]
