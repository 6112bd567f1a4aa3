"""Text helpers shared by the renderers: numbers as PromQL shows them, durations, a small YAML writer.

The YAML writer keeps the committed files readable: multi-line PromQL as block scalars, keys in the
order the renderers give them, durations and plain words unquoted. PyYAML's dumper (a dependency)
would need a representer for each of those; this writer is forty lines, and every file it writes is
read back with PyYAML by the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from inferwatch.contract import durations

# Durations are checked by the contract's one duration module.
InvalidDurationError = durations.InvalidDurationError
duration = durations.checked


def number(value: float) -> str:
    """A threshold as PromQL and the alert text show it: 80, 0.1, 2 (never 80.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def percent(ratio: float) -> str:
    """A ratio as the alert text shows it: 0.1 -> 10 (rounded, so 0.07 is 7, not 7.000000000000001)."""
    return number(round(ratio * 100, 9))


# Words that need no quotes: a letter first, no space, quote, brace, bracket or "#", no final ":".
_PLAIN = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_./:@-]*[A-Za-z0-9_./@-])?")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number(value)
    text = str(value)
    if (_PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS) or durations.is_duration(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _empty_or_scalar(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"
    return "[]" if isinstance(value, (list, tuple)) else _scalar(value)


def to_yaml(value: object, indent: int = 0) -> list[str]:
    """Lines of ``value`` (dicts, lists, strings, numbers, booleans) as block-style YAML."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, (Mapping, list, tuple)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(to_yaml(item, indent + 1))
            elif isinstance(item, str) and "\n" in item:
                lines.append(f"{pad}{key}: |-")
                lines.extend(f"{pad}  {line}" for line in item.split("\n"))
            else:
                lines.append(f"{pad}{key}: {_empty_or_scalar(item)}")
        return lines
    if isinstance(value, (list, tuple)):
        lines = []
        for item in value:
            nested = to_yaml(item, indent + 1) if isinstance(item, (Mapping, list, tuple)) else [f"{pad}  {_scalar(item)}"]
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        return lines
    return [pad + _scalar(value)]

