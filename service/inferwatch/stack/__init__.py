"""Local tools: the native stack (``inferwatch up``), process management, the load generator and
the demo model.

Runs on a developer's machine and in the tests, never inside the proxy's request path.

May import: :mod:`inferwatch.contract`, :mod:`inferwatch.render`, the proxy's settings
(:mod:`inferwatch.proxy.config`) and this package.
"""
