"""Alert thresholds, defined once, and every file rendered from them.

:data:`THRESHOLDS` holds each threshold, ``for`` duration and window the alerts use, with a
comment naming the alert it drives. The Prometheus rule files (expression and alert text), the
Alertmanager configuration and, later, the Grafana panel thresholds are all rendered from it, so
a threshold is never written down a second time. The committed files are the rendering;
``tests/test_prometheus_rules.py`` and ``tests/test_alertmanager_config.py`` fail when they
differ. From the repository root::

    python -m inferwatch.alert_rules --check    # exit 1 and list the files that differ
    python -m inferwatch.alert_rules --write    # rewrite them after editing THRESHOLDS

The files:

* ``observability/prometheus/rules/<group>.yml``: one file per rule group (recording rules,
  host, predictions, availability);
* ``observability/alertmanager/alertmanager.yml``: the local-development rendering of the
  Alertmanager configuration (an SMTP sink on 127.0.0.1:1025, no authentication).

Alertmanager does not expand environment variables in its configuration, so a real deployment
renders its own copy at start from the environment, and the SMTP password never enters the
configuration or the repository: Alertmanager reads it from ``auth_password_file``::

    python -m inferwatch.alert_rules --alertmanager-config /run/inferwatch/alertmanager.yml
    prometheus-alertmanager --config.file /run/inferwatch/alertmanager.yml

Variables (read by ``--alertmanager-config`` only):

* ``INFERWATCH_SMTP_SMARTHOST``: SMTP server as ``host:port``; default ``127.0.0.1:1025``
* ``INFERWATCH_SMTP_FROM``: sender address; default ``inferwatch@localhost``
* ``INFERWATCH_ALERT_EMAIL_TO``: recipients, comma-separated; default ``oncall@localhost``
* ``INFERWATCH_SMTP_USERNAME``: SMTP user; empty (the default) sends without logging in
* ``INFERWATCH_SMTP_PASSWORD_FILE``: a file holding the password, without a trailing newline
* ``INFERWATCH_SMTP_PASSWORD``: the password itself, for platforms that only pass variables:
  it is written to ``smtp_password`` (mode 0600) beside the rendered configuration
* ``INFERWATCH_SMTP_REQUIRE_TLS``: ``true`` or ``false``, STARTTLS before sending; default
  ``true`` when a user is set (a login never crosses the network in clear), else ``false``

For example, with Gmail and an app password kept in a file::

    printf '%s' "$APP_PASSWORD" > ~/.config/inferwatch/smtp_password
    INFERWATCH_SMTP_SMARTHOST=smtp.gmail.com:587 INFERWATCH_SMTP_FROM=me@gmail.com \\
    INFERWATCH_SMTP_USERNAME=me@gmail.com INFERWATCH_ALERT_EMAIL_TO=team@example.com \\
    INFERWATCH_SMTP_PASSWORD_FILE=~/.config/inferwatch/smtp_password \\
    python -m inferwatch.alert_rules --alertmanager-config /run/inferwatch/alertmanager.yml

Alertmanager 0.25 uses the password file's bytes as they are (a trailing newline would become
part of the password), so a file ending in a newline is refused here.

Tests shorten the ``for`` durations (``rule_files(for_overrides=...)``) and the notification
timings (``RouteTimings``); nothing else can be overridden, so the expressions a test runs are the
committed ones.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from inferwatch import generated

RULES_DIR = Path("observability/prometheus/rules")
ALERTMANAGER_DIR = Path("observability/alertmanager")
ALERTMANAGER_CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = ALERTMANAGER_DIR / "templates"

# Prometheus duration syntax (one unit; enough for every value here).
_DURATION = re.compile(r"[0-9]+(ms|s|m|h|d|w|y)")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold, duration and selector the alert rules use."""

    # Every rule reads only series of this selector: the scrape job in prometheus.yml, the same
    # whether Prometheus scrapes the collector or the service directly.
    selector: str = 'job="inferwatch"'

    # HighCPUUsage: host CPU in percent (system_cpu_usage, 0-100) above this ...
    cpu_percent: float = 80
    # ... for this long (the seed's "more than 1 minute").
    cpu_for: str = "1m"

    # HighPredictionLatency: this quantile of request latency ...
    latency_quantile: float = 0.95
    # ... above this many seconds; must be a bucket edge of http_request_duration_seconds
    # (metric_mapping.LATENCY_BUCKETS_SECONDS), or histogram_quantile would interpolate across it.
    latency_seconds: float = 2
    # ... measured over this window ...
    latency_window: str = "5m"
    # ... for this long. The window already smooths; this stops one slow burst from paging.
    latency_for: str = "2m"
    # ... counting only the prediction routes (scanners' 404s are fast and would hide slowness).
    latency_routes: str = 'route=~"/predict|/invocations"'

    # HighPredictionFailureRate: failed share of predictions above this ...
    failure_ratio: float = 0.10
    # ... over this window ...
    failure_window: str = "5m"
    # ... for this long.
    failure_for: str = "2m"

    # InferwatchDown: the scrape target (collector or service) has not answered for this long.
    down_for: str = "1m"
    # InferwatchMetricsAbsent: no contract series for this long (service gone behind the collector,
    # or no target at all).
    absent_for: str = "2m"

    # HighPredictionLatency's pointer to the slow traces: a Jaeger search for this service's
    # traces at least latency_seconds long (the collector keeps every trace that slow).
    jaeger_url: str = "http://localhost:16686"
    trace_service: str = "inferwatch"


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class RouteTimings:
    """Alertmanager's grouping and repetition (the seed's notification policy)."""

    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"


