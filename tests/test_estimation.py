"""Estimated performance, data quality and the drift critical value, piece by piece (no servers).

* calibration: the profile's isotonic points give what scikit-learn's fit gives; probabilities of
  two classes calibrate the positive one, of more are scaled to sum to 1;
* answers carrying class probabilities are read in both shapes (a list per row, a field per class)
  and the estimator's sums are the expected confusion matrix of the rows, exactly;
* feedback counts per class and the estimate on the labelled rows;
* data quality: values below the reference's minimum, above its maximum, unseen categories, wrong
  types and missing values counted per feature;
* the PSI critical value: the chi-square quantile within 1 % of the exact one, and on rows drawn
  from the reference distribution the PSI (smoothed as the rules compute it) exceeds it about as
  often as its significance says, once the window holds drift_min_rows_per_bin rows per bin.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from flask import Response
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from inferwatch.cli import main
from inferwatch.contract import metrics as mm
from inferwatch.contract.profile import (
    ARRAY_ANSWER,
    FIELDS_ANSWER,
    PROFILE_FILE_NAME,
    Calibration,
    Probabilities,
    ProfileError,
    chi_square_quantile,
    classification_performance,
    parse_profile,
    profile_document,
    psi,
    psi_critical_value,
    read_profile,
)
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.proxy.estimation import PerformanceEstimator, UnreadableScores, read_scored
from inferwatch.proxy.feedback import FeedbackTokens, _judge
from inferwatch.proxy.model import ModelIdentity
from inferwatch.proxy.prediction import read_prediction
from inferwatch.proxy.quality import AnswerObserver, QualityRecorder
from inferwatch.stack.profile import build_profile, expected_calibration_error, fit_calibration

MODEL = (("inferwatch.model.name", "m"), ("inferwatch.model.version", "1"))


def collected(reader: InMemoryMetricReader) -> dict[tuple[str, tuple], float]:
    data = reader.get_metrics_data()
    return {(metric.name, tuple(sorted(point.attributes.items()))): point.value
            for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
            for point in metric.data.data_points}


def point(points, name, **attributes):
    return points[(name, tuple(sorted([*MODEL, *attributes.items()])))]


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def test_the_profiles_calibration_gives_what_scikit_learns_isotonic_fit_gives():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(3)
    scores = rng.random(3000)
    truth = (rng.random(3000) < scores ** 3).astype(float)  # overconfident scores
    fitted = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, truth)
    calibration = fit_calibration(scores, truth)
    assert calibration is not None, "cross-validation should find that calibrating overconfident scores helps"
    probes = np.concatenate([rng.random(500), [-1.0, 0.0, 1.0, 2.0], calibration.x[:5]])
    assert [calibration(float(v)) for v in probes] == pytest.approx(fitted.predict(probes).tolist(), abs=1e-12)
    calibrated = np.array([calibration(float(v)) for v in scores])
    assert expected_calibration_error(calibrated, truth) < expected_calibration_error(scores, truth) / 3


def test_scores_that_are_already_probabilities_are_left_as_they_are():
    rng = np.random.default_rng(4)
    scores = rng.random(3000)
    truth = (rng.random(3000) < scores).astype(float)  # calibrated by construction
    assert fit_calibration(scores, truth) is None


def test_two_classes_calibrate_the_positive_one_and_more_are_scaled_to_sum_to_one():
    halve = Calibration((0.0, 1.0), (0.0, 0.5))
    assert Probabilities(ARRAY_ANSWER, ("0", "1"), positive_class="1",
                         calibration=(None, halve)).calibrate([0.2, 0.8]) == pytest.approx([0.6, 0.4])
    assert Probabilities(ARRAY_ANSWER, ("yes", "no"), positive_class="yes",
                         calibration=(halve, None)).calibrate([0.8, 0.2]) == pytest.approx([0.4, 0.6])
    assert Probabilities(ARRAY_ANSWER, ("0", "1"), positive_class="1").calibrate([0.3, 0.7]) == pytest.approx([0.3, 0.7])
    three = Probabilities(ARRAY_ANSWER, ("a", "b", "c"), calibration=(halve, None, halve))
    assert three.calibrate([0.2, 0.6, 0.2]) == pytest.approx([0.1 / 0.8, 0.6 / 0.8, 0.1 / 0.8])
    assert sum(three.calibrate([0.0, 0.0, 0.0])) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Reading answers and summing the expected confusion matrix
# ---------------------------------------------------------------------------------------------

BINARY = Probabilities(ARRAY_ANSWER, ("0", "1"), positive_class="1",
                       calibration=(None, Calibration((0.0, 0.5, 1.0), (0.0, 0.4, 0.9))))
FIELDS = Probabilities(FIELDS_ANSWER, ("no", "yes"), fields=("p_no", "p_yes"), class_field="label",
                       positive_class="yes")


def test_the_proxys_reader_calibrates_exactly_as_the_profile_defines_it():
    rng = np.random.default_rng(8)
    three = Probabilities(ARRAY_ANSWER, ("a", "b", "c"),
                          calibration=(Calibration((0.0, 1.0), (0.1, 0.9)), None, Calibration((0.2, 0.6), (0.0, 1.0))))
    for probabilities, width in ((BINARY, 2), (three, 3)):
        rows = rng.dirichlet([1] * width, size=200).tolist()
        _, _, calibrated = read_scored(rows, probabilities)
        assert calibrated == [probabilities.calibrate(row) for row in rows]


def test_answers_carry_probabilities_as_a_list_per_row_or_a_field_per_class():
    predicted, indices, calibrated = read_scored([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], BINARY)
    assert predicted == ["1", "0", "0"] and indices == [1, 0, 0]  # a tie goes to the first class
    assert [v for row in calibrated for v in row] == pytest.approx([0.3, 0.7, 0.6, 0.4, 0.92, 0.08])
    rows = [{"p_no": 0.3, "p_yes": 0.7, "label": "yes"}, {"p_no": 0.4, "p_yes": 0.6, "label": "no"}]
    predicted, indices, calibrated = read_scored(rows, FIELDS)
    assert predicted == ["yes", "no"], "the answer's class field decides, not the larger probability"
    assert [v for row in calibrated for v in row] == pytest.approx([0.3, 0.7, 0.4, 0.6])


@pytest.mark.parametrize("rows, probabilities", [
    ([[0.2, 0.8, 0.0]], BINARY),
    ([0.8], BINARY),
    ([[0.2, "0.8"]], BINARY),
    ([[0.2, float("nan")]], BINARY),
    ([{"p_no": 0.3, "label": "yes"}], FIELDS),
    ([{"p_no": 0.3, "p_yes": 0.7, "label": "maybe"}], FIELDS),
    ([[0.3, 0.7]], FIELDS),
])
def test_answers_that_are_not_as_the_profile_says_are_unreadable(rows, probabilities):
    with pytest.raises(UnreadableScores):
        read_scored(rows, probabilities)


def test_the_estimators_sums_are_the_expected_confusion_matrix_of_the_rows():
    three = Probabilities(ARRAY_ANSWER, ("a", "b", "c"))
    rng = np.random.default_rng(5)
    scores = rng.dirichlet([1, 1, 1], size=400).tolist()
    reader = InMemoryMetricReader()
    estimator = PerformanceEstimator(three, dict(MODEL), MeterProvider(metric_readers=[reader]).get_meter("t"))
    _, indices, calibrated = read_scored(scores, three)
    estimator.count(indices[:150], calibrated[:150])
    estimator.count(indices[150:], calibrated[150:])
    points = collected(reader)
    p = np.asarray(calibrated)
    k = np.argmax(p, axis=1)
    assert point(points, mm.MODEL_ESTIMATED_ROWS) == 400
    assert point(points, mm.MODEL_ESTIMATED_CORRECT) == pytest.approx(p[np.arange(400), k].sum(), rel=1e-12)
    for i, c in enumerate("abc"):
        attributes = {mm.MODEL_CLASS: c}
        assert point(points, mm.MODEL_ESTIMATED_PREDICTED, **attributes) == (k == i).sum()
        assert point(points, mm.MODEL_ESTIMATED_TRUE_POSITIVE, **attributes) == pytest.approx(p[k == i, i].sum())
        assert point(points, mm.MODEL_ESTIMATED_ACTUAL, **attributes) == pytest.approx(p[:, i].sum())


def test_on_rows_whose_labels_follow_the_probabilities_the_estimate_meets_the_realized_metrics():
    rng = np.random.default_rng(6)
    p_yes = rng.beta(0.7, 0.7, size=20000).tolist()
    truth = np.where(rng.random(20000) < np.asarray(p_yes), "1", "0").tolist()
    _, indices, calibrated = read_scored([[1 - v, v] for v in p_yes], Probabilities(ARRAY_ANSWER, ("0", "1"),
                                                                                     positive_class="1"))
    predicted = ["1" if k else "0" for k in indices]
    realized = classification_performance(predicted, truth, ("1",))
    tp = sum(c[1] for c, k in zip(calibrated, indices) if k == 1)
    estimate = {"accuracy": sum(c[k] for c, k in zip(calibrated, indices)) / len(indices),
                "precision": tp / indices.count(1), "recall": tp / sum(c[1] for c in calibrated),
                "f1": 2 * tp / (indices.count(1) + sum(c[1] for c in calibrated))}
    for name, value in estimate.items():
        assert abs(value - realized[name]) < 0.01, (name, value, realized[name])


def test_the_answer_observer_counts_the_estimate_and_signs_each_rows_expected_correctness():
    data = pd.DataFrame({"x": np.linspace(-1, 1, 50)})
    profile = build_profile(data, ["0", "1"] * 25, probabilities=BINARY, task="classification")
    identity = ModelIdentity(name="m", version="1", profile=profile)
    reader = InMemoryMetricReader()
    recorder = QualityRecorder(identity, MeterProvider(metric_readers=[reader]).get_meter("t"))
    tokens = FeedbackTokens(b"k", identity, max_rows=10, max_age=60)
    observer = AnswerObserver(recorder, tokens, profile.probabilities)
    prediction = read_prediction(json.dumps({"inputs": [{"x": 0.1}, {"x": 0.2}]}).encode(), "application/json")
    response = Response(json.dumps({"predictions": [[0.2, 0.8], [0.9, 0.1]]}), status=200)
    observer.after(prediction, response)
    claims = tokens.verify(response.headers["Inferwatch-Feedback-Token"])
    assert claims["p"] == ["1", "0"] and claims["e"] == pytest.approx([0.7, 0.92])
    points = collected(reader)
    assert point(points, mm.MODEL_ESTIMATED_CORRECT) == pytest.approx(1.62)
    assert point(points, mm.MODEL_PREDICTION_VALUES, **{mm.MODEL_BIN: "1"}) == 1
    assert point(points, mm.MODEL_REFERENCE_ROWS) == 50

    judged = _judge(claims, ["1", "1"], frozenset(profile.probabilities.scored_classes))
    assert (judged.given, judged.correct, judged.expected_correct) == (2, 1, pytest.approx(1.62))
    assert (judged.predicted, judged.actual, judged.true_positive) == ({"1": 1}, {"1": 2}, {"1": 1})


def test_reference_metrics_leave_out_a_class_whose_denominator_is_zero_as_the_rules_do():
    metrics = classification_performance(["a", "a", "b"], ["a", "b", "b"], ("a", "b", "c"))
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["precision"] == pytest.approx((1 / 2 + 1) / 2)  # "c" never predicted: left out
    assert metrics["recall"] == pytest.approx((1 + 1 / 2) / 2)  # "c" never the truth: left out


# ---------------------------------------------------------------------------------------------
# The profile: probabilities, ranges, other categories
# ---------------------------------------------------------------------------------------------


def _document_with(probabilities: dict) -> dict:
    data = pd.DataFrame({"x": np.arange(20.0)})
    document = profile_document(build_profile(data, ["0", "1"] * 10))
    document["probabilities"] = probabilities
    return document


@pytest.mark.parametrize("probabilities, problem", [
    ({"answer": "array", "classes": ["0", "1"]}, "probabilities.positive_class: expected one of 0, 1"),
    ({"answer": "vector", "classes": ["0", "1"], "positive_class": "1"}, "probabilities.answer"),
    ({"answer": "fields", "classes": ["0", "1"], "fields": ["p"], "positive_class": "1"}, "probabilities.fields"),
    ({"answer": "array", "classes": ["0", "1"], "positive_class": "1",
      "calibration": [None, {"x": [0.1, 0.2], "y": [0.5, 0.4]}]}, "must not decrease"),
    ({"answer": "array", "classes": ["0", "1"], "positive_class": "1",
      "calibration": [None, {"x": [0.2, 0.1], "y": [0.4, 0.5]}]}, "must be strictly increasing"),
    ({"answer": "array", "classes": ["0", "1"], "positive_class": "1", "calibration": [None]}, "one per class"),
    ({"answer": "array", "classes": ["1", "2"], "positive_class": "1"}, "not among probabilities.classes: 0"),
    ({"answer": "array", "classes": ["0", "1"], "positive_class": "1",
      "reference": {"rows": 10, "accuracy": 1.5, "precision": 1, "recall": 1, "f1": 1}}, "reference.accuracy"),
])
def test_a_malformed_probabilities_section_names_the_place_and_the_problem(probabilities, problem):
    with pytest.raises(ProfileError, match=problem.replace(".", r"\.").replace("(", r"\(")):
        parse_profile(_document_with(probabilities))


def test_the_builder_records_ranges_and_other_categories_and_they_round_trip():
    data = pd.DataFrame({"x": [1.0, 5.0, -2.0, 3.0], "c": ["a", "a", "b", "z"]})
    profile = build_profile(data, [0, 1, 0, 1], top=1)
    assert (profile.feature("x").minimum, profile.feature("x").maximum) == (-2.0, 5.0)
    assert profile.feature("c").categories == ("a",) and profile.feature("c").other_categories == ("b", "z")
    assert parse_profile(json.loads(json.dumps(profile_document(profile)))) == profile


def test_data_quality_issues_are_counted_per_feature_for_every_request_sent():
    data = pd.DataFrame({"x": [0.0, 10.0], "c": ["a", "b"] * 1, "old": [1.0, 2.0]})
    profile = build_profile(data, [0, 1], top=1)
    document = profile_document(profile)
    for feature in document["features"]:
        if feature["name"] == "old":  # a profile from before ranges were recorded
            del feature["min"], feature["max"]
    profile = parse_profile(document)
    reader = InMemoryMetricReader()
    recorder = QualityRecorder(ModelIdentity(name="m", version="1", profile=profile),
                               MeterProvider(metric_readers=[reader]).get_meter("t"))
    rows = [{"x": -1, "c": "a", "old": 99}, {"x": 11.5, "c": "b", "old": None}, {"x": "ten", "c": "q"},
            {"x": None, "c": ["a"]}, {"x": 10, "c": None}]
    body = json.dumps({"dataframe_records": rows}).encode()
    recorder.observe(read_prediction(body, "application/json"), False, None)  # rejected: counted all the same
    points = collected(reader)

    def issue(feature, name):
        return point(points, mm.MODEL_INPUT_ISSUES, **{mm.MODEL_FEATURE: feature, mm.MODEL_INPUT_ISSUE: name})

    assert [issue("x", i) for i in ("missing", "wrong_type", "below_min", "above_max")] == [1, 1, 1, 1]
    assert [issue("c", i) for i in ("missing", "wrong_type", "unseen")] == [1, 1, 1]  # "b" was seen, "q" not
    assert [issue("old", i) for i in ("missing", "wrong_type")] == [4, 0]  # one None, three rows without it
    assert (mm.MODEL_INPUT_ISSUES, tuple(sorted([*MODEL, (mm.MODEL_FEATURE, "old"),
                                                  (mm.MODEL_INPUT_ISSUE, "below_min")]))) not in points


# ---------------------------------------------------------------------------------------------
# The PSI critical value
# ---------------------------------------------------------------------------------------------


def test_the_wilson_hilferty_quantile_is_within_one_percent_of_the_exact_chi_square_quantile():
    from scipy.stats import chi2

    for degrees in (1, 2, 3, 5, 9, 20, 49, 100):
        assert chi_square_quantile(degrees, 0.01) == pytest.approx(chi2.ppf(0.99, degrees), rel=0.01)
        assert chi_square_quantile(degrees, 0.05) == pytest.approx(chi2.ppf(0.95, degrees), rel=0.025)


@pytest.mark.parametrize("bins, reference_rows", [(10, 768), (5, 2000), (2, 768), (50, 5000)])
def test_on_unchanged_data_the_psi_exceeds_its_critical_value_about_as_often_as_alpha_says(bins, reference_rows):
    """drift_min_rows_per_bin rows per bin, both samples drawn from the same shares: the smoothed
    PSI exceeds the critical value in at most 4 alpha of the windows (empty bins raised to epsilon
    make small windows noisier than the chi-square), and the alert's condition (the floor too) in
    at most 2 alpha."""
    alpha = THRESHOLDS.drift_alpha
    rng = np.random.default_rng(bins)
    shares = np.full(bins, 1 / bins)
    rows = THRESHOLDS.drift_min_rows_per_bin * bins
    critical = psi_critical_value(bins, rows, reference_rows, alpha)
    trials = 4000
    reference = rng.multinomial(reference_rows, shares, size=trials) / reference_rows
    window = rng.multinomial(rows, shares, size=trials)
    values = [psi(counts, tuple(expected), THRESHOLDS.psi_epsilon) for counts, expected in zip(window, reference)]
    assert sum(v > critical for v in values) / trials < 4 * alpha, critical
    assert sum(v > max(critical, THRESHOLDS.drift_act) for v in values) / trials < 2 * alpha, critical


def test_a_quiet_hours_rows_do_not_earn_the_drift_that_a_busy_hours_rows_do():
    observed = 0.2  # the same PSI, 10 bins
    assert observed > psi_critical_value(10, 30000, 768, THRESHOLDS.drift_alpha)
    assert observed < psi_critical_value(10, 100, 768, THRESHOLDS.drift_alpha)
    assert psi_critical_value(10, 30, 768, THRESHOLDS.drift_alpha) == pytest.approx(0.7515, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# inferwatch profile --labels
# ---------------------------------------------------------------------------------------------


def test_the_profile_command_calibrates_a_predict_proba_model_on_labelled_data(demo_probability_model, tmp_path):
    import shutil

    from inferwatch.stack.demo_model import training_data

    model = tmp_path / "model"
    shutil.copytree(demo_probability_model, model, ignore=shutil.ignore_patterns(PROFILE_FILE_NAME))
    rows, labels = training_data(seed=77)
    rows.assign(Outcome=labels).to_csv(tmp_path / "reference.csv", index=False)
    assert main(["profile", str(tmp_path / "reference.csv"), "--model", str(model), "--labels", "Outcome"]) == 0
    probabilities = read_profile(model / PROFILE_FILE_NAME).probabilities
    assert (probabilities.answer, probabilities.classes, probabilities.positive_class) == (ARRAY_ANSWER, ("0", "1"), "1")
    assert probabilities.reference.rows == len(rows) and 0.8 < probabilities.reference.accuracy < 1
    assert main(["profile", str(tmp_path / "reference.csv"), "--model", str(model), "--labels", "Outcome",
                 "--positive-class", "0", "-o", str(tmp_path / "negative.json")]) == 0
    negative = read_profile(tmp_path / "negative.json").probabilities
    assert negative.positive_class == "0" and negative.reference.recall != probabilities.reference.recall


def test_labels_for_a_model_that_answers_classes_say_what_is_needed(demo_model, tmp_path, capsys):
    from inferwatch.stack.demo_model import training_data

    rows, labels = training_data(seed=78)
    rows.assign(Outcome=labels).to_csv(tmp_path / "reference.csv", index=False)
    assert main(["profile", str(tmp_path / "reference.csv"), "--model", str(demo_model), "--labels", "Outcome",
                 "-o", str(tmp_path / "p.json")]) == 2
    error = capsys.readouterr().err
    assert "not one probability per class" in error and "predict_proba" in error, error
    assert main(["profile", str(tmp_path / "reference.csv"), "--labels", "Outcome", "-o", str(tmp_path / "p.json")]) == 2
    assert "--labels needs --model" in capsys.readouterr().err
