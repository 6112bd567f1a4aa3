"""Inference log records built from a prediction as the proxy saw it (on the writer's thread).

:func:`inputs_of` reads a :class:`~inferwatch.proxy.prediction.PredictionRequest` into the
record's ``inputs`` and ``params`` (see :mod:`inferwatch.contract.inference_log` for the format):

* tabular input becomes columns, ``{"column": [value per row]}``, whichever way it came:
  ``dataframe_split`` (unnamed columns are named by position, ``"0"``, ``"1"``, ...),
  ``dataframe_records`` and ``instances``/``inputs`` given as records (a column a record lacks is
  ``null`` there), ``instances``/``inputs`` given as columns by name, CSV (a column whose every
  value is a number becomes numbers, as pandas reads it) and Parquet (with pyarrow);
* tensors given as lists (of lists) stay as they were sent;
* rows that do not read as a table (a ragged ``dataframe_split``, records mixed with lists) give
  ``inputs: null``: a redacted column could not be found in them;
* chat ``messages``, a completion's ``prompt`` and an embedding's ``input`` are the inputs, the
  body's other keys (``temperature``, ``max_tokens``, ...) the params;
* a JSON object of no known format is kept whole, so a rejected request can be read; a body that
  is not JSON, or Parquet without pyarrow, has ``inputs: null``.

:func:`answer_of` reads the answer: the ``predictions`` of a tabular model's answer (or the
answer itself when it is not wrapped), a GenAI answer's whole document, and a failure's message.
Nothing here raises for a body it cannot read: the field is ``null``.
"""

from __future__ import annotations

import csv
import io
import time

from inferwatch.contract import inference_log as il
from inferwatch.contract.inputs import InputFormat
from inferwatch.proxy import json_body
from inferwatch.proxy.prediction import PredictionRequest, pyarrow_parquet

# A failure's message is kept up to this many characters.
MAX_ERROR_CHARS = 1024
_MISSING = None


def utc_time(seconds: float, _last: list = [-1, ""]) -> str:  # noqa: B006 - the one-entry cache of the second
    """RFC 3339 in UTC with microseconds (fixed width, so the strings sort as the times do)."""
    whole = int(seconds)
    if _last[0] != whole:  # records come many to a second: the date part is formatted once per second
        _last[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_last[1]}.{int((seconds - whole) * 1e6):06d}Z"


def inputs_of(prediction: PredictionRequest | None) -> tuple[object, object, bool]:
    """(inputs, params, whether the inputs are columns) of a prediction request; inputs and
    params are None where they cannot be read."""
    if prediction is None:
        return None, None, False
    fmt = prediction.format
    if fmt is InputFormat.CSV:
        columns = _csv_columns(prediction.body)
        return columns, None, columns is not None
    if fmt is InputFormat.PARQUET:
        columns = _parquet_columns(prediction.body)
        return columns, None, columns is not None
    payload = prediction.payload
    if payload is None:
        return None, None, False
    if fmt is InputFormat.OTHER:
        return payload, None, False
    if fmt.is_llm:
        key = LLM_INPUT_KEYS[fmt]
        params = {k: v for k, v in payload.items() if k != key}
        return payload.get(key), params or None, False
    inputs = _tabular(fmt, payload[fmt.value])
    return inputs, payload.get("params"), type(inputs) is dict


LLM_INPUT_KEYS = {InputFormat.CHAT: "messages", InputFormat.COMPLETIONS: "prompt", InputFormat.EMBEDDINGS: "input"}


def _tabular(fmt: InputFormat, data: object) -> object:
    """Columns where the rows read as a table; tensors as sent; None for a table that does not
    read (its values have no column to be redacted by)."""
    if fmt is InputFormat.DATAFRAME_SPLIT:
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            rows = data["data"]
            names = data.get("columns")
            if not isinstance(names, list):
                width = len(rows[0]) if rows and isinstance(rows[0], list) else 0
                names = [str(i) for i in range(width)]
            if not rows:
                return {str(name): [] for name in names}
            if set(map(type, rows)) == {list} and set(map(len, rows)) == {len(names)}:
                return dict(zip(map(str, names), map(list, zip(*rows))))
        return None
    if isinstance(data, list) and data and all(type(row) is dict for row in data):
        return _records(data)
    if fmt is InputFormat.DATAFRAME_RECORDS:
        return None
    if isinstance(data, dict):
        lists = [v for v in data.values() if type(v) is list]
        if not lists:  # one row given as an object of scalars
            return {name: [value] for name, value in data.items()}
        if len(lists) == len(data):  # columns (or named tensors) by name
            return data
        return None
    return data  # a tensor: a list of lists, or of scalars


