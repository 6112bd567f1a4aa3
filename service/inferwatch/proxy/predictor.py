"""The prediction handler: ``POST /predict`` and ``POST /invocations``, forwarded to MLflow's ``/invocations``.

One request, one pass:

1. the body is read (:mod:`inferwatch.proxy.request_body`: the size limit, chunked bodies, slow
   clients) and recognised once (:func:`inferwatch.proxy.prediction.read_prediction`);
2. it goes to MLflow unchanged, body and ``Content-Type`` as the client sent them;
3. MLflow's answer comes back as MLflow gave it (:func:`relay`): status, content type and body,
   less a ``stack_trace`` field; a non-JSON error body (MLflow's 415 is text/plain) is wrapped in
   the proxy's JSON error shape with MLflow's status and message kept. 502, 503 and 504 only when
   MLflow fails or cannot be reached;
4. the observers read the request and the answer (model quality, the feedback token);
5. the outcome is counted exactly once, here (:class:`~inferwatch.proxy.outcomes.PredictionCounts`),
   whatever happened before, and travels with the answer (:class:`PredictionResponse`) to the
   request log;
6. when the inference log is on, the prediction is handed to it once, with its outcome, latency
   and model time (:class:`~inferwatch.proxy.inference_log.InferenceLog`; it only queues).

What the proxy refuses itself, before MLflow is asked: a body over the limit (413), a request
without a ``Content-Type`` (415: MLflow would fail on it with a 500), an empty body (400), JSON
nested too deeply or with an integer too long to convert (400 ``invalid_json``: MLflow's parser
raises on both and it answers 500), and what the edge refuses (an incomplete body, a silent
client, a bad ``Transfer-Encoding``).
"""

from __future__ import annotations

import json
import logging
import time

from flask import Response, g, request
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from inferwatch.contract.inputs import MLFLOW_INVOCATIONS, InputFormat
from inferwatch.contract.metrics import ERROR_TYPE
from inferwatch.proxy import errors, json_body, request_body
from inferwatch.proxy.config import Settings
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.contract.spans import INPUT_FORMAT as ATTR_INPUT_FORMAT
from inferwatch.contract.spans import MODEL_ROUTE as ATTR_MODEL_ROUTE
from inferwatch.contract.spans import OUTCOME as ATTR_OUTCOME
from inferwatch.contract.spans import ROW_COUNT as ATTR_ROW_COUNT
from inferwatch.proxy.errors import ProxyError, error_body
from inferwatch.proxy.genai import GenAiTelemetry
from inferwatch.proxy.inference_log import InferenceLog
from inferwatch.proxy.outcomes import PredictionCounts
from inferwatch.proxy.prediction import PredictionRequest, format_of_content_type, read_prediction
from inferwatch.proxy.quality import AnswerObserver
from inferwatch.proxy.upstream import UpstreamAnswer, UpstreamClient

log = logging.getLogger(__name__)

JSON = "application/json"
# MLflow's text messages are kept in the wrapped error up to this many characters.
MAX_WRAPPED_MESSAGE = 4096



class PredictionResponse(Response):
    """A prediction's answer, carrying how the prediction ended (for the request log)."""

    outcome: PredictionOutcome | None = None


