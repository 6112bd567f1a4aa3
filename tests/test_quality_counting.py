"""The quality counting and the profile, piece by piece (no servers): bins, formats, tokens, builder.

The request path bins long clean columns with numpy and everything else value by value; both must
agree with the profile's rule (:func:`inferwatch.contract.profile.numeric_bin`) on any input.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from flask import Response
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from inferwatch.cli import main
from inferwatch.contract import metrics as mm
from inferwatch.contract.profile import (
    OTHER,
    PROFILE_FILE_NAME,
    ProfileError,
    category_key,
    numeric_bin,
    parse_profile,
    profile_document,
    psi,
    read_profile,
)
from inferwatch.proxy.feedback import FeedbackTokens
from inferwatch.contract.inputs import InputFormat
from inferwatch.proxy.model import ModelIdentity
from inferwatch.proxy.prediction import json_format, read_prediction
from inferwatch.proxy.quality import (
    OVERLAP_BYTES,
    VECTORISE_FROM_ROWS,
    AnswerObserver,
    QualityRecorder,
    Unreadable,
    categorical_counts,
    numeric_counts,
    read_columns,
    read_predictions,
)
from inferwatch.stack.profile import build_profile, error_buckets

EDGES = (-1.0, 0.0, 0.5, 2.0)
# The reference's range: values outside it are data-quality issues (below_min, above_max).
LOW, HIGH = -1.5, 2.0
values_strategy = st.lists(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.none(),
              st.just(2.0), st.just(-1.0), st.just(LOW), st.text(max_size=2), st.booleans()),
    max_size=80,
)


def reference_counts(values) -> tuple:
    counts, missing, wrong, below, above = [0] * (len(EDGES) + 1), 0, 0, 0, 0
    for v in values:
        if v is None or (type(v) is float and math.isnan(v)):
            missing += 1
        elif type(v) in (int, float):
            counts[numeric_bin(EDGES, v)] += 1
            below += v < LOW
            above += v > HIGH
        else:
            wrong += 1
    return counts, missing, wrong, below, above, 0


@settings(max_examples=300, deadline=None)
@given(values_strategy)
def test_numeric_binning_follows_the_profiles_rule_for_any_values(values):
    assert numeric_counts(values, EDGES, np.asarray(EDGES), LOW, HIGH) == reference_counts(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-1000, 1000)),
                min_size=VECTORISE_FROM_ROWS, max_size=200))
def test_the_numpy_path_for_long_clean_columns_agrees_with_the_rule(values):
    assert numeric_counts(values, EDGES, np.asarray(EDGES), LOW, HIGH) == reference_counts(values)


def test_a_value_on_an_edge_belongs_to_the_bin_below():
    assert [numeric_bin(EDGES, v) for v in (-1.0, -0.999, 0.0, 2.0, 2.0001)] == [0, 1, 1, 3, 4]


COLUMNS = ("a", "b", "c")
KNOWN = frozenset(COLUMNS)


@pytest.mark.parametrize("payload, rows, a_values, absent, unexpected", [
    ({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}}, 2, [1, 4], {}, 0),
    ({"dataframe_split": {"columns": ["a", "x"], "data": [[1, 9]]}}, 1, [1], {"b": 1, "c": 1}, 1),
    ({"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "z": 0}]}, 2, [1, 4], {"b": 1, "c": 1}, 1),
    ({"instances": [{"a": 1, "b": 2, "c": 3}]}, 1, [1], {}, 0),
    ({"inputs": {"a": [1, 2], "b": [3, 4], "c": [5, 6]}}, 2, [1, 2], {}, 0),
    ({"inputs": {"a": 7, "b": 8, "c": 9}}, 1, [7], {}, 0),
    # Rows as lists have no column names, as MLflow sees them with a column signature.
    ({"instances": [[1, 2, 3]]}, 1, None, {"a": 1, "b": 1, "c": 1}, 3),
])
def test_every_mlflow_input_format_is_read_column_by_column(payload, rows, a_values, absent, unexpected):
    columns = read_columns(payload, json_format(payload), COLUMNS, COLUMNS, KNOWN)
    assert columns.rows == rows
    assert columns.values.get("a") is None if a_values is None else [v for v in columns.values["a"]] == a_values
    assert {k: v for k, v in columns.absent.items() if v} == absent
    assert columns.unexpected == unexpected


def test_rows_as_lists_follow_the_profiles_column_order_without_a_signature():
    columns = read_columns({"inputs": [[1, 2, 3]]}, InputFormat.INPUTS, COLUMNS, COLUMNS, None)
    assert columns.values == {"a": [1], "b": [2], "c": [3]} and columns.unexpected == 0


@pytest.mark.parametrize("payload", [
    {"inputs": "text"},
    {"instances": [[[1, 2]], 3]},
    {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}},  # ragged
    {"dataframe_split": {"data": "x"}},
    {"inputs": {"a": [1, 2], "b": [3]}},
])
def test_rows_that_cannot_be_read_say_so(payload):
    with pytest.raises(Unreadable):
        read_columns(payload, json_format(payload), COLUMNS, COLUMNS, KNOWN)


@pytest.mark.parametrize("answer, values", [
    (b'{"predictions": [0, 1]}', [0, 1]),
    (b'[2.5]', [2.5]),
    (b'{"predictions": [{"label": "a"}, {"label": "b"}]}', ["a", "b"]),
    (b'{"predictions": [[0.3]]}', [0.3]),
    (b'{"predictions": {"y": [1, 2]}}', [1, 2]),
])
def test_the_models_answers_are_read_in_every_shape_mlflow_gives(answer, values):
    assert read_predictions(answer) == values


def test_answers_with_several_outputs_per_row_cannot_be_counted():
    with pytest.raises(Unreadable):
        read_predictions(b'{"predictions": [[0.2, 0.8]]}')


def collected(reader: InMemoryMetricReader) -> dict[tuple[str, tuple], float]:
    data = reader.get_metrics_data()
    return {(metric.name, tuple(sorted(point.attributes.items()))): point.value
            for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
            for point in metric.data.data_points}


CATEGORY_INDEX = {"0": 0, "1": 1, "True": 2, "red": 3}
category_values = st.lists(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, -0.0, 1.0, 1.5, math.nan]),
              st.sampled_from(["0", "1", "red", "blue", "pink", ""]), st.lists(st.integers(0, 1), max_size=2),
              st.dictionaries(st.just("k"), st.integers(0, 1), max_size=1)),
    max_size=120,
)


def reference_categorical_counts(values, others) -> tuple:
    """Value by value, as the profile's rule says (category_key), for comparison."""
    other = len(CATEGORY_INDEX)
    counts, missing, wrong, unseen = [0] * (other + 1), 0, 0, 0
    for v in values:
        if v is None or (type(v) is float and math.isnan(v)):
            missing += 1
            continue
        i = CATEGORY_INDEX.get(category_key(v), other)
        counts[i] += 1
        if i == other:
            if type(v) in (list, dict):
                wrong += 1
            elif others is not None and category_key(v) not in others:
                unseen += 1
    return counts, missing, wrong, 0, 0, unseen


