"""The proxy is a drop-in for MLflow's scoring server: the same answers, every format, exact counts.

Each case of :data:`CASES` is drawn from MLflow's own scoring-server tests
(``tests/pyfunc/test_scoring_server.py``: the function named in ``source``) or its documentation
("Deploy MLflow models": the input formats, CSV, Parquet, the unified LLM input for chat,
completions and embeddings), and is sent to a real ``mlflow models serve`` directly and through a
real ``inferwatch serve`` in front of it, for four models the tests build (tests/mlflow_models.py):
the demo model, a pipeline on mixed column types monitored with its profile, a GenAI pyfunc, and a
tensor-input pyfunc. For every case:

* the same status;
* for a success, the same answer (JSON-equal) and the same content type;
* for an error, JSON carrying MLflow's message (its own JSON error, or its text wrapped in the
  proxy's error shape) and never a stack trace.

After each model's table, the proxy's counters equal the table, on /metrics and through the
collector alike: predictions by outcome and reason, by input format, rows, and for the monitored
model the feature bins. :data:`GUARDS` are the few requests the proxy answers itself: where MLflow
would fail with a 500 rather than answer, or where answering costs MLflow nothing it needs.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass

import pandas as pd
import pytest
import requests

from mlflow_models import GENAI_NAME, GENAI_VERSION, MIXED_COLUMNS, TENSOR_NAME, TENSOR_VERSION
from inferwatch.stack.demo_model import PIMA_COLUMNS
from support import otlp_env, parse_samples, total

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
SCORING = "tests/pyfunc/test_scoring_server.py"
DOCS = "mlflow.org/docs: deploy models, input formats"
LLM_DOCS = "mlflow.org/docs: serving LLMs, the unified chat/completions/embeddings input"

ROW = [0.1, 1.2, -0.3, 0.4, -0.5, 0.6, -0.7, 0.8]
PIMA = pd.DataFrame([ROW, [-0.9, 0.2, 0.3, -1.1, 0.0, 1.4, 0.5, -0.2]], columns=list(PIMA_COLUMNS))
MIXED = pd.DataFrame({
    "city": ["Zürich", "東京", "São Paulo"],
    "visits": [3, 12, 0],
    "spend": [12.5, 140.0, 55.25],
    "member": [True, False, False],
})
assert tuple(MIXED.columns) == MIXED_COLUMNS


def as_json(document: object) -> bytes:
    return json.dumps(document).encode()


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def split(frame: pd.DataFrame, **extra) -> bytes:
    return as_json({"dataframe_split": frame.to_dict(orient="split", index=False), **extra})


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # demo, mixed, genai, tensor
    body: bytes
    content_type: str
    outcome: str  # "success" or the failure reason the proxy counts
    format: str  # the input format label
    rows: int | None  # rows the proxy counts for it (None: the format has none)
    source: str

    @property
    def answered(self) -> bool:
        return self.outcome == "success"


CASES = [
    # -- the demo model: MLflow's JSON formats, CSV, Parquet, charsets, params --------------------
    Case("dataframe_split", "demo", split(PIMA), JSON, "success", "dataframe_split", 2,
         f"{SCORING}::test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_split_orientation"),
    Case("dataframe_split with charset=UTF-8", "demo", split(PIMA), JSON + "; charset=UTF-8", "success",
         "dataframe_split", 2, f"{SCORING}::...with_pandas_split_orientation (the charset parameter)"),
    Case("dataframe_split with an index", "demo", as_json({"dataframe_split": PIMA.to_dict(orient="split")}), JSON,
         "success", "dataframe_split", 2, f"{SCORING}::test_split_oriented_json_to_df"),
    Case("dataframe_records", "demo", as_json({"dataframe_records": PIMA.to_dict(orient="records")}),
         JSON + "; charset=UTF-8", "success", "dataframe_records", 2,
         f"{SCORING}::test_scoring_server_successfully_evaluates_correct_dataframes_with_pandas_records_orientation"),
    Case("instances as records", "demo", as_json({"instances": PIMA.to_dict(orient="records")}), JSON, "success",
         "instances", 2, f"{SCORING}::test_scoring_server_successfully_evaluates_correct_tf_serving_sklearn"),
    Case("instances as rows of values where the signature names columns", "demo",
         as_json({"instances": PIMA.values.tolist()}), JSON, "model_rejected", "instances", 2,
         f"{SCORING}::..._correct_tf_serving_sklearn (a model without a signature takes these)"),
    Case("inputs as columns by name", "demo", as_json({"inputs": PIMA.to_dict(orient="list")}), JSON, "success",
         "inputs", 2, f"{SCORING}::test_serving_model_with_schema ('inputs' format)"),
    Case("params the model does not declare are ignored", "demo", split(PIMA, params={"invalid_param": "value"}),
         JSON, "success", "dataframe_split", 2, f"{SCORING}::test_serving_model_with_param_schema"),
    Case("CSV", "demo", PIMA.to_csv(index=False).encode(), CSV, "success", "csv", 2, f"{DOCS} (text/csv)"),
    Case("Parquet", "demo", parquet(PIMA), PARQUET, "success", "parquet", 2, f"{DOCS} (Parquet)"),
    Case("JSON with a UTF-8 byte order mark", "demo", b"\xef\xbb\xbf" + split(PIMA), JSON, "success",
         "dataframe_split", 2, "json.loads on bytes, as the scoring server reads them"),
    Case("UTF-16 JSON without a charset", "demo", json.dumps({"instances": [dict(zip(PIMA_COLUMNS, ROW))]}).encode("utf-16"),
         JSON, "success", "instances", 1, "json.loads on bytes detects UTF-16/32"),
    Case("not JSON", "demo", b"this is,,,, not valid json", JSON, "invalid_json", "other", None,
         f"{SCORING}::test_scoring_server_responds_to_malformed_json_input_with_error_code_and_message"),
    Case("a number, not an object", "demo", as_json(1), JSON, "invalid_input", "other", None,
         f"{SCORING}::test_scoring_server_responds_to_invalid_json_format_with_error_code_and_message"),
    Case("a string, not an object", "demo", as_json("1"), JSON, "invalid_input", "other", None,
         f"{SCORING}::..._invalid_json_format_... (\"1\")"),
    Case("a list, not an object", "demo", as_json([1]), JSON, "invalid_input", "other", None,
         f"{SCORING}::..._invalid_json_format_... ([1])"),
    Case("no input field", "demo", as_json({"not": "a serialized dataframe"}), JSON, "invalid_input", "other", None,
         f"{SCORING}::..._invalid_json_format_... (no known key)"),
    Case("two input fields", "demo", as_json({"dataframe_records": [], "dataframe_split": {"data": []}}), JSON,
         "invalid_input", "other", None, f"{SCORING}::..._invalid_json_format_... (two keys)"),
    Case("dataframe_split given records", "demo", as_json({"dataframe_split": PIMA.to_dict(orient="records")}),
         JSON, "model_rejected", "dataframe_split", None,
         f"{SCORING}::test_scoring_server_responds_to_invalid_pandas_input_format_with_stacktrace_and_error_code"),
    Case("dataframe_records given a split", "demo", as_json({"dataframe_records": PIMA.to_dict(orient="split")}),
         JSON, "model_rejected", "dataframe_records", None, f"{SCORING}::..._invalid_pandas_input_format_..."),
    Case("an index longer than the data", "demo",
         as_json({"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}), JSON, "model_rejected",
         "dataframe_split", 3, f"{SCORING}::test_scoring_server_responds_to_invalid_dataframe_with_stacktrace_and_error_code"),
    Case("a frame the model cannot take", "demo", split(pd.DataFrame({"0": range(10)})), JSON, "model_rejected",
         "dataframe_split", 10,
         f"{SCORING}::test_scoring_server_responds_to_incompatible_inference_dataframe_with_stacktrace_and_error_code"),
    Case("CSV without the model's columns", "demo", b"a,b\n1,2\n", CSV, "model_rejected", "csv", 1,
         f"{SCORING}::test_parse_with_schema_csv (a schema the data does not meet)"),
    Case("Parquet that is not Parquet", "demo", b"not parquet", PARQUET, "model_rejected", "parquet", None,
         f"{SCORING}::parse_parquet_input's error"),
    Case("invalid UTF-8 in JSON", "demo", b'{"inputs": "\xff\xfe"}', JSON, "invalid_json", "other", None,
         "scoring_server._decode_json_input: UnicodeDecodeError"),
    Case("an unsupported content type", "demo", split(PIMA), "not_a_supported_content_type",
         "unsupported_media_type", "other", None,
         f"{SCORING}::test_scoring_server_responds_to_invalid_content_type_request_with_unsupported_content_type_code"),
    Case("an unrecognized content type parameter", "demo", split(PIMA), JSON + "; something=something",
         "unsupported_media_type", "other", None,
         f"{SCORING}::test_scoring_server_responds_to_invalid_content_type_request_with_unrecognized_content_param"),
    Case("a charset other than UTF-8", "demo", json.dumps({"instances": [ROW]}).encode("utf-16"),
         JSON + "; charset=utf-16", "unsupported_media_type", "other", None, "scoring_server.invocations: UTF-8 only"),
    Case("the content type in capitals", "demo", split(PIMA), "APPLICATION/JSON", "unsupported_media_type",
         "other", None, "scoring_server.invocations compares the media type exactly"),
    # -- a pipeline on mixed column types, monitored with its profile -----------------------------
    Case("mixed types, dataframe_split", "mixed", split(MIXED), JSON, "success", "dataframe_split", 3,
         f"{SCORING}::test_serving_model_with_schema"),
    Case("mixed types, dataframe_records", "mixed", as_json({"dataframe_records": MIXED.to_dict(orient="records")}),
         JSON, "success", "dataframe_records", 3, f"{SCORING}::test_records_oriented_json_to_df"),
    Case("mixed types, inputs as columns", "mixed", as_json({"inputs": MIXED.to_dict(orient="list")}), JSON,
         "success", "inputs", 3, f"{SCORING}::test_serving_model_with_schema ('inputs' format)"),
    Case("mixed types, instances as records", "mixed", as_json({"instances": MIXED.to_dict(orient="records")}),
         JSON, "success", "instances", 3, f"{DOCS} (instances)"),
    Case("mixed types, CSV", "mixed", MIXED.to_csv(index=False).encode(), CSV + "; charset=utf-8", "success", "csv",
         3, f"{SCORING}::test_parse_with_schema_csv"),
    Case("mixed types, Parquet", "mixed", parquet(MIXED), PARQUET, "success", "parquet", 3, f"{DOCS} (Parquet)"),
    Case("text where the signature says double", "mixed",
         split(MIXED.assign(spend=["lots", "some", "none"])), JSON, "model_rejected", "dataframe_split", 3,
         f"{SCORING}::test_parse_with_schema (bad values)"),
    # -- a tensor-input model: nested arrays by name ----------------------------------------------
    Case("named tensors as columns (inputs)", "tensor",
         as_json({"inputs": {"a": [[1, 2], [3, 4]], "b": [[[1, 2], [3, 4]], [[0, 0], [0, 1]]]}}), JSON, "success",
         "inputs", 2, f"{SCORING}::test_scoring_server_successfully_evaluates_correct_tf_serving_keras_inputs"),
    Case("named tensors as rows (instances)", "tensor",
         as_json({"instances": [{"a": [1, 2], "b": [[1, 2], [3, 4]]}]}), JSON, "success", "instances", 1,
         f"{SCORING}::test_scoring_server_successfully_evaluates_correct_tf_serving_keras_instances"),
    Case("a tensor of the wrong shape", "tensor", as_json({"inputs": {"a": [[1, 2, 3]], "b": [[[1, 2], [3, 4]]]}}),
         JSON, "model_rejected", "inputs", 1, "tensor schema enforcement (shape)"),
    Case("a table where tensors are expected", "tensor", as_json({"dataframe_split": {"columns": ["a"], "data": [[1]]}}),
         JSON, "model_rejected", "dataframe_split", 1, "tensor schema enforcement (a DataFrame)"),
    # -- a GenAI pyfunc: MLflow's unified LLM input -----------------------------------------------
    Case("chat with temperature and max_tokens", "genai",
         as_json({"messages": [{"role": "user", "content": "what is the weather like"}], "temperature": 0.2,
                  "max_tokens": 64}), JSON, "success", "chat", None, f"{LLM_DOCS} (chat)"),
    Case("chat cut by max_tokens", "genai",
         as_json({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me a story"}],
                  "max_tokens": 2}), JSON, "success", "chat", None, f"{LLM_DOCS} (chat, max_tokens)"),
    Case("chat in non-ASCII text", "genai",
         as_json({"messages": [{"role": "user", "content": "Grüße aus 東京"}]}), JSON, "success", "chat", None,
         f"{LLM_DOCS} (chat)"),
    Case("a completion", "genai", as_json({"prompt": "once upon a time", "max_tokens": 3}), JSON, "success",
         "completions", None, f"{LLM_DOCS} (completions)"),
    Case("completions of several prompts", "genai", as_json({"prompt": ["a b c", "d e"], "temperature": 0.0}), JSON,
         "success", "completions", None, f"{LLM_DOCS} (completions, a list)"),
    Case("an embedding", "genai", as_json({"input": "embed me"}), JSON, "success", "embeddings", None,
         f"{LLM_DOCS} (embeddings)"),
    Case("embeddings of several inputs", "genai", as_json({"input": ["one two", "three"]}), JSON, "success",
         "embeddings", None, f"{LLM_DOCS} (embeddings, a list)"),
    Case("a chat answer without usage", "genai",
         as_json({"messages": [{"role": "user", "content": "hi"}], "omit_usage": True}), JSON, "success", "chat", None,
         "a model that reports no token usage"),
    Case("a GenAI model that raises", "genai", as_json({"messages": [{"role": "user", "content": "hi"}], "fail": True}),
         JSON, "model_rejected", "chat", None, "scoring_server.invocations: an exception inside the model is a 400"),
]

# Requests the proxy answers itself: MLflow fails on them (500) or refuses them for nothing the
# model needs to see. (name, body, content type or None, MLflow's status, the proxy's status and code)
GUARDS = [
    ("no content type", split(PIMA), None, 500, 415, "unsupported_media_type"),
    ("JSON nested 5,000 deep", b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}", JSON, 500, 400, "invalid_json"),
    ("an integer of 5,000 digits", b'{"inputs": [[' + b"1" * 5000 + b"]]}", JSON, 500, 400, "invalid_json"),
    ("an empty JSON body", b"", JSON, 400, 400, "invalid_input"),
    ("an empty CSV body", b"", CSV, 400, 400, "invalid_input"),
]

MODELS = ("demo", "mixed", "genai", "tensor")
SERVERS = {"demo": "mlflow_server", "mixed": "mixed_mlflow", "genai": "genai_mlflow", "tensor": "tensor_mlflow"}
IDENTITY = {"genai": (GENAI_NAME, GENAI_VERSION), "tensor": (TENSOR_NAME, TENSOR_VERSION)}


def test_the_table_is_wide_enough():
    assert len(CASES) >= 30
    assert {case.model for case in CASES} == set(MODELS)
    assert {case.format for case in CASES} >= {"dataframe_split", "dataframe_records", "instances", "inputs", "chat",
                                               "completions", "embeddings", "csv", "parquet", "other"}


def post(url: str, body: bytes, content_type: str | None) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    prepared = requests.Request("POST", url, data=body, headers=headers).prepare()
    if content_type is None:
        prepared.headers.pop("Content-Type", None)
    with requests.Session() as session:
        return session.send(prepared, timeout=30)


def mlflow_message(response: requests.Response) -> str:
    """MLflow's error message: its JSON ``message``, or its text."""
    if response.headers["Content-Type"].startswith(JSON):
        return response.json()["message"]
    return response.text.strip()


