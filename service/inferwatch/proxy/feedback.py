"""Ground truth, stateless: a signed token on every answer, true labels sent back with it later.

Every answered prediction carries two response headers: ``X-Request-Id`` (the id of this
prediction, also the server span's ``inferwatch.request.id``) and ``Inferwatch-Feedback-Token``.
The token holds what judging the prediction needs, signed with HMAC-SHA256::

    v1.<base64url(JSON {"id": request id, "m": model, "v": version, "t": unix time,
                        "k": "c" (classes) or "r" (regression), "p": [prediction per row],
                        "e": [expected correctness per row]})>.<base64url(MAC)>

(``e``, the calibrated probability of each row's predicted class, only when the answers carry
class probabilities: the profile's ``probabilities``.)

When the true labels are known, the client sends them with the token::

    POST /feedback  {"token": "<the header>", "labels": [1, 0, null]}   # one per row; null: unknown
    POST /feedback  {"token": "<the header>", "label": 1}                # a one-row prediction

A GenAI answer (chat, completion, embeddings) carries a token too (``"k": "g"`` and the
operation instead of predictions), which takes a rating instead of labels::

    POST /feedback  {"token": "<the header>", "rating": "up"}    # or "down"
    POST /feedback  {"token": "<the header>", "score": 4}        # 1 to --feedback-score-max

counted in ``gen_ai_feedback_ratings_total`` and, as a share from 0 (down, the lowest score) to 1
(up, the highest), in ``gen_ai_feedback_satisfaction_total``: their ratio is the satisfaction rate.

Any instance that shares the key (``--feedback-key-file``) verifies the token and counts the
labels, with nothing kept in memory: ``model_feedback_labels_total``, and
``model_feedback_correct_total`` for classes or ``model_feedback_absolute_error`` (histogram) and
``model_feedback_squared_error_total`` for regressors. For a classifier whose answers carry
class probabilities it also counts, per class that precision, recall and F1 are about, the labels
of rows predicted as it, the labels naming it and those that are both
(``model_feedback_predicted_total``, ``_actual_total``, ``_true_positive_total``), and the estimate
on exactly the labelled rows (``model_feedback_expected_correct_total``, the sum of their ``e``):
realized and estimated accuracy of the same rows, whose gap is the sign of concept drift. Without
a key file each process makes its own key: feedback must then reach the instance that answered
the prediction.

Answers: 200 ``{"request_id", "model", "model_version", "labels"}`` (``"satisfaction"`` for a
rating); 400 ``invalid_json``, ``invalid_feedback`` (shape, label count), ``invalid_label``,
``invalid_rating``, ``invalid_token`` (not a token);
404 ``unknown_prediction`` (the MAC does not verify: not issued with this key); 409
``wrong_model`` (issued for another model or version); 410 ``token_expired`` (older than
``--feedback-max-age``); 413 ``payload_too_large``; 415 ``unsupported_media_type``; and, as for a
prediction's body, 400 ``invalid_input`` (a bad Content-Length or Transfer-Encoding), 400
``incomplete_body`` and 408 ``client_timeout``. Each refusal is counted in
``model_feedback_rejected_total{reason}``.

Accepted labels are also written to the inference log, when it is on, as a record of their own
with the prediction's request id (:meth:`inferwatch.proxy.inference_log.InferenceLog.feedback`).

Floods are bounded: a body of at most :data:`MAX_BODY_BYTES`, at most ``--feedback-max-rows``
rows per token (a prediction with more rows gets no token), and the token's age. A token is not
single-use: the same feedback sent twice is counted twice (nothing is stored to tell).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Response, request
from opentelemetry.metrics import Meter

from inferwatch.contract import metrics as mm
from inferwatch.contract.outcomes import FEEDBACK_REJECTION_REASONS, FeedbackRejection, PredictionOutcome
from inferwatch.contract.genai import GEN_AI_OPERATION_NAME, GEN_AI_RATINGS, GEN_AI_SATISFACTION, OPERATIONS
from inferwatch.contract.profile import CLASSES, category_key
from inferwatch.proxy import request_body
from inferwatch.proxy.config import Settings
from inferwatch.proxy import errors
from inferwatch.proxy.errors import ProxyError, refusal
from inferwatch.proxy.inference_log import InferenceLog
from inferwatch.proxy.model import ModelIdentity

TOKEN_HEADER = "Inferwatch-Feedback-Token"
TOKEN_VERSION = "v1"
MAX_BODY_BYTES = 64 * 1024
# Absolute-error histogram edges when the profile gives none.
DEFAULT_ERROR_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100)
CLASSIFICATION, REGRESSION, GENAI = "c", "r", "g"
# A GenAI answer's rating: thumbs up or down, or a score from 1 to --feedback-score-max.
RATINGS = {"up": 1.0, "down": 0.0}
# Decimals of a row's expected correctness in the token (a millionth of a label per row).
EXPECTED_DIGITS = 6



def load_key(settings: Settings) -> bytes:
    """The signing key: the key file's content, else random bytes for this process alone."""
    if settings.feedback_key_file:
        return Path(settings.feedback_key_file).read_bytes().strip()
    return os.urandom(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rejected(status: int, reason: FeedbackRejection, message: str) -> ProxyError:
    return ProxyError(status, reason.value, message)


class FeedbackTokens:
    """Issues and verifies the tokens of one model's predictions."""

    def __init__(self, key: bytes, identity: ModelIdentity, max_rows: int, max_age: float):
        self._key = key
        self._identity = identity
        self.max_rows = max_rows  # an answer with more predictions gets no token
        self._max_age = max_age
        prediction = identity.profile.prediction if identity.profile else None
        self._task = None if prediction is None else (CLASSIFICATION if prediction.kind == CLASSES else REGRESSION)

    def _mac(self, signed: str) -> bytes:
        return hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest()

    def issue(self, request_id: str, predictions: list, now: float | None = None,
              expected: list[float] | None = None) -> str | None:
        """The token for one answer, or None (too many rows, or answers that cannot be judged).

        ``expected``: each row's expected correctness (the calibrated probability of its predicted
        class), carried for the estimate on the labelled rows.
        """
        if not predictions or len(predictions) > self.max_rows:
            return None
        task = self._task or (CLASSIFICATION if all(type(p) in (str, int, bool) for p in predictions) else REGRESSION)
        if task == CLASSIFICATION:
            values: list = [category_key(p) for p in predictions]
        elif all(type(p) in (int, float) and math.isfinite(p) for p in predictions):
            values = [float(p) for p in predictions]
        else:
            return None
        claims = {"id": request_id, "m": self._identity.name, "v": self._identity.version,
                  "t": int(time.time() if now is None else now), "k": task, "p": values}
        if expected is not None:
            claims["e"] = [round(e, EXPECTED_DIGITS) for e in expected]
        return self._signed(claims)

    def issue_rating(self, request_id: str, operation: str, now: float | None = None) -> str:
        """The token of a GenAI answer: it takes a rating, not labels."""
        claims = {"id": request_id, "m": self._identity.name, "v": self._identity.version,
                  "t": int(time.time() if now is None else now), "k": GENAI, "o": operation}
        return self._signed(claims)

    def _signed(self, claims: dict) -> str:
        signed = TOKEN_VERSION + "." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        return signed + "." + _b64(self._mac(signed))

    def verify(self, token: object, now: float | None = None) -> dict:
        """The token's claims; :class:`ProxyError` (the refusal) when it is not a valid one."""
        if not isinstance(token, str) or token.count(".") != 2 or not token.startswith(TOKEN_VERSION + "."):
            raise _rejected(400, FeedbackRejection.INVALID_TOKEN,
                            f"token must be the {TOKEN_HEADER} header of a prediction answer")
        signed, _, mac = token.rpartition(".")
        try:
            given = _unb64(mac)
        except (ValueError, UnicodeEncodeError):
            raise _rejected(400, FeedbackRejection.INVALID_TOKEN, "the token's signature is not base64url") from None
        if not hmac.compare_digest(given, self._mac(signed)):
            raise _rejected(404, FeedbackRejection.UNKNOWN_PREDICTION,
                            "no prediction of this deployment has this token "
                            "(forged, altered, or signed with another feedback key)")
        claims = json.loads(_unb64(signed.split(".")[1]))
        if (claims["m"], claims["v"]) != (self._identity.name, self._identity.version):
            raise _rejected(409, FeedbackRejection.WRONG_MODEL,
                            f"the token is for model {claims['m']} version {claims['v']}; "
                            "send it to that model's proxy")
        age = (time.time() if now is None else now) - claims["t"]
        if age > self._max_age:
            raise _rejected(410, FeedbackRejection.TOKEN_EXPIRED,
                            f"the prediction is {int(age)} s old; feedback is taken "
                            f"for {int(self._max_age)} s")
        return claims


def _labels(document: object, rows: int) -> list:
    if not isinstance(document, dict) or "token" not in document or ("labels" in document) == ("label" in document):
        raise _rejected(400, FeedbackRejection.INVALID_FEEDBACK,
                        'expected {"token": ..., "labels": [...]} or {"token": ..., "label": ...}')
    labels = document["labels"] if "labels" in document else [document["label"]]
    if not isinstance(labels, list):
        raise _rejected(400, FeedbackRejection.INVALID_FEEDBACK, "labels must be a list, one label (or null) per row")
    if len(labels) != rows:
        raise _rejected(400, FeedbackRejection.INVALID_FEEDBACK,
                        f"{len(labels)} labels for a prediction of {rows} rows")
    return labels


def satisfaction(document: dict, score_max: int) -> float:
    """A rating as a share from 0 to 1: thumbs up 1, down 0; a score s of 1..max is (s - 1) / (max - 1)."""
    if ("rating" in document) == ("score" in document) or "labels" in document or "label" in document:
        raise _rejected(400, FeedbackRejection.INVALID_FEEDBACK,
                        'a GenAI answer takes {"token": ..., "rating": "up" or "down"} '
                        f'or {{"token": ..., "score": 1 to {score_max}}}')
    if "rating" in document:
        if document["rating"] not in RATINGS:
            raise _rejected(400, FeedbackRejection.INVALID_RATING, 'rating must be "up" or "down"')
        return RATINGS[document["rating"]]
    score = document["score"]
    if type(score) not in (int, float) or not 1 <= score <= score_max:
        raise _rejected(400, FeedbackRejection.INVALID_RATING, f"score must be a number from 1 to {score_max}")
    return (score - 1) / (score_max - 1)


@dataclass
class Judged:
    """What one feedback request's labels say about its prediction."""

    given: int = 0
    correct: int = 0
    errors: list[float] = field(default_factory=list)  # regression: |prediction - label| per label
    # Classes whose answers carry probabilities: the estimate on the labelled rows, and per class
    # (the classes precision, recall and F1 are about) labels predicted as it, naming it, both.
    expected_correct: float = 0.0
    predicted: dict[str, int] = field(default_factory=dict)
    actual: dict[str, int] = field(default_factory=dict)
    true_positive: dict[str, int] = field(default_factory=dict)


def _judge(claims: dict, labels: list, scored: frozenset[str]) -> Judged:
    """The labels judged against the token's predictions; :class:`ProxyError` for a label of the
    wrong kind. ``scored``: the classes counted one by one."""
    judged = Judged()
    expected = claims.get("e")
    for i, (predicted, label) in enumerate(zip(claims["p"], labels)):
        if label is None:
            continue
        if claims["k"] == CLASSIFICATION:
            if type(label) not in (str, int, float, bool):
                raise _rejected(400, FeedbackRejection.INVALID_LABEL,
                                f"labels[{i}]: a class must be a string, number or boolean")
            actual = category_key(label)
            right = actual == predicted
            judged.correct += right
            if expected is not None:
                judged.expected_correct += expected[i]
            if predicted in scored:
                judged.predicted[predicted] = judged.predicted.get(predicted, 0) + 1
                if right:
                    judged.true_positive[predicted] = judged.true_positive.get(predicted, 0) + 1
            if actual in scored:
                judged.actual[actual] = judged.actual.get(actual, 0) + 1
        else:
            if type(label) not in (int, float) or not math.isfinite(label):
                raise _rejected(400, FeedbackRejection.INVALID_LABEL,
                                f"labels[{i}]: a regression label must be a finite number")
            judged.errors.append(abs(predicted - label))
        judged.given += 1
    return judged


class FeedbackEndpoint:
    """``POST /feedback``: verifies the token, counts the labels."""

    def __init__(self, tokens: FeedbackTokens, identity: ModelIdentity, meter: Meter, client_timeout: float,
                 score_max: int = 5, inference_log: InferenceLog | None = None):
        self._tokens = tokens
        self._client_timeout = client_timeout
        self._score_max = score_max
        self._inference_log = inference_log
        self._identity = identity
        model = identity.attributes
        self._model = model
        self._labels = meter.create_counter(mm.MODEL_FEEDBACK_LABELS, unit="{label}", description="Feedback labels counted.")
        self._correct = meter.create_counter(mm.MODEL_FEEDBACK_CORRECT, unit="{label}", description="Labels equal to the prediction.")
        self._squared = meter.create_counter(mm.MODEL_FEEDBACK_SQUARED_ERROR, unit="1", description="Sum of squared errors.")
        prediction = identity.profile.prediction if identity.profile else None
        buckets = (prediction.error_buckets if prediction is not None and prediction.error_buckets
                   else DEFAULT_ERROR_BUCKETS)
        self._absolute = meter.create_histogram(
            mm.MODEL_FEEDBACK_ABSOLUTE_ERROR, unit="1", description="Absolute error of regression predictions.",
            explicit_bucket_boundaries_advisory=[float(b) for b in buckets])
        self._rejected = meter.create_counter(mm.MODEL_FEEDBACK_REJECTED, unit="{request}",
                                              description="Feedback requests refused, by reason.")
        self._reason_attributes = {reason: {**model, mm.ERROR_TYPE: reason} for reason in FEEDBACK_REJECTION_REASONS}
        self._ratings = meter.create_counter(GEN_AI_RATINGS, unit="{rating}", description="Ratings of GenAI answers.")
        self._satisfaction = meter.create_counter(GEN_AI_SATISFACTION, unit="1",
                                                  description="Sum of GenAI answers' ratings, each from 0 to 1.")
        self._labels.add(0, model)
        if prediction is None or prediction.kind == CLASSES:  # a regressor has no "correct" series
            self._correct.add(0, model)
        for operation in OPERATIONS.values():
            self._ratings.add(0, {**model, GEN_AI_OPERATION_NAME: operation})
            self._satisfaction.add(0, {**model, GEN_AI_OPERATION_NAME: operation})
        for attributes in self._reason_attributes.values():
            self._rejected.add(0, attributes)
        probabilities = identity.profile.probabilities if identity.profile else None
        self._scored = frozenset(probabilities.scored_classes if probabilities else ())
        self._class_attributes = {c: {**model, mm.MODEL_CLASS: c} for c in sorted(self._scored)}
        if probabilities is not None:
            self._expected = meter.create_counter(
                mm.MODEL_FEEDBACK_EXPECTED_CORRECT, unit="{label}",
                description="Expected right answers of the labelled rows (the estimate on them).")
            self._by_class = {
                "predicted": meter.create_counter(mm.MODEL_FEEDBACK_PREDICTED, unit="{label}",
                                                  description="Labels of rows predicted as each class."),
                "actual": meter.create_counter(mm.MODEL_FEEDBACK_ACTUAL, unit="{label}",
                                               description="Labels naming each class."),
                "true_positive": meter.create_counter(mm.MODEL_FEEDBACK_TRUE_POSITIVE, unit="{label}",
                                                      description="Labels equal to the predicted class, per class."),
            }
            self._expected.add(0, model)
            for counter in self._by_class.values():
                for attributes in self._class_attributes.values():
                    counter.add(0, attributes)

    def handle(self) -> Response:
        try:
            return self._accept()
        except ProxyError as error:
            self._rejected.add(1, self._reason_attributes[error.code])
            response = Response(error.body(), status=error.status, content_type="application/json")
            if error.status == 413:
                response.headers["Connection"] = "close"  # the rest of the body is discarded, then the connection closes
            return response

    def _accept(self) -> Response:
        # The body is read as a prediction's is: the limit from Content-Length first, chunked
        # bodies, slow and silent clients (proxy.request_body).
        environ = request.environ
        length = request_body.declared_length(environ)
        if length is not None and length > MAX_BODY_BYTES:
            raise request_body.too_large(environ, MAX_BODY_BYTES)
        if request.mimetype != "application/json":
            raise refusal(415, PredictionOutcome.UNSUPPORTED_MEDIA_TYPE, "send feedback as application/json")
        body = request_body.read_body(environ, length, MAX_BODY_BYTES, self._client_timeout)
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise errors.invalid_json(str(error)) from None
        except RecursionError:  # as deep as the interpreter's stack allows, give or take the frames above
            raise errors.invalid_json("the JSON is nested too deeply") from None
        if not isinstance(document, dict) or "token" not in document:
            raise _rejected(400, FeedbackRejection.INVALID_FEEDBACK, 'expected {"token": ..., "labels": [...]}')
        claims = self._tokens.verify(document["token"])
        if claims["k"] == GENAI:
            return self._rate(claims, document)
        labels = _labels(document, len(claims["p"]))
        judged = _judge(claims, labels, self._scored)
        self._labels.add(judged.given, self._model)
        if claims["k"] == CLASSIFICATION:
            self._correct.add(judged.correct, self._model)
            if self._scored:
                self._count_classes(judged, "e" in claims)
        else:
            for error in judged.errors:
                self._absolute.record(error, self._model)
            self._squared.add(sum(e * e for e in judged.errors), self._model)
        if self._inference_log is not None:
            self._inference_log.feedback(claims["id"], labels, claims["p"])
        answer = {"request_id": claims["id"], "model": claims["m"], "model_version": claims["v"],
                  "labels": judged.given}
        return Response(json.dumps(answer), status=200, content_type="application/json")

    def _rate(self, claims: dict, document: dict) -> Response:
        share = satisfaction(document, self._score_max)
        attributes = {**self._model, GEN_AI_OPERATION_NAME: claims["o"]}
        self._ratings.add(1, attributes)
        self._satisfaction.add(share, attributes)
        answer = {"request_id": claims["id"], "model": claims["m"], "model_version": claims["v"], "satisfaction": share}
        return Response(json.dumps(answer), status=200, content_type="application/json")

    def _count_classes(self, judged: Judged, estimated: bool) -> None:
        if estimated:
            self._expected.add(judged.expected_correct, self._model)
        for kind, counts in (("predicted", judged.predicted), ("actual", judged.actual),
                             ("true_positive", judged.true_positive)):
            for c, n in counts.items():
                self._by_class[kind].add(n, self._class_attributes[c])
