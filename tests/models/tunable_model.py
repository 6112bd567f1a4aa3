"""A test model whose latency and failures are set per request through MLflow params.

Served by a real ``mlflow models serve`` (models-from-code), it makes the model server slow
(``{"params": {"delay_s": 2}}``) or makes the model raise (``{"params": {"fail": true}}``), the
two upstream faults a real model can produce; ``{"params": {"answer_bytes": 1000000}}`` makes its
answer that large (each row's prediction a string), as a model answering with long texts would.
"""

import time

import mlflow.pyfunc
from mlflow.models import set_model


class TunableModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        params = params or {}
        if params.get("fail"):
            raise RuntimeError("the tunable model was asked to fail")
        time.sleep(float(params.get("delay_s", 0.0)))
        answer_bytes = int(params.get("answer_bytes", 0))
        if answer_bytes:
            return ["x" * (answer_bytes // len(model_input))] * len(model_input)
        return [0] * len(model_input)


set_model(TunableModel())
