"""Host metrics and the request rate, sampled in the background and read from a cache.

psutil is called only from the sampler thread, never from a request or a scrape: the seed's
exporter blocked every scrape for a second on ``psutil.cpu_percent(interval=1)``. The observable
instruments registered here return the last sample, so reading them costs a dict look-up.

Host metrics describe the host, so with several worker processes only one of them (worker 1)
reports them; every worker reports its own request rate, which the collector sums.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from inferwatch.contract.metrics import (
    FILESYSTEM_MOUNTPOINT,
    HTTP_SERVER_THROUGHPUT,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_FILESYSTEM_UTILIZATION,
    SYSTEM_MEMORY_USAGE,
    SYSTEM_MEMORY_UTILIZATION,
)

log = logging.getLogger(__name__)

MEMORY_STATE = "system.memory.state"


@dataclass(frozen=True)
class HostSample:
    cpu_utilization: float  # 0..1, over the interval since the previous sample
    memory_utilization: float  # 0..1
    memory_used_bytes: int
    disk_utilization: float  # 0..1


class RequestRate:
    """Counts requests cheaply and turns the count into a recent rate on each sampler tick."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._count = 0
        self._clock = clock
        self._last_tick = (clock(), 0)
        self.per_second = 0.0

    def hit(self) -> None:
        with self._lock:
            self._count += 1

    def tick(self) -> None:
        now, count = self._clock(), self._count
        then, before = self._last_tick
        if now > then:
            self.per_second = (count - before) / (now - then)
        self._last_tick = (now, count)


class HostSampler:
    """A daemon thread that samples psutil every ``interval`` seconds and runs ``on_tick``.

    ``report_host=False`` (every worker but one) keeps the ticks and leaves psutil alone.
    """

    def __init__(
        self,
        interval: float,
        disk_path: str = "/",
        on_tick: tuple[Callable[[], None], ...] = (),
        report_host: bool = True,
    ):
        self.interval = interval
        self.disk_path = disk_path
        self.report_host = report_host
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sample: HostSample | None = None
        if report_host:
            psutil.cpu_percent(interval=None)  # prime the CPU delta; the first real sample is a delta
            self.sample = self._measure()

    def _measure(self) -> HostSample:
        memory = psutil.virtual_memory()
        return HostSample(
            cpu_utilization=psutil.cpu_percent(interval=None) / 100.0,
            memory_utilization=memory.percent / 100.0,
            memory_used_bytes=memory.total - memory.available,
            disk_utilization=psutil.disk_usage(self.disk_path).percent / 100.0,
        )

    def start(self) -> HostSampler:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inferwatch-host-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.report_host:
                    self.sample = self._measure()
                for tick in self._on_tick:
                    tick()
            except Exception:  # noqa: BLE001 - a failed sample must not end sampling
                log.exception("host sample failed")

    def register_instruments(self, meter_provider: MeterProvider, rate: RequestRate) -> None:
        meter = meter_provider.get_meter("inferwatch.host")
        if self.report_host:
            self._register_host_instruments(meter)
        meter.create_observable_gauge(
            HTTP_SERVER_THROUGHPUT,
            callbacks=[_rate_callback(rate)],
            unit="{request}/s",
            description="HTTP requests per second over the last sampling interval.",
        )

    def _register_host_instruments(self, meter) -> None:
        memory_used = {MEMORY_STATE: "used"}
        mountpoint = {FILESYSTEM_MOUNTPOINT: self.disk_path}
        meter.create_observable_gauge(
            SYSTEM_CPU_UTILIZATION,
            callbacks=[lambda _options: [Observation(self.sample.cpu_utilization)]],
            unit="1",
            description="Host CPU utilization over the last sampling interval.",
        )
        meter.create_observable_gauge(
            SYSTEM_MEMORY_UTILIZATION,
            callbacks=[lambda _options: [Observation(self.sample.memory_utilization, memory_used)]],
            unit="1",
            description="Share of host memory in use.",
        )
        meter.create_observable_up_down_counter(
            SYSTEM_MEMORY_USAGE,
            callbacks=[lambda _options: [Observation(self.sample.memory_used_bytes, memory_used)]],
            unit="By",
            description="Host memory in use.",
        )
        meter.create_observable_gauge(
            SYSTEM_FILESYSTEM_UTILIZATION,
            callbacks=[lambda _options: [Observation(self.sample.disk_utilization, mountpoint)]],
            unit="1",
            description="Share of the filesystem at the configured path in use.",
        )


def _rate_callback(rate: RequestRate):
    def observe(_options: CallbackOptions):
        return [Observation(rate.per_second)]

    return observe
