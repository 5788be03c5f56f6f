"""Fit and measure the cue head (engage.models.cue_head): the attention cues combined with the appearance score,
the ablation per cue on subject-grouped folds, the behaviour checks, and the head the shipped model carries.

    python scripts/attention_cues.py                 # the cues of every face (runs/cues)
    python scripts/attention_model.py [--out runs/attention]

Appearance: the shipped recipe's out-of-fold scores (--cv: runs/cv-landmarks/oof.npz, 5 subject folds over WACV
and DAiSEE; runs/cv-engagement for the previous network), so every score a head sees for a face came from a network that never saw that face's subject; the head of
fold k is fitted on the other folds' faces only. Signs are constrained (a cue can only lower the score); the veto
strength (the least weight past the normal range) is the smallest that meets the behaviour goals on the behaviour
sets' fitting half (split by `group`), measured on the other half. Writes report.json and head.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score

from engage.evaluation.calibration import balanced_weights, binary_ece
from engage.evaluation.metrics import resamples
from engage.faces.cues import CUE_COLUMNS
from engage.models.calibration import logit, sigmoid
from engage.models.cue_head import CueHead, CueTerm

GROUPS = {  # the ablation's cue groups: (cue, kind)
    "pose": (("yaw", "abs"), ("pitch", "abs"), ("roll", "abs")),
    "gaze": (("gaze_yaw", "abs"), ("gaze_pitch", "abs")),
    "eyes": (("eyes_open", "below"),),
    "mouth": (("mouth_open", "above"), ("jaw_drop", "above")),
}
# the cues whose weight past the normal range is at least the veto strength: behaviours the development sets hardly
# hold (eyes closing, a yawn, a head tilted aside). A yawn is vetoed by the jaw's drop, not the lips' gap, which a
# broad smile opens too. Yaw, pitch and gaze also move with where the camera sits (a
# camera to one side turns every face), so their weights are learned only (signs constrained).
VETO_CUES = ("roll", "eyes_open", "jaw_drop")
NORMAL = 99.0  # the normal range: the percentile of on-task training faces' deviation
VETOES = (0.0, 1.0, 2.0, 4.0, 8.0)  # veto strengths tried (logit per normal range past it)
L2 = 1e-3
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_dev(runs: Path, cues_dir: Path, cv: Path) -> dict:
    oof = np.load(cv / "oof.npz", allow_pickle=True)
    cues, paths, sizes = [], [], []
    for name in ("wacv", "daisee_train", "daisee_val"):
        data = np.load(cues_dir / f"{name}.npz", allow_pickle=True)
        cues.append(data["cues"])
        paths.extend(data["paths"])
        meta = json.loads(str(np.load(runs / "data" / f"{name}.npz", allow_pickle=True)["meta"]))
        sizes.extend(
            cv2.imread(str(Path(meta["root"]) / path), cv2.IMREAD_UNCHANGED).shape[0] for path in data["paths"]
        )
    if list(paths) != list(oof["paths"]):
        raise SystemExit("the cues and the out-of-fold scores hold different faces")
    corpus = np.array(["wacv" if c == "wacv" else "daisee" for c in oof["corpus"]])
    daisee_val = np.zeros(len(paths), bool)
    daisee_val[3404 + 5358 :] = True
    wacv_level = np.array([int(p.split("/")[1][0]) if c == "wacv" else -1 for p, c in zip(oof["paths"], corpus)])
    return {
        "cues": np.concatenate(cues),
        "labels": oof["labels"],
        "fold": oof["fold"],
        "subjects": oof["subjects"],
        "corpus": corpus,
        "appearance": logit(oof["calibrated"][:, 1]),
        "small_crop": np.array(sizes) == 100,
        "daisee_val": daisee_val,
        "wacv_level": wacv_level,
    }


def load_behaviour(cues_dir: Path) -> dict:
    sets = {}
    for name in ("yawn", "closed_eyes"):
        data = np.load(cues_dir / f"{name}.npz", allow_pickle=True)
        found = np.isfinite(data["p_engaged"])
        fitting = np.array([zlib.crc32(group.encode()) % 2 == 0 for group in data["groups"]])
        sets[name] = {
            "cues": data["cues"][found],
            "appearance": logit(data["p_engaged"][found]),
            "labels": data["labels"][found],
            "fitting": fitting[found],
            "predicted": data["predicted"][found],
            "images": len(found),
        }
    return sets


def make_terms(cues: np.ndarray, on_task: np.ndarray, groups: list[str]) -> list[CueTerm]:
    """Each cue's center (median) and normal range (99th percentile of deviation) among on-task faces."""
    terms = []
    for group in groups:
        for cue, kind in GROUPS[group]:
            values = cues[on_task, CUE_COLUMNS.index(cue)]
            values = values[np.isfinite(values)]
            center = float(np.median(values))
            distance = {
                "abs": np.abs(values - center),
                "below": np.maximum(0, center - values),
                "above": np.maximum(0, values - center),
            }[kind]
            terms.append(
                CueTerm(cue, kind, round(center, 4), round(float(np.percentile(distance, NORMAL)), 4), 0.0, 0.0)
            )
    return terms


