"""``inferwatch logs``: read the inference log, tail and filter it, and export labelled rows.

It reads the proxy's own files (``inference-*.jsonl``, one record a line) and the collector's file
export of the OTLP records (OTLP JSON, one export request a line, each log record's body a
record), from any mix of directories and files: every ``*.jsonl`` of a directory. Lines cut short
by a killed writer are skipped and counted, never fatal.

::

    inferwatch logs [PATH ...] [--model NAME] [--model-version V] [--outcome success|failure|REASON]
                    [--kind prediction|feedback] [--since 15m|2026-12-05T10:00:00Z] [--until ...]
                    [-n 20] [--follow]
    inferwatch logs [PATH ...] --join-feedback labelled.parquet     # or labelled.csv

Without ``--join-feedback`` it prints the last ``-n`` matching records (0: all) as JSON lines,
oldest first, then with ``--follow`` every new one as it is written. ``--join-feedback`` writes
one row per labelled input row: the prediction's request id, time, model, version and trace id,
the row's number in its request, its input columns (a column named like one of those fields is
written as ``input.<name>``; inputs that are not columns as one JSON ``inputs`` column), the
model's prediction and the label. Parquet needs pyarrow (the ``parquet`` extra); both formats
read with ``pandas.read_parquet`` / ``pandas.read_csv``.

Without a PATH it reads ``$INFERWATCH_PAYLOAD_LOG_DIR``, else ``.run/inference-log`` (where
``inferwatch up`` routes them).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from inferwatch.contract.inference_log import FEEDBACK, FILE_SUFFIX, PREDICTION
from inferwatch.stack.traces import parse_since

DEFAULT_DIRECTORY = ".run/inference-log"
SUCCESS = "success"
FAILURE = "failure"  # --outcome failure: every outcome but success
ROW_FIELDS = ("request_id", "time", "model", "model_version", "trace_id", "row", "prediction", "label")
FOLLOW_POLL_S = 0.5


class LogReadError(ValueError):
    """An argument or a file the command cannot use; the message says which."""


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def log_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every file to read: the given files, and the ``*.jsonl`` of the given directories."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.glob("*" + FILE_SUFFIX))
        elif path.is_file():
            found.append(path)
        else:
            raise LogReadError(f"{path}: no such file or directory")
    return found


@dataclass
class Reader:
    """Reads the complete lines each file has gained since the last read."""

    paths: list[Path]
    offsets: dict[Path, int] = field(default_factory=dict)
    skipped: int = 0  # lines that are not JSON (cut short by a kill) or not records

    def read(self) -> list[dict]:
        records: list[dict] = []
        for path in log_files(self.paths):
            records += self._read_file(path)
        return records

    def _read_file(self, path: Path) -> list[dict]:
        start = self.offsets.get(path, 0)
        try:
            with open(path, "rb") as source:
                source.seek(start)
                data = source.read()
        except OSError:
            return []  # rotated away or removed between the listing and the read
        end = data.rfind(b"\n") + 1
        at_rest = end < len(data) and not self._growing(path, start + len(data))
        complete = data if at_rest else data[:end]  # a last line without newline: complete once the file is at rest
        self.offsets[path] = start + len(complete)
        records = []
        for line in complete.splitlines():
            if line.strip():
                parsed = parse_line(line)
                if parsed is None:
                    self.skipped += 1
                else:
                    records += parsed
        return records

    @staticmethod
    def _growing(path: Path, size: int) -> bool:
        """Whether a writer may still be finishing the file's last line (written in the last second)."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return stat.st_size != size or time.time() - stat.st_mtime < 1.0


def parse_line(line: bytes) -> list[dict] | None:
    """The records of one line: a record, or the bodies of an OTLP JSON export; None if it is neither."""
    try:
        document = json.loads(line)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    if "resourceLogs" in document:
        return list(_otlp_records(document))
    return [document] if document.get("kind") in (PREDICTION, FEEDBACK) else None


def _otlp_records(document: dict) -> Iterator[dict]:
    for resource in document.get("resourceLogs") or ():
        for scope in resource.get("scopeLogs") or ():
            for log_record in scope.get("logRecords") or ():
                body = (log_record.get("body") or {}).get("stringValue")
                try:
                    record = json.loads(body) if body else None
                except ValueError:
                    record = None
                if isinstance(record, dict) and record.get("kind") in (PREDICTION, FEEDBACK):
                    yield record


# ---------------------------------------------------------------------------------------------
# Filtering and printing
# ---------------------------------------------------------------------------------------------


