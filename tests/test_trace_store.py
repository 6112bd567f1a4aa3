"""The trace store: Jaeger v2 (built from its Go module) behind the real collector.

``inferwatch traces`` against it (slowest and failed traces, model time vs proxy time, the span
tree), and Jaeger killed and restarted under load: the proxy answers every request and nothing
waits on the trace store.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from alerting_stack import poll
from inferwatch.cli import main
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.processes import http_ok
from inferwatch.stack.traces import humanize_us, parse_since
from support import otlp_env, tunable_payload

pytestmark = pytest.mark.slow


def trace_id_of(response: requests.Response) -> str:
    return response.headers["traceparent"].split("-")[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["traces", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_inferwatch_traces_lists_slow_and_failed_traces_with_model_and_proxy_time_and_shows_the_tree(
    tunable_mlflow, start_collector, start_proxy, start_jaeger, capsys
):
    jaeger = start_jaeger()
    collector = start_collector(jaeger, OTELCOL_TRACES_SAMPLE_PERCENT="100", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_proxy(tunable_mlflow.url, env=otlp_env(collector))
    fast = proxy.post(json=tunable_payload())
    failed = proxy.post(json=tunable_payload(fail=True))
    with ThreadPoolExecutor(2) as pool:
        slow = list(pool.map(lambda delay: proxy.post(json=tunable_payload(delay_s=delay)), (2.1, 2.4)))
    everything = [fast, failed, *slow]
    for response in everything:
        poll(lambda r=response: jaeger.query.trace(trace_id_of(r)), 30, "the trace in Jaeger")

    status, out, _ = run_cli(capsys, "--jaeger", jaeger.url, "--slow", "--since", "5m")
    assert status == 0, out
    rows = [line for line in out.splitlines() if line[:32] in {trace_id_of(r) for r in everything}]
    assert [row[:32] for row in rows] == [trace_id_of(slow[1]), trace_id_of(slow[0])], out  # slowest first
    for row, delay in zip(rows, (2.4, 2.1)):
        total, model, proxy_time = (float(value.rstrip("ms").rstrip("s")) for value in row.split()[3:6])
        assert total >= delay and model >= delay and row.split()[5].endswith("ms"), row
        assert row.split()[6:] == ["200", "success"], row

    status, out, _ = run_cli(capsys, "--jaeger", jaeger.url, "--errors")
    assert status == 0 and trace_id_of(failed) in out and trace_id_of(fast) not in out, out
    assert "model_rejected" in out

    status, out, _ = run_cli(capsys, "--jaeger", jaeger.url, "--trace", trace_id_of(slow[1]))
    assert status == 0, out
    header, server_line, client_line = out.splitlines()[:3]
    assert header.startswith(f"trace {trace_id_of(slow[1])}: ") and "model (MLflow call) 2.4" in header, out
    assert "POST /predict [inferwatch server]" in server_line and "inferwatch.request.id=" in server_line
    assert "  POST [inferwatch client]" in client_line and "http.response.status_code=200" in client_line

    status, out, _ = run_cli(capsys, "--jaeger", jaeger.url, "--request-id", slow[0].headers["X-Request-Id"])
    assert status == 0 and out.startswith(f"trace {trace_id_of(slow[0])}: "), out

    status, _, err = run_cli(capsys, "--jaeger", jaeger.url, "--trace", "0" * 31 + "1")
    assert status == 1 and "is not in the trace store" in err
    status, _, err = run_cli(capsys, "--jaeger", "http://127.0.0.1:9", "--slow")
    assert status == 1 and "cannot read the trace store" in err
    assert parse_since("1h30m") == 5400 and humanize_us(2_400_000) == "2.400s" and humanize_us(1500) == "1.5ms"
    with pytest.raises(ValueError):
        parse_since("15 minutes")


def test_jaeger_killed_and_restarted_under_load_the_proxy_answers_every_request_and_never_waits(
    mlflow_server, start_collector, start_proxy, start_jaeger
):
    jaeger = start_jaeger()
    collector = start_collector(jaeger, OTELCOL_TRACES_SAMPLE_PERCENT="100", OTELCOL_TRACES_DECISION_WAIT="1s")
    proxy = start_proxy(mlflow_server.url, env=otlp_env(collector))
    first = proxy.post(json=SEED_EXAMPLE)
    poll(lambda: jaeger.query.trace(trace_id_of(first)), 30, "the first trace in Jaeger")

    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def load() -> None:  # bounded: at most 2000 requests or until stopped
        session = requests.Session()
        while not stop.is_set() and len(answers) < 2000:
            began = time.perf_counter()
            status = session.post(proxy.url + "/predict", json=SEED_EXAMPLE, timeout=10).status_code
            answers.append((status, time.perf_counter() - began))
            time.sleep(0.01)
        session.close()

    workers = [threading.Thread(target=load) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        jaeger.process.kill()
        during_outage = len(answers)
        time.sleep(4)  # the collector retries its exports meanwhile
        assert len(answers) > during_outage + 20, "requests stalled while Jaeger was down"
        jaeger.start()
        time.sleep(3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    statuses = {status for status, _ in answers}
    assert statuses == {200}, statuses
    assert max(latency for _, latency in answers) < 1.0, "a request waited on the trace store"
    assert http_ok(f"http://127.0.0.1:{collector.ports.health}/")

    print(f"\n{len(answers)} answers, all 200, slowest {max(latency for _, latency in answers):.3f} s")
    after = proxy.post(json=SEED_EXAMPLE)
    found = poll(lambda: jaeger.query.trace(trace_id_of(after)), 30, "a trace sent after the restart in Jaeger")
    assert found.server.name == "POST /predict"