@settings(max_examples=300, deadline=None)
@given(category_values, st.sampled_from([None, frozenset({"blue"})]))
def test_categorical_counting_tallies_equal_values_once_and_keeps_true_1_and_1_0_apart(values, others):
    assert categorical_counts(values, CATEGORY_INDEX, len(CATEGORY_INDEX), others) == \
        reference_categorical_counts(values, others)


def test_the_classes_of_a_batch_are_counted_as_each_value_would_be():
    values = [0, 1] * 2500 + [True, 1.0, "1", None, math.nan, [1], "blue"]
    assert categorical_counts(values, CATEGORY_INDEX, len(CATEGORY_INDEX), frozenset({"blue"})) == \
        ([2500, 2502, 1, 0, 2], 2, 1, 0, 0, 0)


def test_a_categorical_feature_counts_its_top_categories_and_the_rest_as_other():
    data = pd.DataFrame({"colour": ["red"] * 5 + ["blue"] * 3 + ["green"], "size": [1.0, 2, 3, 4, 5, 6, 7, 8, 9]})
    profile = build_profile(data, [0, 1, 0, 1, 0, 1, 0, 1, 0], top=2)
    colour = profile.feature("colour")
    assert colour.categories == ("red", "blue") and colour.shares == (5 / 9, 3 / 9, 1 / 9)
    assert colour.bin_labels == ("red", "blue", OTHER)

    reader = InMemoryMetricReader()
    recorder = QualityRecorder(ModelIdentity(name="m", version="1", profile=profile),
                               MeterProvider(metric_readers=[reader]).get_meter("test"))
    payload = {"dataframe_records": [{"colour": "red", "size": 1}, {"colour": "pink", "size": None},
                                     {"colour": None, "size": 100}]}
    recorder.observe(read_prediction(json.dumps(payload).encode(), "application/json"), True, [1, 1, 7])
    points = collected(reader)
    model = (("inferwatch.model.name", "m"), ("inferwatch.model.version", "1"))

    def point(name, **attributes):
        return points[(name, tuple(sorted([*model, *attributes.items()])))]

    assert point(mm.MODEL_FEATURE_VALUES, **{mm.MODEL_FEATURE: "colour", mm.MODEL_BIN: "red"}) == 1
    assert point(mm.MODEL_FEATURE_VALUES, **{mm.MODEL_FEATURE: "colour", mm.MODEL_BIN: OTHER}) == 1
    assert point(mm.MODEL_FEATURE_MISSING, **{mm.MODEL_FEATURE: "colour"}) == 1
    assert point(mm.MODEL_FEATURE_MISSING, **{mm.MODEL_FEATURE: "size"}) == 1
    assert point(mm.MODEL_PREDICTION_VALUES, **{mm.MODEL_BIN: "1"}) == 2
    assert point(mm.MODEL_PREDICTION_VALUES, **{mm.MODEL_BIN: OTHER}) == 1  # a class never seen in training
    assert point(mm.MODEL_INPUT_ROWS) == 3


