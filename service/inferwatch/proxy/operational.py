"""The operational endpoints, as small WSGI apps in front of the instrumented Flask app.

``GET /healthz``
    The process is alive: 200 ``{"status": "ok"}``.
``GET /readyz``
    The model server answers ``/ping`` within the ready timeout; 503 ``not_ready`` otherwise.
``GET /metrics``
    The metric contract in the Prometheus text format, or OpenMetrics with exemplars when the
    scraper's ``Accept`` lists ``application/openmetrics-text``, gzipped when it accepts gzip;
    under load from a snapshot at most ``INFERWATCH_METRICS_MAX_AGE`` old (see
    :mod:`inferwatch.proxy.telemetry.exposition`). 404 with several worker processes, whose metrics are
    exact only through the collector. Behind a bearer token when one is configured.

Each endpoint is a WSGI app of a few lines with what it needs passed in, and they compose:
:func:`bearer_token` wraps the metrics app, :func:`get_only` any of them, and :class:`Front`
routes by path (and by port, when /metrics has a port of its own) and hands everything else to
the Flask app. They are answered in front of it, so a scrape or a probe never counts as a request,
never shows in ``active_requests`` and makes no span.

:class:`Front` also keeps ``http.server.active_requests`` (:class:`~inferwatch.proxy.in_flight.InFlight`)
for the requests it hands on, and reads away what a request leaves of its body (see
:mod:`inferwatch.proxy.request_body`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping

from inferwatch.proxy import request_body
from inferwatch.proxy.errors import error_body
from inferwatch.proxy.telemetry.exposition import Exposition
from inferwatch.proxy.in_flight import InFlight
from inferwatch.proxy.request_body import DiscardAfterAnswer
from inferwatch.proxy.upstream import UpstreamClient

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

JSON = "application/json"
VARY_ENCODING = ("Vary", "Accept-Encoding")


def answer(start_response: Callable, status: str, content_type: str, body: bytes, *headers: tuple[str, str]) -> list[bytes]:
    start_response(status, [*headers, ("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def json_error(status: str, code: str, message: str, *headers: tuple[str, str]) -> WSGIApp:
    """An app that always answers this error (its body is built once)."""
    body = error_body(code, message)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        return answer(start_response, status, JSON, body, *headers)

    return app


def healthz(environ: dict, start_response: Callable) -> list[bytes]:
    return answer(start_response, "200 OK", JSON, b'{"status":"ok"}')


def readyz(upstream: UpstreamClient) -> WSGIApp:
    not_ready = error_body("not_ready", "the model server does not answer /ping")

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if upstream.ready():
            return answer(start_response, "200 OK", JSON, b'{"status":"ready"}')
        return answer(start_response, "503 Service Unavailable", JSON, not_ready)

    return app


def metrics(exposition: Exposition) -> WSGIApp:
    """/metrics: the format follows ``Accept``, gzip follows ``Accept-Encoding``."""

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        content_type, body, encoding = exposition.answer(
            environ.get("HTTP_ACCEPT", ""), environ.get("HTTP_ACCEPT_ENCODING", ""))
        headers = [VARY_ENCODING] if encoding is None else [VARY_ENCODING, ("Content-Encoding", encoding)]
        return answer(start_response, "200 OK", content_type, body, *headers)

    return app


def metrics_through_the_collector(workers: int) -> WSGIApp:
    """/metrics of one of several workers: a 404 that says where the exact totals are, never
    one worker's share passed off as the whole."""
    return json_error(
        "404 Not Found", "not_found",
        f"/metrics is not served: this proxy runs {workers} worker processes, and each exports its "
        "metrics over OTLP under its own service.instance.id; scrape the collector, which keeps "
        "every worker's series",
    )


def bearer_token(app: WSGIApp, token: bytes) -> WSGIApp:
    """``app`` for requests with ``Authorization: Bearer <token>``; 401 for the others."""
    expected = b"Bearer " + token
    refuse = json_error("401 Unauthorized", "unauthorized", "a valid bearer token is required",
                        ("WWW-Authenticate", 'Bearer realm="metrics"'))

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        return refuse(environ, start_response)

    return guarded


def get_only(app: WSGIApp) -> WSGIApp:
    refuse = json_error("405 Method Not Allowed", "method_not_allowed", "use GET")

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return app(environ, start_response)
        return refuse(environ, start_response)

    return guarded


class Front:
    """Routes the operational paths to their apps and every other request to ``app``.

    ``main`` holds the apps of the main port; ``metrics_port`` and ``metrics_port_apps`` those of
    a port of its own for /metrics, which serves nothing else (404 for other paths).
    """

    def __init__(self, app: WSGIApp, in_flight: InFlight, main: Mapping[str, WSGIApp], discard_timeout: float,
                 metrics_port: str | None = None, metrics_port_apps: Mapping[str, WSGIApp] | None = None):
        self._app = app
        self._in_flight = in_flight
        self._main = dict(main)
        self._metrics_port = metrics_port
        self._metrics_port_apps = dict(metrics_port_apps or {})
        self._not_found = json_error("404 Not Found", "not_found", "this port serves /metrics, /healthz and /readyz")
        self._discard_timeout = discard_timeout

    def _route(self, environ: dict) -> WSGIApp | None:
        path = environ.get("PATH_INFO", "")
        if self._metrics_port is not None and environ.get("SERVER_PORT") == self._metrics_port:
            return self._metrics_port_apps.get(path, self._not_found)
        return self._main.get(path)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "HTTP_TRANSFER_ENCODING" in environ or "HTTP_EXPECT" in environ:
            start_response = request_body.closing_when_needed(environ, start_response)
        route = self._route(environ)
        response = route(environ, start_response) if route is not None else self._counted(environ, start_response)
        if request_body.has_unread_body(environ):
            if environ.get(request_body.ANSWER_FIRST):
                return DiscardAfterAnswer(response, environ, self._discard_timeout)
            request_body.discard_unread(environ, self._discard_timeout)
        return response

    def _counted(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        scheme = self._in_flight.started(environ.get("wsgi.url_scheme", "http"))
        try:
            return self._app(environ, start_response)
        finally:
            self._in_flight.ended(scheme)
