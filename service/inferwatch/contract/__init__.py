"""The contract: the single sources of truth that everything else reads.

:mod:`~inferwatch.contract.metrics` is the metric mapping (OpenTelemetry names in, the
dashboards' Prometheus names out); :mod:`~inferwatch.contract.thresholds` holds every alert
threshold, window, selector and the notification policy. Both are data: the request path, the
renderers and the local tools import them, and they import nothing else of inferwatch (and no
telemetry SDK), so a value changes in one place only.
"""