def difference(case: Case, direct: requests.Response, proxied: requests.Response) -> str | None:
    """What differs between MLflow's answer and the proxy's, or None."""
    if (direct.status_code == 200) != case.answered:
        return f"MLflow answered {direct.status_code}, the table expects {case.outcome}: {direct.text[:300]}"
    if proxied.status_code != direct.status_code:
        return f"status {proxied.status_code}, MLflow {direct.status_code}: {proxied.text[:200]}"
    if not proxied.headers["Content-Type"].startswith(JSON):
        return f"content type {proxied.headers['Content-Type']}"
    if case.answered:
        if proxied.json() != direct.json():
            return f"answer {proxied.text[:200]} != {direct.text[:200]}"
        return None
    body = proxied.json()
    if "stack_trace" in body or "Traceback" in proxied.text:
        return "a stack trace reached the client"
    message = body["error"]["message"] if "error" in body else body.get("message")
    if message != mlflow_message(direct):
        return f"message {message!r} is not MLflow's {mlflow_message(direct)!r}"
    if "error" in body and body["error"]["code"] != case.outcome:
        return f"code {body['error']['code']} != {case.outcome}"
    return None


def expected_counts(cases: list[Case]) -> dict[str, Counter]:
    return {
        "outcome": Counter(case.outcome for case in cases),
        "format": Counter(case.format for case in cases),
    }


