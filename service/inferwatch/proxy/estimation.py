"""Estimated performance: a classifier's confusion matrix expected from its own calibrated confidence.

Ground truth comes late or never, so ``/feedback`` accuracy is often empty when it matters. A
classifier that answers class probabilities says how sure it is of every answer; once those
probabilities are calibrated on labelled reference data (``inferwatch profile --labels``), the
probability of the predicted class is the chance the answer is right, and summed over rows it is
the expected number of right answers. This is NannyML's confidence-based performance estimation
(CBPE; docs/model-quality.md#estimated-performance), done here on the request path:

* :class:`ScoreReader` reads each answered row's class probabilities from the model's answer, as
  the profile says the answer carries them (a list per row in the classes' order, or one field per
  class), the predicted class (the most probable, or the answer's class field), and calibrates them
  (:meth:`inferwatch.contract.profile.Probabilities.calibrate`);
* :class:`PerformanceEstimator` adds each row's expected confusion-matrix cells to plain float
  totals under one lock, read by observable counters at collection (as
  :class:`~inferwatch.proxy.quality.QualityRecorder` does): the rows, the expected right answers
  (the calibrated probability of the predicted class), and for each class precision, recall and F1
  are about (the positive class of two, every class of more) the expected true positives (that
  class's probability on the rows predicted as it), the rows predicted as it, and the expected rows
  truly of it (its probability on every row).

Estimated accuracy is then ``correct / rows``, precision ``true_positive / predicted``, recall
``true_positive / actual`` and F1 ``2 true_positive / (predicted + actual)``: ratios of sums, which
Prometheus computes over every instance and worker (rules/performance.yml), exact however the rows
were spread. The estimate sees covariate shift (inputs moving to where the model is less sure); it
cannot see concept drift (the same inputs meaning something else), which only labels show: the
feedback token carries each row's expected correctness, so ``/feedback`` can count the estimate on
exactly the labelled rows beside the realized accuracy.
"""

from __future__ import annotations

import threading

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from inferwatch.contract import metrics as mm
from inferwatch.contract.profile import ARRAY_ANSWER, Probabilities, category_key

_NUMBERS = (int, float)


class UnreadableScores(ValueError):
    """An answer that does not carry the class probabilities the profile describes."""


class ScoreReader:
    """Reads the answers of one model as its profile's ``probabilities`` describe them.

    Everything the profile fixes (the answer's shape, the positive class, the calibrations) is
    looked up once here, not per row; :meth:`read` gives what
    :meth:`inferwatch.contract.profile.Probabilities.calibrate` would (a test checks they agree).
    """

    def __init__(self, probabilities: Probabilities):
        self.probabilities = probabilities
        classes = probabilities.classes
        self._classes = classes
        self._width = len(classes)
        self._array = probabilities.answer == ARRAY_ANSWER
        self._fields = probabilities.fields
        self._class_field = probabilities.class_field
        self._index = {c: i for i, c in enumerate(classes)}
        calibration = probabilities.calibration or (None,) * len(classes)
        self._binary = len(classes) == 2
        self._positive = classes.index(probabilities.positive_class) if self._binary else -1
        self._calibrate_positive = calibration[self._positive] if self._binary else None
        self._calibration = calibration

    def read(self, values: list) -> tuple[list[str], list[int], list[list[float]]]:
        """(predicted class, its index, calibrated probabilities) of each row of ``values`` (the
        answer's list of rows); :class:`UnreadableScores` when a row is not as the profile says."""
        predicted: list[str] = []
        indices: list[int] = []
        calibrated: list[list[float]] = []
        for row in values:
            scores = self._scores(row)
            if self._class_field:
                k = self._index.get(category_key(row.get(self._class_field)), -1)
                if k < 0:
                    raise UnreadableScores(f"the class field {self._class_field!r} holds no known class")
            elif self._binary:
                k = 0 if scores[0] >= scores[1] else 1  # the first of equal maxima, as numpy's argmax
            else:
                k = max(range(self._width), key=scores.__getitem__)
            predicted.append(self._classes[k])
            indices.append(k)
            calibrated.append(self._calibrated(scores))
        return predicted, indices, calibrated

    def _scores(self, row: object) -> list:
        if self._array:
            if type(row) is not list or len(row) != self._width:
                raise UnreadableScores(f"expected a list of {self._width} class probabilities per row")
            scores = row
        else:
            if type(row) is not dict:
                raise UnreadableScores("expected an object of class probabilities per row")
            try:
                scores = [row[field] for field in self._fields]
            except KeyError as missing:
                raise UnreadableScores(f"no probability field {missing}") from None
        for value in scores:
            # a finite int or float: NaN and infinities fail value - value == 0
            if type(value) not in _NUMBERS or value - value != 0:
                raise UnreadableScores(f"a class probability is not a finite number: {value!r}")
        return scores

    def _calibrated(self, scores: list) -> list[float]:
        if not self._binary:
            return self.probabilities.calibrate(scores)
        raw = scores[self._positive]
        function = self._calibrate_positive
        p = function(raw) if function is not None else min(max(raw, 0.0), 1.0)
        return [p, 1.0 - p] if self._positive == 0 else [1.0 - p, p]