class UnknownAlertError(ValueError):
    """A ``for`` override names an alert no rule defines."""

    def __init__(self, names: Iterable[str], known: Iterable[str]):
        self.names = sorted(names)
        self.known = sorted(known)
        super().__init__(f"no alert named {', '.join(self.names)}; alerts are {', '.join(self.known)}")


class InvalidDurationError(ValueError):
    """A duration that Prometheus or Alertmanager would refuse."""

    def __init__(self, where: str, value: str):
        self.where = where
        self.value = value
        super().__init__(f"{where}: {value!r} is not a duration like 30s, 5m or 4h")


class SettingError(ValueError):
    """An SMTP setting from the environment is missing or invalid; names the variable."""

    def __init__(self, variable: str, problem: str):
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


def _duration(where: str, value: str) -> str:
    if not _DURATION.fullmatch(value):
        raise InvalidDurationError(where, value)
    return value


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    def as_yaml(self) -> dict:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str

    def as_yaml(self) -> dict:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True)
class RuleGroup:
    name: str
    file_name: str
    rules: tuple[AlertRule | RecordingRule, ...]


def number(value: float) -> str:
    """A threshold as PromQL and the alert text show it: 80, 0.1, 2 (never 80.0)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def percent(ratio: float) -> str:
    """A ratio as the alert text shows it: 0.1 -> 10 (rounded, so 0.07 is 7, not 7.000000000000001)."""
    return number(round(ratio * 100, 9))


# Prometheus template snippets used in the annotations.
VALUE = "{{ $value | humanize }}"
VALUE_DURATION = "{{ $value | humanizeDuration }}"
VALUE_PERCENTAGE = "{{ $value | humanizePercentage }}"
JOB = "{{ $labels.job }}"
INSTANCE = "{{ $labels.instance }}"

# Window of the recording rules that no alert shares (request rate, latency buckets).
DASHBOARD_WINDOW = "5m"


def _selector(*matchers: str) -> str:
    return "{" + ", ".join(matchers) + "}"


def _rate(metric: str, window: str, *matchers: str) -> str:
    return f"rate({metric}{_selector(*matchers)}[{window}])"


def failure_ratio_expr(t: Thresholds) -> str:
    """Failed share of predictions per job; NaN (no result) while there are no predictions."""
    failures = f"sum by (job) ({_rate('prediction_failure_total', t.failure_window, t.selector)})"
    successes = f"sum by (job) ({_rate('prediction_success_total', t.failure_window, t.selector)})"
    return f"{failures}\n/\n({successes} + {failures})"


def latency_quantile_expr(t: Thresholds) -> str:
    """The latency quantile per job, over every instance's buckets summed (``sum by (le)``)."""
    buckets = _rate("http_request_duration_seconds_bucket", t.latency_window, t.selector, t.latency_routes)
    return f"histogram_quantile({number(t.latency_quantile)}, sum by (job, le) ({buckets}))"


