"""Model quality end to end: real MLflow servers, real proxies, real Prometheus on the committed rules.

* drift: rows drawn like the training data, then with one feature shifted by 2 sd; Prometheus
  evaluating rules/quality.yml computes each feature's PSI from the proxy's bin counters, and the
  test checks it equals the PSI it computes itself from the rows it sent (same bins, same
  epsilon); the shifted feature crosses the threshold, the others stay below, the alert fires and
  its email (real Alertmanager, an SMTP sink) names the model and the feature;
* two instances behind one collector, half the rows each: the PSI of the summed counts equals the
  PSI of all the rows;
* feedback: a known mix of right and wrong labels gives exactly that accuracy; every kind of bad
  feedback gets its 4xx and is counted; tokens verify on any instance that shares the key;
* every MLflow input format is counted, an unreadable body too, never a 500; a bad profile stops
  the start with a message naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import alerting_stack
from alerting_stack import (
    PrometheusServer,
    SmtpSink,
    poll,
    prometheus_test_config,
    start_alertmanager,
    text_body,
)
from inferwatch.contract.profile import PROFILE_FILE_NAME, numeric_bin, psi, read_profile
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.proxy.config import load_settings
from inferwatch.proxy.correlation import REQUEST_ID_HEADER
from inferwatch.proxy.feedback import TOKEN_HEADER, FeedbackTokens
from inferwatch.proxy.model import load_model_identity
from inferwatch.render.alertmanager import SmtpSettings
from inferwatch.render.prometheus_rules import rule_files
from inferwatch.render.rules import QualityRecords
from inferwatch.stack.demo_model import DEMO_MODEL_NAME, DEMO_MODEL_VERSION, PIMA_COLUMNS, SEED_EXAMPLE
from support import REGRESSOR_COLUMNS, REGRESSOR_NAME, REGRESSOR_VERSION, child_env, otlp_env, total

pytestmark = pytest.mark.slow

RECORDS = QualityRecords(THRESHOLDS)
TIMEOUT = 60.0
BATCH = 100  # rows per prediction request


# ---------------------------------------------------------------------------------------------
# Rows, and the PSI the test expects from them
# ---------------------------------------------------------------------------------------------


def rows_like_training(count: int, columns: tuple[str, ...], seed: int, shifted: str | None = None) -> list[list[float]]:
    """Standard-normal rows, as both models were trained on; ``shifted`` moved by +2 sd."""
    rows = np.random.default_rng(seed).standard_normal((count, len(columns)))
    if shifted is not None:
        rows[:, columns.index(shifted)] += 2.0
    return rows.tolist()


def send_rows(proxy, columns: tuple[str, ...], rows: list[list[float]]) -> list:
    """Send the rows in batches; return the model's answers."""
    answers = []
    for start in range(0, len(rows), BATCH):
        response = proxy.post(json={"dataframe_split": {"columns": list(columns), "data": rows[start:start + BATCH]}})
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    return answers


def feature_psi(profile, columns: tuple[str, ...], rows: list[list[float]]) -> dict[str, float]:
    """Each feature's PSI computed here from the rows, with the profile's bins and the rules' epsilon."""
    result = {}
    for feature in profile.features:
        j = columns.index(feature.name)
        counts = [0] * len(feature.shares)
        for row in rows:
            counts[numeric_bin(feature.edges, row[j])] += 1
        result[feature.name] = psi(counts, feature.shares, THRESHOLDS.psi_epsilon)
    return result


def prediction_psi(profile, answers: list) -> float:
    prediction = profile.prediction
    counts = [0] * len(prediction.shares)
    for answer in answers:
        if prediction.kind == "numeric":
            counts[numeric_bin(prediction.edges, answer)] += 1
        else:
            labels = prediction.bin_labels
            counts[labels.index(str(answer)) if str(answer) in labels else len(labels) - 1] += 1
    return psi(counts, prediction.shares, THRESHOLDS.psi_epsilon)


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------


