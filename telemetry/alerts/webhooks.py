"""Webhooks, the pure part: the body, the signature, what an answer means, and when to retry.

A webhook target receives every alert state transition that matches its filters as a JSON
``POST`` (docs/webhooks.md). The body is signed with HMAC-SHA256 under the target's secret over
``"<timestamp>." + body``, so that a receiver can tell the sender knew the secret, that the
body is the one signed, and, by refusing old timestamps, that it is not a replay. Failures are
retried with exponential back-off and jitter: ``first_s · 2^(attempt − 1)``, capped at
``max_s``, shortened by up to ``jitter`` of itself so that targets that failed together do not
retry together.

No I/O and no clock here: the dispatcher (:mod:`telemetry.alerts.dispatcher`) passes in the
time and the random draw.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Outcome",
    "backoff_s",
    "delivery_headers",
    "event_body",
    "generate_secret",
    "judge",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Telemetry-Signature"
TIMESTAMP_HEADER = "X-Telemetry-Timestamp"
EVENT_ID_HEADER = "X-Telemetry-Event-Id"
#: The alert transitions (migrations/0013_alert_events.sql), the values of ``event_types``.
EVENT_TYPES: tuple[str, ...] = (
    "opened",
    "escalated",
    "acknowledged",
    "confirmed",
    "stale",
    "resolved",
)
_SCHEME = "sha256="


def generate_secret() -> str:
    """A new signing secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def event_body(event: Mapping[str, Any]) -> bytes:
    """The JSON body of an alert event (the ``data`` of the live stream's ``alert`` events),
    UTF-8, compact; times as ISO 8601."""
    data = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in event.items()}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 under ``secret`` of
    ``"<timestamp_s>."`` followed by the raw body."""
    material = f"{timestamp_s}.".encode() + body
    return _SCHEME + hmac.new(secret.encode(), material, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = 300.0,
) -> bool:
    """What a receiver does: true when ``signature`` signs ``body`` at ``timestamp`` under
    ``secret`` and the timestamp lies within ``tolerance_s`` of ``now_s``."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def delivery_headers(secret: str, event_id: int, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: content type, the event id (the same on every attempt and
    for every target, for idempotency), the timestamp and the signature."""
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: str(event_id),
        TIMESTAMP_HEADER: str(timestamp_s),
        SIGNATURE_HEADER: sign(secret, timestamp_s, body),
    }


class Outcome(StrEnum):
    """What becomes of a delivery after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


#: Answers worth another attempt besides 5xx: the receiver timed out, or asks us to slow down.
_RETRYABLE = frozenset({408, 425, 429})


def judge(
    status: int | None, *, attempts: int, age_s: float, max_attempts: int, max_age_s: float
) -> Outcome:
    """The outcome of an attempt that got HTTP ``status`` (None: no answer, e.g. a timeout or
    a refused connection), the delivery's ``attempts`` so far (this one included) and its age.

    2xx is delivered. No answer, 5xx, 408, 425 and 429 are retried until ``max_attempts`` or
    ``max_age_s`` is reached, then failed. Any other status (a 4xx, or a redirect, which is not
    followed) fails at once: sending the same body again would get the same answer.
    """
    if status is not None and 200 <= status < 300:
        return Outcome.DELIVERED
    if status is not None and status < 500 and status not in _RETRYABLE:
        return Outcome.FAILED
    if attempts >= max_attempts or age_s >= max_age_s:
        return Outcome.FAILED
    return Outcome.RETRY


def backoff_s(attempts: int, *, first_s: float, max_s: float, jitter: float, draw: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``first_s · 2^(attempts − 1)``
    capped at ``max_s``, times ``1 − jitter · draw`` (``draw`` uniform in [0, 1))."""
    exponent = min(max(attempts - 1, 0), 62)  # 2**62 · first_s is past any cap already
    base = min(max_s, first_s * 2.0**exponent)
    return base * (1.0 - jitter * draw)