def record_time(text: str, now: float | None = None) -> str:
    """A ``--since``/``--until`` value (a duration back from now, or an ISO 8601 time) in the
    records' own time format, so that times compare as strings."""
    try:
        seconds = (time.time() if now is None else now) - parse_since(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise LogReadError(f"{text!r} is neither a duration (15m, 2h) nor an ISO time (2026-12-05T10:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp()
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RecordFilter:
    model: str | None = None
    model_version: str | None = None
    outcome: str | None = None  # success, failure or a failure's reason
    kind: str | None = None
    since: str | None = None  # record time format
    until: str | None = None

    def __call__(self, record: dict) -> bool:
        if self.kind is not None and record.get("kind") != self.kind:
            return False
        if self.model is not None and record.get("model") != self.model:
            return False
        if self.model_version is not None and record.get("model_version") != self.model_version:
            return False
        if self.outcome is not None:
            outcome = record.get("outcome")
            if outcome is None or (outcome == SUCCESS) != (self.outcome == SUCCESS):
                return False
            if self.outcome not in (SUCCESS, FAILURE) and outcome != self.outcome:
                return False
        moment = record.get("time") or ""
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment <= self.until


def tail(reader: Reader, keep: RecordFilter, lines: int, out: TextIO) -> int:
    """Print the last ``lines`` matching records (0: all), oldest first; returns how many."""
    records = sorted(filter(keep, reader.read()), key=lambda r: r.get("time") or "")
    if lines:
        records = records[-lines:]
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    out.flush()
    return len(records)


def follow(reader: Reader, keep: RecordFilter, out: TextIO, poll_s: float = FOLLOW_POLL_S,
           until: float | None = None) -> None:
    """Print matching records as they are written, until interrupted (or ``until``, a monotonic time)."""
    while until is None or time.monotonic() < until:
        time.sleep(poll_s)
        for record in sorted(filter(keep, reader.read()), key=lambda r: r.get("time") or ""):
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# Labelled rows
# ---------------------------------------------------------------------------------------------


@dataclass
class Joined:
    rows: list[dict]
    predictions: int  # predictions with feedback
    unmatched: int  # feedback whose prediction is not in the log


def labelled_rows(records: Iterable[dict]) -> Joined:
    """One row per labelled input row: answered predictions joined with their latest feedback."""
    predictions: dict[str, dict] = {}
    feedback: dict[str, dict] = {}
    for record in records:
        request_id = record.get("request_id")
        if record.get("kind") == PREDICTION and record.get("outcome") == SUCCESS:
            predictions[request_id] = record
        elif record.get("kind") == FEEDBACK:
            latest = feedback.get(request_id)
            if latest is None or (record.get("time") or "") >= (latest.get("time") or ""):
                feedback[request_id] = record
    rows: list[dict] = []
    matched = 0
    for request_id, labels in sorted(feedback.items(), key=lambda item: item[1].get("time") or ""):
        prediction = predictions.get(request_id)
        if prediction is None:
            continue
        matched += 1
        rows += _rows_of(prediction, labels)
    return Joined(rows, matched, len(feedback) - matched)


def _rows_of(prediction: dict, feedback: dict) -> list[dict]:
    inputs = prediction.get("inputs")
    columns = inputs if isinstance(inputs, dict) and all(isinstance(v, list) for v in inputs.values()) else None
    answers = prediction.get("predictions")
    answers = answers if isinstance(answers, list) else feedback.get("predictions") or []
    rows = []
    for i, label in enumerate(feedback.get("labels") or ()):
        if label is None:
            continue
        row = {"request_id": prediction["request_id"], "time": prediction.get("time"), "model": prediction.get("model"),
               "model_version": prediction.get("model_version"), "trace_id": prediction.get("trace_id"), "row": i}
        if columns is not None:
            for name, values in columns.items():
                row[f"input.{name}" if name in ROW_FIELDS else name] = values[i] if i < len(values) else None
        else:
            row["inputs"] = inputs
        row["prediction"] = _scalar(answers[i]) if i < len(answers) else None
        row["label"] = label
        rows.append(row)
    return rows


def _scalar(value):
    """A per-row answer as a scalar: ``{"class": 1}`` and ``[1]`` are 1."""
    if type(value) is dict and len(value) == 1:
        return next(iter(value.values()))
    if type(value) is list and len(value) == 1:
        return value[0]
    return value


def _flat(value):
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def write_table(rows: list[dict], path: Path) -> None:
    """Write ``rows`` as Parquet (``.parquet``, ``.pq``) or CSV (``.csv``); nested values as JSON text."""
    names = list(dict.fromkeys(name for row in rows for name in row)) or list(ROW_FIELDS)
    columns = {name: [_flat(row.get(name)) for row in rows] for name in names}
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        _write_parquet(columns, path)
    elif suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(names)
            writer.writerows(zip(*columns.values()))
    else:
        raise LogReadError(f"{path}: write .parquet or .csv")


def _write_parquet(columns: dict[str, list], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as parquet
    except ImportError:
        raise LogReadError("Parquet needs pyarrow: pip install 'inferwatch[parquet]', or write .csv") from None
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: written as text
            arrays[name] = pa.array([None if v is None else str(v) for v in values])
    parquet.write_table(pa.table(arrays), path)


def run(paths: list[str], keep: RecordFilter, lines: int, follow_new: bool, join_feedback: str | None,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command: 0 on success, 2 for an argument or path it cannot use."""
    reader = Reader([Path(p) for p in paths])
    try:
        log_files(reader.paths)  # a missing path fails here, before anything is printed
        if join_feedback:
            joined = labelled_rows(filter(keep, reader.read()))
            write_table(joined.rows, Path(join_feedback))
            print(f"{len(joined.rows)} labelled rows from {joined.predictions} predictions written to "
                  f"{join_feedback}; {joined.unmatched} feedback records without their prediction in the log",
                  file=err)
            return 0
        tail(reader, keep, lines, out)
        if follow_new:
            follow(reader, keep, out)
    except LogReadError as error:
        print(f"inferwatch logs: {error}", file=err)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if reader.skipped:
            print(f"inferwatch logs: skipped {reader.skipped} lines that are not records (cut short?)", file=err)
    return 0
