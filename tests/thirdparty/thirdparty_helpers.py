"""Helpers for the third-party client tests: a recording relay, audio chunks.

:class:`WireTap` is a loopback relay that records every frame between a client and the local server.

The clients under test keep their WebSocket to themselves, so the relay is where the tests see
what an SDK really sent (``conversation.item.truncate``, ``response.cancel``, tool outputs) and
what the server answered, without reaching into any SDK's private attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from pydantic import TypeAdapter
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

JSON = dict[str, Any]
Side = Literal["client", "server"]

#: Headers a Realtime client authenticates or picks the dialect with; relayed upstream as sent.
FORWARDED_HEADERS = ("Authorization", "api-key", "OpenAI-Beta")

_SERVER_EVENT: TypeAdapter[Any] | None = None


@dataclass(frozen=True)
class Frame:
    side: Side  # who sent it
    event: JSON


class WireTap:
    """``async with WireTap(upstream_url) as tap:`` then point the client at ``tap.url``.

    ``upstream_url`` is the local server's ``ws://HOST:PORT/v1/realtime``; the client's path and
    query (``?model=...``) are kept. Runs on the caller's event loop.
    """

    def __init__(self, upstream_url: str) -> None:
        self.upstream = upstream_url.split("/v1/realtime")[0]
        self.frames: list[Frame] = []
        self.port = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what clients that derive the WebSocket URL want."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> WireTap:
        self._server = await serve(
            self._relay, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, downstream: ServerConnection) -> None:
        request = downstream.request
        assert request is not None
        headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
        async with connect(
            self.upstream + request.path,
            additional_headers=headers,
            max_size=None,
            compression=None,
            ping_interval=None,
        ) as upstream:

            async def pump(src: Any, dst: Any, side: Side) -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for message in src:
                        self.frames.append(Frame(side, json.loads(message)))
                        await dst.send(message)

            tasks = [
                asyncio.create_task(pump(downstream, upstream, "client")),
                asyncio.create_task(pump(upstream, downstream, "server")),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await downstream.close()

    # -- what went over the wire --

    def sent(self, kind: str | None = None) -> list[JSON]:
        """Client events, in order (of one ``type`` if given)."""
        return self._of("client", kind)

    def received(self, kind: str | None = None) -> list[JSON]:
        """Server events, in order (of one ``type`` if given)."""
        return self._of("server", kind)

    def _of(self, side: Side, kind: str | None) -> list[JSON]:
        return [
            f.event
            for f in self.frames
            if f.side == side and (kind is None or f.event.get("type") == kind)
        ]

    def types(self, side: Side = "server") -> list[str]:
        return [str(f.event.get("type")) for f in self.frames if f.side == side]

    def assert_server_clean(self) -> None:
        """The server sent no ``error`` and every event it sent validates against the GA schema."""
        global _SERVER_EVENT
        if _SERVER_EVENT is None:
            from openai.types.realtime import RealtimeServerEvent

            _SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
        errors = self.received("error")
        assert not errors, f"the local server answered with errors: {errors}"
        for event in self.received():
            _SERVER_EVENT.validate_python(event)


def silence(ms: int) -> bytes:
    """``ms`` of PCM16 24 kHz silence."""
    return bytes(2 * 24 * ms)


def chunks(pcm: bytes, ms: int = 100) -> Iterator[bytes]:
    """``pcm`` in pieces of ``ms`` milliseconds, as a microphone would deliver it."""
    step = 2 * 24 * ms
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]
