"""Alertmanager's configuration: email for every alert, rendered from the notification policy.

The seed's alerts (``severity="critical"``) take the default route; the SLO burn-rate alerts go
to the receivers ``page`` and ``ticket`` by their severity (both email here), and a ticket waits
while the page of the same SLO and model fires (docs/slo.md).

``observability/alertmanager/alertmanager.yml`` is the local-development rendering (an SMTP sink
on 127.0.0.1:1025, no authentication); ``python -m inferwatch.render --check`` (and
``tests/test_alertmanager_config.py``) fail when it differs.

Alertmanager does not expand environment variables in its configuration, so a real deployment
renders its own copy at start from the environment, and the SMTP password never enters the
configuration or the repository: Alertmanager reads it from ``auth_password_file``::

    python -m inferwatch.render --alertmanager-config /run/inferwatch/alertmanager.yml
    alertmanager --config.file /run/inferwatch/alertmanager.yml

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
    python -m inferwatch.render --alertmanager-config /run/inferwatch/alertmanager.yml

Alertmanager before 0.27 (Debian 12 packages 0.25) uses the password file's bytes as they are,
so a trailing newline becomes part of the password; 0.27 and later (the 0.35 inferwatch builds
and compose runs) trim it. A file ending in a newline is refused here, so that a configuration
rendered here means the same password to either.

Tests shorten the notification timings (:class:`~inferwatch.contract.thresholds.RouteTimings`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from inferwatch.contract.slo import PAGE, TICKET
from inferwatch.contract.thresholds import THRESHOLDS, RouteTimings, Thresholds
from inferwatch.render.text import duration, to_yaml

ALERTMANAGER_DIR = Path("observability/alertmanager")
ALERTMANAGER_CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
ALERTMANAGER_TEMPLATES = ALERTMANAGER_DIR / "templates"


def group_by(t: Thresholds = THRESHOLDS) -> list[str]:
    """One email per alert name and model: two failing models are two emails, each naming its
    model in the subject, each resolved on its own. Grafana's policy groups the same way."""
    return ["alertname", *t.model_labels]


def slo_group_by(t: Thresholds = THRESHOLDS) -> list[str]:
    """A burn-rate alert's email per alert name, model and severity: the subject then reads
    "PredictionAvailabilityBudgetBurn (fraud-model, page)"."""
    return [*group_by(t), "severity"]


def slo_inhibit_rule(t: Thresholds = THRESHOLDS) -> dict:
    """While an SLO's page fires for a model, its ticket for that model waits: one alarm, the
    louder one. The ticket is sent if it still fires when the page has resolved."""
    return {
        "source_matchers": [f'severity="{PAGE}"'],
        "target_matchers": [f'severity="{TICKET}"'],
        "equal": ["slo", *t.model_labels],
    }


class SettingError(ValueError):
    """An SMTP setting from the environment is missing or invalid; names the variable."""

    def __init__(self, variable: str, problem: str):
        self.variable = variable
        super().__init__(f"{variable}: {problem}")



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
            f"{resolved} ends with a newline, which Alertmanager before 0.27 sends as part of "
            "the password; write it with printf '%s'",
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
# Alertmanager for inferwatch: every alert goes by email, one email per alert name and model (job);
# SLO burn-rate alerts to the receivers page and ticket (see docs/slo.md to add a pager).
#
# Generated by `python -m inferwatch.render --write` from service/inferwatch/render/alertmanager.py:
# do not edit by hand (tests/test_alertmanager_config.py fails when it differs). This copy is the
# local-development rendering: an SMTP sink on 127.0.0.1:1025 (Mailpit, or
# `python -m aiosmtpd -n -l 127.0.0.1:1025`), no authentication. For a real mail server render
# the configuration at start from the environment; the password stays in a file:
#   INFERWATCH_SMTP_SMARTHOST=smtp.example.com:587 INFERWATCH_SMTP_FROM=... \\
#   INFERWATCH_SMTP_USERNAME=... INFERWATCH_SMTP_PASSWORD_FILE=/run/secrets/smtp_password \\
#   INFERWATCH_ALERT_EMAIL_TO=oncall@example.com \\
#   python -m inferwatch.render --alertmanager-config /run/inferwatch/alertmanager.yml
"""


def alertmanager_config(
    smtp: SmtpSettings = SmtpSettings(),
    timings: RouteTimings = RouteTimings(),
    templates: str = "templates/*.tmpl",
) -> dict:
    """The configuration as data; ``templates`` is relative to the file, or absolute."""
    for name in ("group_wait", "group_interval", "repeat_interval"):
        duration(f"RouteTimings.{name}", getattr(timings, name))
    smtp_global = {
        "smtp_smarthost": smtp.smarthost,
        "smtp_from": smtp.sender,
        "smtp_require_tls": smtp.require_tls,
    }
    if smtp.username:
        smtp_global["smtp_auth_username"] = smtp.username
        smtp_global["smtp_auth_password_file"] = smtp.password_file
    duration("RouteTimings.ticket_repeat_interval", timings.ticket_repeat_interval)
    return {
        "global": smtp_global,
        "templates": [templates],
        "route": {
            "receiver": "email",
            "group_by": group_by(),
            "group_wait": timings.group_wait,
            "group_interval": timings.group_interval,
            "repeat_interval": timings.repeat_interval,
            # The SLO burn-rate alerts, each severity to its own receiver (both email here; a
            # pager goes into the page receiver, docs/slo.md). Everything else (severity
            # critical) takes the route above.
            "routes": [
                {"matchers": [f'severity="{PAGE}"'], "receiver": PAGE, "group_by": slo_group_by()},
                {"matchers": [f'severity="{TICKET}"'], "receiver": TICKET, "group_by": slo_group_by(),
                 "repeat_interval": timings.ticket_repeat_interval},
            ],
        },
        "inhibit_rules": [
            # When the target is down its series are absent too: one email, not two.
            {
                "source_matchers": ['alertname="InferwatchDown"'],
                "target_matchers": ['alertname="InferwatchMetricsAbsent"'],
                "equal": ["job"],
            },
            slo_inhibit_rule(),
        ],
        "receivers": [_email_receiver(name, smtp) for name in ("email", PAGE, TICKET)],
    }


def _email_receiver(name: str, smtp: SmtpSettings) -> dict:
    return {
        "name": name,
        "email_configs": [{
            "to": smtp.recipients,
            "send_resolved": True,
            "headers": {"Subject": '{{ template "inferwatch.email.subject" . }}'},
            "html": '{{ template "inferwatch.email.html" . }}',
            "text": '{{ template "inferwatch.email.text" . }}',
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


def committed_files(root: Path) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    return {root / ALERTMANAGER_CONFIG: render_alertmanager_config()}
