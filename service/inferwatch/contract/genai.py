"""The OpenTelemetry GenAI semantic conventions, as inferwatch implements them for MLflow's LLM input.

Pinned: OpenTelemetry semantic conventions **v1.36.0** by default and **v1.37.0** with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` (docs/gen-ai/gen-ai-metrics.md and
gen-ai-spans.md of open-telemetry/semantic-conventions at those tags). The conventions are in
development; their transition plan asks instrumentations to keep emitting v1.36.0 (or older) by
default and the latest experimental version only when the user opts in. Between the two,
inferwatch's output differs in the provider attribute (``gen_ai.system`` in v1.36.0,
``gen_ai.provider.name`` from v1.37.0) and in how opted-in prompt and answer text is recorded
(span events ``gen_ai.<role>.message`` and ``gen_ai.choice`` in v1.36.0; the span attributes
``gen_ai.input.messages`` and ``gen_ai.output.messages`` from v1.37.0). Metric names, units,
bucket boundaries and every other attribute are the same in both.

The proxy is MLflow's client, so the *client* instruments apply: ``gen_ai.client.token.usage``
and ``gen_ai.client.operation.duration``, with the attributes on the client span of the MLflow call.

Data only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

from inferwatch.contract.inputs import InputFormat

SEMCONV_DEFAULT = "1.36.0"
SEMCONV_LATEST = "1.37.0"
# The OTEL_SEMCONV_STABILITY_OPT_IN value that selects SEMCONV_LATEST.
OPT_IN_LATEST = "gen_ai_latest_experimental"
# The contrib instrumentations' switch for recording prompt and answer text (off by default, as
# the conventions require: content may hold personal data).
CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Instrument names (semantic conventions) and inferwatch's own GenAI instruments.
GEN_AI_CLIENT_TOKEN_USAGE = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"
GEN_AI_FINISH_REASONS = "inferwatch.gen_ai.response.finish_reasons"
GEN_AI_USAGE_MISSING = "inferwatch.gen_ai.usage.missing"
GEN_AI_RATINGS = "inferwatch.gen_ai.feedback.ratings"
GEN_AI_SATISFACTION = "inferwatch.gen_ai.feedback.satisfaction"

# Attribute keys (semantic conventions).
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"  # v1.37.0
GEN_AI_SYSTEM = "gen_ai.system"  # v1.36.0
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # v1.37.0, opt-in content
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"  # v1.37.0, opt-in content
# The request fields of the unified LLM input, and the attribute each becomes on the span.
GEN_AI_REQUEST_PARAMETERS = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "stop": "gen_ai.request.stop_sequences",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}
# inferwatch's own attribute: one finish reason per counted choice.
GEN_AI_FINISH_REASON = "inferwatch.gen_ai.finish_reason"

TOKEN_INPUT = "input"
TOKEN_OUTPUT = "output"
# gen_ai.provider.name / gen_ai.system: the model is served by MLflow, not a well-known provider.
PROVIDER = "mlflow"

# gen_ai.operation.name of each LLM input format.
OPERATIONS = {
    InputFormat.CHAT: "chat",
    InputFormat.COMPLETIONS: "text_completion",
    InputFormat.EMBEDDINGS: "embeddings",
}
# Finish reasons counted by name (OpenAI's, which MLflow's chat types use); any other is "other".
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")
OTHER = "other"
# The finish reason of an answer cut off by its token limit.
LENGTH = "length"
# Distinct gen_ai.response.model values kept as labels per process; later ones are "other".
MAX_RESPONSE_MODELS = 16

# Bucket boundaries the conventions give.
TOKEN_USAGE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
OPERATION_DURATION_BUCKETS_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                                      40.96, 81.92)
