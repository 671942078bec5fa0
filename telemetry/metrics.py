"""Prometheus metrics of the ingest path (default registry, served at GET /metrics).

Counters are updated once per batch, never per message, to stay off the hot path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ALERTS_OPENED",
    "BATCH_ROWS",
    "BATCH_SECONDS",
    "DB_RETRIES",
    "DETECTION_SKIPPED",
    "EXCEEDANCES",
    "INGEST_LAG",
    "MESSAGES",
    "MQTT_CONNECTED",
    "OPEN_PASSES",
    "QUEUE_DEPTH",
    "READINGS",
    "REJECTS",
]

MESSAGES = Counter("telemetry_messages", "MQTT messages received", ["kind"])
READINGS = Counter(
    "telemetry_readings", "Readings committed by outcome (stored, duplicate)", ["kind", "outcome"]
)
REJECTS = Counter(
    "telemetry_rejects", "Messages or readings sent to the dead-letter table", ["reason"]
)
QUEUE_DEPTH = Gauge(
    "telemetry_queue_depth",
    "Messages received and not yet committed (unacknowledged to the broker)",
)
BATCH_ROWS = Histogram(
    "telemetry_batch_messages",
    "Messages per committed batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000, 65535),
)
BATCH_SECONDS = Histogram(
    "telemetry_batch_seconds",
    "Time to decode, store, detect and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INGEST_LAG = Gauge(
    "telemetry_consumer_lag_seconds",
    "Arrival-to-commit time of the oldest message in the last committed batch",
)
DB_RETRIES = Counter("telemetry_db_retries", "Batch commits retried after a database error")
DETECTION_SKIPPED = Counter(
    "telemetry_detection_skipped",
    "Stored readings left out of detection, by quality reason",
    ["reason"],
)
EXCEEDANCES = Counter("telemetry_exceedances", "Exceedances detected", ["kind", "rule"])
ALERTS_OPENED = Counter("telemetry_alerts_opened", "Alert episodes opened")
MQTT_CONNECTED = Gauge(
    "telemetry_mqtt_connected", "1 while the ingest worker is connected to the broker"
)
OPEN_PASSES = Gauge(
    "telemetry_open_passes", "Walk-through drive passes in progress (not yet judged)"
)
