"""The dashboard as a person sees it: the native stack's console pages in a real headless Chromium.

The native stack (``inferwatch.stack.up.Stack``: MLflow on the demo model, Jaeger, the collector,
the proxy, the SMTP sink, Alertmanager, Prometheus serving the console pages) gets real traffic:
successes, bad input (unparseable bodies and rows missing a column), feedback, and three more models
through the same collector: a slow one (the tunable model asked to sleep 2.5 s, above the latency
alert's 2 s), a regressor with feedback (the regression panel's data) and the demo model answering
class probabilities with feedback (the estimated performance's). Then Chromium (Debian's
package, driven over its DevTools pipe by ``inferwatch.stack.browser``) opens every console page
and Prometheus's alerts page, and the test checks what was drawn, not that a page loaded:

* every panel's graph rendered, its own queries returned series with values, and its SVG holds a
  drawn line for each of them beside each threshold line; no script error;
* the queries each graph ran are its Grafana panel's queries from the committed dashboard, after
  the console substitutions, and its threshold lines are the Grafana panel's threshold steps;
* the alerts page shows the failure-ratio and latency alerts pending or firing.

Screenshots of every page are written to the test's directory, and to
``$INFERWATCH_SCREENSHOTS_DIR`` when set: ``scripts/screenshots.sh`` regenerates ``docs/images/``
with this test, letting the traffic run ``$INFERWATCH_SCREENSHOTS_TRAFFIC_SECONDS`` (default 0:
only until every query has data) before the pictures, so that the graphs have some history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from alerting_stack import REPO
from conftest import Proxy, tunable_payload
from dashboard_queries import query_panels
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.render import consoles, grafana, panels
from inferwatch.stack.browser import Browser
from inferwatch.stack.demo_model import PIMA_COLUMNS, SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from inferwatch.stack.up import Stack, StackPorts

SLOW_JOB, REGRESSOR_JOB, SCORED_JOB = "slow-model", "demand-regressor", "diabetes-probabilities"
# A row the demo model calls positive (it calls the seed's example negative).
POSITIVE_EXAMPLE = {"dataframe_split": {"columns": list(PIMA_COLUMNS),
                                        "data": [[1.0, 1.5, 0.0, 0.5, 0.0, 1.2, 0.8, 1.0]]}}
SLOW_SECONDS = 2.5
DATA_TIMEOUT = 75.0
RENDER_TIMEOUT = 30.0
# More traffic before the pictures, for docs/images (scripts/screenshots.sh).
EXTRA_TRAFFIC_SECONDS = float(os.environ.get("INFERWATCH_SCREENSHOTS_TRAFFIC_SECONDS", "0"))
# The graphs show the last 2 minutes, or the whole traffic (the time control's duration, seconds).
DURATION_SECONDS = int(max(120, EXTRA_TRAFFIC_SECONDS + 120))
WIDTH = 1400


def committed_dashboard() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def console_substitute(expr: str) -> str:
    """A Grafana panel query as a console page runs it with no URL parameters."""
    for name, value in sorted(consoles.SUBSTITUTIONS.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value or consoles.ALL)
    return expr


@dataclasses.dataclass
class NativeStack:
    stack: Stack
    demo: Proxy
    slow: Proxy
    regressor: Proxy
    scored: Proxy  # the demo model answering class probabilities

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.prometheus}"


def demo_traffic(stack: NativeStack) -> None:
    """Successes with feedback, unparseable bodies, rows missing a column; the regressor's
    predictions with feedback."""
    answer = stack.demo.post(json=SEED_EXAMPLE)
    assert answer.status_code == 200, answer.text
    stack.demo.post("/feedback", json={"token": answer.headers[TOKEN_HEADER], "label": 1})
    stack.demo.post(data="{not json", headers={"Content-Type": "application/json"})
    missing = {"dataframe_split": {"columns": list(PIMA_COLUMNS[:-1]), "data": [SEED_EXAMPLE["dataframe_split"]["data"][0][:-1]]}}
    stack.demo.post(json=missing)
    row = {"dataframe_split": {"columns": ["Temperature", "Humidity", "Wind"], "data": [[0.1, 0.2, 0.3]]}}
    for label in (0.0, 1.5):
        regression = stack.regressor.post(json=row)
        assert regression.status_code == 200, regression.text
        stack.regressor.post("/feedback", json={"token": regression.headers[TOKEN_HEADER], "label": label})
    for example, label in ((SEED_EXAMPLE, 0), (POSITIVE_EXAMPLE, 1), (POSITIVE_EXAMPLE, 0)):
        scored = stack.scored.post(json=example)
        assert scored.status_code == 200, scored.text
        stack.scored.post("/feedback", json={"token": scored.headers[TOKEN_HEADER], "label": label})


def keep_traffic_flowing(stack: NativeStack, stop: threading.Event, limit: int = 600) -> None:
    """Demo traffic twice a second and a slow prediction every 3 s, until stopped (bounded)."""
    def slow_prediction():
        try:
            stack.slow.post(json=tunable_payload(delay_s=SLOW_SECONDS))
        except requests.RequestException:
            pass  # the proxy stopped: the module is ending

    def slow_requests():
        for _ in range(limit):
            if stop.wait(3.0):
                return
            threading.Thread(target=slow_prediction, daemon=True).start()

    threading.Thread(target=slow_requests, daemon=True).start()
    for _ in range(limit * 2):
        if stop.wait(0.5):
            return
        try:
            demo_traffic(stack)
        except (requests.RequestException, AssertionError):
            return  # a proxy stopped: the module is ending


@pytest.fixture(scope="module")
def native(tmp_path_factory, tunable_mlflow, regressor_mlflow, regressor_model, demo_probability_mlflow,
           demo_probability_model, start_module_proxy) -> Iterator[NativeStack]:
    run_dir = tmp_path_factory.mktemp("native-stack")
    ports = StackPorts(**{field.name: free_port() for field in dataclasses.fields(StackPorts)
                          if field.name != "alertmanager_cluster"})
    stack = Stack(run_dir, ports)
    stop = threading.Event()
    try:
        stack.start()
        otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports.otlp_http}",
                "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
        native = NativeStack(
            stack, Proxy(ports.proxy, next(p for p in stack.processes if p.name == "proxy")),
            start_module_proxy(tunable_mlflow.url, {**otlp, "OTEL_SERVICE_NAME": SLOW_JOB}),
            start_module_proxy(regressor_mlflow.url, {**otlp, "OTEL_SERVICE_NAME": REGRESSOR_JOB,
                                                      "INFERWATCH_MODEL_DIR": str(regressor_model)}),
            start_module_proxy(demo_probability_mlflow.url, {**otlp, "OTEL_SERVICE_NAME": SCORED_JOB,
                                                             "INFERWATCH_MODEL_DIR": str(demo_probability_model)}))
        trickle = threading.Thread(target=keep_traffic_flowing, args=(native, stop), daemon=True)
        trickle.start()
        wait_for_every_panel_query(native)
        time.sleep(EXTRA_TRAFFIC_SECONDS)
        yield native
        stop.set()
        trickle.join(timeout=30)
    finally:
        stop.set()
        stack.stop()


@pytest.fixture(scope="module")
def start_module_proxy(tmp_path_factory):
    from conftest import child_env
    from inferwatch.stack.processes import ManagedProcess
    import sys

    logs = tmp_path_factory.mktemp("proxies")
    started: list[Proxy] = []

    def start(upstream: str, env: dict[str, str]) -> Proxy:
        port = free_port()
        process = ManagedProcess("inferwatch", [sys.executable, "-m", "inferwatch", "serve"], logs / f"proxy-{port}.log",
                                 env=child_env(INFERWATCH_UPSTREAM=upstream, INFERWATCH_PORT=str(port),
                                               INFERWATCH_HOST_METRICS_INTERVAL="1", **env)).start()
        proxy = Proxy(port, process)
        started.append(proxy)
        process.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=30)
        return proxy

    yield start
    for proxy in started:
        proxy.session.close()
        proxy.process.stop()


def wait_for_every_panel_query(native: NativeStack) -> None:
    """Until every panel query, as the console pages run it, has a line to draw: a series with
    two values in the last two minutes (bounded)."""
    expressions = [(panel["title"], console_substitute(target["expr"]))
                   for panel in query_panels(committed_dashboard()) for target in panel["targets"]]
    deadline = time.monotonic() + DATA_TIMEOUT
    while True:
        missing = [title for title, expr in expressions if not has_a_line(native.prometheus, expr)]
        if not missing or time.monotonic() > deadline:
            assert missing == [], f"no data after {DATA_TIMEOUT:.0f} s: {missing}"
            return
        time.sleep(1)


def has_a_line(prometheus: str, expr: str) -> bool:
    now = time.time()
    body = requests.get(prometheus + "/api/v1/query_range", timeout=10,
                        params={"query": expr, "start": now - 120, "end": now, "step": 5}).json()
    assert body["status"] == "success", (expr, body)
    return any(len([v for v in result["values"] if v[1] not in ("NaN", "+Inf", "-Inf")]) >= 2
               for result in body["data"]["result"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as running:
        yield running


def screenshot_dirs(tmp_path_factory) -> list[Path]:
    dirs = [tmp_path_factory.getbasetemp() / "screenshots"]
    if os.environ.get("INFERWATCH_SCREENSHOTS_DIR"):
        dirs.append(Path(os.environ["INFERWATCH_SCREENSHOTS_DIR"]))
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
    return dirs


def save(png: bytes, name: str, dirs: list[Path]) -> None:
    for folder in dirs:
        (folder / name).write_bytes(png)


# What the page drew, per panel: its queries as run, threshold count, series with data, lines drawn.
DRAWN = """
Array.from(document.querySelectorAll(".iw-panel")).map(function(node) {
  var graph = PromConsole._graph_registry.filter(function(g) { return g.params.node.parentNode === node; })[0];
  return {
    id: node.id, title: node.dataset.title, rendered: node.dataset.rendered === "true",
    thresholds: parseInt(node.dataset.thresholds), series: parseInt(node.dataset.series || "0"),
    points: parseInt(node.dataset.points || "0"), exprs: graph ? graph.params.expr : [],
    lines: Array.from(node.querySelectorAll("svg path")).filter(function(p) {
      return (p.getAttribute("d") || "").indexOf("L") >= 0; }).length,
    errors: node.querySelectorAll(".prom_graph_error").length
  };
})
"""


def page_url(native: NativeStack, name: str) -> str:
    hash_ = "#pctc" + urllib.parse.quote(json.dumps({"duration": DURATION_SECONDS, "endTime": 0}))
    return f"{native.prometheus}/consoles/{name}{hash_}"


@pytest.fixture(scope="module")
def drawn(native, browser, tmp_path_factory) -> dict[str, dict]:
    """Every console page opened, drawn and photographed: {panel id: what it drew}."""
    dirs = screenshot_dirs(tmp_path_factory)
    result: dict[str, dict] = {}
    for name in consoles.pages():
        page = browser.open(page_url(native, name), width=WIDTH, height=900)
        page.wait_for("document.querySelectorAll('.iw-panel').length > 0 && "
                      "document.querySelectorAll('.iw-panel:not([data-rendered])').length === 0", RENDER_TIMEOUT)
        assert page.errors() == [], name
        for panel in page.evaluate(DRAWN):
            result[panel["id"]] = {**panel, "page": name}
        save(page.screenshot(), name.replace(".html", ".png"), dirs)
    return result


@pytest.mark.slow
def test_every_panel_of_every_console_page_drew_its_series_and_threshold_lines(drawn):
    board = committed_dashboard()
    assert sorted(drawn) == sorted(f"panel-{panel['id']}" for panel in query_panels(board))
    for panel in drawn.values():
        where = f"{panel['page']}: {panel['title']}"
        assert panel["rendered"] and panel["errors"] == 0, where
        assert panel["series"] >= 1 and panel["points"] >= panel["series"] + 1, where
        # one drawn line per threshold and at least one per series with data
        assert panel["lines"] >= panel["thresholds"] + 1, where


@pytest.mark.slow
def test_each_graph_ran_its_grafana_panels_queries_and_draws_its_thresholds(drawn):
    for grafana_panel in query_panels(committed_dashboard()):
        panel = drawn[f"panel-{grafana_panel['id']}"]
        steps = [step["value"] for step in grafana_panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                 if step["value"] is not None]
        thresholds, queries = panel["exprs"][:panel["thresholds"]], panel["exprs"][panel["thresholds"]:]
        assert queries == [console_substitute(target["expr"]) for target in grafana_panel["targets"]], panel["title"]
        assert thresholds == [f"vector({value:g})" for value in steps], panel["title"]


@pytest.mark.slow
def test_the_alerts_page_shows_the_failure_and_latency_alerts_pending_or_firing(native, browser, tmp_path_factory):
    # Debian's Prometheus has no React UI: its alerts page is the classic one.
    page = browser.open(f"{native.prometheus}/classic/alerts", width=WIDTH, height=900)
    deadline = time.monotonic() + 45
    states = {}
    while time.monotonic() < deadline:
        page.send("Page.reload")
        page.wait_for("document.readyState === 'complete'", RENDER_TIMEOUT)
        text = page.evaluate("document.body.innerText")
        states = {alert: int(match.group(1)) if (match := re.search(rf"{alert}\s*\((\d+) active\)", text)) else 0
                  for alert in ("HighPredictionFailureRate", "HighPredictionLatency")}
        if all(states.values()):
            break
        time.sleep(3)
    assert all(states.values()), (states, text[:2000])
    save(page.screenshot(full_page=False), "alerts.png", screenshot_dirs(tmp_path_factory))


def test_the_dashboard_url_is_the_first_url_the_stack_prints(tmp_path):
    urls = Stack(tmp_path, StackPorts(prometheus=19090)).urls()
    assert list(urls)[0] == "dashboard"
    assert urls["dashboard"] == f"http://127.0.0.1:19090{consoles.dashboard_path()}" == \
        "http://127.0.0.1:19090/consoles/inferwatch.html"
    assert panels.board().rows[0].title == "At a glance"