def start_prometheus(workdir: Path, target: str, alertmanager: str | None = None,
                     for_overrides: dict[str, str] | None = None) -> PrometheusServer:
    return alerting_stack.start_prometheus(workdir, prometheus_test_config(target, "rules/*.yml", alertmanager),
                                           rule_files(for_overrides=for_overrides))


def by_label(prometheus: PrometheusServer, expr: str, label: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1]) for r in prometheus.query(expr)}


def wait_for_psi(prometheus: PrometheusServer, expected: dict[str, float], what: str,
                 rel_tol: float = 1e-9) -> dict[str, float]:
    """The recorded PSI per feature, once it equals ``expected`` within ``rel_tol`` (rows still
    arriving are waited for)."""
    record = f'{RECORDS.feature_psi}{{{THRESHOLDS.selector}}}'

    def equal():
        got = by_label(prometheus, record, "feature")
        same = got.keys() == expected.keys() and all(math.isclose(got[f], v, rel_tol=rel_tol, abs_tol=1e-12)
                                                     for f, v in expected.items())
        return got if same else None

    try:
        return poll(equal, TIMEOUT, what)
    except AssertionError:
        raise AssertionError(f"{what}: Prometheus says {by_label(prometheus, record, 'feature')}, "
                             f"the rows say {expected}") from None


def wait_for_zeros(prometheus: PrometheusServer, series: int) -> None:
    """Prometheus has scraped the bin counters at 0, so increase() counts every row from the first."""
    poll(lambda: len(prometheus.query(f'model_feature_bin_total{{{THRESHOLDS.selector}}} == 0')) >= series,
         TIMEOUT, "Prometheus to scrape the bin counters at 0")


# ---------------------------------------------------------------------------------------------
# Drift: the classifier, end to end to the email
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mail_and_alertmanager(tmp_path):
    smtp = SmtpSink().start()
    settings = SmtpSettings.from_env({"INFERWATCH_SMTP_SMARTHOST": smtp.smarthost,
                                      "INFERWATCH_SMTP_FROM": "alerts@inferwatch.test",
                                      "INFERWATCH_ALERT_EMAIL_TO": "ml-team@inferwatch.test"})
    try:
        alertmanager = start_alertmanager(tmp_path / "alertmanager", settings)
    except BaseException:
        smtp.stop()
        raise
    yield smtp, alertmanager
    alertmanager.stop()
    smtp.stop()


def test_a_shifted_feature_crosses_the_drift_threshold_alone_and_the_alert_email_names_model_and_feature(
    demo_model, mlflow_server, start_proxy, mail_and_alertmanager, tmp_path
):
    smtp, alertmanager = mail_and_alertmanager
    profile = read_profile(demo_model / PROFILE_FILE_NAME)
    proxy = start_proxy(mlflow_server.url, model_dir=str(demo_model))
    prometheus = start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{proxy.port}", alertmanager.address,
                                  for_overrides={"ModelInputDrift": "2s"})
    try:
        wait_for_zeros(prometheus, sum(len(f.shares) for f in profile.features))

        like_training = rows_like_training(1000, PIMA_COLUMNS, seed=1)
        send_rows(proxy, PIMA_COLUMNS, like_training)
        calm = wait_for_psi(prometheus, feature_psi(profile, PIMA_COLUMNS, like_training),
                            "the PSI of 1000 rows like the training data")
        assert max(calm.values()) < THRESHOLDS.drift_watch, calm

        shifted = rows_like_training(1000, PIMA_COLUMNS, seed=2, shifted="Glucose")
        send_rows(proxy, PIMA_COLUMNS, shifted)
        drifted = wait_for_psi(prometheus, feature_psi(profile, PIMA_COLUMNS, like_training + shifted),
                               "the PSI after 1000 rows with Glucose + 2 sd")
        assert drifted["Glucose"] > THRESHOLDS.drift_act, drifted
        assert max(v for f, v in drifted.items() if f != "Glucose") < THRESHOLDS.drift_watch, drifted

        firing = poll(lambda: [a for a in prometheus.alerts("ModelInputDrift") if a["state"] == "firing"],
                      TIMEOUT, "ModelInputDrift to fire")
        assert [(a["labels"]["feature"], a["labels"]["model"], a["labels"]["model_version"]) for a in firing] == [
            ("Glucose", DEMO_MODEL_NAME, DEMO_MODEL_VERSION)]
        message = smtp.wait_for(lambda m: "ModelInputDrift" in m["Subject"], TIMEOUT, "the drift email")
        body = text_body(message)
        assert f"Input drift on feature Glucose of model {DEMO_MODEL_NAME} {DEMO_MODEL_VERSION}" in message["Subject"]
        assert f"PSI {drifted['Glucose']:.3f}" in body, body
        assert "feature=Glucose" in body and f"model={DEMO_MODEL_NAME}" in body, body
    finally:
        prometheus.stop()


