"""Runs the proxy on waitress: one process, a pool of threads.

One process keeps every metric exact: with several worker processes each would hold its own
counters and a scrape would see only one of them. Threads, not processes, carry concurrency;
the work per request is mostly waiting on the model server.
"""

from __future__ import annotations

import logging
import signal

from waitress.server import create_server

from inferwatch.app import close_app, create_app
from inferwatch.config import Settings

log = logging.getLogger(__name__)


def _stop(_signum, _frame):
    raise KeyboardInterrupt


def serve(settings: Settings) -> None:
    app = create_app(settings)
    server = create_server(
        app,
        host=settings.host,
        port=settings.port,
        threads=settings.threads,
        ident="inferwatch",
        # The proxy enforces its own body limit with a JSON 413; waitress only guards memory.
        max_request_body_size=max(settings.max_body_bytes * 2, 1 << 20),
        clear_untrusted_proxy_headers=True,
    )
    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "listening",
        extra={"fields": {
            "message": "listening",
            "url": f"http://{settings.host}:{server.effective_port}",
            "upstream": settings.upstream,
            "threads": settings.threads,
        }},
    )
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        server.close()
        close_app(app)
