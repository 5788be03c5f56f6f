"""What p_engaged means: a calibration fitted for a balanced base rate (decision at 0.5), re-weighted to a site's
share of on-task faces by the prior-shift correction, corrected for a new site by `engage calibrate`, and a fit
that can never give a scale of zero or a NaN."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import assert_one_line_error, make_dataset, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from engage.errors import EngageError
from engage.evaluation.calibration import (
    SCALE_BOUNDS,
    DegenerateCalibration,
    balanced_weights,
    binary_ece,
    expected_calibration_error,
    fit_calibration,
    rate_weights,
)
from engage.models.calibration import Adjustment, SiteCalibration, calibrate, shift_base_rate

ON_TASK_DAISEE = "0=disengaged,1=disengaged,2=engaged,3=engaged"


def two_columns(p):
    p = np.asarray(p, np.float64)
    return np.stack([1 - p, p], axis=1)


def simulated(n: int, share: float, seed: int = 0):
    """Faces whose true log-odds at a balanced rate are a normal score (on-task ~ N(1, 1), off-task ~ N(-1, 1)):
    labels drawn at `share` on task, and p(on task | score) at the balanced rate, exactly 1 / (1 + e^(-2 score))."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < share).astype(int)
    score = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)
    return labels, 1 / (1 + np.exp(-2 * score))


def test_the_prior_shift_reads_a_balanced_probability_at_any_share_of_on_task_faces():
    """p calibrated for 50% on task, shifted to a site's share, is calibrated there: at 90% on task the shifted p has
    a small ECE on faces drawn at 90%, the unshifted one a large ECE; shifting back and forth is the identity."""
    labels, p_balanced = simulated(40000, 0.9)
    shifted = shift_base_rate(p_balanced, 0.5, 0.9)
    assert binary_ece(labels, shifted) < 0.01
    assert binary_ece(labels, p_balanced) > 0.15
    assert np.allclose(shift_base_rate(shifted, 0.9, 0.5), p_balanced, atol=1e-9)
    # the balanced reading is calibrated on these very faces once they are weighed to 50/50
    assert binary_ece(labels, p_balanced, weights=rate_weights(labels == 1, 0.5)) < 0.01
    # the top-label ECE cannot see this: bins of max(p, 1 - p) mix faces called on task and off task
    assert expected_calibration_error(labels, two_columns(p_balanced)) < 0.01


def test_binary_ece_by_hand():
    # p 0.12 (off task), 0.18 (on task): one bin, share 0.5, mean p 0.15; p 0.92, 0.98 (on task): share 1, mean 0.95
    positive, p = np.array([0, 1, 1, 1]), np.array([0.12, 0.18, 0.92, 0.98])
    assert binary_ece(positive, p) == pytest.approx(0.5 * abs(0.5 - 0.15) + 0.5 * abs(1 - 0.95))
    weights = np.array([3.0, 1.0, 1.0, 1.0])  # the off-task face counts thrice: its bin's share 0.25, weight 4 of 6
    assert binary_ece(positive, p, weights=weights) == pytest.approx(
        4 / 6 * abs(0.25 - (3 * 0.12 + 0.18) / 4) + 2 / 6 * abs(1 - 0.95)
    )


def test_a_calibration_fitted_with_balanced_weights_decides_at_one_half():
    """An over-confident network on data that is 92% on task: fitted with both classes weighing the same, the
    calibration gives p for a balanced rate, whose best balanced-accuracy threshold is 0.5 (within sampling noise),
    while a fit without weights learns the 92% and would need a threshold near 0.9."""
    labels, p_true = simulated(30000, 0.92, seed=1)
    shown = two_columns(1 / (1 + np.exp(-(3.0 * np.log(p_true / (1 - p_true)) + 0.7))))  # logit' = 3 logit + 0.7
    balanced = fit_calibration(labels, shown, balanced_weights(labels), base_rate=0.5)
    plain = fit_calibration(labels, shown)
    assert balanced["base_rate"] == 0.5 and balanced["scale"] == pytest.approx(1 / 3, rel=0.05)
    p_balanced = calibrate(shown, balanced)[:, 1]
    p_plain = calibrate(shown, plain)[:, 1]

    def balanced_accuracy(p, t):
        return 0.5 * ((p[labels == 1] >= t).mean() + (p[labels == 0] < t).mean())

    grid = np.linspace(0.02, 0.98, 97)
    best_balanced = grid[np.argmax([balanced_accuracy(p_balanced, t) for t in grid])]
    best_plain = grid[np.argmax([balanced_accuracy(p_plain, t) for t in grid])]
    assert abs(best_balanced - 0.5) <= 0.05 and best_plain > 0.8
    assert balanced_accuracy(p_balanced, 0.5) >= max(balanced_accuracy(p_balanced, t) for t in grid) - 0.005