# ---------------------------------------------------------------------------------------------
# Drift: the regressor (features and its answers) and its feedback errors
# ---------------------------------------------------------------------------------------------


def test_a_regressors_shifted_feature_and_its_answers_drift_exactly_as_the_rows_say(
    regressor_model, regressor_mlflow, start_proxy, tmp_path
):
    profile = read_profile(regressor_model / PROFILE_FILE_NAME)
    proxy = start_proxy(regressor_mlflow.url, model_dir=str(regressor_model))
    prometheus = start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{proxy.port}")
    try:
        wait_for_zeros(prometheus, sum(len(f.shares) for f in profile.features))
        rows = rows_like_training(600, REGRESSOR_COLUMNS, seed=3)
        rows += rows_like_training(600, REGRESSOR_COLUMNS, seed=4, shifted="Temperature")
        answers = send_rows(proxy, REGRESSOR_COLUMNS, rows)
        drifted = wait_for_psi(prometheus, feature_psi(profile, REGRESSOR_COLUMNS, rows), "the regressor's PSI")
        assert drifted["Temperature"] > THRESHOLDS.drift_act, drifted
        assert max(drifted["Humidity"], drifted["Wind"]) < THRESHOLDS.drift_watch, drifted

        expected = prediction_psi(profile, answers)
        record = f"{RECORDS.prediction_psi}{{{THRESHOLDS.selector}}}"
        got = poll(lambda: (r := prometheus.query(record)) and math.isclose(float(r[0]["value"][1]), expected,
                                                                           rel_tol=1e-9) and r,
                   TIMEOUT, f"the answers' PSI to be {expected}")
        assert expected > THRESHOLDS.drift_act and got[0]["metric"]["model"] == REGRESSOR_NAME
    finally:
        prometheus.stop()


def test_regression_feedback_gives_the_exact_absolute_and_squared_errors(regressor_mlflow, regressor_model, start_proxy):
    proxy = start_proxy(regressor_mlflow.url, model_dir=str(regressor_model))
    offsets = [0.5, -1.0, 2.0, 0.0, -0.25]
    for i, offset in enumerate(offsets):
        response = proxy.post(json={"dataframe_split": {"columns": list(REGRESSOR_COLUMNS), "data": [[0.1 * i, 0.2, -0.3]]}})
        [predicted] = response.json()["predictions"]
        answer = proxy.post("/feedback", json={"token": response.headers[TOKEN_HEADER], "label": predicted + offset})
        assert answer.status_code == 200, answer.text
    samples = proxy.metrics()
    model = {"model": REGRESSOR_NAME, "model_version": REGRESSOR_VERSION}
    assert total(samples, "model_feedback_labels_total", **model) == 5
    assert total(samples, "model_feedback_absolute_error_count", **model) == 5
    assert math.isclose(total(samples, "model_feedback_absolute_error_sum", **model), sum(map(abs, offsets)), rel_tol=1e-9)
    assert math.isclose(total(samples, "model_feedback_squared_error_total", **model),
                        sum(o * o for o in offsets), rel_tol=1e-9)
    assert total(samples, "model_feedback_correct_total", **model) == 0