def test_a_large_body_measured_while_mlflow_computes_is_counted_as_one_measured_after_the_answer():
    data = pd.DataFrame({"colour": ["red"] * 5 + ["blue"] * 3 + ["green"], "size": [1.0, 2, 3, 4, 5, 6, 7, 8, 9]})
    profile = build_profile(data, [0, 1, 0, 1, 0, 1, 0, 1, 0], top=2)
    records = [{"colour": ["red", "pink", None, "blue"][i % 4], "size": [1, None, 100, "x", 4.5][i % 5]}
               for i in range(3000)]
    large = read_prediction(json.dumps({"dataframe_records": records}).encode(), "application/json")
    small = read_prediction(json.dumps({"dataframe_records": records[:3]}).encode(), "application/json")
    assert len(large.body) >= OVERLAP_BYTES > len(small.body)
    answer = Response(json.dumps({"predictions": [i % 3 for i in range(3000)]}), status=200,
                      content_type="application/json")
    figures = []
    for overlapped in (True, False):
        reader = InMemoryMetricReader()
        recorder = QualityRecorder(ModelIdentity(name="m", version="1", profile=profile),
                                   MeterProvider(metric_readers=[reader]).get_meter("test"))
        observer = AnswerObserver(recorder, None, helpers=2)
        measuring = observer.before(large) if overlapped else None
        assert (measuring is not None) is overlapped and observer.before(small) is None
        observer.after(large, answer, measuring)
        observer.close()
        figures.append(collected(reader))
    assert figures[0] == figures[1]
    assert figures[0][(mm.MODEL_INPUT_ROWS, (("inferwatch.model.name", "m"), ("inferwatch.model.version", "1")))] == 3000


def test_a_helper_measuring_pauses_before_and_between_columns_and_counts_the_same():
    """The helper hands the interpreter lock back to the request thread (still forwarding the
    body) before its work and after each column; the counts are those of one unpaused pass."""
    data = pd.DataFrame({"colour": ["red"] * 5 + ["blue"] * 3 + ["green"], "size": [1.0, 2, 3, 4, 5, 6, 7, 8, 9]})
    recorder = QualityRecorder(ModelIdentity(name="m", version="1", profile=build_profile(data, [0, 1] * 4 + [0], top=2)),
                               MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("test"))
    rows = {"dataframe_split": {"columns": ["colour", "size"], "data": [["red", 1.0], ["pink", None]] * 1000},
            "dataframe_records": [{"colour": "red", "size": 1.0}, {"colour": "blue"}] * 1000}
    for fmt, payload in rows.items():
        prediction = read_prediction(json.dumps({fmt: payload}).encode(), "application/json")
        pauses = []
        assert recorder.measure(prediction, pause=lambda: pauses.append(1)) == recorder.measure(prediction)
        assert len(pauses) == 1 + 2 * 2, fmt  # before, then each of the two columns read and counted


