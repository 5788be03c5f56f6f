"""Choose the thresholds of abstention (engage.faces.quality) on validation data, and show why.

    python scripts/abstention.py --cv runs/cv-engagement --data runs/data [--out runs/abstention/report.json]

--cv is a finished `engage train engagement --cv 5` run of the shipped recipe (its folds' models and oof.npz);
--data holds the dataset files it was trained on (wacv.npz, daisee_train.npz, daisee_val.npz, cut by MTCNN with the
shipped settings). Every figure comes from faces scored by the model of the fold that did not train on them.

1. Size: every face is shrunk to S pixels (the image downscaled, the box with it) and cut as predict cuts it; the
   threshold is the smallest S at which the fold models keep at least half of their skill, (AUC - 0.5) / (AUC of the
   same faces unshrunk - 0.5) >= 0.5, averaged over the two data sets.
2. Sharpness: every face is blurred (Gaussian, sigma a fraction of the face's width) and cut; the crops are binned
   by their measured sharpness, and the threshold is the upper edge of the bins where the skill is below half.
3. Detector confidence: MTCNN and YuNet on every WACV, DAiSEE and YawDD image (one person each): the biggest face is
   the person, any other box that does not overlap it is a false face. The threshold is the lowest confidence above
   which real faces outnumber false ones in every 0.01 band.
4. Head turn: the out-of-fold faces by turn, with their share of off-task faces and the model's recall of each class:
   turned faces are mostly off task, and the model judges them, so abstention must not remove them; the threshold
   is set beyond the turns where the landmarks still follow a face.
Each threshold is printed beside the one in engage.faces.quality.THRESHOLDS.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
FILES = ("wacv.npz", "daisee_train.npz", "daisee_val.npz")
SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 64)
BLURS = (0.0, 0.01, 0.02, 0.03, 0.045, 0.06, 0.08, 0.11, 0.15)  # Gaussian sigma, as a fraction of the face width
SKILL_KEPT = 0.5


def load(args):
    from engage.data.dataset import FaceDataset, concatenate

    paths = [os.path.join(args.data, name) for name in FILES]
    datasets = [FaceDataset.load(path) for path in paths]
    data = concatenate(datasets, paths)
    roots = np.concatenate([np.full(len(d), d.meta["root"], dtype=object) for d in datasets])
    with np.load(os.path.join(args.cv, "oof.npz"), allow_pickle=False) as oof:
        fold = oof["fold"]
        calibrated = oof["calibrated"]
        assert np.array_equal(oof["paths"], data.paths), "oof.npz was made from other data files"
    return data, roots, fold, calibrated


def fold_models(cv: str, folds: int):
    from engage.models.loading import load_model

    return [load_model(os.path.join(cv, f"fold{k + 1}", "last.safetensors")) for k in range(folds)]


def auc(labels, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, p)) if len(np.unique(labels)) == 2 else float("nan")


def picked_faces(data, seed: int = 0):
    """Per data set, every off-task face that was detected and as many on-task ones, drawn at random."""
    rng = np.random.default_rng(seed)
    engaged = np.array(data.class_names)[data.labels] == "engaged"
    chosen = []
    for corpus in data.corpora:
        mine = (data.corpus == corpus) & (data.face_source == "detected")
        off, on = np.flatnonzero(mine & ~engaged), np.flatnonzero(mine & engaged)
        chosen += list(off) + list(rng.choice(on, min(len(on), len(off)), replace=False))
    return np.array(sorted(chosen))


def degraded_scores(data, roots, fold, models, picked, degrade, levels):
    """For each level, the crops of the picked faces after `degrade(rgb, box, level)` -> (rgb, box): p(engaged)
    from the face's own fold model, and each crop's measured size and sharpness."""
    from engage.faces.crop import FaceSettings
    from engage.faces.detect import FaceBox
    from engage.faces.quality import sharpness
    from engage.inference.predictor import crop_faces
    from engage.io.images import read_image

    settings = FaceSettings.from_dict(models[0].face_settings)
    crops = {level: [] for level in levels}
    sizes = {level: [] for level in levels}
    for i in picked:
        rgb = read_image(os.path.join(roots[i], data.paths[i]))
        box = FaceBox(*(int(v) for v in data.boxes[i]), float(data.det_conf[i]))
        for level in levels:
            image, moved = degrade(rgb, box, level)
            crops[level].append(crop_faces(image, [moved], settings)[0])
            sizes[level].append(min(moved.w, moved.h))
    result = {}
    for level in levels:
        faces = np.stack(crops[level])
        p = np.zeros(len(picked))
        for k, model in enumerate(models):
            mine = fold[picked] == k
            if mine.any():
                p[mine] = model.predict_proba(faces[mine])[:, model.class_names.index("engaged")]
        result[level] = {
            "p": p,
            "sharpness": np.array([sharpness(face) for face in faces]),
            "size": np.array(sizes[level], float),
        }
    return result


def shrink(rgb, box, size):
    import cv2

    from engage.faces.detect import FaceBox

    factor = min(1.0, size / min(box.w, box.h))
    if factor >= 1.0:
        return rgb, box
    small = cv2.resize(
        rgb, (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor))), interpolation=cv2.INTER_AREA
    )
    return small, FaceBox(
        round(box.x * factor),
        round(box.y * factor),
        max(2, round(box.w * factor)),
        max(2, round(box.h * factor)),
        box.confidence,
    )


def blur(rgb, box, sigma_fraction):
    import cv2

    if sigma_fraction <= 0:
        return rgb, box
    sigma = sigma_fraction * box.w
    return cv2.GaussianBlur(rgb, (0, 0), sigma), box


def skill(labels, p, p_clean):
    clean = auc(labels, p_clean)
    return (auc(labels, p) - 0.5) / (clean - 0.5) if clean > 0.5 else float("nan")


def size_analysis(data, labels, picked, scores):
    rows, corpora = [], data.corpora
    for size in SIZES:
        row = {"size_px": size}
        for corpus in corpora:
            mine = data.corpus[picked] == corpus
            row[corpus] = {
                "auc": auc(labels[mine], scores[size]["p"][mine]),
                "skill_kept": skill(labels[mine], scores[size]["p"][mine], scores[max(SIZES)]["p"][mine]),
            }
        row["skill_kept"] = float(np.nanmean([row[c]["skill_kept"] for c in corpora]))
        rows.append(row)
    return choose_size({"rows": rows})


def choose_size(report: dict) -> dict:
    rows = report["rows"]
    threshold = max(SIZES)
    for row in reversed(rows):  # the smallest size from which every larger size keeps half the skill
        if not row["skill_kept"] >= SKILL_KEPT:
            break
        threshold = row["size_px"]
    return {
        **report,
        "threshold": threshold,
        "rule": f"smallest face size (px) from which on the fold models keep >= {SKILL_KEPT} of their skill "
        "((AUC - 0.5) / (AUC of the same faces unshrunk - 0.5)), mean over the data sets, at every size",
    }


def sharpness_analysis(data, labels, picked, scores):
    corpora = data.corpora
    values = np.concatenate([scores[level]["sharpness"] for level in BLURS])
    p = np.concatenate([scores[level]["p"] for level in BLURS])
    clean = np.concatenate([scores[0.0]["p"] for _ in BLURS])
    y = np.concatenate([labels for _ in BLURS])
    corpus = np.concatenate([data.corpus[picked] for _ in BLURS])
    edges = np.quantile(values, np.linspace(0, 1, 13))
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (values >= low) & (values <= high)
        row = {"sharpness": [round(float(low), 3), round(float(high), 3)], "faces": int(inside.sum())}
        kept = []
        for name in corpora:
            mine = inside & (corpus == name)
            row[name] = {
                "n": int(mine.sum()),
                "auc": auc(y[mine], p[mine]),
                "skill_kept": skill(y[mine], p[mine], clean[mine]) if mine.sum() > 20 else float("nan"),
            }
            kept.append(row[name]["skill_kept"])
        row["skill_kept"] = float(np.nanmean(kept)) if np.isfinite(kept).any() else float("nan")
        rows.append(row)
    natural = {
        name: np.quantile(list(scores[0.0]["sharpness"][data.corpus[picked] == name]), [0.01, 0.05]).round(3).tolist()
        for name in corpora
    }
    return choose_sharpness({"rows": rows, "unblurred_faces_1st_5th_percentile": natural})


def choose_sharpness(report: dict) -> dict:
    rows = report["rows"]
    threshold = 0.0
    for row in rows:  # the upper edge of the sharpest bin below half the skill: every sharper bin keeps half
        if not row["skill_kept"] >= SKILL_KEPT:
            threshold = row["sharpness"][1]
    return {
        **report,
        "threshold": round(float(threshold), 3),
        "bins_below_half": [row["sharpness"] for row in rows if not row["skill_kept"] >= SKILL_KEPT],
        "rule": f"the sharpness above which every bin (12 equal-count bins of all blurred crops) keeps >= "
        f"{SKILL_KEPT} of the fold models' skill",
    }


def detector_analysis(images, detector_name):
    """Real (the biggest box) and false (non-overlapping) faces by confidence, over images of one person each."""
    from engage.faces.detect import create_detector
    from engage.io.images import read_image

    detector = create_detector(detector_name, min_confidence=0.0 if detector_name == "yunet" else 0.5)
    real, false = [], []
    for path in images:
        try:
            rgb = read_image(path)
        except Exception:
            continue
        boxes = detector.detect(rgb)
        if not boxes:
            continue
        main = boxes[0]
        real.append(main.confidence)
        for box in boxes[1:]:
            overlap_w = max(0, min(main.x + main.w, box.x + box.w) - max(main.x, box.x))
            overlap_h = max(0, min(main.y + main.h, box.y + box.h) - max(main.y, box.y))
            if overlap_w * overlap_h == 0:
                false.append(box.confidence)
    return choose_det_conf(
        {
            "detector": detector_name,
            "images": len(images),
            "real_confidences": [round(float(c), 4) for c in real],
            "false_confidences": [round(float(c), 4) for c in false],
        }
    )


def choose_det_conf(report: dict) -> dict:
    real, false = np.array(report["real_confidences"]), np.array(report["false_confidences"])
    cut = {"mtcnn": 0.9, "yunet": 0.5}[report["detector"]]
    # each confidence in exactly one 0.01 band (YuNet's are whole percents, which sit on the bands' edges)
    band = lambda values: np.floor(np.round((values - cut) * 100, 6)).astype(int)  # noqa: E731
    real_band, false_band = band(real), band(false)
    rows = []
    for index in range(int(round((1.0 - cut) * 100))):
        low = round(cut + index / 100, 2)
        rows.append(
            {
                "confidence": [low, round(low + 0.01, 2)],
                "real": int((real_band == index).sum()),
                "false": int((false_band == index).sum()),
            }
        )
    threshold = cut
    for row in rows:
        if row["false"] >= max(1, row["real"]):
            threshold = row["confidence"][1]
    return {
        **report,
        "real_faces": len(real),
        "false_faces": len(false),
        "false_above_cut": int((false >= cut).sum()),
        "real_below_cut": int((real < cut).sum()),
        "rows": rows,
        "threshold": round(float(threshold), 2),
        "detector_cut": cut,
        "real_below_threshold": int(((real >= cut) & (real < threshold)).sum()),
        "false_below_threshold": int(((false >= cut) & (false < threshold)).sum()),
        "rule": "lowest confidence above which real faces outnumber false ones in every 0.01 band",
    }


def one_person_images():
    images = []
    for sub in ("engagement/wacv", "engagement/daisee/train", "engagement/daisee/val", "behaviour/yawn"):
        root = os.path.join(SHARED, sub)
        with open(os.path.join(root, "labels.csv")) as handle:
            images += [os.path.join(root, row["path"]) for row in csv.DictReader(handle)]
    return images


def turn_analysis(data, calibrated):
    from engage.faces.quality import head_turn

    turn = np.array([head_turn(lm) if np.isfinite(lm).all() else np.nan for lm in data.landmarks])
    engaged = np.array(data.class_names)[data.labels] == "engaged"
    p = calibrated[:, data.class_names.index("engaged")]
    rows = []
    for low, high in ((0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0), (1.0, 1.5), (1.5, 10.1)):
        inside = (turn >= low) & (turn < high)
        on, off = inside & engaged, inside & ~engaged
        rows.append(
            {
                "turn": [low, high],
                "faces": int(inside.sum()),
                "off_task": int(off.sum()),
                "recall_off_task": float((p[off] < 0.5).mean()) if off.any() else None,
                "recall_on_task": float((p[on] >= 0.5).mean()) if on.any() else None,
                "by_corpus": {c: int((inside & (data.corpus == c)).sum()) for c in data.corpora},
            }
        )
    largest = float(np.nanmax(turn))
    return {
        "rows": rows,
        "largest_turn": largest,
        "threshold": float(np.ceil(largest * 2 + 1e-9) / 2),
        "rule": "turned faces are mostly off task and the model judges them right (the recall of off-task faces "
        "by turn), so abstention must not take them away: the threshold is the next half unit above the "
        "largest turn of a validation face; beyond it a face is seen so far from the side that its "
        "landmarks no longer follow it",
    }


def coverage_analysis(data, calibrated, thresholds) -> dict:
    """With these thresholds: the share of each data set's faces judged, why the others are not, and the cross-fitted
    figures on the judged faces beside those on all faces (risk: balanced error at 0.5)."""
    from engage.evaluation.evaluate import dataset_quality
    from engage.evaluation.metrics import basic_metrics, risk_coverage
    from engage.models.decision import Decision

    quality = dataset_quality(data, thresholds)
    decision = Decision.for_classes(data.class_names)
    result = {}
    for corpus in data.corpora:
        mine = data.corpus == corpus
        judged = mine & (quality == "ok")
        reasons: dict[str, int] = {}
        for value in quality[mine & (quality != "ok")]:
            for reason in value.split("+"):
                reasons[reason] = reasons.get(reason, 0) + 1
        curve = risk_coverage(data.labels[mine], calibrated[mine], decision, judged[mine])
        result[corpus] = {
            "faces": int(mine.sum()),
            "judged": int(judged.sum()),
            "coverage": float(judged.sum() / mine.sum()),
            "not_judged_by_reason": reasons,
            "judged_figures": basic_metrics(data.labels[judged], calibrated[judged], decision),
            "all_figures": basic_metrics(data.labels[mine], calibrated[mine], decision),
            "aurc": curve["aurc"],
            "quality_rule": curve["quality_rule"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cv", default=os.path.join(REPO, "runs", "cv-engagement"))
    parser.add_argument("--data", default=os.path.join(REPO, "runs", "data"))
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "abstention", "report.json"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--redo-detectors", action="store_true", help="with --reuse: run the detectors again")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take the measurements of an earlier --out and apply the rules again (minutes instead of hours)",
    )
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(REPO, "src"))
    from engage.faces.quality import THRESHOLDS
    from engage.io.files import write_text

    data, roots, fold, calibrated = load(args)
    if args.reuse:
        with open(args.out) as handle:
            report = json.load(handle)
        report["size"], report["sharpness"] = choose_size(report["size"]), choose_sharpness(report["sharpness"])
        if args.redo_detectors or "real_confidences" not in report["det_conf"]["mtcnn"]:
            images = one_person_images()
            report["det_conf"] = {name: detector_analysis(images, name) for name in ("mtcnn", "yunet")}
        report["det_conf"] = {name: choose_det_conf(row) for name, row in report["det_conf"].items()}
    else:
        models = fold_models(args.cv, args.folds)
        picked = picked_faces(data)
        labels = (np.array(data.class_names)[data.labels[picked]] == "engaged").astype(int)
        print(f"{len(picked)} faces (every detected off-task face and as many on-task ones per data set)", flush=True)
        report = {}
        report["size"] = size_analysis(
            data, labels, picked, degraded_scores(data, roots, fold, models, picked, shrink, SIZES)
        )
        print("size done", flush=True)
        report["sharpness"] = sharpness_analysis(
            data, labels, picked, degraded_scores(data, roots, fold, models, picked, blur, BLURS)
        )
        print("sharpness done", flush=True)
        images = one_person_images()
        report["det_conf"] = {name: detector_analysis(images, name) for name in ("mtcnn", "yunet")}
        print("detectors done", flush=True)
    report["turn"] = turn_analysis(data, calibrated)
    chosen = {
        "min_size_px": report["size"]["threshold"],
        "min_sharpness": report["sharpness"]["threshold"],
        "max_turn": report["turn"]["threshold"],
        "min_det_conf": {name: report["det_conf"][name]["threshold"] for name in ("mtcnn", "yunet")},
    }
    report["chosen"], report["in_engage"] = chosen, THRESHOLDS.to_dict()
    from engage.faces.quality import QualityThresholds

    report["coverage"] = coverage_analysis(data, calibrated, QualityThresholds(**chosen))
    for corpus, row in report["coverage"].items():
        print(
            f"coverage {corpus}: {row['judged']}/{row['faces']} judged ({100 * row['coverage']:.1f}%), "
            f"not judged {row['not_judged_by_reason']}; balanced accuracy judged "
            f"{row['judged_figures']['balanced_accuracy']:.3f} vs all {row['all_figures']['balanced_accuracy']:.3f}, "
            f"AUC {row['judged_figures']['auc']:.3f} vs {row['all_figures']['auc']:.3f}"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_text(args.out, json.dumps(report, indent=1, default=float))
    print(json.dumps({"chosen": chosen, "in_engage": THRESHOLDS.to_dict()}, indent=1))
    for name in ("size", "sharpness"):
        for row in report[name]["rows"]:
            print(name, json.dumps(row, default=float))
    for name, rows in report["det_conf"].items():
        print(name, {k: v for k, v in rows.items() if k not in ("rows", "real_confidences", "false_confidences")})
        print("  ", [(r["confidence"][0], r["real"], r["false"]) for r in rows["rows"] if r["real"] or r["false"]])
    for row in report["turn"]["rows"]:
        print("turn", json.dumps(row))
    if chosen != THRESHOLDS.to_dict():
        print("engage.faces.quality.THRESHOLDS differs from what this run chose: update it", file=sys.stderr)


if __name__ == "__main__":
    main()
