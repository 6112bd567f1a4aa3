"""``/metrics``: the Prometheus text format, or OpenMetrics with exemplars when the scraper asks.

opentelemetry-exporter-prometheus turns each collection into prometheus_client metric families
but drops the exemplars, and prometheus_client writes exemplars only in the OpenMetrics format.
This module bridges the two without touching the exporter's rendering:

* :class:`BucketExemplars` is handed every collection (already translated to the contract) by
  the reader in :mod:`inferwatch.proxy.telemetry`, and files each histogram exemplar under its
  series and bucket (``le``), as the exporter will name them;
* :class:`ExemplarCollector` is what the proxy's registry scrapes: it runs the exporter's
  families (which makes the reader collect) and puts each bucket's exemplar on its sample,
  ``{trace_id="<32 hex>", span_id="<16 hex>"}`` with the measured value and time;
* :func:`render` picks the format from the ``Accept`` header: OpenMetrics 1.0.0 when the scraper
  lists ``application/openmetrics-text`` (Prometheus does by default), else the text format,
  byte for byte what the exporter alone writes (the text format has no exemplars).

Scrapes are serialised: the exporter's collector is not safe to run twice at once.

Under load a scrape does not wait for a collection (:class:`Exposition`): a collection of the
registry and its rendering take a few milliseconds of interpreter time, which the request
threads stretch to tens. So while requests are in flight, a scrape is answered from the latest
snapshot, which a thread of its own collects and renders shortly before each expected scrape
(about one collection per scrape interval); with none in flight a scrape collects and renders
then and there, as before. Either way the counts of an answer were all
taken at one moment and are exact at that moment; under load that moment is at most ``max_age``
seconds old (1 s by default, ``INFERWATCH_METRICS_MAX_AGE``; 0 renders every scrape).
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import Histogram, MetricsData
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Exemplar as PrometheusExemplar

from inferwatch.proxy.in_flight import InFlight

OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"
TRACE_ID_LABEL = "trace_id"  # the name Grafana's exemplarTraceIdDestinations looks for
SPAN_ID_LABEL = "span_id"
GZIP_LEVEL = 1
MIN_SCRAPE_INTERVAL = 0.001  # seconds: scrapes closer than this count as this far apart

BucketKey = tuple[str, tuple[tuple[str, str], ...], str]  # (histogram name, labels without le, le)


class BucketExemplars:
    """The exemplars of the latest collection, by histogram series and bucket."""

    def __init__(self) -> None:
        self._by_bucket: dict[BucketKey, PrometheusExemplar] = {}

    def record(self, metrics_data: MetricsData) -> None:
        by_bucket = {}
        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if isinstance(metric.data, Histogram):
                        for point in metric.data.data_points:
                            for key, exemplar in _point_exemplars(metric.name, point):
                                newest = by_bucket.get(key)
                                if newest is None or exemplar.timestamp >= newest.timestamp:
                                    by_bucket[key] = exemplar
        self._by_bucket = by_bucket

    def take(self) -> dict[BucketKey, PrometheusExemplar]:
        by_bucket, self._by_bucket = self._by_bucket, {}
        return by_bucket


def _point_exemplars(name: str, point) -> Iterable[tuple[BucketKey, PrometheusExemplar]]:
    labels = tuple(sorted((key, str(value)) for key, value in point.attributes.items()))
    bounds = point.explicit_bounds
    for exemplar in point.exemplars or ():
        if exemplar.trace_id is None or exemplar.span_id is None:
            continue
        index = bisect_left(bounds, exemplar.value)
        le = f"{bounds[index]}" if index < len(bounds) else "+Inf"  # as the exporter names buckets
        yield (name, labels, le), PrometheusExemplar(
            {TRACE_ID_LABEL: format(exemplar.trace_id, "032x"), SPAN_ID_LABEL: format(exemplar.span_id, "016x")},
            exemplar.value,
            exemplar.time_unix_nano / 1e9,
        )


class ExemplarCollector:
    """The exporter's metric families from ``source``, with each bucket's exemplar attached."""

    def __init__(self, source: CollectorRegistry, exemplars: BucketExemplars):
        self._source = source
        self._exemplars = exemplars
        self._lock = threading.Lock()

    def describe(self) -> list:
        return []  # registering must not collect: the reader is not attached to a provider yet

    def collect(self) -> list:
        with self._lock:
            families = list(self._source.collect())
            exemplars = self._exemplars.take()
        if exemplars:
            for family in families:
                if family.type == "histogram":
                    family.samples = [_with_exemplar(family.name, sample, exemplars) for sample in family.samples]
        return families


def _with_exemplar(name: str, sample, exemplars: dict[BucketKey, PrometheusExemplar]):
    if not sample.name.endswith("_bucket"):
        return sample
    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
    exemplar = exemplars.get((name, labels, sample.labels.get("le", "")))
    return sample if exemplar is None else sample._replace(exemplar=exemplar)


def _lists(header: str, token: str) -> bool:
    """Whether a comma-separated header (``Accept``, ``Accept-Encoding``) lists ``token`` with a
    q above 0."""
    for item in header.split(","):
        value, *parameters = item.split(";")
        if value.strip().lower() != token:
            continue
        quality = next((p.split("=", 1)[1] for p in parameters if p.strip().startswith("q=")), "1")
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            return True
    return False


def wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header lists OpenMetrics (with a q above 0)."""
    return _lists(accept, OPENMETRICS_MEDIA_TYPE)