def _percentile_name(quantile: float) -> str:
    return "p" + percent(quantile).replace(".", "_")


def jaeger_slow_traces_url(t: Thresholds) -> str:
    seconds = float(t.latency_seconds)
    min_duration = f"{number(seconds)}s" if seconds.is_integer() else f"{round(seconds * 1000)}ms"
    return f"{t.jaeger_url}/search?service={t.trace_service}&minDuration={min_duration}&lookback=1h&limit=20"


def recording_group(t: Thresholds) -> RuleGroup:
    # Dashboards read these; the alerts below keep their own expressions so that an alert never
    # waits for another group's evaluation.
    p = _percentile_name(t.latency_quantile)
    window = t.failure_window
    return RuleGroup("inferwatch.recording", "recording.yml", (
        RecordingRule(f"job:http_requests:rate{DASHBOARD_WINDOW}",
                      f"sum by (job) ({_rate('http_requests_total', DASHBOARD_WINDOW, t.selector)})"),
        RecordingRule(f"job:http_request_duration_seconds_bucket:rate{DASHBOARD_WINDOW}",
                      f"sum by (job, le) ({_rate('http_request_duration_seconds_bucket', DASHBOARD_WINDOW, t.selector)})"),
        RecordingRule(f"job:http_request_duration_seconds:{p}_{t.latency_window}", latency_quantile_expr(t)),
        RecordingRule(f"job:prediction_success:rate{window}",
                      f"sum by (job) ({_rate('prediction_success_total', window, t.selector)})"),
        RecordingRule(f"job:prediction_failure:rate{window}",
                      f"sum by (job) ({_rate('prediction_failure_total', window, t.selector)})"),
        RecordingRule(f"job:prediction_failure:ratio_rate{window}", failure_ratio_expr(t)),
    ))


def host_group(t: Thresholds) -> RuleGroup:
    cpu = number(t.cpu_percent)
    return RuleGroup("inferwatch.host", "host.yml", (
        AlertRule(
            "HighCPUUsage",
            f"system_cpu_usage{_selector(t.selector)} > {cpu}",
            t.cpu_for,
            {"severity": "critical", "component": "system"},
            {
                "summary": f"CPU usage above {cpu}%",
                "description": f"CPU usage is {VALUE}% on {INSTANCE} (threshold: {cpu}%).",
                "value": f"{VALUE}%",
            },
        ),
    ))


def predictions_group(t: Thresholds) -> RuleGroup:
    q = _percentile_name(t.latency_quantile)
    latency = number(t.latency_seconds)
    ratio_percent = percent(t.failure_ratio)
    traces = jaeger_slow_traces_url(t)
    return RuleGroup("inferwatch.predictions", "predictions.yml", (
        AlertRule(
            "HighPredictionLatency",
            f"{latency_quantile_expr(t)}\n> {latency}",
            t.latency_for,
            {"severity": "critical", "component": "prediction"},
            {
                "summary": f"Prediction latency {q} above {latency}s",
                "description": f"{q} latency of predictions ({JOB}) is {VALUE_DURATION} over the last "
                               f"{t.latency_window} (threshold: {latency}s). Slow traces: {traces}",
                "value": VALUE_DURATION,
                "traces": traces,
            },
        ),
        AlertRule(
            "HighPredictionFailureRate",
            f"{failure_ratio_expr(t)}\n> {number(t.failure_ratio)}",
            t.failure_for,
            {"severity": "critical", "component": "prediction"},
            {
                "summary": f"Prediction failure rate above {ratio_percent}%",
                "description": f"{VALUE_PERCENTAGE} of predictions ({JOB}) failed over the last "
                               f"{t.failure_window} (threshold: {ratio_percent}%). "
                               "prediction_failure_by_reason_total says why.",
                "value": VALUE_PERCENTAGE,
            },
        ),
    ))