def check_counts(samples: dict, cases: list[Case], where: str) -> list[str]:
    expected = expected_counts(cases)
    problems = []
    successes = total(samples, "prediction_success_total")
    failures = total(samples, "prediction_failure_total")
    if successes != expected["outcome"]["success"]:
        problems.append(f"{where}: {successes} successes, expected {expected['outcome']['success']}")
    if successes + failures != len(cases):
        problems.append(f"{where}: {successes + failures} predictions counted, {len(cases)} sent")
    for reason, count in expected["outcome"].items():
        if reason != "success" and total(samples, "prediction_failure_by_reason_total", reason=reason) != count:
            problems.append(f"{where}: reason {reason} "
                            f"{total(samples, 'prediction_failure_by_reason_total', reason=reason)} != {count}")
    for fmt in expected["format"] | Counter(dict.fromkeys(["other"], 0)):
        counted = total(samples, "prediction_requests_by_format_total", format=fmt)
        if counted != expected["format"][fmt]:
            problems.append(f"{where}: format {fmt} {counted} != {expected['format'][fmt]}")
    rows = sum(case.rows or 0 for case in cases)
    if total(samples, "model_input_rows_total") != rows:
        problems.append(f"{where}: rows {total(samples, 'model_input_rows_total')} != {rows}")
    return problems


