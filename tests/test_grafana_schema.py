"""Every committed Grafana dashboard passes Grafana's own schema, and a typo in one would not.

The dashboard is built with grafana-foundation-sdk's Python builders (Grafana 11.6 flavour); here
its Go flavour (github.com/grafana/grafana-foundation-sdk/go, through
``observability/grafana/schema-check/``) decodes every committed dashboard file strictly, validates
it and round-trips it: an unknown field, a wrong type, a missing required field or a key the schema
does not know anywhere (``fieldConfig.defaults`` included) is a problem line. The checker's own
behaviour on a minimal dashboard is proved in ``test_grafana_schema_check.py``; this file proves it
on ours: the committed file passes, and the same file with one typo does not.
"""

from __future__ import annotations

import json
from pathlib import Path

from alerting_stack import REPO
from grafana_schema import check_dashboards
from inferwatch.render import grafana

DASHBOARDS = sorted((REPO / grafana.GRAFANA_DIR / "dashboards").glob("*.json"))


def committed() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def first(board: dict, kind: str) -> tuple[int, dict]:
    return next((i, panel) for i, panel in enumerate(board["panels"]) if panel["type"] == kind)


def write(tmp_path: Path, board: dict) -> Path:
    path = tmp_path / "ml-model-service.json"
    path.write_text(json.dumps(board, indent=2))
    return path


def test_every_committed_dashboard_passes_the_sdks_strict_decoding_validation_and_round_trip():
    assert DASHBOARDS == [REPO / grafana.DASHBOARD_FILE]
    assert check_dashboards(DASHBOARDS) == []


def test_a_typo_on_a_panel_of_the_committed_dashboard_fails(tmp_path):
    board = committed()
    index, panel = first(board, "timeseries")
    panel["tittle"] = panel.pop("title")
    path = write(tmp_path, board)
    assert check_dashboards([path]) == [f"{path}: $.panels[{index}].tittle: unknown field"]


def test_a_typo_in_field_config_of_the_committed_dashboard_fails_in_the_round_trip(tmp_path):
    board = committed()
    index, panel = first(board, "timeseries")
    panel["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 2
    panel["fieldConfig"]["defaults"]["maxx"] = 1
    path = write(tmp_path, board)
    assert check_dashboards([path]) == [
        f"{path}: $.panels[{index}].fieldConfig.defaults.custom.lineWidht: unknown field",
        f"{path}: $.panels[{index}].fieldConfig.defaults.maxx: lost in the round trip: the SDK has no such field",
    ]


def test_a_typo_in_a_stat_panels_options_or_a_variable_fails(tmp_path):
    board = committed()
    index, panel = first(board, "stat")
    panel["options"]["colourMode"] = panel["options"].pop("colorMode")
    board["templating"]["list"][0]["incudeAll"] = True
    path = write(tmp_path, board)
    problems = check_dashboards([path])
    assert f"{path}: $.panels[{index}].options.colourMode: unknown field" in problems
    assert f"{path}: $.templating.list[0].incudeAll: unknown field" in problems


def test_the_data_links_to_slow_traces_survive_the_round_trip():
    """fieldConfig.defaults.links (per-model Jaeger links) are checked by the round trip alone."""
    linked = [panel for panel in committed()["panels"] if panel.get("fieldConfig", {}).get("defaults", {}).get("links")]
    assert [panel["title"] for panel in linked] == ["Request latency p50 / p95 / p99", "Model time vs proxy time (p95)"]
    for panel in linked:
        [link] = panel["fieldConfig"]["defaults"]["links"]
        assert "${__field.labels.job}" in link["url"] and link["targetBlank"] is True
