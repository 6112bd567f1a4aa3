"""Estimated performance and data quality end to end: real MLflow servers, real proxies, real Prometheus.

* a covariate shift that costs accuracy: an overconfident classifier (tests/models/
  probability_model.py) served by ``mlflow models serve``, calibrated by ``inferwatch profile
  --labels`` on labelled reference rows. On rows like the reference the estimate Prometheus
  records from the proxy's counters is within 0.05 of the accuracy of the labels sent through
  /feedback (and equals the estimate computed here from the answers); rows moved towards the
  decision boundary lower it before any of their labels arrives, ModelEstimatedPerformanceLow
  fires, and their labels then confirm it;
* concept drift, which the estimate cannot see: the demo classifier answering predict_proba, its
  labels from another rule; the estimate stays at the reference, the gap on the labelled rows
  opens;
* data quality: values below the reference's minimum, above its maximum, unseen categories,
  wrong types and missing values counted per feature, for answered and rejected requests alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import alerting_stack
from alerting_stack import PrometheusServer, poll, prometheus_test_config
from inferwatch.contract.profile import PROFILE_FILE_NAME, classification_performance, read_profile
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.render.prometheus_rules import rule_files
from inferwatch.render.rules import PerformanceRecords
from mlflow_models import MIXED_CITIES, MIXED_NAME, PROBABILITY_NAME, PROBABILITY_VERSION, probability_rows
from support import total

pytestmark = pytest.mark.slow

RECORDS = PerformanceRecords(THRESHOLDS)
TIMEOUT = 60.0
BATCH = 100  # rows per prediction request (within --feedback-max-rows)


def start_prometheus(workdir: Path, target: str, for_overrides: dict[str, str]) -> PrometheusServer:
    return alerting_stack.start_prometheus(workdir, prometheus_test_config(target, "rules/*.yml", None),
                                           rule_files(for_overrides=for_overrides))


def predict(proxy, rows) -> list[tuple[list[dict], str]]:
    """Send the rows in batches; each batch's answers (one object per row) and feedback token."""
    answered = []
    columns = list(rows.columns)
    for start in range(0, len(rows), BATCH):
        batch = rows.iloc[start:start + BATCH].to_numpy().tolist()
        response = proxy.post(json={"dataframe_split": {"columns": columns, "data": batch}})
        assert response.status_code == 200, response.text
        answered.append((response.json()["predictions"], response.headers[TOKEN_HEADER]))
    return answered


def send_labels(proxy, answered, labels) -> None:
    for i, (_, token) in enumerate(answered):
        batch = [str(v) for v in labels[i * BATCH:(i + 1) * BATCH]]
        response = proxy.post("/feedback", json={"token": token, "labels": batch})
        assert response.status_code == 200, response.text


def expected_correctness(profile, answers: list[dict]) -> list[float]:
    """Each row's calibrated probability of its predicted class, computed here from the answers
    with the profile's isotonic points (numpy's interpolation, not the proxy's code)."""
    probabilities = profile.probabilities
    positive = probabilities.classes.index(probabilities.positive_class)
    calibration = probabilities.calibration[positive]
    field = probabilities.fields[positive]
    out = []
    for answer in answers:
        p = float(np.interp(answer[field], calibration.x, calibration.y))
        out.append(p if answer[probabilities.class_field] == probabilities.positive_class else 1 - p)
    return out


def recorded(prometheus: PrometheusServer, record: str, metric: str) -> float | None:
    result = prometheus.query(f'{record}{{metric="{metric}"}}')
    return float(result[0]["value"][1]) if result else None


def wait_for(prometheus: PrometheusServer, record: str, metric: str, expected: float, what: str) -> float:
    def equal():
        value = recorded(prometheus, record, metric)
        return value if value is not None and math.isclose(value, expected, rel_tol=1e-9) else None

    try:
        return poll(equal, TIMEOUT, what)
    except AssertionError:
        raise AssertionError(f"{what}: Prometheus says {recorded(prometheus, record, metric)}, "
                             f"the answers say {expected}") from None