def fit_head(cues, appearance, labels, weights, terms: list[CueTerm], veto: float) -> CueHead:
    """Scale, bias and the terms' weights by weighted logistic regression, weights <= 0 and past the normal range
    <= -veto."""
    known = np.isfinite(cues).all(axis=1)
    features = [np.zeros((len(cues), 2)) for _ in terms]
    for f, term in zip(features, terms):
        f[known] = term.features(cues[known, CUE_COLUMNS.index(term.cue)])
    design = (
        np.column_stack([appearance, np.ones(len(cues)), *features])
        if terms
        else np.column_stack([appearance, np.ones(len(cues))])
    )
    y = np.asarray(labels, np.float64)
    w = weights / weights.sum()

    def loss(theta):
        z = design @ theta
        p = sigmoid(z)
        value = -np.sum(w * (y * np.log(np.clip(p, 1e-12, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-12, 1))))
        value += L2 * np.sum(theta[2:] ** 2)
        gradient = design.T @ (w * (p - y))
        gradient[2:] += 2 * L2 * theta[2:]
        return value, gradient

    floors = [veto if t.cue in VETO_CUES else 0.0 for t in terms]
    bounds = [(0.05, 20.0), (None, None)] + [b for floor in floors for b in ((None, 0.0), (None, -floor))]
    start = np.r_[1.0, 0.0, [v for floor in floors for v in (0.0, -floor)]]
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
    fitted = [
        CueTerm(
            t.cue,
            t.kind,
            t.center,
            t.bound,
            round(float(min(0.0, theta[2 + 2 * i])), 4),
            round(float(min(0.0, theta[3 + 2 * i])), 4),
        )
        for i, t in enumerate(terms)
    ]
    return CueHead(CUE_COLUMNS, tuple(fitted), round(float(theta[0]), 5), round(float(theta[1]), 5))


def out_of_fold(dev: dict, groups: list[str], veto: float) -> tuple[np.ndarray, list[CueHead]]:
    """Each face's fused logit from the head fitted on the other folds."""
    fused, heads = np.zeros(len(dev["labels"])), []
    for fold in np.unique(dev["fold"]):
        train, test = dev["fold"] != fold, dev["fold"] == fold
        terms = make_terms(dev["cues"][train], train[train] & (dev["labels"][train] == 1), groups)
        weights = balanced_weights(dev["labels"][train], dev["corpus"][train])
        head = fit_head(dev["cues"][train], dev["appearance"][train], dev["labels"][train], weights, terms, veto)
        fused[test] = head.logit(dev["appearance"][test], dev["cues"][test])
        heads.append(head)
    return fused, heads