def wants_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header lists gzip (Prometheus's does)."""
    return _lists(accept_encoding, "gzip")


def render(registry: CollectorRegistry, accept: str) -> tuple[str, bytes]:
    """(content type, body) of one collection, uncompressed, for a scraper that sent ``accept``."""
    content_type, body, _ = take_snapshot(registry).answer(accept)
    return content_type, body


class _Families:
    """One collection's metric families, as something prometheus_client can render."""

    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self) -> list:
        return self._families


@dataclass(frozen=True)
class Snapshot:
    """Both renderings of one collection, plain and gzipped, and when it was taken
    (``time.monotonic``)."""

    taken: float
    text: bytes
    openmetrics: bytes
    text_gzip: bytes
    openmetrics_gzip: bytes

    def answer(self, accept: str, accept_encoding: str = "") -> tuple[str, bytes, str | None]:
        """(content type, body, content encoding or None)."""
        gzipped = wants_gzip(accept_encoding)
        if wants_openmetrics(accept):
            return (openmetrics.CONTENT_TYPE_LATEST, *((self.openmetrics_gzip, "gzip") if gzipped
                                                      else (self.openmetrics, None)))
        return CONTENT_TYPE_LATEST, *((self.text_gzip, "gzip") if gzipped else (self.text, None))


def take_snapshot(registry: CollectorRegistry) -> Snapshot:
    """Collect once and render both formats from that collection: the text format and
    OpenMetrics then show the same counts, and the exemplars are not spent on one of them.

    Both are gzipped too (level 1: 27 KB become 2.7 KB in 0.1 ms), for scrapers that accept it:
    uWSGI's HTTP router forwards an answer in 4 KiB writes, and on Linux each write after the
    first waited for the scraper's delayed ACK, about 40 ms per scrape (Nagle's algorithm).
    """
    families = _Families(list(registry.collect()))
    text, openmetrics_text = generate_latest(families), openmetrics.generate_latest(families)
    return Snapshot(time.monotonic(), text, openmetrics_text,
                    gzip.compress(text, GZIP_LEVEL), gzip.compress(openmetrics_text, GZIP_LEVEL))


class Exposition:
    """``/metrics`` in bounded time under load, with about one collection per scrape.

    It reads the proxy's requests in flight (:class:`~inferwatch.proxy.in_flight.InFlight`). A
    scrape (:meth:`answer`) with no request in flight collects now. With requests in flight it
    gets the latest snapshot if that is at most ``max_age`` seconds old, else it collects itself.

    From the first scrape on, and while requests come, a refresher thread takes the snapshot
    ahead of the next scrape: it learns the scrape interval from the time between the last two
    scrapes and collects ``max_age / 2`` before the next one is due, so a scraper every 15 s
    costs one collection per 15 s, and one that arrives up to ``max_age / 2`` late still gets a
    snapshot. Scrapers faster than that share snapshots, taken at most every ``max_age / 2``.
    With no request in flight the refresher sleeps.
    """

    def __init__(self, registry: CollectorRegistry, in_flight: InFlight, max_age: float = 1.0) -> None:
        self._registry = registry
        self._in_flight = in_flight
        self._max_age = max_age
        self._traffic = in_flight.traffic  # set by requests; the refresher waits on it when idle
        self._stopped = threading.Event()
        self._scraped = threading.Event()
        self._snapshot: Snapshot | None = None
        self._last_scrape = 0.0
        self._interval = max_age / 2  # between the last two scrapes, once there were two
        self._refresher: threading.Thread | None = None

    def start(self) -> Exposition:
        if self._max_age > 0 and self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh, name="inferwatch-exposition", daemon=True)
            self._refresher.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._scraped.set()
        self._traffic.set()
        if self._refresher is not None:
            self._refresher.join(5)

    def answer(self, accept: str, accept_encoding: str = "") -> tuple[str, bytes, str | None]:
        """(content type, body, content encoding or None) of a scrape that sent these headers."""
        now = time.monotonic()
        if self._scraped.is_set():
            self._interval = max(now - self._last_scrape, MIN_SCRAPE_INTERVAL)
        else:
            self._scraped.set()
        self._last_scrape = now
        snapshot = self._snapshot
        if (self._in_flight.count and snapshot is not None and self._max_age > 0
                and now - snapshot.taken <= self._max_age):
            return snapshot.answer(accept, accept_encoding)
        snapshot = self._snapshot = take_snapshot(self._registry)
        return snapshot.answer(accept, accept_encoding)

    def next_snapshot_due(self) -> float:
        """When (``time.monotonic``) the refresher takes the next snapshot: ``max_age / 2`` before
        the first expected scrape that the current snapshot would not serve young enough."""
        half = self._max_age / 2
        taken = self._snapshot.taken if self._snapshot is not None else float("-inf")
        expected = self._last_scrape + self._interval
        while expected - half <= taken:
            expected += self._interval
        return max(expected - half, taken + half)

    def _refresh(self) -> None:
        self._scraped.wait()  # nobody scrapes /metrics (the collector's OTLP is enough): no snapshots
        while not self._stopped.is_set():
            if not self._in_flight.count:
                self._traffic.clear()
                if not self._in_flight.count:
                    self._traffic.wait()
                continue
            delay = self.next_snapshot_due() - time.monotonic()
            if delay > 0:
                self._stopped.wait(min(delay, self._max_age))  # then look again: a scrape may have come
                continue
            try:
                self._snapshot = take_snapshot(self._registry)
            except Exception:  # noqa: BLE001 - a scrape then collects itself; the refresher goes on
                logging.getLogger(__name__).exception("metrics snapshot failed")
                self._stopped.wait(self._max_age / 2)