def test_profiles_round_trip_and_the_builder_counts_shares_with_the_proxys_rule():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=500), "k": rng.integers(0, 3, 500), "flat": np.ones(500)})
    profile = build_profile(data, rng.normal(size=500).tolist(), task="regression")
    assert parse_profile(json.loads(json.dumps(profile_document(profile)))) == profile
    x = profile.feature("x")
    counts = [0] * len(x.shares)
    for v in data["x"]:
        counts[numeric_bin(x.edges, v)] += 1
    assert tuple(c / 500 for c in counts) == x.shares
    # A constant column: one edge at the constant, so any other value shows as drift.
    assert profile.feature("flat").edges == (1.0,) and profile.feature("flat").shares == (1.0, 0.0)
    assert profile.prediction.kind == "numeric" and profile.prediction.error_buckets
    assert psi(counts, x.shares, 1e-4) == pytest.approx(0, abs=1e-12)


def test_error_buckets_are_plain_decimals_around_the_spread():
    # sd 5: from 0.1 (sd / 50) to 20 (4 sd)
    assert error_buckets(np.array([0.0, 10.0])) == (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def test_the_profile_command_reads_csv_and_parquet(tmp_path, capsys):
    data = pd.DataFrame({"x": np.arange(100.0), "y": ["a", "b"] * 50, "label": [0, 1] * 50})
    data.to_csv(tmp_path / "train.csv", index=False)
    data.to_parquet(tmp_path / "train.parquet")
    for source in ("train.csv", "train.parquet"):
        output = tmp_path / f"{source}.json"
        assert main(["profile", str(tmp_path / source), "--predictions", "label", "-o", str(output),
                     "--name", "m", "--version", "7", "--bins", "4"]) == 0
        profile = read_profile(output)
        assert [f.name for f in profile.features] == ["x", "y"]
        assert profile.feature("x").edges == (24.75, 49.5, 74.25) and profile.prediction.categories == ("0", "1")
        assert profile.model == {"name": "m", "version": "7"}
    assert main(["profile", str(tmp_path / "train.csv")]) == 2
    assert "--output" in capsys.readouterr().err


def test_a_profile_must_be_a_profile():
    with pytest.raises(ProfileError, match="not an inferwatch profile"):
        parse_profile({"format": "something", "version": 1})
    with pytest.raises(ProfileError, match="features: no features"):
        parse_profile({"format": "inferwatch-profile", "version": 1, "features": []})


def test_labels_and_classes_compare_as_text_with_whole_floats_as_integers():
    assert [category_key(v) for v in (1, 1.0, "1", True, 2.5)] == ["1", "1", "1", "True", "2.5"]


def test_tokens_verify_only_unaltered_and_carry_what_feedback_needs():
    identity = ModelIdentity(name="m", version="1")
    tokens = FeedbackTokens(b"k", identity, max_rows=3, max_age=60)
    token = tokens.issue("id1", [1, 0], now=1000.0)
    claims = tokens.verify(token, now=1010.0)
    assert (claims["id"], claims["k"], claims["p"]) == ("id1", "c", ["1", "0"])
    assert tokens.issue("id2", [0.5, 1.5], now=1000.0).count(".") == 2  # a regression token
    assert tokens.issue("id3", [0, 1, 0, 1], now=1000.0) is None  # more rows than the limit
    assert FeedbackTokens(b"other", identity, 3, 60).issue("id1", [1, 0], now=1000.0) != token


def test_the_profile_command_scores_the_data_with_the_model_and_writes_beside_it(demo_model, tmp_path):
    import shutil

    from inferwatch.stack.demo_model import training_data

    model = tmp_path / "model"
    shutil.copytree(demo_model, model, ignore=shutil.ignore_patterns(PROFILE_FILE_NAME))
    features, _ = training_data()
    features.to_csv(tmp_path / "train.csv", index=False)
    assert main(["profile", str(tmp_path / "train.csv"), "--model", str(model), "--name", "demo"]) == 0
    built, shipped = read_profile(model / PROFILE_FILE_NAME), read_profile(demo_model / PROFILE_FILE_NAME)
    assert built.model == {"name": "demo", "flavor": "sklearn"}
    assert built.signature == shipped.signature and built.features == shipped.features
    assert built.prediction == shipped.prediction  # the model's own answers on its training data
