"""The MLflow models the tests build themselves, besides the demo model (inferwatch.stack.demo_model).

* :func:`save_mixed_model`: a scikit-learn pipeline on columns of every tabular type (strings with
  non-ASCII text, integers, floats, booleans), saved with its signature and reference profile;
* :func:`save_genai_model`: a GenAI pyfunc from code (tests/models/genai_model.py) that answers
  chat, completion and embedding bodies deterministically, with known token usage;
* :func:`save_tensor_model`: a pyfunc from code (tests/models/tensor_model.py) whose signature takes
  two named float tensors, one of them nested;
* :func:`save_probability_model`: a pyfunc from code (tests/models/probability_model.py) answering
  overconfident class probabilities as fields, profiled by ``inferwatch profile --labels`` on
  labelled reference rows, so its calibration is fitted the way a user's would be.

Each is saved into a directory that must not exist yet (as MLflow wants) and served by a real
``mlflow models serve`` in the fixtures of conftest.py.
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).parent / "models"

MIXED_COLUMNS = ("city", "visits", "spend", "member")
MIXED_CITIES = ("Zürich", "São Paulo", "東京", "Kraków", "Reykjavík", "Lyon")
MIXED_NAME, MIXED_VERSION = "churn-mixed", "2"
GENAI_NAME, GENAI_VERSION = "echo-llm", "1"
TENSOR_NAME, TENSOR_VERSION = "tensor-sum", "1"
PROBABILITY_NAME, PROBABILITY_VERSION = "overconfident", "1"
LABEL_COLUMN = "Outcome"


def mixed_training_data(rows: int = 400, seed: int = 11):
    """A city (text), visits (integer), spend (float) and member (boolean); churn from a fixed rule."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "city": rng.choice(MIXED_CITIES, rows),
        "visits": rng.integers(0, 30, rows),
        "spend": rng.gamma(2.0, 50.0, rows).round(2),
        "member": rng.random(rows) < 0.4,
    })
    churn = ((frame["spend"] < 80) & ~frame["member"]) | (frame["visits"] < 3)
    return frame, churn.astype(int).to_numpy()


def save_mixed_model(directory: str | Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from inferwatch.contract.profile import PROFILE_FILE_NAME, write_profile
    from inferwatch.stack.profile import build_profile, read_signature

    frame, churn = mixed_training_data()
    model = Pipeline([
        ("prepare", ColumnTransformer([("city", OneHotEncoder(handle_unknown="ignore"), ["city"])],
                                      remainder="passthrough")),
        ("classify", LogisticRegression(max_iter=1000)),
    ]).fit(frame, churn)
    predictions = model.predict(frame)
    path = Path(directory)
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(frame, predictions))
    profile = build_profile(frame, predictions.tolist(), signature=read_signature(path),
                            model={"name": MIXED_NAME, "version": MIXED_VERSION, "flavor": "sklearn"})
    write_profile(profile, path / PROFILE_FILE_NAME)
    return path


def save_genai_model(directory: str | Path) -> Path:
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(directory), python_model=str(MODELS / "genai_model.py"))
    return Path(directory)


def save_tensor_model(directory: str | Path) -> Path:
    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float64"), (-1, 2), "a"), TensorSpec(np.dtype("float64"), (-1, 2, 2), "b")]),
        outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]),
    )
    mlflow.pyfunc.save_model(str(directory), python_model=str(MODELS / "tensor_model.py"), signature=signature)
    return Path(directory)


def probability_rows(count: int, seed: int, shifted: bool = False):
    """Demo rows and their true labels ("yes"/"no"); ``shifted``: a covariate shift towards the
    decision boundary (rows shrunk to 0.35 of their spread around a point where the rule's margin
    is 0), where the model is right less often, while the rule that labels them stays the same."""
    import numpy as np

    from inferwatch.stack.demo_model import training_data, true_labels

    rows, _ = training_data(count, seed)
    if shifted:
        weights = np.asarray((0.4, 1.1, -0.1, 0.05, -0.15, 0.7, 0.3, 0.35))
        rows = rows * 0.35 + 0.6 * weights / (weights @ weights)
    labels = true_labels(rows.to_numpy(), np.random.default_rng(seed + 1))
    return rows, np.where(labels == 1, "yes", "no")


def save_probability_model(directory: str | Path) -> Path:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from inferwatch.cli import main

    path = Path(directory)
    reference, labels = probability_rows(2000, seed=101)
    output = pd_frame({"no": [0.5], "yes": [0.5], "label": ["no"]})
    mlflow.pyfunc.save_model(str(path), python_model=str(MODELS / "probability_model.py"),
                             signature=infer_signature(reference.head(1), output))
    data = reference.assign(**{LABEL_COLUMN: labels})
    data.to_csv(path.parent / "reference.csv", index=False)
    assert main(["profile", str(path.parent / "reference.csv"), "--model", str(path), "--labels", LABEL_COLUMN,
                 "--name", PROBABILITY_NAME, "--version", PROBABILITY_VERSION]) == 0
    return path


def pd_frame(columns: dict):
    import pandas as pd

    return pd.DataFrame(columns)
