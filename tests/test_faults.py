"""Faults under load: real components killed, slowed and restarted while predictions keep coming.

Each test keeps a steady, bounded background load on a real proxy (:class:`SteadyLoad`: four
threads, a short pause between requests, a cap on requests and seconds) and records every answer
with the time it was sent. While it runs, one real component fails: the MLflow model server is
killed and restarted, or answers slower than the read timeout, or the collector is killed and
restarted, or Prometheus is. Afterwards each test checks what clients saw (the status codes), that
the proxy stayed up, that ``active_requests`` is back at 0 and that every counter equals the
answers the clients received.

The only fake is :class:`FakeHalfAnswerUpstream`: a model server that dies or hangs halfway through
its answer, which a real one does only by the luck of a kill's timing.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psutil
import pytest
import requests

from alerting_stack import PrometheusServer, poll, prometheus_test_config, start_prometheus
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from support import MlflowServer, otlp_env, parse_samples, total, tunable_payload
from test_collector import wait_for, without_ignored_labels

LOAD_THREADS = 4
LOAD_PAUSE_S = 0.02  # between one thread's requests: leaves CPU for a restarting server
LOAD_MAX_REQUESTS = 20_000
LOAD_MAX_SECONDS = 120.0
FD_SLACK = 2  # an idle worker may hold a pooled connection or two more than at the baseline


@dataclass(frozen=True)
class Answer:
    began: float  # time.monotonic() when the request was sent
    ended: float
    status: int | str  # the HTTP status, or the name of the transport error


class SteadyLoad:
    """Predictions from a few threads until stopped, bounded in count and time; keeps every answer."""

    def __init__(self, url: str, payload: dict, threads: int = LOAD_THREADS, pause_s: float = LOAD_PAUSE_S):
        self.url = url + "/predict"
        self.payload = payload
        self.pause_s = pause_s
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + LOAD_MAX_SECONDS
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread did not finish"
        return self.snapshot()

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def count(self, status: int | str, since: float = 0.0) -> int:
        return sum(1 for a in self.snapshot() if a.status == status and a.began >= since)

    def _full(self) -> bool:
        with self._lock:
            return len(self.answers) >= LOAD_MAX_REQUESTS

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < self._deadline and not self._full():
                answer = post(session, self.url, self.payload)
                with self._lock:
                    self.answers.append(answer)
                self._stop.wait(self.pause_s)


def post(session: requests.Session, url: str, payload: dict) -> Answer:
    began = time.monotonic()
    try:
        status: int | str = session.post(url, json=payload, timeout=30).status_code
    except requests.RequestException as error:
        status = type(error).__name__
    return Answer(began, time.monotonic(), status)


def statuses(answers: Iterable[Answer]) -> Counter:
    return Counter(answer.status for answer in answers)


def assert_counted_exactly(samples: dict, answers: list[Answer], **by_reason: int) -> None:
    """Every counter equals what the clients received; ``active_requests`` is back at 0."""
    seen = statuses(answers)
    assert total(samples, "http_requests_total") == len(answers)
    assert total(samples, "http_request_duration_seconds_count") == len(answers)
    for status, n in seen.items():
        assert total(samples, "http_requests_total", route="/predict", status=str(status)) == n, status
    assert total(samples, "prediction_success_total") == seen[200]
    assert total(samples, "prediction_failure_total") == len(answers) - seen[200]
    for reason, n in by_reason.items():
        assert total(samples, "prediction_failure_by_reason_total", reason=reason) == n, reason
    assert total(samples, "active_requests") == 0


def assert_alive(proxy) -> None:
    assert proxy.process.running
    assert requests.get(proxy.url + "/healthz", timeout=5).status_code == 200


def uwsgi_worker(proxy) -> psutil.Process:
    """The process that runs the app: uWSGI's master (the proxy's pid) forks one worker, with the
    request threads, and the HTTP router, with one thread."""
    [worker] = [child for child in psutil.Process(proxy.process.process.pid).children() if child.num_threads() > 1]
    return worker


@pytest.mark.slow  # a real component killed or slowed under a load of many seconds
def test_a_model_server_killed_mid_load_gives_503s_and_recovers_without_restarting_the_proxy(
    demo_model, start_proxy, tmp_path
):
    server = MlflowServer(demo_model, free_port(), tmp_path / "mlflow.log").start()
    try:
        proxy = start_proxy(server.url)
        with SteadyLoad(proxy.url, SEED_EXAMPLE) as load:
            wait_for(lambda: load.count(200) >= 50, 30, what="50 predictions before the kill")
            killed_at = time.monotonic()
            server.process.kill()
            wait_for(lambda: load.count(503, since=killed_at) >= 50, 30, what="50 answers while MLflow is down")
            assert_alive(proxy)
            assert requests.get(proxy.url + "/readyz", timeout=5).status_code == 503
            server.start()  # same port, same model; returns once MLflow answers /ping
            restarted_at = time.monotonic()
            wait_for(lambda: load.count(200, since=restarted_at) >= 50, 30, what="50 predictions after the restart")
        answers = load.stop()
        assert requests.get(proxy.url + "/readyz", timeout=5).status_code == 200
    finally:
        server.stop()

    before = statuses(a for a in answers if a.ended < killed_at)
    during = statuses(a for a in answers if killed_at <= a.ended and a.began < restarted_at)
    after = statuses(a for a in answers if a.began >= restarted_at)
    print(f"\nbefore the kill {dict(before)}; MLflow down {restarted_at - killed_at:.1f} s: {dict(during)}; "
          f"after the restart {dict(after)}")
    assert set(before) == {200}
    assert set(during) <= {200, 503} and during[503] >= 50  # refused or reset: never 502, 504 or 500
    assert set(after) == {200}, "recovered without restarting the proxy"
    assert_alive(proxy)
    seen = statuses(answers)
    assert_counted_exactly(proxy.metrics(), answers, upstream_unavailable=seen[503], upstream_timeout=0,
                           upstream_error=0)


@pytest.mark.slow  # a real component killed or slowed under a load of many seconds
def test_a_model_slower_than_the_read_timeout_gives_504s_and_leaks_no_thread_or_connection(
    tunable_mlflow, start_proxy
):
    read_timeout, delay_s, slow_requests = 0.5, 1.0, 48  # three times the proxy's 16 threads
    proxy = start_proxy(tunable_mlflow.url, read_timeout=read_timeout)
    worker = uwsgi_worker(proxy)
    with SteadyLoad(proxy.url, tunable_payload()) as warm_up:  # fills both connection pools
        wait_for(lambda: warm_up.count(200) >= 40, 30, what="40 predictions to warm up")
    answers = warm_up.stop()
    baseline = settled_resources(worker)

    with SteadyLoad(proxy.url, tunable_payload(delay_s=delay_s), pause_s=0.0) as slow:
        wait_for(lambda: len(slow.snapshot()) >= slow_requests, 60, what=f"{slow_requests} slow requests")
    slow_answers = slow.stop()
    answers += slow_answers
    assert set(statuses(slow_answers)) == {504}
    latencies = sorted(a.ended - a.began for a in slow_answers)
    assert read_timeout <= latencies[0] and latencies[-1] < read_timeout + 1.0, "a 504 waited on more than the timeout"

    after = settled_resources(worker, near=baseline)
    print(f"\n{len(slow_answers)} answers 504 in {latencies[0]:.2f}-{latencies[-1]:.2f} s; "
          f"worker threads {baseline[0]} -> {after[0]}, open fds {baseline[1]} -> {after[1]}")
    assert after[0] == baseline[0], "threads leaked"
    assert after[1] <= baseline[1] + FD_SLACK, "file descriptors leaked"
    assert_alive(proxy)

    # MLflow still runs the abandoned predictions; once it has, normal requests succeed again.
    wait_for(lambda: fast_direct_answer(tunable_mlflow.url), 60, what="MLflow to finish the abandoned predictions")
    with requests.Session() as session:
        normal = [post(session, proxy.url + "/predict", tunable_payload()) for _ in range(10)]
    answers += normal
    assert set(statuses(normal)) == {200}
    assert_counted_exactly(proxy.metrics(), answers, upstream_timeout=len(slow_answers), upstream_unavailable=0)


def settled_resources(worker: psutil.Process, near: tuple[int, int] | None = None) -> tuple[int, int]:
    """(threads, open fds) of the idle worker; with ``near``, waits up to 10 s for it to get back there."""
    time.sleep(0.5)  # closed client connections reach the worker
    if near is None:
        return worker.num_threads(), worker.num_fds()

    def back_near() -> tuple[int, int] | None:
        now = worker.num_threads(), worker.num_fds()
        return now if now[0] <= near[0] and now[1] <= near[1] + FD_SLACK else None

    return wait_for(back_near, 10, what=f"the worker back near {near} (threads, fds)")


def fast_direct_answer(mlflow_url: str) -> bool:
    began = time.monotonic()
    response = requests.post(mlflow_url + "/invocations", json=tunable_payload(), timeout=30)
    return response.status_code == 200 and time.monotonic() - began < 0.3


@pytest.mark.slow  # a real component killed or slowed under a load of many seconds
def test_a_collector_killed_mid_load_is_invisible_to_clients_and_its_counters_resume_cumulative(
    mlflow_server, start_collector, start_proxy
):
    collector = start_collector()
    proxy = start_proxy(mlflow_server.url, env=otlp_env(collector))
    with SteadyLoad(proxy.url, SEED_EXAMPLE) as load:
        wait_for(lambda: total(parse_samples(collector.metrics_text()), "prediction_success_total") >= 20, 30,
                 what="predictions on the collector")
        collector.process.kill()
        killed_at = time.monotonic()
        wait_for(lambda: load.count(200, since=killed_at) >= 100, 30, what="100 predictions without a collector")
        time.sleep(2.0)  # several failed export intervals (300 ms each)
        collector.start()  # same ports, empty state
        restarted_at = time.monotonic()
        wait_for(lambda: load.count(200, since=restarted_at) >= 50, 30, what="50 predictions after the restart")
    answers = load.stop()

    latencies = [a.ended - a.began for a in answers]
    print(f"\n{len(answers)} answers {dict(statuses(answers))}, max latency {max(latencies):.3f} s")
    assert set(statuses(answers)) == {200}
    assert max(latencies) < 2.0, "a request waited on the telemetry export"
    assert_alive(proxy)
    direct = proxy.metrics()
    assert_counted_exactly(direct, answers)

    # The restarted collector starts empty; the proxy's next export carries the cumulative totals.
    n = len(answers)
    via_collector = without_ignored_labels(wait_for(
        lambda: (s := parse_samples(collector.metrics_text())) and total(s, "http_requests_total") == n and s,
        30, what=f"{n} requests on the restarted collector"))
    for name in ("http_requests_total", "http_request_duration_seconds_count", "prediction_success_total",
                 "prediction_failure_total", "active_requests"):
        assert total(via_collector, name) == total(direct, name), name


@pytest.mark.slow  # a real component killed or slowed under a load of many seconds
def test_a_prometheus_restart_resumes_scraping_and_rule_evaluation(mlflow_server, start_proxy, tmp_path):
    proxy = start_proxy(mlflow_server.url)
    # The committed rule files as they are; no Alertmanager: no alert fires in this test.
    prometheus = start_prometheus(tmp_path, prometheus_test_config(f"127.0.0.1:{proxy.port}", "rules/*.yml", None))
    try:
        with SteadyLoad(proxy.url, SEED_EXAMPLE) as load:
            poll(lambda: scalar(prometheus, 'job:http_requests:rate5m{job="inferwatch"}'), 30,
                 "the recording rule to have a value")
            before_kill = time.time() - 1.0  # every scrape up to here is committed
            scraped_before = scalar(prometheus, 'sum(http_requests_total{job="inferwatch"})', at=before_kill)
            prometheus.process.kill()  # a crash: the restart replays the write-ahead log
            killed_at = time.monotonic()
            wait_for(lambda: load.count(200, since=killed_at) >= 20, 10, what="predictions while Prometheus is down")
            prometheus.start()  # same port, same storage directory
            restarted = time.time()
            poll(lambda: (scalar(prometheus, 'timestamp(up{job="inferwatch"})') or 0) > restarted
                 and scalar(prometheus, 'up{job="inferwatch"}') == 1, 30, "a scrape after the restart")
            poll(lambda: (scalar(prometheus, 'timestamp(job:http_requests:rate5m{job="inferwatch"})') or 0)
                 > restarted, 30, "the recording rule evaluated after the restart")
            rules = poll(lambda: rules_evaluated_since(prometheus, restarted), 30, "every rule evaluated after the restart")
            resumed_after = time.monotonic() - killed_at
        answers = load.stop()
        print(f"\n{len(answers)} answers {dict(statuses(answers))}; scrapes and all {len(rules)} rules "
              f"resumed {resumed_after:.1f} s after the kill")

        assert set(statuses(answers)) == {200}
        # The samples from before the crash survived it, and nothing sent since was lost.
        assert scalar(prometheus, 'sum(http_requests_total{job="inferwatch"})', at=before_kill) == scraped_before
        poll(lambda: scalar(prometheus, 'sum(http_requests_total{job="inferwatch"})') == len(answers), 30,
             f"Prometheus to scrape all {len(answers)} requests")
        assert scalar(prometheus, 'job:http_requests:rate5m{job="inferwatch"}') > 0
    finally:
        prometheus.stop()
    assert_alive(proxy)
    assert_counted_exactly(proxy.metrics(), answers)


def scalar(prometheus: PrometheusServer, expr: str, at: float | None = None) -> float | None:
    result = prometheus.query(expr, at=at)
    return float(result[0]["value"][1]) if result else None


def rules_evaluated_since(prometheus: PrometheusServer, since: float) -> list[dict] | None:
    """Every rule of every committed group, when each is healthy and was evaluated after ``since``."""
    response = requests.get(prometheus.url + "/api/v1/rules", timeout=10)
    response.raise_for_status()
    rules = [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]
    fresh = all(rule["health"] == "ok" and rfc3339(rule["lastEvaluation"]) > since for rule in rules)
    return rules if rules and fresh else None


def rfc3339(text: str) -> float:
    """Prometheus's timestamps carry nanoseconds; Python parses microseconds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


