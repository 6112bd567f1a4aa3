"""Durations, as Prometheus, Alertmanager and Jaeger write them: one parser, one formatter.

``seconds("1h30m")`` is 5400.0: one or more ``<number><unit>`` parts, units ``ms``, ``s``, ``m``,
``h``, ``d``, ``w``, ``y`` (Prometheus's; Jaeger's ``minDuration`` reads the same for ``ms`` to
``h``). :func:`checked` keeps a duration that Prometheus and Alertmanager take (whole numbers) and
names where it came from when it is not. :func:`short` writes seconds back the way Jaeger and the
alert texts read them (``2s``, ``2500ms``).

Data only: nothing outside :mod:`inferwatch.contract` is imported here.
"""

from __future__ import annotations

import re

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")


class InvalidDurationError(ValueError):
    """A duration that Prometheus or Alertmanager would refuse; says where it came from."""

    def __init__(self, where: str, value: str):
        self.where = where
        self.value = value
        super().__init__(f"{where}: {value!r} is not a duration like 30s, 5m or 4h")


def seconds(text: str) -> float:
    """The seconds in ``text`` (``15m``, ``1h30m``, ``1.5s``); ``ValueError`` when it is not a duration."""
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 15m, 1h or 90s")
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def is_duration(text: str) -> bool:
    """Whether Prometheus and Alertmanager take ``text`` as a duration (whole numbers of their units)."""
    return bool(_WHOLE.fullmatch(text))


def checked(where: str, value: str) -> str:
    """``value`` when Prometheus and Alertmanager take it (whole numbers of their units)."""
    if not is_duration(value):
        raise InvalidDurationError(where, value)
    return value


def short(value: float) -> str:
    """Seconds as ``2s`` when whole, else ``2500ms`` (Jaeger's ``minDuration``, the alert texts)."""
    value = float(value)
    return f"{int(value)}s" if value.is_integer() else f"{round(value * 1000)}ms"