# ---------------------------------------------------------------------------------------------
# Two instances: the counts are summed before the statistic
# ---------------------------------------------------------------------------------------------


def test_two_instances_drift_is_the_psi_of_all_their_rows_summed(
    demo_model, mlflow_server, start_collector, start_proxy, tmp_path
):
    profile = read_profile(demo_model / PROFILE_FILE_NAME)
    collector = start_collector()
    first = start_proxy(mlflow_server.url, env=otlp_env(collector), model_dir=str(demo_model))
    second = start_proxy(mlflow_server.url, env=otlp_env(collector), model_dir=str(demo_model))
    bins = sum(len(f.shares) for f in profile.features)

    def both_exported():
        text = collector.metrics_text()
        return text.count("model_feature_bin_total{") >= 2 * bins

    # Prometheus's first scrape sees both instances' counters at 0, and with start timestamps it
    # also stores a 0 at each counter's start: each instance's own start-up, so the two
    # instances' series begin a few seconds apart. increase() extrapolates each series to the
    # window's end by (its span + the gap to the end) / (its span), a factor that differs between
    # the two instances' series: the PSI of the summed counts is equal within 1e-3 (6e-5 apart
    # when measured), not exactly (one instance's series share their start, and their PSI is).
    poll(both_exported, TIMEOUT, "both instances' bin counters on the collector")
    prometheus = start_prometheus(tmp_path / "prometheus", f"127.0.0.1:{collector.ports.metrics}")
    try:
        wait_for_zeros(prometheus, 2 * bins)
        calm = rows_like_training(500, PIMA_COLUMNS, seed=5)
        shifted = rows_like_training(500, PIMA_COLUMNS, seed=6, shifted="Glucose")
        send_rows(first, PIMA_COLUMNS, calm)
        send_rows(second, PIMA_COLUMNS, shifted)
        everything = feature_psi(profile, PIMA_COLUMNS, calm + shifted)
        got = wait_for_psi(prometheus, everything, "the PSI of both instances' rows", rel_tol=1e-3)

        per_instance = [feature_psi(profile, PIMA_COLUMNS, calm)["Glucose"],
                        feature_psi(profile, PIMA_COLUMNS, shifted)["Glucose"]]
        assert all(abs(v - got["Glucose"]) > 0.05 for v in per_instance + [sum(per_instance) / 2]), (per_instance, got)
        instances = {r["metric"]["instance"] for r in prometheus.query('model_feature_bin_total{job="inferwatch"}')}
        assert len(instances) == 2
    finally:
        prometheus.stop()


# ---------------------------------------------------------------------------------------------
# Feedback: exact accuracy, refusals answered and counted, stateless across instances
# ---------------------------------------------------------------------------------------------


def predict_one(proxy, seed: int) -> tuple[int, str]:
    [row] = rows_like_training(1, PIMA_COLUMNS, seed=seed)
    response = proxy.post(json={"dataframe_split": {"columns": list(PIMA_COLUMNS), "data": [row]}})
    assert response.status_code == 200 and len(response.headers[REQUEST_ID_HEADER]) == 32
    return response.json()["predictions"][0], response.headers[TOKEN_HEADER]


def test_a_known_mix_of_right_and_wrong_labels_gives_exactly_that_accuracy_on_any_instance_sharing_the_key(
    demo_model, mlflow_server, start_proxy, tmp_path
):
    key = tmp_path / "feedback.key"
    key.write_text("a shared test key, not a secret")
    first = start_proxy(mlflow_server.url, model_dir=str(demo_model), feedback_key_file=str(key))
    second = start_proxy(mlflow_server.url, model_dir=str(demo_model), feedback_key_file=str(key))
    predictions = [predict_one(first, seed) for seed in range(30)]
    for i, (predicted, token) in enumerate(predictions):
        label = predicted if i < 20 else 1 - predicted  # 20 right, 10 wrong
        target = first if i % 2 else second  # half the feedback reaches the other instance
        response = target.post("/feedback", json={"token": token, "labels": [label]})
        assert response.status_code == 200, response.text
        assert response.json()["labels"] == 1 and response.json()["model"] == DEMO_MODEL_NAME

    labels = correct = 0.0
    for proxy in (first, second):
        samples = proxy.metrics()
        labels += total(samples, "model_feedback_labels_total", model=DEMO_MODEL_NAME)
        correct += total(samples, "model_feedback_correct_total", model=DEMO_MODEL_NAME)
    assert (labels, correct) == (30, 20)
    assert correct / labels == 20 / 30


