"""The reference profile: what a model's inputs and predictions looked like in training.

A profile is a JSON file (``inferwatch-profile.json`` beside the model's ``MLmodel``), built by
``inferwatch profile`` (:mod:`inferwatch.stack.profile`) and read by the proxy at start-up, which
counts every prediction's feature values and answers into the profile's bins and exports the
profile's expected shares, so Prometheus can compute drift (PSI) from summed counts. The format
is versioned: :data:`FORMAT` and :data:`VERSION` below; docs/model-quality.md has an example.

Version 1::

    {
      "format": "inferwatch-profile",
      "version": 1,
      "model": {"name": "diabetes", "version": "3", "flavor": "sklearn"},   # each optional
      "created": "2026-12-01T08:00:00Z",                                   # optional
      "rows": 768,                                  # training rows the shares were counted on
      "columns": ["Pregnancies", "Glucose", ...],   # input order, for positional inputs
      "signature": [{"name": "Glucose", "type": "double", "required": true}, ...] | null,
      "features": [
        {"name": "Glucose", "kind": "numeric", "edges": [e1, ..., ek], "shares": [s0, ..., sk],
         "missing_share": 0.0, "min": -2.9, "max": 3.1},                  # min, max optional
        {"name": "Colour", "kind": "categorical", "categories": ["red", "blue"],
         "shares": [s_red, s_blue, s_other], "missing_share": 0.0,
         "other_categories": ["green"]}                                    # optional
      ],
      "prediction": {"kind": "classes", "classes": ["0", "1"], "shares": [s0, s1, s_other]}
                  | {"kind": "numeric", "edges": [...], "shares": [...], "error_buckets": [...]}
                  | null,
      "probabilities": {                            # optional: answers that carry class probabilities
        "answer": "array" | "fields",               # [p0, p1] per row, or {"p0": .., "p1": ..} per row
        "classes": ["0", "1"],                      # the class of each probability, in answer order
        "fields": ["p0", "p1"],                     # "fields": the field of each class's probability
        "class_field": "label",                     # "fields", optional: the predicted class; else argmax
        "positive_class": "1",                      # two classes: what precision, recall and F1 are about
        "calibration": [null, {"x": [...], "y": [...]}],   # per class: isotonic points, or null
        "reference": {"rows": 500, "accuracy": 0.81, "precision": 0.74, "recall": 0.66, "f1": 0.70}
      }
    }

Bins. A numeric value ``v`` falls in bin ``i`` = the number of edges strictly below ``v``
(:func:`numeric_bin`): bin 0 is ``(-inf, e1]``, bin ``i`` is ``(e_i, e_i+1]``, the last is
``(ek, +inf)``. A categorical value (compared as text, ``str(v)``) falls in its category's bin, or
in the last bin, "other", when it is none of them; so do classes. NaN and null are *missing*,
counted apart, never in a bin. Shares are the training rows' shares of each bin (they sum to 1
over the bins, missing values excluded).

Data quality. ``min`` and ``max`` are a numeric feature's smallest and largest reference values;
``other_categories`` the categories a categorical feature had in the reference beyond its top
``categories`` (absent when there were more than :data:`MAX_OTHER_CATEGORIES`): the proxy counts
values below the minimum, above the maximum, and categories seen in neither list ("unseen").

Estimated performance. ``probabilities`` says how the model's answers carry class probabilities
and how to calibrate them (isotonic regression fitted on labelled reference data, one class
against the rest; :class:`Calibration` applies it), and holds the model's performance on that
reference data (:func:`classification_performance`). The proxy sums each answered row's expected
confusion-matrix cells (:class:`Probabilities`), so Prometheus can estimate accuracy, precision,
recall and F1 before labels arrive (docs/model-quality.md#estimated-performance).

Drift significance. :func:`psi_critical_value` is the PSI a window of ``rows`` would exceed by
chance with probability ``alpha`` (a chi-square approximation); the recording rules compute the
same figure in PromQL.

This module is data only (the standard library): the proxy, the profile builder and the tests
read the format from here.
"""

from __future__ import annotations

import bisect
import json
import math
from statistics import NormalDist
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "inferwatch-profile"
VERSION = 1
# Where the profile lives beside a model's MLmodel file.
PROFILE_FILE_NAME = "inferwatch-profile.json"

