"""Requests in flight: ``http.server.active_requests``, read when the metrics are collected.

The proxy counts every request it hands to the instrumented app (not the operational endpoints)
in a plain integer per URL scheme, under a lock: two increments per request, where an
up-down counter's ``add(1)`` and ``add(-1)`` were two measurements through the SDK for each
metric reader. The gauge is an observable up-down counter whose callback reads the integers, so
its value is exact at the moment of each collection, as the up-down counter's was; the series
for ``http`` exists at 0 from start-up. :class:`~inferwatch.proxy.telemetry.exposition.Exposition` reads the
same count to know whether the proxy is under load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from inferwatch.contract.metrics import HTTP_SERVER_ACTIVE_REQUESTS, URL_SCHEME

SCHEMES = ("http", "https")


class InFlight:
    """Requests started and not yet answered, by URL scheme."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_scheme = dict.fromkeys(SCHEMES, 0)
        self._seen = {"http"}  # schemes with a series: http from start-up, https once used
        self._attributes = {scheme: {URL_SCHEME: scheme} for scheme in SCHEMES}
        # Set by every request; the exposition's refresher waits on it while the proxy is idle.
        self.traffic = threading.Event()

    def started(self, scheme: str) -> str:
        """Count a request in; returns the scheme to hand to :meth:`ended`."""
        if scheme not in self._by_scheme:
            scheme = "http"
        with self._lock:
            self._by_scheme[scheme] += 1
        if not self.traffic.is_set():
            self.traffic.set()
        return scheme

    def ended(self, scheme: str) -> None:
        with self._lock:
            self._by_scheme[scheme] -= 1

    @property
    def count(self) -> int:
        return sum(self._by_scheme.values())

    def register(self, meter: Meter) -> None:
        meter.create_observable_up_down_counter(
            HTTP_SERVER_ACTIVE_REQUESTS, callbacks=[self._observe], unit="{request}",
            description="Number of active HTTP server requests.",
        )

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = dict(self._by_scheme)
        for scheme, count in counts.items():
            if count:
                self._seen.add(scheme)
            if scheme in self._seen:
                yield Observation(count, self._attributes[scheme])
