"""A dashboard built with grafana-foundation-sdk's Python builders, written as JSON.

A worked example for the rebuild of ``observability/grafana/dashboards/ml-model-service.json``:
every builder the inferwatch dashboard needs (query variables, a row, a timeseries panel with a
Prometheus query, thresholds drawn as a line and a panel link, a stat panel), and the SDK's own
JSON encoder. It is not the dashboard: the real one reads its thresholds and queries from the
contract (``inferwatch.contract.thresholds``). The output passes the schema checker with no problem::

    python -m venv /tmp/gf && /tmp/gf/bin/pip install 'grafana-foundation-sdk==1769699379!11.6.0'
    /tmp/gf/bin/python observability/grafana/schema-check/example_dashboard.py > /tmp/example.json
    "$(observability/grafana/schema-check/build.sh | tail -n1)" /tmp/example.json
"""

from __future__ import annotations

import json
import sys

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

# The datasource uid provisioned in observability/grafana/provisioning/datasources/datasources.yml.
PROMETHEUS = models.DataSourceRef(type_val="prometheus", uid="prometheus")
LATENCY_THRESHOLD_SECONDS = 2.0  # HighPredictionLatency


def query_variable(name: str, label: str, query: str) -> dashboard_builders.QueryVariable:
    """A Prometheus label_values variable: several values or All (a regex matching every value)."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def latency_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(2)
        .title("Request latency p95")
        .description("95th percentile of request latency; the red line is the HighPredictionLatency threshold.")
        .datasource(PROMETHEUS)
        .grid_pos(models.GridPos(h=8, w=16, x=0, y=1))
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .datasource(PROMETHEUS)
            .expr('histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
                  '{job="inferwatch", instance=~"$instance", route=~"$route"}[$__rate_interval])))')
            .legend_format("p95")
            .exemplar(True)
        )
        .unit("s")
        .min(0)
        .max(5)
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(models.ThresholdsMode.ABSOLUTE)
            .steps([
                models.Threshold(value=None, color="green"),
                models.Threshold(value=LATENCY_THRESHOLD_SECONDS, color="red"),
            ])
        )
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE))
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs([])
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
        .links([
            dashboard_builders.DashboardLink("Traces slower than 2 s (Jaeger)")
            .type(models.DashboardLinkType.LINK)
            .url("http://localhost:16686/search?service=inferwatch&minDuration=2s&lookback=1h&limit=20")
            .target_blank(True)
        ])
    )


def failures_stat() -> stat.Panel:
    return (
        stat.Panel()
        .id(3)
        .title("Failed predictions in range")
        .datasource(PROMETHEUS)
        .grid_pos(models.GridPos(h=8, w=8, x=16, y=1))
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .datasource(PROMETHEUS)
            .expr('sum(increase(prediction_failure_total{job="inferwatch", instance=~"$instance"}[$__range]))')
            .legend_format("failed")
        )
        .unit("short")
        .decimals(0)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(models.ThresholdsMode.ABSOLUTE)
            .steps([models.Threshold(value=None, color="green"), models.Threshold(value=1, color="red")])
        )
    )


def build() -> models.Dashboard:
    return (
        dashboard_builders.Dashboard("inferwatch example")
        .uid("inferwatch-example")
        .tags(["inferwatch", "mlflow"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(query_variable(
            "instance", "Instance", 'label_values(prediction_success_total{job="inferwatch"}, instance)'))
        .with_variable(query_variable(
            "route", "Route", 'label_values(http_requests_total{job="inferwatch", instance=~"$instance"}, route)'))
        # Panel ids are not assigned by the builders (a row's is 0): give each its own.
        .with_row(dashboard_builders.Row("Latency and failures").id(1))
        .with_panel(latency_panel())
        .with_panel(failures_stat())
        .build()
    )


def main() -> None:
    json.dump(build(), sys.stdout, cls=JSONEncoder, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