def test_bad_feedback_gets_a_clear_4xx_and_is_counted_by_reason(demo_model, mlflow_server, start_proxy, tmp_path):
    key = tmp_path / "feedback.key"
    key.write_text("another shared test key")
    proxy = start_proxy(mlflow_server.url, model_dir=str(demo_model), feedback_key_file=str(key),
                        feedback_max_age="3600")
    other_key = tmp_path / "other.key"
    other_key.write_text("a different deployment's key")
    elsewhere = start_proxy(mlflow_server.url, model_dir=str(demo_model), feedback_key_file=str(other_key))
    _, token = predict_one(proxy, seed=1)
    _, foreign = predict_one(elsewhere, seed=1)

    identity = load_model_identity(load_settings({"model_dir": str(demo_model)}, {}))
    minted = FeedbackTokens(key.read_bytes().strip(), identity, 100, 3600)
    old = minted.issue("old", [1], now=time.time() - 7200)
    canary = FeedbackTokens(key.read_bytes().strip(), load_model_identity(
        load_settings({"model_dir": str(demo_model), "model_version": "2"}, {})), 100, 3600).issue("c", [1])
    json_type = {"Content-Type": "application/json"}
    cases = [
        ({"data": b"{nope", "headers": json_type}, 400, "invalid_json"),
        ({"data": b'{"token":' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": json_type}, 400, "invalid_json"),
        ({"data": b"token=x", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"data": b"{" + b" " * 70000 + b"}", "headers": json_type}, 413, "payload_too_large"),
        ({"json": {"labels": [1]}}, 400, "invalid_feedback"),
        ({"json": {"token": token, "labels": [1, 0]}}, 400, "invalid_feedback"),
        ({"json": {"token": token, "labels": [{"class": 1}]}}, 400, "invalid_label"),
        ({"json": {"token": "not-a-token", "label": 1}}, 400, "invalid_token"),
        ({"json": {"token": token[:-4] + "AAAA", "label": 1}}, 404, "unknown_prediction"),
        ({"json": {"token": foreign, "label": 1}}, 404, "unknown_prediction"),
        ({"json": {"token": canary, "label": 1}}, 409, "wrong_model"),
        ({"json": {"token": old, "label": 1}}, 410, "token_expired"),
    ]
    for kwargs, status, code in cases:
        response = proxy.post("/feedback", **kwargs)
        assert response.status_code == status, (code, response.text)
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"]

    samples = proxy.metrics()
    for code in {code for _, _, code in cases}:
        expected = sum(1 for _, _, c in cases if c == code)
        assert total(samples, "model_feedback_rejected_total", reason=code) == expected, code
    assert total(samples, "model_feedback_labels_total") == 0
    assert total(samples, "http_requests_total", route="/feedback") == len(cases)


# ---------------------------------------------------------------------------------------------
# Inputs: every MLflow format, violations, unreadable bodies; identity; bad profiles
# ---------------------------------------------------------------------------------------------


def test_every_input_format_is_counted_and_violations_and_unreadable_bodies_too(demo_model, mlflow_server, start_proxy):
    proxy = start_proxy(mlflow_server.url, model_dir=str(demo_model))
    row = [0.1, 1.2, -0.3, 0.4, -0.5, 0.6, -0.7, 0.8]
    record = dict(zip(PIMA_COLUMNS, row))
    answered = [
        ({"json": {"dataframe_split": {"columns": list(PIMA_COLUMNS), "data": [row, row]}}}, 2),
        ({"json": {"dataframe_records": [record] * 3}}, 3),
        ({"json": {"instances": [record]}}, 1),
        ({"json": {"inputs": [record, record]}}, 2),
        ({"json": {"inputs": {name: [v, v] for name, v in record.items()}}}, 2),
        ({"data": ",".join(PIMA_COLUMNS) + "\n" + ",".join(map(str, row)) + "\n",
          "headers": {"Content-Type": "text/csv"}}, 1),
        ({"json": SEED_EXAMPLE}, 1),
    ]
    for kwargs, _ in answered:
        assert proxy.post(**kwargs).status_code == 200
    rejected = [
        {"json": {"dataframe_records": [{**record, "Glucose": "high", "Colour": "red"}]}},  # wrong type, unexpected
        {"json": {"dataframe_records": [{k: v for k, v in record.items() if k != "Age"}]}},  # missing column
        {"json": {"inputs": "not rows"}},  # unreadable
    ]
    statuses = [proxy.post(**kwargs).status_code for kwargs in rejected]
    assert all(400 <= s < 500 for s in statuses), statuses

    samples = proxy.metrics()
    rows = sum(n for _, n in answered)
    for feature in PIMA_COLUMNS:
        assert total(samples, "model_feature_bin_total", feature=feature) == rows, feature
        assert total(samples, "model_feature_missing_total", feature=feature) == 0, feature
    assert total(samples, "model_prediction_bin_total", model=DEMO_MODEL_NAME) == rows
    assert total(samples, "model_input_rows_total") == rows + 3
    assert total(samples, "model_input_violation_total", column="Glucose", kind="wrong_type") == 1
    assert total(samples, "model_input_violation_total", column="__other__", kind="unexpected") == 1
    assert total(samples, "model_input_violation_total", column="Age", kind="missing") == 1
    assert total(samples, "model_input_violation_total") == 3
    assert total(samples, "model_input_unreadable_total", format="inputs") == 1
    assert total(samples, "model_input_unreadable_total") == 1
    info = [labels for (name, labels), v in samples.items() if name == "model_info" and v == 1]
    assert [dict(labels) for labels in info] == [{"model": DEMO_MODEL_NAME, "model_version": DEMO_MODEL_VERSION,
                                                  "flavor": "sklearn", "signature": "true", "reference": "true"}]
    # The seed's PromQL matches: successes and failures carry the same model labels.
    success = {labels for name, labels in samples if name == "prediction_success_total"}
    failure = {labels for name, labels in samples if name == "prediction_failure_total"}
    assert success == failure == {(("model", DEMO_MODEL_NAME), ("model_version", DEMO_MODEL_VERSION))}


def serve_once(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inferwatch", "serve", *args], capture_output=True, text=True,
                          timeout=60, env=child_env())


@pytest.mark.parametrize("change, problem", [
    (lambda p: p.update(version=2), "version 2 is not supported"),
    (lambda p: p["features"][1]["edges"].reverse(), "features[1].edges: must be strictly increasing"),
    (lambda p: p["features"][0]["shares"].__setitem__(0, 0.5), "features[0].shares: shares sum to"),
    (lambda p: p["features"][2].update(name="__secret"), "names starting with '__' are reserved"),
    (lambda p: p["features"].append(dict(p["features"][0])), "features: named twice: Pregnancies"),
])
def test_a_malformed_profile_stops_the_start_naming_the_file_and_the_problem(demo_model, tmp_path, change, problem):
    document = json.loads((demo_model / PROFILE_FILE_NAME).read_text())
    change(document)
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps(document))
    result = serve_once("--model-profile", str(bad), "--port", "1")
    assert result.returncode == 2
    assert f"inferwatch: bad model profile {bad}: " in result.stderr and problem in result.stderr, result.stderr


def test_a_profile_of_another_model_stops_the_start(demo_model, regressor_model):
    result = serve_once("--model-dir", str(demo_model), "--model-profile", str(regressor_model / PROFILE_FILE_NAME))
    assert result.returncode == 2
    assert "the profile was built for another model" in result.stderr, result.stderr