def test_balanced_weights_give_each_class_half_and_each_data_set_its_share_within_it():
    labels = np.array([1] * 90 + [0] * 10 + [1] * 30 + [0] * 30)
    groups = np.array(["a"] * 100 + ["b"] * 60)
    weights = balanced_weights(labels, groups)
    assert weights[labels == 1].sum() == pytest.approx(0.5) and weights[labels == 0].sum() == pytest.approx(0.5)
    for label in (0, 1):  # within a class, both data sets weigh the same however many faces they hold
        mine = labels == label
        assert weights[mine & (groups == "a")].sum() == pytest.approx(weights[mine & (groups == "b")].sum())


def test_an_uninformative_score_is_refused_not_fitted_with_a_zero_scale():
    """The defect behind a loaded model's "calibration must have a positive scale": scores that do not separate the
    classes drove Platt's scale to 0 (then rounded to 0.0). Now the fit is bounded and says so."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    backwards = two_columns(np.where(labels == 1, 0.3, 0.7) + rng.uniform(-0.1, 0.1, 400))  # ranks them the wrong way
    with pytest.raises(DegenerateCalibration, match="do not separate"):
        fit_calibration(labels, backwards)
    same = two_columns(np.full(400, 0.6))  # one score for every face: only the bias can move, the scale stays finite
    fitted = fit_calibration(labels, same)
    assert SCALE_BOUNDS[0] < fitted["scale"] <= SCALE_BOUNDS[1]
    with pytest.raises(EngageError, match="two classes"):
        fit_calibration(np.ones(10, int), two_columns(np.full(10, 0.7)))
    with pytest.raises(EngageError, match="NaN"):
        fit_calibration(np.array([0, 1]), two_columns([np.nan, 0.5]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0, allow_nan=False)), min_size=2, max_size=60), st.booleans())
def test_a_calibration_fit_is_always_finite_positive_and_loadable_or_refused_in_one_error(faces, weighted):
    labels = np.array([int(y) for y, _ in faces])
    proba = two_columns([p for _, p in faces])
    weights = balanced_weights(labels) if weighted and len(set(labels.tolist())) == 2 else None
    try:
        fitted = fit_calibration(labels, proba, weights)
    except EngageError:
        return  # one class only, or scores that separate nothing: refused, never a broken calibration
    assert SCALE_BOUNDS[0] <= fitted["scale"] <= SCALE_BOUNDS[1] and math.isfinite(fitted["bias"][1])
    assert np.isfinite(calibrate(proba, fitted)).all()  # and it loads: calibrate accepts it


def test_the_cross_validation_falls_back_to_the_network_and_says_so_when_the_fit_is_degenerate():
    from engage.models.decision import Decision
    from engage.training.crossval import _choose

    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 2, n)
    oof = {1: two_columns(rng.uniform(0.4, 0.6, n)).astype(np.float32)}
    choice = _choose(
        labels,
        oof,
        np.array(["a"] * n),
        np.ones(n, bool),
        Decision.for_classes(["disengaged", "engaged"]),
        np.arange(n) % 3,
    )
    assert choice["calibration"]["scale"] == 1.0 and "not fitted" in choice["calibration"]["fallback"]
    assert choice["threshold"] == 0.5 and choice["calibration"]["base_rate"] == 0.5


def test_an_adjustment_applies_the_site_then_the_base_rate_and_refuses_what_does_not_fit():
    config = {
        "class_names": ["disengaged", "engaged"],
        "calibration": {"scale": 1.0, "bias": [0, 0], "base_rate": 0.5},
        "tensors_sha256": "abc",
    }
    site = SiteCalibration(temperature=2.0, bias=0.5, model_name="m", model_sha256="abc", threshold=0.4)
    p = np.array([0.1, 0.5, 0.9])
    adjusted = Adjustment(base_rate=0.8, site=site).apply(p, config)
    logit = np.log(p / (1 - p)) / 2.0 + 0.5 + np.log(0.8 / 0.2)
    assert np.allclose(adjusted, 1 / (1 + np.exp(-logit)))
    assert Adjustment(site=site).threshold(0.5) == 0.4 and Adjustment(base_rate=0.8).threshold(0.5) == 0.5
    with pytest.raises(EngageError, match="fitted for model 'm'"):
        Adjustment(site=site).check(dict(config, tensors_sha256="other"), "other.safetensors")
    with pytest.raises(EngageError, match="does not state the base rate"):
        Adjustment(base_rate=0.8).check({"class_names": ["disengaged", "engaged"], "tensors_sha256": "x"}, "old")
    with pytest.raises(EngageError, match="not a binary model"):
        Adjustment(base_rate=0.8).check({"class_names": ["a", "b", "c"]}, "three")
    with pytest.raises(EngageError, match="strictly between 0 and 1"):
        from engage.models.calibration import make_adjustment

        make_adjustment(base_rate=1.0)


# ---- engage calibrate -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daisee_site(shared_data, tmp_path_factory):
    """Frames of 8 DAiSEE validation students (on-task labels from the manifest's engagement column): a site's few
    labelled frames, as a manifest CSV of image paths, and a second manifest of 6 other students to check on."""
    folder = tmp_path_factory.mktemp("site")
    root = shared_data / "engagement" / "daisee" / "val"
    with open(root / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    subjects = sorted({row["subject"] for row in rows})
    off_task = {s for s in subjects if any(int(r["engagement"]) < 2 for r in rows if r["subject"] == s)}
    chosen = [s for s in subjects if s in off_task]

    def manifest(name, students):
        path = folder / f"{name}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "subject", "engagement"])
            for row in rows:
                if row["subject"] in students:
                    writer.writerow([str(root / row["path"]), row["subject"], row["engagement"]])
        return path

    return manifest("fit", chosen[:8]), manifest("check", chosen[8:14]), folder


def test_engage_calibrate_fits_a_site_file_that_predict_and_evaluate_apply(daisee_site, tmp_path):
    fit, check, _ = daisee_site
    site_file = tmp_path / "site.json"
    result = run_cli(
        "calibrate",
        "--model",
        "engagement",
        "--data",
        str(fit),
        "--label-column",
        "engagement",
        "--label-map",
        ON_TASK_DAISEE,
        "--out",
        str(site_file),
        "--bootstrap",
        "100",
    )
    assert result.returncode == 0, result.stderr
    assert "before" in result.stdout and "after" in result.stdout and "out of sample" in result.stdout
    site = SiteCalibration.load(str(site_file))
    assert site.temperature > 0 and site.fitted_on["subjects"] == 8 and site.base_rate == 0.5
    report = site.report
    for side in ("before", "after"):
        assert {"ece", "ece_own_rate", "balanced_accuracy", "auc"} <= set(report[side])
        assert report[side]["ci95"]["ece"][0] <= report[side]["ece"] <= report[side]["ci95"]["ece"][1]
    # predict applies exactly the file's correction to the model's own p_engaged
    plain = json.loads(run_cli("predict", "--sample", "--json").stdout.splitlines()[0])["faces"][0]
    adjusted = run_cli("predict", "--sample", "--json", "--calibration", str(site_file))
    assert adjusted.returncode == 0, adjusted.stderr
    face = json.loads(adjusted.stdout.splitlines()[0])["faces"][0]
    p = plain["p_engaged_raw"]
    expected = 1 / (1 + math.exp(-(math.log(p / (1 - p)) / site.temperature + site.bias)))
    assert face["p_engaged"] == pytest.approx(expected, abs=2e-4)
    # evaluate on other students of the same site, with and without it
    args = [
        "evaluate",
        "--model",
        "engagement",
        "--data",
        str(check),
        "--label-column",
        "engagement",
        "--label-map",
        ON_TASK_DAISEE,
        "--bootstrap",
        "50",
        "--json",
    ]
    without, with_site = run_cli(*args), run_cli(*args, "--calibration", str(site_file))
    assert without.returncode == 0 and with_site.returncode == 0, with_site.stderr
    without, with_site = json.loads(without.stdout), json.loads(with_site.stdout)
    assert with_site["adjustment"]["site_calibration"]["temperature"] == pytest.approx(site.temperature)
    assert with_site["auc"] == pytest.approx(without["auc"], abs=1e-3)  # a monotone correction keeps the ranking


def _npz(tmp_path, labels, name="frames.npz", subjects=None):
    """Faces cut as the shipped engagement model cuts them (so its data check passes), from random pixels."""
    from engage.models.loading import load_model

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (len(labels), 48, 48)).astype(np.uint8)
    dataset = make_dataset(faces, labels, ["disengaged", "engaged"], subjects=subjects)
    dataset.meta["settings"] = load_model("engagement").face_settings
    dataset.face_source = np.array(["detected"] * len(labels))
    dataset.boxes = np.tile(np.array([0, 0, 100, 100], np.int32), (len(labels), 1))
    path = tmp_path / name
    dataset.save(str(path))
    return path


@pytest.mark.parametrize("case", ["one-class", "too-few", "no-face", "unnamed-label", "other-model", "out-is-folder"])
def test_engage_calibrate_refuses_bad_input_in_one_line_and_writes_nothing(case, tmp_path, sample_images):
    from conftest import write_image

    out = tmp_path / "site.json"
    if case == "one-class":
        args = ["--data", str(_npz(tmp_path, [1] * 30))]
        words = ["every judged face is engaged", "both classes"]
    elif case == "too-few":
        args = ["--data", str(_npz(tmp_path, [0] * 4 + [1] * 30))]
        words = ["30 engaged and 4 disengaged", "at least 10 of each"]
    elif case == "no-face":
        for i in range(3):
            write_image(tmp_path / "frames" / "on" / f"c{i}.png", sample_images["coffee.png"])
        args = ["--data", str(tmp_path / "frames"), "--label-map", "on=engaged"]
        words = ["no face found"]
    elif case == "unnamed-label":
        write_image(tmp_path / "frames" / "yes" / "a.png", sample_images["astronaut.png"])
        write_image(tmp_path / "frames" / "maybe" / "a.png", sample_images["astronaut.png"])
        args = ["--data", str(tmp_path / "frames"), "--label-map", "yes=engaged"]
        words = ["--label-map", "maybe"]
    elif case == "other-model":  # a site file made for the shipped model, given to another model
        site = SiteCalibration(temperature=1.5, bias=0.1, model_name="engagement", model_sha256="0" * 64)
        site.save(str(tmp_path / "other.json"))
        result = run_cli("predict", "--sample", "--calibration", str(tmp_path / "other.json"))
        assert_one_line_error(result, "fitted for model 'engagement'", "engage calibrate")
        return
    else:
        out = tmp_path / "a-folder"
        out.mkdir()
        args = ["--data", str(_npz(tmp_path, [0] * 20 + [1] * 20))]
        words = ["is a folder"]
    result = run_cli("calibrate", "--model", "engagement", *args, "--out", str(out), "--bootstrap", "10")
    assert_one_line_error(result, *words)
    assert not (tmp_path / "site.json").exists()


def test_batch_and_serve_score_with_the_base_rate_and_site_they_are_given(tmp_path):
    """engage batch's workers and engage serve build their Predictor from their options: the adjustment travels with
    them, and a batch results folder records what it does (so a changed site file is other settings, not a resume)."""
    pytest.importorskip("pyarrow")
    from engage.cluster.options import BatchOptions
    from engage.models.loading import load_model
    from engage.serve.app import ServeSettings, load_predictor

    site = SiteCalibration(
        temperature=1.5,
        bias=-0.2,
        model_name="engagement",
        model_sha256=load_model("engagement").config["tensors_sha256"],
    )
    site.save(str(tmp_path / "site.json"))
    options = BatchOptions(base_rate=0.8, calibration=str(tmp_path / "site.json"))
    settings = options.settings()
    assert settings["base_rate"] == 0.8 and settings["calibration"]["temperature"] == 1.5
    assert options.predictor().adjustment.site.bias == -0.2
    served = load_predictor(ServeSettings(base_rate=0.8, calibration=str(tmp_path / "site.json"), abstain=False))
    assert served.adjustment.base_rate == 0.8 and served.adjustment.site.temperature == 1.5 and not served.abstain
