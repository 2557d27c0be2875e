"""The mic lane: microphone chunks from the page to the kernel off the Jupyter comm.

On the comm, a mic chunk leaves from the page's main thread (busy drawing, handling every
message JupyterLab receives, including the reply audio) and reaches the kernel's shell thread
(busy with every comm message), so with reply audio playing its p95 delay was 60+ ms. The lane
skips both: the capture AudioWorklet posts each chunk to a dedicated Worker, which sends it on a
WebSocket of its own to a loopback server here, on a thread of its own; the chunk then enters the
same in-order path as a comm chunk (:meth:`RealtimeWidget._on_mic`).

The lane is an optimisation, never a requirement: the page tries it only when it was offered
(:attr:`MicLane.url`), falls back to the comm while it connects, when it cannot connect (the
browser is not on the kernel's machine: JupyterHub, Colab, a remote kernel, VS Code) and if it
drops, and a chunk's sequence number is the same on both paths, so the kernel's reorder buffer
puts the two together.

Who may connect: a WebSocket from a browser always carries the page's ``Origin``, which a web
page cannot forge. The lane accepts only origins the widget's own front end announced over the
comm (which only an authenticated Jupyter page can use) and loopback origins; the path names the
lane (:attr:`MicLane.lane_id`, random per widget, so a page never feeds another kernel's lane
that happens to sit on the same port), and the server answers ``ready`` before the page sends
audio. Nothing on the lane is a credential: it carries only microphone audio the page would
otherwise send over the comm.

Wire format. First message, page → kernel, text: ``{"view": <view id>}``; the reply, text:
``{"type": "ready", "lane": <lane id>}``. Then one binary message per chunk:
:data:`HEADER` (``seq`` uint32, flags uint32, ``t`` float64: epoch ms when the worker sent it,
``tw`` float64: epoch ms when the worklet posted it, little-endian), then the PCM16 samples.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from ..runtime import LoopThread

__all__ = ["HEADER", "MicLane"]

log = logging.getLogger("realtime_nb.widget")

#: seq (uint32), flags (uint32, reserved), t (float64), tw (float64): 24 bytes, so the PCM that
#: follows starts 8-byte aligned.
HEADER: Final = struct.Struct("<IIdd")
#: Largest lane message: a chunk is 50 ms (2.4 kB at 24 kHz); a second of 48 kHz PCM16 (96 kB)
#: leaves room for any chunk size the widget allows, and refuses anything that is not mic audio.
MAX_MESSAGE_BYTES: Final = 128 * 1024
#: How long the server waits for the page's first message before closing the connection.
HELLO_TIMEOUT_S: Final = 5.0
#: How long starting the lane's server may take before the widget goes on without it.
START_TIMEOUT_S: Final = 5.0
#: Host names of origins accepted without an announcement: a page served from this machine.
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})

#: ``(view, {"seq", "t", "tw"}, pcm)``: called on the lane's thread, for each chunk in arrival order.
ChunkSink = Callable[[str, Mapping[str, Any], bytes], None]


class MicLane:
    """A loopback WebSocket server that takes one widget's mic chunks (see the module docstring).

    :meth:`start` binds ``127.0.0.1`` on a free port on a thread of its own; :meth:`allow_origin`
    adds the origin a front end announced; :meth:`close` stops it. ``counts`` holds how many
    connections and chunks came, and how many connections were refused and why.
    """

    def __init__(self, sink: ChunkSink) -> None:
        self._sink = sink
        self.lane_id = secrets.token_hex(8)
        self._origins: set[str] = set()
        self._runner: LoopThread | None = None
        self._server: Any = None
        self.port = 0
        self.counts: dict[str, int] = {"connections": 0, "chunks": 0, "refused": 0, "malformed": 0}

    @property
    def url(self) -> str:
        """Where the page connects (empty before :meth:`start` or after :meth:`close`)."""
        return f"ws://127.0.0.1:{self.port}/mic/{self.lane_id}" if self._runner else ""

    def start(self) -> MicLane:
        """Bind and serve. Raises ``OSError``/``TimeoutError`` when it cannot (the widget then
        offers no lane and the mic uses the comm)."""
        self._runner, self.port = LoopThread.start_with(
            "mic-lane", self._serve(), START_TIMEOUT_S, what="starting the mic lane"
        )
        return self

    def allow_origin(self, origin: str) -> None:
        """Accept connections from pages of ``origin`` (``scheme://host[:port]``)."""
        self._origins.add(origin.rstrip("/"))

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a connection with this ``Origin`` header may feed the lane."""
        if not origin:
            return False  # not a browser page: nothing of ours connects without one
        if origin.rstrip("/") in self._origins:
            return True
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        return host in LOOPBACK_HOSTS

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        server = self._server

        async def shut() -> None:
            if server is not None:
                server.close()
                await server.wait_closed()

        try:
            runner.run(shut(), START_TIMEOUT_S, what="closing the mic lane")
        except (TimeoutError, RuntimeError):
            log.debug("the mic lane did not close in time", exc_info=True)
        runner.stop()

    async def _serve(self) -> int:
        from websockets.asyncio.server import serve

        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            max_size=MAX_MESSAGE_BYTES,
            process_request=self._check_request,
            compression=None,  # PCM does not compress; deflate would only add latency
        )
        sock = next(iter(self._server.sockets))
        port: int = sock.getsockname()[1]
        return port

    def _check_request(self, connection: Any, request: Any) -> Any:
        import http

        if urlsplit(request.path).path != f"/mic/{self.lane_id}":
            self.counts["refused"] += 1
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no such mic lane\n")
        if not self.origin_allowed(request.headers.get("Origin")):
            self.counts["refused"] += 1
            return connection.respond(
                http.HTTPStatus.FORBIDDEN, "this page's origin did not announce itself\n"
            )
        return None

    async def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            hello = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S)
            view = _view_of(hello)
            if view is None:
                self.counts["malformed"] += 1
                await ws.close(1008, 'expected {"view": ...} first')
                return
            self.counts["connections"] += 1
            await ws.send(json.dumps({"type": "ready", "lane": self.lane_id}))
            async for message in ws:
                self._on_chunk(view, message)
        except (ConnectionClosed, TimeoutError):
            return

    def _on_chunk(self, view: str, message: bytes | str) -> None:
        if not isinstance(message, bytes) or len(message) < HEADER.size:
            self.counts["malformed"] += 1
            return
        seq, _flags, t, tw = HEADER.unpack_from(message)
        self.counts["chunks"] += 1
        try:
            self._sink(view, {"seq": seq, "t": t, "tw": tw}, message[HEADER.size :])
        except Exception:  # a widget bug must not close the lane: the chunk is logged and lost
            log.exception("the widget failed to take a mic chunk from the lane")


def _view_of(hello: bytes | str) -> str | None:
    if not isinstance(hello, str):
        return None
    try:
        data = json.loads(hello)
    except ValueError:
        return None
    view = data.get("view") if isinstance(data, dict) else None
    return view if isinstance(view, str) and view else None
