"""``inferwatch profile``: build a model's reference profile from its training data.

::

    inferwatch profile train.csv --model models/diabetes            # writes models/diabetes/inferwatch-profile.json
    inferwatch profile train.parquet --predictions label -o profile.json
    inferwatch profile reference.csv --model models/churn --labels churned    # calibrates class probabilities

Per feature (the model signature's columns, else every column of the data but the
``--predictions`` one): numeric columns get ``--bins`` quantile bins (edges at the training
quantiles, repeated edges merged) and the share of training rows in each; other columns their
``--top`` most frequent categories and their shares, the rest as "other". The predictions get the
same: the share of each class for a classifier, bins for a regressor (with absolute-error histogram
edges for the feedback metrics). With ``--model`` the model (loaded with ``mlflow.pyfunc``) scores
the data; without it, ``--predictions COLUMN`` names a column that holds them (or the true labels,
as a stand-in). The format is :mod:`inferwatch.contract.profile`.

Numeric features also record their smallest and largest value, categorical ones the categories
folded into "other" (up to :data:`~inferwatch.contract.profile.MAX_OTHER_CATEGORIES`): the proxy
counts values outside that range and categories never seen (data quality).

``--labels COLUMN`` (with ``--model``) names the true class of each row of labelled reference
data. The model must answer class probabilities: a list per row (scikit-learn's ``predict_proba``,
e.g. ``mlflow.sklearn.save_model(..., pyfunc_predict_fn="predict_proba")``), or one field per class
(a pyfunc answering a DataFrame whose columns are the classes, optionally with a column holding the
predicted class). Each class's probability is calibrated against the labels by isotonic regression
(one class against the rest), when cross-validation says calibrating lowers the expected
calibration error, as NannyML's CBPE does; the profile records the answer's shape, the calibration
and the model's accuracy, precision, recall and F1 on the reference data, which the proxy's
estimate is compared with. Use data the model was not trained on: on its training data a model is
more confident than it deserves, and the calibration would learn that.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inferwatch.contract.profile import (
    ARRAY_ANSWER,
    CATEGORICAL,
    CLASSES,
    FIELDS_ANSWER,
    MAX_BINS,
    MAX_CALIBRATION_POINTS,
    MAX_CATEGORIES,
    MAX_OTHER_CATEGORIES,
    NUMERIC,
    PERFORMANCE_METRICS,
    PROFILE_FILE_NAME,
    Calibration,
    Distribution,
    Probabilities,
    Profile,
    ReferencePerformance,
    SignatureColumn,
    category_key,
    classification_performance,
    parse_profile,
    profile_document,
    write_profile,
)

DEFAULT_BINS = 10
DEFAULT_TOP = 10


def read_data(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file (by its extension) as a DataFrame."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{path}: expected a .csv or .parquet file")


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def numeric_distribution(name: str, series: pd.Series, bins: int = DEFAULT_BINS) -> Distribution:
    """Quantile bins of a numeric column and the share of its rows in each."""
    if not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be between 1 and {MAX_BINS}")
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise ValueError(f"column {name!r} has no values")
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if bins > 1 else np.array([])
    # A value equal to an edge belongs to the bin below it (contract.profile.numeric_bin).
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    return Distribution(name, NUMERIC, _shares(counts), edges=tuple(float(e) for e in edges),
                        missing_share=float(1 - present.size / values.size),
                        minimum=float(present.min()), maximum=float(present.max()))


def categorical_distribution(name: str, series: pd.Series, top: int = DEFAULT_TOP, kind: str = CATEGORICAL) -> Distribution:
    """The ``top`` most frequent categories of a column (as text) and their shares, the rest as other."""
    if not 1 <= top <= MAX_CATEGORIES:
        raise ValueError(f"top must be between 1 and {MAX_CATEGORIES}")
    present = series.dropna()
    if present.empty:
        raise ValueError(f"column {name!r} has no values")
    frequencies = present.map(category_key).value_counts()
    ranked = sorted(frequencies.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:top]
    counts = np.array([n for _, n in kept] + [sum(n for _, n in ranked[top:])], dtype=np.int64)
    others = tuple(str(c) for c, _ in ranked[top:])
    return Distribution(name, kind, _shares(counts), categories=tuple(str(c) for c, _ in kept),
                        missing_share=float(1 - len(present) / len(series)),
                        other_categories=others if kind == CATEGORICAL and len(others) <= MAX_OTHER_CATEGORIES else None)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = int(counts.sum())
    return tuple(int(n) / total for n in counts)


def error_buckets(values: np.ndarray) -> tuple[float, ...]:
    """Absolute-error histogram edges for a regressor: 1-2.5-5 steps from sd/50 to 4 sd."""
    spread = float(np.std(values)) or 1.0
    low, high = spread / 50, spread * 4
    edges = [float(f"{m}e{k}") for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
             for m in (1, 2.5, 5)]
    return tuple(e for e in edges if low <= e <= high)


def prediction_distribution(predictions: Sequence, task: str = "auto", bins: int = DEFAULT_BINS) -> Distribution:
    """Class shares (classification) or bins (regression) of the model's answers on the data."""
    values = np.asarray(predictions)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        hint = ("; the model answers class probabilities: give --labels COLUMN (labelled reference data) "
                "to calibrate them" if values.ndim == 2 else "")
        raise ValueError(f"expected one prediction per row, got an array of shape {values.shape}{hint}")
    series = pd.Series(values)
    if task == "auto":
        discrete = not _is_numeric(series) or pd.api.types.is_integer_dtype(series)
        task = "classification" if discrete and series.nunique() <= MAX_CATEGORIES else "regression"
    if task == "classification":
        return categorical_distribution("prediction", series, top=MAX_CATEGORIES, kind=CLASSES)
    if task != "regression":
        raise ValueError("task must be auto, classification or regression")
    distribution = numeric_distribution("prediction", series, bins)
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=np.float64)
    return Distribution("prediction", NUMERIC, distribution.shares, edges=distribution.edges,
                        error_buckets=error_buckets(values))


