"""One prediction request, read once: what goes to MLflow and what every observer of it reads.

:func:`read_prediction` turns a body and its ``Content-Type`` into a :class:`PredictionRequest`:
the body and content type exactly as the client sent them (they are forwarded unchanged), the
input format (:class:`~inferwatch.contract.inputs.InputFormat`), the rows where the format has
rows, and the parsed JSON body, parsed here once for the quality metrics, the feedback token and
anything else that observes the prediction.

MLflow's scoring server is the judge of its input. The proxy parses a body to observe it, never
to gatekeep it: a body it does not recognise is labelled ``other`` and forwarded, and MLflow
answers it. It refuses only what would hurt itself or make MLflow fail rather than answer
(:func:`read_prediction` raises :class:`~inferwatch.proxy.errors.ProxyError` for those):

* an empty body (MLflow answers every empty body 400);
* JSON nested deeper than the proxy's parser goes (:mod:`~inferwatch.proxy.json_body`: 1,024
  levels), or an integer of more digits than Python converts (MLflow's own parser raises on both,
  and MLflow answers 500 instead of a client error).

Malformed JSON (not JSON, not UTF-8/16/32) is *not* refused here: it is forwarded and MLflow
answers its 400; :attr:`PredictionRequest.malformed` tells the outcome to call that 400
``invalid_json``. The content type is read the way MLflow reads it (``type; charset=utf-8``, the
type compared exactly); a type or parameter MLflow does not take is forwarded for MLflow's 415.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from inferwatch.contract.inputs import CSV, JSON, LLM_KEYS, PARQUET, TABULAR_KEYS, InputFormat
from inferwatch.proxy import errors, json_body

# The charset MLflow reads (it answers 415 for any other).
UTF8 = "utf-8"


@dataclass(frozen=True, slots=True)
class PredictionRequest:
    """A prediction request as the proxy read it; forwarded as ``body`` and ``content_type``."""

    body: bytes
    content_type: str
    format: InputFormat
    # Rows of a tabular or tensor input; None where the format has none (LLM input) or they
    # cannot be known (a body MLflow will refuse).
    rows: int | None = None
    # The parsed JSON body (a dict) of a JSON format; None for CSV, Parquet and unreadable bodies.
    payload: dict | None = None
    # A JSON body that is not JSON: MLflow answers it 400, counted as invalid_json.
    malformed: bool = False
    request_id: str = ""


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The media type and parameters as MLflow's scoring server splits them (case kept for the
    type, which it compares exactly; parameter names as written, the charset value lowered)."""
    parts = [part.strip() for part in content_type.split(";")]
    parameters = {}
    for pair in parts[1:]:
        key, _, value = pair.partition("=")
        parameters[key] = value
    return parts[0], parameters


def accepted_by_mlflow(parameters: dict[str, str]) -> bool:
    """MLflow answers 415 unless the only parameter is a UTF-8 charset."""
    return set(parameters) <= {"charset"} and parameters.get("charset", UTF8).lower() == UTF8


def format_of_content_type(content_type: str) -> InputFormat | None:
    """The format a content type alone decides: CSV, Parquet, OTHER; None for JSON (the body says)."""
    kind, parameters = media_type(content_type)
    if not accepted_by_mlflow(parameters):
        return InputFormat.OTHER
    if kind == JSON:
        return None
    return {CSV: InputFormat.CSV, PARQUET: InputFormat.PARQUET}.get(kind, InputFormat.OTHER)


def read_prediction(body: bytes, content_type: str, request_id: str = "") -> PredictionRequest:
    """Recognise a prediction request (see the module docstring for what raises)."""
    if not body:
        raise errors.invalid_input("request body is empty")
    fmt = format_of_content_type(content_type)
    if fmt is InputFormat.CSV:
        return PredictionRequest(body, content_type, fmt, _csv_rows(body), request_id=request_id)
    if fmt is InputFormat.PARQUET:
        return PredictionRequest(body, content_type, fmt, parquet_rows(body), request_id=request_id)
    if fmt is InputFormat.OTHER:
        return PredictionRequest(body, content_type, fmt, request_id=request_id)
    try:
        payload = json_body.loads(body)  # bytes: UTF-8, -16 or -32 with or without a BOM, as MLflow reads them
    except (json.JSONDecodeError, UnicodeDecodeError):
        return PredictionRequest(body, content_type, InputFormat.OTHER, malformed=True, request_id=request_id)
    except RecursionError:
        raise errors.invalid_json("the JSON is nested too deeply") from None
    except ValueError as error:  # an integer beyond Python's digit limit
        raise errors.invalid_json(str(error)) from None
    if not isinstance(payload, dict):
        return PredictionRequest(body, content_type, InputFormat.OTHER, request_id=request_id)
    fmt = json_format(payload)
    return PredictionRequest(body, content_type, fmt, json_rows(fmt, payload), payload, request_id=request_id)


def json_format(payload: dict) -> InputFormat:
    """The format of a JSON object, decided as MLflow decides it: any unified LLM key makes it
    LLM input; otherwise exactly one tabular key; otherwise MLflow refuses it (``other``)."""
    for key, fmt in LLM_KEYS:
        if key in payload:
            return fmt
    found = [fmt for key, fmt in TABULAR_KEYS.items() if key in payload]
    return found[0] if len(found) == 1 else InputFormat.OTHER


def json_rows(fmt: InputFormat, payload: dict) -> int | None:
    """Rows of a tabular or tensor JSON input; None where there are none or they are unclear."""
    if fmt.is_llm or fmt is InputFormat.OTHER:
        return None
    data = payload[fmt.value]
    if fmt is InputFormat.DATAFRAME_SPLIT:
        data = data.get("data") if isinstance(data, dict) else None
        return len(data) if isinstance(data, list) else None
    if fmt is InputFormat.DATAFRAME_RECORDS:
        return len(data) if isinstance(data, list) else None
    if isinstance(data, dict):  # tensors by name: rows are the first dimension
        data = next(iter(data.values()), None)
    return len(data) if isinstance(data, list) else 1


def _csv_rows(body: bytes) -> int:
    """Lines after the header (a last line without its newline counts too)."""
    return max(body.count(b"\n", 0, len(body) - 1), 0)


def parquet_rows(body: bytes) -> int | None:
    """Rows in a Parquet body's footer, when pyarrow is installed (it reads the footer only)."""
    parquet = pyarrow_parquet()
    if parquet is None:
        return None
    try:
        return parquet.read_metadata(io.BytesIO(body)).num_rows
    except Exception:  # noqa: BLE001 - not Parquet: MLflow answers it
        return None


_PARQUET_MODULE: list = []


def pyarrow_parquet():
    """``pyarrow.parquet``, imported once on first use, or None without pyarrow."""
    if not _PARQUET_MODULE:
        try:
            import pyarrow.parquet as parquet
        except ImportError:
            parquet = None
        _PARQUET_MODULE.append(parquet)
    return _PARQUET_MODULE[0]
