"""GenAI telemetry of MLflow's chat, completion and embedding requests, in the OpenTelemetry GenAI conventions.

For a prediction in MLflow's unified LLM input (:attr:`~inferwatch.contract.inputs.InputFormat.is_llm`)
:meth:`GenAiTelemetry.call_for` makes a :class:`GenAiCall` before the MLflow call. The client span
of that call (the requests instrumentation's) gets the request's GenAI attributes as it starts
and the answer's as it ends (:meth:`GenAiCall.on_request`, :meth:`GenAiCall.on_response`, run by
the hooks of :mod:`inferwatch.proxy.upstream`); the answer is read there, once. After the
answer :meth:`GenAiTelemetry.record` records the metrics:

* ``gen_ai.client.operation.duration`` (s): the MLflow call, with ``error.type`` (the
  prediction's failure reason) when it failed;
* ``gen_ai.client.token.usage`` ({token}): the answer's ``usage``, input and output tokens
  (``prompt_tokens``/``completion_tokens``, or ``input_tokens``/``output_tokens``). An answer
  without usage records none: the conventions forbid guessing. It is counted in
  ``inferwatch.gen_ai.usage.missing`` instead;
* ``inferwatch.gen_ai.response.finish_reasons``: each choice's finish reason (a bounded set).

Every series carries the model and version of the proxy (``inferwatch.model.*``),
``gen_ai.operation.name``, ``gen_ai.request.model`` (the proxy's model name: the model the
request is made to; a ``model`` field of the body goes on the span only, since clients choose it)
and ``gen_ai.response.model`` (the answer's ``model`` field, else the proxy's model name; at most
:data:`~inferwatch.contract.genai.MAX_RESPONSE_MODELS` distinct values, then ``other``).

Prompt and answer text is recorded on the span only when the user opts in
(``--genai-capture-content`` or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``), as
the conventions require; :mod:`inferwatch.contract.genai` says which version is emitted and how.

The two histograms come from :mod:`inferwatch.proxy.telemetry.histograms`: each series (operation,
response model, token type or error) is bound to its attributes the first time it is needed, and
a record is then an addition under a lock, not the SDK's per-measurement attribute handling.

A tabular prediction pays one set lookup here (its format is not LLM input). Telemetry never
breaks a request: errors are logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Span

from inferwatch.contract import genai as g
from inferwatch.contract.metrics import ERROR_TYPE
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.proxy import json_body
from inferwatch.proxy.model import ModelIdentity
from inferwatch.proxy.prediction import PredictionRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conventions:
    """Which version of the GenAI conventions the proxy emits (see :mod:`inferwatch.contract.genai`)."""

    latest: bool = False
    capture_content: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], capture_content: bool = False) -> Conventions:
        opted_in = {part.strip() for part in environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
        captured = environ.get(g.CAPTURE_CONTENT_VARIABLE, "").strip().lower() == "true"
        return cls(latest=g.OPT_IN_LATEST in opted_in, capture_content=capture_content or captured)

    @property
    def version(self) -> str:
        return g.SEMCONV_LATEST if self.latest else g.SEMCONV_DEFAULT

    @property
    def provider_key(self) -> str:
        return g.GEN_AI_PROVIDER_NAME if self.latest else g.GEN_AI_SYSTEM


@dataclass(frozen=True)
class GenAiAnswer:
    """What the telemetry reads of one answer."""

    response_id: str | None = None
    model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    # (role, text, finish reason) of each choice, kept only when content is captured
    outputs: tuple[tuple[str, str, str | None], ...] = ()

    @property
    def has_usage(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


def _tokens(usage: dict, *keys: str) -> int | None:
    for key in keys:
        value = usage.get(key)
        if type(value) is int and value >= 0:
            return value
    return None


def _text(content: object) -> str:
    """A message's text: a string, or the text parts of OpenAI's content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else json.dumps(content)


