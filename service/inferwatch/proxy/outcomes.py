"""Predictions counted by outcome and by input format: plain integers, read when metrics are collected.

Every prediction request is counted exactly once, by :meth:`PredictionCounts.count`, with its
final outcome and its input format: one lock and two increments, where two SDK counters would
have been two measurements through every metric reader's storage. Observable counters read the
integers at each collection (cumulative, as a counter's sum is), so the series are exact on
/metrics and over OTLP alike, and every one of them exists at 0 from start-up (``rate()`` works
before the first failure):

* ``inferwatch.prediction.successes`` (``prediction_success_total``);
* ``inferwatch.prediction.failures`` by ``error.type`` (``prediction_failure_total``, and by
  reason ``prediction_failure_by_reason_total``);
* ``inferwatch.prediction.requests`` by input format (``prediction_requests_by_format_total``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.metrics import (
    ERROR_TYPE,
    MODEL_INPUT_FORMAT,
    PREDICTION_FAILURES,
    PREDICTION_REQUESTS,
    PREDICTION_SUCCESSES,
)
from inferwatch.contract.outcomes import FAILURES, PredictionOutcome

OUTCOMES = tuple(PredictionOutcome)
FORMATS = tuple(InputFormat)


class PredictionCounts:
    """Predictions by outcome and by input format, for one model."""

    def __init__(self, model: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._by_outcome = dict.fromkeys(OUTCOMES, 0)
        self._by_format = dict.fromkeys(FORMATS, 0)
        self._failure_attributes = {outcome: {**model, ERROR_TYPE: outcome.value} for outcome in FAILURES}
        self._format_attributes = {fmt: {**model, MODEL_INPUT_FORMAT: fmt.value} for fmt in FORMATS}
        self._model = dict(model)

    def count(self, outcome: PredictionOutcome, fmt: InputFormat) -> None:
        with self._lock:
            self._by_outcome[outcome] += 1
            self._by_format[fmt] += 1

    def snapshot(self) -> tuple[dict[PredictionOutcome, int], dict[InputFormat, int]]:
        with self._lock:
            return dict(self._by_outcome), dict(self._by_format)

    def register(self, meter: Meter) -> None:
        meter.create_observable_counter(
            PREDICTION_SUCCESSES, [self._observe_successes], unit="{prediction}",
            description="Predictions answered by the model.")
        meter.create_observable_counter(
            PREDICTION_FAILURES, [self._observe_failures], unit="{prediction}",
            description="Predictions that failed, by error.type.")
        meter.create_observable_counter(
            PREDICTION_REQUESTS, [self._observe_formats], unit="{prediction}",
            description="Prediction requests by input format.")

    def _observe_successes(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            value = self._by_outcome[PredictionOutcome.SUCCESS]
        return [Observation(value, self._model)]

    def _observe_failures(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            values = [self._by_outcome[outcome] for outcome in FAILURES]
        return [Observation(v, self._failure_attributes[o]) for o, v in zip(FAILURES, values)]

    def _observe_formats(self, _options: CallbackOptions) -> list[Observation]:
        with self._lock:
            values = [self._by_format[fmt] for fmt in FORMATS]
        return [Observation(v, self._format_attributes[f]) for f, v in zip(FORMATS, values)]
