"""The inference log's parts in-process: sampling, redaction, records of every input format, the
rolling files (a real tiny filesystem that fills up), the writer's queue, and the reader.

End to end, with real MLflow servers, proxies and a collector: tests/test_inference_logging.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask import Flask, Response

from inferwatch.contract import inference_log as il
from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.proxy.inference_log import InferenceLog, InferenceLogCounts, encode
from inferwatch.proxy.inference_records import answer_of, inputs_of, prediction_record
from inferwatch.proxy.log_files import RollingFiles
from inferwatch.proxy.prediction import read_prediction
from inferwatch.proxy.redaction import Redactor
from inferwatch.stack.inference_logs import Reader, RecordFilter, labelled_rows, parse_line, record_time, write_table

JSON = "application/json"
MODEL = {"inferwatch.model.name": "m", "inferwatch.model.version": "1"}


def request_of(body: object, content_type: str = JSON):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_prediction(raw, content_type, "req-1")


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def test_a_sample_of_a_tenth_keeps_a_tenth_of_random_ids_within_five_standard_deviations():
    ids = [format(random.getrandbits(128), "032x") for _ in range(20_000)]
    kept = sum(il.Sample(0.1).keeps(i) for i in ids)
    sd = (20_000 * 0.1 * 0.9) ** 0.5
    assert abs(kept - 2_000) < 5 * sd, kept


def test_sequential_client_ids_are_sampled_as_evenly_as_random_ones():
    kept = sum(il.Sample(0.1).keeps(f"order-{n}") for n in range(20_000))
    assert abs(kept - 2_000) < 5 * (20_000 * 0.09) ** 0.5, kept


def test_the_decision_depends_on_the_id_alone_and_a_larger_sample_contains_a_smaller_one():
    ids = [f"id-{n}" for n in range(2_000)]
    first = {i for i in ids if il.Sample(0.1).keeps(i)}
    assert first == {i for i in ids if il.Sample(0.1).keeps(i)}
    assert first <= {i for i in ids if il.Sample(0.5).keeps(i)}
    assert not any(il.Sample(0.0).keeps(i) for i in ids)
    assert all(il.Sample(1.0).keeps(i) for i in ids)


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError):
        il.Sample(1.5)


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------


def test_named_columns_are_dropped_or_hashed_whatever_their_case_and_text_is_masked():
    redactor = Redactor({"email": "drop", "Customer_ID": "hash"}, hash_key=b"k" * 32)
    columns = {"EMAIL": ["a@b.io"], "customer_id": ["c-1", None], "note": ["write to x.y@mail.example.org"],
               "age": [51]}
    out = redactor.columns(columns)
    assert set(out) == {"customer_id", "note", "age"}
    assert out["customer_id"][0] == redactor.hash("c-1") and len(out["customer_id"][0]) == 32
    assert out["customer_id"][1] is None
    assert out["note"] == ["write to <email>"]
    assert out["age"] == [51]
    assert columns["EMAIL"] == ["a@b.io"]  # the request's own values are never changed


def test_json_fields_are_redacted_at_any_depth_and_their_hash_depends_on_the_key():
    document = {"messages": [{"role": "user", "content": "hi", "metadata": {"user": "ann", "ssn": "123-45-6789"}}],
                "user": "ann"}
    one = Redactor({"user": "hash", "ssn": "drop"}, hash_key=b"one")
    other = Redactor({"user": "hash", "ssn": "drop"}, hash_key=b"two")
    out = one.value(document)
    assert out["user"] == out["messages"][0]["metadata"]["user"] == one.hash("ann")
    assert "ssn" not in out["messages"][0]["metadata"]
    assert other.hash("ann") != one.hash("ann")
    assert document["messages"][0]["metadata"]["ssn"] == "123-45-6789"


@pytest.mark.parametrize("text, masked", [
    ("mail john.doe+tag@example.co.uk now", "mail <email> now"),
    ("Zürich: anna@bücher.ch", "Zürich: <email>"),
    ("card 4111 1111 1111 1111 ok", "card <digits> ok"),
    ("iban-ish 12-3456-7890-12", "iban-ish <digits>"),
    ("call +41 79 555 01 23", "call +<digits>"),
    ("on 2026-12-05 at 10:30, order 12345678", "on 2026-12-05 at 10:30, order 12345678"),
    ("no @ here, a@b is no address", "no @ here, a@b is no address"),
])
def test_addresses_and_long_digit_runs_are_masked_in_text(text, masked):
    assert Redactor().text(text) == masked


def test_masking_a_long_text_without_addresses_takes_linear_time():
    started = time.perf_counter()
    Redactor().text("word." * 100_000 + "x@")
    assert time.perf_counter() - started < 1.0


def test_masks_can_be_turned_off_and_hashing_needs_a_key():
    assert Redactor(masks=()).text("a@b.io 4111111111111111") == "a@b.io 4111111111111111"
    with pytest.raises(ValueError):
        Redactor({"x": "hash"})


# ---------------------------------------------------------------------------------------------
# Records of every input format
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, content_type, inputs, params", [
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, None]]}, "params": {"k": 1}}, JSON,
     {"a": [1, 2], "b": ["x", None]}, {"k": 1}),
    ({"dataframe_split": {"data": [[1, 2]]}}, JSON, {"0": [1], "1": [2]}, None),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1], [2, 3]]}}, JSON, None, None),  # ragged
    ({"dataframe_records": [{"a": 1}, {"b": 2}]}, JSON, {"a": [1, None], "b": [None, 2]}, None),
    ({"instances": [{"a": 1}, {"a": 2}]}, JSON, {"a": [1, 2]}, None),
    ({"inputs": {"a": [1, 2], "b": [[0.1, 0.2], [0.3, 0.4]]}}, JSON, {"a": [1, 2], "b": [[0.1, 0.2], [0.3, 0.4]]}, None),
    ({"inputs": {"a": 1, "b": "x"}}, JSON, {"a": [1], "b": ["x"]}, None),
    ({"instances": [[1, 2], [3, 4]]}, JSON, [[1, 2], [3, 4]], None),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}, JSON,
     [{"role": "user", "content": "hi"}], {"temperature": 0.2}),
    ({"prompt": "once upon", "max_tokens": 3}, JSON, "once upon", {"max_tokens": 3}),
    ({"input": ["a", "b"]}, JSON, ["a", "b"], None),
    ({"rows": [[1]]}, JSON, {"rows": [[1]]}, None),
    (b"{not json", JSON, None, None),
    (b"zip,city,n\n00123,Lyon,1\n,Rome,2.5\n", "text/csv",
     {"zip": [123, None], "city": ["Lyon", "Rome"], "n": [1.0, 2.5]}, None),
])
def test_inputs_are_columns_for_tables_and_as_sent_for_the_rest(body, content_type, inputs, params):
    assert inputs_of(request_of(body, content_type))[:2] == (inputs, params)


def test_a_parquet_body_is_read_as_columns():
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), sink)
    assert inputs_of(read_prediction(sink.getvalue(), "application/vnd.apache.parquet"))[0] == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize("fmt, status, body, content_type, expected", [
    (InputFormat.DATAFRAME_SPLIT, 200, b'{"predictions": [1, 0]}', JSON, ([1, 0], None)),
    (InputFormat.INSTANCES, 200, b'[1, 0]', JSON, ([1, 0], None)),
    (InputFormat.CHAT, 200, b'{"choices": [{"message": {"content": "x"}}], "predictions": 1}', JSON,
     ({"choices": [{"message": {"content": "x"}}], "predictions": 1}, None)),
    (InputFormat.DATAFRAME_SPLIT, 400, b'{"error_code": "BAD_REQUEST", "message": "no column Age"}', JSON,
     (None, "no column Age")),
    (InputFormat.OTHER, 415, b'{"error": {"code": "unsupported_media_type", "message": "send JSON"}}', JSON,
     (None, "send JSON")),
    (InputFormat.CSV, 502, b"upstream broke", "text/plain", (None, "upstream broke")),
])
def test_the_answer_gives_the_predictions_or_the_failures_message(fmt, status, body, content_type, expected):
    assert answer_of(fmt, status, body, content_type) == expected


def test_a_record_has_every_field_and_encodes_nan_as_null():
    prediction = request_of({"dataframe_split": {"columns": ["a"], "data": [[float("nan")]]}})
    entry = (1765000000.5, "req-1", 0xABC, 0xDEF, prediction, prediction.format, 200, b'{"predictions": [1]}',
             JSON, PredictionOutcome.SUCCESS, 0.0123456789, 0.01, True)
    record = prediction_record(entry, ("m", "1"), Redactor())
    assert tuple(record) == il.PREDICTION_FIELDS
    assert record["time"] == "2025-12-06T05:46:40.500000Z"
    assert record["trace_id"] == "0" * 29 + "abc" and record["span_id"] == "0" * 13 + "def"
    assert record["latency_s"] == 0.012346
    assert json.loads(encode(record))["inputs"] == {"a": [None]}


# ---------------------------------------------------------------------------------------------
# Files: rotation, a full disk
# ---------------------------------------------------------------------------------------------


def lines_of(n: int, width: int = 100) -> list[bytes]:
    return [json.dumps({"n": i, "pad": "x" * width}).encode() + b"\n" for i in range(n)]


def test_files_rotate_before_they_pass_the_size_and_hold_whole_lines(tmp_path):
    files = RollingFiles(tmp_path / "log", max_bytes=1_000, max_age=3600)
    lines = lines_of(50)
    assert files.write(lines[:20], now=100.0) == 20
    assert files.write(lines[20:], now=101.0) == 30
    files.close()
    written = sorted((tmp_path / "log").iterdir())
    assert len(written) == 7 and all(path.stat().st_size <= 1_000 for path in written)
    assert all(path.name.startswith(il.FILE_PREFIX) and str(os.getpid()) in path.name for path in written)
    assert [json.loads(line)["n"] for path in written for line in path.read_text().splitlines()] == list(range(50))


def test_a_file_is_closed_once_it_is_older_than_its_age(tmp_path):
    files = RollingFiles(tmp_path, max_bytes=10**6, max_age=60)
    files.write(lines_of(1), now=1000.0)
    first = files.path
    files.tick(1059.0)
    assert files.path == first
    files.tick(1060.0)
    assert files.path is None
    files.write(lines_of(1), now=1061.0)
    assert files.path != first and len(list(tmp_path.iterdir())) == 2


def test_a_full_disk_keeps_whole_lines_and_says_how_many_were_written(tiny_filesystem):
    disk = tiny_filesystem(64)
    files = RollingFiles(disk, max_bytes=10**6, max_age=3600)
    lines = lines_of(1_000)  # about 110 KB for 64 KiB
    written = files.write(lines, now=0.0)
    assert 0 < written < 1_000
    assert files.write(lines_of(5), now=1.0) == 0  # still full: nothing, and no error raised
    files.close()
    [path] = disk.iterdir()
    text = path.read_bytes()
    assert text.endswith(b"\n") and text.count(b"\n") == written
    assert [json.loads(line)["n"] for line in text.splitlines()] == list(range(written))


# ---------------------------------------------------------------------------------------------
# The writer: the queue, what is counted, off the request path
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def flask_request():
    app = Flask(__name__)
    with app.test_request_context("/predict", method="POST"):
        yield


def answered() -> Response:
    return Response(b'{"predictions": [1]}', status=200, content_type=JSON)


def test_a_full_queue_drops_and_counts_and_the_rest_is_written(tmp_path, flask_request):
    counts = InferenceLogCounts(MODEL)
    log = InferenceLog(model=("m", "1"), counts=counts, sample=il.Sample(1.0), files=RollingFiles(tmp_path, 10**6, 3600),
                       capacity=5, flush_interval=3600)
    prediction = request_of({"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    for n in range(8):
        log.record(prediction, f"r{n}", prediction.format, answered(), PredictionOutcome.SUCCESS, 0.001, 0.0005)
    log.close()
    assert counts.snapshot() == ({il.FILE: 5, il.OTLP: 0}, {**dict.fromkeys(il.DROP_REASONS, 0), il.QUEUE_FULL: 3})
    records = Reader([tmp_path]).read()
    assert [r["request_id"] for r in records] == [f"r{n}" for n in range(5)]


def test_failures_are_logged_outside_the_sample_unless_turned_off(tmp_path, flask_request):
    ids = [f"r{n}" for n in range(200)]
    for failures, expected in ((True, set(ids)), (False, set())):
        directory = tmp_path / str(failures)
        log = InferenceLog(model=("m", "1"), counts=InferenceLogCounts(MODEL), sample=il.Sample(0.0),
                           failures=failures, files=RollingFiles(directory, 10**6, 3600))
        for request_id in ids:
            log.record(None, request_id, InputFormat.OTHER, Response(b"{}", status=413, content_type=JSON),
                       PredictionOutcome.PAYLOAD_TOO_LARGE, 0.001, None)
        log.close()
        records = Reader([directory]).read() if directory.exists() else []
        assert {r["request_id"] for r in records} == expected
        assert all(r["sampled"] is False for r in records)


def test_recording_costs_the_request_thread_no_json_and_no_write(tmp_path, flask_request, monkeypatch):
    """The request thread only queues: building and writing happen on the writer's thread."""
    threads = set()
    real_encode = encode

    def spy(record):
        threads.add(threading.current_thread().name)
        return real_encode(record)

    monkeypatch.setattr("inferwatch.proxy.inference_log.encode", spy)
    log = InferenceLog(model=("m", "1"), counts=InferenceLogCounts(MODEL), sample=il.Sample(1.0),
                       files=RollingFiles(tmp_path, 10**6, 3600))
    prediction = request_of({"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    log.record(prediction, "r", prediction.format, answered(), PredictionOutcome.SUCCESS, 0.001, 0.0005)
    assert threads == set() and not any(tmp_path.iterdir())
    log.close()
    assert threads == {"inferwatch-inference-log"}


# ---------------------------------------------------------------------------------------------
# The reader: OTLP JSON, cut lines, filters, the join
# ---------------------------------------------------------------------------------------------


def prediction(request_id: str, time_: str, outcome: str = "success", **fields) -> dict:
    return {"kind": "prediction", "time": time_, "request_id": request_id, "model": "m", "model_version": "1",
            "outcome": outcome, "trace_id": "t" + request_id, **fields}


def feedback(request_id: str, time_: str, labels: list) -> dict:
    return {"kind": "feedback", "time": time_, "request_id": request_id, "model": "m", "model_version": "1",
            "labels": labels, "predictions": None}


def test_the_reader_takes_otlp_json_lines_and_skips_a_line_cut_short(tmp_path):
    record = prediction("a", "2026-12-05T10:00:00.000000Z")
    otlp = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {}, "logRecords": [
        {"body": {"stringValue": json.dumps(record)}}, {"body": {"stringValue": "not a record"}}]}]}]}
    (tmp_path / "otlp.jsonl").write_text(json.dumps(otlp) + "\n")
    (tmp_path / "inference-x.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(record)[:40])
    old = time.time() - 10
    os.utime(tmp_path / "inference-x.jsonl", (old, old))
    reader = Reader([tmp_path])
    assert reader.read() == [record, record]
    assert reader.skipped == 1
    assert parse_line(b'{"kind": "other"}') is None


def test_filters_by_model_outcome_kind_and_time():
    records = [prediction("a", "2026-12-05T10:00:00.000000Z"),
               prediction("b", "2026-12-05T11:00:00.000000Z", "model_rejected"),
               feedback("a", "2026-12-05T12:00:00.000000Z", [1])]
    def ids(**kwargs):
        return [r["request_id"] + r["kind"][0] for r in records if RecordFilter(**kwargs)(r)]
    assert ids(outcome="failure") == ["bp"]
    assert ids(outcome="model_rejected") == ["bp"]
    assert ids(outcome="success") == ["ap"]
    assert ids(kind="feedback") == ["af"]
    assert ids(since=record_time("2026-12-05T10:30:00Z")) == ["bp", "af"]
    assert ids(until=record_time("2026-12-05T11:00:00+00:00")) == ["ap", "bp"]
    assert ids(model="other") == []


def test_the_join_gives_one_row_per_labelled_row_with_the_latest_feedback(tmp_path):
    records = [
        prediction("a", "2026-12-05T10:00:00.000000Z", inputs={"x": [1.0, 2.0], "row": ["p", "q"]}, predictions=[0, 1]),
        feedback("a", "2026-12-05T10:01:00.000000Z", [1, 1]),
        feedback("a", "2026-12-05T10:02:00.000000Z", [0, None]),  # the latest: one label, the second unknown
        prediction("b", "2026-12-05T10:00:01.000000Z", inputs=[[1, 2]], predictions=[{"class": "yes"}]),
        feedback("b", "2026-12-05T10:03:00.000000Z", ["no"]),
        feedback("gone", "2026-12-05T10:04:00.000000Z", [1]),
    ]
    joined = labelled_rows(records)
    assert (joined.predictions, joined.unmatched) == (2, 1)
    assert joined.rows == [
        {"request_id": "a", "time": "2026-12-05T10:00:00.000000Z", "model": "m", "model_version": "1", "trace_id": "ta",
         "row": 0, "x": 1.0, "input.row": "p", "prediction": 0, "label": 0},
        {"request_id": "b", "time": "2026-12-05T10:00:01.000000Z", "model": "m", "model_version": "1", "trace_id": "tb",
         "row": 0, "inputs": [[1, 2]], "prediction": "yes", "label": "no"},
    ]
    for name, read in (("rows.parquet", pd.read_parquet), ("rows.csv", pd.read_csv)):
        write_table(joined.rows, tmp_path / name)
        frame = read(tmp_path / name)
        assert list(frame["request_id"]) == ["a", "b"] and list(frame["label"].astype(str)) == ["0", "no"]
        assert json.loads(frame["inputs"][1]) == [[1, 2]]


def test_off_the_proxy_builds_no_log_and_starts_no_thread():
    from inferwatch.proxy.app import close_app, create_app
    from inferwatch.proxy.config import load_settings
    from inferwatch.proxy.telemetry import setup_telemetry

    app = create_app(load_settings({}, environ={}), setup_telemetry(environ={"OTEL_SDK_DISABLED": "true"}),
                     start_sampler=False)
    try:
        assert app.extensions["inferwatch"]["inference_log"] is None
        assert not [t for t in threading.enumerate() if t.name.startswith("inferwatch-inference-log")]
    finally:
        close_app(app)