def read_scored(values: list, probabilities: Probabilities) -> tuple[list[str], list[int], list[list[float]]]:
    """:meth:`ScoreReader.read` for a one-off reading (tests, tools)."""
    return ScoreReader(probabilities).read(values)


class PerformanceEstimator:
    """Sums of expected confusion-matrix cells for one model; observable counters read them."""

    def __init__(self, probabilities: Probabilities, attributes: dict[str, str], meter: Meter):
        classes = probabilities.classes
        scored = probabilities.scored_classes
        # class index -> its place among the scored classes (None: not scored)
        self._place = [scored.index(c) if c in scored else None for c in classes]
        self._places = [(classes.index(c), j) for j, c in enumerate(scored)]
        self._lock = threading.Lock()
        self._rows = 0
        self._correct = 0.0
        self._true_positive = [0.0] * len(scored)
        self._predicted = [0] * len(scored)
        self._actual = [0.0] * len(scored)
        self._register(meter, attributes, scored)

    def count(self, indices: list[int], calibrated: list[list[float]]) -> None:
        """Add answered rows: each row's predicted class index and calibrated probabilities."""
        place, places = self._place, self._places
        with self._lock:
            self._rows += len(indices)
            for k, p in zip(indices, calibrated):
                self._correct += p[k]
                j = place[k]
                if j is not None:
                    self._predicted[j] += 1
                    self._true_positive[j] += p[k]
                for i, j in places:
                    self._actual[j] += p[i]

    def _register(self, meter: Meter, model: dict[str, str], scored: tuple[str, ...]) -> None:
        by_class = [{**model, mm.MODEL_CLASS: c} for c in scored]

        def totals(read):
            def callback(_options: CallbackOptions) -> list[Observation]:
                with self._lock:
                    values = read()
                return [Observation(v, a) for v, a in zip(values, by_class)]
            return callback

        def one(read):
            return lambda _options: [Observation(read(), model)]

        meter.create_observable_counter(mm.MODEL_ESTIMATED_ROWS, [one(lambda: self._rows)], unit="{row}",
                                        description="Answered rows whose class probabilities were read.")
        meter.create_observable_counter(mm.MODEL_ESTIMATED_CORRECT, [one(lambda: self._correct)], unit="{row}",
                                        description="Expected right answers: the calibrated probability of "
                                                    "each row's predicted class, summed.")
        meter.create_observable_counter(mm.MODEL_ESTIMATED_TRUE_POSITIVE, [totals(lambda: list(self._true_positive))],
                                        unit="{row}", description="Expected true positives per class.")
        meter.create_observable_counter(mm.MODEL_ESTIMATED_PREDICTED, [totals(lambda: list(self._predicted))],
                                        unit="{row}", description="Rows predicted as each class.")
        meter.create_observable_counter(mm.MODEL_ESTIMATED_ACTUAL, [totals(lambda: list(self._actual))],
                                        unit="{row}", description="Expected rows truly of each class.")


def register_reference(probabilities: Probabilities | None, rows: int, model: dict[str, str], meter: Meter) -> None:
    """Constant gauges: the reference profile's rows (the drift rules' reference sample size) and
    the model's performance on the labelled reference data (the estimate's alert compares with it)."""
    rows_observation = [Observation(rows, model)]
    meter.create_observable_gauge(mm.MODEL_REFERENCE_ROWS, [lambda _options: rows_observation], unit="{row}",
                                  description="Rows of the reference profile.")
    if probabilities is None or probabilities.reference is None:
        return
    observations = [Observation(value, {**model, mm.MODEL_PERFORMANCE_METRIC: name})
                    for name, value in probabilities.reference.metrics().items()]
    meter.create_observable_gauge(mm.MODEL_REFERENCE_PERFORMANCE, [lambda _options: observations], unit="1",
                                  description="Accuracy, precision, recall and F1 on the labelled reference data.")
