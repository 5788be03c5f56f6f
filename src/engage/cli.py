"""The `engage` command: a thin layer over the Python API. Errors are one line on stderr, no traceback."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from engage.errors import EngageError, UsageError
from engage.inference.keyframes import DEFAULT_DETECT_EVERY
from engage.version import __version__

if TYPE_CHECKING:
    from engage.data.preprocess import PreprocessResult

F = TypeVar("F", bound=Callable[..., Any])  # a command function, as click's decorators take and give it

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def progress_bar(description: str, disable: bool = False) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=disable,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="engage")
def app() -> None:
    """engage: student engagement recognition from facial expression (research use; see README).

    Add --debug to any command to see a traceback on failure.
    """


PREPROCESS_EXAMPLES = """
\b
Examples:
  engage preprocess --sample --out sample.npz --save-crops sample-crops
  engage preprocess ../shared/data/fer2013/train --no-detect --out fer_train.npz
  engage preprocess ../shared/data/engagement/wacv/labels.csv --no-face whole-image \\
      --label-map 2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged \\
      --split subject --folds 5 --out wacv.npz
"""


@app.command(epilog=PREPROCESS_EXAMPLES)
@click.argument("src", required=False)
@click.option("--out", "-o", "out_path", required=True, help="Dataset file to write (.npz).")
@click.option("--sample", is_flag=True, help="Use the bundled sample photos instead of SRC.")
@click.option(
    "--detector",
    type=click.Choice(["mtcnn", "yunet", "dlib"]),
    default="mtcnn",
    show_default=True,
    help="Face detector.",
)
@click.option("--no-detect", is_flag=True, help="Images are already face crops: skip detection.")
@click.option(
    "--no-face",
    type=click.Choice(["skip", "whole-image"]),
    default="skip",
    show_default=True,
    help="When no face is found: skip the image, or use the whole image.",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    default=None,
    help="Detector confidence threshold; default: the detector's own.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Grow each face box by this fraction on every side.",
)
@click.option("--square/--no-square", default=True, show_default=True, help="Square the face box before resizing.")
@click.option(
    "--border",
    type=click.Choice(["clip", "pad"]),
    default="clip",
    show_default=True,
    help="A grown box at the image edge: 'clip' moves and shrinks it to fit, 'pad' keeps it and repeats the edge pixels.",
)
@click.option("--align", is_flag=True, help="Turn each face upright on its eyes (the detector's landmarks).")
@click.option(
    "--box",
    type=click.Choice(["detector", "landmarks"]),
    default="detector",
    show_default=True,
    help="Cut each face from the detector's box, or from the box its face mesh places (steadier: it does "
    "not move with the detector or the box's jitter).",
)
@click.option(
    "--size",
    type=click.IntRange(16, 256),
    default=48,
    show_default=True,
    help="Side of the face crop in pixels (a multiple of 16).",
)
@click.option("--color", is_flag=True, help="Keep colour (RGB) instead of one gray channel.")
@click.option(
    "--corpus", default=None, help="Name of this data set, for training on several (default: the --out file's name)."
)
@click.option(
    "--normalize",
    type=click.Choice(["standard", "paper"]),
    default="standard",
    show_default=True,
    help="Normalisation recorded for training: per-channel 'standard', or the paper's per-image 'paper' (mean 0, norm 100).",
)
@click.option(
    "--label-column", default="label", show_default=True, help="Manifest column holding the label ('none': unlabelled)."
)
@click.option("--label-map", default=None, help="Rename labels: OLD=NEW,OLD=NEW (every label must be named).")
@click.option(
    "--subject-pattern",
    default=None,
    help="Regex whose first group is the subject id in each file name, e.g. 'img(\\d+)_'.",
)
@click.option(
    "--usage",
    multiple=True,
    type=click.Choice(["Training", "PublicTest", "PrivateTest"]),
    help="fer2013.csv splits to keep; repeatable (default: all).",
)
@click.option(
    "--split",
    type=click.Choice(["source", "subject", "none"]),
    default="source",
    show_default=True,
    help="'subject': a new train/val split by subject; 'source': keep the source's split; 'none': drop it.",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of images for validation with --split subject.",
)
@click.option("--folds", type=int, default=0, help="Also assign K subject-grouped cross-validation folds (K >= 2).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits and folds.")
@click.option("--save-crops", default=None, help="Also write each 48x48 face as a PNG into this folder.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of reporting it.")
@click.option("--workers", type=click.IntRange(0), default=0, help="Worker processes (0: one per core).")
@click.option("--force", is_flag=True, help="Ignore the cache held in an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def preprocess(
    src: str | None,
    out_path: str,
    sample: bool,
    detector: str,
    no_detect: bool,
    no_face: str,
    min_confidence: float | None,
    margin: float,
    square: bool,
    border: str,
    align: bool,
    box: str,
    size: int,
    color: bool,
    corpus: str | None,
    normalize: str,
    label_column: str,
    label_map: str | None,
    subject_pattern: str | None,
    usage: tuple[str, ...],
    split: str,
    val_fraction: float,
    folds: int,
    seed: int,
    save_crops: str | None,
    strict: bool,
    workers: int,
    force: bool,
    as_json: bool,
) -> None:
    """Detect, crop and normalise the faces of SRC into one dataset file (.npz; 48x48 gray by default).

    SRC is an image folder (one sub-folder per class, or a flat folder), a manifest CSV
    (path,label[,subject]) or the original fer2013.csv. Re-running on the same input reuses the results.
    """
    from engage.data.preprocess import PreprocessOptions, run_preprocess, write_crops

    if sample == (src is not None):
        raise UsageError("give either SRC (a folder or CSV) or --sample")
    options = PreprocessOptions(
        detector=None if no_detect else detector,
        no_face=no_face,
        min_confidence=min_confidence,
        margin=margin,
        square=square,
        border=border,
        align=align,
        box=box,
        size=size,
        color=color,
        corpus=corpus,
        normalize=normalize,
        label_column=None if label_column.lower() == "none" else label_column,
        label_map=label_map,
        subject_pattern=subject_pattern,
        usages=list(usage) or None,
        split=split,
        val_fraction=val_fraction,
        folds=folds,
        seed=seed,
        strict=strict,
        workers=workers or None,
        force=force,
    )
    with progress_bar("faces") as bar:
        task = bar.add_task("faces", total=None, rate="")

        def on_progress(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:,.0f} img/s" if elapsed > 0.5 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        result = run_preprocess(None if sample else src, out_path, options, sample=sample, progress=on_progress)
    if save_crops:
        result.report_dict["crops_written"] = write_crops(result.dataset, save_crops)
    for path, reason in result.report.unreadable[:10]:
        click.echo(f"engage: warning: skipped {path}: {reason}", err=True)
    if len(result.report.unreadable) > 10:
        click.echo(f"engage: warning: ... and {len(result.report.unreadable) - 10} more unreadable files", err=True)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        print_preprocess_summary(result, out_path, save_crops)


TRAIN_EXAMPLES = """
\b
Examples:
  engage train fer --data fer_train.npz --val fer_val.npz --model compact --out runs/fer
  engage train engagement --init runs/fer/best.safetensors --data wacv.npz --split subject --out runs/er
  engage train engagement --model vgg --recipe paper --data wacv.npz --out runs/vgg-scratch
  engage train engagement --init fer --data wacv.npz --data daisee.npz --balance corpus,subject \
      --cv 5 --out runs/engagement          # choose epochs, calibration and threshold by CV; train on all
  engage train resume --out runs/fer          # continue a killed run where it stopped
