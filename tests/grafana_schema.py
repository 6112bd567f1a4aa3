"""Grafana dashboards checked against grafana-foundation-sdk's schema, from the tests.

``observability/grafana/schema-check/`` is a small Go program on the SDK's Go flavour
(github.com/grafana/grafana-foundation-sdk/go): strict decoding, ``Validate()`` and a JSON round
trip. Its ``build.sh`` builds it once per source hash (about 80 s cold on 2 cores, then cached
under ``${XDG_CACHE_HOME:-~/.cache}/inferwatch/grafana-schema-check``); Go must be on PATH.
Usage::

    from grafana_schema import check_dashboards
    assert check_dashboards(["observability/grafana/dashboards/ml-model-service.json"]) == []

Each problem is one line, ``FILE: JSON-PATH: what``, for example
``board.json: $.panels[1].tittle: unknown field``.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA_CHECK_DIR = REPO / "observability" / "grafana" / "schema-check"
BUILD_TIMEOUT = 1800.0
CHECK_TIMEOUT = 120.0


class SchemaCheckError(RuntimeError):
    """The checker could not be built or could not run: not a verdict on any dashboard."""

    def __init__(self, what: str, output: str):
        super().__init__(f"{what}:\n{output}")
        self.output = output


@functools.cache
def schema_check_binary() -> str:
    """Path of the checker binary, built by ``build.sh`` (or found in its cache)."""
    try:
        built = subprocess.run(["bash", str(SCHEMA_CHECK_DIR / "build.sh")], capture_output=True, text=True,
                               timeout=BUILD_TIMEOUT, check=True)
    except subprocess.CalledProcessError as error:
        raise SchemaCheckError("the Grafana schema checker did not build", error.stderr) from None
    return built.stdout.strip().splitlines()[-1]


def check_dashboards(paths: Iterable[str | Path]) -> list[str]:
    """The problems the checker finds in these dashboard files; empty when every one passes."""
    files = [str(path) for path in paths]
    if not files:
        raise ValueError("check_dashboards needs at least one dashboard file")
    checked = subprocess.run([schema_check_binary(), *files], capture_output=True, text=True,
                             timeout=CHECK_TIMEOUT)
    if checked.returncode not in (0, 1):
        raise SchemaCheckError(f"the Grafana schema checker exited {checked.returncode}",
                               checked.stdout + checked.stderr)
    return checked.stdout.splitlines()
