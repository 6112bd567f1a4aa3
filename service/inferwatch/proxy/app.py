"""The proxy's application factory: :func:`create_app` composes the parts, :func:`close_app` stops them.

Routes
------
``POST /predict`` and ``POST /invocations``
    A prediction, forwarded to MLflow's ``/invocations`` and answered as MLflow answers it
    (:mod:`inferwatch.proxy.predictor`): every content type and body MLflow's scoring server takes.
``GET /ping``, ``/health``, ``/version``
    MLflow's scoring API, forwarded (:mod:`inferwatch.proxy.scoring`).
``POST /feedback``
    True labels for an earlier prediction, with its feedback token (see
    :mod:`inferwatch.proxy.feedback`); on unless ``--model-quality false``.
``GET /healthz``, ``/readyz``, ``/metrics``
    The operational endpoints, answered in front of the instrumented app
    (:mod:`inferwatch.proxy.operational`).

Every answer of the app carries ``traceparent`` and ``X-Request-Id`` (see
:mod:`inferwatch.proxy.correlation`) and writes one JSON line to the request log. Predictions and
feedback also go to the inference log when it is on (:mod:`inferwatch.proxy.inference_log`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

from flask import Flask, Request, Response, g
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.utils import get_current_url
from werkzeug.utils import cached_property

from inferwatch.contract.inputs import PREDICTION_ROUTES, SCORING_API_ROUTES
from inferwatch.proxy import correlation, errors, operational
from inferwatch.proxy.telemetry import exposition
from inferwatch.proxy.access_log import AccessLog
from inferwatch.proxy.config import Settings, load_settings
from inferwatch.proxy.errors import error_body
from inferwatch.proxy.feedback import FeedbackEndpoint, FeedbackTokens, load_key
from inferwatch.proxy.genai import Conventions, GenAiTelemetry
from inferwatch.proxy.host import HostSampler, RequestRate
from inferwatch.proxy.in_flight import InFlight
from inferwatch.proxy.inference_log import InferenceLogCounts, build_inference_log
from inferwatch.proxy.model import load_model_identity
from inferwatch.proxy.outcomes import PredictionCounts
from inferwatch.proxy.predictor import Predictor, error_response
from inferwatch.proxy.quality import AnswerObserver, QualityRecorder, register_model_info
from inferwatch.proxy.scoring import ScoringApi
from inferwatch.proxy.telemetry import METER_NAME, Telemetry, build_resource, inference_log_exporter, setup_telemetry
from inferwatch.proxy.upstream import UpstreamClient

log = logging.getLogger(__name__)

JSON = "application/json"

# The URLs of the last requests by their parts: a proxy sees few (its routes under one host).
_current_url = functools.lru_cache(maxsize=256)(get_current_url)


class ProxyRequest(Request):
    """Flask's request with its ``url`` built once per set of parts. The Flask instrumentation
    reads ``url`` on every request to match it against its exclusion list (empty here, and no
    argument turns the match off), and werkzeug builds it by quoting each part and converting the
    result to an IRI, about 9 us; the same parts give the same URL, so a cached one is exact."""

    @cached_property
    def url(self) -> str:
        return _current_url(self.scheme, self.host, self.root_path, self.path, self.query_string)


def create_app(
    settings: Settings | None = None,
    telemetry: Telemetry | None = None,
    *,
    start_sampler: bool = True,
    upstream: UpstreamClient | None = None,
    worker: int = 1,
) -> Flask:
    """Build the proxy. ``telemetry`` defaults to :func:`setup_telemetry` from the environment.

    ``worker`` is this process's number (1 to ``settings.workers``): with several workers each
    gets an instance id of its own, and only worker 1 reports the host metrics.
    """
    settings = settings or load_settings()
    telemetry = telemetry or setup_telemetry(
        resource=build_resource(worker) if settings.workers > 1 else None)
    app = Flask(__name__)
    app.request_class = ProxyRequest
    upstream = upstream or UpstreamClient(settings)
    identity = load_model_identity(settings)
    meter = telemetry.meter_provider.get_meter(METER_NAME)
    register_model_info(identity, meter)
    counts = PredictionCounts(identity.attributes)
    counts.register(meter)
    tokens = FeedbackTokens(load_key(settings), identity, settings.feedback_max_rows, settings.feedback_max_age)
    # With telemetry off (OTEL_SDK_DISABLED) nothing would read the counts: only the tokens stay.
    recorder = QualityRecorder(identity, meter) if settings.model_quality and telemetry.enabled else None
    observer = AnswerObserver(recorder, tokens if settings.model_quality else None,
                              identity.profile.probabilities if identity.profile else None,
                              helpers=settings.threads + settings.body_threads)
    genai = (GenAiTelemetry(identity, meter, telemetry.histograms,
                            Conventions.from_environment(os.environ, settings.genai_capture_content))
             if telemetry.enabled else None)
    log_counts = InferenceLogCounts(identity.attributes)
    log_counts.register(meter)
    inference_log = build_inference_log(
        settings, (identity.name, identity.version), log_counts,
        inference_log_exporter(telemetry) if settings.payload_log_otlp else None)
    predictor = Predictor(settings, upstream, counts, observer, genai, inference_log)
    rate = RequestRate()
    sampler = HostSampler(settings.host_metrics_interval, settings.disk_path, on_tick=(rate.tick,),
                          report_host=worker == 1)
    sampler.register_instruments(telemetry.meter_provider, rate)
    if start_sampler:
        sampler.start()
    access_log = AccessLog()

    for route in PREDICTION_ROUTES:
        app.add_url_rule(route, endpoint=route, view_func=predictor.handle, methods=["POST"])
    scoring = ScoringApi(upstream)
    for route in SCORING_API_ROUTES:
        app.add_url_rule(route, endpoint=route, view_func=scoring.handle, methods=["GET"])
    if settings.model_quality:
        feedback = FeedbackEndpoint(tokens, identity, meter, settings.client_timeout, settings.feedback_score_max,
                                    inference_log)
        app.add_url_rule("/feedback", endpoint="/feedback", view_func=feedback.handle, methods=["POST"])
    _install_hooks(app, rate, access_log)

    telemetry.instrument_app(app)
    correlation.install(app, telemetry.exemplar_marks)  # after the instrumentation: its span exists
    app.wsgi_app, exposed = _front(app.wsgi_app, settings, telemetry, upstream)
    exposed.start()
    app.extensions["inferwatch"] = {
        "settings": settings, "telemetry": telemetry, "upstream": upstream, "sampler": sampler, "rate": rate,
        "access_log": access_log, "model": identity, "exposition": exposed, "counts": counts,
        "inference_log": inference_log, "inference_log_counts": log_counts, "observer": observer,
    }
    return app


def _install_hooks(app: Flask, rate: RequestRate, access_log: AccessLog) -> None:
    """The request clock and log, and JSON for every error Flask raises itself (404, 405, 500)."""

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        try:
            rate.hit()
            access_log.write(response.status_code, time.perf_counter() - g.started,
                             getattr(response, "outcome", None), g.get("request_id"))
        except Exception:  # noqa: BLE001 - the request log never breaks a request
            log.exception("request log failed")
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        return Response(error_body(code, error.description or error.name), status=error.code, content_type=JSON)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(errors.internal_error())


def _front(flask_app, settings: Settings, telemetry: Telemetry, upstream: UpstreamClient):
    """The operational endpoints in front of the Flask app; returns it and the metrics exposition."""
    in_flight = InFlight()
    in_flight.register(telemetry.meter_provider.get_meter(METER_NAME))
    one_worker = settings.workers == 1
    # /metrics in bounded time under load; only one worker serves it.
    exposed = exposition.Exposition(telemetry.registry, in_flight, settings.metrics_max_age if one_worker else 0)
    metrics = (operational.metrics(exposed) if one_worker
               else operational.metrics_through_the_collector(settings.workers))
    if settings.metrics_token_file:
        metrics = operational.bearer_token(metrics, Path(settings.metrics_token_file).read_bytes().strip())
    apps = {
        "/healthz": operational.healthz,
        "/readyz": operational.readyz(upstream),
        "/metrics": metrics,
    }
    apps = {path: operational.get_only(app) for path, app in apps.items()}
    if settings.metrics_port:
        # The metrics port serves the operational endpoints and nothing else; the main port no /metrics.
        main = {path: app for path, app in apps.items() if path != "/metrics"}
        front = operational.Front(flask_app, in_flight, main, settings.client_timeout,
                                  str(settings.metrics_port), apps)
    else:
        front = operational.Front(flask_app, in_flight, apps, settings.client_timeout)
    return front, exposed


def close_app(app: Flask) -> None:
    """Stop the sampler, flush telemetry and close upstream connections."""
    parts = app.extensions["inferwatch"]
    parts["sampler"].stop()
    parts["exposition"].stop()
    parts["access_log"].close()
    parts["observer"].close()  # before the telemetry's last export: every measured request counted
    if parts["inference_log"] is not None:
        parts["inference_log"].close()
    parts["telemetry"].shutdown()
    parts["upstream"].close()
