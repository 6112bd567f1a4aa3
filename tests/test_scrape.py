"""/metrics under load: answered from a snapshot, never older than the maximum age, exact when idle.

A real ``inferwatch serve`` in front of the tunable MLflow model holds a slow prediction in
flight (the proxy is "under load") while fast ones complete and /metrics is scraped; the
in-process tests check what the snapshot holds against a registry that counts its collections.
"""

from __future__ import annotations

import gzip
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.proxy.telemetry.exposition import Exposition
from inferwatch.proxy.in_flight import InFlight
from inferwatch.stack.demo_model import SEED_EXAMPLE
from support import parse_samples, total, tunable_payload

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class CountingRegistry(CollectorRegistry):
    """A real registry that counts how often it is collected."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self.collections = 0

    def collect(self):
        self.collections += 1
        yield from super().collect()


def value(body: bytes, name: str = "demo_total") -> float:
    return next(sample.value for family in text_string_to_metric_families(body.decode())
                for sample in family.samples if sample.name == name)


@pytest.fixture
def counted():
    registry = CountingRegistry()
    counter = Counter("demo", "a counter", registry=registry)
    return registry, counter


def test_with_no_request_in_flight_every_scrape_collects_and_is_exact(counted):
    registry, counter = counted
    in_flight = InFlight()
    exposition = Exposition(registry, in_flight, max_age=60).start()
    try:
        for expected in range(1, 4):
            counter.inc()
            assert value(exposition.answer("")[1]) == expected
        assert registry.collections == 3
    finally:
        exposition.stop()


def test_under_load_a_scrape_is_answered_from_a_snapshot_no_older_than_the_maximum_age(counted):
    registry, counter = counted
    in_flight = InFlight()
    exposition = Exposition(registry, in_flight, max_age=0.6)  # no refresher: the scrapes alone decide
    in_flight.started("http")
    counter.inc()
    assert value(exposition.answer("")[1]) == 1  # no snapshot yet: collected now
    counter.inc()
    began = time.monotonic()
    answered = [value(exposition.answer("")[1]) for _ in range(5)]
    if time.monotonic() - began < 0.6:
        assert answered == [1] * 5 and registry.collections == 1, "a young snapshot is served as it is"
    time.sleep(0.65)
    assert value(exposition.answer("")[1]) == 2, "an older snapshot is never served"
    in_flight.ended("http")
    counter.inc()
    assert value(exposition.answer("")[1]) == 3, "with nothing in flight the scrape is exact"


def test_the_refresher_keeps_the_snapshot_young_while_requests_come_and_sleeps_when_none_do(counted):
    registry, counter = counted
    in_flight = InFlight()
    exposition = Exposition(registry, in_flight, max_age=0.4).start()
    try:
        in_flight.started("http")
        time.sleep(0.5)
        assert registry.collections == 0, "snapshots were taken before anyone scraped"
        exposition.answer("")
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and registry.collections < 3:
            time.sleep(0.05)
        assert registry.collections >= 3, "the refresher did not renew the snapshot under load"
        counter.inc()
        time.sleep(0.45)
        before = registry.collections
        assert value(exposition.answer("")[1]) == 1
        assert registry.collections == before, "the scrape waited for a collection under load"
        in_flight.ended("http")
        time.sleep(0.5)  # the refresher's last round after the traffic stopped
        idle = registry.collections
        time.sleep(0.6)
        assert registry.collections == idle, "the refresher collects while no request comes"
    finally:
        exposition.stop()


def test_the_refresher_learns_the_scrape_interval_and_collects_about_once_per_scrape(counted):
    registry, counter = counted
    in_flight = InFlight()
    exposition = Exposition(registry, in_flight, max_age=0.4).start()
    try:
        in_flight.started("http")
        exposition.answer("")
        time.sleep(1.0)
        exposition.answer("")  # the interval is known from here on: 1 s
        before = registry.collections
        served_from_snapshots = 0
        for _ in range(3):
            time.sleep(1.0)
            collections = registry.collections
            exposition.answer("")
            served_from_snapshots += registry.collections == collections
        assert registry.collections - before <= 5, "the refresher collected more often than the scrapes came"
        assert served_from_snapshots >= 2, "the snapshot was not ready when the scrape came"
    finally:
        exposition.stop()


def test_both_formats_of_a_snapshot_come_from_one_collection(counted):
    registry, counter = counted
    in_flight = InFlight()
    exposition = Exposition(registry, in_flight, max_age=60)
    in_flight.started("http")
    counter.inc(7)
    _, text, _ = exposition.answer("")
    content_type, body, encoding = exposition.answer(OPENMETRICS)
    assert registry.collections == 1
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n") and encoding is None
    [family] = [f for f in openmetrics_families(body.decode()) if f.name == "demo"]
    assert family.samples[0].value == value(text) == 7


def test_a_proxy_under_load_answers_scrapes_with_counts_at_most_the_maximum_age_behind(start_proxy, tunable_mlflow):
    proxy = start_proxy(tunable_mlflow.url, metrics_max_age="0.5")
    success = lambda samples: total(samples, "prediction_success_total")  # noqa: E731
    assert proxy.post(json=tunable_payload()).status_code == 200
    assert success(proxy.metrics()) == 1  # idle: exact

    slow = threading.Thread(target=proxy.post, kwargs={"json": tunable_payload(delay_s=3.0)})
    slow.start()
    try:
        time.sleep(0.3)  # the slow prediction is in flight from here on
        for done in range(2, 12):
            assert proxy.post(json=tunable_payload()).status_code == 200
            seen = success(proxy.metrics())
            assert 1 <= seen <= done, "a snapshot counts only requests finished before it"
        time.sleep(0.6)  # past the maximum age: every fast request is in what a scrape shows
        assert success(proxy.metrics()) == 11
        assert slow.is_alive(), "the slow prediction ended early: the scrapes above were not under load"
    finally:
        slow.join(10)
    assert success(parse_samples(proxy.metrics_text())) == 12  # idle again: exact at once


def test_active_requests_counts_the_request_in_flight_and_never_the_scrape(start_proxy, tunable_mlflow):
    proxy = start_proxy(tunable_mlflow.url)
    slow = threading.Thread(target=proxy.post, kwargs={"json": tunable_payload(delay_s=1.5)})
    slow.start()
    try:
        time.sleep(0.4)
        samples = proxy.metrics()  # the first scrape: no snapshot yet, collected now
        assert [value for (name, _), value in samples.items() if name == "active_requests"] == [1]
    finally:
        slow.join(10)
    assert total(proxy.metrics(), "active_requests") == 0


def test_metrics_are_gzipped_for_a_scraper_that_accepts_it_and_plain_otherwise(app_proxy):
    assert app_proxy.post(json=SEED_EXAMPLE).status_code == 200
    for accept in ("", OPENMETRICS):
        plain = app_proxy.get("/metrics", headers={"Accept": accept})
        assert plain.headers.get("Content-Encoding") is None and plain.headers["Vary"] == "Accept-Encoding"
        plain_body = plain.data
        zipped = app_proxy.get("/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert zipped.headers["Content-Type"] == plain.headers["Content-Type"]
        body = gzip.decompress(zipped.data)
        assert len(body) > 4 * int(zipped.headers["Content-Length"]) and b"prediction_success_total" in body
        assert parse_samples(body.decode().replace("# EOF\n", "")).keys() == \
            parse_samples(plain_body.decode().replace("# EOF\n", "")).keys()
    refused = app_proxy.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert refused.headers.get("Content-Encoding") is None