def availability_group(t: Thresholds) -> RuleGroup:
    # Without traffic the failure ratio is NaN and HighPredictionFailureRate stays silent, by
    # design: no predictions, nothing to judge. An outage that takes the metrics away with it is
    # caught here instead.
    return RuleGroup("inferwatch.availability", "availability.yml", (
        AlertRule(
            "InferwatchDown",
            f"up{_selector(t.selector)} == 0",
            t.down_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "Prometheus cannot scrape inferwatch",
                "description": f"Scrape target {INSTANCE} of job {JOB} does not answer: the service "
                               "(or the collector in front of it) is down, so no prediction alert can fire.",
            },
        ),
        AlertRule(
            "InferwatchMetricsAbsent",
            f"absent(prediction_success_total{_selector(t.selector)})",
            t.absent_for,
            {"severity": "critical", "component": "service"},
            {
                "summary": "inferwatch metrics are missing",
                "description": f"No prediction_success_total{_selector(t.selector)} series: the service is down "
                               "or not reporting (behind the collector its series vanish once the "
                               "exporter's metric expiration passes), so no prediction alert can fire.",
            },
        ),
    ))


def rule_groups(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> tuple[RuleGroup, ...]:
    """Every rule group; ``for_overrides`` ({alert name: duration}) changes only ``for``."""
    groups = (recording_group(t), host_group(t), predictions_group(t), availability_group(t))
    overrides = dict(for_overrides or {})
    alerts = {rule.alert for group in groups for rule in group.rules if isinstance(rule, AlertRule)}
    if unknown := set(overrides) - alerts:
        raise UnknownAlertError(unknown, alerts)
    for alert, value in overrides.items():
        _duration(f"for override of {alert}", value)
    return tuple(
        replace(group, rules=tuple(
            replace(rule, for_=overrides[rule.alert])
            if isinstance(rule, AlertRule) and rule.alert in overrides else rule
            for rule in group.rules
        ))
        for group in groups
    )


RULES_HEADER = (
    "# Generated by `python -m inferwatch.alert_rules --write` from THRESHOLDS in\n"
    "# service/inferwatch/alert_rules.py: do not edit by hand (tests/test_prometheus_rules.py\n"
    "# fails when this file differs from the rendering).\n"
)


def render_rule_group(group: RuleGroup) -> str:
    body = {"groups": [{"name": group.name, "rules": [rule.as_yaml() for rule in group.rules]}]}
    return RULES_HEADER + "\n".join(to_yaml(body)) + "\n"


def rule_files(t: Thresholds = THRESHOLDS, for_overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """{file name: text} of every rule file."""
    return {group.file_name: render_rule_group(group) for group in rule_groups(t, for_overrides)}


# ---------------------------------------------------------------------------------------------
# Alertmanager
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpSettings:
    smarthost: str = "127.0.0.1:1025"
    sender: str = "inferwatch@localhost"
    recipients: str = "oncall@localhost"
    username: str = ""
    password_file: str = ""
    require_tls: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], password_dir: Path | None = None) -> SmtpSettings:
        """Settings from ``INFERWATCH_SMTP_*``; an ``INFERWATCH_SMTP_PASSWORD`` is written to
        ``password_dir/smtp_password`` (mode 0600) and only that path enters the configuration."""
        defaults = cls()
        smarthost = env.get("INFERWATCH_SMTP_SMARTHOST", defaults.smarthost)
        if not re.fullmatch(r"[^\s:]+:[0-9]+|\[[0-9a-fA-F:]+\]:[0-9]+", smarthost):
            raise SettingError("INFERWATCH_SMTP_SMARTHOST", f"{smarthost!r} is not host:port")
        username = env.get("INFERWATCH_SMTP_USERNAME", "")
        password_file = _password_file(env, username, password_dir)
        return cls(
            smarthost=smarthost,
            sender=_required(env, "INFERWATCH_SMTP_FROM", defaults.sender),
            recipients=_required(env, "INFERWATCH_ALERT_EMAIL_TO", defaults.recipients),
            username=username,
            password_file=password_file,
            require_tls=_flag(env, "INFERWATCH_SMTP_REQUIRE_TLS", default=bool(username)),
        )


