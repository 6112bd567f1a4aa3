"""inferwatch: an OpenTelemetry-instrumented monitoring proxy for MLflow model servers."""

__version__ = "0.1.0"
