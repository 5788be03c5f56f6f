"""Ship a trained model: fp16 (or int8) weights into src/engage/weights/NAME.safetensors with its model card.

    python scripts/ship_model.py --model runs/fer/best.safetensors --name fer --val fer_val.npz \
        --data "FER2013 train (28,709 faces)" --command "engage train fer ..."

The card says how the model was made (architecture, pre-processing, data and its terms, recipe, the
command) and how well the shipped weights (as stored) score on the validation data (with 95% bootstrap CIs);
it records the weights' sha256, which the loader checks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile

from engage.evaluation.evaluate import evaluate_model
from engage.models.cards import write_card
from engage.models.checkpoint import load_network, save_model
from engage.models.loading import WEIGHTS_DIR
from engage.models.networks import count_parameters
from engage.models.views import PRESETS

TERMS = (
    "Trained on research datasets under their owners' terms (academic, non-commercial use): "
    "use these weights for research and consented studies only."
)


RUN_ONLY = ("device", "threads", "save_every_s", "data", "val", "split", "val_fraction", "init", "stop_after")


def recalibrated(config: dict, crossval: dict, parser) -> dict:
    """The model's config with the calibration and decision of a cross-validation of its own recipe, measured at its
    own number of epochs: the network is unchanged, what its probabilities mean is not."""
    mine = {k: v for k, v in (config.get("train_config") or {}).items() if k not in RUN_ONLY}
    theirs = {k: v for k, v in crossval["recipe"].items() if k not in RUN_ONLY}
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:
        parser.error(f"the cross-validation is of another recipe than the model's ({', '.join(differ)} differ)")
    if crossval["chosen_epoch"] != config.get("epoch"):
        parser.error(
            f"the cross-validation calibrated epoch {crossval['chosen_epoch']}, the model was trained "
            f"{config.get('epoch')} epochs (run it with --cv-epoch {config.get('epoch')})"
        )
    decision = {
        "positive_class": (config.get("decision") or {}).get("positive_class", "engaged"),
        "threshold": crossval["threshold"],
        "rule": crossval["decision_rule"],
    }
    summary = {
        "folds": crossval["folds"],
        "chosen_epoch": crossval["chosen_epoch"],
        "cross_fitted": {
            name: {k: v for k, v in row.items() if k != "ci95"} for name, row in crossval["cross_fitted"].items()
        },
    }
    return dict(config, calibration=crossval["calibration"], decision=decision, crossval=summary)


def base_rate_section(config: dict, crossval: dict | None) -> dict:
    """What p means: the base rate its calibration assumes, and each training set's own share of positives."""
    calibration = config.get("calibration") or {}
    if calibration.get("base_rate") is None:
        return {}
    shares = {name: row["positive_share"] for name, row in (crossval or {}).get("cross_fitted", {}).items()}
    return {
        "base_rate": {
            "default": calibration["base_rate"],
            "meaning": "p_engaged is calibrated for this share of on-task faces (0.5: as many on-task as off-task), so "
            "0.5 is the decision point; --base-rate R re-weights it to a site's share by the prior-shift "
            "correction (odds x R / (1 - R) / (R0 / (1 - R0))) and the label follows",
            "training_shares": shares,
        }
    }


