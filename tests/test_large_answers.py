"""Answers of any size leave the proxy as fast as small ones: no write waits for the client's ACK.

uWSGI's HTTP router forwards an answer in 4 KiB writes. Before the proxy made its listening socket
with TCP_NODELAY, each write after the first waited for the client's delayed ACK (Nagle's
algorithm, about 40 ms on Linux): a 5,000-row batch took 1.5 times the direct call, a regressor's
1,000-row answer (20 KiB) and a 1 MB answer about 7 times, a plain /metrics scrape 56 ms.

Each case sends the same request through a real proxy and straight to the real MLflow model
server, interleaved on keep-alive connections as a batch client would, and holds the proxy to
1.2 times the direct call plus 5 ms (its own work on a large request: parsing the body, passing
it on twice), compared at the lower quartile of each side: a stalled write is in every call, so
it shows there as in the median, while the other runs sharing the machine's two cores, which
slow the proxy's three processes more than MLflow's one, show less. /metrics has no direct
counterpart: plain and gzipped, every scrape must take less than one delayed ACK.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pytest
import requests

from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import REGRESSOR_COLUMNS, tunable_payload

ROUNDS = 20
WARM_UP = 2
DELAYED_ACK_S = 0.040  # Linux's shortest delayed ACK: a stalled write waits at least this long
JSON_TYPE = {"Content-Type": "application/json"}


def lower_quartile(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=4)[0]


def interleaved_calls(proxy_url: str, direct_url: str, body: bytes) -> tuple[list[float], list[float], int]:
    """Seconds of each call through the proxy and direct, and the answer's size."""
    took = {"proxy": [], "direct": []}
    with requests.Session() as through_proxy, requests.Session() as direct:
        for round_ in range(WARM_UP + ROUNDS):
            for name, session, url in (("proxy", through_proxy, proxy_url), ("direct", direct, direct_url)):
                began = time.perf_counter()
                response = session.post(url, data=body, headers=JSON_TYPE, timeout=30)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, (name, response.text[:300])
                if round_ >= WARM_UP:
                    took[name].append(elapsed)
    return took["proxy"], took["direct"], len(response.content)


def assert_as_fast_as_direct(proxy: list[float], direct: list[float], answer_bytes: int, what: str) -> None:
    proxy_s, direct_s = lower_quartile(proxy), lower_quartile(direct)
    print(f"\n{what}: answer {answer_bytes / 1024:.0f} KiB; lower quartile direct {1000 * direct_s:.1f} ms, "
          f"through the proxy {1000 * proxy_s:.1f} ms (x{proxy_s / direct_s:.2f}, +{1000 * (proxy_s - direct_s):.1f} ms); "
          f"medians {1000 * statistics.median(direct):.1f} and {1000 * statistics.median(proxy):.1f} ms")
    assert proxy_s <= 1.2 * direct_s + 0.005, what


@pytest.mark.slow  # the only fast-tier user of the regressor's MLflow server; the 1 MB answer below stays
def test_a_regressors_large_answer_leaves_as_fast_through_the_proxy(regressor_mlflow, start_proxy):
    proxy = start_proxy(regressor_mlflow.url)
    rows = np.random.default_rng(3).standard_normal((1000, len(REGRESSOR_COLUMNS))).round(3).tolist()
    body = json.dumps({"dataframe_split": {"columns": list(REGRESSOR_COLUMNS), "data": rows}}).encode()
    through, direct, size = interleaved_calls(proxy.url + "/predict", regressor_mlflow.url + "/invocations", body)
    assert size > 4 * 4096  # several of the router's 4 KiB writes
    assert_as_fast_as_direct(through, direct, size, "1,000 rows to a regressor")


def test_a_one_megabyte_answer_leaves_as_fast_through_the_proxy(tunable_mlflow, start_proxy):
    proxy = start_proxy(tunable_mlflow.url)
    # 200 rows: more than a feedback token covers (--feedback-max-rows), so the answer is all there is
    body = json.dumps(tunable_payload(rows=200, answer_bytes=1_000_000)).encode()
    through, direct, size = interleaved_calls(proxy.url + "/predict", tunable_mlflow.url + "/invocations", body)
    assert size > 1_000_000
    assert_as_fast_as_direct(through, direct, size, "a 1 MB answer")


def test_metrics_plain_and_gzipped_never_wait_for_a_delayed_ack(proxy):
    for _ in range(3):  # some series to show
        assert proxy.post(json=SEED_EXAMPLE).status_code == 200
    took = {"plain": [], "gzip": []}
    sizes = {}
    with requests.Session() as session:
        for _ in range(ROUNDS):
            for encoding in took:
                began = time.perf_counter()
                response = session.get(proxy.url + "/metrics", headers={"Accept-Encoding": encoding}, timeout=10,
                                        stream=True)
                raw = response.raw.read()  # as sent: gzip is not undone
                took[encoding].append(time.perf_counter() - began)
                assert response.status_code == 200
                assert response.headers.get("Content-Encoding") == ("gzip" if encoding == "gzip" else None)
                sizes[encoding] = len(raw)
    print(f"\n/metrics: plain {sizes['plain']} bytes, slowest {1000 * max(took['plain']):.1f} ms; "
          f"gzipped {sizes['gzip']} bytes, slowest {1000 * max(took['gzip']):.1f} ms")
    assert sizes["plain"] > 2 * 4096  # several of the router's writes
    assert max(took["plain"]) < DELAYED_ACK_S and max(took["gzip"]) < DELAYED_ACK_S