def _required(env: Mapping[str, str], variable: str, default: str) -> str:
    value = env.get(variable, default).strip()
    if not value:
        raise SettingError(variable, "must not be empty")
    return value


def _flag(env: Mapping[str, str], variable: str, default: bool) -> bool:
    value = env.get(variable)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise SettingError(variable, f"{value!r} is not true or false")
    return value.lower() == "true"


def _password_file(env: Mapping[str, str], username: str, password_dir: Path | None) -> str:
    # Empty counts as unset: compose passes every variable of .env, set or not.
    password = env.get("INFERWATCH_SMTP_PASSWORD") or None
    path = env.get("INFERWATCH_SMTP_PASSWORD_FILE") or None
    if password is not None and path is not None:
        raise SettingError("INFERWATCH_SMTP_PASSWORD", "set it or INFERWATCH_SMTP_PASSWORD_FILE, not both")
    if not username:
        if password is not None or path is not None:
            raise SettingError("INFERWATCH_SMTP_USERNAME", "a password is set but no user to log in as")
        return ""
    if password is not None:
        if password_dir is None:
            raise SettingError("INFERWATCH_SMTP_PASSWORD", "no directory to write the password file to")
        return str(_write_secret(Path(password_dir) / "smtp_password", password))
    if path is None:
        raise SettingError("INFERWATCH_SMTP_PASSWORD_FILE", f"required with INFERWATCH_SMTP_USERNAME={username}")
    resolved = Path(path).expanduser().resolve()
    if resolved.is_file() and resolved.read_bytes().endswith((b"\n", b"\r")):
        raise SettingError(
            "INFERWATCH_SMTP_PASSWORD_FILE",
            f"{resolved} ends with a newline, which Alertmanager would send as part of the "
            "password; write it with printf '%s'",
        )
    return str(resolved)


def _write_secret(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret)
    os.chmod(path, 0o600)
    return path.resolve()


ALERTMANAGER_HEADER = """\
# Alertmanager for inferwatch: every alert goes by email, one email per alert name.
#
# Generated by `python -m inferwatch.alert_rules --write` from service/inferwatch/alert_rules.py:
# do not edit by hand (tests/test_alertmanager_config.py fails when it differs). This copy is the
# local-development rendering: an SMTP sink on 127.0.0.1:1025 (Mailpit, or
# `python -m aiosmtpd -n -l 127.0.0.1:1025`), no authentication. For a real mail server render
# the configuration at start from the environment; the password stays in a file:
#   INFERWATCH_SMTP_SMARTHOST=smtp.example.com:587 INFERWATCH_SMTP_FROM=... \\
#   INFERWATCH_SMTP_USERNAME=... INFERWATCH_SMTP_PASSWORD_FILE=/run/secrets/smtp_password \\
#   INFERWATCH_ALERT_EMAIL_TO=oncall@example.com \\
#   python -m inferwatch.alert_rules --alertmanager-config /run/inferwatch/alertmanager.yml
"""


