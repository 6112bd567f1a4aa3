"""The proxy: the request path, and what sets it up when the proxy process starts.

Code here runs for every prediction (``operational`` in front, ``predictor`` with the
``prediction`` it reads, ``outcomes``, ``upstream``, ``quality``, ``correlation``, ``access_log``,
``telemetry``, ``translate``) or once at the proxy's start (``app``, the factory; ``config``,
``server``, ``wsgi``, and the host sampler in ``host``, whose thread runs beside the requests).

May import: :mod:`inferwatch.contract` and this package only; never a renderer or the stack.
"""
