"""Model quality on the request path: every answered row counted into the reference's bins.

For each prediction the :class:`QualityRecorder` reads the rows of the request body (already
parsed once by the predictor; CSV is parsed here), and

* counts each profiled feature's values into the profile's bins, and its missing values (null,
  NaN, an absent column);
* counts values that violate the model's signature, per column and kind: ``missing`` (a
  signature column the row lacks), ``wrong_type`` (a string where the signature says double,
  ...), ``unexpected`` (a column the signature does not have; all such columns share the column
  label ``__other__``, so names a client invents never become labels);
* counts each profiled feature's values that fail a data-quality check against the profile, per
  feature and issue: ``missing`` (null, NaN, absent), ``wrong_type`` (not a number in a numeric
  feature, not the signature's type, a list or object), ``below_min`` and ``above_max`` (outside
  the reference's range), ``unseen`` (a category the reference never had);
* counts the model's answers by class, or into the profile's bins for a regressor; when the
  profile says the answers carry class probabilities, reads them (the predicted class is the most
  probable, or the answer's class field) and has :mod:`inferwatch.proxy.estimation` count the
  expected confusion matrix;
* counts a body whose rows cannot be read (a tensor, a ragged table, LLM input to a model with a
  tabular profile, a body MLflow refuses) in ``model_input_unreadable_total{format}``: it steps
  aside and says so, and never fails or slows the request.

Every input format MLflow takes is read: the JSON formats from the body parsed once by
:mod:`inferwatch.proxy.prediction`, CSV here, Parquet with pyarrow when it is installed (without
it a Parquet body counts as unreadable). A model without a profile or signature reads nothing.

The counts live in plain integer lists under one lock and are read by observable counters at
collection time, so a request pays no OpenTelemetry call per bin: every series exists at 0 from
start-up, and its label values come only from the profile and the signature. A long, clean
numeric column is binned with numpy (``searchsorted``, ``bincount``); short or mixed columns
value by value with :func:`bisect.bisect_left`. Both follow :func:`inferwatch.contract.profile.numeric_bin`.

A large body's inputs are measured while MLflow computes its answer, not after: from
:data:`OVERLAP_BYTES` up, :meth:`AnswerObserver.before` hands the measuring to a helper thread as
the MLflow call starts (the request thread then waits in the socket, the interpreter lock free),
and :meth:`AnswerObserver.after` adds the result once the answer is in. There are as many helpers
as request threads, so a helper is never waited for by a request that did not ask for it. A
smaller body is measured after the answer, in the request thread: handing it over would cost
more than it hides.

Input bins, missing values and answers are counted for answered predictions only (rows the
model scored); rows, violations, data-quality issues and unreadable bodies for every request the
model was sent, answered or rejected, since a rejected request is where a violation shows.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from flask import Response
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from inferwatch.contract import metrics as mm
from inferwatch.contract.genai import OPERATIONS
from inferwatch.contract.inputs import InputFormat
from inferwatch.contract.profile import NUMERIC, NUMERIC_TYPES, OTHER, Distribution, Probabilities, category_key
from inferwatch.proxy import json_body
from inferwatch.proxy.estimation import PerformanceEstimator, ScoreReader, UnreadableScores, register_reference
from inferwatch.proxy.feedback import TOKEN_HEADER, FeedbackTokens
from inferwatch.proxy.model import ModelIdentity
from inferwatch.proxy.prediction import PredictionRequest, pyarrow_parquet

log = logging.getLogger(__name__)

MISSING_COLUMN = "missing"
WRONG_TYPE = "wrong_type"
UNEXPECTED = "unexpected"
# The model's answer could not be read (not {"predictions": [...]} of scalars).
ANSWER_FORMAT = "answer"
UNREADABLE_FORMATS = (*(fmt.value for fmt in InputFormat), ANSWER_FORMAT)
# Bodies from this size up are measured while MLflow computes (about 1,500 rows of eight columns:
# some 2 ms of counting, against some 0.05 ms for handing it to a helper thread and back).
OVERLAP_BYTES = 64 * 1024
# Columns at least this long go through numpy; below it, per-value code is faster.
VECTORISE_FROM_ROWS = 32

# Data-quality issues of a feature's values (model_input_issue_total{issue}).
MISSING_VALUE = "missing"
BELOW_MIN = "below_min"
ABOVE_MAX = "above_max"
UNSEEN = "unseen"

_ABSENT = object()  # a row without the column (records, columnar inputs)
_NUMBERS = frozenset((int, float))
_CONTAINERS = (list, dict)
_SCALARS = frozenset((int, float, str, bool, type(None)))
_NO_LOW, _NO_HIGH = float("-inf"), float("inf")


def _no_pause() -> None:
    """Measuring on the request thread: nothing to hand over."""


class Unreadable(ValueError):
    """The body's rows cannot be read for the quality metrics."""