"""


@app.command(epilog=TRAIN_EXAMPLES)
@click.argument("task", type=click.Choice(["fer", "engagement", "resume"]))
@click.option(
    "--data", multiple=True, help="Training dataset (.npz from 'engage preprocess'); repeat it to train on several."
)
@click.option("--val", multiple=True, help="Validation dataset (.npz); else a split of --data (see --split).")
@click.option(
    "--cv",
    "cv_folds",
    type=click.IntRange(2),
    default=None,
    help="Cross-validate by subject (K folds in every data set), choose the epochs, calibration and threshold "
    "from the out-of-fold predictions, then train on every subject: RUN/model.safetensors, RUN/crossval.json.",
)
@click.option(
    "--final/--no-final",
    default=True,
    show_default=True,
    help="With --cv: also train the model on every subject (--no-final: only measure the recipe).",
)
@click.option(
    "--cv-epoch",
    type=click.IntRange(1),
    default=None,
    help="With --cv: measure and calibrate at this epoch instead of choosing one (e.g. for a model already "
    "trained that many epochs with this recipe).",
)
@click.option(
    "--balance",
    type=click.Choice(["none", "subject", "corpus", "corpus,subject"]),
    default=None,
    help="Draw training faces so that every data set (corpus) and/or every subject weighs the same.",
)
@click.option(
    "--epoch-size", type=click.IntRange(0), default=None, help="Faces drawn per epoch (default: as many as there are)."
)
@click.option("--freeze", type=click.IntRange(0, 4), default=None, help="Keep the first N conv blocks of --init fixed.")
@click.option("--out", "-o", "run_dir", required=True, help="Run folder: checkpoints, best model, history.")
@click.option(
    "--model",
    default=None,
    type=click.Choice(["compact", "vgg", "cnn"]),
    help="Network (default: compact, or --init's).",
)
@click.option("--width", type=int, default=None, help="Channel width of the compact network (default 32).")
@click.option(
    "--init",
    default=None,
    help="Model (shipped name, e.g. fer, or file) whose backbone initialises the network (the ER model).",
)
@click.option(
    "--recipe",
    type=click.Choice(["default", "paper"]),
    default="default",
    show_default=True,
    help="'paper': SGD lr 0.02 x0.8/500 steps, batch 32, 20 epochs; 'default': one-cycle, label smoothing.",
)
@click.option(
    "--split",
    type=click.Choice(["auto", "source", "subject", "none"]),
    default="auto",
    show_default=True,
    help="Validation faces without --val: the data's own split, a new subject split, or none.",
)
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(2), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None)
@click.option("--schedule", type=click.Choice(["step", "cosine", "onecycle"]), default=None)
@click.option("--label-smoothing", type=click.FloatRange(0, 0.5), default=None)
@click.option("--class-weights/--no-class-weights", default=None, help="Weight the loss by inverse class frequency.")
@click.option(
    "--select",
    type=click.Choice(["accuracy", "balanced_accuracy", "macro_f1", "auc"]),
    default=None,
    help="Metric that picks the best epoch.",
)
@click.option(
    "--shift",
    "pad",
    type=click.IntRange(0),
    default=None,
    help="Augmentation: random shift up to this many px (default 4).",
)
@click.option(
    "--rotate",
    type=click.FloatRange(0),
    default=None,
    help="Augmentation: random rotation up to this many degrees (default 16).",
)
@click.option(
    "--scale",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Augmentation: random zoom by up to this fraction (default 0; 0.2: 80-120%).",
)
@click.option(
    "--erase",
    type=click.FloatRange(0, 1),
    default=None,
    help="Augmentation: probability of blanking a random rectangle of the face (default 0).",
)
@click.option(
    "--bf16/--fp32",
    "bf16",
    default=None,
    help="bf16 autocast (default: where the device computes bf16 natively: a CUDA GPU, or a CPU with AVX-512 BF16).",
)
@click.option(
    "--device",
    default=None,
    help="auto (default: a CUDA GPU if PyTorch sees one, else the CPU), cpu, cuda or cuda:N; with resume: the run's own.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="CPU threads (0: all cores; with resume: the run's own setting).")
def train(
    task: str,
    data: tuple[str, ...],
    val: tuple[str, ...],
    cv_folds: int | None,
    final: bool,
    cv_epoch: int | None,
    balance: str | None,
    epoch_size: int | None,
    freeze: int | None,
    run_dir: str,
    model: str | None,
    width: int | None,
    init: str | None,
    recipe: str,
    split: str,
    val_fraction: float,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    optimizer: str | None,
    schedule: str | None,
    label_smoothing: float | None,
    class_weights: bool | None,
    select: str | None,
    pad: int | None,
    rotate: float | None,
    scale: float | None,
    erase: float | None,
    bf16: bool | None,
    device: str | None,
    seed: int,
    threads: int,
) -> None:
    """Train a network: FER pre-training, engagement fine-tuning (--init), or from scratch.

    Writes RUN/best.safetensors (best epoch by validation score), RUN/last.safetensors (resumable),
    RUN/config.json and RUN/history.csv.
    """
    from engage.training.loop import (
        TrainConfig,
        resume_training,
        run_training,
        task_defaults,
    )

    log = lambda line: click.echo(line, err=True)  # noqa: E731
    if task == "resume":
        result = resume_training(run_dir, threads=threads or None, log=log, device=device)
    else:
        model_args = {"width": width} if width else {}
        if init:
            from engage.models.loading import resolve_model

            init = resolve_model(init)  # a shipped name (fer) or a file
        if init and model is None:
            from engage.models.checkpoint import read_file

            donor = read_file(init)[1]
            donor = donor.get("config", donor)
            model, model_args = donor["model"], donor.get("model_args", {})
        overrides = dict(task_defaults(task, init))
        overrides.update(
            {
                k: v
                for k, v in dict(
                    epochs=epochs,
                    batch_size=batch_size,
                    lr=lr,
                    optimizer=optimizer,
                    schedule=schedule,
                    label_smoothing=label_smoothing,
                    class_weights=class_weights,
                    select=select,
                    pad=pad,
                    rotate=rotate,
                    scale=scale,
                    erase=erase,
                    balance=balance,
                    epoch_size=epoch_size,
                    freeze=freeze,
                ).items()
                if v is not None
            }
        )
        if recipe == "paper":  # the paper's recipe wins over the task's defaults unless the user said otherwise
            for key in ("epochs", "lr"):
                if locals()[key] is None:
                    overrides.pop(key, None)
        data_files = list(data) if len(data) > 1 else (data[0] if data else None)
        val_files = list(val) if len(val) > 1 else (val[0] if val else None)
        config = TrainConfig.from_recipe(
            recipe,
            task=task,
            model=model or "compact",
            model_args=model_args,
            init=init,
            data=data_files,
            val=val_files,
            split=split,
            val_fraction=val_fraction,
            bf16=bf16,
            seed=seed,
            threads=threads,
            device=device,
            **overrides,
        )
        if cv_folds:
            from engage.training.crossval import cross_validate, format_report

            if not data or val:
                raise UsageError("--cv needs --data (one or more files) and no --val: every subject is held out once")
            report = cross_validate(config, list(data), cv_folds, run_dir, log=log, final=final, epoch=cv_epoch)
            click.echo(format_report(report))
            return
        result = run_training(config, run_dir, log=log)
    best = ", ".join(f"{k} {v}" for k, v in result.best_metrics.items() if k.startswith("val_"))
    click.echo(
        f"best epoch {result.best_metrics.get('epoch')}: {best}; model: {os.path.join(result.run_dir, 'best.safetensors')}"
    )


def dataset_options(function: F) -> F:
    """The options that read a dataset, shared by preprocess-like commands (evaluate, compare)."""
    options = [
        click.option("--label-column", default="label", show_default=True, help="Manifest column holding the label."),
        click.option("--label-map", default=None, help="Rename labels: OLD=NEW,OLD=NEW."),
        click.option(
            "--subject-pattern", default=None, help="Regex whose first group is the subject id in file names."
        ),
        click.option(
            "--usage",
            multiple=True,
            type=click.Choice(["Training", "PublicTest", "PrivateTest"]),
            help="fer2013.csv splits to keep; repeatable.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def judgement_options(function: F) -> F:
    """What a binary model's score means at a site: --base-rate, --calibration and --no-abstain (predict, serve,
    batch and evaluate alike)."""
    options = [
        click.option(
            "--base-rate",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=None,
            metavar="R",
            help="Share of on-task faces expected at this site: p_engaged is re-weighted to it (prior shift) "
            "and the label follows (default: the model's own, 0.5 for the shipped model).",
        ),
        click.option(
            "--calibration",
            "calibration",
            default=None,
            metavar="SITE.json",
            help="A site calibration from 'engage calibrate', applied to p_engaged first.",
        ),
        click.option(
            "--abstain/--no-abstain",
            default=True,
            show_default=True,
            help="Label faces too small, blurred, turned aside or weakly detected 'uncertain' instead of judging them.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def cue_option(function: F) -> F:
    """--cues/--no-cues (predict, serve, batch, evaluate, calibrate): the attention cues of every face, and their
    effect on p_engaged."""
    return click.option(
        "--cues/--no-cues",
        default=True,
        show_default=True,
        help="Measure head pose, gaze, eye and mouth opening per face (columns of their own; the "
        "shipped model's p_engaged uses them). --no-cues: faster, appearance alone.",
    )(function)


def device_option(function: F) -> F:
    """--device (predict, serve, batch, evaluate): where the network scores faces."""
    return click.option(
        "--device",
        default="cpu",
        show_default=True,
        help="Run the network on 'cpu' (float32), 'cuda' (a GPU, bf16 in large batches; --backend torch) or "
        "'auto' (cuda where PyTorch sees a GPU, else cpu).",
    )(function)


EVALUATE_EXAMPLES = """
\b
Examples:
  engage evaluate --model runs/fer/best.safetensors --data fer_val.npz --json
  engage evaluate --model runs/er/best.safetensors --data ../shared/data/engagement/wacv/labels.csv \\
      --label-map 2_engaged=engaged,0_disengaged=disengaged,1_partial=disengaged --out eval/er