def read_signature(model_dir: str | Path) -> tuple[SignatureColumn, ...] | None:
    """The column-based input signature of an MLflow model directory (None: none, or tensors)."""
    import yaml

    document = yaml.safe_load((Path(model_dir) / "MLmodel").read_text(encoding="utf-8"))
    inputs = (document.get("signature") or {}).get("inputs")
    if not inputs:
        return None
    specs = json.loads(inputs)
    if any(spec.get("type") == "tensor" or "name" not in spec for spec in specs):
        return None
    return tuple(SignatureColumn(spec["name"], spec["type"], bool(spec.get("required", True))) for spec in specs)


# ---------------------------------------------------------------------------------------------
# Class probabilities: how the answers carry them, their calibration, the reference performance
# ---------------------------------------------------------------------------------------------

# Calibration is kept when it lowers the expected calibration error on held-out folds:
# CALIBRATION_SPLITS stratified splits, each holding out CALIBRATION_TEST_SHARE of the rows,
# the error measured over ECE_BINS bins of equal count (as NannyML's CBPE decides).
CALIBRATION_SPLITS = 10
CALIBRATION_TEST_SHARE = 0.1
ECE_BINS = 10


@dataclass(frozen=True)
class ScoredAnswers:
    """What a model answered on the reference data, read as the proxy will read it."""

    answer: str  # ARRAY_ANSWER or FIELDS_ANSWER
    classes: tuple[str, ...]
    scores: np.ndarray  # rows x classes
    predicted: list[str]
    fields: tuple[str, ...] = ()
    class_field: str = ""


def model_classes(model, labels: pd.Series) -> list:
    """The class of each probability column: the model's ``classes_`` (scikit-learn), else the
    labels' distinct values in sorted order (how scikit-learn orders them)."""
    try:
        raw = model.get_raw_model()
    except (AttributeError, NotImplementedError):
        raw = None
    classes = getattr(raw, "classes_", None)
    return list(classes) if classes is not None else list(np.unique(labels.to_numpy()))