def read_answer(body: bytes, capture_content: bool = False) -> GenAiAnswer:
    """The answer's id, model, finish reasons and usage (OpenAI-shaped, as MLflow's chat types are)."""
    try:
        document = json_body.loads(body)
    except ValueError:
        return GenAiAnswer()
    if not isinstance(document, dict):
        return GenAiAnswer()
    usage = document.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    choices = document.get("choices")
    choices = [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []
    reasons = tuple(str(c["finish_reason"]) for c in choices if c.get("finish_reason") is not None)
    outputs: tuple = ()
    if capture_content:
        outputs = tuple(
            (c["message"].get("role", "assistant"), _text(c["message"].get("content")), c.get("finish_reason"))
            if isinstance(c.get("message"), dict) else ("assistant", _text(c.get("text")), c.get("finish_reason"))
            for c in choices)
    response_id, model = document.get("id"), document.get("model")
    return GenAiAnswer(
        response_id=response_id if isinstance(response_id, str) else None,
        model=model if isinstance(model, str) and model else None,
        finish_reasons=reasons,
        input_tokens=_tokens(usage, "prompt_tokens", "input_tokens"),
        output_tokens=_tokens(usage, "completion_tokens", "output_tokens"),
        outputs=outputs,
    )


def _input_messages(prediction: PredictionRequest) -> list[tuple[str, str]]:
    """(role, text) of what the request sends: the chat's messages, the prompts, the inputs."""
    payload = prediction.payload or {}
    if "messages" in payload and isinstance(payload["messages"], list):
        return [(str(m.get("role", "user")), _text(m.get("content"))) for m in payload["messages"] if isinstance(m, dict)]
    value = payload.get("prompt", payload.get("input"))
    values = value if isinstance(value, list) else [value]
    return [("user", _text(v)) for v in values]


@dataclass
class GenAiCall:
    """One GenAI request's telemetry, from before the MLflow call to after its answer."""

    operation: str
    request_model: str
    span_attributes: dict
    conventions: Conventions
    inputs: list[tuple[str, str]] = field(default_factory=list)
    answer: GenAiAnswer | None = None

    def on_request(self, span: Span) -> None:
        """The client span starts: the request's attributes, and its text when captured."""
        span.set_attributes(self.span_attributes)
        if not self.conventions.capture_content:
            return
        if self.conventions.latest:
            messages = [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in self.inputs]
            span.set_attribute(g.GEN_AI_INPUT_MESSAGES, json.dumps(messages, ensure_ascii=False))
        else:
            for role, text in self.inputs:
                span.add_event(f"gen_ai.{role}.message", {g.GEN_AI_SYSTEM: g.PROVIDER, "content": text})

    def on_response(self, span: Span, status: int, body: bytes) -> None:
        """The client span ends: the answer's attributes (read here, once, for the metrics too)."""
        if status != 200:
            return
        self.answer = answer = read_answer(body, self.conventions.capture_content)
        attributes: dict = {g.GEN_AI_RESPONSE_MODEL: answer.model or self.request_model}
        if answer.response_id:
            attributes[g.GEN_AI_RESPONSE_ID] = answer.response_id
        if answer.finish_reasons:
            attributes[g.GEN_AI_RESPONSE_FINISH_REASONS] = list(answer.finish_reasons)
        if answer.input_tokens is not None:
            attributes[g.GEN_AI_USAGE_INPUT_TOKENS] = answer.input_tokens
        if answer.output_tokens is not None:
            attributes[g.GEN_AI_USAGE_OUTPUT_TOKENS] = answer.output_tokens
        span.set_attributes(attributes)
        if not self.conventions.capture_content or not answer.outputs:
            return
        if self.conventions.latest:
            messages = [{"role": role, "parts": [{"type": "text", "content": text}], "finish_reason": reason}
                        for role, text, reason in answer.outputs]
            span.set_attribute(g.GEN_AI_OUTPUT_MESSAGES, json.dumps(messages, ensure_ascii=False))
        else:
            for index, (role, text, reason) in enumerate(answer.outputs):
                span.add_event("gen_ai.choice", {g.GEN_AI_SYSTEM: g.PROVIDER, "index": index,
                                                 "finish_reason": reason or "", "message": json.dumps(
                                                     {"role": role, "content": text}, ensure_ascii=False)})


class _Bounded:
    """At most ``limit`` distinct label values; later ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return g.OTHER
        self._seen.add(value)  # a race can let one more in: still bounded
        return value


class HistogramSeries(Protocol):
    def record(self, value: float) -> None: ...


class BoundHistogram(Protocol):
    def series(self, attributes: Mapping[str, str]) -> HistogramSeries: ...


class Histograms(Protocol):
    """Where the GenAI histograms come from (:mod:`inferwatch.proxy.telemetry.histograms`): an
    instrument whose series are bound to their attributes once, then recorded to."""

    def create_histogram(self, name: str, *, unit: str, description: str, boundaries: Sequence[float],
                         exemplars: bool = False) -> BoundHistogram: ...


class GenAiTelemetry:
    """The GenAI instruments of one model, and the calls that feed them."""

    def __init__(self, identity: ModelIdentity, meter: Meter, histograms: Histograms,
                 conventions: Conventions) -> None:
        self._model = identity.attributes
        self._model_name = identity.name
        self._conventions = conventions
        self._response_models = _Bounded(g.MAX_RESPONSE_MODELS)
        self._series: dict[tuple, HistogramSeries] = {}
        self._tokens = histograms.create_histogram(
            g.GEN_AI_CLIENT_TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used.",
            boundaries=g.TOKEN_USAGE_BUCKETS)
        # Exemplars as on the latency histograms: a slow or failed GenAI call leads to its trace.
        self._duration = histograms.create_histogram(
            g.GEN_AI_CLIENT_OPERATION_DURATION, unit="s", description="GenAI operation duration.",
            boundaries=g.OPERATION_DURATION_BUCKETS_SECONDS, exemplars=True)
        self._lock = threading.Lock()
        operations = tuple(g.OPERATIONS.values())
        reasons = (*g.FINISH_REASONS, g.OTHER)
        # Plain counts read at collection; every series exists at 0 from start-up.
        self._finish = {(o, r): 0 for o in operations for r in reasons}
        self._missing = dict.fromkeys(operations, 0)
        self._finish_attributes = {
            key: {**self._model, g.GEN_AI_OPERATION_NAME: key[0], g.GEN_AI_FINISH_REASON: key[1]}
            for key in self._finish}
        self._operation_attributes = {o: {**self._model, g.GEN_AI_OPERATION_NAME: o} for o in operations}
        meter.create_observable_counter(g.GEN_AI_FINISH_REASONS, [self._observe_finish], unit="{choice}",
                                        description="Choices of GenAI answers by finish reason.")
        meter.create_observable_counter(g.GEN_AI_USAGE_MISSING, [self._observe_missing], unit="{request}",
                                        description="Answered GenAI requests that reported no token usage.")

    def call_for(self, prediction: PredictionRequest) -> GenAiCall | None:
        """A call for LLM input; None for any other format (what a tabular prediction pays)."""
        if not prediction.format.is_llm:
            return None
        operation = g.OPERATIONS[prediction.format]
        payload = prediction.payload or {}
        span_attributes: dict = {
            g.GEN_AI_OPERATION_NAME: operation,
            self._conventions.provider_key: g.PROVIDER,
            g.GEN_AI_REQUEST_MODEL: payload["model"] if isinstance(payload.get("model"), str) else self._model_name,
        }
        for key, attribute in g.GEN_AI_REQUEST_PARAMETERS.items():
            value = payload.get(key)
            if key == "stop" and isinstance(value, str):
                value = [value]
            if isinstance(value, (int, float, str)) and not isinstance(value, bool) or (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)):
                span_attributes[attribute] = value
        inputs = _input_messages(prediction) if self._conventions.capture_content else []
        return GenAiCall(operation, self._model_name, span_attributes, self._conventions, inputs)

    def record(self, call: GenAiCall, outcome: PredictionOutcome, seconds: float | None, answer_body: bytes | None) -> None:
        """The metrics of one finished call. Never raises."""
        try:
            self._record(call, outcome, seconds, answer_body)
        except Exception:  # noqa: BLE001 - telemetry never breaks a request
            log.exception("GenAI telemetry failed")

    def _record(self, call: GenAiCall, outcome: PredictionOutcome, seconds: float | None,
                answer_body: bytes | None) -> None:
        answered = outcome is PredictionOutcome.SUCCESS
        answer = call.answer
        if answered and answer is None and answer_body is not None:  # no span hook ran (tracing off)
            answer = read_answer(answer_body)
        model = self._response_models((answer.model if answer is not None and answer.model else None)
                                      or call.request_model)
        if seconds is not None:
            self._series_of(call.operation, model, None if answered else outcome.value).record(seconds)
        if not answered or answer is None:
            return
        if answer.input_tokens is not None:
            self._series_of(call.operation, model, None, g.TOKEN_INPUT).record(answer.input_tokens)
        if answer.output_tokens is not None:
            self._series_of(call.operation, model, None, g.TOKEN_OUTPUT).record(answer.output_tokens)
        with self._lock:
            if not answer.has_usage:
                self._missing[call.operation] += 1
            for reason in answer.finish_reasons:
                self._finish[(call.operation, reason if reason in g.FINISH_REASONS else g.OTHER)] += 1

    def _series_of(self, operation: str, response_model: str, error: str | None,
                   token_type: str | None = None) -> HistogramSeries:
        """One GenAI series (token usage with a token type, else the duration), bound once: the
        label values are bounded."""
        key = (operation, response_model, error, token_type)
        series = self._series.get(key)
        if series is None:
            attributes = {**self._model, g.GEN_AI_OPERATION_NAME: operation, self._conventions.provider_key: g.PROVIDER,
                          g.GEN_AI_REQUEST_MODEL: self._model_name, g.GEN_AI_RESPONSE_MODEL: response_model}
            if error is not None:
                attributes[ERROR_TYPE] = error
            if token_type is not None:
                attributes[g.GEN_AI_TOKEN_TYPE] = token_type
            histogram = self._duration if token_type is None else self._tokens
            series = self._series.setdefault(key, histogram.series(attributes))
        return series

    def _observe_finish(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            counts = list(self._finish.items())
        return [Observation(n, self._finish_attributes[key]) for key, n in counts]

    def _observe_missing(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            counts = list(self._missing.items())
        return [Observation(n, self._operation_attributes[o]) for o, n in counts]
