"""Regenerate docs/RESULTS.md: every number in it comes from a command printed beside it.

    python scripts/results.py [--work runs/results] [--threads 1] [--out docs/RESULTS.md]

Steps (each is skipped when its output already exists in --work, so an interrupted run continues):
pre-process the data in ../shared/data; score the shipped `fer` on FER2013 val; cross-validate the shipped
engagement recipe on WACV and DAiSEE (the shipped model's figures); the ablation (scripts/ablation.py, its
own --work); the same recipe on one data set at a time, scored on the other (across data sets); the paper's
table on WACV with its binary split (engage compare); a 4-level DAiSEE frame model. Plots go to docs/results/.
On 2 CPU cores the whole run takes many hours (the ablation and the paper's `vgg` dominate).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ablation import (
    BASE_FACES,
    ROWS,
    SHIPPED_FACES,
    SHIPPED_ROW,
    SHIPPED_TRAIN,
    face_files,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
PAPER_BINARY = "2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged"
PAPER = {"cnn": (65.70, 71.01, 68.27), "vgg": (66.28, 70.41, 68.41), "er": (72.38, 73.90, 73.74)}
PAPER_EPOCHS = 12  # every network of the paper's table trains as long as the engagement recipe
# Gupta et al. 2016 (DAiSEE), engagement, 4 levels, their test split
DAISEE_BASELINES = [
    ("InceptionNet, frame level", 47.1),
    ("C3D, trained from scratch", 48.6),
    ("C3D, fine-tuned", 56.1),
    ("LRCN", 57.9),
]
TARGETS = [  # (what, data set group, metric, at least)
    ("WACV, on task vs off task", "wacv", "auc", 0.92),
    ("WACV, on task vs off task", "wacv", "balanced_accuracy", 0.85),
    ("DAiSEE val students, levels 2-3 vs 0-1", "daisee: daisee_val.npz", "auc", 0.72),
    ("DAiSEE val students, levels 2-3 vs 0-1", "daisee: daisee_val.npz", "balanced_accuracy", 0.65),
]
ECE_TARGET = 0.05


class Steps:
    def __init__(self, work: str):
        self.work = work

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def run(self, command: str, output: str, capture: str | None = None) -> str:
        """Run `engage ...` (or `python ...`) unless output exists; returns the command as written in the docs."""
        if not os.path.exists(output):
            print(f"$ {shown(command)}", flush=True)
            args = shlex.split(command)
            args = (
                [sys.executable, "-m", "engage.cli", *args[1:]] if args[0] == "engage" else [sys.executable, *args[1:]]
            )
            result = subprocess.run(args, cwd=REPO, text=True, stdout=subprocess.PIPE if capture else None)
            if result.returncode != 0:
                sys.exit(f"results: step failed ({result.returncode}): {shown(command)}")
            if capture:
                with open(capture + ".tmp", "w") as handle:
                    handle.write(result.stdout)
                os.replace(capture + ".tmp", capture)
        return shown(command)


def shown(command: str) -> str:
    return command.replace(REPO + os.sep, "").replace(SHARED, "../shared/data")


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def ci(report: dict, metric: str) -> str:
    low, high = report["ci95"][metric]
    return f"{pct(report[metric])} [{100 * low:.1f}, {100 * high:.1f}]"


def folds_ci(per_fold: dict, metric: str) -> str:
    """Mean over folds with its 95% t-interval, from crossval.json's cross_fitted_per_fold."""
    row = per_fold[metric]
    return f"{pct(row['mean'])} [{100 * row['ci95'][0]:.1f}, {100 * row['ci95'][1]:.1f}]"


