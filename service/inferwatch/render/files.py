"""Committed files rendered from code: check them, or write them again.

Every renderer gives ``{path: text}``; :mod:`inferwatch.render.committed` gathers them and
these two verbs check or rewrite the lot.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path


def add_check_write_arguments(parser: argparse.ArgumentParser):
    """``--check`` | ``--write`` (required, exclusive) and ``--root``; returns the exclusive group."""
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from the rendering")
    action.add_argument("--write", action="store_true", help="rewrite the committed files")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    return action


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


class MarkersNotFoundError(ValueError):
    """A file lacks the BEGIN/END marker lines that delimit its generated block."""

    def __init__(self, path: Path, begin: str, end: str):
        super().__init__(f"{path}: no '{begin}' ... '{end}' block to replace")
        self.path = path


def replace_block(text: str, begin: str, end: str, block: str, path: Path) -> str:
    """``text`` with the lines from the ``begin`` marker line to the ``end`` one replaced by ``block``
    (which holds the markers itself)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise MarkersNotFoundError(path, begin, end)
    return "".join(lines[: starts[0]]) + block + "".join(lines[ends[0] + 1 :])
