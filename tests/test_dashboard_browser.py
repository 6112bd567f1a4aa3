"""The dashboard as a person sees it: the native stack's console pages in a real headless Chromium.

The native stack (``inferwatch.stack.up.Stack``: MLflow on the demo model, Jaeger, the collector,
the proxy, the SMTP sink, Alertmanager 0.35, Prometheus 3.16 serving the console pages, which
draw with uPlot inlined from the console library the stack writes) gets real traffic:
successes, bad input (unparseable bodies and rows missing a column), feedback, and four more models
through the same collector: a slow one (the tunable model asked to sleep 2.5 s, above the latency
alert's 2 s), a regressor with feedback (the regression panel's data), the demo model answering
class probabilities with feedback (the estimated performance's) and a GenAI pyfunc with ratings
(the GenAI row's). Then Chromium (Debian's package, driven over its DevTools pipe by
``inferwatch.stack.browser``) opens every console page, and the test checks what was drawn, not
that a page loaded:

* every panel's graph rendered, its own queries returned series with values, uPlot drew each
  series, and its canvas holds pixels of each threshold line's colour and of a series' colour;
  no script error;
* the queries each graph ran are its Grafana panel's queries from the committed dashboard, after
  the console substitutions, and its threshold lines are the Grafana panel's threshold steps;
* the pages' alert strip shows the failure-ratio and latency alerts pending or firing.

Screenshots of every page are written to the test's directory, and to
``$INFERWATCH_SCREENSHOTS_DIR`` when set: ``scripts/screenshots.sh`` regenerates ``docs/images/``
with this test, letting the traffic run ``$INFERWATCH_SCREENSHOTS_TRAFFIC_SECONDS`` (default 0:
only until every query has data) before the pictures, so that the graphs have some history.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from alerting_stack import REPO
from dashboard_queries import query_panels
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.render import consoles, grafana, panels
from inferwatch.stack.browser import Browser
from inferwatch.stack.demo_model import PIMA_COLUMNS, SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from inferwatch.stack.up import Stack, StackPorts
from support import Proxy, start_proxy_process, stop_proxy, tunable_payload

SLOW_JOB, REGRESSOR_JOB, SCORED_JOB = "slow-model", "demand-regressor", "diabetes-probabilities"
GENAI_JOB = "echo-llm"
# A row the demo model calls positive (it calls the seed's example negative).
POSITIVE_EXAMPLE = {"dataframe_split": {"columns": list(PIMA_COLUMNS),
                                        "data": [[1.0, 1.5, 0.0, 0.5, 0.0, 1.2, 0.8, 1.0]]}}
SLOW_SECONDS = 2.5
DATA_TIMEOUT = 75.0
RENDER_TIMEOUT = 30.0
# More traffic before the pictures, for docs/images (scripts/screenshots.sh).
EXTRA_TRAFFIC_SECONDS = float(os.environ.get("INFERWATCH_SCREENSHOTS_TRAFFIC_SECONDS", "0"))
# The graphs show the last 2 minutes, or the whole traffic (the pages' `range`, in seconds).
DURATION_SECONDS = int(max(120, EXTRA_TRAFFIC_SECONDS + 120))
WIDTH = 1400


def committed_dashboard() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def console_substitute(expr: str) -> str:
    """A Grafana panel query as a console page runs it with only `range` in its URL."""
    url_values = {panels.TIME_RANGE: f"{DURATION_SECONDS}s"}
    for name, value in sorted(consoles.SUBSTITUTIONS.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value or url_values.get(name, consoles.ALL))
    return expr


@dataclasses.dataclass
class NativeStack:
    stack: Stack
    demo: Proxy
    slow: Proxy
    regressor: Proxy
    scored: Proxy  # the demo model answering class probabilities
    genai: Proxy

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.prometheus}"


def demo_traffic(stack: NativeStack) -> None:
    """Successes with feedback, unparseable bodies, rows missing a column; the regressor's
    predictions with feedback; the GenAI model's chats (one cut off by its token limit),
    completions, embeddings, a failure and ratings."""
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
    for body, rating in [({"messages": [{"role": "user", "content": "tell me a long story"}], "max_tokens": 2},
                          {"rating": "up"}),
                         ({"prompt": "once upon a time"}, {"score": 2}), ({"input": "embed this"}, None)]:
        answer = stack.genai.post(json=body)
        assert answer.status_code == 200, answer.text
        if rating is not None:
            stack.genai.post("/feedback", json={"token": answer.headers[TOKEN_HEADER], **rating})
    stack.genai.post(json={"messages": [{"role": "user", "content": "x"}], "fail": True})


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
           demo_probability_model, genai_mlflow, start_module_proxy) -> Iterator[NativeStack]:
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
                                                             "INFERWATCH_MODEL_DIR": str(demo_probability_model)}),
            start_module_proxy(genai_mlflow.url, {**otlp, "OTEL_SERVICE_NAME": GENAI_JOB,
                                                  "INFERWATCH_MODEL_NAME": GENAI_JOB}))
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
    """``start_proxy`` for the module's stack: proxies that live as long as the module."""
    logs = tmp_path_factory.mktemp("proxies")
    started: list[Proxy] = []

    def start(upstream: str, env: dict[str, str]) -> Proxy:
        proxy = start_proxy_process(upstream, logs, env=env, host_metrics_interval="1")
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        stop_proxy(proxy)


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