def read_scores(raw, classes: Sequence) -> ScoredAnswers:
    """The class probabilities in a model's output on the reference data (``raw``, what pyfunc's
    ``predict`` returned); :class:`ValueError` when it holds none."""
    keys = tuple(category_key(c.item() if hasattr(c, "item") else c) for c in classes)
    if isinstance(raw, pd.DataFrame):
        names = {str(column): column for column in raw.columns}
        missing = [key for key in keys if key not in names]
        if missing:
            raise ValueError(f"the model answers fields {', '.join(names)}: no probability field for class "
                             f"{', '.join(missing)} (a field per class, named by the class, is needed)")
        scores = raw[[names[key] for key in keys]].to_numpy(dtype=np.float64)
        class_field = next((name for name, column in names.items() if name not in keys
                            and raw[column].map(category_key).isin(keys).all()), "")
        predicted = (raw[names[class_field]].map(category_key).tolist() if class_field
                     else [keys[i] for i in np.argmax(scores, axis=1)])
        return ScoredAnswers(FIELDS_ANSWER, keys, scores, predicted, fields=keys, class_field=class_field)
    scores = np.asarray(raw)
    if scores.ndim != 2 or scores.shape[1] < 2 or not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"the model answers an array of shape {scores.shape}, not one probability per class "
                         "and row: save it answering predict_proba (mlflow.sklearn.save_model(..., "
                         "pyfunc_predict_fn=\"predict_proba\")), or as a pyfunc answering one field per class")
    if scores.shape[1] != len(keys):
        raise ValueError(f"the model answers {scores.shape[1]} probabilities per row for {len(keys)} classes "
                         f"({', '.join(keys)})")
    scores = scores.astype(np.float64)
    return ScoredAnswers(ARRAY_ANSWER, keys, scores, [keys[i] for i in np.argmax(scores, axis=1)])


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |predicted - observed| share over ``bins`` bins of equal count, weighted by their rows."""
    order = np.argsort(probabilities, kind="stable")
    p, y = probabilities[order], truth[order]
    edges = np.linspace(0, p.size, bins + 1).astype(int)
    return float(sum((hi - lo) / p.size * abs(p[lo:hi].mean() - y[lo:hi].mean())
                     for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo))


def _isotonic():
    try:
        from sklearn.isotonic import IsotonicRegression
    except ImportError:
        raise ValueError("calibrating needs scikit-learn (pip install 'inferwatch[demo]')") from None
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)


def calibration_helps(scores: np.ndarray, truth: np.ndarray, seed: int = 0) -> bool:
    """Whether isotonic calibration lowers the expected calibration error on held-out folds."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if np.bincount(truth.astype(int), minlength=2).min() < 2:
        return False  # one class (or a single row of the other): nothing to learn
    raw, calibrated, held_out = [], [], []
    splits = StratifiedShuffleSplit(n_splits=CALIBRATION_SPLITS, test_size=CALIBRATION_TEST_SHARE, random_state=seed)
    for train, test in splits.split(scores, truth):
        raw.append(scores[test])
        calibrated.append(_isotonic().fit(scores[train], truth[train]).predict(scores[test]))
        held_out.append(truth[test])
    truth_all = np.concatenate(held_out)
    return (expected_calibration_error(np.concatenate(calibrated), truth_all)
            < expected_calibration_error(np.concatenate(raw), truth_all))


def fit_calibration(scores: np.ndarray, truth: np.ndarray) -> Calibration | None:
    """Isotonic calibration of one class's scores against whether the row is of that class, or
    None when it would not help (:func:`calibration_helps`)."""
    if not calibration_helps(scores, truth):
        return None
    fitted = _isotonic().fit(scores, truth)
    x, y = np.asarray(fitted.X_thresholds_, dtype=np.float64), np.asarray(fitted.y_thresholds_, dtype=np.float64)
    if x.size > MAX_CALIBRATION_POINTS:  # keep the ends and evenly spaced steps between
        keep = np.unique(np.linspace(0, x.size - 1, MAX_CALIBRATION_POINTS).round().astype(int))
        x, y = x[keep], y[keep]
    return Calibration(tuple(float(v) for v in x), tuple(float(v) for v in y))


def probabilities_reference(scored: ScoredAnswers, labels: pd.Series, positive_class: str = "") -> Probabilities:
    """Calibration and reference performance of class probabilities against the true ``labels``."""
    truth = [category_key(v.item() if hasattr(v, "item") else v) for v in labels]
    classes = scored.classes
    if len(classes) == 2:
        positive = positive_class or classes[1]  # predict_proba's second column, scikit-learn's positive class
        if positive not in classes:
            raise ValueError(f"positive class {positive!r} is not one of the classes {', '.join(classes)}")
        calibrated = [positive]
    else:
        if positive_class:
            raise ValueError("--positive-class is for two classes; more are macro-averaged")
        positive, calibrated = "", list(classes)
    truth_array = np.asarray(truth, dtype=object)
    calibration = tuple(
        fit_calibration(scored.scores[:, i], (truth_array == c).astype(np.float64)) if c in calibrated else None
        for i, c in enumerate(classes))
    probabilities = Probabilities(scored.answer, classes, scored.fields, scored.class_field, positive, calibration)
    metrics = classification_performance(scored.predicted, truth, probabilities.scored_classes)
    if undefined := [name for name in PERFORMANCE_METRICS if math.isnan(metrics[name])]:
        raise ValueError(f"{', '.join(undefined)} undefined on the reference data: the model never predicts, "
                         "or the labels never hold, the classes they are about")
    return dataclasses.replace(probabilities, reference=ReferencePerformance(len(truth), **metrics))


