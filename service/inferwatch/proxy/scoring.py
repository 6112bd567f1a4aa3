"""MLflow's scoring API besides predictions: ``GET /ping``, ``/health`` and ``/version``, forwarded.

Load balancers, health checks and MLflow's own client (``ScoringServerClient.wait_server_ready``,
``get_version``) call them on the model server; through the proxy they reach it and come back as
MLflow answered them (status, content type, body). They are HTTP requests in the HTTP metrics
(``route="/ping"``, ...) and make spans, but they are not predictions. 503 when MLflow cannot be
reached, 504 when it does not answer in time, in the proxy's JSON error shape.
"""

from __future__ import annotations

from flask import Response, request

from inferwatch.proxy.errors import ProxyError
from inferwatch.proxy.predictor import error_response
from inferwatch.proxy.upstream import UpstreamClient


class ScoringApi:
    """The view for the forwarded paths."""

    def __init__(self, upstream: UpstreamClient):
        self._upstream = upstream

    def handle(self) -> Response:
        try:
            answer = self._upstream.get(request.path)
        except ProxyError as error:
            return error_response(error)
        return Response(answer.body, status=answer.status, content_type=answer.content_type or None)
