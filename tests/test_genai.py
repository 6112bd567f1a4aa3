"""GenAI telemetry against a real ``mlflow models serve`` of a GenAI pyfunc (tests/models/genai_model.py).

The model answers chat, completion and embedding bodies deterministically with OpenAI-shaped JSON
and a ``usage`` block (or none, when asked). The proxy's token sums, operation counts, finish
reasons and the usage it did not get are compared with what the answers themselves report, on
/metrics and through the real collector; the client span of the MLflow call carries the GenAI
attributes, and prompt and answer text only when the user opts in; ratings sent to /feedback
become the satisfaction counters.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mlflow_models import GENAI_NAME, GENAI_VERSION
from inferwatch.contract import genai as g
from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import Settings
from inferwatch.proxy.feedback import TOKEN_HEADER
from inferwatch.proxy.genai import read_answer
from inferwatch.proxy.telemetry import setup_telemetry
from support import otlp_env, parse_samples, total

OPERATION = {"messages": "chat", "prompt": "text_completion", "input": "embeddings"}
WORDS = ["the quick brown fox", "jumps over", "a lazy dog again and again", "hello there", "Grüße aus 東京 heute"]


def requests_to_send() -> list[dict]:
    """A known mix: chats (some cut off by max_tokens), completions, embeddings, an answer
    without usage, and a model that raises."""
    bodies = []
    for i, text in enumerate(WORDS):
        bodies.append({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
                       "temperature": 0.1 * i, **({"max_tokens": 2} if i % 2 else {})})
        bodies.append({"prompt": [text, text.upper()] if i % 2 else text, "max_tokens": 3})
        bodies.append({"input": [text, "x"] if i % 2 else text})
    bodies.append({"messages": [{"role": "user", "content": "no usage please"}], "omit_usage": True})
    bodies.append({"prompt": "no usage either", "omit_usage": True})
    bodies.append({"messages": [{"role": "user", "content": "fail"}], "fail": True})
    return bodies


def expected(answers: list[tuple[dict, requests.Response]]) -> dict:
    """The truth, from the answers the model gave: tokens by operation and type, finish reasons, ..."""
    truth = {"tokens": Counter(), "measured": Counter(), "calls": Counter(), "errors": Counter(),
             "reasons": Counter(), "missing": Counter()}
    for body, response in answers:
        operation = OPERATION[next(key for key in OPERATION if key in body)]
        if response.status_code != 200:
            truth["errors"][operation] += 1
            continue
        truth["calls"][operation] += 1
        document = response.json()
        usage = document.get("usage")
        if usage is None:
            truth["missing"][operation] += 1
        else:
            truth["tokens"][(operation, "input")] += usage["prompt_tokens"]
            truth["measured"][(operation, "input")] += 1
            if "completion_tokens" in usage:
                truth["tokens"][(operation, "output")] += usage["completion_tokens"]
                truth["measured"][(operation, "output")] += 1
        for choice in document.get("choices", []):
            truth["reasons"][(operation, choice["finish_reason"])] += 1
    return truth


def check(samples: dict, truth: dict, where: str) -> list[str]:
    problems = []
    for (operation, token_type), tokens in truth["tokens"].items():
        got = total(samples, "gen_ai_client_token_usage_sum", operation=operation, token_type=token_type)
        count = total(samples, "gen_ai_client_token_usage_count", operation=operation, token_type=token_type)
        if (got, count) != (tokens, truth["measured"][(operation, token_type)]):
            problems.append(f"{where}: {operation} {token_type} tokens {got} in {count}, expected {tokens} in "
                            f"{truth['measured'][(operation, token_type)]}")
    if total(samples, "gen_ai_client_token_usage_count", operation="embeddings", token_type="output"):
        problems.append(f"{where}: embeddings recorded output tokens")
    for operation in OPERATION.values():
        answered = total(samples, "gen_ai_client_operation_duration_seconds_count", operation=operation) - total(
            samples, "gen_ai_client_operation_duration_seconds_count", operation=operation, error_type="model_rejected")
        if answered != truth["calls"][operation]:
            problems.append(f"{where}: {operation} {answered} calls, expected {truth['calls'][operation]}")
        if total(samples, "gen_ai_usage_missing_total", operation=operation) != truth["missing"][operation]:
            problems.append(f"{where}: {operation} usage missing {total(samples, 'gen_ai_usage_missing_total', operation=operation)}")
    failed = total(samples, "gen_ai_client_operation_duration_seconds_count", error_type="model_rejected")
    if failed != sum(truth["errors"].values()):
        problems.append(f"{where}: {failed} failed calls, expected {sum(truth['errors'].values())}")
    for (operation, reason), count in truth["reasons"].items():
        got = total(samples, "gen_ai_response_finish_reasons_total", operation=operation, reason=reason)
        if got != count:
            problems.append(f"{where}: {operation} finish reason {reason} {got}, expected {count}")
    return problems


def test_tokens_operations_and_finish_reasons_are_exact_on_both_scrape_paths(genai_mlflow, start_collector, start_proxy):
    collector = start_collector()
    proxy = start_proxy(genai_mlflow.url, env=otlp_env(collector), model_name=GENAI_NAME, model_version=GENAI_VERSION)
    started = time.monotonic()
    answers = [(body, proxy.post("/invocations", json=body)) for body in requests_to_send()]
    elapsed = time.monotonic() - started
    assert [r.status_code for _, r in answers].count(200) == len(answers) - 1
    truth = expected(answers)
    assert truth["reasons"][("chat", "length")] >= 2 and truth["missing"]["chat"] == 1

    direct = proxy.metrics()
    problems = check(direct, truth, "/metrics")
    deadline = time.monotonic() + 20
    while True:
        via_collector = parse_samples(collector.metrics_text())
        calls = total(via_collector, "gen_ai_client_operation_duration_seconds_count")
        if calls >= len(answers) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems += check(via_collector, truth, "collector")
    assert not problems, "\n".join(problems)
    for samples in (direct, via_collector):
        seconds = total(samples, "gen_ai_client_operation_duration_seconds_sum")
        assert 0 < seconds < elapsed
        assert total(samples, "gen_ai_client_token_usage_count", model=GENAI_NAME, model_version=GENAI_VERSION,
                     response_model="echo-llm-1") == sum(truth["measured"].values())


def test_a_tabular_prediction_records_no_genai_metric(app_proxy):
    from inferwatch.stack.demo_model import SEED_EXAMPLE

    assert app_proxy.post(json=SEED_EXAMPLE).status_code == 200
    samples = app_proxy.metrics()
    assert total(samples, "gen_ai_client_operation_duration_seconds_count") == 0
    assert total(samples, "gen_ai_client_token_usage_count") == 0


@pytest.fixture
def traced_genai(genai_mlflow, monkeypatch):
    """The app in-process in front of the real GenAI model, spans kept in memory."""
    apps = []

    def make(capture: bool = False, latest: bool = False):
        if latest:
            monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", g.OPT_IN_LATEST)
        exporter = InMemorySpanExporter()
        telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(exporter)], environ={})
        app = create_app(Settings(upstream=genai_mlflow.url, model_name=GENAI_NAME, genai_capture_content=capture),
                         telemetry, start_sampler=False)
        apps.append(app)
        return app.test_client(), exporter

    yield make
    for app in apps:
        close_app(app)


def client_span(exporter):
    [span] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
    return span


CHAT = {"messages": [{"role": "user", "content": "tell me a secret story"}], "temperature": 0.5, "max_tokens": 3,
        "top_p": 0.9, "stop": "END", "model": "gpt-compatible-alias"}


def test_the_mlflow_calls_span_carries_the_genai_attributes_and_no_text_by_default(traced_genai):
    client, exporter = traced_genai()
    response = client.post("/invocations", json=CHAT)
    answer = response.get_json()
    span = client_span(exporter)
    attributes = dict(span.attributes)
    assert attributes[g.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[g.GEN_AI_SYSTEM] == g.PROVIDER and g.GEN_AI_PROVIDER_NAME not in attributes  # v1.36.0
    assert attributes[g.GEN_AI_REQUEST_MODEL] == "gpt-compatible-alias"
    assert (attributes["gen_ai.request.temperature"], attributes["gen_ai.request.max_tokens"],
            attributes["gen_ai.request.top_p"], attributes["gen_ai.request.stop_sequences"]) == (0.5, 3, 0.9, ("END",))
    assert attributes[g.GEN_AI_RESPONSE_ID] == answer["id"]
    assert attributes[g.GEN_AI_RESPONSE_MODEL] == answer["model"]
    assert attributes[g.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert attributes[g.GEN_AI_USAGE_INPUT_TOKENS] == answer["usage"]["prompt_tokens"]
    assert attributes[g.GEN_AI_USAGE_OUTPUT_TOKENS] == answer["usage"]["completion_tokens"] == 3
    assert "secret" not in json.dumps(attributes) and not span.events


def test_with_content_opted_in_the_text_is_recorded_as_each_version_records_it(traced_genai):
    client, exporter = traced_genai(capture=True)
    client.post("/invocations", json=CHAT)
    events = {event.name: dict(event.attributes) for event in client_span(exporter).events}
    assert events["gen_ai.user.message"]["content"] == "tell me a secret story"
    assert json.loads(events["gen_ai.choice"]["message"]) == {"role": "assistant", "content": "echo: tell me"}

    client, exporter = traced_genai(capture=True, latest=True)
    client.post("/invocations", json=CHAT)
    attributes = dict(client_span(exporter).attributes)
    assert attributes[g.GEN_AI_PROVIDER_NAME] == g.PROVIDER and g.GEN_AI_SYSTEM not in attributes
    assert json.loads(attributes[g.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "tell me a secret story"}]}]
    assert json.loads(attributes[g.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "echo: tell me"}], "finish_reason": "length"}]


def test_ratings_of_genai_answers_are_counted_and_their_mean_is_the_satisfaction(genai_mlflow, start_app):
    proxy = start_app(genai_mlflow.url, model_name=GENAI_NAME, feedback_score_max=5)
    ratings = [{"rating": "up"}, {"rating": "down"}, {"score": 5}, {"score": 2}]
    for rating in ratings:
        answer = proxy.post("/invocations", json={"messages": [{"role": "user", "content": "rate me"}]})
        feedback = proxy.post("/feedback", json={"token": answer.headers[TOKEN_HEADER], **rating})
        assert feedback.status_code == 200, feedback.text
    answer = proxy.post("/invocations", json={"prompt": "x"})
    for wrong, code in [({"rating": "meh"}, "invalid_rating"), ({"score": 6}, "invalid_rating"),
                        ({"label": 1}, "invalid_feedback")]:
        refused = proxy.post("/feedback", json={"token": answer.headers[TOKEN_HEADER], **wrong})
        assert (refused.status_code, refused.json["error"]["code"]) == (400, code)
    samples = proxy.metrics()
    assert total(samples, "gen_ai_feedback_ratings_total", operation="chat") == 4
    assert total(samples, "gen_ai_feedback_satisfaction_total", operation="chat") == 1 + 0 + 1 + 0.25
    assert total(samples, "model_feedback_rejected_total", reason="invalid_rating") == 2


@pytest.mark.parametrize("body, reasons, tokens", [
    (b'{"choices": [{"finish_reason": "stop"}], "usage": {"input_tokens": 3, "output_tokens": 4}}', ("stop",), (3, 4)),
    (b'{"choices": [{"finish_reason": "length"}, {"finish_reason": null}]}', ("length",), (None, None)),
    (b'{"usage": {"prompt_tokens": -1, "completion_tokens": "7"}}', (), (None, None)),
    (b'not json', (), (None, None)),
    (b'[1, 2]', (), (None, None)),
])
def test_answers_are_read_in_openai_and_responses_shapes_and_nothing_is_guessed(body, reasons, tokens):
    answer = read_answer(body)
    assert (answer.finish_reasons, (answer.input_tokens, answer.output_tokens)) == (reasons, tokens)