def _records(rows: list[dict]) -> dict[str, list]:
    names = dict.fromkeys(name for row in rows for name in row)
    return {name: [row.get(name, _MISSING) for row in rows] for name in names}


def _csv_columns(body: bytes) -> dict[str, list] | None:
    try:
        lines = [row for row in csv.reader(io.StringIO(body.decode("utf-8-sig"))) if row]
    except (UnicodeDecodeError, csv.Error):
        return None
    if not lines:
        return None
    header, rows = lines[0], lines[1:]
    if not all(len(row) == len(header) for row in rows):
        return None
    return {name: _csv_column([row[j] for row in rows]) for j, name in enumerate(header)}


def _csv_column(texts: list[str]) -> list:
    """Numbers when every non-empty value is one (ints when all are), else the text; empty is null."""
    present = [text for text in texts if text != ""]
    for kind in (int, float):
        try:
            numbers = [kind(text) for text in present]
        except ValueError:
            continue
        values = iter(numbers)
        return [next(values) if text != "" else None for text in texts]
    return [text if text != "" else None for text in texts]


def _parquet_columns(body: bytes) -> dict[str, list] | None:
    parquet = pyarrow_parquet()
    if parquet is None:
        return None
    try:
        return parquet.read_table(io.BytesIO(body)).to_pydict()
    except Exception:  # noqa: BLE001 - not Parquet: MLflow answered it
        return None


def answer_of(fmt: InputFormat, status: int, body: bytes, content_type: str) -> tuple[object, str | None]:
    """(predictions, error message) of an answer."""
    document = None
    if content_type.startswith("application/json"):
        try:
            document = json_body.loads(body)
        except ValueError:
            document = None
    if status == 200:
        if isinstance(document, dict) and not fmt.is_llm and "predictions" in document:
            return document["predictions"], None
        return document, None
    return None, _error_message(document, body)


def _error_message(document: object, body: bytes) -> str:
    message = None
    if isinstance(document, dict):
        error = document.get("error")
        message = error.get("message") if isinstance(error, dict) else document.get("message")
    if not isinstance(message, str):
        message = body.decode("utf-8", "replace")
    return message[:MAX_ERROR_CHARS]


def _header(kind: str, created: float, request_id: str, trace_id: int, span_id: int,
            model: tuple[str, str]) -> dict:
    """The fields every record starts with: what it is, when, which request and trace, which model."""
    return {
        "kind": kind,
        "schema": il.SCHEMA_VERSION,
        "time": utc_time(created),
        "request_id": request_id,
        "trace_id": format(trace_id, "032x") if trace_id else None,
        "span_id": format(span_id, "016x") if span_id else None,
        "model": model[0],
        "model_version": model[1],
    }


def prediction_record(entry: tuple, model: tuple[str, str], redactor) -> dict:
    """The record of one prediction from the request path's entry (see InferenceLog.record)."""
    (created, request_id, trace_id, span_id, prediction, fmt, status, answer, content_type, outcome,
     latency_s, model_time_s, sampled) = entry
    inputs, params, columns = inputs_of(prediction)
    predictions, error = answer_of(fmt, status, answer, content_type)
    inputs = redactor.columns(inputs) if columns else redactor.value(inputs)
    return {
        **_header(il.PREDICTION, created, request_id, trace_id, span_id, model),
        "format": fmt.value,
        "rows": prediction.rows if prediction is not None else None,
        "inputs": inputs,
        "params": redactor.value(params),
        "predictions": redactor.value(predictions),
        "error": redactor.text(error) if error is not None else None,
        "outcome": outcome.value,
        "status": status,
        "latency_s": round(latency_s, 6),
        "model_time_s": round(model_time_s, 6) if model_time_s is not None else None,
        "sampled": sampled,
    }


def feedback_record(entry: tuple, model: tuple[str, str], redactor) -> dict:
    """The record of one accepted feedback (see InferenceLog.feedback)."""
    created, request_id, trace_id, span_id, labels, predictions = entry
    return {
        **_header(il.FEEDBACK, created, request_id, trace_id, span_id, model),
        "labels": redactor.value(labels),
        "predictions": redactor.value(predictions),
    }
