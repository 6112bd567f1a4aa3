"""A GenAI pyfunc for the tests (models-from-code, no weights): answers MLflow's unified LLM input
(chat, completions, embeddings) the way an OpenAI-compatible model does, deterministically.

A token is a whitespace-separated word. The answer to a chat is ``echo:`` and the words of the
last message, to a completion the prompt's words reversed; ``max_tokens`` cuts the answer
(``finish_reason`` "length", else "stop"). Every answer carries ``usage``, unless the request sets
``"omit_usage": true`` (a model that reports none); ``"fail": true`` makes the model raise.
Embeddings are four numbers per input: its word count, character count, and two of its digest.
"""

import hashlib

import mlflow
from mlflow.pyfunc import PythonModel

MODEL = "echo-llm-1"
CREATED = 1_700_000_000


def _words(text):
    return str(text).split()


def _digest(value):
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def _cut(words, max_tokens):
    if max_tokens is not None and len(words) > int(max_tokens):
        return words[: int(max_tokens)], "length"
    return words, "stop"


class EchoLLM(PythonModel):
    def predict(self, context, model_input, params=None):
        request = dict(model_input)
        if request.get("fail"):
            raise RuntimeError("the model was asked to fail")
        if "messages" in request:
            answer = self._chat(request)
        elif "prompt" in request:
            answer = self._completion(request)
        else:
            answer = self._embeddings(request)
        if request.get("omit_usage"):
            answer.pop("usage")
        return answer

    def _chat(self, request):
        messages = request["messages"]
        prompt_tokens = sum(len(_words(m.get("content", ""))) for m in messages)
        words, finish = _cut(["echo:", *_words(messages[-1].get("content", ""))], request.get("max_tokens"))
        return {
            "id": "chatcmpl-" + _digest(messages),
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                      "total_tokens": prompt_tokens + len(words)},
        }

    def _completion(self, request):
        prompts = request["prompt"] if isinstance(request["prompt"], list) else [request["prompt"]]
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, prompt in enumerate(prompts):
            prompt_tokens += len(_words(prompt))
            words, finish = _cut(_words(prompt)[::-1], request.get("max_tokens"))
            completion_tokens += len(words)
            choices.append({"index": index, "text": " ".join(words), "finish_reason": finish})
        return {
            "id": "cmpl-" + _digest(prompts),
            "object": "text_completion",
            "created": CREATED,
            "model": MODEL,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _embeddings(self, request):
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = []
        for index, text in enumerate(inputs):
            digest = _digest(text)
            vector = [float(len(_words(text))), float(len(str(text))),
                      int(digest[:4], 16) / 65535, int(digest[4:8], 16) / 65535]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(_words(text)) for text in inputs)
        return {"object": "list", "data": data, "model": MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


mlflow.models.set_model(EchoLLM())
