"""Real-time telemetry ingestion for environmental monitoring vehicles."""

__version__ = "0.1.0"
