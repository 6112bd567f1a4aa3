"""The Helm chart's copies of the rendered files: rules, dashboards, the collector's config.

Helm reads files from inside the chart directory only, so the chart
(``observability/kubernetes/inferwatch``) holds copies of three families of committed files,
taken from the other renderers' output rather than written down again:

=====================================================  ==============================================
chart file                                             rendered as
=====================================================  ==============================================
``files/prometheus-rules/<group>.yml``                 ``observability/prometheus/rules/<group>.yml``
                                                       (the PrometheusRule's groups)
``files/grafana-dashboards/<name>.json``               ``observability/grafana/dashboards/<name>.json``
                                                       (the dashboard ConfigMap)
``files/otel-collector/config.yaml``                   ``otel-collector/config.yaml`` (the collector's
                                                       ConfigMap; its endpoints are ``${env:...}``,
                                                       which the chart's Deployment sets)
=====================================================  ==============================================

Every rule file and dashboard the renderers write is copied, so a new rule group or dashboard
reaches the chart with the next ``python -m inferwatch.render --write``; ``--check`` fails when
a copy differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from inferwatch.render.collector import COLLECTOR_CONFIG
from inferwatch.render.grafana import DASHBOARD_FILE
from inferwatch.render.prometheus_rules import RULES_DIR

CHART_DIR = Path("observability/kubernetes/inferwatch")
CHART_FILES = CHART_DIR / "files"
DASHBOARDS_DIR = DASHBOARD_FILE.parent

# Folder of rendered files (or one file) -> the chart folder that holds their copies.
COPIED = {
    RULES_DIR: CHART_FILES / "prometheus-rules",
    DASHBOARDS_DIR: CHART_FILES / "grafana-dashboards",
    COLLECTOR_CONFIG: CHART_FILES / "otel-collector",
}


def chart_path(relative: Path) -> Path | None:
    """Where the chart keeps its copy of the rendered file at ``relative``; None: not copied."""
    for source, destination in COPIED.items():
        if relative == source or relative.parent == source:
            return destination / relative.name
    return None


def chart_copies(root: Path, rendered: Mapping[Path, str]) -> dict[Path, str]:
    """{path of a chart copy under root: its text} for every rendered file the chart uses."""
    copies = {}
    for path, text in rendered.items():
        if (copy := chart_path(path.relative_to(root))) is not None:
            copies[root / copy] = text
    return copies
