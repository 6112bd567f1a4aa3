"""The prediction proxy: Flask application factory, routes and the operational endpoints.

Routes
------
``POST /predict`` and ``POST /invocations``
    Forward the body unchanged to MLflow's ``/invocations`` and return the model's answer.
    JSON bodies must be an object with one of MLflow's input keys (``dataframe_split``,
    ``dataframe_records``, ``instances``, ``inputs``); ``text/csv`` passes through as it is.
``GET /healthz``
    The process is alive.
``GET /readyz``
    The model server answers ``/ping`` within the ready timeout; 503 otherwise.
``GET /metrics``
    The metric contract in the Prometheus text format, or in OpenMetrics with exemplars when the
    scraper's ``Accept`` lists ``application/openmetrics-text``; under load, from a snapshot at most
    ``INFERWATCH_METRICS_MAX_AGE`` old (see :mod:`inferwatch.proxy.exposition`);
    404 with several worker processes, whose metrics are exact only through the collector (see
    :mod:`inferwatch.proxy.config`).

Every answer of the app carries ``traceparent`` and ``X-Request-Id`` (see
:mod:`inferwatch.proxy.correlation`).
``POST /feedback``
    True labels for an earlier prediction, with its feedback token (see
    :mod:`inferwatch.proxy.feedback`); on unless ``--model-quality false``.

The three operational endpoints are answered in front of the instrumented Flask app, so a scrape
or a probe never counts as a request, never shows in ``active_requests`` and makes no span.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from flask import Flask, Response, g, request
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from werkzeug.exceptions import HTTPException

from inferwatch.contract.metrics import (
    ERROR_TYPE,
    PREDICTION_FAILURES,
    PREDICTION_SUCCESSES,
)
from inferwatch.proxy import correlation, errors, exposition, request_body
from inferwatch.proxy.access_log import AccessLog
from inferwatch.proxy.config import Settings, load_settings
from inferwatch.proxy.errors import FAILURES, PredictionOutcome, ProxyError, error_body
from inferwatch.proxy.feedback import FeedbackEndpoint, FeedbackTokens, load_key
from inferwatch.proxy.host import HostSampler, RequestRate
from inferwatch.proxy.in_flight import InFlight
from inferwatch.proxy.model import ModelIdentity, load_model_identity
from inferwatch.proxy.quality import AnswerObserver, QualityRecorder, register_model_info
from inferwatch.proxy.request_body import DiscardAfterAnswer
from inferwatch.proxy.telemetry import Telemetry, build_resource, setup_telemetry
from inferwatch.proxy.upstream import UpstreamAnswer, UpstreamClient

log = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
MLFLOW_INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PREDICTION_ROUTES = ("/predict", "/invocations")
VARY_ENCODING = ("Vary", "Accept-Encoding")

# Span attribute keys set on the server span of a prediction.
ATTR_MODEL_ROUTE = "inferwatch.model.route"
ATTR_ROW_COUNT = "inferwatch.prediction.rows"
ATTR_OUTCOME = "inferwatch.prediction.outcome"


class Predictor:
    """Validates a prediction request, forwards it, and records its outcome."""

    def __init__(self, settings: Settings, upstream: UpstreamClient, telemetry: Telemetry,
                 identity: ModelIdentity = ModelIdentity(), observer: AnswerObserver | None = None):
        self.settings = settings
        self.upstream = upstream
        self._observer = observer or AnswerObserver(None, None)
        self._model = model = identity.attributes  # model and version on every prediction series
        meter = telemetry.meter_provider.get_meter("inferwatch")
        self._successes = meter.create_counter(
            PREDICTION_SUCCESSES, unit="{prediction}", description="Predictions answered by the model."
        )
        self._failures = meter.create_counter(
            PREDICTION_FAILURES, unit="{prediction}", description="Predictions that failed, by error.type."
        )
        # Every series exists at 0 from start-up, so rate() works before the first failure.
        self._successes.add(0, model)
        self._failure_attributes = {outcome: {**model, ERROR_TYPE: outcome.value} for outcome in FAILURES}
        for attributes in self._failure_attributes.values():
            self._failures.add(0, attributes)

    def handle(self) -> Response:
        span = trace.get_current_span()
        span.set_attribute(ATTR_MODEL_ROUTE, "/invocations")
        try:
            body, content_type = self._read_body()
            body, content_type, rows, payload = _validated(body, content_type, request.mimetype,
                                                           request.mimetype_params)
            span.set_attribute(ATTR_ROW_COUNT, rows)
            answer = self.upstream.invoke(body, content_type)
            response = self._answer(answer)
        except ProxyError as error:
            self._record(error.outcome, span, error.message)
            return error_response(error)
        except Exception:  # noqa: BLE001 - whatever fails, the client gets the JSON 500 and it is counted
            log.exception("prediction failed unexpectedly")
            error = errors.internal_error()
            self._record(error.outcome, span, error.message)
            return error_response(error)
        self._record(PredictionOutcome.SUCCESS if response.status_code == 200 else PredictionOutcome.MODEL_REJECTED, span)
        # The request id is correlation's (the X-Request-Id answer header): the feedback token carries it.
        self._observer.after(response, payload, body, payload is None, rows, g.get("request_id", ""))
        return response

    def _read_body(self) -> tuple[bytes, str]:
        environ = request.environ
        limit = self.settings.max_body_bytes
        length = request_body.declared_length(environ)
        if length is not None and length > limit:
            raise request_body.too_large(environ, limit)
        content_type = request.headers.get("Content-Type", "")
        if request.mimetype not in (JSON, CSV):
            raise errors.unsupported_media_type(content_type)
        body = request_body.read_body(environ, length, limit, self.settings.client_timeout)
        if not body:
            raise errors.invalid_input("request body is empty")
        return body, content_type

    def _answer(self, answer: UpstreamAnswer) -> Response:
        if answer.status != 200 and not 400 <= answer.status < 500:
            raise errors.upstream_error(f"status {answer.status}")
        if not answer.content_type.startswith(JSON):
            raise errors.upstream_error("the answer is not JSON")
        if answer.status == 200:
            return Response(answer.body, status=200, content_type=answer.content_type)
        # The model rejected the input: keep MLflow's status and JSON body for the client.
        return Response(_without_stack_trace(answer.body), status=answer.status, content_type=JSON)

    def _record(self, outcome: PredictionOutcome, span: trace.Span, message: str = "") -> None:
        """The outcome on the span; :meth:`count` counts it once the answer is final."""
        g.outcome = outcome
        span.set_attribute(ATTR_OUTCOME, outcome.value)
        if outcome is not PredictionOutcome.SUCCESS:
            span.set_attribute(ERROR_TYPE, outcome.value)
            span.set_status(Status(StatusCode.ERROR, message or outcome.value))

    def count(self) -> PredictionOutcome | None:
        """Count this request, if it is a prediction, exactly once: a success or a failure by reason.

        Called with the final answer, whatever happened before: a prediction that never recorded an
        outcome (an exception outside :meth:`handle`) counts as ``internal_error``.
        """
        if not is_prediction() or g.get("counted"):
            return g.get("outcome")
        g.counted = True
        outcome = g.setdefault("outcome", PredictionOutcome.INTERNAL_ERROR)
        if outcome is PredictionOutcome.SUCCESS:
            self._successes.add(1, self._model)
        else:
            self._failures.add(1, self._failure_attributes[outcome])
        return outcome


def is_prediction() -> bool:
    """The current request is a prediction: a POST to one of the prediction routes."""
    return request.method == "POST" and request.endpoint in PREDICTION_ROUTES


def _validated(body: bytes, content_type: str, mimetype: str, params: dict) -> tuple[bytes, str, int, dict | None]:
    """The body and content type to forward, the row count and the parsed JSON body (None for
    CSV); a bad body never reaches MLflow. The body is parsed here once: the quality metrics read
    the same object.

    JSON in another encoding than UTF-8 (a ``charset`` parameter, or UTF-16/32 text) is forwarded
    as UTF-8, the only encoding MLflow reads.
    """
    if mimetype != JSON:
        return body, content_type, max(body.count(b"\n", 0, len(body) - 1), 0), None  # CSV: lines after the header
    charset = params.get("charset")
    encoding = charset.lower() if charset else json.detect_encoding(body)
    try:
        text = body.decode("utf-8-sig" if encoding in ("utf-8", "utf8") else encoding)
        payload = json.loads(text)
    except LookupError:
        raise errors.unsupported_media_type(content_type) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.invalid_json(str(error)) from None
    except RecursionError:
        raise errors.invalid_json("the JSON is nested too deeply") from None
    rows = _row_count(payload)
    if encoding not in ("utf-8", "utf8", "utf-8-sig"):
        body, content_type = text.encode(), JSON
    return body, content_type, rows, payload


def _row_count(payload: object) -> int:
    """Rows in a JSON request; checks its shape on the way."""
    if not isinstance(payload, dict):
        raise errors.invalid_input("expected a JSON object with one of " + ", ".join(MLFLOW_INPUT_KEYS))
    keys = [key for key in MLFLOW_INPUT_KEYS if key in payload]
    if len(keys) != 1:
        raise errors.invalid_input("expected exactly one of " + ", ".join(MLFLOW_INPUT_KEYS))
    data = payload[keys[0]]
    if keys[0] == "dataframe_split":
        data = data.get("data") if isinstance(data, dict) else None
    elif isinstance(data, dict):  # tensor inputs by name: rows are the first dimension
        data = next(iter(data.values()), None)
    return len(data) if isinstance(data, list) else 1


def _without_stack_trace(body: bytes) -> bytes:
    """MLflow's 4xx body, less the ``stack_trace`` field that would leak server internals."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise errors.upstream_error("the answer is not JSON") from None
    if isinstance(payload, dict) and payload.pop("stack_trace", None) is not None:
        return json.dumps(payload).encode()
    return body