def scores(labels, score, subjects, boot: int = 300) -> dict:
    """AUC and balanced accuracy (at 0.5) with 95% CIs over subjects; ECE of p at the balanced rate."""
    labels = np.asarray(labels)
    p = sigmoid(score)

    def both(index):
        y, q = labels[index], p[index]
        return roc_auc_score(y, q), 0.5 * (np.mean(q[y == 1] >= 0.5) + np.mean(q[y == 0] < 0.5))

    auc, bal = both(np.arange(len(labels)))
    draws = np.array([both(index) for index in resamples(labels, subjects, boot)])
    ece = binary_ece(labels == 1, p, weights=balanced_weights(labels))
    return {
        "auc": round(float(auc), 4),
        "auc_ci": [round(float(v), 4) for v in np.percentile(draws[:, 0], [2.5, 97.5])],
        "balanced_accuracy": round(float(bal), 4),
        "balanced_accuracy_ci": [round(float(v), 4) for v in np.percentile(draws[:, 1], [2.5, 97.5])],
        "ece_balanced": round(float(ece), 4),
        "faces": len(labels),
    }


def dev_report(dev: dict, fused: np.ndarray) -> dict:
    sets = {
        "wacv": dev["corpus"] == "wacv",
        "wacv_100px": (dev["corpus"] == "wacv") & dev["small_crop"],
        "daisee": dev["corpus"] == "daisee",
        "daisee_val": dev["daisee_val"],
    }
    report = {name: scores(dev["labels"][m], fused[m], dev["subjects"][m]) for name, m in sets.items()}
    wacv = dev["corpus"] == "wacv"
    folds = [
        roc_auc_score(dev["labels"][wacv & (dev["fold"] == k)], fused[wacv & (dev["fold"] == k)])
        for k in np.unique(dev["fold"][wacv])
    ]
    report["wacv"]["fold_mean_auc"] = round(float(np.mean(folds)), 4)
    paper = wacv & (dev["wacv_level"] >= 0)
    report["wacv_paper_split"] = {"auc": round(float(roc_auc_score(dev["wacv_level"][paper] == 2, fused[paper])), 4)}
    return report


def behaviour_report(sets: dict, head: CueHead | None, half: bool) -> dict:
    """On the behaviour sets (the held-out half of groups when half): yawn vs not by p_engaged and mouth_open;
    closed eyes: share labelled disengaged (p < 0.5) or uncertain, and eyes_open against open-eyed faces."""

    def fused(data, mask):
        appearance = data["appearance"][mask]
        return appearance if head is None else head.logit(appearance, data["cues"][mask])

    yawn = sets["yawn"]
    mask = ~yawn["fitting"] if half else np.ones(len(yawn["labels"]), bool)
    is_yawn = yawn["labels"][mask] == "yawn"
    mouth = yawn["cues"][mask, CUE_COLUMNS.index("mouth_open")]
    known = np.isfinite(mouth)
    closed = sets["closed_eyes"]
    cmask = ~closed["fitting"] if half else np.ones(len(closed["labels"]), bool)
    p_closed = sigmoid(fused(closed, cmask))
    uncertain = closed["predicted"][cmask] == "uncertain"
    return {
        "yawn_p_engaged_auc": round(float(roc_auc_score(is_yawn, -fused(yawn, mask))), 4),
        "yawn_mouth_open_auc": round(float(roc_auc_score(is_yawn[known], mouth[known])), 4),
        "yawn_faces": int(mask.sum()),
        "closed_disengaged_or_uncertain": round(float(np.mean((p_closed < 0.5) | uncertain)), 4),
        "closed_faces": int(cmask.sum()),
    }


def format_confound(dev: dict) -> dict:
    """Per cue, on WACV: how well it tells the image format (100x100 gray crops against the larger colour ones; the
    deviation the head uses, |cue - on-task median| or one-sided) and how well it tells off task within each format."""
    wacv = (dev["corpus"] == "wacv") & np.isfinite(dev["cues"]).all(axis=1)
    small, labels = dev["small_crop"][wacv], dev["labels"][wacv]
    rows = {}
    for group in GROUPS.values():
        for cue, kind in group:
            values = dev["cues"][wacv, CUE_COLUMNS.index(cue)]
            center = np.median(values[labels == 1])
            deviation = {"abs": np.abs(values - center), "below": center - values, "above": values - center}[kind]
            tells = roc_auc_score(small, deviation)
            rows[cue] = {
                "tells_format": round(float(max(tells, 1 - tells)), 4),
                "off_task_within_100px": round(float(roc_auc_score(labels[small] == 0, deviation[small])), 4),
                "off_task_within_colour": round(float(roc_auc_score(labels[~small] == 0, deviation[~small])), 4),
            }
    return rows