def alertmanager_config(
    smtp: SmtpSettings = SmtpSettings(),
    timings: RouteTimings = RouteTimings(),
    templates: str = "templates/*.tmpl",
) -> dict:
    """The configuration as data; ``templates`` is relative to the file, or absolute."""
    for name in ("group_wait", "group_interval", "repeat_interval"):
        _duration(f"RouteTimings.{name}", getattr(timings, name))
    smtp_global = {
        "smtp_smarthost": smtp.smarthost,
        "smtp_from": smtp.sender,
        "smtp_require_tls": smtp.require_tls,
    }
    if smtp.username:
        smtp_global["smtp_auth_username"] = smtp.username
        smtp_global["smtp_auth_password_file"] = smtp.password_file
    return {
        "global": smtp_global,
        "templates": [templates],
        "route": {
            "receiver": "email",
            "group_by": ["alertname"],
            "group_wait": timings.group_wait,
            "group_interval": timings.group_interval,
            "repeat_interval": timings.repeat_interval,
        },
        # When the target is down its series are absent too: one email, not two.
        "inhibit_rules": [{
            "source_matchers": ['alertname="InferwatchDown"'],
            "target_matchers": ['alertname="InferwatchMetricsAbsent"'],
            "equal": ["job"],
        }],
        "receivers": [{
            "name": "email",
            "email_configs": [{
                "to": smtp.recipients,
                "send_resolved": True,
                "headers": {"Subject": '{{ template "inferwatch.email.subject" . }}'},
                "html": '{{ template "inferwatch.email.html" . }}',
                "text": '{{ template "inferwatch.email.text" . }}',
            }],
        }],
    }


def render_alertmanager_config(
    smtp: SmtpSettings = SmtpSettings(),
    timings: RouteTimings = RouteTimings(),
    templates: str = "templates/*.tmpl",
) -> str:
    return ALERTMANAGER_HEADER + "\n".join(to_yaml(alertmanager_config(smtp, timings, templates))) + "\n"


def write_alertmanager_config(out: Path, env: Mapping[str, str], templates_dir: Path) -> Path:
    """Render the configuration from ``env`` to ``out`` (a password goes to a file beside it)."""
    out = Path(out)
    smtp = SmtpSettings.from_env(env, password_dir=out.parent)
    templates = str(Path(templates_dir).resolve() / "*.tmpl")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_alertmanager_config(smtp, templates=templates))
    return out


# ---------------------------------------------------------------------------------------------
# Committed files
# ---------------------------------------------------------------------------------------------


def committed_files(root: Path) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    files = {root / RULES_DIR / name: text for name, text in rule_files().items()}
    files[root / ALERTMANAGER_CONFIG] = render_alertmanager_config()
    return files


def stale_files(root: Path) -> list[Path]:
    """Committed files that differ from the rendering (missing ones included)."""
    return generated.stale(committed_files(root))


# ---------------------------------------------------------------------------------------------
# A small YAML writer: the files stay readable (block scalars for multi-line PromQL) without a
# YAML library at run time.
# ---------------------------------------------------------------------------------------------

# Words that need no quotes: a letter first, no space, quote, brace, bracket or "#", no final ":".
_PLAIN = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_./:@-]*[A-Za-z0-9_./@-])?")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number(value)
    text = str(value)
    if (_PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS) or _DURATION.fullmatch(text):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inferwatch.alert_rules",
        description="Render the Prometheus rule files and the Alertmanager configuration from THRESHOLDS.",
    )
    action = generated.add_check_write_arguments(parser)
    action.add_argument("--alertmanager-config", metavar="OUT", type=Path,
                        help="render Alertmanager's configuration from INFERWATCH_SMTP_* to OUT")
    args = parser.parse_args(argv)

    if args.alertmanager_config:
        try:
            out = write_alertmanager_config(args.alertmanager_config, os.environ, args.root / ALERTMANAGER_TEMPLATES)
        except SettingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(out)
        return 0
    return generated.check_or_write(committed_files(args.root), args.write, "python -m inferwatch.alert_rules")


if __name__ == "__main__":
    sys.exit(main())