def load_json(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def evaluate(steps: Steps, model: str, data: list[str] | str, name: str, extra: str = "") -> tuple[dict, str]:
    out = os.path.join(REPO, "docs", "results", name)
    data = [data] if isinstance(data, str) else data
    sources = " ".join(f"--data {d}" for d in data)
    command = steps.run(
        f"engage evaluate --model {model} {sources} {extra} --out {out}".replace("  ", " "),
        os.path.join(out, "metrics.json"),
    )
    return load_json(os.path.join(out, "metrics.json")), command


def prepare(steps: Steps, ablation: str) -> dict[str, str]:
    """Every dataset file, pre-processed as the shipped engagement model was (FER2013 as its own crops). The
    on-task files are the ablation's own, so the shipped row's cross-validation is shared with it."""
    data = {}
    os.makedirs(steps.path("data"), exist_ok=True)
    paths, commands = face_files(ablation, SHIPPED_FACES)
    for name, path, command in zip(("wacv", "daisee_train", "daisee_val"), paths, commands):
        data[name], data[name + "_cmd"] = path, steps.run(command, path)
    jobs = {
        "fer_train": f"{SHARED}/fer2013/train --no-detect",
        "fer_val": f"{SHARED}/fer2013/val --no-detect",
        # the paper's pipeline (detector crops, 48x48 gray) for its table and the 4-level model
        "wacv_paper": f"{SHARED}/engagement/wacv/labels.csv --label-map {PAPER_BINARY} --corpus wacv --folds 5 "
        f"{BASE_FACES}",
        "daisee4_train": f"{SHARED}/engagement/daisee/train/labels.csv --label-column engagement --corpus daisee "
        f"{BASE_FACES}",
        "daisee4_val": f"{SHARED}/engagement/daisee/val/labels.csv --label-column engagement --corpus daisee "
        f"{BASE_FACES}",
    }
    for name, source in jobs.items():
        data[name] = steps.path("data", f"{name}.npz")
        data[name + "_cmd"] = steps.run(f"engage preprocess {source} --out {data[name]}", data[name])
    return data


def curve_plot(path: str, curves: dict[str, dict[str, dict[str, float]]]) -> None:
    """Out-of-fold AUC after every epoch, per data set, for some rows of the ablation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for row, per_corpus in curves.items():
        for corpus, style in (("wacv", "-"), ("daisee", "--")):
            if corpus in per_corpus:
                epochs = sorted(per_corpus[corpus], key=int)
                axis.plot(
                    [int(e) for e in epochs],
                    [per_corpus[corpus][e] for e in epochs],
                    style,
                    marker=".",
                    label=f"{row}: {corpus}",
                )
    axis.set_xlabel("epoch")
    axis.set_ylabel("out-of-fold ROC AUC")
    axis.set_title("Training length: AUC after every epoch (5 subject folds)")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def oof_plots(folder: str, oof_path: str) -> list[str]:
    """Per data set: ROC and reliability diagram of the shipped recipe's cross-fitted predictions."""
    from engage.evaluation.metrics import save_plots
    from engage.models.decision import Decision

    written = []
    with np.load(oof_path) as stored:
        labels, corpus, calibrated = stored["labels"], stored["corpus"], stored["calibrated"]
        class_names = [str(c) for c in stored["class_names"]]
    for name in dict.fromkeys(corpus.tolist()):
        mine = corpus == name
        written += save_plots(
            os.path.join(folder, name),
            labels[mine],
            calibrated[mine],
            class_names,
            title=name,
            decision=Decision.for_classes(class_names),
        )
    return written


def roc_plot(path: str, labels: np.ndarray, oof: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(5, 5))
    for label, proba in oof.items():
        fpr, tpr, _ = roc_curve(labels, proba[:, 1])
        axis.plot(fpr, tpr, label=f"{label} (pooled AUC {roc_auc_score(labels, proba[:, 1]):.3f})")
    axis.plot([0, 1], [0, 1], "--", color="gray")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("WACV (paper's binary), 5 subject folds, out-of-fold")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def row_cells(
    per_fold: dict, groups: tuple[str, ...], metrics: tuple[str, ...] = ("auc", "balanced_accuracy")
) -> list[str]:
    cells = []
    for group in groups:
        row = per_fold.get(group)
        cells += [folds_ci(row, m) if row else "-" for m in metrics]
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=os.path.join(REPO, "runs", "results"), help="data and runs (not committed)")
    parser.add_argument("--ablation", default=os.path.join(REPO, "runs", "ablation"), help="the ablation's --work")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per training")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "RESULTS.md"))
    args = parser.parse_args()
    if not os.path.isdir(SHARED):
        sys.exit(f"results: the real data is not at {SHARED}")
    steps = Steps(os.path.abspath(args.work))
    figures = os.path.join(REPO, "docs", "results")
    os.makedirs(figures, exist_ok=True)
    threads = f" --threads {args.threads}" if args.threads else ""
    data = prepare(steps, os.path.abspath(args.ablation))
    ontask = [data["wacv"], data["daisee_train"], data["daisee_val"]]
    lines: list[str] = []
    add = lines.append

    # the shipped engagement recipe, cross-validated (its model is the shipped one): the ablation's row, with the
    # final model trained on every student
    shipped_dir = os.path.join(os.path.abspath(args.ablation), SHIPPED_ROW)
    shipped_cmd = steps.run(
        "engage train engagement " + " ".join(f"--data {d}" for d in ontask) + f" {SHIPPED_TRAIN} --cv 5{threads} "
        f"--out {shipped_dir}",
        os.path.join(shipped_dir, "model.safetensors"),
    )
    shipped = load_json(os.path.join(shipped_dir, "crossval.json"))
    oof_plots(os.path.join(figures, "engagement-cv"), os.path.join(shipped_dir, "oof.npz"))
    with open(os.path.join(REPO, "src", "engage", "weights", "engagement.json")) as handle:
        card = json.load(handle)
    # the ablation
    ablation_cmd = steps.run(
        f"python scripts/ablation.py --work {args.ablation}", os.path.join(args.ablation, "ablation.json")
    )
    ablation = load_json(os.path.join(args.ablation, "ablation.json"))
    curve_plot(
        os.path.join(figures, "training-length.png"),
        {row: ablation[row]["epoch_curve_per_corpus"] for row in ("base", "long") if row in ablation},
    )
    # across data sets: the same recipe on one data set, scored on the other
    one_set = SHIPPED_TRAIN.replace("--balance corpus,subject", "--balance subject")
    cross = {}
    for name, train_files, other, other_name in (
        ("wacv", [data["wacv"]], [data["daisee_train"], data["daisee_val"]], "daisee"),
        ("daisee", [data["daisee_train"], data["daisee_val"]], [data["wacv"]], "wacv"),
    ):
        run = steps.path("cross", name)
        command = steps.run(
            "engage train engagement "
            + " ".join(f"--data {d}" for d in train_files)
            + f" {one_set} --cv 5{threads} --out {run}",
            os.path.join(run, "crossval.json"),
        )
        report = load_json(os.path.join(run, "crossval.json"))
        scored, score_cmd = evaluate(
            steps, os.path.join(run, "model.safetensors"), other, f"cross-{name}-on-{other_name}"
        )
        cross[name] = {
            "cv": report["cross_fitted_per_fold"][name],
            "other": scored,
            "other_name": other_name,
            "commands": [command, score_cmd],
        }
    # the paper's table
    compare_dir = steps.path("compare")
    specs = "cnn,vgg,compact,compact:width=48,er:fer,hog-svm"
    compare_cmd = steps.run(
        f"engage compare --data {data['wacv_paper']} --models {specs} --folds 5 --epochs {PAPER_EPOCHS}"
        f"{threads} --fp32 --out {compare_dir}",
        os.path.join(compare_dir, "results.json"),
    )
    compared = load_json(os.path.join(compare_dir, "results.json"))
    from engage.data.dataset import FaceDataset
    from engage.models.decision import Decision
    from engage.training.compare import load_oof, paired_test

    wacv_paper = FaceDataset.load(data["wacv_paper"])
    oof, predicted, fold_of = load_oof(compare_dir)
    roc_plot(os.path.join(figures, "wacv-cv-roc.png"), wacv_paper.labels, oof)
    decision = Decision.for_classes(wacv_paper.class_names)
    er_label = next(label for label in compared["models"] if label.startswith("er"))
    baselines = [label for label in compared["models"] if label != er_label]
    best_baseline = max(baselines, key=lambda label: compared["models"][label]["auc"]["mean"])
    paired = {
        metric: paired_test(
            wacv_paper,
            fold_of,
            oof[er_label],
            oof[best_baseline],
            metric,
            5,
            predicted_a=predicted[er_label],
            predicted_b=predicted[best_baseline],
            decision=decision,
        )
        for metric in ("auc", "accuracy", "f1")
    }
    same = paired_test(wacv_paper, fold_of, oof[er_label], oof["compact:width=48"], "auc", 5, decision=decision)
    # the FER model; a 4-level DAiSEE frame model
    with open(os.path.join(REPO, "src", "engage", "weights", "fer.json")) as handle:
        fer_card = json.load(handle)
    fer, fer_cmd = evaluate(steps, "fer", data["fer_val"], "fer")
    daisee_run = steps.path("daisee4")
    daisee_train_cmd = steps.run(
        f"engage train engagement --init fer --data {data['daisee4_train']} --split subject --select macro_f1 "
        f"--balance subject --epoch-size 2048 --epochs 12 --lr 0.01{threads} --out {daisee_run}",
        os.path.join(daisee_run, "best.safetensors"),
    )
    daisee4, daisee4_cmd = evaluate(steps, os.path.join(daisee_run, "best.safetensors"), data["daisee4_val"], "daisee4")

    # ---- the document ----------------------------------------------------------------------------------------
    add("# Results")
    add("")
    add(
        "Every number here is produced by the command written beside it; `python scripts/results.py` regenerates this "
        "whole file (steps whose output exists are reused; the data comes from `../shared/data`, see its README). "
        "Plots are in [results/](results/). Percentages; 95% confidence intervals in brackets, from 1000 bootstrap "
        "resamples of whole students unless said otherwise. Training runs marked *cuda* were made with the same "
        "commands plus `--device cuda --fp32` on one lent H100 (fp32, so they compute what the CPU computes, up to "
        "the order of floating-point sums); the rest, and every evaluation, on 2 CPU cores."
    )
    add("")
    add(
        "Data preparation (the on-task files as the shipped engagement model cuts faces; the paper's table and the "
        "4-level model with the paper's detector crops):"
    )
    add("")
    add("```bash")
    for name in (
        "fer_train",
        "fer_val",
        "wacv",
        "daisee_train",
        "daisee_val",
        "wacv_paper",
        "daisee4_train",
        "daisee4_val",
    ):
        add(data[name + "_cmd"])
    add("```")
    add("")
    add("## 1. What `p_engaged` means")
    add("")
    add(
        "`p_engaged` is the probability that the student is **on task**: attending to the lesson, whether fully "
        "engaged or only partly. **Off task** is looking away, eyes closed, head down or on a hand, on the phone. "
        "Each data set's labels map to it so:"
    )
    add("")
    add("| data set | engaged (on task) | not engaged (off task) | faces | students | engaged share |")
    add("| --- | --- | --- | --- | --- | --- |")
    for name, on, off, group in (
        ("WACV (Kamath et al. 2016)", "`1_partial`, `2_engaged`", "`0_disengaged`", "wacv"),
        ("DAiSEE (Gupta et al. 2016), train + val", "levels 2-3", "levels 0-1", "daisee"),
    ):
        row = shipped["cross_fitted"][group]
        add(f"| {name} | {on} | {off} | {row['n']:,} | {row['subjects']} | {pct(row['positive_share'])}% |")
    add("")
    add(
        "The paper's stricter binary split (WACV `2_engaged` against the rest, 41% engaged) is used only for the "
        "comparison with the paper (section 5)."
    )
    add("")
    add("## 2. The shipped engagement model (`engagement`)")
    add("")
    add(
        f"The compact network (width 48) initialised from `fer`, fine-tuned on WACV and DAiSEE together: each epoch "
        f"draws {SHIPPED_TRAIN.split('--epoch-size ')[1].split()[0]} faces so that both data sets, and within each every "
        "student, weigh the same; the loss weighs the two classes by the inverse of their share among the drawn "
        "faces, so the rare off-task faces count as much as the on-task ones. Five folds of students in every data "
        "set; the number of epochs, the calibration (Platt scaling, both data sets weighing the same) and the "
        "decision threshold (best mean balanced accuracy over the data sets) are chosen on the out-of-fold "
        "predictions; the figures below are *cross-fitted*: each fold's students are scored with the epoch, "
        "calibration and threshold chosen on the other folds only. The shipped model is the same recipe trained on "
        "every student for the chosen number of epochs."
    )
    add("")
    add(f"`{shipped_cmd}`")
    add("")
    add(
        f"Chosen: {shipped['chosen_epoch']} epochs, threshold {shipped['threshold']:.3f}, calibration: log-odds x "
        f"{shipped['calibration']['scale']:.3f} {shipped['calibration']['bias'][1]:+.3f}. The shipped card records the "
        f"same (threshold {card['decision']['threshold']:.3f})."
    )
    add("")
    add(
        "Two readings of the same out-of-fold predictions: *folds* is the mean over the 5 folds of each fold's "
        "figure (each fold's students scored by one model, as the shipped model scores a researcher's students; "
        "95% t-interval over folds), the convention of the paper's table; *pooled* puts every fold's faces "
        "together (95% CI over students), which also counts the offsets between the 5 models."
    )
    add("")
    add(
        "| students | n | engaged | AUC (folds) | AUC (pooled) | bal. accuracy (folds) | bal. accuracy (pooled) | "
        "accuracy | F1 (engaged) | ECE | ECE before calibration |"
    )
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for group, row in shipped["cross_fitted"].items():
        raw, per_fold = shipped["uncalibrated_at_0.5"][group], shipped["cross_fitted_per_fold"][group]
        add(
            f"| {group} | {row['n']:,} | {pct(row['positive_share'])}% | {folds_ci(per_fold, 'auc')} | {ci(row, 'auc')} | "
            f"{folds_ci(per_fold, 'balanced_accuracy')} | {ci(row, 'balanced_accuracy')} | {ci(row, 'accuracy')} | "
            f"{ci(row, 'f1')} | {row['ece']:.3f} | {raw['ece']:.3f} |"
        )
    add("")
    add("Targets (subject-grouped, out of fold; judged on the folds reading, the pooled one beside it):")
    add("")
    add("| target | folds | pooled | met |")
    add("| --- | --- | --- | --- |")
    for what, group, metric, floor in TARGETS:
        row, per_fold = shipped["cross_fitted"][group], shipped["cross_fitted_per_fold"][group]
        met = per_fold[metric]["mean"] >= floor
        add(
            f"| {what}: {metric.replace('_', ' ')} >= {floor:.2f} | {folds_ci(per_fold, metric)} | {ci(row, metric)} | "
            f"{'yes' if met else '**no**'} |"
        )
    for group in ("wacv", "daisee"):
        ece = shipped["cross_fitted"][group]["ece"]
        add(f"| calibration on {group}: ECE <= {ECE_TARGET} | {ece:.3f} | {'yes' if ece <= ECE_TARGET else '**no**'} |")
    add("")
    add("ROC curves and reliability diagrams per data set: [results/engagement-cv/](results/engagement-cv/).")
    add("")
    add("## 3. What the pipeline loses or gains: ablation")
    add("")
    add(
        "One change at a time from the base row, each a full 5-fold cross-validation on WACV and DAiSEE together "
        "(on task vs off task), cross-fitted figures per data set: mean over the 5 folds with a 95% t-interval. "
        "DAiSEE val: its 19 official validation students, a subset of the DAiSEE column. Made by "
        f"`{ablation_cmd}`; the commands of every row are listed below the table."
    )
    add("")
    add(
        "| row | what changes | WACV AUC | WACV bal. acc. | DAiSEE AUC | DAiSEE bal. acc. | DAiSEE val AUC | DAiSEE val bal. acc. | epochs | trained on |"
    )
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row_name in ROWS:
        if row_name not in ablation:
            continue
        row = ablation[row_name]
        cells = row_cells(row["cross_fitted_per_fold"], ("wacv", "daisee", "daisee: daisee_val.npz"))
        marker = " (shipped)" if row_name == SHIPPED_ROW else ""
        add(
            f"| {row_name}{marker} | {row['what']} | " + " | ".join(cells) + f" | {row.get('chosen_epoch', '-')} | "
            f"{row.get('device', '-')} |"
        )
    seeds = [ablation[name]["cross_fitted_per_fold"] for name in ("base", "seed-1", "seed-2") if name in ablation]
    if len(seeds) > 1:
        add("")
        spread = "; ".join(
            f"{label} {min(100 * r[g][m]['mean'] for r in seeds):.1f}-{max(100 * r[g][m]['mean'] for r in seeds):.1f}"
            for label, g, m in (
                ("WACV AUC", "wacv", "auc"),
                ("WACV bal. acc.", "wacv", "balanced_accuracy"),
                ("DAiSEE AUC", "daisee", "auc"),
                ("DAiSEE val AUC", "daisee: daisee_val.npz", "auc"),
            )
        )
        add(
            f"**Run-to-run spread.** The base recipe with three seeds (base, seed-1, seed-2) gives {spread}: a row "
            "that moves less than that from the base row is not shown to differ from it."
        )
    missing = [row for row in ROWS if row not in ablation]
    if missing:
        add("")
        add(f"Not run: {', '.join(missing)}.")
    add("")
    add(
        "Training length: out-of-fold AUC after every epoch ([results/training-length.png](results/training-length.png))."
    )
    add("")
    add("![training length](results/training-length.png)")
    add("")
    add("Commands:")
    add("")
    add("```bash")
    add("# the faces of every row (each command once)")
    for command in dict.fromkeys(c for row in ablation.values() for c in row.get("preprocess", [])):
        add(command)
    for row_name, row in ablation.items():
        add(f"# {row_name}")
        add(row["command"])
    add("```")
    add("")
    add("## 4. Across data sets")
    add("")
    add(
        "The shipped recipe trained on one data set (5-fold cross-validation for its own students; then on all of "
        "them, and scored with its own threshold on every student of the other set), and on both (section 2)."
    )
    add("")
    add("| trained on | scored on WACV: AUC | bal. acc. | scored on DAiSEE: AUC | bal. acc. |")
    add("| --- | --- | --- | --- | --- |")
    wacv_only, daisee_only = cross["wacv"], cross["daisee"]
    add(
        f"| WACV | {folds_ci(wacv_only['cv'], 'auc')} (out of fold) | {folds_ci(wacv_only['cv'], 'balanced_accuracy')} | "
        f"{ci(wacv_only['other'], 'auc')} | {ci(wacv_only['other'], 'balanced_accuracy')} |"
    )
    add(
        f"| DAiSEE | {ci(daisee_only['other'], 'auc')} | {ci(daisee_only['other'], 'balanced_accuracy')} | "
        f"{folds_ci(daisee_only['cv'], 'auc')} (out of fold) | {folds_ci(daisee_only['cv'], 'balanced_accuracy')} |"
    )
    both_w, both_d = shipped["cross_fitted_per_fold"]["wacv"], shipped["cross_fitted_per_fold"]["daisee"]
    add(
        f"| both (shipped) | {folds_ci(both_w, 'auc')} (out of fold) | {folds_ci(both_w, 'balanced_accuracy')} | "
        f"{folds_ci(both_d, 'auc')} (out of fold) | {folds_ci(both_d, 'balanced_accuracy')} |"
    )
    add("")
    add(
        "Out of fold: mean over 5 folds, 95% t-interval. Across data sets: one model on every student of the other "
        "set, 95% CI over students; its threshold is the one its own cross-validation chose."
    )
    add("")
    for name in ("wacv", "daisee"):
        for command in cross[name]["commands"]:
            add(f"`{command}`  ")
    add("")
    add("## 5. The paper's table: WACV engagement, its binary split, 5 subject folds")
    add("")
    add(
        f"{compared['n']:,} faces of {compared['subjects']} students; `2_engaged` = engaged, `0_disengaged` and "
        "`1_partial` = not engaged (as the paper). Every student is in exactly one test fold; all models use the same "
        "folds; inside each training part a subject split picks the best epoch (and the SVM's C and gamma, by the same "
        "ROC AUC) and each model's threshold (best balanced accuracy on those validation students). Networks and the "
        f"SVM weigh the classes alike; every network trains {PAPER_EPOCHS} epochs. Mean over folds with a 95% "
        "t-interval; F1 is the engaged class's (as the paper)."
    )
    add("")
    add(f"`{compare_cmd}`")
    add("")
    add("| model | accuracy | F1 | AUC | paper (acc / F1 / AUC) |")
    add("| --- | --- | --- | --- | --- |")
    names = {
        "cnn": "CNN (paper's baseline)",
        "vgg": "VGG from scratch (paper's network)",
        "compact": "compact from scratch (width 32)",
        "compact:width=48": "compact from scratch (width 48, as `fer`)",
        "hog-svm": "HOG + SVM",
    }
    for label, row in compared["models"].items():
        cells = [
            f"{pct(row[m]['mean'])} [{100 * row[m]['ci95'][0]:.1f}, {100 * row[m]['ci95'][1]:.1f}]"
            for m in ("accuracy", "f1", "auc")
        ]
        key = "er" if label.startswith("er") else label
        paper = " / ".join(f"{v:.2f}" for v in PAPER[key]) if key in PAPER else "-"
        shown_name = "**ER: compact (width 48) initialised from `fer`**" if key == "er" else names.get(label, label)
        add(f"| {shown_name} | {' | '.join(cells)} | {paper} |")
    add("")
    for metric, result in paired.items():
        add(
            f"Paired, ER minus the best baseline by AUC ({best_baseline}), {metric}: "
            f"{100 * result['difference']:+.2f} points, 95% CI [{100 * result['difference_ci95'][0]:+.2f}, "
            f"{100 * result['difference_ci95'][1]:+.2f}] (bootstrap over students), p = {result['p_bootstrap_subjects']:.3f}; "
            f"paired t-test over folds p = {result['p_paired_t_folds']:.3f}."
        )
        add("")
    add(
        f"Paired, ER minus the same network from scratch (compact:width=48), auc: {100 * same['difference']:+.2f} points, "
        f"95% CI [{100 * same['difference_ci95'][0]:+.2f}, {100 * same['difference_ci95'][1]:+.2f}], "
        f"p = {same['p_bootstrap_subjects']:.3f}; paired t-test over folds p = {same['p_paired_t_folds']:.3f} (the "
        "paper's comparison: one network, with and without pre-training on expressions)."
    )
    add("")
    add("Per-fold AUC (%):")
    add("")
    add("| model | " + " | ".join(f"fold {f + 1}" for f in range(5)) + " |")
    add("| --- |" + " --- |" * 5)
    for label, row in compared["models"].items():
        add(f"| {label} | " + " | ".join(pct(v) for v in row["auc"]["per_fold"]) + " |")
    add("")
    er_row = compared["models"][er_label]
    paper_targets = (("auc", 0.80), ("accuracy", 0.75), ("f1", 0.74))
    add(
        "Targets for the ER recipe: "
        + "; ".join(
            f"{metric} >= {floor:.2f}: {pct(er_row[metric]['mean'])} ({'met' if er_row[metric]['mean'] >= floor else 'not met'})"
            for metric, floor in paper_targets
        )
        + "."
    )
    add("")
    add("![ROC](results/wacv-cv-roc.png)")
    add("")
    add("## 6. The FER model (`fer`, shipped, unchanged)")
    add("")
    add(
        f"`{fer_card['architecture']['model']}` network, width {fer_card['architecture']['model_args'].get('width')}, "
        f"{fer_card['architecture']['parameters']:,} parameters, trained on FER2013 train (28,709 faces); best epoch and "
        f"its 16 test-time views chosen on FER2013 val (PublicTest, {fer['n']:,} faces), which is also what is reported "
        "here, so the figure is slightly optimistic. The official PrivateTest split is kept aside."
    )
    add("")
    add(f"`{fer_cmd}`")
    add("")
    add("| accuracy | macro F1 | ECE |")
    add("| --- | --- | --- |")
    add(f"| {ci(fer, 'accuracy')} | {ci(fer, 'macro_f1')} | {fer['ece']:.3f} |")
    add("")
    add("| " + " | ".join(fer["per_class_recall"]) + " |")
    add("| " + " | ".join("---" for _ in fer["per_class_recall"]) + " |")
    add("| " + " | ".join(pct(v) for v in fer["per_class_recall"].values()) + " |")
    add("")
    add("![confusion](results/fer/confusion.png)")
    add("")
    add("## 7. A 4-level DAiSEE frame model")
    add("")
    add(
        "The compact network initialised from `fer`, fine-tuned on DAiSEE train with every student weighing the same "
        "and the classes weighed by their inverse share (best epoch by macro F1 on a subject split of train), scored "
        "once on DAiSEE val (19 students it never saw). One frame per 10-second clip."
    )
    add("")
    add(f"`{daisee_train_cmd}`  ")
    add(f"`{daisee4_cmd}`")
    add("")
    counts = np.asarray(daisee4["confusion_matrix"]).sum(axis=1)
    majority = counts.max() / daisee4["n"]
    majority_f1 = (2 * majority / (1 + majority)) / len(counts)
    add("| model | accuracy | macro F1 | " + " | ".join(f"recall {k}" for k in daisee4["per_class_recall"]) + " |")
    add("| --- | --- | --- |" + " --- |" * len(daisee4["per_class_recall"]))
    add(
        f"| engage, frame (val) | {ci(daisee4, 'accuracy')} | {ci(daisee4, 'macro_f1')} | "
        + " | ".join(pct(v) for v in daisee4["per_class_recall"].values())
        + " |"
    )
    add(f"| always the majority level (val) | {pct(majority)} | {pct(majority_f1)} |" + " - |" * len(counts))
    for name, value in DAISEE_BASELINES:
        add(f"| {name} (Gupta et al. 2016, test split) | {value:.1f} | - |" + " - |" * len(counts))
    add("")
    add(
        "The published DAiSEE baselines are video models scored on the official test split (kept aside here); ours is "
        "a single-frame model on the val split, so the comparison is indicative only. With levels 0 and 1 at about 5%, "
        "accuracy mostly measures the split between levels 2 and 3: read macro F1 and the per-level recall."
    )
    add("")
    text = "\n".join(lines) + "\n"
    with open(args.out + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