def build_profile(
    data: pd.DataFrame,
    predictions: Sequence | None = None,
    *,
    features: Sequence[str] | None = None,
    signature: tuple[SignatureColumn, ...] | None = None,
    model: dict[str, str] | None = None,
    bins: int = DEFAULT_BINS,
    top: int = DEFAULT_TOP,
    task: str = "auto",
    probabilities: Probabilities | None = None,
) -> Profile:
    """The reference profile of ``data`` (and of the model's ``predictions`` on it, with the class
    ``probabilities`` its answers carry)."""
    names = list(features) if features is not None else (
        [c.name for c in signature if c.name in data.columns] if signature else list(data.columns))
    missing = [name for name in names if name not in data.columns]
    if missing:
        raise ValueError(f"not columns of the data: {', '.join(missing)}")
    distributions = tuple(
        numeric_distribution(name, data[name], bins) if _is_numeric(data[name])
        else categorical_distribution(name, data[name], top)
        for name in names
    )
    profile = Profile(
        features=distributions,
        prediction=None if predictions is None else prediction_distribution(predictions, task, bins),
        columns=tuple(c.name for c in signature) if signature else tuple(names),
        signature=signature,
        model={k: v for k, v in (model or {}).items() if v},
        rows=len(data),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        probabilities=probabilities,
    )
    return parse_profile(profile_document(profile), "the built profile")  # what the proxy will read


def profile_model(data_path: str | Path, model_dir: str | Path | None = None, *, output: str | Path | None = None,
                  prediction_column: str | None = None, label_column: str | None = None, positive_class: str = "",
                  exclude: Sequence[str] = (), name: str = "", version: str = "", bins: int = DEFAULT_BINS,
                  top: int = DEFAULT_TOP, task: str = "auto") -> Path:
    """Build the profile of a data file, scored by the model when given, and write it.

    With ``label_column`` the data is labelled reference data: the model's class probabilities
    on it are calibrated against the labels (:func:`probabilities_reference`).
    """
    data = read_data(data_path)
    predictions = labels = probabilities = None
    if prediction_column is not None:
        if prediction_column not in data.columns:
            raise ValueError(f"no column {prediction_column!r} in {data_path}")
        predictions = data.pop(prediction_column).to_list()
    if label_column is not None:
        if model_dir is None or prediction_column is not None:
            raise ValueError("--labels needs --model (and no --predictions): the model's class probabilities "
                             "on the labelled data are what gets calibrated")
        if label_column not in data.columns:
            raise ValueError(f"no column {label_column!r} in {data_path}")
        labels = data.pop(label_column)
        if labels.isna().any():
            raise ValueError(f"column {label_column!r} has rows without a label: label every reference row")
    data = data.drop(columns=[c for c in exclude if c in data.columns])
    signature = flavor = None
    if model_dir is not None:
        import mlflow.pyfunc
        import yaml

        signature = read_signature(model_dir)
        flavors = yaml.safe_load((Path(model_dir) / "MLmodel").read_text()).get("flavors") or {}
        flavor = next((f for f in flavors if f != "python_function"), "python_function")
        if predictions is None:
            inputs = data[[c.name for c in signature]] if signature else data
            loaded = mlflow.pyfunc.load_model(str(model_dir))
            raw = loaded.predict(inputs)
            if labels is not None:
                scored = read_scores(raw, model_classes(loaded, labels))
                probabilities = probabilities_reference(scored, labels, positive_class)
                predictions = scored.predicted
            else:
                predictions = np.asarray(raw).tolist()
    if output is None:
        if model_dir is None:
            raise ValueError("give --output, or --model to write the profile beside the model")
        output = Path(model_dir) / PROFILE_FILE_NAME
    profile = build_profile(data, predictions, signature=signature, bins=bins, top=top,
                            task="classification" if probabilities is not None else task,
                            model={"name": name, "version": version, "flavor": flavor or ""},
                            probabilities=probabilities)
    return write_profile(profile, output)
