"""The Prometheus configuration and rules: rendered from the thresholds, valid, unit-tested by promtool."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from alerting_stack import PROMETHEUS_DIR, REPO, tool
from inferwatch.contract import thresholds
from inferwatch.contract.metrics import LATENCY_BUCKETS_SECONDS, MAPPINGS, MARKER_METRIC
from inferwatch.contract.thresholds import THRESHOLDS
from inferwatch.render.alertmanager import group_by
from inferwatch.render.prometheus_rules import rule_files, rule_groups
from inferwatch.render.rules import UnknownAlertError
from inferwatch.render.text import InvalidDurationError

RULES_DIR = PROMETHEUS_DIR / "rules"
TESTS_DIR = PROMETHEUS_DIR / "tests"
GROUP_FILES = sorted(group.file_name for group in rule_groups())


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def alerts_by_name(text: str) -> dict[str, dict]:
    return {rule["alert"]: rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule}


def test_the_committed_rule_files_are_the_rendering_of_the_thresholds():
    assert sorted(p.name for p in RULES_DIR.glob("*.yml")) == GROUP_FILES
    for name, text in rule_files().items():
        assert (RULES_DIR / name).read_text() == text, (
            f"{RULES_DIR / name} differs from THRESHOLDS: run python -m inferwatch.render --write")


def test_promtool_accepts_prometheus_yml_and_finds_every_rule_file():
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(GROUP_FILES)} rule files found" in result.stdout


def test_promtool_accepts_every_rule_file():
    result = promtool("check", "rules", *(str(RULES_DIR / name) for name in GROUP_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_group_has_its_own_promtool_test_file():
    for name in GROUP_FILES:
        test_file = TESTS_DIR / name.replace(".yml", "_test.yml")
        assert test_file.is_file(), f"no unit tests for rules/{name}"
        assert yaml.safe_load(test_file.read_text())["rule_files"][0] == f"../rules/{name}"


@pytest.mark.parametrize("test_file", sorted(p.name for p in TESTS_DIR.glob("*_test.yml")))
def test_promtool_rule_unit_tests_pass(test_file):
    result = promtool("test", "rules", str(TESTS_DIR / test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_promtool_test_has_a_sentence_for_a_name():
    for test_file in TESTS_DIR.glob("*_test.yml"):
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            assert len(test.get("name", "").split()) >= 5, f"{test_file.name}: unnamed or terse test {test.get('name')!r}"


def test_prometheus_yml_scrapes_the_collector_only_and_keeps_the_services_job_and_instance():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "5s"
    [job] = config["scrape_configs"]
    assert job["honor_labels"] is True, "the collector's job/instance (service.name, service.instance.id) kept"
    [static] = job["static_configs"]
    assert static["targets"] == ["127.0.0.1:8889"], "the collector's exporter, and only it"
    assert config["rule_files"] == ["rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    # The rules take any job name: none names the scrape job, or any job.
    for text in rule_files().values():
        assert job["job_name"] not in text
        assert "job=" not in "".join(expressions(text)), text


def expressions(text: str) -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


# Every series name a rule may select.
SELECTED = sorted({*(m.prometheus_name + suffix for m in MAPPINGS for suffix in ("", "_bucket", "_count", "_sum")),
                   "up", MARKER_METRIC}, key=len, reverse=True)
RECORDED = {rule["record"] for text in rule_files().values() for group in yaml.safe_load(text)["groups"]
            for rule in group["rules"] if "record" in rule}


def reads_recorded_series_only(expr: str) -> bool:
    """An expression over recording rules' series only (narrowed and kept to inferwatch's when
    they were recorded): the SLO group's alerts, period ratio and budget."""
    names = set(re.findall(r"(?<![\w:])([a-zA-Z_][\w]*:[\w:]+)", expr))
    return not selectors_in(expr) and bool(names) and names <= RECORDED


def selectors_in(expr: str) -> list[tuple[str, str]]:
    """(series name, its matchers) of every series an expression selects."""
    pattern = re.compile(rf"\b({'|'.join(SELECTED)})(?![\w:])(\{{[^}}]*\}})?")
    return [(match.group(1), match.group(2) or "") for match in pattern.finditer(expr)]


