"""The proxy: the request path, and what sets it up when the proxy process starts.

Code here runs for every prediction (:mod:`~inferwatch.proxy.app`, ``upstream``, ``errors``,
``telemetry``, ``translate``, ``access_log``) or once at the proxy's start (``config``,
``server``, ``wsgi``, and the host sampler in ``host``, whose thread runs beside the requests).

May import: :mod:`inferwatch.contract` and this package only; never a renderer or the stack.
"""