"""


@app.command(epilog=EVALUATE_EXAMPLES)
@click.option("--model", "model_name", required=True, help="A shipped model name or a model file (.safetensors).")
@click.option(
    "--data",
    required=True,
    multiple=True,
    help="A dataset (.npz), image folder, manifest CSV or fer2013.csv; repeat it to score several together.",
)
@dataset_options
@click.option("--split", "split_name", default=None, help="Score only the faces of this split of a .npz (e.g. val).")
@click.option("--out", "out_dir", default=None, help="Folder for metrics.json, predictions.csv and the plots.")
@click.option(
    "--bootstrap", type=click.IntRange(0), default=1000, show_default=True, help="Bootstrap resamples for the CIs."
)
@judgement_options
@cue_option
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate(
    model_name: str,
    data: tuple[str, ...],
    label_column: str,
    label_map: str | None,
    subject_pattern: str | None,
    usage: tuple[str, ...],
    split_name: str | None,
    out_dir: str | None,
    bootstrap: int,
    base_rate: float | None,
    calibration: str | None,
    abstain: bool,
    cues: bool,
    device: str,
    as_json: bool,
) -> None:
    """Score a model on labelled data: accuracy, F1, ROC AUC with 95% CIs, calibration, per-subject accuracy."""
    from engage.evaluation.evaluate import evaluate_model

    datasets = list(data) if len(data) > 1 else data[0]
    result = evaluate_model(
        model_name,
        datasets,
        label_column=label_column,
        label_map=label_map,
        subject_pattern=subject_pattern,
        usages=list(usage) or None,
        split=split_name,
        out_dir=out_dir,
        n_boot=bootstrap,
        log=lambda line: click.echo(line, err=True),
        base_rate=base_rate,
        calibration=calibration,
        abstain=abstain,
        cues=cues,
        device=device,
    )
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(format_evaluation(result, out_dir))


def format_evaluation(result: dict, out_dir: str | None = None) -> str:
    """engage evaluate's summary: every metric on the faces judged, with the coverage beside it, and on all faces."""
    ci = result.get("ci95", {})
    abstention = result["abstention"]
    every = result.get("all_faces")
    lines = [
        f"{result['model']} on {result['data']}: {abstention['faces']:,} faces, {abstention['judged']:,} judged "
        f"(coverage {100 * result['coverage']:.1f}%"
        + (
            ": not judged " + ", ".join(f"{k} {v}" for k, v in sorted(abstention["not_judged_by_reason"].items()))
            if abstention["not_judged_by_reason"]
            else ""
        )
        + ")"
    ]
    if "decision" in result:
        decision = result["decision"]
        lines.append(
            f"  decided: {decision['positive_class']} when p >= {decision['threshold']:.3f} ({decision['rule']})"
        )
    if result.get("adjustment"):
        adjustment = result["adjustment"]
        if adjustment.get("site_calibration"):
            lines.append(
                f"  site calibration: fitted on {adjustment['site_calibration']['fitted_on'].get('data', '?')}"
            )
        if adjustment.get("base_rate") is not None:
            lines.append(f"  base rate: p re-weighted to {adjustment['base_rate']:g} on task")
    header = f"  {'':17s} {'judged (coverage ' + format(100 * result['coverage'], '.1f') + '%)':>38s}"
    lines.append(header + ("   all faces" if every else ""))
    for metric in ("accuracy", "balanced_accuracy", "f1", "macro_f1", "auc"):
        if metric in result:
            low, high = ci.get(metric, [float("nan")] * 2)
            line = f"  {metric:17s} {100 * result[metric]:6.2f}%  (95% CI {100 * low:6.2f}-{100 * high:6.2f})"
            if every and metric in every:
                line += f"   {100 * every[metric]:6.2f}%"
            lines.append(line)
    lines.append(
        "  recall            " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["per_class_recall"].items())
    )
    ece = f"  ECE               {result['ece']:.3f}"
    if result.get("ece_rate") is not None:
        ece += f" at base rate {result['ece_rate']:g}"
        if result.get("ece_own_rate") is not None:
            ece += f"; {result['ece_own_rate']:.3f} at the data's own rate ({100 * result['own_share']:.1f}% positive)"
    lines.append(ece)
    if "risk_coverage" in result:
        curve = result["risk_coverage"]
        rule = curve.get("quality_rule") or {}
        lines.append(
            f"  risk-coverage     AURC {curve['aurc']:.3f} ({curve['risk']} of the faces kept by confidence)"
            + (
                f"; the quality rule keeps {100 * rule['coverage']:.1f}% at risk {rule['risk']:.3f} "
                f"(all faces {rule['risk_all_faces']:.3f})"
                if rule
                else ""
            )
        )
    if out_dir:
        lines.append(
            f"  written to {out_dir}/: metrics.json, predictions.csv, {', '.join(os.path.basename(p) for p in result['plots'])}"
        )
    return "\n".join(lines)


