"""The bare-client reference of ``make bench``: a gmqtt subscriber that only counts and
acknowledges (gmqtt's own PUBACK after the callback returns).

It connects with the service's account, client id and Receive Maximum, clean start and no
session expiry (so it takes over and discards whatever session the service left), subscribes
to the same topic filter at QoS 1, prints ``ready`` once subscribed, and exits after
``--expect`` messages (or ``--idle-s`` without one) printing one JSON line: messages received,
epoch ms of the first and the last, and its own CPU seconds when ready and at the last message.

    python -m benchmarks.bare_subscriber --url mqtt://user:pass@127.0.0.1:1883 --expect 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50

from telemetry.settings import MqttEndpoint


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Counter:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.received = 0
        self.first_ms = 0.0
        self.last_ms = 0.0
        self.cpu_last_s = 0.0
        self.done = asyncio.Event()
        self.subscribed = asyncio.Event()

    def on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        now_ms = time.time() * 1000.0
        if not self.received:
            self.first_ms = now_ms
        self.received += 1
        self.last_ms = now_ms
        if self.received >= self.expect:
            self.cpu_last_s = _cpu_s()
            self.done.set()
        return 0

    def on_subscribe(self, *_: Any) -> None:
        self.subscribed.set()


async def run(args: argparse.Namespace) -> dict[str, float]:
    endpoint = MqttEndpoint(args.url)
    counter = Counter(args.expect)
    client = gmqtt.Client(
        args.client_id, clean_session=True, session_expiry_interval=0,
        receive_maximum=args.receive_maximum,
    )  # fmt: skip
    if endpoint.username is not None:
        client.set_auth_credentials(endpoint.username, endpoint.password)
    client.on_message = counter.on_message
    client.on_subscribe = counter.on_subscribe
    await client.connect(endpoint.host, endpoint.port, version=MQTTv50, keepalive=30)
    client.subscribe(args.topic, qos=1)
    await counter.subscribed.wait()
    cpu_ready_s = _cpu_s()
    print("ready", flush=True)
    last = -1
    while not counter.done.is_set():
        try:
            async with asyncio.timeout(args.idle_s):
                await counter.done.wait()
        except TimeoutError:
            if counter.received == last:
                counter.cpu_last_s = _cpu_s()
                break
            last = counter.received
    await client.disconnect()
    return {
        "received": counter.received,
        "first_ms": counter.first_ms,
        "last_ms": counter.last_ms,
        "cpu_s": counter.cpu_last_s - cpu_ready_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="mqtt://user:password@host:port")
    parser.add_argument("--client-id", default="bench-bare")
    parser.add_argument("--topic", default="telemetry/#")
    parser.add_argument("--receive-maximum", type=int, default=20_000)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--idle-s", type=float, default=10.0)
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
