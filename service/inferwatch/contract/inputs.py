"""MLflow's scoring input, as the proxy names it: the API's routes, content types and input formats.

MLflow's scoring server (``mlflow/pyfunc/scoring_server``, MLflow 3.17) is the judge of its input;
these names are what the proxy *recognises* in order to observe a request (the ``format`` label,
the rows), never a list of what it lets through. A body of no format named here still goes to
MLflow, which decides, and is labelled ``other``.

Data only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

import enum

# MLflow's scoring route, where the proxy forwards every prediction.
MLFLOW_INVOCATIONS = "/invocations"
# The routes that take a prediction: the seed's name for it, and MLflow's own.
PREDICTION_ROUTES = ("/predict", MLFLOW_INVOCATIONS)
# MLflow's scoring API besides predictions, forwarded as they are (GET).
SCORING_API_ROUTES = ("/ping", "/health", "/version")

# Content types MLflow's scoring server reads (it compares them exactly, case included).
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"


class InputFormat(enum.Enum):
    """How a prediction request carries its input; the value is the ``format`` label."""

    # JSON bodies keyed by one of MLflow's tabular or tensor input fields
    DATAFRAME_SPLIT = "dataframe_split"
    DATAFRAME_RECORDS = "dataframe_records"
    INSTANCES = "instances"
    INPUTS = "inputs"
    # MLflow's unified LLM input (OpenAI-shaped; answered without a "predictions" wrapper)
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    # bodies that are not JSON
    CSV = "csv"
    PARQUET = "parquet"
    # anything else: a body of no format above, or one the proxy refused before reading it
    OTHER = "other"

    @property
    def is_llm(self) -> bool:
        return self in LLM_FORMATS


# The JSON key of each tabular/tensor format (MLflow: exactly one of them, plus "params").
TABULAR_KEYS = {
    "dataframe_split": InputFormat.DATAFRAME_SPLIT,
    "dataframe_records": InputFormat.DATAFRAME_RECORDS,
    "instances": InputFormat.INSTANCES,
    "inputs": InputFormat.INPUTS,
}
# The unified LLM input's keys, in the order they decide the format when several are present.
# MLflow checks them before the tabular keys: a body with any of them is LLM input.
LLM_KEYS = (
    ("messages", InputFormat.CHAT),
    ("prompt", InputFormat.COMPLETIONS),
    ("input", InputFormat.EMBEDDINGS),
)
LLM_FORMATS = frozenset(fmt for _, fmt in LLM_KEYS)
