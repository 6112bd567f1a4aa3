"""A classifier from code that answers class probabilities as fields, overconfident on purpose.

Rows are the demo model's eight standardized Pima columns (inferwatch.stack.demo_model); the
true rule labels a row "yes" when ``w . x - 0.6 + N(0, 0.5) > 0``, so ``P(yes | x)`` is
``Phi(2 * margin)``, about ``sigmoid(3.4 * margin)``. This model answers ``sigmoid(8 * margin)``:
it ranks rows exactly as the truth does (the right predicted class) but is far too sure of itself,
so its probabilities estimate nothing until calibrated (``inferwatch profile --labels``). It answers
a DataFrame, which MLflow serves as one object per row::

    {"predictions": [{"no": 0.12, "yes": 0.88, "label": "yes"}, ...]}
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

COLUMNS = ("Pregnancies", "Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI",
           "DiabetesPedigreeFunction", "Age")
WEIGHTS = np.asarray((0.4, 1.1, -0.1, 0.05, -0.15, 0.7, 0.3, 0.35))
SHARPNESS = 8.0


class OverconfidentClassifier(PythonModel):
    def predict(self, context, model_input, params=None):
        margin = model_input[list(COLUMNS)].to_numpy(dtype=np.float64) @ WEIGHTS - 0.6
        yes = 1.0 / (1.0 + np.exp(-SHARPNESS * margin))
        return pd.DataFrame({"no": 1.0 - yes, "yes": yes, "label": np.where(yes > 0.5, "yes", "no")})


mlflow.models.set_model(OverconfidentClassifier())