# ---------------------------------------------------------------------------------------------
# Covariate shift: the estimate drops before the labels arrive
# ---------------------------------------------------------------------------------------------


def test_the_estimate_meets_realized_accuracy_and_drops_under_a_covariate_shift_before_any_label(
    probability_model, probability_mlflow, start_proxy, tmp_path
):
    profile = read_profile(probability_model / PROFILE_FILE_NAME)
    reference = profile.probabilities.reference
    proxy = start_proxy(probability_mlflow.url, model_dir=str(probability_model))
    prometheus = start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{proxy.port}",
                                  {"ModelEstimatedPerformanceLow": "2s"})
    try:
        poll(lambda: prometheus.query("model_estimated_rows_total == 0"), TIMEOUT,
             "Prometheus to scrape the estimate's counters at 0")

        calm_rows, calm_labels = probability_rows(1000, seed=5)
        calm = predict(proxy, calm_rows)
        calm_answers = [a for answers, _ in calm for a in answers]
        calm_expected = expected_correctness(profile, calm_answers)
        estimate = wait_for(prometheus, RECORDS.estimated, "accuracy", sum(calm_expected) / len(calm_expected),
                            "the estimated accuracy of 1000 rows like the reference")
        send_labels(proxy, calm, calm_labels)
        predicted = [a["label"] for a in calm_answers]
        realized = classification_performance(predicted, list(calm_labels), ("yes",))
        got = wait_for(prometheus, RECORDS.realized, "accuracy", realized["accuracy"],
                       "the realized accuracy of their labels")
        assert abs(estimate - got) <= 0.05, (estimate, got)
        for metric in ("precision", "recall", "f1"):
            estimated, labelled = recorded(prometheus, RECORDS.estimated, metric), realized[metric]
            assert abs(estimated - labelled) <= 0.05, (metric, estimated, labelled)
        gap = poll(lambda: prometheus.query(RECORDS.accuracy_gap), TIMEOUT, "the gap on the labelled rows")
        assert abs(float(gap[0]["value"][1])) <= 0.05, gap
        assert not prometheus.alerts("ModelEstimatedPerformanceLow")

        shifted_rows, shifted_labels = probability_rows(2000, seed=6, shifted=True)
        shifted = predict(proxy, shifted_rows)
        shifted_answers = [a for answers, _ in shifted for a in answers]
        shifted_expected = expected_correctness(profile, shifted_answers)
        everything = calm_expected + shifted_expected
        dropped = wait_for(prometheus, RECORDS.estimated, "accuracy", sum(everything) / len(everything),
                           "the estimated accuracy after 2000 shifted rows")
        assert sum(shifted_expected) / len(shifted_expected) < estimate - 0.1, "the shift costs accuracy"
        assert dropped < reference.accuracy - THRESHOLDS.estimate_drop, (dropped, reference)
        firing = poll(lambda: [a for a in prometheus.alerts("ModelEstimatedPerformanceLow")
                               if a["state"] == "firing" and a["labels"]["metric"] == "accuracy"],
                      TIMEOUT, "ModelEstimatedPerformanceLow to fire on the accuracy")
        assert (firing[0]["labels"]["model"], firing[0]["labels"]["model_version"]) == (PROBABILITY_NAME,
                                                                                        PROBABILITY_VERSION)
        labels_so_far = prometheus.query("sum(model_feedback_labels_total)")
        assert float(labels_so_far[0]["value"][1]) == len(calm_answers), "no shifted row has a label yet"

        send_labels(proxy, shifted, shifted_labels)
        predicted += [a["label"] for a in shifted_answers]
        realized = classification_performance(predicted, list(calm_labels) + list(shifted_labels), ("yes",))
        confirmed = wait_for(prometheus, RECORDS.realized, "accuracy", realized["accuracy"],
                             "the realized accuracy once the shifted rows' labels arrived")
        assert abs(dropped - confirmed) <= 0.05, (dropped, confirmed)
    finally:
        prometheus.stop()


# ---------------------------------------------------------------------------------------------
# Concept drift: the estimate cannot see it, the gap on the labelled rows does
# ---------------------------------------------------------------------------------------------


