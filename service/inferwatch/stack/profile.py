"""``inferwatch profile``: build a model's reference profile from its training data.

::

    inferwatch profile train.csv --model models/diabetes            # writes models/diabetes/inferwatch-profile.json
    inferwatch profile train.parquet --predictions label -o profile.json

Per feature (the model signature's columns, else every column of the data but the
``--predictions`` one): numeric columns get ``--bins`` quantile bins (edges at the training
quantiles, repeated edges merged) and the share of training rows in each; other columns their
``--top`` most frequent categories and their shares, the rest as "other". The predictions get the
same: the share of each class for a classifier, bins for a regressor (with absolute-error histogram
edges for the feedback metrics). With ``--model`` the model (loaded with ``mlflow.pyfunc``) scores
the data; without it, ``--predictions COLUMN`` names a column that holds them (or the true labels,
as a stand-in). The format is :mod:`inferwatch.contract.profile`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from inferwatch.contract.profile import (
    CATEGORICAL,
    CLASSES,
    MAX_BINS,
    MAX_CATEGORIES,
    NUMERIC,
    PROFILE_FILE_NAME,
    Distribution,
    Profile,
    SignatureColumn,
    category_key,
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
                        missing_share=float(1 - present.size / values.size))


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
    return Distribution(name, kind, _shares(counts), categories=tuple(str(c) for c, _ in kept),
                        missing_share=float(1 - len(present) / len(series)))


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
        raise ValueError(f"expected one prediction per row, got an array of shape {values.shape}")
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
) -> Profile:
    """The reference profile of ``data`` (and of the model's ``predictions`` on it)."""
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
    )
    return parse_profile(profile_document(profile), "the built profile")  # what the proxy will read


def profile_model(data_path: str | Path, model_dir: str | Path | None = None, *, output: str | Path | None = None,
                  prediction_column: str | None = None, exclude: Sequence[str] = (), name: str = "",
                  version: str = "", bins: int = DEFAULT_BINS, top: int = DEFAULT_TOP, task: str = "auto") -> Path:
    """Build the profile of a data file, scored by the model when given, and write it."""
    data = read_data(data_path)
    predictions = None
    if prediction_column is not None:
        if prediction_column not in data.columns:
            raise ValueError(f"no column {prediction_column!r} in {data_path}")
        predictions = data.pop(prediction_column).to_list()
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
            predictions = np.asarray(mlflow.pyfunc.load_model(str(model_dir)).predict(inputs)).tolist()
    if output is None:
        if model_dir is None:
            raise ValueError("give --output, or --model to write the profile beside the model")
        output = Path(model_dir) / PROFILE_FILE_NAME
    profile = build_profile(data, predictions, signature=signature, bins=bins, top=top, task=task,
                            model={"name": name, "version": version, "flavor": flavor or ""})
    return write_profile(profile, output)
