"""A small demo model: logistic regression on the seed's eight Pima diabetes columns.

The training data is generated deterministically (standardized features, labels from a fixed
logistic rule), so nothing is downloaded and every machine trains the same model. The model is
saved with ``mlflow.sklearn.save_model`` and a signature, ready for ``mlflow models serve``, with
its reference profile (``inferwatch-profile.json``, :mod:`inferwatch.stack.profile`) beside it.

``probabilities=True`` saves the same model answering ``predict_proba`` (``[[p0, p1]]`` per
row) and profiles it on labelled reference rows drawn apart from the training rows, as
``inferwatch profile reference.csv --model DIR --labels Outcome`` would: the profile then holds
the calibration of its probabilities, and the proxy estimates its accuracy, precision, recall and
F1 from them (docs/model-quality.md#estimated-performance).
"""

from __future__ import annotations

from pathlib import Path

PIMA_COLUMNS = (
    "Pregnancies", "Glucose", "BloodPressure", "SkinThickness",
    "Insulin", "BMI", "DiabetesPedigreeFunction", "Age",
)
# Weights of the rule that labels the synthetic rows (Glucose, BMI and age matter most).
_TRUE_WEIGHTS = (0.4, 1.1, -0.1, 0.05, -0.15, 0.7, 0.3, 0.35)
_SEED = 20240517
_ROWS = 768  # as many as the original Pima data set
DEMO_MODEL_NAME = "diabetes-demo"
DEMO_MODEL_VERSION = "1"

# The seed's README payload: one standardized row.
SEED_EXAMPLE = {
    "dataframe_split": {
        "columns": list(PIMA_COLUMNS),
        "data": [[-0.844, -0.876, -1.024, -1.264, -1.259, -1.245, -0.696, -0.956]],
    }
}


# Rows of labelled reference data the probabilities are calibrated on (drawn apart from training).
_REFERENCE_SEED = 20240518
LABEL_COLUMN = "Outcome"


def true_labels(features, rng):
    """Labels of standardized rows by the fixed rule, with its noise (the concept the model learns)."""
    import numpy as np

    logits = np.asarray(features) @ np.asarray(_TRUE_WEIGHTS) - 0.6 + rng.normal(0.0, 0.5, len(features))
    return (logits > 0).astype(int)


def training_data(rows: int = _ROWS, seed: int = _SEED):
    """``rows`` standardized rows and their labels, deterministic for a ``seed``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, len(PIMA_COLUMNS)))
    return pd.DataFrame(features, columns=list(PIMA_COLUMNS)), true_labels(features, rng)


def save_demo_model(directory: str | Path, probabilities: bool = False) -> Path:
    """Train and save the model into ``directory`` (which must not exist yet, as MLflow wants),
    and its reference profile beside it; ``probabilities``: answering ``predict_proba``."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from inferwatch.contract.profile import PROFILE_FILE_NAME, write_profile
    from inferwatch.stack.profile import build_profile, probabilities_reference, read_scores, read_signature

    features, labels = training_data()
    model = LogisticRegression(max_iter=200).fit(features, labels)
    path = Path(directory)
    identity = {"name": DEMO_MODEL_NAME, "version": DEMO_MODEL_VERSION, "flavor": "sklearn"}
    if not probabilities:
        predictions = model.predict(features)
        mlflow.sklearn.save_model(model, str(path), signature=infer_signature(features, predictions))
        profile = build_profile(features, predictions.tolist(), signature=read_signature(path), model=identity)
    else:
        mlflow.sklearn.save_model(model, str(path), signature=infer_signature(features, model.predict_proba(features)),
                                  pyfunc_predict_fn="predict_proba")
        reference, reference_labels = training_data(seed=_REFERENCE_SEED)
        scored = read_scores(model.predict_proba(reference), model.classes_)
        profile = build_profile(reference, scored.predicted, signature=read_signature(path), model=identity,
                                task="classification",
                                probabilities=probabilities_reference(scored, pd_series(reference_labels)))
    write_profile(profile, path / PROFILE_FILE_NAME)
    return path


def pd_series(values):
    import pandas as pd

    return pd.Series(values, name=LABEL_COLUMN)