def test_concept_drift_leaves_the_estimate_at_the_reference_and_opens_the_gap_on_the_labelled_rows(
    demo_probability_model, demo_probability_mlflow, start_proxy
):
    from inferwatch.stack.demo_model import PIMA_COLUMNS, training_data

    profile = read_profile(demo_probability_model / PROFILE_FILE_NAME)
    proxy = start_proxy(demo_probability_mlflow.url, model_dir=str(demo_probability_model))
    rows, _ = training_data(600, seed=31)
    answered = predict(proxy, rows[list(PIMA_COLUMNS)])
    answers = [a for batch, _ in answered for a in batch]  # [p0, p1] per row: predict_proba
    # The same inputs now mean something else: the label follows BloodPressure alone.
    labels = (rows["BloodPressure"] > 0.4).astype(int).tolist()
    send_labels(proxy, answered, labels)

    samples = proxy.metrics()
    model = {"model": profile.model["name"], "model_version": profile.model["version"]}
    expected = [max(p) for p in answers]  # the demo's probabilities needed no calibration
    predicted = [int(p[1] > p[0]) for p in answers]
    assert profile.probabilities.calibration == (None, None)
    assert total(samples, "model_estimated_rows_total", **model) == 600
    assert total(samples, "model_estimated_correct_total", **model) == pytest.approx(sum(expected), rel=1e-12)
    assert total(samples, "model_estimated_predicted_total", **{"class": "1"}, **model) == sum(predicted)
    assert total(samples, "model_feedback_true_positive_total", **{"class": "1"}, **model) == sum(
        p == 1 and y == 1 for p, y in zip(predicted, labels))
    assert total(samples, "model_feedback_actual_total", **{"class": "1"}, **model) == sum(labels)

    estimated = sum(expected) / len(expected)
    realized = total(samples, "model_feedback_correct_total", **model) / total(samples, "model_feedback_labels_total",
                                                                                **model)
    gap = (total(samples, "model_feedback_expected_correct_total", **model)
           - total(samples, "model_feedback_correct_total", **model)) / 600
    assert abs(estimated - profile.probabilities.reference.accuracy) < 0.05, "the estimate sees no change"
    assert realized < 0.7 and gap > 0.2, (realized, gap)


# ---------------------------------------------------------------------------------------------
# Data quality against the profile
# ---------------------------------------------------------------------------------------------


def test_data_quality_issues_are_counted_per_feature_through_the_real_model_server(mixed_mlflow, start_proxy):
    model_dir = mixed_mlflow.model_dir
    profile = read_profile(model_dir / PROFILE_FILE_NAME)
    spend, visits = profile.feature("spend"), profile.feature("visits")
    proxy = start_proxy(mixed_mlflow.url, model_dir=str(model_dir))
    good = {"city": MIXED_CITIES[0], "visits": 3, "spend": 50.0, "member": True}
    rows = [
        {**good, "spend": spend.maximum + 1},  # above the reference's maximum
        {**good, "visits": int(visits.minimum) - 1},  # below its minimum
        {**good, "city": "Atlantis"},  # a city the reference never had
        good,
    ]
    assert proxy.post(json={"dataframe_records": rows}).status_code == 200
    rejected = proxy.post(json={"dataframe_records": [{**good, "visits": "many"}]})
    assert rejected.status_code == 400, rejected.text  # MLflow refuses the type; counted all the same
    samples = proxy.metrics()

    def issue(feature: str, name: str) -> float:
        return total(samples, "model_input_issue_total", model=MIXED_NAME, feature=feature, issue=name)

    assert issue("spend", "above_max") == 1 and issue("spend", "below_min") == 0
    assert issue("visits", "below_min") == 1 and issue("visits", "wrong_type") == 1
    assert issue("city", "unseen") == 1 and issue("city", "missing") == 0
    assert total(samples, "model_input_issue_total", model=MIXED_NAME) == 4
    assert total(samples, "model_input_rows_total", model=MIXED_NAME) == 5