NUMERIC = "numeric"
CATEGORICAL = "categorical"
CLASSES = "classes"
# The label of the bin that takes every category (or class) the profile does not list.
OTHER = "__other__"

# Bounds on what a profile may hold: each bin becomes Prometheus series, so the profile bounds
# the cardinality of the quality metrics.
MAX_FEATURES = 256
MAX_BINS = 50
MAX_CATEGORIES = 50
MAX_NAME_LENGTH = 200
SHARE_TOLERANCE = 1e-6
# Categories of the reference kept beyond the top ones, for the "unseen" check (not labels).
MAX_OTHER_CATEGORIES = 1000
# Points of one class's calibration (isotonic regression keeps one per step of its fit).
MAX_CALIBRATION_POINTS = 5000

# How answers carry class probabilities: a list per row in the classes' order (predict_proba), or
# an object per row with one field per class (a pyfunc answering a DataFrame).
ARRAY_ANSWER = "array"
FIELDS_ANSWER = "fields"
ANSWER_KINDS = (ARRAY_ANSWER, FIELDS_ANSWER)
# The classification metrics estimated from the probabilities and measured from feedback labels.
PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1")

# MLflow column types (ColSpec "type") a signature may name.
SIGNATURE_TYPES = ("double", "float", "long", "integer", "boolean", "string", "binary", "datetime", "tensor")
NUMERIC_TYPES = ("double", "float", "long", "integer")


