"""The inference log end to end: real MLflow model servers, real ``inferwatch serve`` processes, a
real collector, a real filesystem that fills up.

* at sample 1.0 every prediction of a concurrent load is logged exactly once, with its trace;
* at sample 0.1 the logged requests are exactly the ones the request-id hash keeps (within
  binomial bounds of a tenth), the same on a rerun, and every failure besides;
* redaction: hashed and dropped columns, JSON fields, addresses and card numbers in chat
  messages and in the model's echo: none of the raw values reaches a file;
* a full disk: every prediction still answered 200, every record written or counted as dropped;
* a proxy killed in the middle of a load leaves files whose lines are whole records;
* feedback labels joined to their predictions by ``inferwatch logs --join-feedback``, read back
  with pandas from Parquet and CSV;
* OTLP logs through the collector to its file, two workers writing files of their own, and a
  collector that is down costing drops, never a prediction.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests

from alerting_stack import poll
from inferwatch.contract.inference_log import FILE_PREFIX, Sample
from inferwatch.proxy.correlation import REQUEST_ID_HEADER
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.stack.demo_model import DEMO_MODEL_NAME, PIMA_COLUMNS, SEED_EXAMPLE
from inferwatch.stack.inference_logs import Reader
from inferwatch.stack.processes import free_port
from mlflow_models import MIXED_COLUMNS
from support import child_env, otlp_env, total

pytestmark = pytest.mark.slow

TIMEOUT = 30.0
BAD_JSON = b'{"dataframe_split": '


def records_in(*paths: Path) -> list[dict]:
    return Reader(list(paths)).read()


def log_counts(proxy) -> tuple[float, float, dict[str, float]]:
    samples = proxy.metrics()
    dropped = {reason: total(samples, "inference_log_dropped_total", reason=reason)
               for reason in ("queue_full", "write_error", "export_error", "encode_error")}
    return (total(samples, "inference_log_records_total", destination="file"),
            total(samples, "inference_log_records_total", destination="otlp"), dropped)


def counts_when(proxy, done) -> tuple[float, float, dict[str, float]]:
    """The proxy's inference log counts once ``done(written to files, exported, dropped)`` holds."""
    def check():
        counts = log_counts(proxy)
        return counts if done(*counts) else None
    return poll(check, TIMEOUT, "the inference log's counts")


def send_all(url: str, bodies: list[tuple[bytes, dict]], concurrency: int) -> list[requests.Response]:
    """POST each (body, headers) to ``url`` from ``concurrency`` threads, a session each."""
    local = threading.local()

    def send(item):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body, headers = item
        return local.session.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=30)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(send, bodies))


def seed_body(rows: int = 1, shift: float = 0.0) -> bytes:
    example = SEED_EXAMPLE["dataframe_split"]
    data = [[round(v + shift + 0.01 * r, 4) for v in example["data"][0]] for r in range(rows)]
    return json.dumps({"dataframe_split": {"columns": example["columns"], "data": data}}).encode()


def trace_id_of(response: requests.Response) -> str:
    return response.headers["traceparent"].split("-")[1]


