"""OpenTelemetry set-up: the providers, readers, exporters and instrumentations of one process.

What it builds for one proxy process:

* a ``TracerProvider`` and a ``MeterProvider`` sharing one ``Resource`` (``service.name``,
  ``service.version``, ``service.instance.id``, and ``telemetry.distro.name=inferwatch``, the
  marker that tells inferwatch's series from other jobs' in Prometheus, on ``target_info``);
* a Prometheus reader that renders the metric contract for ``/metrics``: collections pass
  through :func:`inferwatch.proxy.telemetry.translate.to_prometheus` before
  opentelemetry-exporter-prometheus turns them into text, into a registry of its own, with the
  histograms' exemplars attached for OpenMetrics scrapes (:mod:`inferwatch.proxy.telemetry.exposition`);
* exemplars on the two latency histograms and ``gen_ai.client.operation.duration`` only, and only
  for traces the collector is certain to keep (:mod:`inferwatch.proxy.telemetry.exemplars`);
* the GenAI histograms aggregated where they are recorded, their series bound once, and added to
  every reader's collection (:mod:`inferwatch.proxy.telemetry.histograms`);
* OTLP export of traces and metrics under semantic-convention names, when an endpoint is set;
  the metrics exported are the Prometheus reader's own collections (:class:`SharedCollectionExport`),
  so each measurement is aggregated once for both destinations;
* the OTLP log export of the inference log, when it is asked for (``--payload-log-otlp``,
  :func:`inference_log_exporter`): each record one log record whose body is the record's JSON;
* the Flask and requests auto-instrumentations, bound to these providers.

Environment (the standard OpenTelemetry variables):

=====================================  ==========================================================
``OTEL_EXPORTER_OTLP_ENDPOINT``        base URL of an OTLP receiver, e.g. ``http://127.0.0.1:4318``
                                       (http/protobuf) or ``http://127.0.0.1:4317`` (grpc); export is
                                       off when neither this nor a per-signal endpoint is set
``OTEL_EXPORTER_OTLP_PROTOCOL``        ``http/protobuf`` (default) or ``grpc``
``OTEL_METRIC_EXPORT_INTERVAL``        milliseconds between OTLP metric exports (SDK default 60000)
``OTEL_TRACES_EXPORTER``               ``none`` turns span export off
``OTEL_METRICS_EXPORTER``              ``none`` turns OTLP metric export off (/metrics stays)
``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``   where the inference log's records go, when not to the
                                       base endpoint (with the signal path: ``.../v1/logs``)
``OTEL_SERVICE_NAME``                  default ``inferwatch``; one name per model, e.g. ``fraud-model``:
                                       through the collector it is the series' ``job``
``OTEL_RESOURCE_ATTRIBUTES``           extra resource attributes, e.g. ``deployment.environment=prod``;
                                       ``service.instance.id=...`` here replaces the default below
``K8S_POD_NAME``                       the pod name (Kubernetes downward API): the default
                                       ``service.instance.id`` when set
``INFERWATCH_PORT``                    the port in the default ``service.instance.id``
``OTEL_SDK_DISABLED``                  ``true`` records nothing (the benchmark's telemetry-off mode)
``OTEL_SEMCONV_STABILITY_OPT_IN``      ``http`` always (the contract is built on the stable HTTP names;
                                       read from ``environ``, never written: :func:`use_stable_http_conventions`);
                                       ``gen_ai_latest_experimental`` kept: the GenAI conventions'
                                       latest version (:mod:`inferwatch.contract.genai`)
=====================================  ==========================================================

``service.instance.id`` (the ``instance`` label through the collector) defaults to a name a
person recognises that survives a restart, so a restarted proxy continues its series: the pod
name on Kubernetes (``K8S_POD_NAME``), else the host name and the proxy's port
(``web-1:8000``). With several worker processes (``INFERWATCH_WORKERS``) each worker appends its
number, ``web-1:8000/1``, ``web-1:8000/2``: every worker exports its own counters, and the
collector keeps them apart by instance.

The OTLP metric export reads the Prometheus reader's collections unless the OTLP exporter wants
other data than /metrics aggregates: ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``
(or ``lowmemory``) or ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram``
give it a reader of its own, and each measurement is then aggregated twice.

``OTEL_METRICS_EXEMPLAR_FILTER`` is not read: a measurement becomes an exemplar only when the
collector will keep its trace (see :mod:`inferwatch.proxy.telemetry.exemplars`).

Example::

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_METRIC_EXPORT_INTERVAL=5000 \\
        OTEL_SERVICE_NAME=fraud-model inferwatch serve
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation import _semconv
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, MetricsData, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from inferwatch import __version__
from inferwatch.contract.metrics import (
    DEFAULT_SERVICE_NAME,
    DISTRO_NAME,
    HTTP_CLIENT_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_DURATION,
    LATENCY_BUCKETS_SECONDS,
    TELEMETRY_DISTRO_NAME,
    TELEMETRY_DISTRO_VERSION,
)
from inferwatch.contract.inference_log import EVENT_NAMES, PREDICTION
from inferwatch.contract.metrics import MODEL_NAME, MODEL_VERSION
from inferwatch.contract.spans import INPUT_FORMAT as ATTR_INPUT_FORMAT
from inferwatch.contract.spans import OUTCOME as ATTR_OUTCOME
from inferwatch.contract.spans import REQUEST_ID as ATTR_REQUEST_ID
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.proxy.config import Settings, env_name, otlp_export_enabled, telemetry_disabled
from inferwatch.proxy.telemetry.exemplars import ExemplarMarks, KeptTraceExemplarFilter, latest_per_bucket
from inferwatch.proxy.telemetry.exposition import BucketExemplars, ExemplarCollector
from inferwatch.proxy.telemetry.histograms import AggregatedHistograms, SdkHistograms
from inferwatch.proxy.telemetry.translate import to_prometheus
from inferwatch.proxy.upstream import request_hook, response_hook

log = logging.getLogger(__name__)

POD_NAME_VARIABLE = "K8S_POD_NAME"
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
# The kind of an inference log record (prediction, feedback), an attribute of its OTLP record.
INFERENCE_KIND = "inferwatch.inference.kind"
# The proxy's meter (app, predictions, GenAI); its aggregated histograms are in its scope.
METER_NAME = "inferwatch"


class WithoutInstruments:
    """A meter provider for an instrumentation, whose meters hand out no-op instruments under
    ``names``: a measurement nobody reads is then never made, where a dropping View would still
    take it through the SDK for every reader."""

    def __init__(self, provider: metrics.MeterProvider, names: set[str]) -> None:
        self._provider = provider
        self._names = names

    def get_meter(self, *args, **kwargs) -> metrics.Meter:
        return _MeterWithout(self._provider.get_meter(*args, **kwargs), self._names)


class _MeterWithout:
    def __init__(self, meter: metrics.Meter, names: set[str]) -> None:
        self._meter = meter
        self._names = names

    def __getattr__(self, attribute: str):
        return getattr(self._meter, attribute)

    def create_up_down_counter(self, name: str, *args, **kwargs):
        if name in self._names:
            return metrics.NoOpUpDownCounter(name)
        return self._meter.create_up_down_counter(name, *args, **kwargs)


class MappedPrometheusMetricReader(PrometheusMetricReader):
    """A Prometheus reader that exposes the metric contract instead of the OTel names.

    The exporter renders into a registry of its own; ``registry`` gets an
    :class:`~inferwatch.proxy.telemetry.exposition.ExemplarCollector` over it, which adds the exemplars of
    each collection to the histogram buckets (written only in the OpenMetrics format).
    """

    def __init__(self, *, registry: CollectorRegistry, **kwargs) -> None:
        self._exemplars = BucketExemplars()
        source = CollectorRegistry(auto_describe=True)
        super().__init__(registry=source, **kwargs)
        registry.register(ExemplarCollector(source, self._exemplars))
        self._for_export = threading.local()  # marks a collection the OTLP export asked for

    def collect_for_export(self, timeout_millis: float = 10_000) -> MetricsData | None:
        """One collection of this reader, returned as it is instead of rendered for /metrics: the
        OTLP export reads the same cumulative aggregation (:class:`SharedCollectionExport`)."""
        self._for_export.active, self._for_export.data = True, None
        try:
            self.collect(timeout_millis=timeout_millis)
        finally:
            self._for_export.active = False
        metrics_data, self._for_export.data = self._for_export.data, None
        return metrics_data

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        if metrics_data is None:
            return
        if getattr(self._for_export, "active", False):
            self._for_export.data = metrics_data
            return
        translated = to_prometheus(metrics_data)
        self._exemplars.record(translated)
        super()._receive_metrics(translated, timeout_millis, **kwargs)


class SharedCollectionExport(PeriodicExportingMetricReader):
    """The OTLP metric export, fed by the Prometheus reader's collections instead of a reader of its own.

    The SDK hands every measurement to every reader registered with the meter provider, each with
    its own aggregation of it; the OTLP exporter's default (cumulative, explicit buckets) is what
    the Prometheus reader keeps already, so this reader is not registered: every export interval
    it collects the Prometheus reader (:meth:`MappedPrometheusMetricReader.collect_for_export`)
    and exports that. Interval, timeout, the last export at shutdown and ``force_flush`` are the
    SDK's periodic reader's. Counts are the same cumulative totals /metrics shows; the exemplars
    too (the reservoir keeps the newest per bucket across collections).
    """

    def __init__(self, exporter, source: MappedPrometheusMetricReader) -> None:
        self._source = source  # before the SDK starts the export thread
        super().__init__(exporter)

    def collect(self, timeout_millis: float = 10_000) -> None:
        metrics_data = self._source.collect_for_export(timeout_millis)
        if metrics_data is not None:
            self._receive_metrics(metrics_data, timeout_millis=timeout_millis)


# The OTLP exporter's variables that make it want other data than the Prometheus reader keeps.
OTLP_TEMPORALITY = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
OTLP_HISTOGRAM_AGGREGATION = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"


def otlp_shares_the_prometheus_collection(environ: Mapping[str, str]) -> bool:
    """Whether the OTLP metric export wants what the Prometheus reader aggregates: cumulative
    temporality and explicit-bucket histograms (both the OTLP exporter's defaults). A delta or
    low-memory temporality, or exponential histograms, get a reader of their own."""
    temporality = environ.get(OTLP_TEMPORALITY, "").strip().lower()
    histograms = environ.get(OTLP_HISTOGRAM_AGGREGATION, "").strip().lower()
    return temporality in ("", "cumulative") and histograms in ("", "explicit_bucket_histogram")


@dataclass
class Telemetry:
    """The providers and the Prometheus registry of one proxy process."""

    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    registry: CollectorRegistry
    enabled: bool
    # Marks about one request per second so its trace is kept and can be an exemplar.
    exemplar_marks: ExemplarMarks = field(default_factory=ExemplarMarks)
    _shutdown_hooks: list = field(default_factory=list)
    resource: Resource | None = None
    # Histograms whose series are bound once (:mod:`inferwatch.proxy.telemetry.histograms`): the
    # GenAI instruments. None with telemetry off.
    histograms: AggregatedHistograms | SdkHistograms | None = None

    def instrument_app(self, app) -> None:
        """Auto-instrument a Flask app (server spans, duration, active requests)."""
        if self.enabled:
            FlaskInstrumentor.instrument_app(
                app,
                tracer_provider=self.tracer_provider,
                # Its own active-requests gauge would count requests the proxy answers in front of
                # Flask and has no series until the first request; the app keeps the gauge itself
                # (inferwatch.proxy.in_flight), so the instrumentation's records nothing at all.
                meter_provider=WithoutInstruments(self.meter_provider, {HTTP_SERVER_ACTIVE_REQUESTS}),
                excluded_urls="",
                # On by default: per request a dict of framework, endpoint and route attached to the
                # context for SQL comments. The proxy makes no database query to comment.
                enable_commenter=False,
            )

    def shutdown(self) -> None:
        """Flush and stop exporters; safe to call twice. Telemetry errors are logged, not raised."""
        while self._shutdown_hooks:
            hook = self._shutdown_hooks.pop()
            try:
                hook()
            except Exception:  # noqa: BLE001 - shutdown must go on whatever an exporter does
                log.exception("telemetry shutdown step failed")


def _protocol(environ: Mapping[str, str], signal: str) -> str:
    return (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _otlp_span_exporter(environ: Mapping[str, str]):
    """The OTLP span exporter of the protocol asked for; over HTTP its batches are encoded by
    :mod:`~inferwatch.proxy.telemetry.span_encoding` (the same bytes, a quarter of the CPU)."""
    if _protocol(environ, "traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    from inferwatch.proxy.telemetry.span_encoding import CachedEncodingSpanExporter
    return CachedEncodingSpanExporter()


def _otlp_metric_exporter(environ: Mapping[str, str]):
    if _protocol(environ, "metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def _otlp_log_exporter(environ: Mapping[str, str]):
    if _protocol(environ, "logs") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter()


class InferenceLogExporter:
    """The inference log's records as OTLP log records (see :mod:`inferwatch.proxy.inference_log`).

    A record's JSON text is the body; its time, the trace and span of its request, and an event
    name (``inferwatch.inference.prediction`` or ``.feedback``) are the log record's own fields;
    the request id, model, version, input format and outcome are attributes a backend can
    filter on. Failed predictions have severity WARN, the rest INFO.
    """

    def __init__(self, exporter, resource: Resource) -> None:
        self._exporter = exporter
        self._resource = resource
        self._scope = InstrumentationScope("inferwatch.inference_log", __version__)

    def export(self, records) -> bool:
        batch = [self._log_record(*record) for record in records]
        # As the SDK's own processors do: the export's HTTP call is no request of the app's, and
        # the requests instrumentation would make it a span and a point of the MLflow call's
        # duration histogram (model time).
        with suppress_instrumentation():
            return self._exporter.export(batch) is LogRecordExportResult.SUCCESS

    def _log_record(self, time_ns: int, trace_id: int, span_id: int, record: dict, text: str) -> ReadableLogRecord:
        failed = record.get("outcome") not in (None, "success")
        attributes = {
            INFERENCE_KIND: record["kind"],
            ATTR_REQUEST_ID: record["request_id"],
            MODEL_NAME: record["model"],
            MODEL_VERSION: record["model_version"],
        }
        if record["kind"] == PREDICTION:
            attributes[ATTR_INPUT_FORMAT] = record["format"]
            attributes[ATTR_OUTCOME] = record["outcome"]
        context = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))))
        log_record = LogRecord(
            timestamp=time_ns, context=context, severity_text="WARN" if failed else "INFO",
            severity_number=SeverityNumber.WARN if failed else SeverityNumber.INFO,
            body=text, attributes=attributes, event_name=EVENT_NAMES[record["kind"]])
        return ReadableLogRecord(log_record, self._resource, self._scope)

    def shutdown(self) -> None:
        self._exporter.shutdown()


def inference_log_exporter(telemetry: Telemetry, environ: Mapping[str, str] | None = None) -> InferenceLogExporter | None:
    """The OTLP exporter of the inference log, with the process's resource; None with telemetry off."""
    if not telemetry.enabled or telemetry.resource is None:
        return None
    return InferenceLogExporter(_otlp_log_exporter(os.environ if environ is None else environ), telemetry.resource)


def default_instance_id(environ: Mapping[str, str]) -> str:
    """``service.instance.id`` unless ``OTEL_RESOURCE_ATTRIBUTES`` sets one: the pod name on
    Kubernetes (``K8S_POD_NAME``), else ``<host name>:<port>``; both survive a restart."""
    if pod := environ.get(POD_NAME_VARIABLE, "").strip():
        return pod
    port = environ.get(env_name("port"), "").strip() or str(Settings.port)
    return f"{socket.gethostname()}:{port}"


def build_resource(worker: int | None = None) -> Resource:
    """Resource of the process, from the environment as the OpenTelemetry SDK reads it.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` beat the defaults here (the SDK would
    let explicit attributes win, so a default is passed only for a key the environment leaves
    unset); the marker ``telemetry.distro.name`` is always inferwatch's. ``worker`` is given when
    the proxy runs several worker processes: each then needs an instance of its own, or the
    collector would take two workers' counters for one series, so the worker's number is
    appended to the instance id, an explicit one included (``web-1:8000/2``).
    """
    from_environment = OTELResourceDetector().detect().attributes
    defaults = {
        SERVICE_NAME: DEFAULT_SERVICE_NAME,
        SERVICE_VERSION: __version__,
        SERVICE_INSTANCE_ID: default_instance_id(os.environ),
    }
    attributes = {key: value for key, value in defaults.items() if key not in from_environment}
    if worker is not None:
        instance = from_environment.get(SERVICE_INSTANCE_ID) or defaults[SERVICE_INSTANCE_ID]
        attributes[SERVICE_INSTANCE_ID] = worker_instance_id(str(instance), worker)
    attributes[TELEMETRY_DISTRO_NAME] = DISTRO_NAME
    attributes[TELEMETRY_DISTRO_VERSION] = __version__
    resource = Resource.create(attributes)
    return FixedResource(resource.attributes, resource.schema_url)


class FixedResource(Resource):
    """A resource whose hash is computed once (its attributes cannot change): the OTLP encoder
    groups every exported span by resource, and ``Resource.__hash__`` serialises the attributes
    to JSON on each call."""

    def __init__(self, attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def worker_instance_id(instance: str, worker: int) -> str:
    """The instance id of one of several workers: ``<instance>/<worker number>``."""
    return f"{instance}/{worker}"


def use_stable_http_conventions(environ: Mapping[str, str]) -> None:
    """Make the Flask and requests instrumentations emit the stable HTTP conventions, which the
    metric contract is built on, whatever ``OTEL_SEMCONV_STABILITY_OPT_IN`` says of ``http``; its
    other opt-ins (``gen_ai_latest_experimental``, ``database``) are taken from ``environ``.

    The instrumentations read the opt-in once per process from ``os.environ`` into a class-level
    mapping (``opentelemetry.instrumentation._semconv``, pinned in requirements.lock); setting that
    mapping here passes ``environ`` through without writing the process environment.
    """
    stability = _semconv._OpenTelemetrySemanticConventionStability
    signal, mode = _semconv._OpenTelemetryStabilitySignalType, _semconv._StabilityMode
    opted_in = [part.strip() for part in environ.get(SEMCONV_OPT_IN, "").split(",")]
    with stability._lock:
        stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = {
            signal.HTTP: mode.HTTP,
            signal.GEN_AI: stability._filter_mode(opted_in, mode.DEFAULT, mode.GEN_AI_LATEST_EXPERIMENTAL),
            signal.DATABASE: stability._filter_mode(opted_in, mode.DATABASE, mode.DATABASE_DUP),
        }
        stability._initialized = True


def setup_telemetry(
    *,
    resource: Resource | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    environ: Mapping[str, str] | None = None,
    exemplar_marks: ExemplarMarks | None = None,
) -> Telemetry:
    """Build providers, readers and exporters for one proxy process.

    ``span_processors`` and ``metric_readers`` are added beside the configured exporters (tests
    pass in-memory ones); ``exemplar_marks`` chooses which requests are marked to be exemplars
    (default: about one per second). The requests instrumentation patches ``requests``
    process-wide; it is re-bound to the newest providers, and undone by :meth:`Telemetry.shutdown`.
    """
    environ = os.environ if environ is None else environ
    use_stable_http_conventions(environ)
    registry = CollectorRegistry(auto_describe=True)
    if telemetry_disabled(environ):
        return Telemetry(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider(), registry, enabled=False)

    resource = resource or build_resource()
    tracer_provider = TracerProvider(resource=resource)
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    if otlp_export_enabled(environ, "traces"):
        tracer_provider.add_span_processor(BatchSpanProcessor(_otlp_span_exporter(environ)))

    prometheus = MappedPrometheusMetricReader(disable_target_info=False, scope_info_enabled=False, registry=registry)
    readers: list[MetricReader] = [prometheus, *metric_readers]
    export_metrics = otlp_export_enabled(environ, "metrics")
    shared = export_metrics and otlp_shares_the_prometheus_collection(environ)
    if export_metrics and not shared:
        readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter(environ)))
    exemplar_marks = exemplar_marks or ExemplarMarks()
    # An exemplar only where the collector keeps the trace: failed, slow or marked.
    exemplar_filter = KeptTraceExemplarFilter(THRESHOLDS.latency_seconds, exemplar_marks)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        exemplar_filter=exemplar_filter,
        views=[
            View(
                instrument_name=HTTP_SERVER_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BUCKETS_SECONDS),
                exemplar_reservoir_factory=latest_per_bucket,
            ),
            # The MLflow call (model time), on the same edges so the two quantiles compare.
            View(
                instrument_name=HTTP_CLIENT_DURATION,
                aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BUCKETS_SECONDS),
                exemplar_reservoir_factory=latest_per_bucket,
            ),
        ],
    )

    requests_instrumentor = RequestsInstrumentor()
    if requests_instrumentor.is_instrumented_by_opentelemetry:
        requests_instrumentor.uninstrument()
    requests_instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider,
                                     request_hook=request_hook, response_hook=response_hook)

    if export_metrics and not shared:  # the OTLP reader wants delta temporality or exponential buckets
        histograms = SdkHistograms(meter_provider.get_meter(METER_NAME))
    else:
        histograms = AggregatedHistograms(InstrumentationScope(METER_NAME), resource, exemplar_filter)
        histograms.install(readers)
    telemetry = Telemetry(tracer_provider, meter_provider, registry, enabled=True, exemplar_marks=exemplar_marks,
                          resource=resource, histograms=histograms)
    # Run last to first: the shared export's last collection comes before the provider stops.
    telemetry._shutdown_hooks.extend([tracer_provider.shutdown, meter_provider.shutdown])
    if shared:
        telemetry._shutdown_hooks.append(SharedCollectionExport(_otlp_metric_exporter(environ), prometheus).shutdown)
    telemetry._shutdown_hooks.append(requests_instrumentor.uninstrument)
    return telemetry
