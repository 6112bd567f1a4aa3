"""Every committed file rendered from the contract, and the one command that checks or writes them.

From the repository root::

    python -m inferwatch.render --check    # exit 1 and list the files that differ
    python -m inferwatch.render --write    # rewrite them after editing the contract or a renderer
    python -m inferwatch.render --alertmanager-config OUT    # Alertmanager's config from INFERWATCH_SMTP_*

The files: the Prometheus rule files (:mod:`~inferwatch.render.prometheus_rules`),
``observability/alertmanager/alertmanager.yml`` (:mod:`~inferwatch.render.alertmanager`), the
Grafana provisioning files and dashboard (:mod:`~inferwatch.render.grafana`), the same dashboard
as Prometheus console pages (:mod:`~inferwatch.render.consoles`), the generated block of
``otel-collector/config.yaml`` (:mod:`~inferwatch.render.collector`), the settings table of
``docs/configuration.md`` (:mod:`~inferwatch.render.settings`), and the Helm chart's copies
of the rule files, dashboards and collector config (:mod:`~inferwatch.render.kubernetes`).

The Grafana renderer needs grafana-foundation-sdk (the ``render`` extra), so the renderers are
imported only to check or write: ``--alertmanager-config`` runs in the service image, which does
not have it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from inferwatch.render import alertmanager, files

COMMAND = "python -m inferwatch.render"
RENDERERS = ("prometheus_rules", "alertmanager", "grafana", "consoles", "collector", "settings")


def committed_files(root: Path) -> dict[Path, str]:
    """{path under root: the text it must hold}, for every renderer."""
    rendered: dict[Path, str] = {}
    for name in RENDERERS:
        rendered.update(importlib.import_module(f"inferwatch.render.{name}").committed_files(root))
    kubernetes = importlib.import_module("inferwatch.render.kubernetes")
    rendered.update(kubernetes.chart_copies(root, rendered))
    return rendered


def stale_files(root: Path) -> list[Path]:
    """Committed files that differ from the rendering (missing ones included)."""
    return files.stale(committed_files(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Render every generated committed file (rules, Alertmanager, Grafana, console pages, collector, the Helm chart's copies) from the contract.",
    )
    action = files.add_check_write_arguments(parser)
    action.add_argument("--alertmanager-config", metavar="OUT", type=Path,
                        help="render Alertmanager's configuration from INFERWATCH_SMTP_* to OUT")
    args = parser.parse_args(argv)

    if args.alertmanager_config:
        try:
            out = alertmanager.write_alertmanager_config(
                args.alertmanager_config, os.environ, args.root / alertmanager.ALERTMANAGER_TEMPLATES)
        except alertmanager.SettingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(out)
        return 0
    return files.check_or_write(committed_files(args.root), args.write, COMMAND)