class FakeHalfAnswerUpstream:
    """A fake model server that sends its headers and half its body, then drops the connection
    (``stall_s=0``) or goes silent for ``stall_s`` seconds.

    A real model server does this when it dies, or hangs, between writing its headers and its
    body; a kill under load hits that moment only by chance, so this fake makes it certain.
    """

    BODY = b'{"predictions": [0]}'

    def __init__(self, stall_s: float = 0.0):
        self.stall_s = stall_s
        self.port = free_port()
        self._socket = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeHalfAnswerUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                received = b""
                while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
                    received += chunk
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.BODY)}\r\n\r\n"
                connection.sendall(head.encode() + self.BODY[: len(self.BODY) // 2])
                time.sleep(self.stall_s)


def test_a_model_server_dying_halfway_through_its_answer_is_a_counted_failure_not_a_500(start_app):
    with FakeHalfAnswerUpstream() as upstream:
        proxy = start_app(upstream.url)
        response = proxy.post(json=SEED_EXAMPLE)
    assert response.status_code in (502, 503), response.text
    assert set(response.json["error"]) == {"code", "message"}
    samples = proxy.metrics()
    assert total(samples, "prediction_failure_total") == 1, "the failed prediction was not counted"
    assert total(samples, "http_requests_total", status="500") == 0


def test_a_model_server_going_silent_halfway_through_its_answer_is_a_504(start_app):
    with FakeHalfAnswerUpstream(stall_s=2.0) as upstream:
        proxy = start_app(upstream.url, read_timeout=0.5)
        response = proxy.post(json=SEED_EXAMPLE)
    assert (response.status_code, response.json["error"]["code"]) == (504, "upstream_timeout")
    assert total(proxy.metrics(), "prediction_failure_by_reason_total", reason="upstream_timeout") == 1
