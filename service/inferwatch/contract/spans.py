"""The attribute keys inferwatch sets on its server spans and inference records.

The proxy sets them, ``inferwatch traces`` shows and searches by them, the collector's tail
sampling keeps a trace by :data:`EXEMPLAR` (observability/otel-collector/config.yaml, checked by
tests/test_collector_config.py). Named once here so that each of those reads the same key.
"""

from __future__ import annotations

# X-Request-Id of the answer (inferwatch.proxy.correlation).
REQUEST_ID = "inferwatch.request.id"
# True on a server span whose trace the collector keeps so that it can be an exemplar.
EXEMPLAR = "inferwatch.exemplar"
# How a prediction ended: a PredictionOutcome value (inferwatch.contract.outcomes).
OUTCOME = "inferwatch.prediction.outcome"
# The input format MLflow was sent (inferwatch.contract.inputs) and the rows it holds.
INPUT_FORMAT = "inferwatch.prediction.input_format"
ROW_COUNT = "inferwatch.prediction.rows"
# The model server route a prediction was forwarded to.
MODEL_ROUTE = "inferwatch.model.route"
