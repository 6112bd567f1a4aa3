"""Runs the proxy on uWSGI: one worker process by default, a pool of threads in each.

One process keeps every metric exact on /metrics: with several worker processes each holds its
own counters and a scrape would see only one of them. Threads carry the concurrency (the work per
request is mostly waiting on the model server). ``--workers N`` runs N processes for a host with
more cores (:func:`worker_options`); their metrics are exact through the collector only, which is
why :mod:`inferwatch.proxy.config` refuses several workers without OTLP metric export. uWSGI was
chosen by measurement against waitress, gunicorn (gthread) and granian
(tests/benchmarks/server_choice.py): its HTTP parsing in C cost the least proxy CPU per request.

``serve`` replaces the current process with uWSGI (pyuwsgi, from PyPI); the app is imported in
the worker from :mod:`inferwatch.proxy.wsgi`, which reads the same ``INFERWATCH_*`` settings. SIGTERM
and SIGINT shut down gracefully: in-flight requests finish, then telemetry is flushed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from inferwatch.proxy.config import Settings, env_name

# Seconds a graceful shutdown waits for in-flight requests before the worker is killed.
SHUTDOWN_GRACE_S = 15


def oversize_guard_bytes(settings: Settings) -> int:
    return max(16 * settings.max_body_bytes, 16 << 20)


def worker_options(settings: Settings) -> list[str]:
    """The worker processes: ``settings.workers`` of them, each numbered by uWSGI (1..N, kept
    when uWSGI replaces one), which gives each its own instance id (inferwatch.proxy.wsgi).

    A SIGTERM or SIGINT sent to the whole process group (Ctrl-C in a terminal) reaches every
    worker besides the master; uWSGI's workers would exit at once, each losing what it had not
    yet exported, while the master was stopping them gracefully. Here they stop gracefully too,
    as they do on the master's SIGHUP.
    """
    return [
        "--processes", str(settings.workers),
        "--hook-accepting", "unix_signal:15 gracefully_kill",
        "--hook-accepting", "unix_signal:2 gracefully_kill",
    ]


def uwsgi_command(settings: Settings) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "uwsgi"),
        "--http11-socket", f"{settings.host}:{settings.port}",
        "--master",
        *worker_options(settings),
        "--threads", str(settings.threads),
        "--enable-threads",
        "--lazy-apps",  # import the app in the worker, after the fork: its threads live there
        "--need-app",
        "--single-interpreter",
        "--listen", "1024",
        # SIGTERM and SIGINT: stop accepting, let in-flight requests finish, then exit.
        "--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
        "--hook-master-start", "unix_signal:2 gracefully_kill_them_all",
        "--worker-reload-mercy", str(SHUTDOWN_GRACE_S),
        "--disable-logging",  # the app writes its own JSON request lines
        "--buffer-size", "32768",  # request headers up to 32 KiB
        # Read every body before the app runs, so an error answered without reading it (415,
        # 413, 400) leaves a clean keep-alive connection; larger bodies spill to a temp file.
        "--post-buffering", "65536",
        # A guard only: bodies over the proxy's limit get its JSON 413 up to this size; beyond
        # it uWSGI closes the connection without reading the body.
        "--limit-post", str(oversize_guard_bytes(settings)),
        "--module", "inferwatch.proxy.wsgi:application",
    ]
    if settings.metrics_address is not None:
        host, port = settings.metrics_address
        command[3:3] = ["--http11-socket", f"{host}:{port}"]
    return command


def serve(settings: Settings) -> None:
    """Exec uWSGI with the settings passed on through the environment."""
    environ = dict(os.environ)
    for field, value in vars(settings).items():
        environ[env_name(field)] = str(value)
    command = uwsgi_command(settings)
    os.execve(command[0], command, environ)