def test_at_sample_one_every_prediction_of_a_concurrent_load_is_logged_exactly_once(start_proxy, mlflow_server,
                                                                                    demo_model, tmp_path):
    directory = tmp_path / "inference-log"
    proxy = start_proxy(mlflow_server.url, payload_log_dir=str(directory), model_dir=str(demo_model))
    bodies = [(seed_body(shift=n / 100), {}) for n in range(240)] + [(BAD_JSON, {}) for _ in range(20)]
    answers = send_all(proxy.url + "/predict", bodies, concurrency=8)
    assert [a.status_code for a in answers] == [200] * 240 + [400] * 20
    counts_when(proxy, lambda written, _, dropped: written == 260)
    assert log_counts(proxy)[2] == dict.fromkeys(("queue_full", "write_error", "export_error", "encode_error"), 0)
    proxy.process.stop()

    records = records_in(directory)
    by_id = {r["request_id"]: r for r in records}
    assert len(records) == len(by_id) == 260
    for (body, _), answer in zip(bodies, answers):
        record = by_id[answer.headers[REQUEST_ID_HEADER]]
        assert record["trace_id"] == trace_id_of(answer)
        assert record["model"] == DEMO_MODEL_NAME and record["status"] == answer.status_code
        if answer.status_code == 200:
            sent = json.loads(body)["dataframe_split"]
            assert record["outcome"] == "success" and record["format"] == "dataframe_split" and record["rows"] == 1
            assert record["inputs"] == {name: [value] for name, value in zip(sent["columns"], sent["data"][0])}
            assert record["predictions"] == answer.json()["predictions"]
            assert 0 < record["model_time_s"] <= record["latency_s"]
        else:
            assert record["outcome"] == "invalid_json" and record["inputs"] is None and record["error"]


def test_at_sample_a_tenth_the_request_id_decides_the_same_way_on_a_rerun_and_failures_are_all_kept(
        start_proxy, mlflow_server, tmp_path):
    good = [(seed_body(), {REQUEST_ID_HEADER: f"order-{n}"}) for n in range(1000)]
    bad = [(BAD_JSON, {REQUEST_ID_HEADER: f"broken-{n}"}) for n in range(30)]
    expected = {f"order-{n}" for n in range(1000) if Sample(0.1).keeps(f"order-{n}")} | {f"broken-{n}" for n in range(30)}
    logged = []
    for run in ("first", "rerun"):
        directory = tmp_path / run
        proxy = start_proxy(mlflow_server.url, payload_log_dir=str(directory), payload_log_sample="0.1")
        answers = send_all(proxy.url + "/predict", good + bad, concurrency=4)
        assert [a.status_code for a in answers] == [200] * 1000 + [400] * 30
        proxy.process.stop()
        records = records_in(directory)
        logged.append({r["request_id"] for r in records})
        # a failure is kept either way, and says whether the sample would have had it
        assert all(r["sampled"] is Sample(0.1).keeps(r["request_id"]) for r in records)
    assert logged[0] == logged[1] == expected
    kept = len(expected) - 30
    assert abs(kept - 100) < 5 * (1000 * 0.1 * 0.9) ** 0.5, kept  # binomial(1000, 0.1): sd 9.5


def test_redaction_leaves_no_raw_value_in_the_files(start_proxy, mixed_mlflow, genai_mlflow, tmp_path):
    key = tmp_path / "hash.key"
    key.write_text("a-secret-shared-by-every-instance\n")
    directory = tmp_path / "inference-log"
    settings = {"payload_log_dir": str(directory), "payload_log_key_file": str(key),
                "payload_log_redact": "city:hash,member,user:drop,customer:hash"}
    mixed = start_proxy(mixed_mlflow.url, **settings)
    rows = [{"city": "Zürich", "visits": 4, "spend": 120.5, "member": True},
            {"city": "Kraków", "visits": 1, "spend": 15.0, "member": False},
            {"city": "Zürich", "visits": 9, "spend": 80.0, "member": True}]
    answer = mixed.post(json={"dataframe_records": rows})
    assert answer.status_code == 200, answer.text
    genai = start_proxy(genai_mlflow.url, **settings)
    chat = {"messages": [{"role": "user", "content": "I am anna.berg@example.com, card 4111 1111 1111 1111"}],
            "user": "anna-berg", "metadata": {"customer": "C-77"}, "max_tokens": 20}
    answer = genai.post(json=chat)
    assert answer.status_code == 200, answer.text
    assert "anna.berg@example.com" in answer.text  # the client gets the model's answer unchanged
    mixed.process.stop()
    genai.process.stop()

    raw = b"".join(path.read_bytes() for path in directory.iterdir())
    for secret in ("Zürich", "Kraków", "anna.berg@example.com", "4111", "anna-berg", "C-77", '"member"'):
        assert secret.encode() not in raw, secret
    by_format = {r["format"]: r for r in records_in(directory)}
    table = by_format["dataframe_records"]["inputs"]
    assert set(table) == set(MIXED_COLUMNS) - {"member"}
    assert table["visits"] == [4, 1, 9] and table["spend"] == [120.5, 15.0, 80.0]
    zurich, krakow, zurich_again = table["city"]
    assert zurich == zurich_again != krakow and len(zurich) == 32
    conversation = by_format["chat"]
    assert conversation["inputs"] == [{"role": "user", "content": "I am <email>, card <digits>"}]
    assert conversation["params"]["metadata"]["customer"] != "C-77" and "user" not in conversation["params"]
    assert conversation["predictions"]["choices"][0]["message"]["content"] == "echo: I am <email>, card <digits>"


