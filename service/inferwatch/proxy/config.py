"""Settings of the proxy: one frozen dataclass, built once at start-up.

Every setting has a command-line flag and an environment variable; a flag beats the
environment, the environment beats the default. A bad value fails at start-up with a message
that names the variable.

Every setting, its flag, variable, default and meaning is declared once, on :class:`Settings`;
``inferwatch serve --help`` and the table in docs/configuration.md are made from it
(``python -m inferwatch.render --write``).

A client may stay silent for ``INFERWATCH_CLIENT_TIMEOUT`` seconds while it sends a request
(headers or body) and ``INFERWATCH_KEEPALIVE_TIMEOUT`` seconds idle between two requests on one
connection; then its connection is closed (a body cut off by the timeout is answered 408). Both
are rounded up to whole seconds. A request body must have arrived in full
``INFERWATCH_BODY_TIMEOUT`` seconds after the request's headers, however steadily it trickles;
then the client gets 408 and the connection closes. Each worker runs ``INFERWATCH_THREADS`` +
``INFERWATCH_BODY_THREADS`` threads: that many clients may trickle their bodies at once while
``INFERWATCH_THREADS`` requests still find a thread (see :mod:`inferwatch.proxy.body_deadline`).

``/metrics`` can be kept from clients: on a port of its own (``INFERWATCH_METRICS_PORT``, on
``INFERWATCH_METRICS_HOST``; the main port then answers 404 for it), and/or behind a bearer
token read from a file (``INFERWATCH_METRICS_TOKEN_FILE``; scrapes without
``Authorization: Bearer <token>`` get 401).

The model settings say which model the proxy fronts (the ``model`` and ``model_version`` labels
of every prediction series) and where its reference profile is: ``--model-dir`` (or
``--model-uri``) is the MLflow model directory (the one with ``MLmodel``), whose signature and
``inferwatch-profile.json`` are read; ``--model-profile`` names the profile file alone, for a
proxy that cannot see the model's files. ``--model-quality false`` turns the per-prediction
quality counting off. A GenAI answer's feedback token takes a rating, thumbs up or down or a
score from 1 to ``--feedback-score-max``; ``--genai-capture-content`` records prompt and answer
text on the MLflow call's span (off by default; see docs/genai.md). The feedback key (a file
shared by every instance) signs the feedback token each prediction answer carries; see
docs/model-quality.md.

The inference log (``--payload-log-*``, see :mod:`inferwatch.proxy.inference_log` and
docs/inference-logging.md) is off unless ``--payload-log-dir`` or ``--payload-log-otlp`` is given:
a sampled, redacted record of each prediction, written by a background thread to rolling JSON
Lines files of each worker and/or as OTLP logs to the collector (which needs an OTLP endpoint).

``INFERWATCH_WORKERS`` above 1 runs several worker processes for a host with several cores. Each
worker counts its own requests, so their metrics are exact only where they are kept apart and
summed: over OTLP, where every worker exports under its own ``service.instance.id`` and the
collector keeps one series per worker. Several workers therefore need OTLP metric export
(``OTEL_EXPORTER_OTLP_ENDPOINT``) and refuse to start without it; ``/metrics`` answers 404 with
a pointer to the collector instead of one worker's share.

Example::

    INFERWATCH_UPSTREAM=http://127.0.0.1:5005 inferwatch serve --port 8000
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 inferwatch serve --workers 4

OpenTelemetry export is configured with the standard ``OTEL_*`` variables (see
:mod:`inferwatch.proxy.telemetry`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from inferwatch.contract.inputs import MLFLOW_INVOCATIONS
from inferwatch.proxy.redaction import HASH, MASKS, MODES


class ConfigError(ValueError):
    """A setting has a value the proxy cannot start with."""

    def __init__(self, variable: str, value: object, reason: str):
        super().__init__(f"{variable}={value!r}: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


def _upstream_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL such as http://127.0.0.1:5005")
    return text.rstrip("/")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError("expected a port between 0 and 65535")
    return port


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("expected a number greater than 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("expected a number of 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("expected a whole number greater than 0")
    return value


def _token_file(text: str) -> str:
    path = Path(text).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise ValueError(f"cannot read the token file: {error.strerror}") from None
    if not token:
        raise ValueError("the token file is empty")
    return str(path)


def _model_dir(text: str) -> str:
    path = Path(text).expanduser()
    if not (path / "MLmodel").is_file():
        raise ValueError("no MLmodel file there: expected an MLflow model directory")
    return str(path)


def _model_uri(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("", "file"):
        raise ValueError("only local models (a path or a file: URI); for a remote model give --model-profile")
    return _model_dir(parts.path if parts.scheme else text)


def _readable_file(text: str) -> str:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError("no such file")
    return str(path)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError("expected true or false")
    return value in ("true", "1", "yes", "on")


def _score_max(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError("expected a whole number of 2 or more (scores go from 1 to it)")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a share between 0 and 1, e.g. 0.1 for one request in ten")
    return value


def _log_directory(text: str) -> str:
    """An absolute path whose nearest existing ancestor is a directory this user can write in."""
    path = Path(text).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing} is not writable by this user")
    return str(path)


def redaction_rules(text: str) -> dict[str, str]:
    """``name[:mode],...`` as {name: mode}; the mode is ``drop`` (the default) or ``hash``."""
    rules = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, mode = entry.rpartition(":") if ":" in entry else (entry, "", "drop")
        name, mode = name.strip(), mode.strip().lower()
        if not name or mode not in MODES:
            raise ValueError(f"{entry!r}: expected NAME, NAME:drop or NAME:hash")
        rules[name] = mode
    return rules


def _redaction_spec(text: str) -> str:
    return ",".join(f"{name}:{mode}" for name, mode in redaction_rules(text).items())


def mask_kinds(text: str) -> tuple[str, ...]:
    """``email,digits`` as a tuple; ``none`` is the empty one."""
    kinds = tuple(dict.fromkeys(filter(None, (part.strip().lower() for part in text.split(",")))))
    if kinds == ("none",):
        return ()
    unknown = [kind for kind in kinds if kind not in MASKS]
    if unknown:
        raise ValueError(f"unknown mask {unknown[0]!r}: expected a list of {', '.join(MASKS)}, or none")
    return kinds


def _mask_spec(text: str) -> str:
    return ",".join(mask_kinds(text)) or "none"


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


PARSE, HELP, SHOWN = "parse", "help", "shown"


def setting(default: Any, parse: Callable[[str], Any], help: str, shown: str | None = None) -> Any:
    """A field of :class:`Settings`: ``parse`` turns the flag's or variable's text into the value
    (a ValueError says why it cannot), ``help`` is the sentence the docs and ``--help`` show,
    ``shown`` the default as the docs say it when the value alone does not."""
    return dataclasses.field(default=default, metadata={PARSE: parse, HELP: help, SHOWN: shown})


def plain(markdown: str) -> str:
    """Help or a default as plain text (``--help``): links become their text, code loses its ticks."""
    return re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "")


def shown_default(field: dataclasses.Field) -> str:
    """The default as docs/configuration.md shows it (markdown)."""
    if field.metadata[SHOWN] is not None:
        return field.metadata[SHOWN]
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"
    return "none" if field.default == "" else f"`{field.default}`"


@dataclass(frozen=True)
class Settings:
    """Every setting of the proxy: its default, its parser and a sentence of help (markdown, as
    docs/configuration.md shows it). The flag is ``--<name>``, the environment variable
    ``INFERWATCH_<NAME>`` (:func:`flag_name`, :func:`env_name`)."""

    upstream: str = setting(
        "http://127.0.0.1:5005", _upstream_url,
        'the MLflow model server')
    host: str = setting(
        "127.0.0.1", str,
        'listen address')
    port: int = setting(
        8000, _port,
        'listen port')
    connect_timeout: float = setting(
        2.0, _positive_float,
        'seconds to connect to MLflow')
    read_timeout: float = setting(
        30.0, _positive_float,
        "seconds to wait for the model's answer")
    max_body_bytes: int = setting(
        1024 * 1024, _positive_int,
        'larger bodies get 413')
    threads: int = setting(
        16, _positive_int,
        'request threads per worker process')
    body_threads: int = setting(
        64, _positive_int,
        'more threads per worker, for clients whose request bodies arrive slowly ([process model](#process-model))')
    client_timeout: float = setting(
        10.0, _positive_float,
        'seconds a client may stay silent while sending a request (headers or body); [below](#limits-and-timeouts-what-a-slow-or-hostile-client-gets)')
    body_timeout: float = setting(
        30.0, _positive_float,
        'seconds after its headers by which a request body must be in full, however steadily it arrives; then 408')
    keepalive_timeout: float = setting(
        75.0, _positive_float,
        'seconds a keep-alive connection may stay idle between two requests')
    workers: int = setting(
        1, _positive_int,
        'worker processes; above 1 needs OTLP metric export ([below](#several-workers---workers))')
    ready_timeout: float = setting(
        1.0, _positive_float,
        "seconds `/readyz` waits for MLflow's `/ping`")
    host_metrics_interval: float = setting(
        5.0, _positive_float,
        'seconds between host samples')
    disk_path: str = setting(
        "/", str,
        'filesystem reported by `system_disk_usage`')
    log_level: str = setting(
        "INFO", _log_level,
        '`WARNING` silences the per-request lines')
    metrics_port: int = setting(
        0, _port,
        'serve /metrics on a port of its own (below)',
        shown='`0` (same port)')
    metrics_host: str = setting(
        "", str,
        'listen address of that port',
        shown='the `--host`')
    metrics_token_file: str = setting(
        "", _token_file,
        'file holding the bearer token /metrics requires',
        shown='none (no token)')
    metrics_max_age: float = setting(
        1.0, _non_negative_float,
        'seconds: while requests are in flight, a scrape may be answered from a snapshot this old ([performance](performance.md#the-scrape)); `0` collects on every scrape')
    model_name: str = setting(
        "", str,
        'the `model` label of every prediction series',
        shown="the profile's, else the model dir's name, else `unknown`")
    model_version: str = setting(
        "", str,
        'the `model_version` label',
        shown="the profile's, else `model_uuid`[:8], else `unknown`")
    model_dir: str = setting(
        "", _model_dir,
        'the MLflow model directory (with `MLmodel`): flavor, signature, `inferwatch-profile.json`',
        shown='none')
    model_uri: str = setting(
        "", _model_uri,
        'the same as a path or `file:` URI; remote URIs are refused',
        shown='none')
    model_profile: str = setting(
        "", _readable_file,
        'the reference profile file alone',
        shown='`inferwatch-profile.json` in the model dir')
    model_quality: bool = setting(
        True, _boolean,
        '`false`: no per-prediction quality counting, no feedback tokens, no `/feedback`')
    feedback_key_file: str = setting(
        "", _token_file,
        'the key that signs feedback tokens; share it across instances',
        shown='none (a random key per process)')
    feedback_max_age: float = setting(
        86400.0, _positive_float,
        'seconds a prediction takes feedback')
    feedback_max_rows: int = setting(
        100, _positive_int,
        'predictions with more rows get no feedback token')
    feedback_score_max: int = setting(
        5, _score_max,
        'GenAI answers are rated up/down or with a score from 1 to this ([genai.md](genai.md#ratings-post-feedback))')
    genai_capture_content: bool = setting(
        False, _boolean,
        "record prompt and answer text on the MLflow call's span (also `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`); see [genai.md](genai.md#prompt-and-answer-text-opt-in)")
    payload_log_dir: str = setting(
        "", _log_directory,
        'the inference log: JSON Lines files of each worker here ([inference-logging.md](inference-logging.md))',
        shown='none (off)')
    payload_log_otlp: bool = setting(
        False, _boolean,
        'the inference log as OTLP logs to the collector (needs `OTEL_EXPORTER_OTLP_ENDPOINT`)')
    payload_log_sample: float = setting(
        1.0, _share,
        'share of requests logged, chosen by a hash of the request id')
    payload_log_failures: bool = setting(
        True, _boolean,
        'log every failed prediction, sampled or not')
    payload_log_redact: str = setting(
        "", _redaction_spec,
        '`NAME[:drop|hash],...`: columns and JSON fields removed or hashed in the log',
        shown='none')
    payload_log_mask: str = setting(
        "email,digits", _mask_spec,
        'patterns masked in logged text; `none` turns masking off')
    payload_log_key_file: str = setting(
        "", _token_file,
        'the secret of `:hash` (required by it)',
        shown='none')
    payload_log_file_bytes: int = setting(
        64 * 1024 * 1024, _positive_int,
        'a log file is rotated before it grows past this')
    payload_log_file_age: float = setting(
        3600.0, _positive_float,
        '... or once it is this many seconds old')
    payload_log_queue: int = setting(
        10_000, _positive_int,
        "records waiting for the log's writer before new ones are dropped (counted)")

    @property
    def payload_log(self) -> bool:
        """Whether the inference log is on (files, OTLP or both)."""
        return bool(self.payload_log_dir) or self.payload_log_otlp

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where /metrics is served when it has a port of its own; None: on the main port."""
        return (self.metrics_host or self.host, self.metrics_port) if self.metrics_port else None

    @property
    def invocations_url(self) -> str:
        return self.upstream + MLFLOW_INVOCATIONS

    @property
    def ping_url(self) -> str:
        return self.upstream + "/ping"