def eyes_auc(dev: dict, sets: dict) -> float:
    """eyes_open: closed-eye faces against the open-eyed faces of the engagement sets (all of them)."""
    closed = sets["closed_eyes"]["cues"][:, CUE_COLUMNS.index("eyes_open")]
    opened = dev["cues"][:, CUE_COLUMNS.index("eyes_open")]
    closed, opened = closed[np.isfinite(closed)], opened[np.isfinite(opened)]
    return round(float(roc_auc_score(np.r_[np.ones(len(closed)), np.zeros(len(opened))], -np.r_[closed, opened])), 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--cues", default="runs/cues")
    parser.add_argument(
        "--cv",
        default="runs/cv-landmarks",
        help="the cross-validation run whose out-of-fold scores are the appearance (engage train --cv)",
    )
    parser.add_argument("--out", default="runs/attention")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print docs/RESULTS.md's tables from an earlier run's report.json (no fitting)",
    )
    parser.add_argument(
        "--ship",
        default=None,
        metavar="NAME",
        help="also give the shipped model NAME (engagement) this head: its tensors unchanged, the head "
        "in its config and card",
    )
    args = parser.parse_args()
    out = Path(args.out)
    if args.markdown:
        print(markdown(json.loads((out / "report.json").read_text())))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    dev, sets = load_dev(Path(args.runs), Path(args.cues), Path(args.cv)), load_behaviour(Path(args.cues))
    everything = list(GROUPS)
    report = {
        "landmarks_found": {
            name: round(float(np.isfinite(dev["cues"][dev["corpus"] == name, 0]).mean()), 4)
            for name in ("wacv", "daisee")
        },
        "eyes_open_auc_closed_vs_engagement_sets": eyes_auc(dev, sets),
        "format_confound": format_confound(dev),
    }

    # the veto strength: the smallest that meets the behaviour goals on the fitting half of the behaviour groups
    vetoes = {}
    for veto in VETOES:
        fused, _heads = out_of_fold(dev, everything, veto)
        terms = make_terms(dev["cues"], dev["labels"] == 1, everything)
        head = fit_head(
            dev["cues"], dev["appearance"], dev["labels"], balanced_weights(dev["labels"], dev["corpus"]), terms, veto
        )
        fitting = {
            **sets,
            "yawn": {**sets["yawn"], "fitting": ~sets["yawn"]["fitting"]},
            "closed_eyes": {**sets["closed_eyes"], "fitting": ~sets["closed_eyes"]["fitting"]},
        }
        vetoes[veto] = {
            "dev": dev_report(dev, fused),
            "behaviour_fitting_half": behaviour_report(fitting, head, True),
            "head": head,
        }
        print(f"veto {veto}: {json.dumps({k: v for k, v in vetoes[veto].items() if k != 'head'})}", flush=True)
    meets = [
        v
        for v in VETOES
        if vetoes[v]["behaviour_fitting_half"]["yawn_p_engaged_auc"] >= 0.90
        and vetoes[v]["behaviour_fitting_half"]["closed_disengaged_or_uncertain"] >= 0.95
    ]
    veto = meets[0] if meets else VETOES[-1]
    report["veto"] = {
        "chosen": veto,
        "met_goals_on_fitting_half": bool(meets),
        "tried": {
            str(v): {"dev": r["dev"], "behaviour_fitting_half": r["behaviour_fitting_half"]} for v, r in vetoes.items()
        },
    }

    # the ablation: appearance only, each cue group alone, all
    rows = {"appearance only": [], **{f"+ {group}": [group] for group in GROUPS}, "all cues": everything}
    report["ablation"] = {}
    for name, groups in rows.items():
        fused, _heads = out_of_fold(dev, groups, veto)
        full = fit_head(
            dev["cues"],
            dev["appearance"],
            dev["labels"],
            balanced_weights(dev["labels"], dev["corpus"]),
            make_terms(dev["cues"], dev["labels"] == 1, groups),
            veto,
        )
        report["ablation"][name] = {
            "dev": dev_report(dev, fused),
            "behaviour_held_out_half": behaviour_report(sets, full, True),
            "head": full.to_dict(),
        }
        print(f"{name}: {json.dumps(report['ablation'][name]['dev'])}", flush=True)
    report["appearance_alone_behaviour_held_out_half"] = behaviour_report(sets, None, True)
    shipped = CueHead.from_dict(report["ablation"]["all cues"]["head"])
    (out / "head.json").write_text(json.dumps(shipped.to_dict(), indent=1) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("ablation", "veto")}, indent=1))
    if args.ship:
        ship(args.ship, shipped, report)
    return 0


