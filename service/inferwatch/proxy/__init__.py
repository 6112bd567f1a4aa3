"""The proxy: the request path, and what sets it up when the proxy process starts.

Code here runs for every prediction (``operational`` in front, ``predictor`` with the
``prediction`` it reads, ``outcomes``, ``upstream``, ``quality``, ``genai``, ``inference_log``,
``correlation``, ``access_log``) or once at the proxy's start (``app``, the factory; ``config``,
``server``, ``wsgi``, and the host sampler in ``host``, whose thread runs beside the requests).
:mod:`inferwatch.proxy.telemetry` alone touches the OpenTelemetry SDK and the exporters (set-up,
the translation for /metrics, its exposition, exemplars); everything else records through the API.

May import: :mod:`inferwatch.contract` and this package only; never a renderer or the stack.
"""
