"""The Grafana schema checker can fail and can pass.

A minimal dashboard written to the checker's expectations (a row, a timeseries and a stat panel
on Prometheus, every field the schema requires) passes; each test then breaks it in one way and
expects exactly one problem line naming the file, the JSON path and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grafana_schema import check_dashboards

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


def minimal_dashboard() -> dict:
    return {
        "uid": "schema-check-minimal",
        "title": "Minimal",
        "schemaVersion": 41,
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [
            {"type": "row", "id": 1, "title": "Requests", "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}},
            {"type": "timeseries", "id": 2, "title": "Request rate", "datasource": PROMETHEUS,
             "gridPos": {"h": 8, "w": 12, "x": 0, "y": 1},
             "targets": [{"refId": "A", "datasource": PROMETHEUS, "expr": "sum(rate(http_requests_total[5m]))"}],
             "fieldConfig": {"defaults": {"unit": "reqps", "custom": {"lineWidth": 1}}, "overrides": []},
             "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
                         "tooltip": {"mode": "multi", "sort": "none"}}},
            {"type": "stat", "id": 3, "title": "Scrape targets up", "datasource": PROMETHEUS,
             "gridPos": {"h": 8, "w": 12, "x": 12, "y": 1},
             "targets": [{"refId": "A", "datasource": PROMETHEUS, "expr": "sum(up)"}],
             "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background",
                         "graphMode": "none", "justifyMode": "auto", "orientation": "auto", "textMode": "auto",
                         "wideLayout": True, "showPercentChange": False, "percentChangeColorMode": "standard"}},
        ],
    }


def timeseries(board: dict) -> dict:
    return board["panels"][1]


def stat(board: dict) -> dict:
    return board["panels"][2]


@pytest.fixture
def write(tmp_path):
    def write(board: dict, name: str = "board.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(board, indent=2))
        return path
    return write


def test_a_minimal_dashboard_with_a_row_a_timeseries_and_a_stat_panel_passes(write):
    assert check_dashboards([write(minimal_dashboard())]) == []


def test_an_unknown_field_on_a_panel_fails_naming_its_path(write):
    board = minimal_dashboard()
    timeseries(board)["tittle"] = "Request rate"
    path = write(board)
    assert check_dashboards([path]) == [f"{path}: $.panels[1].tittle: unknown field"]


def test_an_unknown_field_in_a_panels_plugin_options_fails(write):
    board = minimal_dashboard()
    stat(board)["options"]["colourMode"] = "background"
    path = write(board)
    assert check_dashboards([path]) == [f"{path}: $.panels[2].options.colourMode: unknown field"]


def test_an_unknown_field_in_field_config_defaults_is_caught_by_the_round_trip(write):
    # The SDK decodes fieldConfig.defaults leniently even in strict mode: only the round trip sees this.
    board = minimal_dashboard()
    timeseries(board)["fieldConfig"]["defaults"]["unitt"] = "s"
    path = write(board)
    assert check_dashboards([path]) == [
        f"{path}: $.panels[1].fieldConfig.defaults.unitt: lost in the round trip: the SDK has no such field"]


def test_a_grid_height_given_as_a_string_fails_as_a_wrong_type(write):
    board = minimal_dashboard()
    timeseries(board)["gridPos"]["h"] = "8"
    path = write(board)
    assert check_dashboards([path]) == [
        f"{path}: $.panels[1].gridPos.h: json: cannot unmarshal string into Go value of type uint32"]


def test_a_missing_required_field_fails_naming_it(write):
    board = minimal_dashboard()
    del stat(board)["options"]["wideLayout"]
    path = write(board)
    assert check_dashboards([path]) == [f"{path}: $.panels[2].options.wideLayout: required field is missing from input"]


def test_a_panel_wider_than_the_grid_fails_validation(write):
    board = minimal_dashboard()
    timeseries(board)["gridPos"]["w"] = 25
    path = write(board)
    assert check_dashboards([path]) == [f"{path}: $.panels[1].gridPos.w: must be <= 24"]


def test_a_target_without_a_datasource_type_fails_as_unchecked(write):
    board = minimal_dashboard()
    del stat(board)["datasource"]
    del stat(board)["targets"][0]["datasource"]
    path = write(board)
    [problem] = check_dashboards([path])
    assert problem.startswith(f"{path}: $.panels[2].targets[0]: no query type")


def test_a_panel_type_the_sdk_has_no_plugin_for_fails(write):
    board = minimal_dashboard()
    timeseries(board)["type"] = "graph"
    path = write(board)
    [problem] = check_dashboards([path])
    assert problem.startswith(f'{path}: $.panels[1].type: panel type "graph" has no plugin in the SDK')


def test_only_the_broken_file_of_several_is_reported(write):
    good = write(minimal_dashboard(), "good.json")
    board = minimal_dashboard()
    del board["schemaVersion"]
    bad = write(board, "bad.json")
    assert check_dashboards([good, bad, good]) == [f"{bad}: $.schemaVersion: required field is missing from input"]