def _cell(row: dict, key: str = "auc") -> str:
    ci = row.get(f"{key}_ci")
    return f"{100 * row[key]:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * row[key]:.1f}"


def markdown(report: dict) -> str:
    """docs/RESULTS.md's ablation, veto and behaviour tables from report.json."""
    lines = [
        "| cues | WACV AUC | WACV bal. acc. | WACV fold-mean AUC | WACV 100x100 crops AUC | DAiSEE AUC | "
        "DAiSEE bal. acc. | DAiSEE val students AUC | DAiSEE val bal. acc. | WACV paper split AUC | "
        "ECE WACV / DAiSEE | yawn: p_engaged AUC | closed eyes: disengaged or uncertain |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["ablation"].items():
        dev, behaviour = row["dev"], row["behaviour_held_out_half"]
        lines.append(
            f"| {name} | {_cell(dev['wacv'])} | {_cell(dev['wacv'], 'balanced_accuracy')} | "
            f"{100 * dev['wacv']['fold_mean_auc']:.1f} | {_cell(dev['wacv_100px'])} | {_cell(dev['daisee'])} | "
            f"{_cell(dev['daisee'], 'balanced_accuracy')} | {_cell(dev['daisee_val'])} | "
            f"{_cell(dev['daisee_val'], 'balanced_accuracy')} | {100 * dev['wacv_paper_split']['auc']:.1f} | "
            f"{dev['wacv']['ece_balanced']:.3f} / {dev['daisee']['ece_balanced']:.3f} | "
            f"{100 * behaviour['yawn_p_engaged_auc']:.1f} | {100 * behaviour['closed_disengaged_or_uncertain']:.1f}% |"
        )
    alone = report["appearance_alone_behaviour_held_out_half"]
    lines += [
        "",
        f"Appearance alone (the network's score, no head) on the held-out half: yawn p_engaged AUC "
        f"{100 * alone['yawn_p_engaged_auc']:.1f}, closed eyes disengaged or uncertain "
        f"{100 * alone['closed_disengaged_or_uncertain']:.1f}%; mouth_open tells yawns at AUC "
        f"{100 * alone['yawn_mouth_open_auc']:.1f}; eyes_open tells the closed-eye faces from all faces of the "
        f"engagement sets at AUC {100 * report['eyes_open_auc_closed_vs_engagement_sets']:.1f}. Landmarks found on "
        f"{100 * report['landmarks_found']['wacv']:.1f}% of WACV's and {100 * report['landmarks_found']['daisee']:.1f}% "
        "of DAiSEE's faces.",
        "",
        "| veto strength | WACV AUC | DAiSEE AUC | DAiSEE val AUC | yawn p_engaged AUC (fitting half) | "
        "closed eyes disengaged or uncertain (fitting half) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for veto, row in report["veto"]["tried"].items():
        dev, behaviour = row["dev"], row["behaviour_fitting_half"]
        mark = " (**chosen**)" if float(veto) == report["veto"]["chosen"] else ""
        lines.append(
            f"| {veto}{mark} | {100 * dev['wacv']['auc']:.1f} | {100 * dev['daisee']['auc']:.1f} | "
            f"{100 * dev['daisee_val']['auc']:.1f} | {100 * behaviour['yawn_p_engaged_auc']:.1f} | "
            f"{100 * behaviour['closed_disengaged_or_uncertain']:.1f}% |"
        )
    lines += [
        "",
        "Format confound (WACV): how well each cue's deviation tells the 100x100 gray crops from the larger "
        "colour ones (ROC AUC, either way), and how well it tells off-task faces within each format:",
        "",
        "| cue | tells the format | off task, within 100x100 | off task, within colour |",
        "| --- | --- | --- | --- |",
    ]
    for cue, row in report["format_confound"].items():
        lines.append(
            f"| {cue} | {100 * row['tells_format']:.1f} | {100 * row['off_task_within_100px']:.1f} | "
            f"{100 * row['off_task_within_colour']:.1f} |"
        )
    head = report["ablation"]["all cues"]["head"]
    lines += [
        "",
        f"The shipped head: scale {head['scale']}, bias {head['bias']}.",
        "",
        "| cue | deviation | on-task centre | normal range (99%) | weight within | weight past |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for term in head["terms"]:
        lines.append(
            f"| {term['cue']} | {term['kind']} | {term['center']} | {term['bound']} | {term['inside']} | "
            f"{term['beyond']} |"
        )
    return "\n".join(lines)


def ship(name: str, head: CueHead, report: dict) -> None:
    """Put the head into the shipped model's config (the network's tensors unchanged) and describe it on its card."""
    from engage.models.cards import read_card, write_card
    from engage.models.checkpoint import rewrite_config
    from engage.models.loading import resolve_model

    path = resolve_model(name)
    card = read_card(path)
    rewrite_config(path, path, cue_head=head.to_dict())
    all_cues = report["ablation"]["all cues"]
    cut = (
        "the landmark box (the box the face mesh places; the detector's box when the mesh finds no face)"
        if (card.get("preprocessing") or {}).get("box") == "landmarks"
        else "the detector's box"
    )
    card["inputs"] = {
        "face": f"the 48x48 gray crop of {cut} (preprocessing), scored by the network",
        "cues": "head pose (yaw, pitch, roll), gaze (gaze_yaw, gaze_pitch), eye opening (eyes_open), mouth opening "
        "(mouth_open) and jaw drop (jaw_drop), measured from MediaPipe's face mesh and iris landmarks on the "
        "detector's box in the original image (engage.faces.cues); a face without landmarks is scored on its "
        "crop alone",
    }
    card["cue_head"] = {
        **head.to_dict(),
        "meaning": "logit(p_engaged) = scale * logit(p_appearance) + bias + the cues' shifts; every weight <= 0 "
        "(a turned, closed-eyed, tilted or yawning face can only score lower); past the normal range "
        f"(99% of on-task training faces) roll, eye closing and the jaw's drop weigh at least {report['veto']['chosen']} "
        "per range (the veto), chosen on half of the behaviour sets' groups",
        "fitted_on": "the shipped recipe's out-of-fold scores on WACV and DAiSEE (5 subject folds), balanced weights",
        "out_of_fold": {k: all_cues["dev"][k] for k in ("wacv", "wacv_100px", "daisee", "daisee_val")},
        "appearance_only_out_of_fold": {
            k: report["ablation"]["appearance only"]["dev"][k] for k in ("wacv", "wacv_100px", "daisee", "daisee_val")
        },
        "behaviour_held_out_half": all_cues["behaviour_held_out_half"],
        "command": "python scripts/attention_cues.py && python scripts/attention_model.py --cv runs/cv-landmarks "
        "--ship engagement",
    }
    write_card(path, card)
    print(f"{name}: cue head written into {path} and its card")


if __name__ == "__main__":
    sys.exit(main())
