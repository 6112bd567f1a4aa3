"""The proxy as a WSGI application for servers that import one: ``inferwatch.proxy.wsgi:application``.

Settings come from the ``INFERWATCH_*`` environment (see :mod:`inferwatch.proxy.config`). Run one
process: several would each hold their own counters. When the server stops, the app's
telemetry is flushed (uWSGI's atexit hook, or Python's elsewhere).
"""

import atexit
import logging

from inferwatch.proxy.access_log import configure_logging
from inferwatch.proxy.app import close_app, create_app
from inferwatch.proxy.config import load_settings

_settings = load_settings()
_log_listener = configure_logging(_settings.log_level)
application = create_app(_settings)
logging.getLogger("inferwatch").info(
    "listening",
    extra={"fields": {
        "message": "listening",
        "url": f"http://{_settings.host}:{_settings.port}",
        "upstream": _settings.upstream,
        "threads": _settings.threads,
    }},
)


def _shutdown() -> None:
    close_app(application)
    _log_listener.stop()


try:
    import uwsgi  # present only inside uWSGI

    uwsgi.atexit = _shutdown
except ImportError:
    atexit.register(_shutdown)
