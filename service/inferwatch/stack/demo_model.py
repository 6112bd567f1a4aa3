"""A small demo model: logistic regression on the seed's eight Pima diabetes columns.

The training data is generated deterministically (standardized features, labels from a fixed
logistic rule), so nothing is downloaded and every machine trains the same model. The model is
saved with ``mlflow.sklearn.save_model`` and a signature, ready for ``mlflow models serve``, with
its reference profile (``inferwatch-profile.json``, :mod:`inferwatch.stack.profile`) beside it.
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


def training_data():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(_SEED)
    features = rng.standard_normal((_ROWS, len(PIMA_COLUMNS)))
    logits = features @ np.asarray(_TRUE_WEIGHTS) - 0.6 + rng.normal(0.0, 0.5, _ROWS)
    labels = (logits > 0).astype(int)
    return pd.DataFrame(features, columns=list(PIMA_COLUMNS)), labels


def save_demo_model(directory: str | Path) -> Path:
    """Train and save the model into ``directory`` (which must not exist yet, as MLflow wants),
    and its reference profile beside it."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from inferwatch.contract.profile import PROFILE_FILE_NAME, write_profile
    from inferwatch.stack.profile import build_profile, read_signature

    features, labels = training_data()
    model = LogisticRegression(max_iter=200).fit(features, labels)
    predictions = model.predict(features)
    signature = infer_signature(features, predictions)
    path = Path(directory)
    mlflow.sklearn.save_model(model, str(path), signature=signature)
    profile = build_profile(features, predictions.tolist(), signature=read_signature(path),
                            model={"name": DEMO_MODEL_NAME, "version": DEMO_MODEL_VERSION, "flavor": "sklearn"})
    write_profile(profile, path / PROFILE_FILE_NAME)
    return path
