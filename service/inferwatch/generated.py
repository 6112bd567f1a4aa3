"""Committed files rendered from code: check them, or write them again.

Several files in the repository are generated (alert rules, Alertmanager and Grafana
provisioning); each generator gives ``{path: text}`` and shares these two verbs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def stale(files: Mapping[Path, str]) -> list[Path]:
    """Committed files that differ from the rendering (missing ones included)."""
    return [path for path, text in files.items() if not path.is_file() or path.read_text() != text]


def check_or_write(files: Mapping[Path, str], write: bool, command: str) -> int:
    """``--write`` rewrites every file; otherwise exit 1 naming each stale one and ``command``."""
    if write:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(path)
        return 0
    outdated = stale(files)
    for path in outdated:
        print(f"{path} differs from the rendering: run {command} --write", file=sys.stderr)
    return 1 if outdated else 0