def test_a_full_disk_answers_every_prediction_and_counts_each_record_written_or_dropped(start_proxy, mlflow_server,
                                                                                      tiny_filesystem):
    disk = tiny_filesystem(48)
    proxy = start_proxy(mlflow_server.url, payload_log_dir=str(disk / "inference-log"))
    answers = send_all(proxy.url + "/predict", [(seed_body(), {}) for _ in range(300)], concurrency=4)
    assert {a.status_code for a in answers} == {200}
    written, _, dropped = counts_when(proxy, lambda written, _, dropped: written + dropped["write_error"] == 300)
    assert 0 < written < 300 and dropped["write_error"] == 300 - written
    assert proxy.post(data=seed_body(), headers={"Content-Type": "application/json"}).status_code == 200
    proxy.process.stop()
    reader = Reader([disk / "inference-log"])
    assert len(reader.read()) == written and reader.skipped == 0


def test_a_proxy_killed_in_the_middle_of_a_load_leaves_files_of_whole_records(start_proxy, mlflow_server, tmp_path):
    directory = tmp_path / "inference-log"
    proxy = start_proxy(mlflow_server.url, payload_log_dir=str(directory))
    answered: list[str] = []
    stop = threading.Event()

    def load():
        session = requests.Session()
        while not stop.is_set():
            try:
                answer = session.post(proxy.url + "/predict", data=seed_body(rows=20),
                                      headers={"Content-Type": "application/json"}, timeout=5)
            except requests.RequestException:
                return
            answered.append(answer.headers[REQUEST_ID_HEADER])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    counts_when(proxy, lambda written, _, dropped: written >= 200)
    proxy.process.kill()
    stop.set()
    for thread in threads:
        thread.join(10)

    files = sorted(directory.iterdir())
    assert files and all(path.name.startswith(FILE_PREFIX) for path in files)
    reader = Reader([directory])
    records = reader.read()
    assert len(records) >= 200 and reader.skipped == 0
    assert {r["request_id"] for r in records} <= set(answered)
    assert all(len(r["inputs"]["Glucose"]) == 20 for r in records)


