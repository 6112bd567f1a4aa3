"""Service-level objectives: what counts as a good prediction, how many must be good, and when to alert.

One spec per SLO (:class:`SLO`): the objective, the period, and the service-level indicator (SLI)
as data, the share of *bad* events among *valid* events. Everything else is rendered from these
specs by :mod:`inferwatch.render.slo_rules` (recording rules for every alert window, error budget
remaining, multiwindow multi-burn-rate alerts with their texts), :mod:`inferwatch.render.alertmanager`
(page and ticket routed apart, the ticket inhibited while the page of the same SLO fires) and
:mod:`inferwatch.render.grafana` (the SLO row). They reach the renderers as
:attr:`inferwatch.contract.thresholds.Thresholds.slos`, beside every other threshold. After
editing::

    python -m inferwatch.render --write

The defaults (docs/slo.md explains each choice):

* ``availability``: 99 % of valid predictions succeed over 30 days. A prediction is *valid* unless
  the proxy refused it as the client's fault (:data:`CLIENT_ERROR_REASONS`: too large, wrong
  content type, invalid JSON, invalid input): those neither burn the budget nor dilute it. Every
  other failure reason is bad, ``model_rejected`` included (MLflow answers 4xx for schema errors
  and for exceptions inside the model alike, and a model that raises is the model's fault), and so
  is any reason added later (a new failure burns the budget until someone decides otherwise).
* ``latency``: 95 % of predictions are answered within 2 s over 30 days, read from the latency
  histogram's bucket at 2 s (a bucket edge) over its count, on the prediction routes, leaving out
  4xx answers (the client's mistakes and the model's refusals are answered fast and would dilute
  the share; they are the availability SLO's business).

Alert windows and factors (:data:`BURN_RATE_WINDOWS`) are the Google SRE workbook's ("Alerting on
SLOs", multiwindow multi-burn-rate): a pair fires when both its long and its short window burn
the error budget faster than ``factor`` times the rate that would spend it exactly in the period.
The factor follows from the share of the period's budget the pair guards: 2 % of a 30-day budget
spent within 1 h is a burn rate of 14.4.

Data only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inferwatch.contract import durations
from inferwatch.contract.metrics import LATENCY_BUCKETS_SECONDS
from inferwatch.contract.outcomes import PredictionOutcome

# Failure reasons (the `reason` label of prediction_failure_by_reason_total) that are the client's
# fault (PredictionOutcome.client_fault): the client sent something no model could answer. The
# availability SLO leaves them out of good and bad alike.
CLIENT_ERROR_REASONS = tuple(outcome.value for outcome in PredictionOutcome if outcome.client_fault)

PAGE = "page"
TICKET = "ticket"
SEVERITIES = (PAGE, TICKET)



class InvalidSLOError(ValueError):
    """An SLO spec that cannot be rendered; names the SLO, the field and what is wrong."""

    def __init__(self, slo: str, field: str, problem: str):
        self.slo = slo
        self.field = field
        self.problem = problem
        super().__init__(f"SLO {slo!r}: {field} {problem}")


def seconds(duration: str) -> int:
    """``"30d"`` -> 2592000 (:func:`inferwatch.contract.durations.seconds`, whole seconds)."""
    return int(durations.seconds(duration))


@dataclass(frozen=True)
class BurnRateWindow:
    """One multiwindow alert condition: both windows burn faster than the factor."""

    severity: str  # PAGE or TICKET
    long: str  # the window that carries the meaning: enough budget is gone
    short: str  # the window that makes the alert reset soon after the burn stops
    budget_share: float  # the share of the period's budget this pair guards, spent within `long`

    def factor(self, period: str) -> float:
        """The burn rate above which this pair fires: budget_share * period / long."""
        return round(self.budget_share * seconds(period) / seconds(self.long), 6)


# The SRE workbook's table for a 30-day period, as Sloth generates it: page when 2 % of the budget
# goes within 1 h (14.4x) or 5 % within 6 h (6x); ticket when 10 % goes within 1 d (3x) or 3 d (1x).
BURN_RATE_WINDOWS = (
    BurnRateWindow(PAGE, "1h", "5m", 0.02),
    BurnRateWindow(PAGE, "6h", "30m", 0.05),
    BurnRateWindow(TICKET, "1d", "2h", 0.10),
    BurnRateWindow(TICKET, "3d", "6h", 0.10),
)


@dataclass(frozen=True)
class AvailabilitySLI:
    """Bad: failed predictions whose reason is not the client's. Valid: successes and bad ones."""

    client_error_reasons: tuple[str, ...] = CLIENT_ERROR_REASONS


@dataclass(frozen=True)
class LatencySLI:
    """Bad: predictions slower than ``threshold_seconds``. Valid: the prediction requests counted."""

    # Must be a bucket edge of http_request_duration_seconds (contract.metrics.LATENCY_BUCKETS_SECONDS):
    # the SLI reads the bucket at exactly this edge. The same 2 s as HighPredictionLatency's.
    threshold_seconds: float = 2
    # Which requests count: the prediction routes ...
    routes: str = 'route=~"/predict|/invocations"'
    # ... without the 4xx answers (the client's mistakes, the model's refusals: fast, and the
    # availability SLO's business).
    statuses: str = 'status!~"4.."'


@dataclass(frozen=True)
class SLO:
    """One service-level objective, per model (the model labels of the thresholds)."""

    name: str  # the `slo` label of every series and alert rendered from it
    alert: str  # the alert's name; page and ticket share it and differ by `severity`
    objective: float  # share of valid events that must be good, 0 < objective < 1
    sli: AvailabilitySLI | LatencySLI
    period: str = "30d"  # the rolling window the objective and the error budget are measured over

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise InvalidSLOError(self.name, "name", "must be lower case letters, digits and _")
        if not 0 < self.objective < 1:
            raise InvalidSLOError(self.name, "objective", f"{self.objective} is not between 0 and 1")
        try:
            period = seconds(self.period)
        except ValueError as error:
            raise InvalidSLOError(self.name, "period", str(error)) from None
        if period <= max(seconds(w.long) for w in BURN_RATE_WINDOWS):
            raise InvalidSLOError(self.name, "period", f"{self.period} must be longer than every alert window")
        if isinstance(self.sli, LatencySLI) and float(self.sli.threshold_seconds) not in LATENCY_BUCKETS_SECONDS:
            raise InvalidSLOError(self.name, "sli.threshold_seconds",
                                  f"{self.sli.threshold_seconds} is not a bucket edge of the latency histogram")

    @property
    def error_budget(self) -> float:
        """The share of valid events allowed to be bad: 1 - objective (0.01 for 99 %)."""
        return round(1 - self.objective, 12)


SLOS = (
    SLO("availability", "PredictionAvailabilityBudgetBurn", 0.99, AvailabilitySLI()),
    SLO("latency", "PredictionLatencyBudgetBurn", 0.95, LatencySLI()),
)
