"""The client for the MLflow model server.

One pooled ``requests.Session`` per process, so connections to MLflow are reused; the requests
instrumentation wraps each call in a client span and sends ``traceparent`` upstream. Only the
body and its content type are forwarded: client headers (forwarding headers, hop-by-hop headers,
``Host``) never reach the model server, and the client can never choose the upstream.

Transport failures become :class:`~inferwatch.proxy.errors.ProxyError` with the status they mean:
connection refused or reset -> 503, connect or read timeout (also in the middle of the body) ->
504, an answer cut short after its headers -> 502.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.hooks import default_hooks
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from inferwatch import __version__
from inferwatch.proxy import errors
from inferwatch.proxy.config import Settings


_FIXED_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "Connection": "keep-alive",
    "User-Agent": f"inferwatch/{__version__}",
}


class _NoCookies(RequestsCookieJar):
    """A cookie jar that keeps nothing: the proxy is not a browser session."""

    def set_cookie(self, cookie, *args, **kwargs):
        return None

    def extract_cookies(self, response, request):
        return None


class _OneServerAdapter(HTTPAdapter):
    """The adapter for the one model server: its connection pool is found once, where requests
    would parse the URL and look the pool up again on every call."""

    _pool = None

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if self._pool is None:
            self._pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        return self._pool


NO_PROXIES: dict[str, str] = {}  # given to send(), so requests does not resolve proxies per call
# The attribute of a PreparedRequest that carries its call's telemetry to the span hooks.
CALL_ATTRIBUTE = "inferwatch_call"

log = logging.getLogger(__name__)


class SpanAnnotations(Protocol):
    """What a call can add to the client span of its MLflow request (e.g. a GenAI call)."""

    def on_request(self, span) -> None: ...

    def on_response(self, span, status: int, body: bytes) -> None: ...


def request_hook(span, request) -> None:
    """The requests instrumentation's hook as the client span starts: the call's annotations."""
    call = getattr(request, CALL_ATTRIBUTE, None)
    if call is not None:
        try:
            call.on_request(span)
        except Exception:  # noqa: BLE001 - telemetry never breaks a request
            log.exception("annotating the MLflow call's span failed")


def response_hook(span, request, response) -> None:
    """The requests instrumentation's hook as the client span ends, with MLflow's answer."""
    call = getattr(request, CALL_ATTRIBUTE, None)
    if call is not None:
        try:
            call.on_response(span, response.status_code, response.content)
        except Exception:  # noqa: BLE001 - telemetry never breaks a request
            log.exception("annotating the MLflow call's span failed")


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    body: bytes
    content_type: str


class UpstreamClient:
    def __init__(self, settings: Settings):
        self._url = settings.invocations_url
        self._base_url = settings.upstream
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        # A refused connection is retried once (nothing was sent, so a POST is safe to repeat);
        # a request that reached the model is never retried.
        adapter = _OneServerAdapter(
            pool_connections=1,
            pool_maxsize=settings.threads + settings.body_threads,  # one connection per worker thread at most
            max_retries=Retry(total=1, connect=1, read=False, status=0, other=0, redirect=0, allowed_methods=None),
        )
        self._session = requests.Session()
        self._session.trust_env = False  # proxy variables must not reroute calls to the model
        self._session.cookies = _NoCookies()  # one client's cookies never ride on another's call
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._hooks = default_hooks()
        # Readiness probes use a bare urllib3 pool so they make no spans.
        self._ping_url = settings.ping_url
        self._ping_pool = urllib3.PoolManager(num_pools=1, maxsize=2, retries=False)
        self._ping_timeout = urllib3.Timeout(connect=settings.ready_timeout, read=settings.ready_timeout)

    def invoke(self, body: bytes, content_type: str, call: SpanAnnotations | None = None) -> UpstreamAnswer:
        """POST a prediction to MLflow's /invocations: the body and its content type, nothing else.
        ``call`` annotates the client span (:func:`request_hook`, :func:`response_hook`)."""
        return self._send("POST", self._url, {"Content-Type": content_type, "Content-Length": str(len(body))}, body,
                          call)

    def get(self, path: str) -> UpstreamAnswer:
        """GET one of MLflow's scoring API paths (/ping, /health, /version)."""
        return self._send("GET", self._base_url + path, {}, None)

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
              call: SpanAnnotations | None = None) -> UpstreamAnswer:
        # Built directly: Session.request would re-merge settings, cookies and the environment on
        # every call. send() is what the requests instrumentation wraps, so spans are unchanged.
        prepared = PreparedRequest()
        prepared.method = method
        prepared.url = url
        prepared.headers = CaseInsensitiveDict({**headers, **_FIXED_HEADERS})
        prepared.body = body
        prepared.hooks = self._hooks
        if call is not None:
            setattr(prepared, CALL_ATTRIBUTE, call)
        try:
            response = self._session.send(prepared, timeout=self._timeout, allow_redirects=False, proxies=NO_PROXIES)
        except requests.Timeout:
            raise errors.upstream_timeout() from None
        except requests.ConnectionError as error:
            # requests reports a read timeout in the middle of the body as a ConnectionError.
            if any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args):
                raise errors.upstream_timeout() from None
            raise errors.upstream_unavailable() from None
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            # The headers came, the body did not: the model server died while answering.
            raise errors.upstream_error("the answer was cut short") from None
        return UpstreamAnswer(
            status=response.status_code,
            body=response.content,
            content_type=response.headers.get("Content-Type", ""),
        )

    def ready(self) -> bool:
        try:
            response = self._ping_pool.request("GET", self._ping_url, timeout=self._ping_timeout)
        except urllib3.exceptions.HTTPError:
            return False
        return response.status == 200

    def close(self) -> None:
        self._session.close()
        self._ping_pool.clear()