# The demo model's cases run in the fast tier; each other model needs an MLflow model server of
# its own and many more cases.
@pytest.mark.parametrize("model", [model if model == "demo" else pytest.param(model, marks=pytest.mark.slow)
                                   for model in MODELS])
def test_every_case_gets_mlflows_answer_through_the_proxy_and_is_counted_exactly(
        model, request, start_collector, start_proxy):
    server = request.getfixturevalue(SERVERS[model])
    collector = start_collector()
    settings = {"model_dir": str(server.model_dir)}
    if model in IDENTITY:
        settings.update(model_name=IDENTITY[model][0], model_version=IDENTITY[model][1])
    proxy = start_proxy(server.url, env={**otlp_env(collector), "OTEL_SERVICE_NAME": f"conformance-{model}"},
                        **settings)
    cases = [case for case in CASES if case.model == model]
    problems = []
    for case in cases:
        direct = post(server.url + "/invocations", case.body, case.content_type)
        proxied = post(proxy.url + "/invocations", case.body, case.content_type)
        if (problem := difference(case, direct, proxied)) is not None:
            problems.append(f"{case.name} ({case.source}): {problem}")
    assert not problems, "\n".join(problems)

    problems = check_counts(proxy.metrics(), cases, "/metrics")
    through_collector = wait_for_collector(collector, len(cases))
    problems += check_counts(through_collector, cases, "collector")
    assert not problems, "\n".join(problems)
    if model == "mixed":
        check_the_profiles_bins_counted_every_answered_row(proxy.metrics(), cases)