@dataclass
class Columns:
    """The rows of one request, column by column (only the columns the recorder checks)."""

    rows: int
    values: dict[str, list] = field(default_factory=dict)
    # column -> rows that lack it entirely
    absent: dict[str, int] = field(default_factory=dict)
    # values in columns the signature does not have
    unexpected: int = 0


# ---------------------------------------------------------------------------------------------
# Reading the rows of every MLflow input format
# ---------------------------------------------------------------------------------------------


def read_columns(payload: dict, fmt: InputFormat, wanted: Sequence[str], positional: Sequence[str],
                 known: frozenset[str] | None, pause: Callable[[], None] = _no_pause) -> Columns:
    """The ``wanted`` columns of a parsed JSON body of a tabular or tensor ``fmt``;
    :class:`Unreadable` when its rows cannot be read. ``pause`` is called after each column
    taken out of rows (see :meth:`QualityRecorder.measure`).

    ``positional`` names the columns of rows given as lists when the model has no signature;
    ``known`` is the signature's column set (None: no signature, nothing is unexpected). With a
    signature, rows given as lists have no column names, as MLflow sees them: every signature
    column is missing and every value unexpected.
    """
    key = fmt.value
    data = payload[key]
    if fmt is InputFormat.DATAFRAME_SPLIT:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise Unreadable("dataframe_split without a data list")
        if "columns" not in data:
            return _unnamed(data["data"], positional, wanted, known)
        names = data["columns"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Unreadable("dataframe_split columns are not a list of names")
        return _table(data["data"], names, wanted, known, pause)
    if fmt is InputFormat.DATAFRAME_RECORDS:
        if not isinstance(data, list):
            raise Unreadable("dataframe_records is not a list")
        return _records(data, wanted, known, pause)
    # instances / inputs: rows as objects, rows as lists, one column of scalars, or columns by name
    if isinstance(data, dict):
        return _columnar(data, wanted, known)
    if not isinstance(data, list):
        raise Unreadable(f"{key} is neither a list nor an object")
    if data and all(type(row) is dict for row in data):
        return _records(data, wanted, known, pause)
    if data and all(type(row) is list for row in data):
        return _unnamed(data, positional, wanted, known)
    if len(positional) == 1 and not any(type(v) in (list, dict) for v in data):
        return _unnamed([[v] for v in data], positional, wanted, known)
    raise Unreadable(f"{key} rows are neither objects nor lists")


def _unnamed(data: list, positional: Sequence[str], wanted: Sequence[str], known: frozenset[str] | None) -> Columns:
    """Rows as lists: in ``positional`` order without a signature; unnamed columns with one."""
    if known is None:
        if not positional:
            raise Unreadable("rows as lists, and no column order known (no signature, no profile columns)")
        return _table(data, positional, wanted, known)
    if not all(type(row) is list for row in data):
        raise Unreadable("rows are not all lists")
    return Columns(len(data), absent={name: len(data) for name in wanted}, unexpected=sum(map(len, data)))


def _table(data: list, names: Sequence[str], wanted: Sequence[str], known: frozenset[str] | None,
           pause: Callable[[], None] = _no_pause) -> Columns:
    if not all(type(row) is list and len(row) == len(names) for row in data):
        raise Unreadable("rows are not lists as long as the column names")
    columns = Columns(len(data))
    index = {name: i for i, name in enumerate(names)}
    for name in wanted:
        j = index.get(name)
        if j is None:
            columns.absent[name] = len(data)
        else:
            columns.values[name] = [row[j] for row in data]
            pause()
    if known is not None:
        columns.unexpected = sum(name not in known for name in names) * len(data)
    return columns


def _records(data: list, wanted: Sequence[str], known: frozenset[str] | None,
             pause: Callable[[], None] = _no_pause) -> Columns:
    if not all(type(row) is dict for row in data):
        raise Unreadable("records are not all objects")
    columns = Columns(len(data))
    for name in wanted:
        values = [row.get(name, _ABSENT) for row in data]
        absent = values.count(_ABSENT)
        if absent:
            columns.absent[name] = absent
        columns.values[name] = values
        pause()
    if known is not None:
        columns.unexpected = sum(len(row.keys() - known) for row in data)
    return columns


def _columnar(data: dict, wanted: Sequence[str], known: frozenset[str] | None) -> Columns:
    lists = [v for v in data.values() if type(v) is list]
    rows = len(lists[0]) if lists else 1
    if any(len(v) != rows for v in lists) or (lists and len(lists) != len(data)):
        raise Unreadable("columns by name are not lists of one length")
    columns = Columns(rows)
    for name in wanted:
        if name not in data:
            columns.absent[name] = rows
        else:
            columns.values[name] = data[name] if lists else [data[name]]
    if known is not None:
        columns.unexpected = sum(name not in known for name in data) * rows
    return columns


def read_csv_columns(body: bytes, wanted: Sequence[str], numeric: frozenset[str],
                     known: frozenset[str] | None) -> Columns:
    """Like :func:`read_columns` for a ``text/csv`` body (a header line, then rows).

    Values of ``numeric`` columns become floats (an empty field is missing; text that is not a
    number stays text, a wrong type); other values stay text.
    """
    try:
        lines = [row for row in csv.reader(io.StringIO(body.decode("utf-8"))) if row]
    except (UnicodeDecodeError, csv.Error) as error:
        raise Unreadable(f"not CSV: {error}") from None
    if not lines:
        raise Unreadable("CSV without a header")
    columns = _table(lines[1:], lines[0], wanted, known)
    for name, values in columns.values.items():
        columns.values[name] = [_csv_number(v) for v in values] if name in numeric else [v if v else None for v in values]
    return columns


def read_parquet_columns(body: bytes, wanted: Sequence[str], known: frozenset[str] | None) -> Columns:
    """Like :func:`read_columns` for a Parquet body: the wanted columns only are decoded."""
    parquet = pyarrow_parquet()
    if parquet is None:
        raise Unreadable("Parquet needs pyarrow, which is not installed")
    try:
        source = parquet.ParquetFile(io.BytesIO(body))
        names = source.schema_arrow.names
        present = [name for name in wanted if name in names]
        table = source.read(columns=present)
    except Exception as error:  # noqa: BLE001 - not Parquet: MLflow answers it
        raise Unreadable(f"not Parquet: {error}") from None
    rows = table.num_rows
    columns = Columns(rows, values=table.to_pydict())
    for name in wanted:
        if name not in columns.values:
            columns.absent[name] = rows
    if known is not None:
        columns.unexpected = sum(name not in known for name in names) * rows
    return columns


def _csv_number(text: str) -> float | str | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def answer_rows(answer: bytes) -> list:
    """The list of per-row answers in a model's answer: ``{"predictions": [...]}``, a bare list, or
    an object of one list."""
    try:
        document = json_body.loads(answer)
    except ValueError:
        raise Unreadable("the answer is not JSON") from None
    values = document.get("predictions") if isinstance(document, dict) else document
    if isinstance(values, dict) and len(values) == 1:
        values = next(iter(values.values()))
    if not isinstance(values, list):
        raise Unreadable("the answer holds no list of predictions")
    return values


def read_predictions(answer: bytes) -> list:
    """The model's answers as scalars: ``{"predictions": [...]}`` (or a bare list) of scalars,
    one-key objects or one-element lists."""
    return scalar_predictions(answer_rows(answer))


def scalar_predictions(values: list) -> list:
    """Per-row answers as scalars (one-key objects and one-element lists unwrapped)."""
    if set(map(type, values)) <= _SCALARS:  # the usual answer: nothing to unwrap, no copy
        return values
    out = []
    for value in values:
        if type(value) is dict and len(value) == 1:
            value = next(iter(value.values()))
        elif type(value) is list and len(value) == 1:
            value = value[0]
        if type(value) in (list, dict):
            raise Unreadable("a prediction is not a scalar")
        out.append(value)
    return out


# ---------------------------------------------------------------------------------------------
# Counting values into bins
# ---------------------------------------------------------------------------------------------


# What counting one column gives: (count per bin, missing, wrong type, below the reference's
# minimum, above its maximum, unseen categories). A plain tuple: this runs for every column of
# every request.
Counted = tuple[list[int], int, int, int, int, int]


def numeric_counts(values: list, edges: Sequence[float], edges_array: np.ndarray,
                   low: float = _NO_LOW, high: float = _NO_HIGH) -> Counted:
    """One numeric column counted into its bins; missing values, non-numbers, and numbers below
    ``low`` or above ``high`` counted too (unseen: always 0)."""
    bins = len(edges) + 1
    if len(values) >= VECTORISE_FROM_ROWS and set(map(type, values)) <= _NUMBERS:
        try:
            array = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range: per value below
            pass
        else:
            nan = np.isnan(array)
            present = array[~nan]
            counts = np.bincount(np.searchsorted(edges_array, present, side="left"), minlength=bins)
            return counts.tolist(), int(nan.sum()), 0, int((present < low).sum()), int((present > high).sum()), 0
    counts = [0] * bins
    missing = wrong = below = above = 0
    for value in values:
        kind = type(value)
        if kind is float or kind is int:
            if value != value:  # NaN
                missing += 1
            else:
                counts[bisect_left(edges, value)] += 1
                if value < low:
                    below += 1
                elif value > high:
                    above += 1
        elif value is None or value is _ABSENT:
            missing += 1
        else:
            wrong += 1
    return counts, missing, wrong, below, above, 0


def categorical_counts(values: list, index: dict[str, int], other: int,
                       others: frozenset[str] | None = None) -> Counted:
    """One categorical column (or the classes) counted into its bins; values in the other bin
    that are none of ``others`` (the reference's other categories, when known) are unseen, lists
    and objects of the wrong type (below and above: always 0).

    A long column holds few distinct values (a 5,000-row batch's classes are two), so from
    ``VECTORISE_FROM_ROWS`` values up each distinct ``(type, value)`` is tallied first (in C) and
    looked up once (0.96 -> 0.49 ms for 5,000 classes): ``True``, ``1`` and ``1.0`` are equal in
    Python but different keys here, as their category keys differ. Shorter ones: one by one.
    """
    distinct = None
    if len(values) >= VECTORISE_FROM_ROWS:
        try:
            distinct = Counter(zip(map(type, values), values)).items()
        except TypeError:  # a list or an object among them (unhashable): one by one
            pass
    if distinct is None:
        distinct = [((type(value), value), 1) for value in values]
    counts = [0] * (other + 1)
    missing = wrong = unseen = 0
    for (kind, value), n in distinct:
        if value is None or value is _ABSENT or value != value:
            missing += n
            continue
        key = category_key(value)
        i = index.get(key, other)
        counts[i] += n
        if i == other:
            if kind in _CONTAINERS:
                wrong += n
            elif others is not None and key not in others:
                unseen += n
    return counts, missing, wrong, 0, 0, unseen


def wrong_type_count(values: list, column_type: str) -> int:
    """Values of a column that do not have the signature's type (missing values are not)."""
    if column_type in NUMERIC_TYPES:
        allowed: tuple = (int, float)
    elif column_type == "string":
        allowed = (str,)
    elif column_type == "boolean":
        allowed = (bool,)
    else:
        return 0
    return sum(1 for v in values if v is not None and v is not _ABSENT and type(v) not in allowed)


def quality_issues(distribution: Distribution) -> tuple[str, ...]:
    """The data-quality issues counted for a feature: what its profile makes checkable."""
    if distribution.kind == NUMERIC:
        bounded = distribution.minimum is not None
        return (MISSING_VALUE, WRONG_TYPE, *((BELOW_MIN, ABOVE_MAX) if bounded else ()))
    return (MISSING_VALUE, WRONG_TYPE, *((UNSEEN,) if distribution.other_categories is not None else ()))


@dataclass(frozen=True)
class _Binned:
    """A distribution with what counting into it needs, cached at start-up."""

    distribution: Distribution
    offset: int  # where its bins start in the recorder's flat list
    edges_array: np.ndarray | None = None
    index: dict[str, int] | None = None
    low: float = _NO_LOW
    high: float = _NO_HIGH
    others: frozenset[str] | None = None
    numeric: bool = False
    # Where (missing, wrong, below, above, unseen) go in the recorder's flat list of data-quality
    # issues (quality_issues' order); None: not counted for this feature.
    issue_indices: tuple[int | None, ...] = (None,) * 5

    @classmethod
    def of(cls, distribution: Distribution, offset: int, issues_offset: int = 0) -> _Binned:
        at = issues_offset
        if distribution.kind == NUMERIC:
            bounded = distribution.minimum is not None
            return cls(distribution, offset, edges_array=np.asarray(distribution.edges, dtype=np.float64),
                       low=distribution.minimum if bounded else _NO_LOW,
                       high=distribution.maximum if bounded else _NO_HIGH, numeric=True,
                       issue_indices=(at, at + 1, *((at + 2, at + 3) if bounded else (None, None)), None))
        others = distribution.other_categories
        return cls(distribution, offset, index={c: i for i, c in enumerate(distribution.categories)},
                   others=None if others is None else frozenset(others),
                   issue_indices=(at, at + 1, None, None, None if others is None else at + 2))

    def count(self, values: list) -> Counted:
        if self.numeric:
            return numeric_counts(values, self.distribution.edges, self.edges_array, self.low, self.high)
        return categorical_counts(values, self.index, len(self.distribution.categories), self.others)


# ---------------------------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------------------------


class InputCounts(NamedTuple):
    """What one request's inputs add to the quality counts (:meth:`QualityRecorder.measure`)."""

    violations: list[int]
    issues: list[tuple[int, int]]  # (issue index, count)
    features: list[tuple[int, list[int], int]]  # (feature index, bin counts, missing)
    unreadable: str | None  # the format, when the body's rows could not be read
    rows: int


class QualityRecorder:
    """Counts the quality metrics of one model; observable instruments read the counts."""

    def __init__(self, identity: ModelIdentity, meter: Meter):
        self.identity = identity
        profile = identity.profile
        self._model = identity.attributes
        self._features: list[_Binned] = []
        self._issue_keys: list[tuple[str, str]] = []  # (feature, issue)
        offset = 0
        for feature in profile.features if profile else ():
            self._features.append(_Binned.of(feature, offset, len(self._issue_keys)))
            offset += len(feature.shares)
            self._issue_keys += [(feature.name, issue) for issue in quality_issues(feature)]
        self._prediction = _Binned.of(profile.prediction, 0) if profile and profile.prediction else None
        probabilities = profile.probabilities if profile else None
        # Counts the expected confusion matrix of answers that carry class probabilities.
        self.estimator = PerformanceEstimator(probabilities, self._model, meter) if probabilities else None
        if profile is not None:
            register_reference(probabilities, profile.rows, self._model, meter)
        signature = identity.signature or ()
        self._signature_types = {column.name: column.type for column in signature}
        self._required = frozenset(column.name for column in signature if column.required)
        self._known = frozenset(self._signature_types) if identity.signature else None
        self._wanted = tuple(dict.fromkeys([*self._signature_types, *(f.distribution.name for f in self._features)]))
        self._feature_by_name = {f.distribution.name: (i, f) for i, f in enumerate(self._features)}
        self._numeric = frozenset(
            name for name in self._wanted
            if self._signature_types.get(name) in NUMERIC_TYPES
            or (name in self._feature_by_name and self._feature_by_name[name][1].distribution.kind == NUMERIC)
        )
        self._positional = identity.input_columns
        self._violation_keys = [(name, kind) for name in self._signature_types for kind in (MISSING_COLUMN, WRONG_TYPE)]
        if self._known is not None:
            self._violation_keys.append((OTHER, UNEXPECTED))
        self._violation_index = {key: i for i, key in enumerate(self._violation_keys)}
        self._formats = UNREADABLE_FORMATS
        self._format_index = {name: i for i, name in enumerate(self._formats)}

        self._lock = threading.Lock()
        self._rows = 0
        self._bins = [0] * offset
        self._missing = [0] * len(self._features)
        self._violations = [0] * len(self._violation_keys)
        self._issues = [0] * len(self._issue_keys)
        self._answers = [0] * (len(self._prediction.distribution.shares) if self._prediction else 0)
        self._unreadable = [0] * len(self._formats)
        self._register(meter)

    # -- the request path ---------------------------------------------------------------------

    @property
    def reads_answers(self) -> bool:
        return self._prediction is not None or self.estimator is not None

    @property
    def reads_inputs(self) -> bool:
        """Whether a request's rows are read at all (a profile or a signature names columns)."""
        return bool(self._wanted)

    def observe(self, prediction: PredictionRequest, answered: bool, predictions: list | None,
                measured: InputCounts | None = None) -> None:
        """Count one request (its inputs as ``measured`` already, else measured here); never raises
        (telemetry must not break a prediction)."""
        try:
            self._observe(prediction, answered, predictions, measured)
        except Exception:  # noqa: BLE001 - a bug here is logged, the request goes on
            log.exception("model quality counting failed")

    def _read(self, prediction: PredictionRequest, pause: Callable[[], None]) -> Columns:
        fmt = prediction.format
        if fmt is InputFormat.CSV:
            return read_csv_columns(prediction.body, self._wanted, self._numeric, self._known)
        if fmt is InputFormat.PARQUET:
            return read_parquet_columns(prediction.body, self._wanted, self._known)
        if fmt.is_llm or prediction.payload is None or fmt is InputFormat.OTHER:
            raise Unreadable(f"{fmt.value} input has no rows to bin")
        return read_columns(prediction.payload, fmt, self._wanted, self._positional, self._known, pause)

    def measure(self, prediction: PredictionRequest, pause: Callable[[], None] = _no_pause) -> InputCounts:
        """What the request's inputs add (rows, feature bins, violations, issues), not yet counted:
        it needs no answer, so a large body's is measured while MLflow computes
        (:meth:`AnswerObserver.before`). Raises only on a bug.

        ``pause`` is called before the work and after each column read and counted: a helper
        thread passes one that hands the interpreter lock to the request thread, which is still
        forwarding the body when the helper starts and would otherwise wait up to the whole
        measurement (the switch interval is 5 ms) before it could send it.
        """
        pause()
        violations = [0] * len(self._violations)
        issues: list[tuple[int, int]] = []  # (index, count) of the issues found, usually none
        feature_counts: list[tuple[int, list[int], int]] = []
        unreadable = None
        rows = prediction.rows or 0
        if self._wanted:
            try:
                columns = self._read(prediction, pause)
            except Unreadable:
                columns = None
                unreadable = prediction.format.value
            if columns is not None:
                feature_counts = self._count_columns(columns, violations, issues, pause)
                rows = columns.rows
        return InputCounts(violations, issues, feature_counts, unreadable, rows)

    def _observe(self, prediction: PredictionRequest, answered: bool, predictions: list | None,
                 measured: InputCounts | None) -> None:
        violations, issues, feature_counts, unreadable, rows = measured or self.measure(prediction)
        answer_counts = None
        if answered and self._prediction is not None and predictions is not None:
            answer_counts = self._prediction.count(predictions)[0]
        with self._lock:
            for i, n in enumerate(violations):
                self._violations[i] += n
            for i, n in issues:
                self._issues[i] += n
            if unreadable is not None:
                self._unreadable[self._format_index[unreadable]] += 1
            self._rows += rows
            if not answered:
                return
            for i, counts, missing in feature_counts:
                feature = self._features[i]
                for j, n in enumerate(counts):
                    self._bins[feature.offset + j] += n
                self._missing[i] += missing
            if answer_counts is not None:
                for j, n in enumerate(answer_counts):
                    self._answers[j] += n

    def unreadable_answer(self) -> None:
        with self._lock:
            self._unreadable[self._format_index[ANSWER_FORMAT]] += 1

    def _count_columns(self, columns: Columns, violations: list[int], issues: list[tuple[int, int]],
                       pause: Callable[[], None]) -> list[tuple[int, list[int], int]]:
        counted = []
        for name in self._wanted:
            pause()
            values = columns.values.get(name)
            absent = columns.absent.get(name, 0)
            column_type = self._signature_types.get(name)
            if absent and name in self._required:
                violations[self._violation_index[(name, MISSING_COLUMN)]] += absent
            position, feature = self._feature_by_name.get(name, (None, None))
            wrong = None
            if feature is not None:
                if values is None:
                    counted.append((position, [0] * len(feature.distribution.shares), absent))
                    if absent:
                        issues.append((feature.issue_indices[0], absent))  # missing
                else:
                    bins, missing, wrong, below, above, unseen = feature.count(values)
                    if column_type is not None and not (feature.numeric and column_type in NUMERIC_TYPES):
                        wrong = wrong_type_count(values, column_type)  # the signature's type decides
                    counted.append((position, bins, missing))
                    if missing or wrong or below or above or unseen:
                        found = (missing, wrong, below, above, unseen)
                        issues += [(i, n) for i, n in zip(feature.issue_indices, found) if n and i is not None]
                    if column_type is not None:
                        violations[self._violation_index[(name, WRONG_TYPE)]] += wrong
                        continue
            if column_type is not None and values is not None:
                if wrong is None:
                    wrong = wrong_type_count(values, column_type)
                violations[self._violation_index[(name, WRONG_TYPE)]] += wrong
        if self._known is not None:
            violations[self._violation_index[(OTHER, UNEXPECTED)]] += columns.unexpected
        return counted

    # -- collection ---------------------------------------------------------------------------

    def _register(self, meter: Meter) -> None:
        model = self._model
        bin_attributes = [
            {**model, mm.MODEL_FEATURE: f.distribution.name, mm.MODEL_BIN: label}
            for f in self._features for label in f.distribution.bin_labels
        ]
        feature_attributes = [{**model, mm.MODEL_FEATURE: f.distribution.name} for f in self._features]
        violation_attributes = [{**model, mm.MODEL_INPUT_COLUMN: c, mm.MODEL_VIOLATION_KIND: k}
                                for c, k in self._violation_keys]
        answer_attributes = [{**model, mm.MODEL_BIN: label} for label in
                             (self._prediction.distribution.bin_labels if self._prediction else ())]
        format_attributes = [{**model, mm.MODEL_INPUT_FORMAT: f} for f in self._formats]
        issue_attributes = [{**model, mm.MODEL_FEATURE: f, mm.MODEL_INPUT_ISSUE: i} for f, i in self._issue_keys]
        expected_bins = [share for f in self._features for share in f.distribution.shares]
        expected_answers = list(self._prediction.distribution.shares) if self._prediction else []

        def snapshot(values: list[int], attributes: list[dict]):
            def callback(_options: CallbackOptions) -> list[Observation]:
                with self._lock:
                    current = list(values)
                return [Observation(v, a) for v, a in zip(current, attributes)]
            return callback

        def constant(values: list[float], attributes: list[dict]):
            observations = [Observation(v, a) for v, a in zip(values, attributes)]
            return lambda _options: observations

        meter.create_observable_counter(mm.MODEL_FEATURE_VALUES, [snapshot(self._bins, bin_attributes)],
                                        unit="{value}", description="Feature values counted into the profile's bins.")
        meter.create_observable_gauge(mm.MODEL_FEATURE_EXPECTED_SHARE, [constant(expected_bins, bin_attributes)],
                                      unit="1", description="The profile's share of each feature bin.")
        meter.create_observable_counter(mm.MODEL_FEATURE_MISSING, [snapshot(self._missing, feature_attributes)],
                                        unit="{value}", description="Missing feature values.")
        meter.create_observable_counter(mm.MODEL_INPUT_VIOLATIONS, [snapshot(self._violations, violation_attributes)],
                                        unit="{value}", description="Values that violate the model's signature.")
        meter.create_observable_counter(mm.MODEL_PREDICTION_VALUES, [snapshot(self._answers, answer_attributes)],
                                        unit="{prediction}", description="Answers by class or bin.")
        meter.create_observable_gauge(mm.MODEL_PREDICTION_EXPECTED_SHARE,
                                      [constant(expected_answers, answer_attributes)],
                                      unit="1", description="The profile's share of each class or answer bin.")
        meter.create_observable_counter(mm.MODEL_INPUT_UNREADABLE, [snapshot(self._unreadable, format_attributes)],
                                        unit="{request}", description="Bodies whose rows could not be read.")
        meter.create_observable_counter(mm.MODEL_INPUT_ISSUES, [snapshot(self._issues, issue_attributes)],
                                        unit="{value}", description="Feature values failing a data-quality check.")
        rows = [model]
        meter.create_observable_counter(
            mm.MODEL_INPUT_ROWS,
            [lambda _options: [Observation(self._rows, rows[0])]],
            unit="{row}", description="Rows of prediction requests sent to the model.")


def _let_other_threads_run() -> None:
    """Release the interpreter lock so that a thread waiting for it (a request thread forwarding
    its body) takes it now; this one takes it back when that thread blocks or after the switch
    interval."""
    time.sleep(0)


def _measured(measuring: Future | None) -> InputCounts | None:
    """A helper's measurement; None (measured again in the request thread) if it failed."""
    if measuring is None:
        return None
    try:
        return measuring.result()
    except Exception:  # noqa: BLE001 - telemetry never breaks a request
        log.exception("measuring a request's inputs failed")
        return None


def register_model_info(identity: ModelIdentity, meter: Meter) -> None:
    """``model_info``: 1, with the model's name, version, flavor, and what is loaded."""
    attributes = {
        **identity.attributes,
        mm.MODEL_FLAVOR: identity.flavor,
        mm.MODEL_SIGNATURE: "true" if identity.signature or identity.tensor_signature else "false",
        mm.MODEL_REFERENCE: "true" if identity.profile is not None else "false",
    }
    observation = [Observation(1, attributes)]
    meter.create_observable_gauge(mm.MODEL_INFO, [lambda _options: observation], unit="1",
                                  description="The model the proxy fronts.")



class AnswerObserver:
    """What the predictor calls around each MLflow call: quality counts, the estimated performance
    and the feedback token."""

    def __init__(self, recorder: QualityRecorder | None, tokens: FeedbackTokens | None,
                 probabilities: Probabilities | None = None, helpers: int = 1):
        self._recorder = recorder
        self._tokens = tokens
        self._scores = ScoreReader(probabilities) if probabilities is not None else None
        self._estimator = recorder.estimator if recorder is not None else None
        # Answers are parsed only when their predictions are counted (the profile's answer bins, the
        # estimate) or can get a token: a large batch's answer (a megabyte of JSON takes over a
        # millisecond) often needs neither.
        self._counts_answers = (recorder is not None and recorder.reads_answers) or self._estimator is not None
        # One helper per request thread (started when first needed): see the module docstring.
        self._helpers = (ThreadPoolExecutor(helpers, "inferwatch-quality")
                         if recorder is not None and recorder.reads_inputs else None)

    def before(self, prediction: PredictionRequest) -> Future | None:
        """As the MLflow call starts: a large tabular body's inputs measured meanwhile by a helper."""
        if self._helpers is None or len(prediction.body) < OVERLAP_BYTES or prediction.format.is_llm:
            return None
        try:
            return self._helpers.submit(self._recorder.measure, prediction, _let_other_threads_run)
        except RuntimeError:  # shut down: measured after the answer instead
            return None

    def after(self, prediction: PredictionRequest, response: Response, measuring: Future | None = None) -> None:
        """Count the request; give an answered one its feedback token. Never raises.

        LLM answers (unwrapped OpenAI-shaped JSON) are not read here (they carry no predictions;
        :mod:`inferwatch.proxy.genai` reads them): they get a token that takes a rating.
        """
        try:
            measured = _measured(measuring)
            answered = response.status_code == 200
            if prediction.format.is_llm:
                if answered and self._tokens is not None:
                    response.headers[TOKEN_HEADER] = self._tokens.issue_rating(
                        prediction.request_id, OPERATIONS[prediction.format])
                if self._recorder is not None:
                    self._recorder.observe(prediction, answered, None)
                return
            predictions = expected = None
            if answered and (self._counts_answers or (self._tokens is not None and (
                    prediction.rows is None or prediction.rows <= self._tokens.max_rows))):
                try:
                    predictions, expected = self._read_answer(response.get_data())
                except Unreadable:
                    if self._recorder is not None:
                        self._recorder.unreadable_answer()
            if self._recorder is not None:
                self._recorder.observe(prediction, answered, predictions, measured)
            if predictions and self._tokens is not None:
                token = self._tokens.issue(prediction.request_id, predictions, expected=expected)
                if token is not None:
                    response.headers[TOKEN_HEADER] = token
        except Exception:  # noqa: BLE001 - telemetry never breaks a request
            log.exception("model quality after the answer failed")

    def close(self) -> None:
        """Stop the helpers once their measuring is done."""
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)

    def _read_answer(self, body: bytes) -> tuple[list, list[float] | None]:
        """(each row's prediction, its expected correctness when the answers carry class
        probabilities); the estimate counts those rows."""
        rows = answer_rows(body)
        if self._scores is None:
            return scalar_predictions(rows), None
        try:
            predicted, indices, calibrated = self._scores.read(rows)
        except UnreadableScores as error:
            raise Unreadable(str(error)) from None
        if self._estimator is not None:
            self._estimator.count(indices, calibrated)
        return predicted, [p[k] for k, p in zip(indices, calibrated)]
