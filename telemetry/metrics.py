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
    "DETECT_HORIZON_LAG",
    "DETECT_PARTITIONS",
    "DETECT_SECONDS",
    "EVENT_STREAMS",
    "EXCEEDANCES",
    "INGEST_LAG",
    "LATE_READINGS",
    "MESSAGES",
    "MQTT_CONNECTED",
    "OPEN_PASSES",
    "QUEUE_DEPTH",
    "READINGS",
    "REJECTS",
    "STREAM_POSITIONS",
    "WEBHOOK_ATTEMPTS",
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

# The live stream and webhooks (api/routers/events.py, telemetry/alerts/dispatcher.py).
EVENT_STREAMS = Gauge("telemetry_event_streams", "Event streams (GET /api/v1/events) open")
STREAM_POSITIONS = Counter(
    "telemetry_stream_positions",
    "Vehicle positions published to the event streams (changed positions, once per tick)",
)
WEBHOOK_ATTEMPTS = Counter(
    "telemetry_webhook_attempts",
    "Webhook delivery attempts by outcome (delivered, retry, failed: given up)",
    ["outcome"],
)

# The detector (telemetry/ingest/detector.py, docs/adr/0011).
DETECT_SECONDS = Histogram(
    "telemetry_detect_seconds",
    "Time of one detector tick (read back, judge, commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DETECT_HORIZON_LAG = Gauge(
    "telemetry_detect_horizon_lag_seconds",
    "How far the detection horizon (lowest live watermark) trails this worker's clock",
)
DETECT_PARTITIONS = Gauge(
    "telemetry_detect_partitions", "Vehicle partitions whose detection this worker holds"
)
LATE_READINGS = Counter(
    "telemetry_late_readings",
    "Readings that arrived behind their vehicle's detection cursor (judged as late data)",
    ["kind"],
)
