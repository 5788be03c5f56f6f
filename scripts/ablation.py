"""What the engagement pipeline loses or gains, one change at a time, measured by subject-grouped cross-validation.

    python scripts/ablation.py [--work runs/ablation] [--threads 1] [--rows base,margin-0.2,...] [--jobs 2]

Every row is one `engage train engagement --cv 5 --no-final` run on WACV and DAiSEE (train and val) together,
with the meaning engage ships (on task vs off task), differing from the base row in one thing only: the crop,
alignment, resolution, colour, augmentation, the FER initialisation, the data or the sampling. The figures are
cross-fitted out-of-fold figures per data set (engage.crossval), with 95% CIs over subjects. The "pose cues"
row adds head-pose features from the detector's 5 landmarks to the base row's out-of-fold scores (a logistic
regression fitted fold by fold on the other folds) and trains nothing new. Runs that exist are reused, so an
interrupted ablation continues; the table goes to --work/ablation.json for scripts/results.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
ON_TASK_WACV = "0_disengaged=disengaged,1_partial=engaged,2_engaged=engaged"
ON_TASK_DAISEE = "0=disengaged,1=disengaged,2=engaged,3=engaged"
OLD_FER_COMMIT = "bf46be6"  # the previous fer: the same width-48 network, 40 epochs on the CPU (69.21% with flip)

# the base row: detector crops as the paper, fer's backbone, the default fine-tuning recipe on both data sets
BASE_FACES = "--detector mtcnn --no-face whole-image"
BASE_TRAIN = "--init fer --balance corpus,subject --epoch-size 2048 --epochs 12 --lr 0.01 --class-weights"

# name: (what changes, face options, training options); None keeps the base's
ROWS: dict[str, tuple[str, str | None, str | None]] = {
    "base": ("detector re-crop (MTCNN box), 48x48 gray, fer's backbone, flip + 4 px + 16 deg, 12 epochs", None, None),
    "own-crop": ("the data sets' own crops, resized (no detector)", "--no-detect", None),
    "margin-0.2": ("detector box grown by 20% each side, kept inside the image", f"{BASE_FACES} --margin 0.2", None),
    "margin-0.2-pad": (
        "grown by 20%, padded at the edge (same face scale everywhere)",
        f"{BASE_FACES} --margin 0.2 --border pad",
        None,
    ),
    "context-0.5": ("head and shoulders: grown by 50%, padded", f"{BASE_FACES} --margin 0.5 --border pad", None),
    "align": ("turned upright on the eyes (detector landmarks)", f"{BASE_FACES} --align", None),
    "size-64": ("64x64 instead of 48x48", f"{BASE_FACES} --size 64", None),
    "colour": ("RGB instead of gray (fer's first filters copied to each channel)", f"{BASE_FACES} --color", None),
    "pose": ("+ head pose from the 5 landmarks (roll, yaw, pitch), stacked on the base row's scores", None, None),
    "no-augment": ("no augmentation", None, BASE_TRAIN + " --shift 0 --rotate 0"),
    "strong-augment": ("+ zoom 20% and random erasing", None, BASE_TRAIN + " --scale 0.2 --erase 0.5"),
    "scratch": (
        "no FER initialisation (the same network from scratch, lr 0.05)",
        None,
        BASE_TRAIN.replace("--init fer ", "").replace("--lr 0.01", "--lr 0.05") + " --width 48",
    ),
    "freeze-2": ("fer's first two conv blocks kept fixed", None, BASE_TRAIN + " --freeze 2"),
    "old-fer": (
        "initialised from the previous fer (40 CPU epochs, 69.2% on FER2013 val)",
        None,
        BASE_TRAIN.replace("--init fer", "--init {old_fer}"),
    ),
    "no-balance": (
        "faces drawn uniformly (no data set / subject balance)",
        None,
        BASE_TRAIN.replace("--balance corpus,subject", "--balance none"),
    ),
    "long": ("24 epochs instead of 12", None, BASE_TRAIN.replace("--epochs 12", "--epochs 24")),
    # the base row again with other random seeds (initial head, sampling, augmentation): how far rows move by chance
    "seed-1": ("the base row, seed 1 (run-to-run spread)", None, BASE_TRAIN + " --seed 1"),
    "seed-2": ("the base row, seed 2 (run-to-run spread)", None, BASE_TRAIN + " --seed 2"),
}


# the row whose recipe ships as `engagement` (scripts/results.py trains its final model and reports it)
SHIPPED_ROW = "base"


def row_recipe(name: str) -> tuple[str, str]:
    """(face options, training options) of a row."""
    _, faces, training = ROWS[name]
    return faces or BASE_FACES, training or BASE_TRAIN


SHIPPED_FACES, SHIPPED_TRAIN = row_recipe(SHIPPED_ROW) if SHIPPED_ROW != "pose" else (BASE_FACES, BASE_TRAIN)


def face_files(work: str, faces: str) -> tuple[list[str], list[str]]:
    """The three dataset files for one set of face options, and the commands that make them."""
    tag = "-".join(part.lstrip("-") for part in shlex.split(faces)) or "plain"
    folder = os.path.join(work, "data", tag)
    sources = [
        ("wacv", f"{SHARED}/engagement/wacv/labels.csv --label-map {ON_TASK_WACV} --corpus wacv"),
        (
            "daisee_train",
            f"{SHARED}/engagement/daisee/train/labels.csv --label-column engagement "
            f"--label-map {ON_TASK_DAISEE} --corpus daisee",
        ),
        (
            "daisee_val",
            f"{SHARED}/engagement/daisee/val/labels.csv --label-column engagement "
            f"--label-map {ON_TASK_DAISEE} --corpus daisee",
        ),
    ]
    paths, commands = [], []
    for name, source in sources:
        path = os.path.join(folder, f"{name}.npz")
        paths.append(path)
        commands.append(f"engage preprocess {source} {faces} --out {path}")
    return paths, commands


def shown(command: str) -> str:
    return command.replace(REPO + os.sep, "").replace(SHARED, "../shared/data")


def run(command: str) -> None:
    args = shlex.split(command)
    args = [sys.executable, "-m", "engage.cli", *args[1:]] if args[0] == "engage" else args
    print(f"$ {shown(command)}", flush=True)
    result = subprocess.run(args, cwd=REPO, stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"ablation: step failed ({result.returncode}): {shown(command)}")


def row_commands(work: str, name: str, threads: int, old_fer: str) -> tuple[list[str], str, str]:
    """(preprocess commands, the training command, its output folder) of one row."""
    _, faces, training = ROWS[name]
    paths, preprocess = face_files(work, faces or BASE_FACES)
    out = os.path.join(work, name)
    data = " ".join(f"--data {path}" for path in paths)
    training = (training or BASE_TRAIN).format(old_fer=old_fer)
    command = (
        f"engage train engagement {data} {training} --cv 5 --no-final"
        + (f" --threads {threads}" if threads else "")
        + f" --out {out}"
    )
    return preprocess, command, out


def old_fer_file(work: str) -> str:
    """The previous shipped fer, taken from the repository's history (for the 'old-fer' row)."""
    path = os.path.join(work, "fer-previous.safetensors")
    if not os.path.exists(path):
        blob = subprocess.run(
            ["git", "show", f"{OLD_FER_COMMIT}:src/engage/weights/fer.safetensors"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        with open(path + ".tmp", "wb") as handle:
            handle.write(blob)
        os.replace(path + ".tmp", path)
    return path


def pose_features(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Head-pose cues from 5 landmarks: roll (eye line angle), yaw (nose off the eyes' midline, in eye
    distances), pitch (nose between eyes and mouth), eye distance and eye height relative to the crop box.
    Faces without landmarks get zeros and a flag."""
    eyes_a, eyes_b, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    mouth = (landmarks[:, 3] + landmarks[:, 4]) / 2
    eye_mid = (eyes_a + eyes_b) / 2
    eye_distance = np.linalg.norm(eyes_b - eyes_a, axis=1) + 1e-3
    roll = np.arctan2(eyes_b[:, 1] - eyes_a[:, 1], eyes_b[:, 0] - eyes_a[:, 0])
    yaw = (nose[:, 0] - eye_mid[:, 0]) / eye_distance
    pitch = (nose[:, 1] - eye_mid[:, 1]) / (np.linalg.norm(mouth - eye_mid, axis=1) + 1e-3)
    width = np.maximum(boxes[:, 2], 1)
    features = np.stack([roll, yaw, pitch, eye_distance / width, (eye_mid[:, 1] - boxes[:, 1]) / width], axis=1)
    missing = ~np.isfinite(features).all(axis=1)
    features[missing] = 0.0
    return np.concatenate([features, missing[:, None].astype(float)], axis=1)


def pose_row(work: str, n_boot: int = 1000) -> dict:
    """The base row's out-of-fold scores plus head-pose features, stacked fold by fold (no new training)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from engage.data.dataset import FaceDataset, concatenate
    from engage.models.decision import Decision, best_threshold
    from engage.training.crossval import fold_report, group_report

    paths, _ = face_files(work, BASE_FACES)
    datasets = [FaceDataset.load(p) for p in paths]
    data = concatenate(datasets, paths)
    file_of = np.concatenate([np.full(len(d), i) for i, d in enumerate(datasets)])
    with np.load(os.path.join(work, "base", "oof.npz")) as stored:
        calibrated, fold_of, labels = stored["calibrated"], stored["fold"], stored["labels"]
        if not np.array_equal(labels, data.labels):
            raise SystemExit("ablation: the base row's out-of-fold file does not match its data; re-run the base row")
    logit = np.log(np.clip(calibrated[:, 1], 1e-6, 1)) - np.log(np.clip(calibrated[:, 0], 1e-6, 1))
    features = np.concatenate([logit[:, None], pose_features(data.landmarks, data.boxes.astype(float))], axis=1)
    decision = Decision.for_classes(data.class_names)
    stacked, predicted = np.zeros_like(calibrated), np.zeros(len(data), np.int64)
    weights = np.array([1.0 / np.sum(data.corpus == c) for c in data.corpus])
    for fold in np.unique(fold_of):
        test, rest = fold_of == fold, fold_of != fold
        scaler = StandardScaler().fit(features[rest])
        model = LogisticRegression(C=1.0, max_iter=2000).fit(
            scaler.transform(features[rest]), labels[rest], sample_weight=weights[rest]
        )
        fitted = model.predict_proba(scaler.transform(features[rest]))[:, 1]
        names = data.corpus[rest]
        threshold = best_threshold(
            [labels[rest][names == n] for n in np.unique(names)], [fitted[names == n] for n in np.unique(names)]
        )
        p = model.predict_proba(scaler.transform(features[test]))[:, 1]
        stacked[test] = np.stack([1 - p, p], axis=1)
        predicted[test] = (p >= threshold).astype(int)
    groups = {name: data.corpus == name for name in data.corpora}
    groups["daisee: daisee_val.npz"] = file_of == 2  # as engage.crossval names a file of a data set in two files
    return {
        "cross_fitted": {
            name: group_report(labels[m], stacked[m], predicted[m], data.subjects[m], decision, n_boot)
            for name, m in groups.items()
        },
        "cross_fitted_per_fold": {
            name: fold_report(labels, stacked, predicted, fold_of, m, len(np.unique(fold_of)), decision)
            for name, m in groups.items()
        },
    }


def trained_on(out: str) -> str:
    """Where a row's folds were trained ('cuda, fp32' or 'cpu, fp32'), from the first fold's config."""
    with open(os.path.join(out, "fold1", "config.json")) as handle:
        config = json.load(handle).get("train_config", {})
    device = config.get("device", "auto")
    device = "cpu" if device == "auto" else device  # 'auto' rows ran where PyTorch saw no GPU (this machine)
    return f"{device}, {'bf16' if config.get('bf16') else 'fp32'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "ablation"))
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per training run")
    parser.add_argument("--jobs", type=int, default=2, help="rows trained at once")
    args = parser.parse_args()
    if not os.path.isdir(SHARED):
        sys.exit(f"ablation: the real data is not at {SHARED}")
    work = os.path.abspath(args.work)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        sys.exit(f"ablation: unknown row(s) {', '.join(unknown)}; rows are: {', '.join(ROWS)}")
    old_fer = old_fer_file(work) if "old-fer" in names else ""
    plans = {name: row_commands(work, name, args.threads, old_fer) for name in names if name != "pose"}
    for name, (preprocess, _, _) in plans.items():  # data first, one at a time (each uses every core)
        for command, path in zip(preprocess, face_files(work, ROWS[name][1] or BASE_FACES)[0]):
            if not os.path.exists(path):
                run(command)

    def train(name: str) -> None:
        _, command, out = plans[name]
        if not os.path.exists(os.path.join(out, "crossval.json")):
            run(command)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(train, plans))
    table = {}
    for name in names:
        if name == "pose":
            if os.path.exists(os.path.join(work, "base", "oof.npz")):
                table[name] = {
                    "what": ROWS[name][0],
                    "command": "python scripts/ablation.py --rows base,pose",
                    **pose_row(work),
                }
            continue
        preprocess, command, out = plans[name]
        with open(os.path.join(out, "crossval.json")) as handle:
            report = json.load(handle)
        table[name] = {
            "what": ROWS[name][0],
            "command": shown(command),
            "preprocess": [shown(c) for c in preprocess],
            "cross_fitted": report["cross_fitted"],
            "cross_fitted_per_fold": report["cross_fitted_per_fold"],
            "chosen_epoch": report["chosen_epoch"],
            "device": trained_on(out),
            "epoch_curve_per_corpus": report["epoch_curve_per_corpus"],
        }
    path = os.path.join(work, "ablation.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(table, handle, indent=1)
    os.replace(path + ".tmp", path)
    for name, row in table.items():
        cells = [
            f"{group}: AUC {100 * r['auc']['mean']:.1f} BA {100 * r['balanced_accuracy']['mean']:.1f}"
            for group, r in row["cross_fitted_per_fold"].items()
        ]
        print(f"{name:16s} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