class Predictor:
    """Forwards a prediction, relays MLflow's answer, and counts the outcome once."""

    def __init__(self, settings: Settings, upstream: UpstreamClient, counts: PredictionCounts,
                 observer: AnswerObserver | None = None, genai: GenAiTelemetry | None = None,
                 inference_log: InferenceLog | None = None):
        self._limit = settings.max_body_bytes
        self._client_timeout = settings.client_timeout
        self._upstream = upstream
        self._counts = counts
        self._observer = observer or AnswerObserver(None, None)
        self._genai = genai
        self._inference_log = inference_log

    def handle(self) -> Response:
        started = time.perf_counter()
        prediction = call = model_time_s = None
        try:
            prediction = self._read()
            call = self._genai.call_for(prediction) if self._genai is not None else None
            measuring = self._observer.before(prediction)  # a large body's inputs, while MLflow computes
            sent = time.perf_counter()
            try:
                answer = self._upstream.invoke(prediction.body, prediction.content_type, call)
            finally:
                model_time_s = time.perf_counter() - sent  # the MLflow call, answered or not
            response, outcome = relay(answer, prediction)
            self._observer.after(prediction, response, measuring)
        except ProxyError as error:
            response, outcome = error_response(error), error.outcome
        except Exception:  # noqa: BLE001 - whatever fails, the client gets the JSON 500 and it is counted
            log.exception("prediction failed unexpectedly")
            error = errors.internal_error()
            response, outcome = error_response(error), error.outcome
        fmt = prediction.format if prediction is not None else _format_before_the_body()
        self._counts.count(outcome, fmt)
        _annotate(trace.get_current_span(), outcome, fmt, prediction.rows if prediction is not None else None)
        if call is not None:
            self._genai.record(call, outcome, model_time_s,
                               response.get_data() if outcome is PredictionOutcome.SUCCESS else None)
        response.outcome = outcome
        if self._inference_log is not None:
            self._inference_log.record(prediction, g.get("request_id", ""), fmt, response, outcome,
                                       time.perf_counter() - started, model_time_s)
        return response

    def _read(self) -> PredictionRequest:
        environ = request.environ
        length = request_body.declared_length(environ)
        if length is not None and length > self._limit:
            raise request_body.too_large(environ, self._limit)
        content_type = environ.get("CONTENT_TYPE", "")
        if not content_type:
            raise errors.unsupported_media_type(None)
        body = request_body.read_body(environ, length, self._limit, self._client_timeout)
        return read_prediction(body, content_type, g.get("request_id", ""))


def _format_before_the_body() -> InputFormat:
    """The format of a request refused before its body was read: what its content type says."""
    return format_of_content_type(request.environ.get("CONTENT_TYPE", "")) or InputFormat.OTHER


def _annotate(span: trace.Span, outcome: PredictionOutcome, fmt: InputFormat, rows: int | None) -> None:
    attributes = {ATTR_MODEL_ROUTE: MLFLOW_INVOCATIONS, ATTR_INPUT_FORMAT: fmt.value, ATTR_OUTCOME: outcome.value}
    if rows is not None:
        attributes[ATTR_ROW_COUNT] = rows
    if outcome is not PredictionOutcome.SUCCESS:
        attributes[ERROR_TYPE] = outcome.value
        span.set_status(Status(StatusCode.ERROR, outcome.value))
    span.set_attributes(attributes)


def relay(answer: UpstreamAnswer, prediction: PredictionRequest) -> tuple[Response, PredictionOutcome]:
    """MLflow's answer for the client, and the prediction's outcome."""
    status = answer.status
    if status == 200:
        return PredictionResponse(answer.body, status=200, content_type=answer.content_type), PredictionOutcome.SUCCESS
    if 400 <= status < 500:
        outcome = rejection_outcome(status, prediction)
        document = _json_object(answer)
        if document is None:
            message = answer.body.decode("utf-8", "replace").strip()[:MAX_WRAPPED_MESSAGE]
            body = error_body(outcome.value, message or f"the model server answered {status}")
            return PredictionResponse(body, status=status, content_type=JSON), outcome
        if document.pop("stack_trace", None) is not None:  # it would leak the server's internals
            return PredictionResponse(json.dumps(document), status=status, content_type=JSON), outcome
        return PredictionResponse(answer.body, status=status, content_type=answer.content_type), outcome
    if status == 503:
        raise errors.upstream_unavailable()
    if status == 504:  # MLflow's own request timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT)
        raise errors.upstream_timeout()
    raise errors.upstream_error(f"status {status}")


def rejection_outcome(status: int, prediction: PredictionRequest) -> PredictionOutcome:
    """Why MLflow refused a request (a 4xx): as the proxy saw the request, else the model's refusal."""
    if status == 415:
        return PredictionOutcome.UNSUPPORTED_MEDIA_TYPE
    if prediction.malformed:
        return PredictionOutcome.INVALID_JSON
    if prediction.format is InputFormat.OTHER:
        return PredictionOutcome.INVALID_INPUT
    return PredictionOutcome.MODEL_REJECTED


def _json_object(answer: UpstreamAnswer) -> dict | None:
    if not answer.content_type.startswith(JSON):
        return None
    try:
        document = json_body.loads(answer.body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def error_response(error: ProxyError) -> PredictionResponse:
    response = PredictionResponse(error.body(), status=error.status, content_type=JSON)
    if error.status == 413:
        response.headers["Connection"] = "close"  # the rest of the body is discarded, then the connection closes
    return response
