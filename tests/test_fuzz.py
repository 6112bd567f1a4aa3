"""Hostile and malformed input, generated from the proxy's OpenAPI description (hypothesis).

Bodies include the shapes that break parsers (nesting thousands deep, numbers of thousands of
digits, NaN/Infinity literals, duplicate keys, a UTF-8 BOM, UTF-16/32), odd charsets, and any
body may be sent chunked, without Content-Length; tests/test_hostile.py pins each shape's answer.

Every request goes to the real proxy in front of the real MLflow model server. Whatever arrives,
the proxy never answers 500, every error is JSON in the proxy's shape (or MLflow's, without its
stack trace), the process stays up, and the counters still equal the requests sent.
"""

from __future__ import annotations

import json
from importlib import resources

import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.contract.inputs import PREDICTION_ROUTES, SCORING_API_ROUTES
from inferwatch.stack.demo_model import PIMA_COLUMNS
from support import total

SPEC = yaml.safe_load(resources.files("inferwatch.proxy").joinpath("openapi.yaml").read_text())
OPERATIONAL = {"/metrics", "/healthz", "/readyz"}
PREDICTION_PATHS = list(PREDICTION_ROUTES)
assert set(PREDICTION_PATHS) <= set(SPEC["paths"])
KNOWN = [(method.upper(), path) for path, operations in SPEC["paths"].items() for method in operations]
EXAMPLES = 400

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
rows = st.lists(st.lists(st.floats(-5, 5) | st.text(max_size=3) | st.none(), min_size=0, max_size=9), max_size=4)
mlflow_shaped = st.one_of(
    st.builds(lambda cols, data: {"dataframe_split": {"columns": cols, "data": data}},
              st.lists(st.sampled_from(PIMA_COLUMNS), max_size=9), rows),
    st.builds(lambda records: {"dataframe_records": records},
              st.lists(st.dictionaries(st.sampled_from(PIMA_COLUMNS), st.floats(-5, 5) | st.text(max_size=3)), max_size=3)),
    st.builds(lambda key, value: {key: value}, st.sampled_from(["instances", "inputs"]), json_values),
    st.dictionaries(st.sampled_from(["dataframe_split", "inputs", "params", "rows"]), json_values, max_size=3),
)
# Shapes that break parsers: deep nesting, huge numbers and digit strings, NaN/Infinity literals,
# duplicate keys, and valid JSON in odd encodings.
nested = st.builds(lambda depth, key: (b'{"%s":' % key.encode() + b"[" * depth + b"]" * depth + b"}"),
                   st.integers(1, 6000), st.sampled_from(["inputs", "instances", "a"]))
huge_numbers = st.builds(lambda digits, fraction: b'{"inputs": [[' + digits.encode() + fraction.encode() + b"]]}",
                         st.text("0123456789", min_size=1, max_size=6000), st.sampled_from(["", ".5", "e400", "e-400"]))
literals = st.builds(lambda literal: b'{"dataframe_split": {"columns": ["Glucose"], "data": [[' + literal + b"]]}}",
                     st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e999"]))
duplicate_keys = st.builds(lambda first, second: ("{" + json.dumps(first)[1:-1] + ", " + json.dumps(second)[1:-1] + "}").encode(),
                           mlflow_shaped.filter(bool), mlflow_shaped.filter(bool))
odd_encodings = st.builds(lambda value, encoding: (b"\xef\xbb\xbf" + json.dumps(value).encode() if encoding == "bom"
                                                   else json.dumps(value).encode(encoding)),
                          mlflow_shaped, st.sampled_from(["bom", "utf-16", "utf-16-le", "utf-32"]))
bodies = st.one_of(
    st.binary(max_size=512),
    nested, huge_numbers, literals, duplicate_keys, odd_encodings,
    json_values.map(lambda v: json.dumps(v).encode()),
    mlflow_shaped.map(lambda v: json.dumps(v).encode()),
    st.lists(st.lists(st.floats(-5, 5).map(str), min_size=8, max_size=8), max_size=3).map(
        lambda lines: ("\n".join([",".join(PIMA_COLUMNS), *(",".join(line) for line in lines)]) + "\n").encode()),
)
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/csv", "text/plain", "",
    "application/x-www-form-urlencoded", "application/octet-stream", "multipart/form-data; boundary=x",
    "application/json; format=pandas-split", "APPLICATION/JSON", "application/json; charset=utf-16",
    "application/json; charset=latin-1", "application/json; charset=nonsense",
])
unknown_paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./%", min_size=1, max_size=30).map(lambda p: "/" + p)
requests_ = st.tuples(
    st.one_of(st.tuples(st.just("POST"), st.sampled_from(PREDICTION_PATHS)),
              st.sampled_from(KNOWN), st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "FOO"]),
                                                st.one_of(st.sampled_from(PREDICTION_PATHS), unknown_paths))),
    content_types,
    bodies,
    st.booleans(),  # sent chunked, without Content-Length
)


def check_answer(method: str, path: str, response: requests.Response) -> None:
    assert response.status_code != 500, response.text
    assert response.status_code < 500 or response.status_code in (502, 503, 504)
    if method in ("HEAD", "OPTIONS") or (path == "/metrics" and response.status_code == 200):
        return
    if path in SCORING_API_ROUTES and method == "GET" and response.status_code == 200:
        return  # MLflow's answer as it gave it ("\n", "3.17.2")
    assert response.headers["Content-Type"].startswith("application/json"), (method, path, response.status_code)
    body = response.json()
    if response.status_code == 200:
        return
    if "error" in body:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    else:
        assert {"error_code", "message"} <= set(body) and "stack_trace" not in body, body


def test_generated_requests_never_break_the_proxy_and_are_counted_exactly(proxy):
    sent = {"counted": 0, "predictions": 0}
    session = requests.Session()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(requests_)
    def one(request):
        (method, path), content_type, body, chunked = request
        headers = {"Content-Type": content_type} if content_type else {}
        data = (body[i:i + 1000] for i in range(0, len(body), 1000)) if chunked else body
        try:
            response = session.request(method, proxy.url + path, data=data, headers=headers, timeout=30)
        except requests.ConnectionError as error:  # a kept-alive connection closed without notice?
            raise AssertionError(f"{error!r} after {sent.get('previous')}") from None
        sent["previous"] = (method, path, content_type, body[:80], chunked, response.status_code,
                            response.headers.get("Connection"))
        check_answer(method, path, response)
        if path not in OPERATIONAL:
            sent["counted"] += 1
            sent["predictions"] += method == "POST" and path in PREDICTION_PATHS

    one()
    session.close()
    assert requests.get(proxy.url + "/healthz", timeout=5).status_code == 200
    samples = proxy.metrics()
    assert total(samples, "http_requests_total") == sent["counted"]
    assert total(samples, "prediction_success_total") + total(samples, "prediction_failure_total") == sent["predictions"]
    assert samples[("active_requests", ())] == 0
    assert sent["predictions"] > EXAMPLES // 10, "the strategies must reach the prediction routes"
