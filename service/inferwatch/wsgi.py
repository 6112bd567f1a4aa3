"""The proxy as a WSGI application for servers that import one: ``inferwatch.wsgi:application``.

Settings come from the ``INFERWATCH_*`` environment (see :mod:`inferwatch.config`). Run one
process: several would each hold their own counters.
"""

from inferwatch.access_log import configure_logging
from inferwatch.app import create_app
from inferwatch.config import load_settings

_settings = load_settings()
configure_logging(_settings.log_level)
application = create_app(_settings)
