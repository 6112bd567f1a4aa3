"""The inference log's record format and sampling rule, shared by the proxy that writes the
records (:mod:`inferwatch.proxy.inference_log`) and the tools that read them (``inferwatch logs``).

A record is one JSON object (a line of a ``.jsonl`` file, or the string body of an OTLP log
record). Every record has every field of its kind, ``null`` when it does not apply, so a reader
(pandas among them) sees one schema:

``kind: "prediction"``
    ``time`` (RFC 3339 UTC, microseconds), ``request_id`` (the answer's ``X-Request-Id``),
    ``trace_id``, ``span_id`` (the server span, 32 and 16 hex digits), ``model``,
    ``model_version``, ``format`` (the input format, e.g. ``dataframe_split``, ``chat``),
    ``rows``, ``inputs`` (tabular input as columns, ``{"column": [value per row]}``; chat
    messages, a prompt or an embedding input as the client sent them; tensors as sent),
    ``params``, ``predictions`` (the answer's ``predictions``; a GenAI answer's whole document),
    ``error`` (a failure's message), ``outcome`` (``success`` or the failure's reason),
    ``status``, ``latency_s`` (the proxy's handling, MLflow's call included), ``model_time_s``
    (the MLflow call alone), ``sampled`` (false for a failure logged outside the sample).
``kind: "feedback"``
    ``time``, ``request_id`` (the prediction's), ``trace_id``, ``span_id`` (the feedback
    request's), ``model``, ``model_version``, ``labels`` (one per row, ``null`` where unknown),
    ``predictions`` (what the feedback token says was predicted).

Sampling is decided by the request id alone (:class:`Sample`), so a request is in or out the
same way in every process, on every rerun, and for its feedback: a join of the two kinds loses no
label of a logged prediction.

Data and one pure function only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

import hashlib

SCHEMA_VERSION = 1

PREDICTION = "prediction"
FEEDBACK = "feedback"
KINDS = (PREDICTION, FEEDBACK)

PREDICTION_FIELDS = (
    "kind", "schema", "time", "request_id", "trace_id", "span_id", "model", "model_version", "format",
    "rows", "inputs", "params", "predictions", "error", "outcome", "status", "latency_s", "model_time_s",
    "sampled",
)
FEEDBACK_FIELDS = (
    "kind", "schema", "time", "request_id", "trace_id", "span_id", "model", "model_version", "labels",
    "predictions",
)

# Files the proxy writes: <FILE_PREFIX><UTC start>-<host>-<pid>-<sequence><FILE_SUFFIX>.
FILE_PREFIX = "inference-"
FILE_SUFFIX = ".jsonl"

# The OTLP log records' event names, and the attribute that says which kind a record is.
EVENT_NAMES = {PREDICTION: "inferwatch.inference.prediction", FEEDBACK: "inferwatch.inference.feedback"}

# Where records go (the ``destination`` label of inference_log_records_total).
FILE = "file"
OTLP = "otlp"
DESTINATIONS = (FILE, OTLP)
# Why records were dropped (the ``reason`` label of inference_log_dropped_total).
QUEUE_FULL = "queue_full"  # the queue between the requests and the writer was full
WRITE_ERROR = "write_error"  # a file could not be written (disk full, I/O error, permissions)
EXPORT_ERROR = "export_error"  # the OTLP export failed or could not keep up (collector down or slow)
ENCODE_ERROR = "encode_error"  # the record could not be built (a bug, logged)
DROP_REASONS = (QUEUE_FULL, WRITE_ERROR, EXPORT_ERROR, ENCODE_ERROR)

_HASH_SPACE = 1 << 64


class Sample:
    """A share (0 to 1) of all requests, chosen by request id.

    A request is in when the first 8 bytes of its id's BLAKE2b digest, read as an unsigned
    big-endian integer, fall below ``share * 2**64``: any tool can repeat the decision.
    """

    def __init__(self, share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a sample is a share between 0 and 1, not {share}")
        self.share = share
        self._everything = share >= 1.0
        self._limit = int(share * _HASH_SPACE)

    def keeps(self, request_id: str) -> bool:
        if self._everything:
            return True
        digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._limit
