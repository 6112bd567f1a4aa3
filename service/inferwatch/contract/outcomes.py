"""How a prediction ends, and why feedback is refused: the ``reason`` labels, defined once.

:class:`PredictionOutcome` is every way a prediction request ends; each failure's value is the
``error.type`` attribute and the ``reason`` label of ``prediction_failure_by_reason_total``, and
its :attr:`~PredictionOutcome.client_fault` says whether the client sent something no model could
answer, which the availability SLO leaves out (:mod:`inferwatch.contract.slo`).
:class:`FeedbackRejection` is every reason ``POST /feedback`` refuses a request for, besides those
of the body itself (:data:`BODY_FAULTS`).

Data only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

import enum


class PredictionOutcome(enum.Enum):
    """How a prediction request ended; the value is the ``error.type``/``reason`` of failures."""

    client_fault: bool

    def __new__(cls, value: str, client_fault: bool = False):
        member = object.__new__(cls)
        member._value_ = value
        member.client_fault = client_fault
        return member

    SUCCESS = "success"
    # The client's faults: the proxy, or MLflow itself, refused a request no model could answer.
    PAYLOAD_TOO_LARGE = "payload_too_large", True
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", True
    INVALID_JSON = "invalid_json", True
    INVALID_INPUT = "invalid_input", True
    # The body did not arrive: the client's doing, but a slow or broken network looks the same,
    # so these burn the error budget.
    INCOMPLETE_BODY = "incomplete_body"
    CLIENT_TIMEOUT = "client_timeout"
    # MLflow refused the input (a schema error, an exception inside the model).
    MODEL_REJECTED = "model_rejected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    # Anything the proxy did not foresee: still a counted failure with a JSON answer (500).
    INTERNAL_ERROR = "internal_error"


FAILURES = tuple(outcome for outcome in PredictionOutcome if outcome is not PredictionOutcome.SUCCESS)
# Reasons a request body itself is refused for, by a prediction and by feedback alike.
BODY_FAULTS = (
    PredictionOutcome.PAYLOAD_TOO_LARGE, PredictionOutcome.UNSUPPORTED_MEDIA_TYPE, PredictionOutcome.INVALID_JSON,
    PredictionOutcome.INVALID_INPUT, PredictionOutcome.INCOMPLETE_BODY, PredictionOutcome.CLIENT_TIMEOUT,
)


class FeedbackRejection(enum.Enum):
    """Why ``POST /feedback`` refused a request whose body arrived (the ``reason`` label)."""

    INVALID_FEEDBACK = "invalid_feedback"  # not the shape feedback has, or a label count that does not fit
    INVALID_LABEL = "invalid_label"
    INVALID_RATING = "invalid_rating"
    INVALID_TOKEN = "invalid_token"  # not a token at all
    UNKNOWN_PREDICTION = "unknown_prediction"  # not signed with this deployment's key
    WRONG_MODEL = "wrong_model"
    TOKEN_EXPIRED = "token_expired"


# Every reason of model_feedback_rejected_total.
FEEDBACK_REJECTION_REASONS = (*(reason.value for reason in FeedbackRejection),
                              *(outcome.value for outcome in BODY_FAULTS))
