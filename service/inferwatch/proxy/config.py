"""Settings of the proxy: one frozen dataclass, built once at start-up.

Every setting has a command-line flag and an environment variable; a flag beats the
environment, the environment beats the default. A bad value fails at start-up with a message
that names the variable.

=========================================  =============================  ========================
environment variable                       flag                           default
=========================================  =============================  ========================
``INFERWATCH_UPSTREAM``                    ``--upstream``                 ``http://127.0.0.1:5005``
``INFERWATCH_HOST``                        ``--host``                     ``127.0.0.1``
``INFERWATCH_PORT``                        ``--port``                     ``8000``
``INFERWATCH_CONNECT_TIMEOUT``             ``--connect-timeout``          ``2.0`` (seconds)
``INFERWATCH_READ_TIMEOUT``                ``--read-timeout``             ``30.0`` (seconds)
``INFERWATCH_MAX_BODY_BYTES``              ``--max-body-bytes``           ``1048576``
``INFERWATCH_CLIENT_TIMEOUT``              ``--client-timeout``           ``10`` (seconds)
``INFERWATCH_BODY_TIMEOUT``                ``--body-timeout``             ``30`` (seconds)
``INFERWATCH_KEEPALIVE_TIMEOUT``           ``--keepalive-timeout``        ``75`` (seconds)
``INFERWATCH_THREADS``                     ``--threads``                  ``16`` (per worker)
``INFERWATCH_BODY_THREADS``                ``--body-threads``             ``64`` (per worker)
``INFERWATCH_WORKERS``                     ``--workers``                  ``1`` (processes)
``INFERWATCH_READY_TIMEOUT``               ``--ready-timeout``            ``1.0`` (seconds)
``INFERWATCH_HOST_METRICS_INTERVAL``       ``--host-metrics-interval``    ``5.0`` (seconds)
``INFERWATCH_DISK_PATH``                   ``--disk-path``                ``/``
``INFERWATCH_LOG_LEVEL``                   ``--log-level``                ``INFO``
``INFERWATCH_METRICS_PORT``                ``--metrics-port``             ``0`` (same port)
``INFERWATCH_METRICS_HOST``                ``--metrics-host``             the ``--host``
``INFERWATCH_METRICS_TOKEN_FILE``          ``--metrics-token-file``       none (no token)
``INFERWATCH_METRICS_MAX_AGE``             ``--metrics-max-age``          ``1.0`` (seconds; 0: always fresh)
``INFERWATCH_MODEL_NAME``                  ``--model-name``               the profile's, else ``unknown``
``INFERWATCH_MODEL_VERSION``               ``--model-version``            the profile's, else ``unknown``
``INFERWATCH_MODEL_DIR``                   ``--model-dir``                none
``INFERWATCH_MODEL_URI``                   ``--model-uri``                none (``file:`` URIs only)
``INFERWATCH_MODEL_PROFILE``               ``--model-profile``            ``inferwatch-profile.json`` in the model dir
``INFERWATCH_MODEL_QUALITY``               ``--model-quality``            ``true``
``INFERWATCH_FEEDBACK_KEY_FILE``           ``--feedback-key-file``        none (a key per process)
``INFERWATCH_FEEDBACK_MAX_AGE``            ``--feedback-max-age``         ``86400`` (seconds)
``INFERWATCH_FEEDBACK_MAX_ROWS``           ``--feedback-max-rows``        ``100``
``INFERWATCH_FEEDBACK_SCORE_MAX``          ``--feedback-score-max``       ``5`` (GenAI ratings: scores 1 to this)
``INFERWATCH_GENAI_CAPTURE_CONTENT``       ``--genai-capture-content``    ``false`` (prompt and answer text on spans)
``INFERWATCH_PAYLOAD_LOG_DIR``             ``--payload-log-dir``          none (no files)
``INFERWATCH_PAYLOAD_LOG_OTLP``            ``--payload-log-otlp``         ``false``
``INFERWATCH_PAYLOAD_LOG_SAMPLE``          ``--payload-log-sample``       ``1.0`` (share of requests)
``INFERWATCH_PAYLOAD_LOG_FAILURES``        ``--payload-log-failures``     ``true`` (all failures logged)
``INFERWATCH_PAYLOAD_LOG_REDACT``          ``--payload-log-redact``       none (``name[:drop|hash],...``)
``INFERWATCH_PAYLOAD_LOG_MASK``            ``--payload-log-mask``         ``email,digits`` (or ``none``)
``INFERWATCH_PAYLOAD_LOG_KEY_FILE``        ``--payload-log-key-file``     none (needed by ``:hash``)
``INFERWATCH_PAYLOAD_LOG_FILE_BYTES``      ``--payload-log-file-bytes``   ``67108864``
``INFERWATCH_PAYLOAD_LOG_FILE_AGE``        ``--payload-log-file-age``     ``3600`` (seconds)
``INFERWATCH_PAYLOAD_LOG_QUEUE``           ``--payload-log-queue``        ``10000`` (records)
=========================================  =============================  ========================

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class Settings:
    upstream: str = "http://127.0.0.1:5005"
    host: str = "127.0.0.1"
    port: int = 8000
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    max_body_bytes: int = 1024 * 1024
    threads: int = 16
    body_threads: int = 64
    client_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0
    workers: int = 1
    ready_timeout: float = 1.0
    host_metrics_interval: float = 5.0
    disk_path: str = "/"
    log_level: str = "INFO"
    metrics_port: int = 0
    metrics_host: str = ""
    metrics_token_file: str = ""
    metrics_max_age: float = 1.0
    model_name: str = ""
    model_version: str = ""
    model_dir: str = ""
    model_uri: str = ""
    model_profile: str = ""
    model_quality: bool = True
    feedback_key_file: str = ""
    feedback_max_age: float = 86400.0
    feedback_max_rows: int = 100
    feedback_score_max: int = 5
    genai_capture_content: bool = False
    payload_log_dir: str = ""
    payload_log_otlp: bool = False
    payload_log_sample: float = 1.0
    payload_log_failures: bool = True
    payload_log_redact: str = ""
    payload_log_mask: str = "email,digits"
    payload_log_key_file: str = ""
    payload_log_file_bytes: int = 64 * 1024 * 1024
    payload_log_file_age: float = 3600.0
    payload_log_queue: int = 10_000

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
        return self.upstream + "/invocations"

    @property
    def ping_url(self) -> str:
        return self.upstream + "/ping"


# field name -> parser; the environment variable is INFERWATCH_<FIELD>, the flag --<field>.
PARSERS: Mapping[str, Callable[[str], Any]] = {
    "upstream": _upstream_url,
    "host": str,
    "port": _port,
    "connect_timeout": _positive_float,
    "read_timeout": _positive_float,
    "max_body_bytes": _positive_int,
    "threads": _positive_int,
    "body_threads": _positive_int,
    "client_timeout": _positive_float,
    "body_timeout": _positive_float,
    "keepalive_timeout": _positive_float,
    "workers": _positive_int,
    "ready_timeout": _positive_float,
    "host_metrics_interval": _positive_float,
    "disk_path": str,
    "log_level": _log_level,
    "metrics_port": _port,
    "metrics_host": str,
    "metrics_token_file": _token_file,
    "metrics_max_age": _non_negative_float,
    "model_name": str,
    "model_version": str,
    "model_dir": _model_dir,
    "model_uri": _model_uri,
    "model_profile": _readable_file,
    "model_quality": _boolean,
    "feedback_key_file": _token_file,
    "feedback_max_age": _positive_float,
    "feedback_max_rows": _positive_int,
    "feedback_score_max": _score_max,
    "genai_capture_content": _boolean,
    "payload_log_dir": _log_directory,
    "payload_log_otlp": _boolean,
    "payload_log_sample": _share,
    "payload_log_failures": _boolean,
    "payload_log_redact": _redaction_spec,
    "payload_log_mask": _mask_spec,
    "payload_log_key_file": _token_file,
    "payload_log_file_bytes": _positive_int,
    "payload_log_file_age": _positive_float,
    "payload_log_queue": _positive_int,
}


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
