"""The proxy as a WSGI application for servers that import one: ``inferwatch.proxy.wsgi:application``.

Settings come from the ``INFERWATCH_*`` environment (see :mod:`inferwatch.proxy.config`). Under
uWSGI with several workers (``INFERWATCH_WORKERS``) each worker imports this module after the
fork and learns its number from uWSGI; another server must run one process, since it would not
give each its own instance id. When the server stops, the app's telemetry is flushed (uWSGI's
atexit hook, or Python's elsewhere).
"""

import atexit
import logging

from inferwatch.proxy.access_log import configure_logging
from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import load_settings

try:
    import uwsgi  # present only inside uWSGI
except ImportError:
    uwsgi = None

_settings = load_settings()
_worker = uwsgi.worker_id() if uwsgi is not None else 1
_log_listener = configure_logging(_settings.log_level)
application = create_app(_settings, worker=_worker)
logging.getLogger("inferwatch").info(
    "listening",
    extra={"fields": {
        "message": "listening",
        "url": f"http://{_settings.host}:{_settings.port}",
        "upstream": _settings.upstream,
        "threads": _settings.threads,
        "worker": _worker,
        "workers": _settings.workers,
    }},
)


def _shutdown() -> None:
    close_app(application)
    _log_listener.stop()


if uwsgi is not None:
    uwsgi.atexit = _shutdown
else:
    atexit.register(_shutdown)