def test_feedback_labels_join_their_predictions_into_rows_pandas_reads(start_proxy, mlflow_server, demo_model,
                                                                      tmp_path):
    directory = tmp_path / "inference-log"
    proxy = start_proxy(mlflow_server.url, payload_log_dir=str(directory), model_dir=str(demo_model))
    expected = []
    for n in range(12):
        body = seed_body(rows=3, shift=n / 10)
        answer = proxy.post(data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
        if n % 3 == 2:
            continue  # no feedback for these
        labels = [1, None, 0]
        assert proxy.post("/feedback", json={"token": answer.headers[TOKEN_HEADER], "labels": labels}).status_code == 200
        data = json.loads(body)["dataframe_split"]["data"]
        for row in (0, 2):
            expected.append((answer.headers[REQUEST_ID_HEADER], row, data[row], answer.json()["predictions"][row],
                             labels[row]))
    proxy.process.stop()

    for out in (tmp_path / "labelled.parquet", tmp_path / "labelled.csv"):
        done = subprocess.run([sys.executable, "-m", "inferwatch", "logs", str(directory), "--join-feedback", str(out)],
                              env=child_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "16 labelled rows from 8 predictions" in done.stderr
        frame = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)
        assert len(frame) == 16
        assert list(frame.columns) == ["request_id", "time", "model", "model_version", "trace_id", "row",
                                       *PIMA_COLUMNS, "prediction", "label"]
        got = [(r.request_id, r.row, [getattr(r, c) for c in PIMA_COLUMNS], r.prediction, r.label)
               for r in frame.itertuples()]
        assert sorted(got) == sorted(expected)


def test_otlp_logs_reach_the_collectors_file_and_two_workers_write_files_of_their_own(
        start_collector, start_proxy, tunable_mlflow, tmp_path):
    collector = start_collector()
    directory = tmp_path / "inference-log"
    proxy = start_proxy(tunable_mlflow.url, env=otlp_env(collector), workers="2", payload_log_dir=str(directory),
                        payload_log_otlp="true")
    body = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}, "params": {"delay_s": 0.05}}).encode()
    answers = send_all(proxy.url + "/predict", [(body, {}) for _ in range(160)], concurrency=40)
    assert {a.status_code for a in answers} == {200}
    sent = {a.headers[REQUEST_ID_HEADER]: trace_id_of(a) for a in answers}
    proxy.process.stop()

    files = list(directory.iterdir())
    writers = {path.name.split("-")[-2] for path in files}  # the pid in each name
    assert len(writers) == 2, files
    in_files = records_in(directory)
    assert sorted(r["request_id"] for r in in_files) == sorted(sent)
    otlp_directory = collector.workdir / "inference-log"

    def all_exported():
        records = records_in(otlp_directory) if otlp_directory.exists() else []
        return records if len(records) >= len(sent) else None

    exported = poll(all_exported, TIMEOUT, "every record in the collector's file")
    assert {r["request_id"]: r["trace_id"] for r in exported} == sent
    line = json.loads((otlp_directory / "otlp.jsonl").read_text().splitlines()[0])
    log_record = line["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    attributes = {a["key"]: a["value"] for a in log_record["attributes"]}
    assert log_record["eventName"] == "inferwatch.inference.prediction" and log_record["severityText"] == "INFO"
    assert log_record["traceId"] == json.loads(log_record["body"]["stringValue"])["trace_id"]
    assert attributes["inferwatch.prediction.outcome"] == {"stringValue": "success"}
    assert {a["key"] for a in line["resourceLogs"][0]["resource"]["attributes"]} >= {"service.name", "service.instance.id"}


def test_a_collector_that_is_down_costs_export_drops_never_a_prediction(start_proxy, mlflow_server):
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = start_proxy(mlflow_server.url, payload_log_otlp="true",
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
                             "OTEL_METRICS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"})
    answers = send_all(proxy.url + "/predict", [(seed_body(), {}) for _ in range(50)], concurrency=4)
    assert {a.status_code for a in answers} == {200}
    _, exported, _ = counts_when(proxy, lambda written, exported, dropped: dropped["export_error"] == 50)
    assert exported == 0
    # the export's own HTTP calls are no MLflow calls: model time counts the 50 predictions only
    assert total(proxy.metrics(), "upstream_request_duration_seconds_count") == 50


def test_without_the_flags_nothing_runs_and_the_series_are_at_zero(proxy):
    samples = proxy.metrics()
    assert total(samples, "inference_log_records_total") == 0
    assert total(samples, "inference_log_dropped_total") == 0
    assert {dict(labels).get("reason") for name, labels in samples if name == "inference_log_dropped_total"} == {
        "queue_full", "write_error", "export_error", "encode_error"}
    assert proxy.post(json=SEED_EXAMPLE).status_code == 200
    time.sleep(0.5)
    assert total(proxy.metrics(), "inference_log_records_total") == 0