def test_the_selector_narrows_every_series_every_rule_reads():
    narrowed = thresholds.Thresholds(selector='env="prod"')
    for name, text in rule_files(narrowed).items():
        for expr in expressions(text):
            if reads_recorded_series_only(expr):
                continue
            selected = selectors_in(expr)
            assert selected, expr
            for series, matchers in selected:
                assert 'env="prod"' in matchers, f"{name}: {series} is not narrowed in {expr}"


def test_every_series_a_rule_reads_is_kept_only_with_inferwatchs_marker():
    marker = 'target_info{telemetry_distro_name="inferwatch"}'
    for name, text in rule_files().items():
        for expr in [expr for expr in expressions(text) if not reads_recorded_series_only(expr)]:
            reads = [series for series, _ in selectors_in(expr) if series != MARKER_METRIC]
            assert expr.count(marker) >= len(reads) > 0, f"{name}: a series without the marker in {expr}"


def test_adding_a_model_label_is_one_change_that_reaches_every_per_model_sum_and_the_email_grouping():
    per_model = thresholds.Thresholds(model_labels=("job", "model_version"))
    for name in ("predictions.yml", "recording.yml"):
        for expr in expressions(rule_files(per_model)[name]):
            groupings = re.findall(r"by \(([^)]*)\)", expr)
            assert groupings and all(g.startswith("job, model_version") for g in groupings), expr
    assert group_by(per_model) == ["alertname", "job", "model_version"]


def test_the_latency_threshold_is_a_bucket_edge_so_the_quantile_is_not_interpolated_across_it():
    assert THRESHOLDS.latency_seconds in LATENCY_BUCKETS_SECONDS


def test_every_alert_has_severity_component_summary_and_description():
    for name, text in rule_files().items():
        for alert, rule in alerts_by_name(text).items():
            assert {"severity", "component"} <= rule["labels"].keys(), alert
            assert {"summary", "description"} <= rule["annotations"].keys(), alert


def test_for_overrides_change_the_for_durations_and_nothing_else():
    plain = {name: alerts_by_name(text) for name, text in rule_files().items()}
    shortened = {name: alerts_by_name(text) for name, text in
                 rule_files(for_overrides={"HighPredictionFailureRate": "2s", "HighCPUUsage": "1s"}).items()}
    for name, alerts in plain.items():
        for alert, rule in alerts.items():
            changed = shortened[name][alert]
            assert {k: v for k, v in changed.items() if k != "for"} == {k: v for k, v in rule.items() if k != "for"}
            expected_for = {"HighPredictionFailureRate": "2s", "HighCPUUsage": "1s"}.get(alert, rule["for"])
            assert changed["for"] == expected_for


def test_an_override_for_an_unknown_alert_or_with_a_bad_duration_is_refused():
    with pytest.raises(UnknownAlertError) as unknown:
        rule_files(for_overrides={"HighFailureRate": "2s"})
    assert unknown.value.names == ["HighFailureRate"] and "HighPredictionFailureRate" in unknown.value.known
    with pytest.raises(InvalidDurationError) as invalid:
        rule_files(for_overrides={"HighCPUUsage": "2 seconds"})
    assert invalid.value.value == "2 seconds"


def test_thresholds_appear_in_expression_and_text_from_one_value():
    changed = thresholds.Thresholds(cpu_percent=90, failure_ratio=0.05, latency_seconds=2.5)
    rendered = {alert: rule for text in rule_files(changed).values() for alert, rule in alerts_by_name(text).items()}
    assert rendered["HighCPUUsage"]["expr"].endswith("> 90")
    assert "threshold: 90%)" in rendered["HighCPUUsage"]["annotations"]["description"]
    assert rendered["HighPredictionFailureRate"]["expr"].endswith("> 0.05")
    assert rendered["HighPredictionFailureRate"]["annotations"]["summary"] == "Prediction failure rate above 5%"
    assert rendered["HighPredictionLatency"]["expr"].endswith("> 2.5")
    assert "minDuration=2500ms" in rendered["HighPredictionLatency"]["annotations"]["traces"]
