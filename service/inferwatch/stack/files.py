"""The files the native stack runs with, from a checkout or from an installed package.

``inferwatch up`` starts real components with committed files: the collector's and Jaeger's
configuration, prometheus.yml, the console pages, Alertmanager's e-mail template, and the scripts
that build or install what is not a Python package (the collector, Jaeger, Prometheus and
Alertmanager from their Go modules, the dashboard's chart library from npm). :data:`STACK_FILES`
names them by their place in the repository. In a checkout they are read where they are; a wheel
carries a copy under ``inferwatch/stack/files/`` at the same relative paths (the build hook
``service/stack_files_build.py`` copies them), so the scripts find each other as in the checkout
and build into the same caches: a ``pip install`` runs ``inferwatch up`` from any directory.
"""

from __future__ import annotations

from pathlib import Path

# Globs relative to the repository root; each must match at least one file.
STACK_FILES = (
    "observability/cached-build.sh",
    "otel-collector/build.sh",
    "otel-collector/builder-config.yaml",
    "otel-collector/config.yaml",
    "observability/jaeger/build.sh",
    "observability/jaeger/build/go.mod",
    "observability/jaeger/build/go.sum",
    "observability/jaeger/config.yaml",
    "observability/jaeger/badger.yaml",
    "observability/prometheus/build.sh",
    "observability/prometheus/prometheus.yml",
    "observability/prometheus/consoles/*.html",
    "observability/prometheus/console_libraries/*.lib",
    "observability/prometheus/chart-library/install.sh",
    "observability/prometheus/chart-library/package.json",
    "observability/prometheus/chart-library/package-lock.json",
    "observability/alertmanager/build.sh",
    "observability/alertmanager/templates/*.tmpl",
)
# Where a wheel puts them, relative to this module's folder.
PACKAGED = Path(__file__).resolve().parent / "files"
# The checkout this module lives in, when it runs from one.
CHECKOUT = Path(__file__).resolve().parents[3]


def stack_root() -> Path:
    """The folder that holds :data:`STACK_FILES`: the installed copy, else the checkout."""
    return PACKAGED if PACKAGED.is_dir() else CHECKOUT


def stack_files(root: Path) -> list[Path]:
    """Every file :data:`STACK_FILES` names under ``root``, relative to it; a pattern that matches
    nothing is an error (a renamed file must not fall out of the package unnoticed)."""
    found: list[Path] = []
    for pattern in STACK_FILES:
        matches = sorted(path.relative_to(root) for path in root.glob(pattern) if path.is_file())
        if not matches:
            raise FileNotFoundError(f"{root / pattern}: no file (inferwatch.stack.files.STACK_FILES)")
        found.extend(matches)
    return found