CALIBRATE_EXAMPLES = """
\b
Examples:
  engage calibrate --model engagement --data site_frames/labels.csv --label-map yes=engaged,no=disengaged --out site.json
  engage calibrate --model engagement --data ../shared/data/engagement/daisee/val/labels.csv --label-column engagement \\
      --label-map 0=disengaged,1=disengaged,2=engaged,3=engaged --out daisee-site.json
  engage predict lecture.mp4 --calibration site.json
"""


@app.command(epilog=CALIBRATE_EXAMPLES)
@click.option(
    "--model", "model_name", default="engagement", show_default=True, help="A shipped model name or a model file."
)
@click.option(
    "--data",
    required=True,
    multiple=True,
    help="Labelled frames of the site: a dataset (.npz), image folder or manifest CSV; repeatable.",
)
@dataset_options
@click.option("--split", "split_name", default=None, help="Use only the faces of this split of a .npz.")
@click.option("--out", "-o", "out_path", required=True, metavar="SITE.json", help="The site calibration file to write.")
@click.option(
    "--fit-threshold", is_flag=True, help="Also choose the site's threshold (best balanced accuracy); default 0.5."
)
@click.option(
    "--abstain/--no-abstain",
    default=True,
    show_default=True,
    help="Fit on the faces predict would judge only (not too small, blurred, turned aside or weakly detected).",
)
@click.option(
    "--bootstrap", type=click.IntRange(0), default=1000, show_default=True, help="Bootstrap resamples for the CIs."
)
@cue_option
@click.option("--json", "as_json", is_flag=True, help="Print the written calibration as JSON.")
def calibrate(
    model_name: str,
    data: tuple[str, ...],
    label_column: str,
    label_map: str | None,
    subject_pattern: str | None,
    usage: tuple[str, ...],
    split_name: str | None,
    out_path: str,
    fit_threshold: bool,
    abstain: bool,
    bootstrap: int,
    cues: bool,
    as_json: bool,
) -> None:
    """Correct a model's p_engaged for a new site from a few labelled frames: a temperature and a bias (and
    optionally a threshold) on top of the model, written as a small JSON file for --calibration.

    Prints ECE and balanced accuracy before and after, measured out of sample by subject (or session) with
    95% CIs. Needs at least 10 judged faces of each class.
    """
    from engage.evaluation.site import calibrate_site, format_site

    notes: list[str] = []  # said after success: a refusal is its one line alone
    site = calibrate_site(
        model_name,
        list(data) if len(data) > 1 else data[0],
        out_path,
        label_column=label_column,
        label_map=label_map,
        subject_pattern=subject_pattern,
        usages=list(usage) or None,
        split=split_name,
        fit_threshold=fit_threshold,
        abstain=abstain,
        n_boot=bootstrap,
        log=notes.append,
        cues=cues,
    )
    for note in notes:
        click.echo(note, err=True)
    click.echo(json.dumps(site.to_dict(), indent=1) if as_json else format_site(site, out_path))


