"""The `engage` command: a thin layer over the Python API. Errors are one line on stderr, no traceback."""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engage import __version__
from engage.errors import EngageError, UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def progress_bar(description: str) -> Progress:
    return Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=err, transient=True,
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
@click.option("--detector", type=click.Choice(["mtcnn", "yunet", "dlib"]), default="mtcnn", show_default=True, help="Face detector.")
@click.option("--no-detect", is_flag=True, help="Images are already face crops: skip detection.")
@click.option("--no-face", type=click.Choice(["skip", "whole-image"]), default="skip", show_default=True,
              help="When no face is found: skip the image, or use the whole image.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None, help="Detector confidence threshold; default: the detector's own.")
@click.option("--margin", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Grow each face box by this fraction on every side.")
@click.option("--square/--no-square", default=True, show_default=True, help="Square the face box before resizing to 48x48.")
@click.option("--normalize", type=click.Choice(["standard", "paper"]), default="standard", show_default=True,
              help="Normalisation recorded for training: per-channel 'standard', or the paper's per-image 'paper' (mean 0, norm 100).")
@click.option("--label-column", default="label", show_default=True, help="Manifest column holding the label ('none': unlabelled).")
@click.option("--label-map", default=None, help="Rename labels: OLD=NEW,OLD=NEW (every label must be named).")
@click.option("--subject-pattern", default=None, help="Regex whose first group is the subject id in each file name, e.g. 'img(\\d+)_'.")
@click.option("--usage", multiple=True, type=click.Choice(["Training", "PublicTest", "PrivateTest"]),
              help="fer2013.csv splits to keep; repeatable (default: all).")
@click.option("--split", type=click.Choice(["source", "subject", "none"]), default="source", show_default=True,
              help="'subject': a new train/val split by subject; 'source': keep the source's split; 'none': drop it.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Share of images for validation with --split subject.")
@click.option("--folds", type=int, default=0, help="Also assign K subject-grouped cross-validation folds (K >= 2).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits and folds.")
@click.option("--save-crops", default=None, help="Also write each 48x48 face as a PNG into this folder.")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image instead of reporting it.")
@click.option("--workers", type=click.IntRange(0), default=0, help="Worker processes (0: one per core).")
@click.option("--force", is_flag=True, help="Ignore the cache held in an existing --out file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def preprocess(src, out_path, sample, detector, no_detect, no_face, min_confidence, margin, square, normalize,
               label_column, label_map, subject_pattern, usage, split, val_fraction, folds, seed, save_crops,
               strict, workers, force, as_json) -> None:
    """Detect, crop and normalise the faces of SRC into one 48x48 dataset file (.npz).

    SRC is an image folder (one sub-folder per class, or a flat folder), a manifest CSV
    (path,label[,subject]) or the original fer2013.csv. Re-running on the same input reuses the results.
    """
    from engage.preprocess import PreprocessOptions, run_preprocess, write_crops

    if sample == (src is not None):
        raise UsageError("give either SRC (a folder or CSV) or --sample")
    options = PreprocessOptions(
        detector=None if no_detect else detector, no_face=no_face, min_confidence=min_confidence,
        margin=margin, square=square, normalize=normalize,
        label_column=None if label_column.lower() == "none" else label_column, label_map=label_map,
        subject_pattern=subject_pattern, usages=list(usage) or None, split=split, val_fraction=val_fraction,
        folds=folds, seed=seed, strict=strict, workers=workers or None, force=force,
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


def print_preprocess_summary(result, out_path: str, crops_dir: str | None) -> None:
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
        table.add_row("folds", ", ".join(f"{f}: {int((dataset.fold == f).sum()):,}" for f in sorted(set(dataset.fold.tolist()))))
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every failure into one line on stderr and an exit code."""
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
        print(f"engage: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1
    except KeyboardInterrupt:
        print("engage: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: keep it to one line unless asked
        if debug:
            raise
        print(f"engage: internal error: {type(error).__name__}: {error} (run again with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
