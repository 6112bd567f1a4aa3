"""otel-collector/config.yaml holds exactly the processors rendered from the mapping table."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "otel-collector" / "config.yaml"
sys.path.insert(0, str(ROOT / "service"))

from inferwatch.contract.metrics import MAPPINGS  # noqa: E402
from inferwatch.render import collector as collector_config  # noqa: E402

REGENERATE = "regenerate with: python -m inferwatch.render --write"


def load_config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def test_config_yaml_holds_the_rendered_block_verbatim():
    assert collector_config.render_processors() in CONFIG.read_text(encoding="utf-8"), REGENERATE


def test_transform_statements_in_config_yaml_equal_the_rendered_ones():
    groups = load_config()["processors"][collector_config.TRANSFORM_PROCESSOR]["metric_statements"]

    assert groups == [
        {"context": group.context, "statements": list(group.statements)}
        for group in collector_config.statement_groups()
    ], REGENERATE
    assert [s for group in groups for s in group["statements"]] == (
        collector_config.ottl_statements()
    )


def test_filter_in_config_yaml_drops_every_metric_outside_the_contract():
    conditions = load_config()["processors"][collector_config.FILTER_PROCESSOR]["metric_conditions"]

    assert conditions == [collector_config.filter_condition()], REGENERATE
    for mapping in MAPPINGS:
        assert f'"{mapping.prometheus_name}"' in conditions[0]


def test_metrics_pipeline_runs_the_contract_processors_after_memory_limiter():
    pipeline = load_config()["service"]["pipelines"]["metrics"]

    assert pipeline["processors"] == [
        "memory_limiter",
        collector_config.TRANSFORM_PROCESSOR,
        collector_config.FILTER_PROCESSOR,
    ]


def test_every_contract_metric_is_derived_renamed_and_shaped():
    statements = collector_config.ottl_statements()

    for mapping in MAPPINGS:
        target = f'where metric.name == "{mapping.prometheus_name}"'
        shaped = [s for s in statements if s.endswith(target) or f"{target} and" in s]
        assert any(s.startswith("aggregate_on_attributes(") for s in shaped), mapping
        assert f'set(metric.unit, "") {target}' in shaped, mapping


def test_a_count_mapping_extracts_the_histogram_count_as_a_monotonic_counter():
    statements = collector_config.ottl_statements()

    assert (
        'extract_count_metric(true, ".http_requests_total")'
        ' where metric.name == "http.server.request.duration"'
    ) in statements
    assert (
        'set(metric.name, "http_requests_total")'
        ' where metric.name == "http.server.request.duration.http_requests_total"'
    ) in statements


def test_ottl_strings_escape_quotes_and_backslashes():
    assert collector_config.ottl_string('say "hi" \\o/') == r'"say \"hi\" \\o/"'


def test_ottl_floats_always_carry_a_point_and_never_an_exponent():
    assert collector_config.ottl_float(100) == "100.0"
    assert collector_config.ottl_float(1 / (1024 * 1024)) == "0.00000095367431640625"
    assert collector_config.ottl_float(1e16) == "10000000000000000.0"


def test_write_replaces_only_the_generated_block(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "processors:\n"
        f"  {collector_config.BEGIN_MARKER}\n  stale: {{}}\n  {collector_config.END_MARKER}\n"
        "  batch: {}\n",
        encoding="utf-8",
    )

    (tmp_path / collector_config.COLLECTOR_CONFIG).parent.mkdir(parents=True)
    config.rename(tmp_path / collector_config.COLLECTOR_CONFIG)
    config = tmp_path / collector_config.COLLECTOR_CONFIG

    [(path, text)] = collector_config.committed_files(tmp_path).items()

    assert path == config
    assert text == "processors:\n" + collector_config.render_processors() + "  batch: {}\n"


def test_the_sampler_keeps_traces_slower_than_the_latency_alert_threshold():
    from inferwatch.contract.thresholds import THRESHOLDS

    policies = load_config()["processors"]["tail_sampling/errors_slow_sample"]["policies"]
    slow = next(p for p in policies if p["type"] == "latency")["latency"]["threshold_ms"]
    default_ms = int(slow.rsplit(":-", 1)[1].rstrip("}"))
    assert default_ms == THRESHOLDS.latency_seconds * 1000


def _default(value: str) -> str:
    """The default of a ``${env:NAME:-default}`` reference."""
    return value.rsplit(":-", 1)[1].rstrip("}")


def test_the_sampler_keeps_the_traces_the_proxy_marks_as_exemplars():
    from inferwatch.contract.spans import EXEMPLAR as ATTR_EXEMPLAR

    policies = load_config()["processors"]["tail_sampling/errors_slow_sample"]["policies"]
    [marked] = [p for p in policies if p["type"] == "boolean_attribute"]
    assert marked["boolean_attribute"] == {"key": ATTR_EXEMPLAR, "value": True}
    assert [p["type"] for p in policies] == ["status_code", "latency", "boolean_attribute", "probabilistic"]


def test_the_exporter_serves_exemplars_and_traces_go_to_jaeger_by_default():
    config = load_config()
    assert config["exporters"]["prometheus/contract"]["enable_open_metrics"] is True
    assert _default(config["service"]["pipelines"]["traces"]["exporters"]) == "[otlp_grpc/traces]"
    jaeger = yaml.safe_load((ROOT / "observability" / "jaeger" / "config.yaml").read_text())
    assert _default(config["exporters"]["otlp_grpc/traces"]["endpoint"]) == _default(
        jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])


def test_the_logs_pipeline_takes_the_inference_log_to_a_file_after_memory_limiter():
    config = load_config()
    pipeline = config["service"]["pipelines"]["logs"]
    assert pipeline["receivers"] == ["otlp"]
    assert pipeline["processors"][0] == "memory_limiter"
    assert _default(pipeline["exporters"]) == "[file/inference_log]"
    assert config["exporters"]["file/inference_log"]["path"].startswith("${env:OTELCOL_LOGS_FILE:-")


def test_every_collector_the_project_starts_writes_its_logs_beside_its_traces(tmp_path):
    from inferwatch.stack.processes import CollectorPorts, collector_env

    env = collector_env(CollectorPorts(), tmp_path / "traces.jsonl")
    assert env["OTELCOL_LOGS_FILE"] == str(tmp_path / "inference-log" / "otlp.jsonl")
