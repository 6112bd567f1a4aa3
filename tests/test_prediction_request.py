"""A prediction request as the proxy recognises it, and MLflow's answer as the proxy relays it (in-process).

The format rules are checked against MLflow's own scoring-server functions, so a change of
MLflow's rules in a new release fails here rather than drifting silently.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.pyfunc import scoring_server
from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input

from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.proxy.errors import ProxyError
from inferwatch.proxy.predictor import relay
from inferwatch.proxy.prediction import format_of_content_type, json_format, read_prediction
from inferwatch.proxy.upstream import UpstreamAnswer

JSON = "application/json"


def recognised(body: object, content_type: str = JSON):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_prediction(raw, content_type)


@pytest.mark.parametrize("body, fmt, rows", [
    ({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}, InputFormat.DATAFRAME_SPLIT, 2),
    ({"dataframe_split": {"data": [[1]]}, "params": {"k": 1}}, InputFormat.DATAFRAME_SPLIT, 1),
    ({"dataframe_records": [{"a": 1}] * 3}, InputFormat.DATAFRAME_RECORDS, 3),
    ({"instances": [[1, 2], [3, 4]]}, InputFormat.INSTANCES, 2),
    ({"inputs": {"a": [1, 2, 3], "b": [4, 5, 6]}}, InputFormat.INPUTS, 3),
    ({"inputs": 7}, InputFormat.INPUTS, 1),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}, InputFormat.CHAT, None),
    ({"prompt": ["a", "b"], "max_tokens": 5}, InputFormat.COMPLETIONS, None),
    ({"input": "text"}, InputFormat.EMBEDDINGS, None),
    ({"inputs": [1], "input": "x"}, InputFormat.EMBEDDINGS, None),  # an LLM key wins, as in MLflow
    ({"dataframe_split": {}, "inputs": []}, InputFormat.OTHER, None),
    ({"rows": [[1]]}, InputFormat.OTHER, None),
    ([1, 2], InputFormat.OTHER, None),
    ({"dataframe_split": [{"a": 1}]}, InputFormat.DATAFRAME_SPLIT, None),
])
def test_json_bodies_get_their_format_and_rows(body, fmt, rows):
    prediction = recognised(body)
    assert (prediction.format, prediction.rows, prediction.malformed) == (fmt, rows, False)
    assert prediction.payload == (body if isinstance(body, dict) else None)


@pytest.mark.parametrize("content_type, fmt", [
    ("application/json; charset=utf-16", InputFormat.OTHER),
    ("APPLICATION/JSON", InputFormat.OTHER),
    ("application/json;", InputFormat.OTHER),
    ("application/json; format=pandas-split", InputFormat.OTHER),
    ("text/plain", InputFormat.OTHER),
    ("application/json; charset=UTF-8", InputFormat.DATAFRAME_SPLIT),
    ("application/json ; charset=utf-8", InputFormat.DATAFRAME_SPLIT),
])
def test_the_content_type_is_read_as_mlflow_reads_it(content_type, fmt):
    assert recognised({"dataframe_split": {"data": [[1]]}}, content_type).format is fmt


def mlflow_refuses_content_type(content_type: str) -> bool:
    """Whether MLflow's own scoring function answers 415 for this content type (it never gets
    to the model for those; with no model, it raises on any content type it would read)."""
    try:
        answer = scoring_server.invocations(b"", content_type, None, None)
    except Exception:  # noqa: BLE001 - it went on to read the body: the content type was taken
        return False
    return answer.status == 415


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=UTF-8", "application/json; charset=utf-16", "text/csv",
    "APPLICATION/JSON", "application/json;", "application/json; a=b", "text/csv; charset=utf-8; x=1",
    "application/vnd.apache.parquet", "text/csv;charset=utf-8", "application/octet-stream",
])
def test_what_mlflow_answers_415_is_what_the_proxy_calls_other(content_type):
    assert (format_of_content_type(content_type) is InputFormat.OTHER) == mlflow_refuses_content_type(content_type)


keys = st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params", "messages",
                        "prompt", "input", "data", "columns"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, st.just([]), max_size=4))
def test_the_format_follows_mlflows_own_rules_for_any_set_of_keys(body):
    fmt = json_format(body)
    assert fmt.is_llm == is_unified_llm_input(body)
    if not fmt.is_llm:
        tabular = set(body) & scoring_server.SUPPORTED_FORMATS
        assert (fmt is not InputFormat.OTHER) == (len(tabular) == 1)


def test_csv_and_parquet_count_their_rows():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "é", "東"]})
    assert recognised(frame.to_csv(index=False).encode(), "text/csv").rows == 3
    assert recognised(b"a,b\n1,2", "text/csv").rows == 1
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    parquet = recognised(buffer.getvalue(), "application/vnd.apache.parquet")
    assert (parquet.format, parquet.rows) == (InputFormat.PARQUET, 3)
    assert recognised(b"not parquet", "application/vnd.apache.parquet").rows is None


@pytest.mark.parametrize("body", [b"{not json", b'{"inputs": "\xff\xfe"}', "{}".encode("utf-16")[:-1]])
def test_a_body_that_is_not_json_is_forwarded_and_marked_malformed(body):
    prediction = recognised(body)
    assert (prediction.format, prediction.malformed, prediction.payload) == (InputFormat.OTHER, True, None)


@pytest.mark.parametrize("body, code", [
    (b"", "invalid_input"),
    (b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid_json"),
    (b'{"inputs": [' + b"9" * 5000 + b"]}", "invalid_json"),
])
def test_what_would_make_mlflow_fail_is_refused(body, code):
    with pytest.raises(ProxyError) as refused:
        recognised(body)
    assert refused.value.code == code and refused.value.status == 400


def test_utf16_and_a_byte_order_mark_are_read_as_mlflow_reads_them():
    body = {"instances": [{"a": 1}]}
    assert recognised(json.dumps(body).encode("utf-16")).payload == body
    assert recognised(b"\xef\xbb\xbf" + json.dumps(body).encode()).payload == body


SPLIT = recognised({"dataframe_split": {"data": [[1]]}})


def test_a_success_is_relayed_byte_for_byte():
    response, outcome = relay(UpstreamAnswer(200, b'{"predictions": [1]}', "application/json"), SPLIT)
    assert (response.status_code, response.content_type, response.get_data(), outcome) == (
        200, "application/json", b'{"predictions": [1]}', PredictionOutcome.SUCCESS)


def test_mlflows_json_error_keeps_status_and_body_less_the_stack_trace():
    error = {"error_code": "BAD_REQUEST", "message": "no", "stack_trace": "Traceback ..."}
    response, outcome = relay(UpstreamAnswer(400, json.dumps(error).encode(), "application/json"), SPLIT)
    assert response.status_code == 400 and response.get_json() == {"error_code": "BAD_REQUEST", "message": "no"}
    assert outcome is PredictionOutcome.MODEL_REJECTED
    plain = json.dumps({"error_code": "BAD_REQUEST", "message": "no"}).encode()
    assert relay(UpstreamAnswer(400, plain, "application/json"), SPLIT)[0].get_data() == plain


def test_mlflows_text_error_is_wrapped_with_its_status_and_message():
    response, outcome = relay(UpstreamAnswer(415, b"The scoring server only supports UTF-8", "text/plain"), SPLIT)
    assert response.status_code == 415
    assert response.get_json() == {"error": {"code": "unsupported_media_type",
                                             "message": "The scoring server only supports UTF-8"}}
    assert outcome is PredictionOutcome.UNSUPPORTED_MEDIA_TYPE


@pytest.mark.parametrize("prediction, outcome", [
    (recognised(b"{nope"), PredictionOutcome.INVALID_JSON),
    (recognised({"rows": []}), PredictionOutcome.INVALID_INPUT),
    (SPLIT, PredictionOutcome.MODEL_REJECTED),
])
def test_why_mlflow_refused_is_what_the_proxy_saw(prediction, outcome):
    assert relay(UpstreamAnswer(400, b"{}", "application/json"), prediction)[1] is outcome


@pytest.mark.parametrize("status, code", [(500, "upstream_error"), (502, "upstream_error"),
                                          (503, "upstream_unavailable"), (504, "upstream_timeout"),
                                          (302, "upstream_error")])
def test_a_failing_model_server_is_the_proxys_5xx(status, code):
    with pytest.raises(ProxyError) as failed:
        relay(UpstreamAnswer(status, b"Internal Server Error at http://10.0.0.7", "text/plain"), SPLIT)
    assert failed.value.code == code and "10.0.0.7" not in failed.value.message