# What the page drew, per panel: its queries as run, its threshold values, series with data,
# series uPlot drew, and per colour it drew with (thresholds first) the canvas pixels of it.
DRAWN = """
Array.from(document.querySelectorAll(".iw-panel")).map(function(node) {
  var entry = Inferwatch.panels[node.id], colored = [];
  if (entry) {
    var canvas = entry.plot.ctx.canvas;
    var pixels = entry.plot.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    colored = entry.colors.map(function(hex) {
      var rgb = [1, 3, 5].map(function(i) { return parseInt(hex.slice(i, i + 2), 16); }), count = 0;
      for (var i = 0; i < pixels.length; i += 4) {
        if (pixels[i + 3] > 200 && Math.abs(pixels[i] - rgb[0]) <= 6 && Math.abs(pixels[i + 1] - rgb[1]) <= 6 &&
            Math.abs(pixels[i + 2] - rgb[2]) <= 6) { count++; }
      }
      return count;
    });
  }
  return {
    id: node.id, title: node.dataset.title, rendered: node.dataset.rendered === "true",
    thresholds: parseInt(node.dataset.thresholds), series: parseInt(node.dataset.series || "0"),
    points: parseInt(node.dataset.points || "0"), drawn: parseInt(node.dataset.drawn || "0"),
    exprs: entry ? entry.exprs : [], threshold_values: entry ? entry.thresholds : [],
    colored: colored, error: node.dataset.error || null
  };
})
"""


def page_url(native: NativeStack, name: str) -> str:
    return f"{native.prometheus}/consoles/{name}?" + urllib.parse.urlencode({"range": f"{DURATION_SECONDS}s"})


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
        assert panel["rendered"] and panel["error"] is None, where
        assert panel["series"] >= 1 and panel["points"] >= panel["series"] + 1, where
        # uPlot drew every threshold line and every series with data
        assert panel["drawn"] >= panel["thresholds"] + panel["series"], where
        # and the canvas shows each threshold's colour and its series' colours (lines of equal
        # values cover each other: the series' pixels are counted together)
        thresholds, own = panel["colored"][:panel["thresholds"]], panel["colored"][panel["thresholds"]:]
        assert all(count >= 10 for count in thresholds) and sum(own) >= 10, (where, panel["colored"])


@pytest.mark.slow
def test_each_graph_ran_its_grafana_panels_queries_and_draws_its_thresholds(drawn):
    for grafana_panel in query_panels(committed_dashboard()):
        panel = drawn[f"panel-{grafana_panel['id']}"]
        steps = [step["value"] for step in grafana_panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                 if step["value"] is not None]
        assert panel["exprs"] == [console_substitute(target["expr"]) for target in grafana_panel["targets"]], panel["title"]
        assert panel["threshold_values"] == steps, panel["title"]


@pytest.mark.slow
def test_every_page_shows_the_failure_and_latency_alerts_pending_or_firing(native, browser):
    # The Prometheus built from its Go module has no web UI: the alerts are on every page, which
    # asks for them again at each refresh (10 s).
    page = browser.open(page_url(native, consoles.page_name(panels.board(), panels.board().rows[0])), width=WIDTH)
    page.wait_for("document.getElementById('iw-alerts').dataset.rendered === 'true'", RENDER_TIMEOUT)
    deadline = time.monotonic() + 60
    states = {}
    while time.monotonic() < deadline:
        shown = page.evaluate("Array.from(document.querySelectorAll('#iw-alerts .iw-alert')).map("
                              "function(chip) { return [chip.dataset.alertname, chip.dataset.state]; })")
        states = {alert: {state for name, state in shown if name == alert}
                  for alert in ("HighPredictionFailureRate", "HighPredictionLatency")}
        if all(states.values()):
            break
        time.sleep(3)
    assert all(states.values()) and set().union(*states.values()) <= {"pending", "firing"}, states


def test_the_dashboard_url_is_the_first_url_the_stack_prints(tmp_path):
    urls = Stack(tmp_path, StackPorts(prometheus=19090)).urls()
    assert list(urls)[0] == "dashboard"
    assert urls["dashboard"] == f"http://127.0.0.1:19090{consoles.dashboard_path()}" == \
        "http://127.0.0.1:19090/consoles/inferwatch.html"
    assert panels.board().rows[0].title == "At a glance"
