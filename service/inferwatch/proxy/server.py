"""Runs the proxy on uWSGI: an event-driven HTTP router in front of one process with a pool of threads.

::

    client ──HTTP──▶ uWSGI http router (C, one event loop) ──uwsgi protocol, unix socket──▶ worker (threads, the app)

The router owns every client connection: it reads request headers, keeps idle keep-alive
connections and writes answers out, without a thread. A worker thread is taken only once a
request's headers are complete, so clients that connect and stay silent, trickle header lines or
sit idle between requests cannot hold the threads that serve predictions. The router drops a
connection that stays silent longer than its timeout (the ``client_timeout`` and
``keepalive_timeout`` settings, :func:`router_timeouts`).

The router streams a request body to the worker as it arrives; it cannot buffer one, so a
thread reading a slow body waits for it. Such a thread waits in the kernel (no CPU, not holding
the interpreter lock): the worker runs ``threads + body_threads`` threads, so ``body_threads``
clients trickling their bodies at once leave ``threads`` threads for everyone else, and each body
has a deadline, ``body_timeout`` after its headers, then 408 (:mod:`inferwatch.proxy.body_deadline`).

The listening sockets are made here, with ``TCP_NODELAY``, and handed to the router as
``fd://N`` (:func:`listening_socket`): the router has no option for it, writes an answer in
4 KiB pieces, and without it each piece after the first waited for the client's delayed ACK
(Nagle's algorithm, about 40 ms a piece on Linux). Linux gives every accepted connection the
listening socket's ``TCP_NODELAY``.

One worker process by default keeps every metric exact on /metrics: with several, each holds its
own counters and a scrape would see only one of them. Threads carry the concurrency (the work per
request is mostly waiting on the model server). ``--workers N`` runs N processes for a host with
more cores (:func:`worker_options`), sharing the router's unix socket; their metrics are exact
through the collector only, which is why :mod:`inferwatch.proxy.config` refuses several workers
without OTLP metric export. uWSGI was chosen by measurement against waitress, gunicorn (gthread)
and granian (tests/benchmarks/server_choice.py): its HTTP handling in C costs the least proxy CPU
per request. The workers listen on a unix socket in a directory only this user can open.

Request bodies are read by the app, not buffered by uWSGI first: a body over the limit is answered
413 from its Content-Length before it is read (see :mod:`inferwatch.proxy.request_body`).

``serve`` replaces the current process with uWSGI (pyuwsgi, from PyPI); the app is imported in
the worker from :mod:`inferwatch.proxy.wsgi`, which reads the same ``INFERWATCH_*`` settings. SIGTERM
and SIGINT shut down gracefully: in-flight requests finish, then telemetry is flushed.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inferwatch.proxy.config import Settings, env_name

# Seconds a graceful shutdown waits for in-flight requests before the worker is killed.
SHUTDOWN_GRACE_S = 15
# Request headers the router accepts: uWSGI's packet to the worker holds at most 64 KiB of
# variables; a larger header block closes the connection.
MAX_HEADER_BYTES = 65535
# Request header lines the worker accepts (uWSGI's --max-vars counts a few of its own).
MAX_HEADER_LINES = 200
# The worker socket's directory: SOCKET_DIR_PREFIX + the master's pid + "-" + random.
SOCKET_DIR_PREFIX = "inferwatch-"
# Connections waiting to be accepted, on each listening socket and on the worker socket.
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class RouterTimeouts:
    """Whole seconds, as uWSGI takes them."""

    headers: int  # silence allowed while a client sends its request headers
    keepalive: int  # idle time allowed between two requests on one connection
    exchange: int  # silence allowed on a connection while its request is in the worker


def router_timeouts(settings: Settings) -> RouterTimeouts:
    # While a request is in the worker the router hears nothing from it until the answer: the
    # body (body_timeout at most) and the model call (connect + read timeouts) must fit, or the
    # router would cut off a slow model's 504.
    body = max(settings.body_timeout, settings.client_timeout)
    exchange = math.ceil(body + settings.connect_timeout + settings.read_timeout) + 5
    return RouterTimeouts(
        headers=math.ceil(settings.client_timeout),
        keepalive=math.ceil(settings.keepalive_timeout),
        exchange=exchange,
    )


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


def http_addresses(settings: Settings) -> list[tuple[str, int]]:
    """Where the router listens: the main port, and the metrics port when it has one."""
    addresses = [(settings.host, settings.port)]
    if settings.metrics_address is not None:
        addresses.append(settings.metrics_address)
    return addresses


def listening_socket(host: str, port: int, defer_accept_s: int) -> socket.socket:
    """A listening TCP socket with ``TCP_NODELAY``, which every connection it accepts inherits.

    The rest is what uWSGI's own ``--http host:port`` would set: ``SO_REUSEADDR``, and
    ``TCP_DEFER_ACCEPT`` so that a connection that sends nothing is not even handed to the
    router before ``defer_accept_s`` seconds. Inheritable: it is passed to uWSGI across ``exec``.
    """
    host = host.strip("[]")
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept_s)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def uwsgi_command(settings: Settings, socket_dir: str, listening_fds: Sequence[int]) -> list[str]:
    """The uWSGI command line; ``listening_fds`` are the sockets of :func:`http_addresses`, in order."""
    timeouts = router_timeouts(settings)
    socket_path = str(Path(socket_dir) / "app.sock")
    return [
        str(Path(sys.executable).parent / "uwsgi"),
        *(part for fd in listening_fds for part in ("--http", f"fd://{fd}")),
        "--http-keepalive=" + str(timeouts.keepalive),
        "--http-headers-timeout", str(timeouts.headers),
        "--http-timeout", str(timeouts.exchange),
        # Chunked request bodies reach the app as they are; it decodes them (uwsgi.chunked_read).
        "--http-chunked-input",
        "--socket", socket_path,
        "--chmod-socket=600",
        "--hook-as-user-atexit", f"exec:rm -rf {socket_dir}",  # the socket and its directory
        "--master",
        *worker_options(settings),
        # Threads for requests, and more for requests whose bodies arrive slowly (inferwatch.proxy.body_deadline).
        "--threads", str(settings.threads + settings.body_threads),
        "--enable-threads",
        "--lazy-apps",  # import the app in the worker, after the fork: its threads live there
        "--need-app",
        "--single-interpreter",
        "--listen", str(LISTEN_BACKLOG),
        # SIGTERM and SIGINT: stop accepting, let in-flight requests finish, then exit.
        "--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
        "--hook-master-start", "unix_signal:2 gracefully_kill_them_all",
        "--worker-reload-mercy", str(SHUTDOWN_GRACE_S),
        "--disable-logging",  # the app writes its own JSON request lines
        "--buffer-size", str(MAX_HEADER_BYTES),
        "--max-vars", str(MAX_HEADER_LINES + 24),
        # A worker waits this long for the next bytes of a body before the app answers 408.
        "--socket-timeout", str(math.ceil(settings.client_timeout)),
        "--chunked-input-timeout", str(math.ceil(settings.client_timeout)),
        "--chunked-input-limit", str(settings.max_body_bytes),
        "--module", "inferwatch.proxy.wsgi:application",
    ]


def socket_dir(base: str | None = None) -> str:
    """A new directory (mode 0700: only this user reaches the workers) for the worker socket.

    It is named after this process, which becomes uWSGI's master, and removed when the master
    exits; one left behind by a master that was killed is removed here, at the next start.
    """
    base_path = Path(base or tempfile.gettempdir())
    for stale in base_path.glob(SOCKET_DIR_PREFIX + "*-*"):
        pid = stale.name.removeprefix(SOCKET_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and stale.stat().st_uid == os.getuid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{SOCKET_DIR_PREFIX}{os.getpid()}-", dir=base_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(settings: Settings) -> None:
    """Listen, then exec uWSGI with the sockets and with the settings passed on through the environment."""
    environ = dict(os.environ)
    for field, value in vars(settings).items():
        environ[env_name(field)] = str(value)
    listeners = []
    for host, port in http_addresses(settings):
        try:
            listeners.append(listening_socket(host, port, math.ceil(settings.client_timeout)))
        except OSError as error:
            raise SystemExit(f"inferwatch: cannot listen on {host}:{port}: {error.strerror or error}") from None
    command = uwsgi_command(settings, socket_dir(), [listener.fileno() for listener in listeners])
    os.execve(command[0], command, environ)