def attached(key: str, path: str | None, keys: tuple[str, ...] | None) -> dict:
    """A measured section for the card, from a script's JSON report (only the named keys, without per-face rows)."""
    if not path:
        return {}
    with open(path) as handle:
        report = json.load(handle)
    if keys is not None:
        report = {k: report[k] for k in keys if k in report}
        for detector in (report.get("det_conf") or {}).values():  # the summary, not every face's confidence
            for bulky in ("real_confidences", "false_confidences", "rows"):
                detector.pop(bulky, None)
    else:  # one entry per site: its summary, not its rotations one by one
        report = {name: {k: v for k, v in value.items() if k != "rows"} for name, value in report.items()}
    return {key: report}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="best.safetensors of a training run")
    parser.add_argument("--name", required=True, help="shipped name (fer, engagement, ...)")
    parser.add_argument("--val", default=None, help="validation dataset (.npz) the card's figures come from")
    parser.add_argument(
        "--crossval",
        default=None,
        help="crossval.json of 'engage train --cv': the card's figures are its cross-fitted ones",
    )
    parser.add_argument("--meaning", default=None, help="what the positive class means, in words")
    parser.add_argument(
        "--mapping",
        action="append",
        default=[],
        help="DATASET=how its labels map to the classes (repeatable; one per data set trained on)",
    )
    parser.add_argument("--label-map", default=None, help="label map for --val (as engage evaluate)")
    parser.add_argument("--split", default=None, help="score only --val's faces of this split (e.g. val)")
    parser.add_argument("--task", required=True, help="one line: what the model predicts")
    parser.add_argument("--data", required=True, help="training data, in words")
    parser.add_argument("--validation", required=True, help="validation data, in words")
    parser.add_argument("--command", action="append", required=True, help="a command that made it (repeatable)")
    parser.add_argument("--note", action="append", default=[], help="a remark for the card (repeatable)")
    parser.add_argument(
        "--test-time-flip",
        action="store_true",
        help="average each face's logits with its mirror image's (recorded in the model's config)",
    )
    parser.add_argument(
        "--test-time-views",
        choices=sorted(PRESETS),
        default=None,
        help="also average over these shifted / zoomed views (engage.views; recorded in the config)",
    )
    parser.add_argument(
        "--storage",
        choices=("float16", "int8"),
        default="float16",
        help="how the weights are stored: float16, or int8 per output channel (half the size)",
    )
    parser.add_argument(
        "--calibration-from",
        action="store_true",
        help="with --crossval: give --model the calibration and decision of that cross-validation (run "
        "of the same recipe at the model's own number of epochs, e.g. with --cv-epoch), instead of "
        "requiring that it already has them",
    )
    parser.add_argument(
        "--abstention",
        default=None,
        help="report.json of scripts/abstention.py: the quality thresholds and how they were chosen",
    )
    parser.add_argument(
        "--site-calibration",
        default=None,
        help="the JSON of scripts/site_calibration.py: how far a few students' frames correct a site",
    )
    args = parser.parse_args()
    if not args.val and not args.crossval:
        parser.error("give --val (a validation dataset) or --crossval (a cross-validation report)")
    if args.crossval and (args.test_time_flip or args.test_time_views or args.storage == "int8"):
        parser.error(
            "--crossval figures, calibration and threshold were measured on one fp32/fp16 view: "
            "test-time views or int8 would ship a model they do not describe"
        )

    network, config = load_network(args.model)
    crossval = None
    if args.crossval:
        with open(args.crossval) as handle:
            crossval = json.load(handle)
        if args.calibration_from:
            config = recalibrated(config, crossval, parser)
        recorded = (config.get("epoch"), (config.get("decision") or {}).get("threshold"), config.get("calibration"))
        if recorded != (crossval["chosen_epoch"], crossval["threshold"], crossval["calibration"]):
            parser.error(f"{args.model} is not the model of {args.crossval} (epoch, threshold and calibration differ)")
    if args.test_time_flip:
        config = dict(config, test_time_flip=True)
    if args.test_time_views:
        config = dict(config, test_time_views=[list(view) for view in PRESETS[args.test_time_views]])
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    target = os.path.join(WEIGHTS_DIR, f"{args.name}.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        staged = os.path.join(tmp, os.path.basename(target))
        save_model(staged, network, config, storage=args.storage)
        report = (
            evaluate_model(
                staged, args.val, split=args.split, label_map=args.label_map, n_boot=1000, log=lambda line: None
            )
            if args.val
            else None
        )
        os.replace(staged, target)
    figures = (
        {
            key: report[key]
            for key in (
                "n",
                "accuracy",
                "balanced_accuracy",
                "macro_f1",
                "f1",
                "auc",
                "ece",
                "per_class_recall",
                "confusion_matrix",
                "ci95",
                "ci_method",
                "f1_definition",
                "decision",
            )
            if key in report
        }
        if report
        else {}
    )
    if crossval:
        figures = {
            "cross_validation": {
                key: crossval[key]
                for key in (
                    "folds",
                    "method",
                    "epoch_rule",
                    "calibration_rule",
                    "decision_rule",
                    "chosen_epoch",
                    "threshold",
                    "base_rate",
                    "best_balanced_accuracy_threshold",
                    "calibration",
                    "cross_fitted",
                    "cross_fitted_per_fold",
                    "not_cross_fitted",
                    "uncalibrated_at_0.5",
                    "epoch_curve_per_corpus",
                )
                if key in crossval
            },
            **figures,
        }
    train_config = config.get("train_config", {})
    card = {
        "name": args.name,
        "task": args.task,
        "classes": config["class_names"],
        "architecture": {
            "model": config["model"],
            "model_args": config.get("model_args", {}),
            "parameters": count_parameters(network),
            "dtype": f"{args.storage} (computed in float32)",
            "test_time_flip": bool(config.get("test_time_flip")),
            "test_time_views": config.get("test_time_views", []),
        },
        "preprocessing": config.get("face_settings", {}),
        "meaning": args.meaning,
        "decision": config.get("decision") or {"positive_class": None, "threshold": 0.5, "rule": "default: 0.5"},
        "calibration": config.get("calibration"),
        "label_mapping": dict(item.split("=", 1) for item in args.mapping),
        "training": {
            "data": args.data,
            "terms": TERMS,
            "recipe": train_config,
            "best_epoch": config.get("epoch", config.get("metrics", {}).get("epoch")),
            "commands": args.command,
        },
        "validation": {
            "data": args.validation,
            **figures,
            "subjects": sorted((report or {}).get("per_subject", {})),
            "per_subject": (report or {}).get("per_subject", {}),
        },
        "notes": args.note,
        **base_rate_section(config, crossval),
        **attached("abstention", args.abstention, ("chosen", "size", "sharpness", "det_conf", "turn", "coverage")),
        **attached("site_calibration", args.site_calibration, None),
        "date": datetime.date.today().isoformat(),
        "intended_use": "research and consented studies; not for judging, grading or monitoring people",
    }
    card = write_card(target, card)
    summary = (
        f"validation accuracy {report['accuracy']:.4f} [{report['ci95']['accuracy'][0]:.4f}, "
        f"{report['ci95']['accuracy'][1]:.4f}]" + (f", auc {report['auc']:.4f}" if "auc" in report else "")
        if report
        else "cross-validated figures in the card"
    )
    print(f"shipped {target} ({card['size_bytes'] / 1e6:.1f} MB, sha256 {card['sha256'][:12]}...): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
