"""The one settings object, read from ``TELEMETRY_*`` environment variables at start-up."""

from __future__ import annotations

import socket
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MqttEndpoint", "Settings"]

Positive = Annotated[float, Field(gt=0)]


class MqttEndpoint:
    """Host, port and credentials parsed from ``TELEMETRY_MQTT_URL``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"MQTT URL must start with mqtt:// (got {url!r})")
        if not parts.hostname:
            raise ValueError(f"MQTT URL has no host: {url!r}")
        self.host: str = parts.hostname
        self.port: int = parts.port or 1883
        self.username: str | None = parts.username
        self.password: str | None = parts.password


class Settings(BaseSettings):
    """Every tunable of the service. Built once in ``main`` and passed down."""

    model_config = SettingsConfigDict(env_prefix="TELEMETRY_", extra="forbid", frozen=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/telemetry"
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(8, ge=1)
    # auto: use TimescaleDB where the extension is available; require: fail without it; off.
    timescaledb: Literal["auto", "require", "off"] = "auto"

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    # The ingest service's own broker account. Credentials inside TELEMETRY_MQTT_URL still
    # work; setting both with different values is an error rather than a silent choice.
    mqtt_username: str | None = None
    mqtt_password: str | None = Field(None, repr=False)
    mqtt_client_id: str = Field(default_factory=lambda: f"telemetry-ingest-{socket.gethostname()}")
    mqtt_topic_prefix: str = "telemetry"
    # MQTT v5 shared subscription group ($share/<group>/...): set it on every worker of a
    # scaled-out deployment and the broker spreads vehicles' messages across them.
    mqtt_share_group: str | None = None
    # The broker never has more unacknowledged QoS 1 messages in flight to us than this:
    # it is the ingest path's intake bound (MQTT v5 Receive Maximum, 1..65535).
    mqtt_receive_maximum: int = Field(20_000, ge=1, le=65_535)
    mqtt_session_expiry_s: int = Field(7 * 24 * 3600, ge=0)

    # `telemetry broker run`: a TLS listener for vehicles when both files are given.
    broker_tls_port: int = Field(8883, ge=1, le=65_535)
    broker_tls_certfile: str | None = None
    broker_tls_keyfile: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65_535)
    ingest_enabled: bool = True

    batch_max_rows: int = Field(5_000, ge=1)
    batch_max_age_ms: Positive = 200.0
    batch_retry_max_s: Positive = 30.0
    shutdown_drain_s: Positive = 10.0
    # /healthz fails while a received message has waited longer than this for its commit
    # and acknowledgement: connected but committing nothing is not healthy.
    health_max_unacked_age_s: Positive = 60.0

    max_payload_bytes: int = Field(256 * 1024, ge=1024)
    max_readings_per_message: int = Field(3_600, ge=1)
    max_future_skew_s: Positive = 300.0
    max_age_s: Positive = 7 * 24 * 3600.0

    # HJ 212 analysers over TCP (docs/adr/0010-hj212.md): no listener while the port is unset.
    hj212_tcp_port: int | None = Field(None, ge=1, le=65_535)
    hj212_tcp_host: str = "127.0.0.1"
    hj212_tcp_max_connections: int = Field(1_000, ge=1)
    hj212_tcp_idle_s: Positive = 600.0  # a connection silent this long is closed

    segment_length_m: Positive = 30.0
    snap_tolerance_m: Positive = 30.0
    segments_refresh_s: Positive = 60.0

    quality_max_speed_kmh: Positive = 200.0
    pass_max_gap_s: Positive = 10.0
    # The street map (docs/domain.md §5.1): a segment's median of pass means is "reliable"
    # from this many distinct drive days (the literature: 4 to 8).
    segment_reliable_drive_days: int = Field(4, ge=1)
    # Sensor faults (docs/domain.md §5.7): a value unchanged this long is a flat line; per
    # pollutant (JSON objects), the full scale and the largest plausible change per second.
    # A pollutant missing from a table is not judged by that rule.
    fault_flatline_s: Positive = 600.0
    fault_full_scale: dict[str, float] = Field(default_factory=dict)
    fault_max_step: dict[str, float] = Field(default_factory=dict)

    hotspot_percentile: float = Field(10.0, gt=0, lt=100)
    hotspot_factor: float = Field(2.0, gt=1)
    hotspot_window_s: Positive = 900.0
    hotspot_min_samples: int = Field(60, ge=1)
    hotspot_min_pass_readings: int = Field(2, ge=1)
    hotspot_refresh_s: float = Field(
        60.0, ge=0
    )  # a vehicle's stored background is reused this long

    # Walk-through alerts (docs/adr/0009, docs/domain.md §2.3, §5.2, §5.5). Severity follows
    # the ratio C/S (or mean / (factor x background)): below warning_ratio 'info', from it
    # 'warning', from critical_ratio 'critical'.
    alert_warning_ratio: float = Field(1.5, ge=1)
    alert_critical_ratio: float = Field(3.0, ge=1)
    alert_drive_gap_s: Positive = 900.0  # passes this far apart are different drives
    alert_fixed_point_s: Positive = 600.0  # a stop this long on one segment: 定点复测
    alert_verify_passes: int = Field(2, ge=1)  # later clean passes that resolve an alert
    alert_stale_after_s: Positive = 7 * 86400.0  # unmeasured this long: marked stale

    thresholds_refresh_s: Positive = 30.0
    alert_quiet_period_s: Positive = 1800.0
    alert_sweep_s: Positive = 30.0
    vehicle_online_s: Positive = 60.0

    # People and tokens (docs/adr/0008). A token lives this long after login, unless revoked.
    token_ttl_s: int = Field(8 * 3600, ge=60, le=90 * 24 * 3600)
    # Failed logins allowed per user name, and per client address, in one window; past
    # either, login answers 429 until the window ends (shared by every API process).
    login_max_failures_per_user: int = Field(5, ge=1)
    login_max_failures_per_address: int = Field(50, ge=1)
    login_window_s: int = Field(900, ge=1)
    # /metrics without a token (Prometheus scrapers); false: it needs a token of any role.
    metrics_public: bool = True

    # The live stream and webhooks (docs/webhooks.md). Positions go out at most once per
    # vehicle per interval, for vehicles heard from within vehicle_online_s. Webhook attempts
    # that fail are retried after webhook_backoff_first_s · 2^(n−1) (capped at
    # webhook_backoff_max_s, shortened by up to webhook_backoff_jitter of itself) until
    # webhook_max_attempts or webhook_max_age_s; a target is shown failing after
    # webhook_failing_after failed attempts in a row. webhooks_enabled: this API process
    # delivers (any number of processes may).
    events_positions_interval_s: Positive = 1.0
    webhooks_enabled: bool = True
    webhook_poll_s: Positive = 1.0
    webhook_timeout_s: Positive = 10.0
    webhook_concurrency: int = Field(16, ge=1, le=1_000)
    webhook_max_attempts: int = Field(10, ge=1)
    webhook_max_age_s: Positive = 24 * 3600.0
    webhook_backoff_first_s: Positive = 5.0
    webhook_backoff_max_s: Positive = 3600.0
    webhook_backoff_jitter: float = Field(0.5, ge=0, le=1)
    webhook_failing_after: int = Field(3, ge=1)

    # The street map's indicative AQI (docs/domain.md §2.5): the standard whose breakpoints
    # (table aqi_breakpoints) apply, and the passes an hourly sub-index needs (a daily one
    # needs segment_reliable_drive_days). The emergency assessment's wind (docs/domain.md
    # §4.6): the vector mean of the incident's readings within wind_window_s of the latest
    # with wind; calmer than calm_ms, no downwind axis. Downwind and upwind sectors span
    # ± their half angle around the axis; a control point is an upwind reading within
    # control_max_m of the source.
    aqi_standard: Literal["HJ 633-2026", "HJ 633-2012"] = "HJ 633-2026"
    aqi_hourly_min_passes: int = Field(3, ge=1)
    emergency_wind_window_s: Positive = 900.0
    emergency_wind_calm_ms: float = Field(0.5, ge=0)
    emergency_downwind_half_angle_deg: float = Field(45.0, gt=0, lt=90)
    emergency_upwind_half_angle_deg: float = Field(45.0, gt=0, lt=90)
    emergency_control_max_m: Positive = 3000.0

    # The console at / (docs/console.md). An optional raster tile URL template
    # ({z}/{x}/{y}) for a basemap under the road network, for a deployment that has a tile
    # server; empty (the default): the page draws the imported roads alone and loads nothing
    # from another host.
    console_basemap_url: str = Field("", max_length=500)

    # Analyser lag and calibration periods (docs/domain.md §5.8, §5.9). Lag correction does
    # not interpolate between readings further apart than lag_max_gap_s; a registered lag is
    # at most lag_max_s. An estimate tries lags up to lag_estimate_max_s in steps of
    # lag_estimate_step_s, with a source's proximity kernel of width lag_estimate_sigma_m.
    # An operator's calibration period lasts at most calibration_max_period_s.
    lag_max_gap_s: Positive = 5.0
    lag_max_s: float = Field(120.0, gt=0, le=600)
    lag_estimate_max_s: float = Field(30.0, gt=0, le=600)
    lag_estimate_step_s: Positive = 0.5
    lag_estimate_sigma_m: Positive = 50.0
    calibration_max_period_s: Positive = 86_400.0

    # The ingest worker's MQTT connection (docs/adr/0012-mqtt-client.md). It pings the broker
    # every half keep-alive and reconnects when a PINGRESP takes longer than the keep-alive;
    # a TCP connect plus CONNACK, and a SUBACK, may take up to mqtt_connect_timeout_s.
    mqtt_keepalive_s: int = Field(30, ge=1, le=65_535)
    mqtt_connect_timeout_s: Positive = 10.0

    # Detection independent of dispatch (docs/adr/0011). Vehicles hash into
    # detect_partitions partitions (change it only with every worker stopped); each worker's
    # detector ticks every detect_tick_s, holds partitions on leases of detect_lease_s and
    # rebalances every detect_rebalance_s. A worker whose watermark is older than
    # detect_worker_dead_s (database clock) no longer holds the horizon back; the horizon is
    # the lowest live watermark minus detect_clock_margin_s (the workers' clock skew).
    # detect_worker_id: this worker's name in the watermark and lease tables (default: the
    # MQTT client id, unique per worker).
    detect_partitions: int = Field(64, ge=1, le=4096)
    detect_tick_s: Positive = 0.2
    detect_lease_s: Positive = 10.0
    detect_rebalance_s: Positive = 1.0
    detect_worker_dead_s: Positive = 10.0
    detect_clock_margin_s: float = Field(0.05, ge=0, le=60)
    detect_worker_id: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("database URL must start with postgresql://")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        MqttEndpoint(value)
        return value

    @field_validator("mqtt_share_group")
    @classmethod
    def _share_group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("share group must be non-empty and contain no '/', '+' or '#'")
        return value

    @field_validator("broker_tls_certfile", "broker_tls_keyfile", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        # docker-compose passes an unset variable through as "".
        return None if value == "" else value

    @model_validator(mode="after")
    def _mqtt_account(self) -> Settings:
        url = MqttEndpoint(self.mqtt_url)
        for name, value, in_url in (
            ("username", self.mqtt_username, url.username),
            ("password", self.mqtt_password, url.password),
        ):
            if value is not None and in_url is not None and value != in_url:
                raise ValueError(
                    f"TELEMETRY_MQTT_{name.upper()} and the {name} inside TELEMETRY_MQTT_URL "
                    "differ; set the account in one place"
                )
        if (self.mqtt_username is None) != (self.mqtt_password is None) and url.username is None:
            raise ValueError("set both TELEMETRY_MQTT_USERNAME and TELEMETRY_MQTT_PASSWORD")
        if (self.broker_tls_certfile is None) != (self.broker_tls_keyfile is None):
            raise ValueError(
                "set both TELEMETRY_BROKER_TLS_CERTFILE and TELEMETRY_BROKER_TLS_KEYFILE"
            )
        return self

    @cached_property
    def mqtt(self) -> MqttEndpoint:
        """The broker's address and the ingest service's account (the settings' username and
        password, else those inside the URL)."""
        endpoint = MqttEndpoint(self.mqtt_url)
        if self.mqtt_username is not None:
            endpoint.username = self.mqtt_username
        if self.mqtt_password is not None:
            endpoint.password = self.mqtt_password
        return endpoint

    @property
    def mqtt_subscription(self) -> str:
        # The whole subtree, so that topics outside the contract reach the dead-letter table.
        topic = f"{self.mqtt_topic_prefix}/#"
        if self.mqtt_share_group:
            return f"$share/{self.mqtt_share_group}/{topic}"
        return topic
