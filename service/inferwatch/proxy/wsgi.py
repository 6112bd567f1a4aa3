"""The proxy as a WSGI application for servers that import one: ``inferwatch.proxy.wsgi:application``.

Settings come from the ``INFERWATCH_*`` environment (see :mod:`inferwatch.proxy.config`). Under
uWSGI with several workers (``INFERWATCH_WORKERS``) each worker imports this module after the
fork and learns its number from uWSGI; another server must run one process, since it would not
give each its own instance id. When the server stops, the app's telemetry is flushed (uWSGI's
atexit hook, or Python's elsewhere).

Every request finds the worker's body deadlines in its environ
(:mod:`inferwatch.proxy.body_deadline`), whose thread starts with the app and parks the worker's
spare threads until slow bodies need them.

Once the app is made, what exists lives as long as the worker (the imports, the app, the
instruments: some 260,000 objects the cyclic garbage collector tracks). They are frozen
(``gc.freeze``) so that a full collection no longer traverses them all: a large batch's parse
makes thousands of containers and triggers one every 40 requests or so: a 5,000-row prediction
costs the worker about 1 ms less CPU (8.1 -> 7.2 ms; docs/performance.md). Objects freed later by
reference counting are freed as before.
"""

import atexit
import gc
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from inferwatch.proxy.access_log import configure_logging
from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.body_deadline import BodyDeadlines, SpareThreads
from inferwatch.proxy.config import load_settings

try:
    import uwsgi  # present only inside uWSGI
except ImportError:
    uwsgi = None

# Signals uWSGI stops a worker with (SIGHUP from the master: finish, then exit; SIGTERM, SIGINT).
STOP_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM}


@contextmanager
def _stop_signals_kept_from_new_threads() -> Iterator[None]:
    """Threads started in here (the log writer, the host sampler, the exporters) never receive a
    signal that stops the worker, so it lands on a uWSGI thread. uWSGI exits from inside the
    handler, on the thread the signal landed on, and the shutdown that then runs (uwsgi.atexit)
    cannot wait for the thread it runs on: seen with several workers when two stop signals came
    together (Ctrl-C reaches every process of the group, then the master stops each worker) and
    the second landed on the log writer's thread, which hung that worker."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


_settings = load_settings()
_worker = uwsgi.worker_id() if uwsgi is not None else 1
# The body threads wait parked until slow bodies need them (inferwatch.proxy.body_deadline).
_spares = SpareThreads(_settings.body_threads, _settings.threads)
_body_deadlines = BodyDeadlines(_settings.body_timeout, _spares if _spares.register() else None,
                                _settings.body_threads)
with _stop_signals_kept_from_new_threads():
    _log_listener = configure_logging(_settings.log_level)
    _app = create_app(_settings, worker=_worker)
    _body_deadlines.start()
application = _body_deadlines.serve(_app)
gc.collect()  # start-up's own garbage first: frozen objects are never collected
gc.freeze()
logging.getLogger("inferwatch").info(
    "listening",
    extra={"fields": {
        "message": "listening",
        "url": f"http://{_settings.host}:{_settings.port}",
        "upstream": _settings.upstream,
        "threads": _settings.threads,
        "body_threads": _settings.body_threads,
        "worker": _worker,
        "workers": _settings.workers,
    }},
)


def _shutdown() -> None:
    _body_deadlines.stop()
    close_app(_app)
    _log_listener.stop()


if uwsgi is not None:
    uwsgi.atexit = _shutdown
else:
    atexit.register(_shutdown)
