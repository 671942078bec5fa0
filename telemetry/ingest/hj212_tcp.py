"""The HJ 212 TCP listener (``TELEMETRY_HJ212_TCP_PORT``; docs/adr/0010-hj212.md).

Analysers connect and send packets; each connection's bytes go through the incremental framer
(packets split across reads, several in one read, garbage between them), and every piece
becomes a :class:`Message` on topic ``hj212/tcp/<peer>`` for the same batcher as MQTT. A
packet's reply (9014, or 9013 and 1012 to a time-calibration request) is written after its
batch has committed, like a PUBACK. Connections are limited in number and closed when idle;
reading pauses while the batcher holds more than ``max_pending`` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from telemetry.hj212.framing import Framer, Garbage, Piece
from telemetry.ingest.batcher import Batcher
from telemetry.ingest.hj212 import TCP_TOPIC, TcpToken
from telemetry.kinds.contract import Message
from telemetry.settings import Settings

__all__ = ["Hj212Listener"]

log = logging.getLogger(__name__)

_READ = 64 * 1024


class Hj212Listener:
    def __init__(self, settings: Settings, batcher: Batcher, *, max_pending: int = 20_000) -> None:
        self._settings = settings
        self._batcher = batcher
        self._max_pending = max_pending
        self._server: asyncio.Server | None = None
        self._readers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def connections(self) -> int:
        return len(self._writers)

    async def start(self) -> None:
        s = self._settings
        self._server = await asyncio.start_server(
            self._handle, s.hj212_tcp_host, s.hj212_tcp_port, limit=_READ
        )
        log.info("HJ 212 listener on %s:%s", s.hj212_tcp_host, s.hj212_tcp_port)

    async def stop_reading(self) -> None:
        """Stop intake: accept no connection, read no more (replies can still be written)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._readers):
            task.cancel()
        for task in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self._settings.hj212_tcp_max_connections:
            log.warning("HJ 212 connection refused: %d connections open", len(self._writers))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._readers.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unknown"
        topic = f"{TCP_TOPIC}/{where}"

        def send(reply: bytes) -> None:
            if not writer.is_closing():
                writer.write(reply)

        framer = Framer()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(
                        reader.read(_READ), self._settings.hj212_tcp_idle_s
                    )
                except TimeoutError:
                    log.info("HJ 212 connection %s idle; closed", where)
                    break
                if not data:
                    break
                for piece in framer.feed(data):
                    self._put(piece, topic, send)
                # Back-pressure: the batcher has no event for "drained below"; poll it.
                while self._batcher.depth > self._max_pending:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            for piece in framer.flush():
                self._put(piece, topic, send)
        except (ConnectionError, OSError) as exc:
            log.info("HJ 212 connection %s ended: %s", where, exc)
        except asyncio.CancelledError:
            # Stopping (stop_reading): the handler ends quietly; asyncio's stream server
            # reports a handler that ends in CancelledError as an error.
            pass
        finally:
            self._readers.discard(task)
            if not self._batcher.depth:
                self._writers.discard(writer)
                writer.close()
            else:
                # Replies of what is still being committed may follow; closed after a while.
                asyncio.get_running_loop().call_later(
                    self._settings.batch_max_age_ms / 1000 + 5, self._close_later, writer
                )

    def _close_later(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.close()

    def _put(self, piece: Piece, topic: str, send: Callable[[bytes], None]) -> None:
        if isinstance(piece, Garbage) and not piece.raw.strip():
            return  # line ends and blanks between packets
        msg = Message(topic, piece.raw, time.time_ns() // 1000)
        self._batcher.add(msg, TcpToken("tcp", send, msg))