def error_response(error: ProxyError) -> Response:
    response = Response(error.body(), status=error.status, content_type=JSON)
    if error.status == 413:
        response.headers["Connection"] = "close"  # the rest of the body is discarded, then the connection closes
    return response


class OperationalEndpoints:
    """WSGI middleware in front of the instrumented app.

    It answers /healthz, /readyz and /metrics itself, and keeps ``http.server.active_requests``
    for everything else: the series exists at 0 from start-up and a scrape is never in flight.
    """

    def __init__(self, app: Callable, telemetry: Telemetry, upstream: UpstreamClient, settings: Settings):
        self._app = app
        self._metrics_port = str(settings.metrics_port) if settings.metrics_port else None
        self._metrics_authorization = (
            b"Bearer " + Path(settings.metrics_token_file).read_bytes().strip()
            if settings.metrics_token_file else None
        )
        self._in_flight = InFlight()
        self._in_flight.register(telemetry.meter_provider.get_meter("inferwatch"))
        self._routes: dict[str, Callable[..., tuple[str, str, bytes]]] = {
            "/healthz": lambda: ("200 OK", JSON, b'{"status":"ok"}'),
            "/readyz": self._ready,
            "/metrics": self._metrics if settings.workers == 1 else _metrics_through_the_collector(settings.workers),
        }
        # /metrics in bounded time under load; only one worker serves it.
        self.exposition = exposition.Exposition(
            telemetry.registry, self._in_flight, settings.metrics_max_age if settings.workers == 1 else 0)
        self._upstream = upstream
        self._discard_timeout = settings.client_timeout

    def _metrics(self, environ: dict) -> tuple:
        """(status, content type, body, extra headers...): the format follows ``Accept``, gzip
        follows ``Accept-Encoding``."""
        content_type, body, encoding = self.exposition.answer(
            environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", ""))
        if encoding is None:
            return "200 OK", content_type, body, VARY_ENCODING
        return "200 OK", content_type, body, VARY_ENCODING, ("Content-Encoding", encoding)

    def _ready(self) -> tuple[str, str, bytes]:
        if self._upstream.ready():
            return "200 OK", JSON, b'{"status":"ready"}'
        return "503 Service Unavailable", JSON, error_body("not_ready", "the model server does not answer /ping")

    def _route(self, environ: dict):
        path = environ.get("PATH_INFO", "")
        if self._metrics_port is None:
            return self._routes.get(path)
        if environ.get("SERVER_PORT") == self._metrics_port:
            # The metrics port serves the operational endpoints and nothing else.
            return self._routes.get(path, self._not_found)
        return None if path == "/metrics" else self._routes.get(path)

    @staticmethod
    def _not_found() -> tuple[str, str, bytes]:
        return "404 Not Found", JSON, error_body("not_found", "this port serves /metrics, /healthz and /readyz")

    def _authorized(self, environ: dict) -> bool:
        if self._metrics_authorization is None:
            return True
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        return hmac.compare_digest(given, self._metrics_authorization)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "HTTP_TRANSFER_ENCODING" in environ or "HTTP_EXPECT" in environ:
            start_response = request_body.closing_when_needed(environ, start_response)
        response = self._dispatch(environ, start_response)
        if request_body.has_unread_body(environ):
            if environ.get(request_body.ANSWER_FIRST):
                return DiscardAfterAnswer(response, environ, self._discard_timeout)
            request_body.discard_unread(environ, self._discard_timeout)
        return response

    def _dispatch(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        route = self._route(environ)
        if route is None:
            scheme = self._in_flight.started(environ.get("wsgi.url_scheme", "http"))
            try:
                return self._app(environ, start_response)
            finally:
                self._in_flight.ended(scheme)
        headers = []
        if route == self._not_found:
            status, content_type, body = route()
        elif environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            status, content_type, body = (
                "405 Method Not Allowed", JSON, error_body("method_not_allowed", "use GET"),
            )
        elif route == self._routes["/metrics"] and not self._authorized(environ):
            status, content_type, body = (
                "401 Unauthorized", JSON, error_body("unauthorized", "a valid bearer token is required"),
            )
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        elif route == self._routes["/metrics"]:
            status, content_type, body, *extra = route(environ)  # the format follows the Accept header
            headers += extra
        else:
            status, content_type, body = route()
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]


def _metrics_through_the_collector(workers: int) -> Callable[[dict], tuple[str, str, bytes]]:
    """/metrics of one of several workers: a 404 that says where the exact totals are, never
    one worker's share passed off as the whole."""
    body = error_body(
        "not_found",
        f"/metrics is not served: this proxy runs {workers} worker processes, and each exports its "
        "metrics over OTLP under its own service.instance.id; scrape the collector, which keeps "
        "every worker's series",
    )
    return lambda _environ: ("404 Not Found", JSON, body)


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
    upstream = upstream or UpstreamClient(settings)
    identity = load_model_identity(settings)
    meter = telemetry.meter_provider.get_meter("inferwatch")
    register_model_info(identity, meter)
    tokens = FeedbackTokens(load_key(settings), identity, settings.feedback_max_rows, settings.feedback_max_age)
    # With telemetry off (OTEL_SDK_DISABLED) nothing would read the counts: only the tokens stay.
    recorder = QualityRecorder(identity, meter) if settings.model_quality and telemetry.enabled else None
    observer = AnswerObserver(recorder, tokens if settings.model_quality else None)
    predictor = Predictor(settings, upstream, telemetry, identity, observer)
    rate = RequestRate()
    sampler = HostSampler(settings.host_metrics_interval, settings.disk_path, on_tick=(rate.tick,),
                          report_host=worker == 1)
    sampler.register_instruments(telemetry.meter_provider, rate)
    if start_sampler:
        sampler.start()
    access_log = AccessLog()

    for route in PREDICTION_ROUTES:
        app.add_url_rule(route, endpoint=route, view_func=predictor.handle, methods=["POST"])
    if settings.model_quality:
        feedback = FeedbackEndpoint(tokens, identity, meter, settings.client_timeout)
        app.add_url_rule("/feedback", endpoint="/feedback", view_func=feedback.handle, methods=["POST"])

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _count_and_log(response: Response) -> Response:
        outcome = predictor.count()  # first: nothing after it may change the answer
        try:
            rate.hit()
            access_log.write(response.status_code, time.perf_counter() - g.started, outcome, g.get("request_id"))
        except Exception:  # noqa: BLE001 - the request log never breaks a request
            log.exception("request log failed")
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        code = (error.name or "error").lower().replace(" ", "_")
        if is_prediction() and not g.get("counted"):  # then Predictor.count counts it with this reason
            g.outcome = PredictionOutcome.INVALID_INPUT if error.code < 500 else PredictionOutcome.INTERNAL_ERROR
        return Response(error_body(code, error.description or error.name), status=error.code, content_type=JSON)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        failure = errors.internal_error()
        if is_prediction() and not g.get("counted"):
            g.outcome = failure.outcome  # counted as this 500, whatever the prediction recorded before
        return error_response(failure)

    telemetry.instrument_app(app)
    correlation.install(app, telemetry.exemplar_marks)  # after the instrumentation: its span exists
    app.wsgi_app = endpoints = OperationalEndpoints(app.wsgi_app, telemetry, upstream, settings)
    endpoints.exposition.start()
    app.extensions["inferwatch"] = {
        "settings": settings, "telemetry": telemetry, "upstream": upstream, "sampler": sampler, "rate": rate,
        "access_log": access_log, "model": identity, "exposition": endpoints.exposition,
    }
    return app


def close_app(app: Flask) -> None:
    """Stop the sampler, flush telemetry and close upstream connections."""
    parts = app.extensions["inferwatch"]
    parts["sampler"].stop()
    parts["exposition"].stop()
    parts["access_log"].close()
    parts["telemetry"].shutdown()
    parts["upstream"].close()