COMPARE_EXAMPLES = """
\b
Examples:
  engage compare --data wacv.npz --models cnn,vgg,er:runs/fer/best.safetensors,hog-svm --folds 5 --out runs/compare
  engage compare --data wacv.npz --models compact,hog-svm --folds 3 --epochs 5 --out runs/quick
"""


@app.command(epilog=COMPARE_EXAMPLES)
@click.option("--data", required=True, help="A binary dataset with subject ids (.npz from 'engage preprocess').")
@click.option(
    "--models", required=True, help="Comma-separated: cnn, vgg, compact, compact:width=N, hog-svm, er:FER_MODEL."
)
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Subject-grouped folds.")
@click.option(
    "--out", "out_dir", required=True, help="Folder for fold predictions (reused on re-runs) and results.json."
)
@click.option("--recipe", type=click.Choice(["default", "paper"]), default="default", show_default=True)
@click.option(
    "--epochs", type=click.IntRange(1), default=None, help="Epochs for every network (default: the recipe's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="CPU threads per training (0: all cores).")
@click.option(
    "--bf16/--fp32",
    "bf16",
    default=None,
    help="bf16 autocast for every network (default: where the device computes bf16 natively).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of the table.")
def compare(
    data: str,
    models: str,
    folds: int,
    out_dir: str,
    recipe: str,
    epochs: int | None,
    seed: int,
    threads: int,
    bf16: bool | None,
    as_json: bool,
) -> None:
    """Train and test several models on the same subject folds; print the paper's table with CIs and a paired test."""
    from engage.data.dataset import FaceDataset
    from engage.training.compare import (
        format_table,
        parse_model_specs,
        run_comparison,
        save_result,
    )

    specs = parse_model_specs(models)
    dataset = FaceDataset.load(data)
    overrides: dict[str, str | int | bool] = {"recipe": recipe}
    if epochs:
        overrides["epochs"] = epochs
    if threads:
        overrides["threads"] = threads
    if bf16 is not None:
        overrides["bf16"] = bf16
    result = run_comparison(
        dataset,
        specs,
        out_dir,
        folds=folds,
        seed=seed,
        train_overrides=overrides,
        log=lambda line: click.echo(line, err=True),
    )
    save_result(os.path.join(out_dir, "results.json"), result)
    click.echo(json.dumps(result, indent=1) if as_json else format_table(result))


def frame_options(function: F) -> F:
    """How frames are scored: --min-confidence, --detect-size, --every, --detect-every and --smooth, as predict words
    them."""
    options = [
        click.option(
            "--min-confidence", type=click.FloatRange(0, 1), default=None, help="Detector confidence threshold."
        ),
        click.option(
            "--detect-size",
            type=click.IntRange(64),
            default=None,
            metavar="PX",
            help="Detect faces on frames downscaled to this longest side (faster; small faces are lost).",
        ),
        click.option(
            "--every", type=click.IntRange(1), default=1, show_default=True, help="Score every Nth video frame."
        ),
        click.option(
            "--detect-every",
            type=click.IntRange(1),
            default=DEFAULT_DETECT_EVERY,
            show_default=True,
            metavar="K",
            help="Video: detect faces on every Kth scored frame (and when one is lost) and follow them in between, "
            "their scores carried on from the last detection; 1: detect and score every face in every frame.",
        ),
        click.option(
            "--smooth",
            type=click.FloatRange(0),
            default=1.0,
            show_default=True,
            metavar="SECONDS",
            help="Smooth each face's p_engaged over this time (exponential moving average; 0: off); "
            "p_engaged_raw keeps the frame's own.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


PREDICT_EXAMPLES = """
\b
Examples:
  engage predict --sample
  engage predict photos/ group.jpg --csv faces.csv --annotate annotated
  engage predict lecture.mp4 --every 2 --csv lecture.csv --timeline plots
  engage predict lecture.mp4 --detector yunet --backend onnx          # the fast settings
  engage predict --webcam 0 --expressions                             # Ctrl+C stops
"""


@app.command(epilog=PREDICT_EXAMPLES)
@click.argument("inputs", nargs=-1)
@click.option("--sample", is_flag=True, help="Score the bundled sample photos.")
@click.option(
    "--webcam", type=int, default=None, metavar="N", help="Score camera N live (0: the first camera); Ctrl+C stops."
)
@click.option(
    "--model",
    "model_name",
    default="engagement",
    show_default=True,
    help="A shipped model name or a model file (.safetensors; .onnx with --backend onnx).",
)
@click.option(
    "--detector",
    type=click.Choice(["mtcnn", "yunet", "dlib", "none"]),
    default=None,
    help="Face detector (default: the model's own, else mtcnn); 'none': every input is one face crop.",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="Run the network with PyTorch or onnxruntime (extra 'fast').",
)
@click.option("--expressions", is_flag=True, help="Add the FER model's 7 expression probabilities per face.")
@click.option("--fer-model", default="fer", show_default=True, help="Expression model for --expressions.")
@click.option(
    "--expression-views",
    type=click.Choice(["model", "flip", "one"]),
    default="model",
    show_default=True,
    help="Test-time views of each face for --expressions: as the model records (fer: 16), "
    "the face and its mirror image, or the face alone (16x faster than fer's).",
)
@frame_options
@judgement_options
@cue_option
@device_option
@click.option(
    "--max-frames", type=click.IntRange(1), default=None, help="Stop each video or the camera after N scored frames."
)
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write one row per face per frame.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per input (one per line) instead of the summary."
)
@click.option(
    "--annotate",
    "annotate_dir",
    default=None,
    metavar="DIR",
    help="Write images / mp4s with boxes, ids and scores drawn, and video timelines, into DIR.",
)
@click.option(
    "--timeline",
    "timeline_dir",
    default=None,
    metavar="DIR",
    help="Write each video's p_engaged timeline (PNG) into DIR.",
)
@click.option(
    "--save-crops",
    "crops_dir",
    default=None,
    metavar="DIR",
    help="Also write every scored 48x48 face as a PNG (personal data).",
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Processes: 2+ videos are scored whole in N processes; a single video's faces are detected "
    "in N processes (0: one per core).",
)
def predict(
    inputs: tuple[str, ...],
    sample: bool,
    webcam: int | None,
    model_name: str,
    detector: str | None,
    backend: str,
    expressions: bool,
    fer_model: str,
    expression_views: str,
    min_confidence: float | None,
    detect_size: int | None,
    every: int,
    detect_every: int,
    smooth: float,
    base_rate: float | None,
    calibration: str | None,
    abstain: bool,
    cues: bool,
    device: str,
    max_frames: int | None,
    csv_path: str | None,
    as_json: bool,
    annotate_dir: str | None,
    timeline_dir: str | None,
    crops_dir: str | None,
    workers: int,
) -> None:
    """Score every face in images, folders (recursive), globs, videos or a webcam: p_engaged, label, box, face id.

    Prints a summary per input (a picture without a face is reported as such); --csv, --json, --annotate,
    --timeline and --save-crops add outputs. Nothing else is written.
    """
    import functools

    from engage.inference.job import PredictOptions, format_result, run_predict
    from engage.inference.parallel import planned_detect_processes, planned_workers
    from engage.inference.predictor import Predictor
    from engage.io.inputs import expand_inputs
    from engage.models.device import resolve_device

    device = resolve_device(device, backend)  # a GPU asked for where there is none: one line, before any input is read
    sources = expand_inputs(list(inputs), webcam=webcam, sample=sample)
    processes = planned_workers(sources, workers)
    options = PredictOptions(
        every=every,
        detect_every=detect_every,
        max_frames=max_frames,
        csv_path=csv_path,
        annotate_dir=annotate_dir,
        timeline_dir=timeline_dir,
        crops_dir=crops_dir,
        detect_processes=planned_detect_processes(sources, workers, processes),
    )

    # a partial, not a closure: worker processes (--workers) build their own from it
    make_predictor = functools.partial(
        Predictor,
        model_name,
        detector=detector,
        backend=backend,
        expressions=expressions,
        expression_model=fer_model,
        expression_views=expression_views,
        min_confidence=min_confidence,
        detect_size=detect_size,
        smoothing_s=smooth,
        base_rate=base_rate,
        calibration=calibration,
        abstain=abstain,
        cues=cues,
        device=device,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
        disable=not err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}

    def show(line: str) -> None:  # above the progress bar when stdout is the terminal too
        if out.is_terminal:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line)

    def on_result(result: dict) -> None:
        show(json.dumps(result) if as_json else format_result(result))

    def on_progress(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total, rate="")
        task = bar.tasks[tasks[name]]
        unit = "images" if name == "images" else "frames"  # a video's progress counts its frames
        rate = f"{done / task.elapsed:,.1f} {unit}/s" if task.elapsed and task.elapsed > 1 else ""
        bar.update(tasks[name], completed=done, rate=rate)

    def to_stderr(line: str) -> None:
        bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

    with bar:
        run = run_predict(
            sources,
            make_predictor,
            options,
            on_result=on_result,
            progress=on_progress,
            warn=lambda line: to_stderr(f"engage: warning: {line}"),
            log=to_stderr,
            workers=processes,
        )
    notes = [
        f"{len(run.results)} input(s) scored in {run.seconds:.1f} s with {run.setup}"
        + (f", in {run.workers} processes" if run.workers > 1 else "")
        + (f", faces detected in {run.detect_processes} processes" if run.detect_processes > 1 else "")
    ]
    if sources.ignored:
        notes.append(f"ignored {len(sources.ignored)} file(s) that are neither images nor videos")
    if run.skipped:
        notes.append(f"skipped {len(run.skipped)} unreadable input(s) (listed above)")
    if csv_path:
        notes.append(f"{run.csv_rows} row(s) (one per face per frame) written to {csv_path}")
    for folder, what in (
        (annotate_dir, "annotated images / videos"),
        (timeline_dir, "timelines"),
        (crops_dir, "face crops"),
    ):
        if folder:
            notes.append(f"{what} written to {folder}/")
    for note in notes:
        if as_json:
            click.echo(note, err=True)
        else:
            click.echo(note)


EXPORT_EXAMPLES = """
\b
Examples:
  engage export --format onnx --model engagement --out engagement.onnx
  engage predict lecture.mp4 --model engagement.onnx --backend onnx --detector yunet
"""


@app.command(epilog=EXPORT_EXAMPLES)
@click.option(
    "--model", "model_name", default="engagement", show_default=True, help="A shipped model name or a model file."
)
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Export format.")
@click.option(
    "--out", "-o", "out_path", default=None, help="File to write (default: MODEL.onnx in the current folder)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def export(model_name: str, fmt: str, out_path: str | None, as_json: bool) -> None:
    """Export a model for onnxruntime (one self-contained file: weights, classes, face settings).

    Before writing, checks that onnxruntime's probabilities match PyTorch's (max abs difference <= 1e-4) on
    the real faces of the bundled sample and on random faces.
    """
    from engage.models.onnx import export_onnx

    if out_path is None:
        out_path = os.path.splitext(os.path.basename(model_name))[0] + "." + fmt
    report = export_onnx(model_name, out_path)
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    click.echo(
        f"{out_path}: {report['bytes'] / 1e6:.1f} MB, classes {', '.join(report['class_names'])}; "
        f"onnxruntime matches PyTorch on {report['checked_faces']} faces ({report['real_faces']} real) "
        f"within {report['max_abs_difference']:.1e}"
    )


SERVE_EXAMPLES = """
\b
Examples:
  engage serve                                   # http://127.0.0.1:8000/ (the page), /docs (the API)
  engage serve --port 8080 --detector yunet --backend onnx
  engage serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"   # reachable by others: read docs/guide/serve.md first
"""


@app.command(epilog=SERVE_EXAMPLES)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; the default answers this machine only (see docs/guide/serve.md, 'Loopback by default', before changing it).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--model", "model_name", default="engagement", show_default=True, help="A shipped model name or a model file."
)
@click.option(
    "--detector",
    type=click.Choice(["mtcnn", "yunet", "dlib", "none"]),
    default=None,
    help="Face detector (default: the model's own, else mtcnn).",
)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option(
    "--expression-views",
    type=click.Choice(["model", "flip", "one"]),
    default="model",
    show_default=True,
    help="Test-time views of the fer model when a request asks for expressions.",
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    help="Scoring threads per pool, images and videos (0: one per core).",
)
@click.option(
    "--queue",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="Video jobs waiting beyond the workers before 429.",
)
@click.option(
    "--retention",
    type=click.FloatRange(min=0, min_open=True),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="Delete a finished video job and its files after this time.",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Largest video upload (images: 20 MB).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="Longest time one image request may take.",
)
@click.option(
    "--token",
    default=None,
    envvar="ENGAGE_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' on /v1 (or set ENGAGE_TOKEN).",
)
@judgement_options
@cue_option
@device_option
def serve(
    host: str,
    port: int,
    model_name: str,
    detector: str | None,
    backend: str,
    expression_views: str,
    workers: int,
    queue: int,
    retention: float,
    max_upload_mb: int,
    timeout_s: float,
    token: str | None,
    base_rate: float | None,
    calibration: str | None,
    abstain: bool,
    cues: bool,
    device: str,
) -> None:
    """Serve the web page and the HTTP API: score photos, videos and the browser's camera (extra 'serve').

    The model is loaded once; video jobs run in a bounded pool and are deleted after --retention seconds
    and when the server stops. Ctrl+C stops it.
    """
    try:
        import uvicorn

        from engage.serve.app import ServeSettings, create_app
        from engage.serve.uploads import MB, Limits
    except ImportError as error:
        raise EngageError(
            f"engage serve needs the extra 'serve' ({error.name} is missing): pip install 'engage[serve]'"
        ) from None
    from engage.models.device import resolve_device

    device = resolve_device(device, backend)
    check_port_free(host, port)  # before the model loads: say it at once, in one line
    import torch

    torch.set_num_threads(1)  # the pools score requests in parallel, one core each
    settings = ServeSettings(
        model=model_name,
        detector=detector,
        backend=backend,
        expression_views=expression_views,
        workers=workers or os.cpu_count() or 1,
        video_queue=queue,
        retention_s=retention,
        token=token,
        base_rate=base_rate,
        calibration=calibration,
        abstain=abstain,
        cues=cues,
        device=device,
        limits=Limits(video_bytes=max_upload_mb * MB, request_s=timeout_s),
    )
    application = create_app(settings)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"engage: warning: listening on {host}: anyone who can reach this address can send faces to score"
            + ("" if token else " (no --token set)")
            + "; see docs/guide/serve.md, 'Loopback by default'",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"engage serve: http://{shown}:{port}/ (model {application.state.predictor.model_name}, "
        f"detector {application.state.predictor.detector_name}); Ctrl+C stops",
        err=True,
    )
    uvicorn.run(application, host=host, port=port, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    """One clear line when the address cannot be listened on (a port in use, an address not of this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise EngageError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise EngageError(
                    f"port {port} on {host} is in use (another server?); choose another with --port"
                ) from None
            raise EngageError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


def print_preprocess_summary(result: PreprocessResult, out_path: str, crops_dir: str | None) -> None:
    report, dataset = result.report, result.dataset
    if result.up_to_date:
        out.print(f"{out_path} is up to date ({len(dataset)} faces from {report.images} images, all from the cache)")
    table = Table(title=f"{out_path}: {len(dataset)} faces from {report.images} images", show_header=False)
    rows = [
        ("face detected", report.counts["detected"]),
        ("whole image used (no face found)", report.counts["whole-image"]),
        ("used as given (--no-detect)", report.counts["no-detect"]),
        ("skipped: no face found", report.counts["no-face"]),
        ("unreadable (reported, skipped)", report.counts["unreadable"]),
        ("taken from the cache", report.reused),
        ("non-image files ignored", len(report.ignored)),
    ]
    for name, count in rows:
        if count:
            table.add_row(name, f"{count:,}")
    speed = f"{report.images_per_second:,.0f} images/s" if report.reused < report.images else "all from the cache"
    table.add_row("time", f"{report.seconds:.1f} s ({speed})")
    if dataset.class_names:
        table.add_row("classes", ", ".join(f"{k} {v:,}" for k, v in dataset.class_counts().items()))
    subjects = sorted(set(dataset.subjects.tolist()) - {""})
    if subjects:
        table.add_row("subjects", f"{len(subjects)}")
    splits = {s: int((dataset.split == s).sum()) for s in sorted(set(dataset.split.tolist()) - {""})}
    if splits:
        table.add_row("split", ", ".join(f"{k} {v:,}" for k, v in splits.items()))
    if (dataset.fold >= 0).any():
        table.add_row(
            "folds", ", ".join(f"{f}: {int((dataset.fold == f).sum()):,}" for f in sorted(set(dataset.fold.tolist())))
        )
    out.print(table)
    if report.counts["no-face"] and not result.sample:
        out.print(
            f"{report.counts['no-face']:,} image(s) had no face and were skipped; if they are already face crops, "
            "use --no-face whole-image or --no-detect"
        )
    if result.sample:
        for name, faces in result.faces_per_source.items():
            out.print(f"  {name}: {'no face found' if faces == 0 else f'{faces} face(s), the biggest kept'}")
    if crops_dir:
        out.print(f"48x48 crops written to {crops_dir}/")


def os_error_line(error: OSError) -> str:
    """One line for an operating-system error met while reading or writing."""
    where = f"{error.filename}: " if getattr(error, "filename", None) else ""
    full = error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or (
        error.errno is None and "requested and" in str(error) and "written" in str(error)
    )  # Pillow's short write
    if full:
        return (
            f"{where}the disk is full or a file-size limit was reached while writing; free some space and run "
            "again (finished outputs are kept; the unfinished one was not put in place)"
        )
    return f"{where}{error.strerror or error}"


BATCH_EXAMPLES = """
\b
Examples:
  engage batch lectures/ photos/ --out results                     # a local Ray on every core of this machine
  engage batch /shared/lectures --out /shared/results --address auto    # on a node of a Ray cluster
  engage batch /data/videos --out /data/results --address ray://head:10001 --every 2
"""


@app.command(epilog=BATCH_EXAMPLES)
@click.argument("sources", nargs=-1)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    metavar="RESULTS_DIR",
    help="Results folder: Parquet per source, summary.parquet, failures.parquet; a re-run resumes it.",
)
@click.option(
    "--address",
    default=None,
    help="A Ray cluster: 'auto' (on one of its nodes) or ray://HOST:PORT; default: start a local Ray on this machine.",
)
@click.option("--num-cpus", type=click.IntRange(1), default=None, help="CPUs of the local Ray (default: every core).")
@click.option(
    "--scorers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Scoring actors, each holding the model once.",
)
@click.option(
    "--segment-s",
    type=float,
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Score a video longer than this in segments of about this length, as separate Ray tasks (joined into one "
    "result with the same rows and ids as engage predict).",
)
@click.option(
    "--model", "model_name", default="engagement", show_default=True, help="A shipped model name or a model file."
)
@click.option(
    "--detector",
    type=click.Choice(["mtcnn", "yunet", "dlib", "none"]),
    default=None,
    help="Face detector (default: the model's own, else mtcnn).",
)
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@frame_options
@judgement_options
@cue_option
@device_option
def batch(
    sources: tuple[str, ...],
    out_dir: str,
    address: str | None,
    num_cpus: int | None,
    scorers: int,
    segment_s: float,
    model_name: str,
    detector: str | None,
    backend: str,
    min_confidence: float | None,
    detect_size: int | None,
    every: int,
    detect_every: int,
    smooth: float,
    base_rate: float | None,
    calibration: str | None,
    abstain: bool,
    cues: bool,
    device: str,
) -> None:
    """Score many videos and images on Ray (extra 'cluster'), here or on a cluster: Parquet results, resumable.

    Writes one row per face per frame (the columns of predict --csv) under RESULTS_DIR/faces/, one folder per
    source, plus summary.parquet and failures.parquet. Sources already complete are skipped; a source that
    fails is listed with its reason and the others go on (exit code 1 when any failed).
    """
    if not os.environ.get("ENGAGE_DEBUG"):  # Ray's own progress and notices: the command says what happened itself
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401

        from engage.cluster.runner import BatchOptions, run_batch
    except ImportError as error:
        raise EngageError(
            f"engage batch needs the extra 'cluster' ({error.name} is missing): pip install 'engage[cluster]'"
        ) from None
    if not os.environ.get("ENGAGE_DEBUG"):
        import logging

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # also when Ray Data was set up before this command
    options = BatchOptions(
        model=model_name,
        detector=detector,
        backend=backend,
        min_confidence=min_confidence,
        detect_size=detect_size,
        every=every,
        detect_every=detect_every,
        smooth=smooth,
        base_rate=base_rate,
        calibration=calibration,
        abstain=abstain,
        cues=cues,
        address=address,
        num_cpus=num_cpus,
        scorers=scorers,
        segment_s=segment_s,
        device=device,
    )
    bar = progress_bar("frames", disable=not err.is_terminal)  # frames done of those planned, frames/s, time left
    task = bar.add_task("frames", total=None, rate="")

    def show(line: str, to_stderr: bool = False) -> None:  # above the progress bar when it is on the terminal
        if to_stderr or out.is_terminal:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line)

    def on_source(summary: dict) -> None:
        faces = "no face found" if not summary["rows"] else f"{summary['faces']} face(s), {summary['rows']} row(s)"
        frames = f"{summary['frames_scored']} frame(s), " if summary["kind"] == "video" else ""
        show(f"{summary['source']}: {frames}{faces}")

    def on_failure(failure: dict) -> None:
        show(f"engage: warning: {failure['source']} failed: {failure['reason']}", to_stderr=True)

    def on_progress(state: dict) -> None:
        rate = f"{state['frames_per_s']:,.1f} frames/s" if state["frames_per_s"] else ""
        bar.update(task, completed=state["frames_done"], total=state["frames_total"], rate=rate)

    with bar:
        run = run_batch(
            list(sources), out_dir, options, on_source=on_source, on_failure=on_failure, on_progress=on_progress
        )
    rate = f", {run.frames / run.seconds:.1f} frames/s" if run.scored and run.seconds > 0 else ""
    click.echo(
        f"{len(run.scored)} source(s) scored in {run.seconds:.1f} s ({run.frames} frame(s){rate}"
        f"{'; ' + run.ray if run.ray else ''}); {len(run.skipped)} already complete, skipped"
        + (f"; {run.resumed} segment(s) of long videos kept from an earlier run" if run.resumed else "")
    )
    if run.ignored:
        click.echo(f"ignored {len(run.ignored)} file(s) that are neither images nor videos")
    click.echo(
        f"results: {out_dir}/faces/ (Parquet, one folder per source), {out_dir}/summary.parquet "
        f"({run.complete} source(s)), {out_dir}/failures.parquet ({len(run.failures)})"
    )
    if run.failures:
        raise EngageError(
            f"{len(run.failures)} of {len(run.failures) + len(run.scored) + len(run.skipped)} source(s) "
            f"failed (listed above and in {out_dir}/failures.parquet); the others are complete, and a "
            "re-run scores only what is missing"
        )


class _CtrlC:
    """Whether this process got Ctrl+C. Some libraries swallow the KeyboardInterrupt (a bare `except:` around an
    import) and fail otherwise ("module not found"): the run was still interrupted, and says so."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> NoReturn:
        cls.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every failure into one line on stderr and an exit code."""
    _CtrlC.seen = False
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, _CtrlC.handler)
    try:
        code = _run(argv)
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)
    if code not in (0, 130) and _CtrlC.seen:
        return 130  # the error line said "aborted" already (see _run)
    return code


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        code = app.main(args=argv, prog_name="engage", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as error:
        error.show(file=sys.stderr)
        return error.exit_code
    except click.exceptions.Abort:
        err.print("engage: aborted")
        return 130
    except EngageError as error:
        if debug:
            raise
        if _CtrlC.seen:
            err.print("engage: aborted")
            return 130
        print(f"engage: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except KeyboardInterrupt:
        print("engage: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as error:  # the machine, not engage: a full disk, a file-size limit, a folder it may not write
        if debug:
            raise
        if _CtrlC.seen:
            err.print("engage: aborted")
            return 130
        print(f"engage: error: {os_error_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug: keep it to one line unless asked
        if debug:
            raise
        if _CtrlC.seen:
            err.print("engage: aborted")
            return 130
        print(
            f"engage: internal error: {type(error).__name__}: {error} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
