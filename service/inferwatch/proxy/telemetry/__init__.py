"""Everything that touches the OpenTelemetry SDK or an exporter, and nothing else does.

:mod:`~inferwatch.proxy.telemetry.setup` builds the providers, readers, exporters and
instrumentations of one proxy process; :mod:`~inferwatch.proxy.telemetry.translate` maps a
collection onto the metric contract for /metrics, :mod:`~inferwatch.proxy.telemetry.exposition`
serves it, :mod:`~inferwatch.proxy.telemetry.exemplars` chooses and keeps the exemplars,
:mod:`~inferwatch.proxy.telemetry.histograms` aggregates the GenAI histograms where they are
recorded. The rest of the proxy records through the OpenTelemetry API only (tests/test_layout.py
keeps it so).
"""

from inferwatch.proxy.telemetry.setup import (
    METER_NAME,
    Telemetry,
    build_resource,
    default_instance_id,
    inference_log_exporter,
    setup_telemetry,
    worker_instance_id,
)

__all__ = ["METER_NAME", "Telemetry", "build_resource", "default_instance_id", "inference_log_exporter",
           "setup_telemetry", "worker_instance_id"]
