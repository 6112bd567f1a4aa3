"""The inference log: a sampled, redacted record of each prediction, written off the request path.

When asked (``--payload-log-dir`` and/or ``--payload-log-otlp``), the predictor hands every
prediction to :meth:`InferenceLog.record` once it is answered, and the feedback endpoint every
accepted label to :meth:`InferenceLog.feedback`. On the request thread that is a sampling
decision and, for a request in the sample, a tuple of references appended to a bounded queue: no
parsing, no JSON, no system call. A background thread takes the queue every
:data:`FLUSH_INTERVAL_S`, builds the records (:mod:`inferwatch.proxy.inference_records`), redacts
them (:mod:`inferwatch.proxy.redaction`), appends them to this process's rolling JSON Lines files
(:mod:`inferwatch.proxy.log_files`) and hands them to the OTLP exporter, which runs on a thread of
its own so that a slow or absent collector never holds the files back.

Sampling (``--payload-log-sample``, 0 to 1, default 1) is decided by the request id
(:class:`inferwatch.contract.inference_log.Sample`): the same request is in or out in every
process, on a rerun, and for its feedback. Failed predictions are logged whether sampled or not
(``sampled: false``) unless ``--payload-log-failures false``.

Nothing here slows or fails a prediction. When the queue holds ``--payload-log-queue`` records or
:data:`MAX_QUEUED_BYTES` of request and answer bodies, a record is dropped; so are records a
file cannot take (a full disk) and records the OTLP export loses; each is counted by reason in
``inference_log_dropped_total`` and every record written in ``inference_log_records_total`` by
destination (:class:`InferenceLogCounts`, whose series exist at 0 from start-up, logging on or
off). :meth:`InferenceLog.close` writes what is queued and closes the files.

The record format is in :mod:`inferwatch.contract.inference_log`, the reader in ``inferwatch
logs``; docs/inference-logging.md has both, and the privacy section.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from flask import Response
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from inferwatch.contract import inference_log as il
from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.metrics import ERROR_TYPE, INFERENCE_LOG_DESTINATION, INFERENCE_LOG_DROPPED, INFERENCE_LOG_RECORDS
from inferwatch.proxy.config import Settings, mask_kinds, redaction_rules
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.proxy.inference_records import feedback_record, prediction_record
from inferwatch.proxy.log_files import RollingFiles
from inferwatch.proxy.prediction import PredictionRequest
from inferwatch.proxy.redaction import Redactor

log = logging.getLogger(__name__)

# Seconds between two takes of the queue: records reach the files this late at most (plus the
# time to write them), and the writer wakes this often when idle.
FLUSH_INTERVAL_S = 0.2
# Request and answer bodies the queue may hold, in bytes: the memory bound under a burst of large
# bodies (the record count bound is --payload-log-queue).
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# Records waiting for the OTLP export, and how many go in one export request.
MAX_EXPORT_QUEUE = 10_000
EXPORT_BATCH = 512

_PREDICTION, _FEEDBACK = 0, 1
_SUCCESS = PredictionOutcome.SUCCESS


class InferenceLogCounts:
    """Records written by destination and dropped by reason: plain integers, read at collection."""

    def __init__(self, model: Mapping[str, str]) -> None:
        self._lock = threading.Lock()
        self._written = dict.fromkeys(il.DESTINATIONS, 0)
        self._dropped = dict.fromkeys(il.DROP_REASONS, 0)
        self._written_attributes = {d: {**model, INFERENCE_LOG_DESTINATION: d} for d in il.DESTINATIONS}
        self._dropped_attributes = {r: {**model, ERROR_TYPE: r} for r in il.DROP_REASONS}

    def written(self, destination: str, records: int) -> None:
        if records:
            with self._lock:
                self._written[destination] += records

    def dropped(self, reason: str, records: int = 1) -> None:
        if records:
            with self._lock:
                self._dropped[reason] += records

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self._written), dict(self._dropped)

    def register(self, meter: Meter) -> None:
        meter.create_observable_counter(
            INFERENCE_LOG_RECORDS, [self._observe_written], unit="{record}",
            description="Inference log records written, by destination.")
        meter.create_observable_counter(
            INFERENCE_LOG_DROPPED, [self._observe_dropped], unit="{record}",
            description="Inference log records dropped, by reason.")

    def _observe_written(self, _options: CallbackOptions) -> list[Observation]:
        written, _ = self.snapshot()
        return [Observation(n, self._written_attributes[d]) for d, n in written.items()]

    def _observe_dropped(self, _options: CallbackOptions) -> list[Observation]:
        _, dropped = self.snapshot()
        return [Observation(n, self._dropped_attributes[r]) for r, n in dropped.items()]


class RecordExporter(Protocol):
    """The OTLP side of the log (:class:`inferwatch.proxy.telemetry.InferenceLogExporter`): sends
    (time ns, trace id, span id, record, JSON text) tuples and says whether they arrived."""

    def export(self, records: Sequence[tuple[int, int, int, dict, str]]) -> bool: ...

    def shutdown(self) -> None: ...


def build_inference_log(settings: Settings, model: tuple[str, str], counts: InferenceLogCounts,
                  exporter: RecordExporter | None = None) -> InferenceLog | None:
    """The inference log the settings ask for, or None when it is off (no directory, no export)."""
    if not settings.payload_log_dir and exporter is None:
        return None
    key = Path(settings.payload_log_key_file).read_bytes().strip() if settings.payload_log_key_file else None
    redactor = Redactor(redaction_rules(settings.payload_log_redact), mask_kinds(settings.payload_log_mask), key)
    files = (RollingFiles(settings.payload_log_dir, settings.payload_log_file_bytes,
                          settings.payload_log_file_age) if settings.payload_log_dir else None)
    return InferenceLog(model=model, counts=counts, sample=il.Sample(settings.payload_log_sample),
                        failures=settings.payload_log_failures, redactor=redactor, files=files, exporter=exporter,
                        capacity=settings.payload_log_queue)


class InferenceLog:
    """The hook the predictor and the feedback endpoint call, and the writer behind it."""

    def __init__(self, *, model: tuple[str, str], counts: InferenceLogCounts, sample: il.Sample,
                 failures: bool = True, redactor: Redactor | None = None, files: RollingFiles | None = None,
                 exporter: RecordExporter | None = None, capacity: int = 10_000,
                 max_queued_bytes: int = MAX_QUEUED_BYTES, flush_interval: float = FLUSH_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._model = model
        self._counts = counts
        self._sample = sample
        self._failures = failures
        self._redactor = redactor or Redactor(masks=())
        self._files = files
        self._capacity = capacity
        self._max_queued_bytes = max_queued_bytes
        self._interval = flush_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._stopping = threading.Event()
        self._export = _ExportThread(exporter, counts) if exporter is not None else None
        self._thread = threading.Thread(target=self._run, name="inferwatch-inference-log", daemon=True)
        self._thread.start()

    # -- the request path -----------------------------------------------------------------------

    def record(self, prediction: PredictionRequest | None, request_id: str, fmt: InputFormat, response: Response,
               outcome: PredictionOutcome, latency_s: float, model_time_s: float | None) -> None:
        """Queue a prediction's record if it is in the sample (or failed). Never raises."""
        try:
            sampled = self._sample.keeps(request_id)
            if not sampled and (outcome is _SUCCESS or not self._failures):
                return
            context = trace.get_current_span().get_span_context()
            answer = response.get_data()
            size = len(answer) + (len(prediction.body) if prediction is not None else 0)
            self._put(_PREDICTION, size, (
                self._clock(), request_id, context.trace_id, context.span_id, prediction, fmt,
                response.status_code, answer, response.content_type or "", outcome, latency_s, model_time_s,
                sampled))
        except Exception:  # noqa: BLE001 - the log never breaks a prediction
            log.exception("inference log: recording a prediction failed")

    def feedback(self, request_id: str, labels: list, predictions: list) -> None:
        """Queue the record of accepted feedback, if its prediction is in the sample. Never raises."""
        try:
            if not self._sample.keeps(request_id):
                return
            context = trace.get_current_span().get_span_context()
            self._put(_FEEDBACK, 0, (self._clock(), request_id, context.trace_id, context.span_id, labels, predictions))
        except Exception:  # noqa: BLE001 - the log never breaks a request
            log.exception("inference log: recording feedback failed")

    def _put(self, kind: int, size: int, entry: tuple) -> None:
        with self._lock:
            if len(self._queue) < self._capacity and self._queued_bytes + size <= self._max_queued_bytes:
                self._queue.append((kind, entry))
                self._queued_bytes += size
                return
        self._counts.dropped(il.QUEUE_FULL)

    # -- the writer -----------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, close the files, flush the export; then the log takes no more."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._export is not None:
            self._export.close(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._flush_safely()
        self._flush_safely()
        if self._files is not None:
            self._files.close()

    def _flush_safely(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - a bug here must not stop the writer
            log.exception("inference log: writing failed")

    def flush(self) -> None:
        """Take the queue and write it (the writer thread does this every interval)."""
        with self._lock:
            batch, self._queue, self._queued_bytes = self._queue, deque(), 0
        now = self._clock()
        if self._files is not None:
            self._files.tick(now)
        if not batch:
            return
        built = [record for record in map(self._build, batch) if record is not None]
        if self._files is not None and built:
            lines = [text.encode("utf-8", "backslashreplace") + b"\n" for _, _, _, _, text in built]
            written = self._files.write(lines, now)
            self._counts.written(il.FILE, written)
            self._counts.dropped(il.WRITE_ERROR, len(lines) - written)
        if self._export is not None and built:
            self._export.put(built)

    def _build(self, item: tuple) -> tuple[int, int, int, dict, str] | None:
        kind, entry = item
        try:
            if kind == _PREDICTION:
                record = prediction_record(entry, self._model, self._redactor)
            else:
                record = feedback_record(entry, self._model, self._redactor)
            return int(entry[0] * 1e9), entry[2], entry[3], record, encode(record)
        except Exception:  # noqa: BLE001 - one bad record is dropped and counted, the rest go on
            log.exception("inference log: building a record failed")
            self._counts.dropped(il.ENCODE_ERROR)
            return None


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)


def encode(record: dict) -> str:
    """The record as one line of JSON (no newline); NaN and infinities become null."""
    try:
        return _JSON.encode(record)
    except ValueError:  # a NaN or an infinity somewhere: rare, so looked for only then
        return _JSON.encode(_finite(record))


def _finite(value):
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k: _finite(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_finite(v) for v in value]
    return value


class _ExportThread:
    """OTLP export on a thread of its own, with a bounded queue of its own."""

    def __init__(self, exporter: RecordExporter, counts: InferenceLogCounts) -> None:
        self._exporter = exporter
        self._counts = counts
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inferwatch-inference-log-export", daemon=True)
        self._thread.start()

    def put(self, records: list) -> None:
        with self._lock:
            taken = records[:MAX_EXPORT_QUEUE - len(self._queue)]
            self._queue.extend(taken)
        self._counts.dropped(il.EXPORT_ERROR, len(records) - len(taken))
        self._ready.set()

    def close(self, timeout: float) -> None:
        self._stopping = True
        self._ready.set()
        self._thread.join(timeout)
        try:
            self._exporter.shutdown()
        except Exception:  # noqa: BLE001 - shutting down goes on
            log.exception("inference log: the OTLP exporter failed to shut down")

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            while True:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(EXPORT_BATCH, len(self._queue)))]
                if not batch:
                    break
                self._send(batch)
            if self._stopping:
                return

    def _send(self, batch: list) -> None:
        try:
            delivered = self._exporter.export(batch)
        except Exception:  # noqa: BLE001 - an exporter bug counts as a failed export
            log.exception("inference log: the OTLP export failed")
            delivered = False
        if delivered:
            self._counts.written(il.OTLP, len(batch))
        else:
            self._counts.dropped(il.EXPORT_ERROR, len(batch))
