"""The vehicle kinds and the MQTT topic contract ``{prefix}/{kind}/{vehicle_id}``."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Kind", "TopicError", "parse_topic"]


class Kind(StrEnum):
    WALKTHROUGH = "walkthrough"
    REMOTE_SENSING = "remote_sensing"
    EMERGENCY = "emergency"


class TopicError(ValueError):
    """A topic outside the contract; ``reason`` is the dead-letter reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_KINDS = {k.value: k for k in Kind}


def parse_topic(topic: str, prefix: str = "telemetry") -> tuple[Kind, str]:
    """Split a topic into (kind, vehicle_id) or raise :class:`TopicError`."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != prefix or not parts[2]:
        raise TopicError("bad_topic", f"topic {topic!r} is not {prefix}/{{kind}}/{{vehicle_id}}")
    kind = _KINDS.get(parts[1])
    if kind is None:
        raise TopicError("unknown_kind", f"unknown vehicle kind {parts[1]!r} in topic {topic!r}")
    if len(parts[2]) > 64:
        raise TopicError("bad_topic", "vehicle id longer than 64 characters")
    return kind, parts[2]
