"""A tensor-input pyfunc for the tests (models-from-code): two named tensors in, one number per row out.

Its signature (tests/mlflow_models.py) declares ``a`` as float64 of shape (-1, 2) and ``b`` as
float64 of shape (-1, 2, 2); MLflow hands the model a dict of numpy arrays built from ``inputs``
(columns by name) or ``instances`` (rows by name). The answer for each row is the sum of its
``a`` plus the sum of its ``b``.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class TensorSum(PythonModel):
    def predict(self, context, model_input, params=None):
        a = np.asarray(model_input["a"], dtype=np.float64)
        b = np.asarray(model_input["b"], dtype=np.float64)
        return a.reshape(len(a), -1).sum(axis=1) + b.reshape(len(b), -1).sum(axis=1)


mlflow.models.set_model(TensorSum())
