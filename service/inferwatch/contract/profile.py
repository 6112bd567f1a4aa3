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
         "missing_share": 0.0},
        {"name": "Colour", "kind": "categorical", "categories": ["red", "blue"],
         "shares": [s_red, s_blue, s_other], "missing_share": 0.0}
      ],
      "prediction": {"kind": "classes", "classes": ["0", "1"], "shares": [s0, s1, s_other]}
                  | {"kind": "numeric", "edges": [...], "shares": [...], "error_buckets": [...]}
                  | null
    }

Bins. A numeric value ``v`` falls in bin ``i`` = the number of edges strictly below ``v``
(:func:`numeric_bin`): bin 0 is ``(-inf, e1]``, bin ``i`` is ``(e_i, e_i+1]``, the last is
``(ek, +inf)``. A categorical value (compared as text, ``str(v)``) falls in its category's bin, or
in the last bin, "other", when it is none of them; so do classes. NaN and null are *missing*,
counted apart, never in a bin. Shares are the training rows' shares of each bin (they sum to 1
over the bins, missing values excluded).

This module is data only (the standard library): the proxy, the profile builder and the tests
read the format from here.
"""

from __future__ import annotations

import bisect
import json
import math
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

    @property
    def bin_labels(self) -> tuple[str, ...]:
        """The ``bin`` label of each bin, in order: "00", "01", ... or the categories and OTHER."""
        if self.kind == NUMERIC:
            return tuple(f"{i:02d}" for i in range(len(self.shares)))
        return (*self.categories, OTHER)


@dataclass(frozen=True)
class Profile:
    features: tuple[Distribution, ...]
    prediction: Distribution | None = None
    columns: tuple[str, ...] = ()
    signature: tuple[SignatureColumn, ...] | None = None
    model: Mapping[str, str] = field(default_factory=dict)
    rows: int = 0
    created: str = ""

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
            return Distribution(name, kind, shares, edges=edges, missing_share=float(missing), error_buckets=buckets)
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
        return Distribution(name, kind, shares, categories=tuple(categories), missing_share=float(missing))

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
    return Profile(features, prediction, columns, signature,
                   {k: model[k] for k in ("name", "version", "flavor") if k in model}, rows, created)


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
    }


def write_profile(profile: Profile, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(profile_document(profile), indent=2) + "\n", encoding="utf-8")
    return path