class ProfileError(ValueError):
    """A profile file is malformed or does not fit the model; names where and what."""

    def __init__(self, source: str, where: str, problem: str):
        super().__init__(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")
        self.source = source
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class SignatureColumn:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class Distribution:
    """One feature's (or the predictions') reference: bins and the share of each."""

    name: str
    kind: str  # NUMERIC, CATEGORICAL or CLASSES
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()  # NUMERIC
    categories: tuple[str, ...] = ()  # CATEGORICAL and CLASSES, without OTHER
    missing_share: float = 0.0
    error_buckets: tuple[float, ...] = ()  # NUMERIC predictions: absolute-error histogram edges
    # NUMERIC features: the reference's smallest and largest value (None: not recorded).
    minimum: float | None = None
    maximum: float | None = None
    # CATEGORICAL features: categories of the reference in the other bin (None: not recorded).
    other_categories: tuple[str, ...] | None = None

    @property
    def bin_labels(self) -> tuple[str, ...]:
        """The ``bin`` label of each bin, in order: "00", "01", ... or the categories and OTHER."""
        if self.kind == NUMERIC:
            return tuple(f"{i:02d}" for i in range(len(self.shares)))
        return (*self.categories, OTHER)


@dataclass(frozen=True)
class Calibration:
    """One class's calibration: raw score to probability, as isotonic regression fitted it.

    Between two points linear, outside them the nearest point's probability (what scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip").predict`` gives for its thresholds).
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, score: float) -> float:
        x, y = self.x, self.y
        i = bisect.bisect_right(x, score)
        if i == 0:
            return y[0]
        if i == len(x):
            return y[-1]
        x0 = x[i - 1]
        return y[i - 1] + (y[i] - y[i - 1]) * (score - x0) / (x[i] - x0)


@dataclass(frozen=True)
class ReferencePerformance:
    """The model's performance on the labelled reference data the calibration was fitted on."""

    rows: int
    accuracy: float
    precision: float
    recall: float
    f1: float

    def metrics(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in PERFORMANCE_METRICS}


@dataclass(frozen=True)
class Probabilities:
    """How a classifier's answers carry class probabilities, how to calibrate them, and how well
    the model did on the labelled reference data."""

    answer: str  # ARRAY_ANSWER or FIELDS_ANSWER
    classes: tuple[str, ...]  # the class of each probability, in the answer's order
    fields: tuple[str, ...] = ()  # FIELDS_ANSWER: the field of each class's probability
    class_field: str = ""  # FIELDS_ANSWER: the field holding the predicted class ("": the most probable)
    positive_class: str = ""  # two classes: the class precision, recall and F1 are about
    calibration: tuple[Calibration | None, ...] = ()  # per class; None (or empty): used as they are
    reference: ReferencePerformance | None = None

    @property
    def scored_classes(self) -> tuple[str, ...]:
        """The classes precision, recall and F1 average over: the positive class of a binary
        classifier, every class of a multiclass one (macro average)."""
        return (self.positive_class,) if len(self.classes) == 2 else self.classes

    def calibrate(self, scores: Sequence[float]) -> list[float]:
        """Calibrated probabilities of one row's ``scores`` (in the classes' order), summing to 1.

        Two classes: the positive class's score is calibrated, the other class gets the rest.
        More: each class's score is calibrated against the rest, then all are scaled to sum to 1.
        """
        calibration = self.calibration or (None,) * len(self.classes)
        if len(self.classes) == 2:
            positive = self.classes.index(self.positive_class)
            function = calibration[positive]
            p = function(scores[positive]) if function is not None else min(max(scores[positive], 0.0), 1.0)
            return [p, 1.0 - p] if positive == 0 else [1.0 - p, p]
        calibrated = [f(s) if f is not None else max(s, 0.0) for f, s in zip(calibration, scores)]
        total = sum(calibrated)
        if total <= 0:
            return [1.0 / len(calibrated)] * len(calibrated)
        return [p / total for p in calibrated]


@dataclass(frozen=True)
class Profile:
    features: tuple[Distribution, ...]
    prediction: Distribution | None = None
    columns: tuple[str, ...] = ()
    signature: tuple[SignatureColumn, ...] | None = None
    model: Mapping[str, str] = field(default_factory=dict)
    rows: int = 0
    created: str = ""
    probabilities: Probabilities | None = None

    def feature(self, name: str) -> Distribution:
        return next(f for f in self.features if f.name == name)


def numeric_bin(edges: Sequence[float], value: float) -> int:
    """The bin of ``value``: the number of edges strictly below it (``edges`` sorted)."""
    return bisect.bisect_left(edges, value)


def category_key(value: object) -> str:
    """How a categorical value, a class or a label is compared with the profile's: as text.

    A whole float counts as the integer (``1.0`` is class ``"1"``), so a label sent as JSON
    ``1.0`` matches a model that answers ``1``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def psi(actual_counts: Sequence[float], expected_shares: Sequence[float], epsilon: float) -> float:
    """Population stability index of counts against expected shares, as the recording rules compute it.

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` with ``a_i`` the actual share of bin ``i``, and
    both shares raised to ``epsilon`` where smaller (an empty bin would make the log infinite).
    """
    total = sum(actual_counts)
    if total <= 0:
        raise ValueError("no counts: PSI is undefined")
    result = 0.0
    for count, expected in zip(actual_counts, expected_shares, strict=True):
        a, e = max(count / total, epsilon), max(expected, epsilon)
        result += (a - e) * math.log(a / e)
    return result


def upper_normal_quantile(alpha: float) -> float:
    """z with P(Z > z) = ``alpha`` for a standard normal Z, to 4 decimals (as the rules write it)."""
    return round(NormalDist().inv_cdf(1 - alpha), 4)


def chi_square_quantile(degrees: int, alpha: float) -> float:
    """The value a chi-square variable of ``degrees`` degrees of freedom exceeds with probability
    ``alpha``, by Wilson and Hilferty's cube-root approximation (Wilson, E. B. and Hilferty, M. M.,
    "The distribution of chi-square", PNAS 17 (1931), 684-688; Abramowitz and Stegun 26.4.17):

        q = k * (1 - 2 / (9k) + z * sqrt(2 / (9k)))^3,  z the upper alpha quantile of N(0, 1)

    within 1 % of the exact quantile for k >= 1 at alpha = 0.01 (2.5 % at alpha = 0.05, k = 1).
    The recording rules compute exactly this expression in PromQL (which has no chi-square
    quantile function).
    """
    k = degrees
    return k * (1 - 2 / (9 * k) + upper_normal_quantile(alpha) * math.sqrt(2 / (9 * k))) ** 3


def psi_critical_value(bins: int, rows: float, reference_rows: float, alpha: float) -> float:
    """The PSI that ``rows`` rows drawn from the reference distribution exceed with probability
    ``alpha``: ``chi2(bins - 1, alpha) * (1 / rows + 1 / reference_rows)``.

    PSI is the symmetrised Kullback-Leibler divergence of the two samples' bin shares; for shares
    close to each other ``(a - e) ln(a / e) ~ (a - e)^2 / e``, so ``PSI / (1/N + 1/M)`` is, to
    first order, the chi-square statistic of the two-sample homogeneity test and is distributed as
    chi-square with ``bins - 1`` degrees of freedom when nothing changed (Yurdakul, B., "Statistical
    properties of population stability index", dissertation, Western Michigan University, 2018;
    Yurdakul and Naranjo, Journal of Risk Model Validation 14(4), 2020). ``bins`` counts the bins
    with a reference share above 0; ``reference_rows`` of 0 (unknown) treats the reference shares
    as exact. The epsilon smoothing of empty bins makes small windows noisier than this (the
    alerts wait for ``drift_min_rows_per_bin`` rows per bin, see docs/model-quality.md).
    """
    inverse = 1 / rows + (1 / reference_rows if reference_rows > 0 else 0.0)
    return chi_square_quantile(bins - 1, alpha) * inverse


def classification_performance(predicted: Sequence[str], actual: Sequence[str],
                               scored_classes: Sequence[str]) -> dict[str, float]:
    """Accuracy, and precision, recall and F1 averaged over ``scored_classes``, as the recording
    rules compute them from summed counts: a class whose denominator is 0 (never predicted, or
    never the true class) is left out of that average, not counted as 0. NaN where nothing is left.
    """
    rows = len(predicted)
    result = {"accuracy": sum(p == a for p, a in zip(predicted, actual)) / rows if rows else math.nan}
    per_class: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for c in scored_classes:
        true_positive = sum(p == c and a == c for p, a in zip(predicted, actual))
        as_predicted, as_actual = sum(p == c for p in predicted), sum(a == c for a in actual)
        if as_predicted:
            per_class["precision"].append(true_positive / as_predicted)
        if as_actual:
            per_class["recall"].append(true_positive / as_actual)
        if as_predicted + as_actual:
            per_class["f1"].append(2 * true_positive / (as_predicted + as_actual))
    for name, values in per_class.items():
        result[name] = sum(values) / len(values) if values else math.nan
    return result


# ---------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------


class _Reader:
    """Checks one JSON document; every problem names its place (``features[2].edges``)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str):
        raise ProfileError(self.source, where, problem)

    def get(self, obj: Mapping, key: str, where: str, kind: type | tuple, required: bool = True):
        if key not in obj:
            if required:
                self.fail(f"{where}{key}", "missing")
            return None
        value = obj[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            self.fail(f"{where}{key}", f"expected {_kind_name(kind)}, got {_json_type(value)}")
        return value

    def name(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(where, "expected a non-empty string")
        if len(value) > MAX_NAME_LENGTH:
            self.fail(where, f"longer than {MAX_NAME_LENGTH} characters")
        if value.startswith("__"):
            self.fail(where, f"{value!r}: names starting with '__' are reserved ({OTHER})")
        return value

    def numbers(self, values: list, where: str, positive: bool = False) -> tuple[float, ...]:
        out = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self.fail(f"{where}[{i}]", f"expected a finite number, got {value!r}")
            if positive and value <= 0:
                self.fail(f"{where}[{i}]", f"expected a number above 0, got {value!r}")
            out.append(float(value))
        if any(b <= a for a, b in zip(out, out[1:])):
            self.fail(where, "must be strictly increasing")
        return tuple(out)

    def shares(self, values: list, count: int, where: str) -> tuple[float, ...]:
        if len(values) != count:
            self.fail(where, f"expected {count} shares (one per bin), got {len(values)}")
        out = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                self.fail(f"{where}[{i}]", f"expected a share between 0 and 1, got {value!r}")
            out.append(float(value))
        if abs(sum(out) - 1) > SHARE_TOLERANCE:
            self.fail(where, f"shares sum to {sum(out)!r}, not 1")
        return tuple(out)

    def distribution(self, obj: object, where: str, kinds: tuple[str, ...], name: str | None = None) -> Distribution:
        if not isinstance(obj, dict):
            self.fail(where, f"expected an object, got {_json_type(obj)}")
        prefix = where + "."
        name = name if name is not None else self.name(obj.get("name"), prefix + "name")
        kind = self.get(obj, "kind", prefix, str)
        if kind not in kinds:
            self.fail(prefix + "kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
        missing = self.get(obj, "missing_share", prefix, (int, float), required=False) or 0.0
        if not 0 <= missing <= 1:
            self.fail(prefix + "missing_share", f"expected a share between 0 and 1, got {missing!r}")
        if kind == NUMERIC:
            edges = self.numbers(self.get(obj, "edges", prefix, list), prefix + "edges")
            if len(edges) + 1 > MAX_BINS:
                self.fail(prefix + "edges", f"{len(edges) + 1} bins, at most {MAX_BINS}")
            buckets = self.numbers(self.get(obj, "error_buckets", prefix, list, required=False) or [],
                                   prefix + "error_buckets", positive=True)
            shares = self.shares(self.get(obj, "shares", prefix, list), len(edges) + 1, prefix + "shares")
            low, high = self.range(obj, prefix)
            return Distribution(name, kind, shares, edges=edges, missing_share=float(missing), error_buckets=buckets,
                                minimum=low, maximum=high)
        key = "classes" if kind == CLASSES else "categories"
        categories = self.get(obj, key, prefix, list)
        for i, category in enumerate(categories):
            if not isinstance(category, str):
                self.fail(f"{prefix}{key}[{i}]", f"expected a string, got {_json_type(category)}")
            if category == OTHER:
                self.fail(f"{prefix}{key}[{i}]", f"{OTHER!r} is reserved for the other bin")
        if len(set(categories)) != len(categories):
            self.fail(prefix + key, "listed twice: " + ", ".join(sorted({c for c in categories if categories.count(c) > 1})))
        if len(categories) > MAX_CATEGORIES:
            self.fail(prefix + key, f"{len(categories)} listed, at most {MAX_CATEGORIES}")
        shares = self.shares(self.get(obj, "shares", prefix, list), len(categories) + 1, prefix + "shares")
        others = None
        if kind == CATEGORICAL and "other_categories" in obj:
            others = tuple(self.texts(self.get(obj, "other_categories", prefix, list), prefix + "other_categories",
                                      MAX_OTHER_CATEGORIES))
            if repeated := sorted(set(others) & set(categories)):
                self.fail(prefix + "other_categories", "also among the categories: " + ", ".join(repeated))
        return Distribution(name, kind, shares, categories=tuple(categories), missing_share=float(missing),
                            other_categories=others)

    def range(self, obj: Mapping, prefix: str) -> tuple[float | None, float | None]:
        """A numeric feature's optional ``min`` and ``max`` (both or neither)."""
        if "min" not in obj and "max" not in obj:
            return None, None
        low, high = (self.get(obj, key, prefix, (int, float)) for key in ("min", "max"))
        for key, value in (("min", low), ("max", high)):
            if not math.isfinite(value):
                self.fail(prefix + key, f"expected a finite number, got {value!r}")
        if low > high:
            self.fail(prefix + "max", f"{high!r} is below min {low!r}")
        return float(low), float(high)

    def texts(self, values: list, where: str, limit: int) -> list[str]:
        """Distinct strings (none of them the reserved OTHER), at most ``limit``."""
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(f"{where}[{i}]", f"expected a string, got {_json_type(value)}")
            if value == OTHER:
                self.fail(f"{where}[{i}]", f"{OTHER!r} is reserved for the other bin")
        _unique(values, lambda problem: self.fail(where, problem))
        if len(values) > limit:
            self.fail(where, f"{len(values)} listed, at most {limit}")
        return values

    def calibration(self, value: object, where: str) -> Calibration | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(where, f"expected an object or null, got {_json_type(value)}")
        prefix = where + "."
        x = self.numbers(self.get(value, "x", prefix, list), prefix + "x")
        y = self.get(value, "y", prefix, list)
        if not 1 <= len(x) <= MAX_CALIBRATION_POINTS:
            self.fail(prefix + "x", f"expected 1 to {MAX_CALIBRATION_POINTS} points, got {len(x)}")
        if len(y) != len(x):
            self.fail(prefix + "y", f"expected {len(x)} values (one per x), got {len(y)}")
        for i, v in enumerate(y):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                self.fail(f"{prefix}y[{i}]", f"expected a probability between 0 and 1, got {v!r}")
        if any(b < a for a, b in zip(y, y[1:])):
            self.fail(prefix + "y", "must not decrease (an isotonic fit)")
        return Calibration(x, tuple(float(v) for v in y))

    def probabilities(self, obj: object) -> Probabilities | None:
        if obj is None:
            return None
        if not isinstance(obj, dict):
            self.fail("probabilities", f"expected an object or null, got {_json_type(obj)}")
        where = "probabilities."
        answer = self.get(obj, "answer", where, str)
        if answer not in ANSWER_KINDS:
            self.fail(where + "answer", f"expected one of {', '.join(ANSWER_KINDS)}, got {answer!r}")
        classes = tuple(self.texts(self.get(obj, "classes", where, list), where + "classes", MAX_CATEGORIES))
        if len(classes) < 2:
            self.fail(where + "classes", "a classifier has at least 2 classes")
        fields: tuple[str, ...] = ()
        class_field = ""
        if answer == FIELDS_ANSWER:
            fields = tuple(self.get(obj, "fields", where, list))
            if len(fields) != len(classes) or not all(isinstance(f, str) and f for f in fields):
                self.fail(where + "fields", f"expected {len(classes)} field names, one per class")
            _unique(list(fields), lambda problem: self.fail(where + "fields", problem))
            class_field = self.get(obj, "class_field", where, str, required=False) or ""
            if class_field in fields:
                self.fail(where + "class_field", f"{class_field!r} is a probability field")
        positive = self.get(obj, "positive_class", where, str, required=False) or ""
        if len(classes) == 2 and positive not in classes:
            self.fail(where + "positive_class", f"expected one of {', '.join(classes)}, got {positive!r}")
        if len(classes) > 2 and positive:
            self.fail(where + "positive_class", "only for two classes (more are macro-averaged)")
        calibration: tuple[Calibration | None, ...] = ()
        if obj.get("calibration") is not None:
            documents = self.get(obj, "calibration", where, list)
            if len(documents) != len(classes):
                self.fail(where + "calibration", f"expected {len(classes)} entries (one per class), got {len(documents)}")
            calibration = tuple(self.calibration(d, f"{where}calibration[{i}]") for i, d in enumerate(documents))
        reference = None
        if obj.get("reference") is not None:
            document = self.get(obj, "reference", where, dict)
            prefix = where + "reference."
            values = {}
            for name in PERFORMANCE_METRICS:
                value = self.get(document, name, prefix, (int, float))
                if not 0 <= value <= 1:
                    self.fail(prefix + name, f"expected a value between 0 and 1, got {value!r}")
                values[name] = float(value)
            rows = self.get(document, "rows", prefix, int)
            if rows < 1:
                self.fail(prefix + "rows", f"expected at least 1 row, got {rows!r}")
            reference = ReferencePerformance(rows, **values)
        return Probabilities(answer, classes, fields, class_field, positive, calibration, reference)

    def signature(self, value: object) -> tuple[SignatureColumn, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail("signature", f"expected a list of columns or null, got {_json_type(value)}")
        columns = []
        for i, column in enumerate(value):
            where = f"signature[{i}]."
            if not isinstance(column, dict):
                self.fail(f"signature[{i}]", f"expected an object, got {_json_type(column)}")
            name = self.get(column, "name", where, str)
            kind = self.get(column, "type", where, str)
            if kind not in SIGNATURE_TYPES:
                self.fail(where + "type", f"expected one of {', '.join(SIGNATURE_TYPES)}, got {kind!r}")
            required = self.get(column, "required", where, bool, required=False)
            columns.append(SignatureColumn(name, kind, True if required is None else required))
        _unique([c.name for c in columns], lambda problem: self.fail("signature", problem))
        return tuple(columns)


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false"}
    return " or ".join(dict.fromkeys(names[k] for k in _as_tuple(kind)))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", dict: "an object", list: "a list", str: "a string"}.get(type(value), "a number")


def _unique(names: list[str], fail) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        fail("named twice: " + ", ".join(repeated))


def parse_profile(document: object, source: str = "profile") -> Profile:
    """The :class:`Profile` a decoded JSON document holds; :class:`ProfileError` if it is not one."""
    r = _Reader(source)
    if not isinstance(document, dict):
        r.fail("", f"expected a JSON object, got {_json_type(document)}")
    if document.get("format") != FORMAT:
        r.fail("format", f"expected {FORMAT!r}, got {document.get('format')!r}: not an inferwatch profile")
    version = document.get("version")
    if version != VERSION:
        r.fail("version", f"version {version!r} is not supported; this inferwatch reads version {VERSION}")
    features_doc = r.get(document, "features", "", list)
    if not features_doc:
        r.fail("features", "no features: a profile needs at least one")
    if len(features_doc) > MAX_FEATURES:
        r.fail("features", f"{len(features_doc)} features, at most {MAX_FEATURES}")
    features = tuple(r.distribution(f, f"features[{i}]", (NUMERIC, CATEGORICAL)) for i, f in enumerate(features_doc))
    _unique([f.name for f in features], lambda problem: r.fail("features", problem))
    prediction_doc = document.get("prediction")
    prediction = None if prediction_doc is None else r.distribution(prediction_doc, "prediction", (CLASSES, NUMERIC), name="prediction")
    columns = tuple(r.get(document, "columns", "", list, required=False) or ())
    for i, column in enumerate(columns):
        if not isinstance(column, str):
            r.fail(f"columns[{i}]", f"expected a string, got {_json_type(column)}")
    signature = r.signature(document.get("signature"))
    model = r.get(document, "model", "", dict, required=False) or {}
    for key in ("name", "version", "flavor"):
        if key in model and not isinstance(model[key], str):
            r.fail(f"model.{key}", f"expected a string, got {_json_type(model[key])}")
    rows = r.get(document, "rows", "", int, required=False) or 0
    created = r.get(document, "created", "", str, required=False) or ""
    probabilities = r.probabilities(document.get("probabilities"))
    if probabilities is not None:
        if prediction is None or prediction.kind != CLASSES:
            r.fail("prediction", "a profile with class probabilities needs the class shares of the answers")
        if unknown := sorted(set(prediction.categories) - set(probabilities.classes)):
            r.fail("prediction.classes", "not among probabilities.classes: " + ", ".join(unknown))
    return Profile(features, prediction, columns, signature,
                   {k: model[k] for k in ("name", "version", "flavor") if k in model}, rows, created, probabilities)


def read_profile(path: str | Path) -> Profile:
    """Read and check a profile file; :class:`ProfileError` names the file and the problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(source, "", f"cannot read the profile: {error.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ProfileError(source, "", f"not valid JSON: {error}") from None
    return parse_profile(document, source)


def _distribution_document(d: Distribution) -> dict:
    document: dict = {"name": d.name, "kind": d.kind}
    if d.kind == NUMERIC:
        document["edges"] = list(d.edges)
    else:
        document["classes" if d.kind == CLASSES else "categories"] = list(d.categories)
    document["shares"] = list(d.shares)
    if d.kind != CLASSES:
        document["missing_share"] = d.missing_share
    if d.error_buckets:
        document["error_buckets"] = list(d.error_buckets)
    if d.minimum is not None:
        document["min"], document["max"] = d.minimum, d.maximum
    if d.other_categories is not None:
        document["other_categories"] = list(d.other_categories)
    return document


def _probabilities_document(p: Probabilities) -> dict:
    document: dict = {"answer": p.answer, "classes": list(p.classes)}
    if p.answer == FIELDS_ANSWER:
        document["fields"] = list(p.fields)
        if p.class_field:
            document["class_field"] = p.class_field
    if p.positive_class:
        document["positive_class"] = p.positive_class
    if p.calibration:
        document["calibration"] = [None if c is None else {"x": list(c.x), "y": list(c.y)} for c in p.calibration]
    if p.reference is not None:
        document["reference"] = {"rows": p.reference.rows, **p.reference.metrics()}
    return document


def profile_document(profile: Profile) -> dict:
    """The JSON document of a profile (what :func:`parse_profile` reads back)."""
    prediction = None
    if profile.prediction is not None:
        prediction = _distribution_document(profile.prediction)
        prediction.pop("name", None)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": dict(profile.model),
        "created": profile.created,
        "rows": profile.rows,
        "columns": list(profile.columns),
        "signature": None if profile.signature is None else [
            {"name": c.name, "type": c.type, "required": c.required} for c in profile.signature],
        "features": [_distribution_document(f) for f in profile.features],
        "prediction": prediction,
        **({"probabilities": _probabilities_document(profile.probabilities)} if profile.probabilities else {}),
    }


def write_profile(profile: Profile, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(profile_document(profile), indent=2) + "\n", encoding="utf-8")
    return path
