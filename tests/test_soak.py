"""A short soak for CI: 35 s of mixed load at 16 clients, checked for leaks and for miscounting.

The same run as ``tests/benchmarks/soak.py`` (which takes minutes and records the figures), cut to
fit the test suite: a real proxy in front of the real MLflow model server, exporting OTLP to the
real collector, with 20 % bad requests.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import soak
from support import otlp_env

DURATION_S = 35.0
WARMUP_S = 10.0  # imports, first connections and allocator pools settle here; left out of the growth
MAX_RSS_GROWTH_PERCENT = 10.0
# Open FDs in the worker: one per request in flight (the HTTP router's connection for it, up to
# the 16 clients), pooled upstream connections, logs and sockets. The in-flight part moves from
# sample to sample; a leak shows as growth from the first half of the samples to the second.
CLIENTS = 16
MAX_FD_SPREAD = CLIENTS + 4
MAX_FD_MEDIAN_GROWTH = 2

pytestmark = pytest.mark.slow


def test_sustained_mixed_load_leaves_memory_and_file_descriptors_flat_and_every_request_counted(
    mlflow_server, start_collector, start_proxy
):
    collector = start_collector()
    proxy = start_proxy(mlflow_server.url, env=otlp_env(collector))
    result = soak(proxy.url, proxy.process.process.pid, DURATION_S, concurrency=CLIENTS, bad_share=0.2,
                  warmup_s=WARMUP_S, sample_every_s=1.0, collector_metrics_url=collector.metrics_url)
    print("\n" + result.markdown())
    figures = result.figures

    assert result.report.sent > 1000, "too little load to judge"
    assert result.unexpected() == {}
    assert result.counter_mismatches() == {}
    assert result.worker_survived
    assert figures["samples_after_warmup"] >= 20
    assert figures["rss_growth_peak_percent"] < MAX_RSS_GROWTH_PERCENT
    assert figures["fds_max"] - figures["fds_min"] <= MAX_FD_SPREAD
    assert figures["fds_median_second_half"] - figures["fds_median_first_half"] <= MAX_FD_MEDIAN_GROWTH
    assert figures["threads_min"] == figures["threads_max"]