def wait_for_collector(collector, predictions: int, timeout: float = 15.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        samples = parse_samples(collector.metrics_text())
        counted = total(samples, "prediction_success_total") + total(samples, "prediction_failure_total")
        if counted >= predictions or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def check_the_profiles_bins_counted_every_answered_row(samples: dict, cases: list[Case]) -> None:
    answered_rows = sum(case.rows for case in cases if case.answered)
    for feature in MIXED_COLUMNS:
        binned = total(samples, "model_feature_bin_total", feature=feature)
        missing = total(samples, "model_feature_missing_total", feature=feature)
        assert binned + missing == answered_rows, (feature, binned, missing, answered_rows)
    assert total(samples, "model_input_unreadable_total") == 0
    assert total(samples, "model_input_violation_total", kind="wrong_type", column="spend") == 3


@pytest.mark.parametrize("name, body, content_type, mlflow_status, status, code", GUARDS,
                         ids=[guard[0] for guard in GUARDS])
def test_what_mlflow_fails_on_or_needs_not_see_the_proxy_answers_itself(
        mlflow_server, app_proxy, name, body, content_type, mlflow_status, status, code):
    assert post(mlflow_server.url + "/invocations", body, content_type).status_code == mlflow_status
    headers = {"Content-Type": content_type} if content_type is not None else {}
    response = app_proxy.post("/invocations", data=body, headers=headers)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    samples = app_proxy.metrics()
    assert total(samples, "prediction_failure_by_reason_total", reason=code) == 1
    assert total(samples, "prediction_failure_total") == 1


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_mlflows_scoring_api_is_forwarded_and_counted_as_requests_not_predictions(mlflow_server, app_proxy, path):
    direct = requests.get(mlflow_server.url + path, timeout=10)
    proxied = app_proxy.get(path)
    assert (proxied.status_code, proxied.headers["Content-Type"], proxied.data) == (
        direct.status_code, direct.headers["Content-Type"], direct.content)
    samples = app_proxy.metrics()
    assert total(samples, "http_requests_total", route=path, status="200") == 1
    assert total(samples, "prediction_success_total") + total(samples, "prediction_failure_total") == 0


def test_the_scoring_api_answers_503_when_mlflow_is_down(start_app):
    from inferwatch.stack.processes import free_port

    proxy = start_app(f"http://127.0.0.1:{free_port()}")
    response = proxy.get("/ping")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "upstream_unavailable"