# field name -> parser, from the settings' own declarations.
PARSERS: Mapping[str, Callable[[str], Any]] = {field.name: field.metadata[PARSE] for field in dataclasses.fields(Settings)}


def otlp_export_enabled(environ: Mapping[str, str], signal: str) -> bool:
    """Whether the OpenTelemetry set-up exports ``signal`` (``traces``, ``metrics``) over OTLP:
    an endpoint is set and ``OTEL_<SIGNAL>_EXPORTER`` is not ``none``."""
    if environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def telemetry_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


SEVERAL_WORKERS_NEED_OTLP = (
    "several workers each count their own requests, and a scrape of /metrics would reach only "
    "one of them; export metrics over OTLP (set OTEL_EXPORTER_OTLP_ENDPOINT to the collector), "
    "where each worker reports under its own service.instance.id and the sums are exact, or run "
    "one worker"
)


def _check_workers(settings: Settings, source: str, environ: Mapping[str, str]) -> None:
    """Several workers are exact only through OTLP (or when there is no telemetry at all)."""
    if settings.workers > 1 and not telemetry_disabled(environ) and not otlp_export_enabled(environ, "metrics"):
        raise ConfigError(source, str(settings.workers), SEVERAL_WORKERS_NEED_OTLP)


def _check_payload_log(settings: Settings, sources: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """Hashing needs its key; OTLP logs need the SDK and an endpoint."""
    if HASH in redaction_rules(settings.payload_log_redact).values() and not settings.payload_log_key_file:
        raise ConfigError(sources["payload_log_redact"], settings.payload_log_redact,
                          f"a field redacted with :hash needs {flag_name('payload_log_key_file')} "
                          f"({env_name('payload_log_key_file')}): a secret file shared by every instance, "
                          "so equal values hash alike everywhere")
    if settings.payload_log_otlp and (telemetry_disabled(environ) or not otlp_export_enabled(environ, "logs")):
        raise ConfigError(sources["payload_log_otlp"], "true",
                          "OTLP logs need OpenTelemetry on and an endpoint: set OTEL_EXPORTER_OTLP_ENDPOINT "
                          "(or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT) to the collector")


def env_name(field: str) -> str:
    return "INFERWATCH_" + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_settings(
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: flag beats environment beats default.

    ``flags`` maps field names to the raw text given on the command line (None when absent).
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field in dataclasses.fields(Settings):
        variable = env_name(field.name)
        flag_value = flags.get(field.name)
        raw, source = (
            (flag_value, flag_name(field.name))
            if flag_value is not None
            else (environ.get(variable), variable)
        )
        if raw is None or raw == "":
            continue
        try:
            values[field.name] = PARSERS[field.name](str(raw))
        except ValueError as error:
            raise ConfigError(source, raw, str(error)) from None
        sources[field.name] = source
    if values.get("model_dir") and values.get("model_uri"):
        raise ConfigError(env_name("model_uri"), values["model_uri"], "give the model dir or its URI, not both")
    settings = Settings(**values)
    _check_workers(settings, sources.get("workers", env_name("workers")), environ)
    _check_payload_log(settings, sources, environ)
    return settings
