"""The kernel-side Realtime session: the I/O shell around :class:`.protocol.ClientProtocol`.

:class:`Session` owns what the protocol must not touch: an asyncio loop on a daemon thread (so
events keep arriving, being recorded and reaching callbacks while a notebook cell blocks), the
WebSocket, the recorder and the tool executor. Each event is recorded, then given to the protocol,
then to waiters and subscribers (:mod:`._fanout`); every decision (what to send, when to run a
tool, what to truncate; the session's state, errors, cost and status) is the protocol's and its
reducer's, made from exactly the events the recording holds. Every public method is thread-safe
and has an ``a``-prefixed ``async`` twin.

The pure parts live beside it: :mod:`._config` (arguments -> GA JSON), :mod:`._policies` (response
gate, tool calls, truncation, seeding), :mod:`._calls` (a WebRTC call's request, answer, sideband
URL and bookkeeping); :mod:`._media` converts audio and images to send. Their public names are
re-exported here. Over WebRTC (``transport="webrtc"``) this shell also posts the call's offer and
hang-up (HTTP on a thread of their own) and its WebSocket is the call's sideband.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import http.client
import json
import logging
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import numpy.typing as npt

from ..core._endpoints import Endpoint, resolve_endpoint
from ..core._redact import install as install_log_redaction
from ..core._redact import redact_message, safe_url
from ..core._sentinel import UNSET, Unset
from ..core.audio import (
    PCM_RATE,
    AudioFormat,
    Resampler,
    float32_to_pcm16,
    pcm16_to_float32,
)
from ..core.events import Event
from ..core.pricing import Cost, ModelPrice, session_cost
from ..core.protocol import Source, client, deep_merge, source_of_type
from ..core.reducer import ConnectionStatus, ConversationState, ErrorRecord, Usage
from ..core.tools import Tool
from ..runtime import LoopThread, run_in_daemon_thread
from ..storage.recording import DEFAULT_DIR, Recorder, Recording, make_meta
from ._calls import (
    CallRefusedError,
    Transport,
    build_call_request,
    call_session,
    calls_url,
    hangup_url,
    http_event,
    parse_call_answer,
    sideband_url,
    validate_offer,
)
from ._config import build_response, build_session_config, tool_definitions
from ._fanout import Callback, Fanout, Waiter
from ._media import image_data_url, prepare_audio
from ._policies import PlaybackModel, ResponseGate, seed_items
from ._reconnect import ReconnectPolicy, retry_after_refusal
from .protocol import ClientProtocol, ToolRun

__all__ = [
    "UNSET",
    "PlaybackModel",
    "ReconnectPolicy",
    "ResponseGate",
    "Session",
    "SessionClosedError",
    "SessionError",
    "SessionUsage",
    "Transport",
    "build_response",
    "build_session_config",
    "calls_url",
    "image_data_url",
    "prepare_audio",
    "seed_items",
]

JSON = dict[str, Any]
T = TypeVar("T")
logger = logging.getLogger("realtime_nb.client.session")

# --- constants -----------------------------------------------------------------------------------

#: Seconds to wait for the WebSocket handshake and ``session.created``: a cold TLS handshake to a
#: far region plus the server's session setup stays well under this; a hung proxy does not.
CONNECT_TIMEOUT_S: Final = 15.0
#: Audio sent per ``input_audio_buffer.append``: 100 ms is ~6.4 kB of base64 PCM16 at 24 kHz,
#: far below the API's 15 MiB event limit and fine-grained enough for server VAD to react in time.
CHUNK_MS: Final = 100
#: Largest frame accepted from the server. ``response.done`` of a long turn or ``session.created``
#: with long instructions exceed websockets' 1 MiB default; 64 MiB still bounds a runaway frame.
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
#: Recent non-audio events kept for :meth:`Session.wait_for` to find events that arrived before it
#: was called; audio deltas are excluded so this stays small (a few MB at most).
HISTORY_EVENTS: Final = 10_000
#: WebSocket keepalive: the API closes idle sockets; a 20 s ping keeps NATs open and notices a
#: dead peer within ping + timeout.
PING_INTERVAL_S: Final = 20.0
PING_TIMEOUT_S: Final = 20.0
#: Seconds close() waits for the server's close frame before dropping the TCP connection.
CLOSE_TIMEOUT_S: Final = 2.0
#: How long after an answer's first audio a ready player may take to start playing it before
#: wait_until_heard() stops waiting for it: the page's queue starts within ~100 ms of the first
#: chunk, so 2 s only expires when no page is playing (closed, or its tab suspended).
PLAYBACK_START_GRACE_S: Final = 2.0
#: Seconds ``close()`` gives the hang-up of a WebRTC call it ends: the call also ends when the
#: page closes its peer connection, so a slow endpoint must not hold the close up.
HANGUP_TIMEOUT_S: Final = 3.0
#: Largest body read from the calls endpoint: an SDP answer is a few kB, an error a few hundred
#: bytes; anything larger is not an answer.
MAX_HTTP_BODY: Final = 1024 * 1024
_RECONNECT_HINT: Final = (
    "; call session.reconnect() to continue this conversation on a new connection"
)
_AUTO_HINT: Final = "; reconnecting by itself (Session(reconnect=...))"
#: What waits survive a lost connection that the session reconnects by itself: these come again.
_RECONNECT_EVENTS: Final = ("local.", "session.")

Status = ConnectionStatus


class SessionError(RuntimeError):
    """The server refused something (the message is the server's, with the request named)."""


class SessionClosedError(ConnectionError):
    """The session is closed, or its connection was lost (``reconnect()`` starts a new one)."""


# --- usage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUsage:
    """Token usage: the session total and each response's (from ``response.done``)."""

    total: Usage
    responses: Mapping[str, Usage] = field(default_factory=dict)


# --- the local default backend -------------------------------------------------------------------

_local_lock = threading.Lock()
_local_server: Any = None
_local_notice_shown = False


def _local_url(model: str) -> str:
    """The URL of this process's embedded local server (started on first use)."""
    global _local_server, _local_notice_shown
    with _local_lock:
        if _local_server is None:
            from ..local import LocalServer

            # The "tools" responder echoes, and calls a tool the user names ("weather" ->
            # get_weather): tool flows work offline out of the box.
            srv = LocalServer("tools")
            srv.__enter__()
            atexit.register(srv.__exit__, None, None, None)
            _local_server = srv
        if not _local_notice_shown:
            _local_notice_shown = True
            print(
                "realtime_nb: no API key and no url given: using the embedded local server "
                "(offline; its voice, VAD and replies are simple stand-ins for a real model). "
                "Set OPENAI_API_KEY or pass url=... to use a real one.",
                file=sys.stderr,
            )
        return f"{_local_server.url.split('?')[0]}?model={model}"


# --- logging without secrets ---------------------------------------------------------------------


#: The loggers a session writes to, directly or through websockets.
SESSION_LOGGERS: Final = (
    "realtime_nb.client",
    "realtime_nb.client.session",
    "realtime_nb.client.protocol",
    "websockets.client",
)


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]  # not subscriptable at run time before 3.11
    """websockets logs request headers at DEBUG, ``Authorization`` included: redact them."""

    def __init__(self, base: logging.Logger, secrets: Sequence[str]) -> None:
        super().__init__(base, {})
        self._secrets = [s for s in secrets if s]

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, redact_message(text, self._secrets), **kwargs)


# --- a WebRTC call's I/O helpers ------------------------------------------------------------------


class _ContinuedClock:
    """``time.monotonic_ns`` whose first reading is ``origin_ns``: a recorder takes its first
    reading as its origin, so one made later (a call's file, made when the call is set up)
    continues the session's timeline instead of starting a new one."""

    def __init__(self, origin_ns: int) -> None:
        self._origin: int | None = origin_ns

    def __call__(self) -> int:
        origin, self._origin = self._origin, None
        return time.monotonic_ns() if origin is None else origin


def _check_call_formats(**formats: Any) -> None:
    """A call's audio is Opus on the wire and PCM16 at 24 kHz in the recording.

    Raises:
        ValueError: a format that says otherwise (the accepted value is named).
    """
    for name, value in formats.items():
        if value is UNSET:
            continue
        fmt = value if isinstance(value, AudioFormat) else AudioFormat.parse(value)
        if fmt is None or fmt.type != "audio/pcm" or fmt.rate != PCM_RATE:
            raise ValueError(
                f"{name}={value!r} does not apply to transport='webrtc' (the call's audio is "
                f"Opus, recorded as PCM16 at {PCM_RATE} Hz); leave it out, or pass 'audio/pcm'"
            )


def _http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` (blocking; run on a thread of its own). Returns status, headers, body.

    Raises:
        OSError: no connection, or no answer within ``timeout`` seconds.
        http.client.HTTPException: an answer that is not HTTP.
    """
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read(MAX_HTTP_BODY)
    finally:
        conn.close()


# --- the session ---------------------------------------------------------------------------------

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
_live_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # flush recordings of sessions left open when the kernel exits
    for s in list(_live_sessions):
        with contextlib.suppress(Exception):
            s.close(timeout=1.0)


class Session:
    """A Realtime session, recorded; its WebSocket runs on a daemon thread of its own.

    Args:
        model: the model (``gpt-realtime``, ``gpt-realtime-mini``, an Azure deployment...).
        instructions, voice, tools, tool_choice, turn_detection, transcription, output_modalities,
        input_format, output_format: session fields (see :func:`build_session_config`); left
            out = the server's default. ``tools`` is a list, or one function, ``@tool`` or
            definition dict.
        record: ``True`` (a new file under ``recordings/``), a folder or ``.arrow`` path, or
            ``False`` (nothing written; the live state is kept all the same).
        url: any Realtime WebSocket URL (a gateway, a local server). With ``api_key`` the key
            goes in ``Authorization: Bearer`` (``api-key`` for Azure hosts).
        api_key: the key; default ``OPENAI_API_KEY``, then ``AZURE_OPENAI_API_KEY``.
        azure_endpoint, azure_deployment, api_version: Azure OpenAI (default from
            ``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_DEPLOYMENT``, ``AZURE_OPENAI_API_VERSION``).
        pricing: prices for :attr:`cost` (default: :data:`realtime_nb.core.pricing.PRICES`).
        auto_truncate: on an interruption, truncate the assistant's audio item to what was heard.
        wait: block until connected (``session.created``, and ``session.updated`` if fields were
            given). ``False`` returns at once (``async with`` waits in ``__aenter__``).
        reconnect: continue the session on a new connection when one ends: ``True`` (default:
            :class:`ReconnectPolicy`'s defaults), an ``int`` (that many attempts), a
            :class:`ReconnectPolicy`, or ``False`` (a lost connection stays lost until
            :meth:`reconnect`). It reconnects after a drop (close 1001, 1006, 1011, 1012,
            1013...) or the provider's ``session_expired``, with exponential backoff and jitter,
            seeding the conversation and recording on in the same file; and before the
            provider's cap (60 minutes) it rolls over to a new connection between turns. Never
            after :meth:`close`, nor after a refused key (HTTP 401/403). Each step is recorded
            (``local.connection.closed`` / ``reconnecting`` / ``opened`` / ``failed``); giving
            up is a ``local.connection.failed`` naming the attempts. While reconnecting, the
            status is ``connecting``, microphone audio is dropped, and requests wait for the new
            connection (those made before an attempt that fails are dropped with it).
        transport: ``"websocket"`` (default: this kernel holds the socket and the audio goes
            through it) or ``"webrtc"``: a page holds a peer connection to the model and the
            kernel sets the call up. Nothing connects until :meth:`accept_offer` posts the
            page's SDP offer (with this session's configuration and the key, which never leaves
            the kernel) and attaches the call's sideband WebSocket (``?call_id=``), over which
            the tools run; the page then reports what it saw and played
            (:meth:`feed_peer_event`, :meth:`record_track`). ``wait`` does not apply; the audio
            formats are the call's (PCM16 at 24 kHz in the recording), so ``input_format`` and
            ``output_format`` may only say that; the server truncates an interrupted reply
            itself, so ``auto_truncate`` does not apply either.

    With no key and no URL the embedded local server is started in this process (said once).

    Raises:
        SessionClosedError: could not connect (refused, unreachable, bad key) within the timeout.
        SessionError: the server refused the initial ``session.update``.
        TypeError, ValueError: a bad argument (the message lists what is accepted).
    """

    def __init__(
        self,
        model: str = "gpt-realtime",
        *,
        instructions: str | Unset = UNSET,
        voice: str | Unset = UNSET,
        tools: Sequence[Any] | Tool | Callable[..., Any] | Mapping[str, Any] | Unset = UNSET,
        tool_choice: Any = UNSET,
        turn_detection: Any = UNSET,
        transcription: Any = UNSET,
        output_modalities: Any = UNSET,
        input_format: Any = UNSET,
        output_format: Any = UNSET,
        record: bool | str | os.PathLike[str] = True,
        url: str | None = None,
        api_key: str | None = None,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
        pricing: ModelPrice | None = None,
        auto_truncate: bool = True,
        wait: bool = True,
        reconnect: bool | int | ReconnectPolicy = True,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        meta: Mapping[str, Any] | None = None,
        transport: Transport | str = Transport.WEBSOCKET,
        **session_fields: Any,
    ) -> None:
        self.model = model
        self._transport = kind = Transport.parse(transport)
        webrtc = kind is Transport.WEBRTC
        if webrtc:
            _check_call_formats(input_format=input_format, output_format=output_format)
            auto_truncate = False  # the server cuts the reply at what it sent
        #: The WebRTC call's id, once :meth:`accept_offer` set it up (``None`` before, and for
        #: a WebSocket session).
        self.call_id: str | None = None
        self._hung_up = False
        self._resamplers: dict[tuple[str, int], Resampler] = {}
        self._last_t_ns = 0  # the latest event time recorded (peer events are kept in order)
        if callable(tools) or isinstance(tools, Mapping):
            # One function, @tool or definition dict: Session(tools=get_weather) reads naturally,
            # and iterating a function (or a dict's keys) would fail obscurely.
            tools = [tools]
        config, py_tools = build_session_config(
            instructions=instructions, voice=voice, tools=tools, tool_choice=tool_choice,
            turn_detection=turn_detection, transcription=transcription,
            output_modalities=output_modalities, input_format=input_format,
            output_format=output_format, **session_fields,
        )  # fmt: skip
        endpoint = resolve_endpoint(
            model,
            url=url,
            api_key=api_key,
            azure_endpoint=azure_endpoint,
            azure_deployment=azure_deployment,
            api_version=api_version,
        )
        if endpoint is None:
            endpoint = Endpoint("local", _local_url(model), "local backend (no API key)", {}, (),
                                model)  # fmt: skip
        self._endpoint = endpoint
        self._secrets = endpoint.secrets
        # Every logger this session's code and its transport write to drops the credentials (also
        # from tracebacks and websockets' DEBUG header dumps).
        install_log_redaction(SESSION_LOGGERS, self._secrets)
        self._pricing = pricing
        self._connect_timeout = connect_timeout
        self._policy = policy = ReconnectPolicy.coerce(reconnect)
        self._proto = ClientProtocol(
            config, py_tools, auto_truncate=auto_truncate, secrets=self._secrets,
            url=endpoint.display_url, backend=endpoint.label,
            session_cap_s=policy.session_cap_s if policy and not webrtc else None,
            rollover_margin_s=policy.rollover_margin_s if policy and not webrtc else None,
            transport=kind,
        )  # fmt: skip
        meta = make_meta(
            model=model,
            url=endpoint.display_url,
            input_format=self.input_format,
            output_format=self.output_format,
            backend=endpoint.label,
            **({"transport": kind.value} if webrtc else {}),
            **dict(meta or {}),
        )
        rec_path = None if record is False or record is None else (
            DEFAULT_DIR if record is True else Path(record))  # fmt: skip
        # A call's recording names its call id in its metadata, which is written first: the
        # file is made when the call is set up, and what was recorded before (the page's
        # ready and clock events) is written into it then, on the same timeline.
        self._origin_ns = time.monotonic_ns()
        self._pending_file: tuple[Path, JSON] | None = None
        self._precall: list[Event] | None = None
        if webrtc and rec_path is not None:
            self._pending_file, self._precall = (rec_path, meta), []
            rec_path = None
        self._recorder = Recorder(rec_path, meta=meta, secrets=self._secrets,
                                  clock=_ContinuedClock(self._origin_ns))  # fmt: skip

        self._lock = threading.RLock()  # around every protocol call and every read of its state
        #: The page's copies of server events that were seen first but are not recorded yet
        #: (under ``_lock``): recorded before the sideband's next new event, so that an event is
        #: never recorded after one the server sent later.
        self._peer_pending: list[tuple[JSON, int | None]] = []
        self._fanout = Fanout(HISTORY_EVENTS, self._call)  # waiters and subscribers
        self._closed = False
        self._reconnecting = False  # a reconnect() or an automatic reconnection is under way
        self._auto_task: asyncio.Task[None] | None = None  # the automatic reconnection
        self._rollover_timer: asyncio.TimerHandle | None = None
        self._refused_status: int | None = None  # HTTP status of the last refused handshake
        self._mark = -1  # seq of the last event when the user last acted (for wait_for)
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._unsent = 0  # events the writer took from the protocol and has not sent yet

        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Future[None] | None = None
        self._ws: Any = None
        self._io_tasks: list[asyncio.Task[Any]] = []
        self._runner = LoopThread(f"session-{id(self):x}")  # the I/O thread
        self._loop = self._runner.loop
        _live_sessions.add(self)
        if webrtc:  # connected by accept_offer()
            self._connect_future: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._connect_future.set_result(None)
            return
        self._connect_future = self._runner.submit(self._open(seed=()))
        if wait:
            self._wait_connected()

    # -- the I/O thread --------------------------------------------------------------------------

    def _wait_connected(self) -> None:
        try:
            self._connect_future.result(timeout=self._connect_timeout + 1.0)
        except concurrent.futures.TimeoutError:
            self.close()
            raise SessionClosedError(
                f"could not connect to {self._endpoint.label} within {self._connect_timeout} s"
            ) from None
        except BaseException:
            self.close()
            raise

    async def _open(self, seed: Sequence[JSON]) -> None:
        """Connect; the protocol then sends the configuration and ``seed`` items on
        ``session.created``. Returns once the server has confirmed them.

        On cancellation the half-open connection is closed and the cancellation propagates.

        Raises:
            SessionClosedError: the handshake failed or the server closed during setup.
            SessionError: the server answered the configuration with an ``error``.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        ep = self._endpoint
        url = ep.url if self.call_id is None else sideband_url(ep.url, self.call_id)
        self._wake = asyncio.Event()
        self._ready = ready = self._loop.create_future()
        self._refused_status = None
        try:
            ws = await asyncio.wait_for(
                connect(
                    url,
                    additional_headers=dict(ep.headers),
                    max_size=MAX_FRAME_BYTES,
                    compression=None,  # base64 audio barely compresses; deflate only costs CPU
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                    open_timeout=self._connect_timeout,
                    logger=_RedactingLogger(logging.getLogger("websockets.client"), self._secrets),
                    user_agent_header="realtime_nb (websockets)",
                ),
                self._connect_timeout,
            )
        except InvalidStatus as exc:
            self._refused_status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace")[:300] if exc.response.body else ""
            msg = f"{ep.label} refused the connection: HTTP {exc.response.status_code}"
            if body:
                msg += f": {redact_message(body, self._secrets)}"
            raise self._connect_failed(msg) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            msg = f"could not connect to {ep.label} ({ep.display_url}): " + redact_message(
                f"{type(exc).__name__}: {exc}", self._secrets
            )
            raise self._connect_failed(msg) from None
        self._ws = ws
        self._act_io(lambda p: p.connection_made(seed, now=time.time()))
        self._io_tasks = [
            self._loop.create_task(self._reader(ws), name="realtime_nb-reader"),
            self._loop.create_task(self._writer(ws), name="realtime_nb-writer"),
        ]
        try:
            await asyncio.wait_for(asyncio.shield(ready), self._connect_timeout)
        except TimeoutError:
            self._ws = None  # the reader must not report this close as a drop
            for task in self._io_tasks:
                task.cancel()
            await ws.close()
            if self._proto.phase == "setup":
                msg = (
                    f"{ep.label} did not confirm the session setup within {self._connect_timeout} s"
                )
            else:
                msg = f"{ep.label} sent no session.created within {self._connect_timeout} s"
            raise self._connect_failed(msg) from None
        self._arm_rollover()

    def _connect_failed(self, message: str) -> SessionClosedError:
        self._act_io(lambda p: p.connection_failed(message))
        return SessionClosedError(message)

    async def _reader(self, ws: Any) -> None:
        """Receive frames until the connection ends, then report how it ended.

        Cancelled by close()/reconnect(): returns without reporting a drop.
        """
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                try:
                    self._on_frame(
                        raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                    )
                except Exception:  # our bug, not the network's: the connection stays up
                    logger.exception("realtime_nb: error while handling a server event")
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in our handling must not kill the connection silently
            logger.exception("realtime_nb: error while handling a server event")
        if self._ws is ws and not self._closed:
            self._ws = None
            rcvd = ws.protocol.close_rcvd
            code = ws.close_code if ws.close_code is not None else 1006
            by = "server" if rcvd is not None else "network"
            auto = (
                self._policy is not None
                and not self._reconnecting  # an attempt's own setup failed: its loop goes on
                and self._ready is not None
                and self._ready.done()  # was set up (a first connection failing is an error)
                and self._proto.worth_reconnecting(code)
            )
            self._reconnecting = self._reconnecting or auto  # from now on requests wait
            msg = self._act_io(lambda p: p.connection_lost(
                code, ws.close_reason or "", initiated_by=by, clean=rcvd is not None))  # fmt: skip
            logger.warning("realtime_nb: %s", msg)
            if auto:  # what the lost connection would have sent will not come; the rest will
                self._fanout.fail_all(SessionClosedError(msg + _AUTO_HINT), _RECONNECT_EVENTS)
            else:
                self._fail_waiters(SessionClosedError(msg + _RECONNECT_HINT))
            if auto:
                self._start_auto_reconnect("session_expired" if self._proto.expired else "dropped")

    async def _writer(self, ws: Any) -> None:
        """Send what the protocol queues, in order. Cancelled by close()/reconnect()."""
        from websockets.exceptions import ConnectionClosed

        assert self._wake is not None
        try:
            while True:
                with self._lock:
                    batch = self._proto.events_to_send()
                    self._unsent = len(batch)
                if not batch:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                for data, audio in batch:
                    raw = _dumps(data)
                    await ws.send(raw)
                    self._unsent -= 1
                    self._dispatch(self._recorder.append(Source.CLIENT, data, raw=raw, audio=audio))
                self._flush()
        except ConnectionClosed:
            pass  # the reader reports how the connection ended
        finally:
            self._unsent = 0  # what is left was meant for this connection only

    def _on_frame(self, raw: str) -> None:
        text: str | None = raw  # recorded as received, unless it is not a JSON object
        try:
            data = _loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json takes
            data, text = {"type": "<invalid json>", "text": raw[:1000]}, None
        if not isinstance(data, dict):  # kept as text: the value may be huge, or deeply nested
            data, text = {"type": "<not an object>", "text": raw[:1000]}, None
        if self._transport is Transport.WEBRTC:
            with self._lock:
                new = self._proto.first_sighting(data, from_peer=False)
            self._record_peers()  # what the page saw first goes first
            if not new:
                return  # the page's copy of this event came first and is recorded
        self._dispatch(self._recorder.append(Source.SERVER, data, raw=text))
        self._flush()

    def _dispatch(self, ev: Event) -> None:
        """A recorded event: to the protocol, then to waiters and subscribers (I/O thread)."""
        if ev.t_ns > self._last_t_ns:
            self._last_t_ns = ev.t_ns
        if self._precall is not None:
            self._precall.append(ev)
        with self._lock:
            self._proto.receive(ev)
        self._fanout.deliver(ev)

    def _flush(self) -> None:
        """Carry out what the protocol decided: record its local events, start its tool calls,
        wake the writer, settle the connection's setup (I/O thread)."""
        while self._proto.has_work:  # only this thread gives the protocol work: no lock needed
            with self._lock:
                records = self._proto.events_to_record()
                runs = self._proto.calls_to_run()
            for data in records:
                self._dispatch(self._recorder.append(Source.LOCAL, data))
            for run in runs:
                task = self._loop.create_task(
                    self._run_tool(run), name=f"realtime_nb-tool-{run.call.name}"
                )
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
        if self._wake is not None and self._proto.wants_to_send:
            self._wake.set()
        ready = self._ready
        if ready is not None and not ready.done():
            if self._proto.ready:
                ready.set_result(None)
            elif self._proto.setup_error is not None:
                error = self._proto.setup_error
                ready.set_exception(SessionError(
                    f"{self._endpoint.label} refused the session setup: {error}"))  # fmt: skip
                ready.exception()  # _open() may no longer be waiting for it
        if self._rollover_timer is not None:  # the window is open: each event may end a turn
            self._maybe_roll_over()

    def _act_io(self, action: Callable[[ClientProtocol], T]) -> T:
        """Tell the protocol something on the I/O thread, and carry out what it decides."""
        with self._lock:
            out = action(self._proto)
        self._flush()
        return out

    def _act(self, action: Callable[[ClientProtocol], T]) -> T:
        """A user request (any thread): validated and queued by the protocol at once (its errors
        raise here, and nothing is queued), sent by the I/O thread."""
        self._check_usable()
        with self._lock:
            self._mark = self._recorder.count - 1
            out = action(self._proto)
        self._runner.call_soon_threadsafe(self._flush)
        return out

    def _call(self, cb: Callback, ev: Event) -> None:
        try:
            result = cb(ev)
            if asyncio.iscoroutine(result):
                self._loop.create_task(result)
        except Exception:
            logger.exception("realtime_nb: callback %r failed on %s", cb, ev.type)

    def _record_local(self, etype: str, data: Mapping[str, Any]) -> None:
        self._dispatch(self._recorder.append(Source.LOCAL, {"type": etype, **data}))
        self._flush()

    def _fail_waiters(self, exc: BaseException) -> None:
        self._fanout.fail_all(exc)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(exc)
            ready.exception()  # _open() may no longer be waiting for it

    def _check_usable(self) -> None:
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        if self.status == "error" and not self._reconnecting:
            info = self.close_info or {}
            raise SessionClosedError(
                f"the connection to {self._endpoint.label} was lost (code {info.get('code')}); "
                "call session.reconnect() to continue on a new connection"
            )

    # -- tools -----------------------------------------------------------------------------------

    async def _run_tool(self, run: ToolRun) -> None:
        """Run one tool call and report how it ended to the protocol (which sends the output).

        Cancelled by close(): nothing is reported.
        """
        tool, t0 = run.tool, time.perf_counter()
        try:
            if tool.is_async:
                work: Awaitable[Any] = tool.func(**run.kwargs)
            else:  # a thread of its own, a daemon: one that never returns does not hold the exit
                work = run_in_daemon_thread(functools.partial(tool.func, **run.kwargs),
                                            role=f"tool-{run.call.name}")  # fmt: skip
            try:
                result = await asyncio.wait_for(work, tool.timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{run.call.name} did not finish within {tool.timeout:g} s"
                ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ms = (time.perf_counter() - t0) * 1000.0
            self._act_io(functools.partial(ClientProtocol.tool_failed, call=run.call, exc=exc,
                                           duration_ms=ms))  # fmt: skip
        else:
            ms = (time.perf_counter() - t0) * 1000.0
            self._act_io(functools.partial(ClientProtocol.tool_done, call=run.call, result=result,
                                           duration_ms=ms))  # fmt: skip

    def add_tool(self, *tools: Any) -> None:
        """Declare more tools (``@tool`` functions, functions or definition dicts) mid-session.

        Raises:
            ToolDefinitionError: a function cannot be described as a tool.
        """
        defs, new = tool_definitions(tools)
        self._act(lambda p: p.add_tools(defs, new))

    def remove_tool(self, name: str) -> None:
        """Stop offering the tool ``name`` (calls already running finish).

        Raises:
            KeyError: no tool of that name (the declared ones are named).
        """
        self._act(lambda p: p.remove_tool(name))

    @property
    def tools(self) -> dict[str, Tool]:
        """The Python tools declared on the session, by name."""
        return dict(self._proto.tools)

    # -- public: sending -------------------------------------------------------------------------

    def send_event(self, event: Mapping[str, Any]) -> str:
        """Send any client event as it is (an ``event_id`` is added when missing);
        ``response.create`` waits its turn like :meth:`respond`. Returns the event id.

        Raises:
            ProtocolError: not a valid client event (the message names the type, the field, what
                was given and what is accepted); nothing is sent.
            SessionClosedError: the session is closed or its connection lost.
        """
        return str(self._act(lambda p: p.send(event))["event_id"])

    def update(self, **session_fields: Any) -> str:
        """Send ``session.update`` with these fields (same names as the constructor's, plus raw
        GA fields such as ``max_output_tokens``). Returns the event id.

        Raises:
            TypeError, ValueError: an unknown field or a bad value (accepted ones listed).
            SessionClosedError: the session is closed or its connection lost.
        """
        cfg, tools = build_session_config(**session_fields)
        return str(self._act(lambda p: p.update_session(cfg, tools))["event_id"])

    def send_text(self, text: str, respond: bool = True) -> str:
        """Add a user text message; with ``respond`` also ask for a response (queued while one is
        active). Returns the item event's id.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is empty or only whitespace.
            SessionClosedError: the session is closed or its connection lost.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            # An empty message is a caller's slip (a blank input, an unfilled template).
            raise ValueError(
                f"text is empty ({text!r}); accepted: a message with words in it "
                "(respond() asks for a response without adding one)"
            )
        return self._add_item(client.user_text_item(text), respond)

    def send_image(
        self, image: bytes | str | os.PathLike[str], text: str | None = None, respond: bool = False
    ) -> str:
        """Add a user message with an image (PNG/JPEG/GIF/WebP bytes, a path or a data URL) and
        optional text. Returns the event id.

        Raises:
            ValueError: not an accepted image format. FileNotFoundError: no such file.
            SessionClosedError: the session is closed or its connection lost.
        """
        return self._add_item(client.user_image_item(image_data_url(image), text), respond)

    def _add_item(self, item: JSON, respond: bool) -> str:
        ev = client.conversation_item_create(item)

        def add(p: ClientProtocol) -> None:
            p.send(ev)
            if respond:
                p.request_response(client.response_create())

        self._act(add)
        return str(ev["event_id"])

    def _chunks(self, pcm: bytes) -> list[bytes]:
        step = max(self.input_format.bytes_for_ms(CHUNK_MS), 2)
        return [pcm[i : i + step] for i in range(0, len(pcm), step)]

    def send_audio(
        self,
        audio: npt.NDArray[Any] | bytes | str | os.PathLike[str],
        sample_rate: int | None = None,
        realtime: bool = False,
    ) -> float:
        """Append audio to the input buffer: any array, bytes or file, resampled to the session's
        input format and sent in :data:`CHUNK_MS` chunks. With ``realtime=True`` chunks are paced
        at the speed of speech and this call returns when the last one is sent. Returns the
        duration sent, in ms.

        Raises:
            TypeError, ValueError: audio that cannot be read or converted (see
                :func:`prepare_audio`). SessionClosedError: session closed or connection lost.
        """
        pcm = prepare_audio(audio, self.input_format, sample_rate)
        if not realtime:
            chunks = self._chunks(pcm)
            self._act(lambda p: [p.send_audio(c) for c in chunks])
        else:
            self._check_usable()
            self._runner.run(self._paced(pcm))
        return self.input_format.duration_ms(len(pcm))

    async def asend_audio(
        self,
        audio: npt.NDArray[Any] | bytes | str | os.PathLike[str],
        sample_rate: int | None = None,
        realtime: bool = False,
    ) -> float:
        """:meth:`send_audio` for ``async`` code. Cancelling it stops sending the rest."""
        if not realtime:
            return self.send_audio(audio, sample_rate, realtime=False)
        pcm = prepare_audio(audio, self.input_format, sample_rate)
        self._check_usable()
        fut = self._runner.submit(self._paced(pcm))
        try:
            await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        return self.input_format.duration_ms(len(pcm))

    async def _paced(self, pcm: bytes) -> None:
        """Send ``pcm`` chunk by chunk at real time (I/O loop). Cancelled: stops sending."""
        t0 = self._loop.time()
        sent_ms = 0.0
        for c in self._chunks(pcm):
            with self._lock:
                self._proto.send_audio(c)
            self._flush()
            sent_ms += self.input_format.duration_ms(len(c))
            delay = t0 + sent_ms / 1000.0 - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def append_audio(self, pcm: bytes) -> None:
        """Append bytes already in the input format (the widget's microphone). Thread-safe,
        non-blocking, order-preserving; silently ignored when the connection is down."""
        if self._closed or self.status != "connected":
            return
        data = bytes(pcm)
        with self._lock:
            self._proto.send_audio(data)
        with contextlib.suppress(RuntimeError):  # closed meanwhile: dropped, like any audio then
            self._runner.call_soon_threadsafe(self._flush)

    def commit(self) -> str:
        """Commit the input audio buffer as a user turn (push-to-talk). Returns the event id.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """
        return self.send_event(client.input_audio_buffer_commit())

    def clear(self) -> str:
        """Discard the uncommitted input audio. Returns the event id.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """
        return self.send_event(client.input_audio_buffer_clear())

    def respond(self, **response_overrides: Any) -> str:
        """Ask for a response (``response.create``), queued while another is active. Overrides:
        ``instructions``, ``tools`` (``@tool`` functions run like session tools), ``tool_choice``,
        ``voice``, ``output_modalities``, ``conversation``, ``metadata``, ``input``,
        ``max_output_tokens``, ``prompt``, ``audio``. Returns the event id.

        Raises:
            TypeError: an unknown override (accepted ones listed).
            ProtocolError: an override of the wrong type (nothing is sent).
            SessionClosedError: the session is closed or its connection lost.
        """
        resp, tools = build_response(**response_overrides)
        ev = client.response_create(resp or None)
        return str(self._act(lambda p: p.request_response(ev, tools))["event_id"])

    def cancel(self) -> None:
        """Cancel the active response (if any) and drop queued response requests.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """
        self._act(lambda p: p.cancel_response())

    def truncate(self, item_id: str, audio_end_ms: float, content_index: int = 0) -> int:
        """Truncate an assistant audio item to what was heard. ``audio_end_ms`` is floored to an
        integer and clamped to the audio received for the item. Returns the value sent.

        Raises:
            ValueError: no audio was received for ``item_id``, or a non-finite value.
            SessionClosedError: the session is closed or its connection lost.
        """
        return self._act(lambda p: p.truncate(item_id, audio_end_ms, content_index))

    def log_local(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Record a ``local`` event (``local.playback.played`` {item_id, played_ms, reason}, ...)
        and let it act (an interrupted playback truncates). Thread-safe, non-blocking.

        Raises:
            ValueError: ``type`` does not start with ``local.``.
        """
        if not isinstance(type, str) or not type.startswith("local."):
            raise ValueError(f"local event types start with 'local.', got {type!r}")
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing more is recorded
            self._runner.call_soon_threadsafe(self._record_local, type, dict(data or {}))

    # -- async twins -----------------------------------------------------------------------------
    # Sending only queues work for the I/O thread, so the async forms never block the caller's
    # loop; they exist so that async code reads naturally and for symmetry with await_for().

    async def asend_event(self, event: Mapping[str, Any]) -> str:
        """:meth:`send_event`, for ``async`` code."""
        return self.send_event(event)

    async def aupdate(self, **session_fields: Any) -> str:
        """:meth:`update`, for ``async`` code."""
        return self.update(**session_fields)

    async def asend_text(self, text: str, respond: bool = True) -> str:
        """:meth:`send_text`, for ``async`` code."""
        return self.send_text(text, respond)

    async def asend_image(
        self, image: bytes | str | os.PathLike[str], text: str | None = None, respond: bool = False
    ) -> str:
        """:meth:`send_image`, for ``async`` code."""
        return self.send_image(image, text, respond)

    async def acommit(self) -> str:
        """:meth:`commit`, for ``async`` code."""
        return self.commit()

    async def aclear(self) -> str:
        """:meth:`clear`, for ``async`` code."""
        return self.clear()

    async def arespond(self, **response_overrides: Any) -> str:
        """:meth:`respond`, for ``async`` code."""
        return self.respond(**response_overrides)

    async def acancel(self) -> None:
        """:meth:`cancel`, for ``async`` code."""
        self.cancel()

    async def atruncate(self, item_id: str, audio_end_ms: float, content_index: int = 0) -> int:
        """:meth:`truncate`, for ``async`` code."""
        return self.truncate(item_id, audio_end_ms, content_index)

    # -- waiting ---------------------------------------------------------------------------------

    def _waiter(self, event_type: str, where: Callable[[Event], bool] | None,
                after: int | None) -> Waiter:  # fmt: skip
        status = self.status
        ended = (SessionClosedError(f"session is {status}; no {event_type} will arrive")
                 if status in ("error", "closed") else None)  # fmt: skip
        return self._fanout.waiter(event_type, where, self._mark if after is None else after, ended)

    def _timeout_error(self, event_type: str, timeout: float | None) -> TimeoutError:
        last = ", ".join(self._fanout.last_types(5)) or "none"
        return TimeoutError(
            f"no {event_type} within {timeout} s (status {self.status}; last events: {last})"
        )

    def wait_for(
        self,
        event_type: str,
        timeout: float | None = 30.0,
        *,
        where: Callable[[Event], bool] | None = None,
        after: int | None = None,
    ) -> Event:
        """Block until an event of ``event_type`` (exact, beta alias, ``*`` or a glob like
        ``response.*``) arrives, optionally matching ``where``. Events that arrived since your
        last send/respond/... count, so ``send_text(); wait_for("response.done")`` cannot miss
        a fast answer; ``after=seq`` sets that point explicitly.

        Raises:
            TimeoutError: nothing matched in time (the last events are named).
            SessionClosedError: the connection ended first.
        """
        w = self._waiter(event_type, where, after)
        try:
            return w.future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timeout_error(event_type, timeout) from None
        finally:
            self._fanout.forget(w)

    async def await_for(
        self,
        event_type: str,
        timeout: float | None = 30.0,
        *,
        where: Callable[[Event], bool] | None = None,
        after: int | None = None,
    ) -> Event:
        """:meth:`wait_for` for ``async`` code; cancelling it stops waiting (nothing else)."""
        w = self._waiter(event_type, where, after)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(w.future), timeout)
        except TimeoutError:
            raise self._timeout_error(event_type, timeout) from None
        finally:
            self._fanout.forget(w)

    @property
    def idle(self) -> bool:
        """No response active, in flight or queued, no tool running, nothing left to send."""
        with self._lock:
            return self._proto.idle and not self._tool_tasks and not self._unsent

    def wait_until_idle(self, timeout: float | None = 30.0, settle_s: float = 0.05) -> None:
        """Block until :attr:`idle` holds for ``settle_s`` (a whole turn, tool calls and their
        follow-up responses included, is over).

        Raises:
            TimeoutError: still busy after ``timeout`` seconds.
            SessionClosedError: the connection ended first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        since: float | None = None
        while True:
            self._check_usable()
            now = time.monotonic()
            if self.idle:
                since = now if since is None else since
                if now - since >= settle_s:
                    return
            else:
                since = None
            if deadline is not None and now > deadline:
                raise self._timeout_error("idle state", timeout)
            time.sleep(0.005)

    def wait_until_heard(
        self, timeout: float | None = 60.0, start_grace_s: float = PLAYBACK_START_GRACE_S
    ) -> None:
        """:meth:`wait_until_idle`, then block until a widget playing the reply audio has
        finished playing every answer (its ``local.playback.played``): call it before speaking
        again from code, so the next turn does not interrupt the answer still being played.

        Without a player (no widget shown, or a notebook run headless) it returns once idle. An
        answer whose playback has not started ``start_grace_s`` after its audio arrived (a
        closed page) is not waited for. On a WebRTC call it waits until the server has sent
        each answer's audio on the track (``output_audio_buffer.stopped`` or ``cleared``).

        Raises:
            TimeoutError: still busy or playing after ``timeout`` seconds.
            SessionClosedError: the connection ended first.
        """
        start = time.monotonic()
        self.wait_until_idle(timeout)
        grace_ns = int(start_grace_s * 1e9)
        while True:
            self._check_usable()
            with self._lock:
                pending = self._proto.heard_pending(self._recorder.elapsed_ns, grace_ns)
            if not pending:
                return
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(
                    f"the widget was still playing {', '.join(pending)} after {timeout:g} s"
                )
            time.sleep(0.01)

    # -- a WebRTC call ---------------------------------------------------------------------------

    @property
    def transport(self) -> str:
        """``"websocket"`` or ``"webrtc"`` (see the class docstring)."""
        return self._transport.value

    def clock_ns(self) -> int:
        """Now, on the session's timeline (monotonic ns since the session started): the clock
        of every recorded event, and of :meth:`record_track`'s and :meth:`feed_peer_event`'s
        ``t_ns``."""
        return time.monotonic_ns() - self._origin_ns

    def _require_webrtc(self, what: str) -> None:
        if self._transport is not Transport.WEBRTC:
            raise RuntimeError(
                f"{what} is for a WebRTC call; this session's transport is "
                f"{self._transport.value!r} (Session(transport='webrtc'))"
            )

    def accept_offer(self, offer_sdp: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
        """Set up the call a page offers: post its SDP offer to the calls endpoint with this
        session's configuration (multipart ``sdp`` + ``session``; the key from this kernel's
        arguments or environment, in the request's header only), learn the ``call_id``, attach
        the sideband WebSocket (``?call_id=``) and wait until the server confirmed the
        configuration on it. Returns the answer SDP for the page. The exchange is recorded as a
        ``local.http`` event (without any header); the recording file is made now, its metadata
        naming the transport and the call id.

        Raises:
            TypeError, ValueError: ``offer_sdp`` is not an SDP offer with audio.
            RuntimeError: not a WebRTC session.
            SessionError: the endpoint refused the call (its message, redacted), or the server
                refused the configuration on the sideband; or this session has a call already.
            SessionClosedError: the session is closed, the endpoint could not be reached, or
                the sideband could not attach (the call is hung up then).
            TimeoutError: no answer and sideband within ``timeout`` seconds.
        """
        self._require_webrtc("accept_offer()")
        validate_offer(offer_sdp)
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        return self._runner.run(
            self._accept(offer_sdp, timeout), timeout * 2 + 1.0, what="accept_offer()"
        )

    async def aaccept_offer(self, offer_sdp: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
        """:meth:`accept_offer` for ``async`` code. Cancelling it stops the setup (a call
        already answered is hung up)."""
        self._require_webrtc("aaccept_offer()")
        validate_offer(offer_sdp)
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        fut = self._runner.submit(self._accept(offer_sdp, timeout))
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise

    async def _accept(self, offer_sdp: str, timeout: float) -> str:
        if self.call_id is not None:
            raise SessionError(
                f"this session has a call already ({self.call_id}); a session holds one call: "
                "hang it up and start a new Session for another"
            )
        ep = self._endpoint
        url = calls_url(ep.url)
        model = ep.model or self.model
        session = call_session(model, self._proto.config)
        body, ctype = build_call_request(offer_sdp, session)
        headers = {**ep.headers, "Content-Type": ctype, "Accept": "application/sdp",
                   "User-Agent": "realtime_nb"}  # fmt: skip
        t0 = time.perf_counter()
        where = f"{ep.label} ({safe_url(url)})"
        try:
            status, rheaders, rbody = await asyncio.wait_for(
                run_in_daemon_thread(
                    functools.partial(_http_post, url, body, headers, timeout), role="call"
                ),
                timeout,
            )
        except (OSError, http.client.HTTPException) as exc:
            msg = f"could not reach the calls endpoint of {where}: " + redact_message(
                f"{type(exc).__name__}: {exc}", self._secrets
            )
            self._record_http(url, body, ctype, None, {}, None, t0, error=msg)
            raise SessionClosedError(msg) from None
        try:
            answer = parse_call_answer(status, rheaders, rbody, where=where,
                                       secrets=self._secrets)  # fmt: skip
        except CallRefusedError as exc:
            self._refused_status = exc.status
            self._record_http(url, body, ctype, status, rheaders, rbody, t0, error=str(exc))
            raise SessionError(str(exc)) from None
        self.call_id = answer.call_id
        self._start_call_file(answer.call_id)
        self._record_http(url, body, ctype, status, rheaders, rbody, t0, call_id=answer.call_id)
        try:
            await self._open(seed=())
        except BaseException:
            await self._post_hangup()
            raise
        return answer.sdp

    def _start_call_file(self, call_id: str) -> None:
        """Make the call's recording file (I/O thread): its metadata names the call; what was
        recorded before goes in first, at the times it happened."""
        if self._pending_file is None or self._precall is None:
            return
        path, meta = self._pending_file
        rec = Recorder(path, meta={**meta, "call_id": call_id}, secrets=self._secrets,
                       clock=_ContinuedClock(self._origin_ns))  # fmt: skip
        for ev in self._precall:
            rec.append(ev.source, ev.wire(), audio=ev.audio, t_ns=ev.t_ns)
        old, self._recorder = self._recorder, rec
        self._pending_file = self._precall = None
        old.close()

    def _record_http(
        self,
        url: str,
        body: bytes,
        ctype: str,
        status: int | None,
        headers: Mapping[str, str],
        rbody: bytes | None,
        t0: float,
        *,
        error: str | None = None,
        call_id: str | None = None,
    ) -> None:
        self._record_local("local.http", http_event(
            method="POST", uri=url, status=status,
            request_body=body.decode("utf-8", "replace") if body else None,
            request_content_type=ctype or None, response_headers=headers,
            response_body=rbody.decode("utf-8", "replace") if rbody is not None else None,
            duration_ms=(time.perf_counter() - t0) * 1000.0, error=error, call_id=call_id,
        ))  # fmt: skip

    async def _post_hangup(self) -> None:
        """End the call at the endpoint (I/O thread); recorded, never raises (the call also
        ends when the page closes its peer connection)."""
        if self.call_id is None or self._hung_up:
            return
        self._hung_up = True
        ep = self._endpoint
        url = hangup_url(calls_url(ep.url), self.call_id)
        headers = {**ep.headers, "User-Agent": "realtime_nb"}
        t0 = time.perf_counter()
        try:
            status, rheaders, rbody = await asyncio.wait_for(
                run_in_daemon_thread(
                    functools.partial(_http_post, url, b"", headers, HANGUP_TIMEOUT_S),
                    role="hangup",
                ),
                HANGUP_TIMEOUT_S,
            )
        except (OSError, http.client.HTTPException) as exc:
            msg = redact_message(f"hang-up failed: {type(exc).__name__}: {exc}", self._secrets)
            logger.warning("realtime_nb: %s", msg)
            self._record_http(url, b"", "", None, {}, None, t0, error=msg, call_id=self.call_id)
            return
        error = None
        if status >= 300:
            error = f"hang-up refused: HTTP {status}"
            logger.warning("realtime_nb: %s", error)
        self._record_http(url, b"", "", status, rheaders, rbody, t0, error=error,
                          call_id=self.call_id)  # fmt: skip

    def hangup(self, timeout: float = 5.0) -> None:
        """End the call: post the hang-up, close the sideband, finish the recording (this is
        :meth:`close`, which hangs up a call it finds up). Idempotent.

        Raises:
            RuntimeError: not a WebRTC session.
        """
        self._require_webrtc("hangup()")
        self.close(timeout)

    async def ahangup(self) -> None:
        """:meth:`hangup` for ``async`` code (runs it in a worker thread)."""
        self._require_webrtc("ahangup()")
        await self.aclose()

    def feed_peer_event(self, event: Mapping[str, Any], t_ns: int | None = None) -> bool:
        """A server event the page saw on the call's data channel, received at ``t_ns``
        (session time; default now). Recorded once: the sideband's copy and this one share an
        ``event_id``, and whichever arrives first is kept (an event without an ``event_id`` is
        left to the sideband). Returns whether this copy was the new one. Thread-safe,
        non-blocking.

        Raises:
            RuntimeError: not a WebRTC session.
            TypeError: not a mapping with a str ``type``. ValueError: a client or local event.
        """
        self._require_webrtc("feed_peer_event()")
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise TypeError(f"event must be a server event dict with a 'type', got {event!r:.80}")
        etype = str(event["type"])
        src = source_of_type(etype)
        if src is Source.CLIENT or src is Source.LOCAL:
            raise ValueError(
                f"feed_peer_event() takes the server events the page received on its data "
                f"channel; {etype!r} is a {src.value} event"
            )
        if t_ns is not None and (not isinstance(t_ns, int) or isinstance(t_ns, bool)):
            raise TypeError(f"t_ns must be an int (session ns, see clock_ns()), got {t_ns!r}")
        if self._closed:
            return False
        data = dict(event)
        with self._lock:
            # Seen and queued at once: the sideband's reader records the queue before its own
            # next new event, so the two copies of a stream keep the server's order.
            new = self._proto.first_sighting(data, from_peer=True)
            if new:
                self._peer_pending.append((data, t_ns))
        if new:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing more is recorded
                self._runner.call_soon_threadsafe(self._record_peers)
        return new

    def _record_peers(self) -> None:
        """Record the page's queued events, in the order it saw them (I/O thread)."""
        if not self._peer_pending:  # the common case, without the lock
            return
        with self._lock:
            pending, self._peer_pending = self._peer_pending, []
        if not pending or self._recorder.closed:
            return
        for data, t_ns in pending:
            now = self._recorder.elapsed_ns
            # The page's time of receipt, kept in order with what is recorded already (a
            # recording's rows are in time order), and never in the future.
            t = now if t_ns is None else min(max(t_ns, self._last_t_ns), now)
            self._dispatch(self._recorder.append(Source.SERVER, data, t_ns=t))
        self._flush()

    def record_track(
        self,
        track: Literal["input", "output"],
        pcm16: bytes | bytearray | memoryview,
        t_ns: int,
        rate: int = PCM_RATE,
    ) -> None:
        """Audio the page tapped: its microphone track (``"input"``) or the call's remote track
        as it played it (``"output"``), PCM16 mono at ``rate``, whose first sample was captured
        or played at ``t_ns`` (session time: see :meth:`clock_ns`). Stored in the recording's
        audio column (``local.track.input``/``local.track.output``, at 24 kHz) and reduced: the
        input track is the input timeline the server's VAD times refer to, the output track
        the assistant items' audio as heard. Dropped while no call is up. Thread-safe,
        non-blocking.

        Raises:
            RuntimeError: not a WebRTC session.
            ValueError: an unknown track, an odd number of bytes, a rate that is not positive.
            TypeError: audio that is not bytes, or a ``t_ns`` that is not an int.
        """
        self._require_webrtc("record_track()")
        if track not in ("input", "output"):
            raise ValueError(f"track={track!r} is not accepted; use 'input' or 'output'")
        if not isinstance(pcm16, (bytes, bytearray, memoryview)):
            raise TypeError(f"pcm16 must be bytes of PCM16 audio, got {type(pcm16).__name__}")
        data = bytes(pcm16)
        if len(data) % 2:
            raise ValueError(f"pcm16 has {len(data)} bytes: PCM16 has 2 bytes per sample")
        if not isinstance(t_ns, int) or isinstance(t_ns, bool):
            raise TypeError(f"t_ns must be an int (session ns, see clock_ns()), got {t_ns!r}")
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(
                f"rate={rate!r} is not accepted; use the sample rate in Hz, e.g. 24000"
            )
        if self._closed or self.call_id is None or not data:
            return
        if rate != PCM_RATE:
            rs = self._resamplers.get((track, rate))
            if rs is None:
                rs = self._resamplers[(track, rate)] = Resampler(rate, PCM_RATE)
            data = float32_to_pcm16(rs.process(pcm16_to_float32(data)))
            if not data:
                return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing more is recorded
            self._runner.call_soon_threadsafe(self._record_track, track, data, t_ns)

    def _record_track(self, track: str, data: bytes, t_ns: int) -> None:
        if self._recorder.closed:
            return
        with self._lock:
            ev = self._proto.track_event(track, data, PCM_RATE, t_ns)
        self._dispatch(self._recorder.append(Source.LOCAL, ev, audio=data))

    # -- subscriptions ---------------------------------------------------------------------------

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` on the I/O thread for each matching event (client, server and
        local; ``"*"`` = all; globs like ``"response.*"``). ``async`` callbacks are scheduled on
        the session's loop. Returns a function that unsubscribes.

        Callbacks must be quick: they run on the I/O thread between frames.
        """
        return self._fanout.subscribe(event_type, callback)

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Every event (client, server, local) from now on, until the session closes.
        Breaking out or cancelling unsubscribes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def push(ev: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        unsubscribe = self.on("*", push)
        end = self.on("local.session.closed", lambda ev: push(None))
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            unsubscribe()
            end()

    # -- state -----------------------------------------------------------------------------------

    @property
    def conversation(self) -> ConversationState:
        """The live conversation state (items, responses, turns, usage, errors). It changes as
        events arrive; take ``.snapshot()`` for a copy that does not."""
        return self._proto.state

    def snapshot(self) -> ConversationState:
        """A consistent deep copy of :attr:`conversation`."""
        with self._lock:
            return self._proto.state.snapshot()

    @property
    def usage(self) -> SessionUsage:
        """Token usage, total and per response."""
        with self._lock:
            st = self._proto.state
            per = {rid: r.usage for rid, r in st.responses.items() if r.usage is not None}
            return SessionUsage(st.usage, per)

    @property
    def cost(self) -> Cost:
        """USD so far, total and per response, priced for the server-reported model."""
        with self._lock:
            # Priced from the reducer's responses, exactly as a replay of the recording is.
            usages = [
                (rid, r.usage_raw)
                for rid, r in self._proto.state.responses.items()
                if r.usage_raw is not None
            ]
            model = self._proto.state.session.get("model") or self.model
        return session_cost(str(model), usages, self._pricing)

    @property
    def errors(self) -> list[ErrorRecord]:
        """Server ``error`` events, server events ignored for their shape, tool failures and
        connection failures and losses, in time order: the reducer's, so a replay of the
        recording reports the same."""
        with self._lock:
            return list(self._proto.state.errors)

    @property
    def status(self) -> Status:
        """``connecting``, ``connected``, ``closed`` (by you) or ``error`` (connection failed or
        lost), as the recorded events tell it (``reconnect()`` closes, then connects again; an
        automatic reconnection is ``connecting`` from the loss until it succeeds or gives up)."""
        if self._closed:
            return "closed"
        status = self._proto.state.connection
        return "connecting" if status in ("closed", "error") and self._reconnecting else status

    @property
    def backend(self) -> str:
        """A short label for where this session is connected."""
        return self._endpoint.label

    @property
    def url(self) -> str:
        """The WebSocket URL, without credentials."""
        return self._endpoint.display_url

    @property
    def input_format(self) -> AudioFormat:
        """The input audio format the server confirmed (or that was requested)."""
        return self._format("input")

    @property
    def output_format(self) -> AudioFormat:
        """The output audio format the server confirmed (or that was requested)."""
        return self._format("output")

    def _format(self, direction: str) -> AudioFormat:
        st = self._proto.state
        if st.session:
            return st.input_format if direction == "input" else st.output_format
        requested = self._proto.config.get("audio", {}).get(direction, {}).get("format")
        return AudioFormat.from_config(requested)

    @property
    def settings(self) -> JSON:
        """``instructions``, ``voice`` and ``turn_detection`` in effect (server's view first)."""
        with self._lock:
            sess = deep_merge(self._proto.config, self._proto.state.session)
        audio = sess.get("audio") or {}
        return {
            "instructions": sess.get("instructions"),
            "voice": (audio.get("output") or {}).get("voice"),
            "turn_detection": (audio.get("input") or {}).get("turn_detection"),
            "output_modalities": sess.get("output_modalities"),
        }

    @property
    def recording_path(self) -> Path | None:
        """The recording file, or ``None`` with ``record=False``."""
        return self._recorder.path

    def recording(self) -> Recording:
        """The recording so far, read back from disk (pending events are flushed first): the
        same view a saved session gets, with its summary, items and audio players.

        Raises:
            ValueError: the session was created with ``record=False``.
        """
        path = self._recorder.path
        if path is None:
            raise ValueError("this session is not recorded (record=False); nothing to open")
        if not self._recorder.closed:
            self._recorder.flush()
        return Recording.open(path)

    @property
    def close_info(self) -> JSON | None:
        """How the last connection ended (code, reason, initiated_by), if it ended."""
        return self._proto.state.connection_closed

    def widget(self) -> Any:
        """A :class:`realtime_nb.widget.RealtimeWidget` for this session (mic, speaker, log)."""
        from ..widget import RealtimeWidget

        return RealtimeWidget(self)

    # -- reconnect and close ---------------------------------------------------------------------

    def reconnect(self, timeout: float | None = None) -> None:
        """Open a new connection seeded with the conversation so far (items re-created as text
        and transcripts, with their ids); the recording continues in the same file. An automatic
        reconnection under way (``Session(reconnect=...)``) is stopped first.

        Raises:
            SessionClosedError: the session was closed, or the new connection failed.
            SessionError: the server refused the configuration or a seeded item.
        """
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        self._runner.run(
            self._reconnect(), timeout or self._connect_timeout * 3, what="reconnect()"
        )

    async def areconnect(self) -> None:
        """:meth:`reconnect` for ``async`` code. Cancelling it leaves the session disconnected
        (status ``error``); call it again."""
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        await asyncio.wrap_future(self._runner.submit(self._reconnect()))

    async def _reconnect(self) -> None:
        await self._stop_auto()
        self._reconnecting = True
        try:
            await self._drop_connection(code=1000, reason="reconnect")
            seed = self._act_io(lambda p: p.reconnecting())
            await self._open(seed)
        finally:
            self._reconnecting = False

    async def _drop_connection(self, code: int, reason: str) -> None:
        ws, self._ws = self._ws, None
        for t in self._io_tasks:
            t.cancel()
        if self._io_tasks:
            await asyncio.gather(*self._io_tasks, return_exceptions=True)
        self._io_tasks = []
        self._unsent = 0
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(code, reason)
            self._act_io(lambda p: p.connection_closed(code, reason))

    # -- outliving the connection: automatic reconnection and rollover -----------------------------

    def _arm_rollover(self) -> None:
        """Look for a quiet moment from when the protocol's rollover window opens (I/O thread)."""
        if self._rollover_timer is not None:
            self._rollover_timer.cancel()
            self._rollover_timer = None
        at = self._proto.next_deadline()
        if at is not None:
            delay = max(at - time.time(), 0.0)
            self._rollover_timer = self._loop.call_later(delay, self._maybe_roll_over)

    def _maybe_roll_over(self) -> None:
        """Roll over now if the protocol says so (its window is open and the conversation is
        quiet) and nothing of ours is in flight (I/O thread)."""
        if self._closed or self._reconnecting or self._ws is None:
            return
        if self._unsent or self._tool_tasks:
            return  # the writer's or a tool's next event calls this again
        with self._lock:
            due = self._proto.rollover_due(time.time())
        if due:
            self._start_auto_reconnect("rollover")

    def _start_auto_reconnect(self, cause: str) -> None:
        if self._rollover_timer is not None:
            self._rollover_timer.cancel()
            self._rollover_timer = None
        self._reconnecting = True
        self._auto_task = self._loop.create_task(
            self._auto_reconnect(cause), name="realtime_nb-reconnect"
        )

    async def _auto_reconnect(self, cause: str) -> None:
        """Continue the session on a new connection, by the policy: up to ``attempts`` tries with
        backoff, each seeded with the conversation; then give up (recorded as a connection
        failure). A rollover first closes the current connection. Cancelled (close(),
        reconnect()): stops trying; a half-open connection is left for the caller to drop."""
        policy = self._policy
        assert policy is not None
        # After the provider ended the session, or to roll over, the server is fine: go at once.
        immediate = cause in ("session_expired", "rollover")
        last, attempt = "", 0
        try:
            if cause == "rollover":
                await self._drop_connection(code=1000, reason="session rollover")
            for attempt in range(1, policy.attempts + 1):
                step = attempt - 1 if immediate else attempt
                delay = policy.delay(step, random.random()) if step else 0.0
                self._act_io(functools.partial(ClientProtocol.reconnect_scheduled,
                             attempt=attempt, attempts=policy.attempts, delay_s=delay,
                             cause=cause))  # fmt: skip
                if delay:
                    await asyncio.sleep(delay)
                seed = self._act_io(lambda p: p.reconnecting())
                try:
                    await self._open(seed)
                    return
                except SessionError as exc:  # the same setup would be refused again
                    last = str(exc)
                    await self._drop_connection(code=1000, reason="session setup refused")
                    break
                except SessionClosedError as exc:
                    last = str(exc)
                    if not retry_after_refusal(self._refused_status):
                        break  # the key was refused (401/403), or the URL is wrong
                except Exception as exc:  # a bug of ours: say so, and stop trying
                    logger.exception("realtime_nb: reconnecting failed")
                    last = f"{type(exc).__name__}: {exc}"
                    break
            self._reconnecting = False
            msg = self._act_io(lambda p: p.reconnect_gave_up(attempt, last))
            logger.warning("realtime_nb: %s", msg)
            self._fail_waiters(SessionClosedError(msg + _RECONNECT_HINT))
        finally:
            self._reconnecting = False
            if self._auto_task is asyncio.current_task():
                self._auto_task = None

    async def _stop_auto(self) -> None:
        """Stop the rollover timer and an automatic reconnection under way (I/O thread)."""
        if self._rollover_timer is not None:
            self._rollover_timer.cancel()
            self._rollover_timer = None
        task, self._auto_task = self._auto_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _shutdown(self) -> None:
        await self._stop_auto()
        for t in list(self._tool_tasks):
            t.cancel()
        if self._tool_tasks:
            await asyncio.gather(*self._tool_tasks, return_exceptions=True)
        await self._post_hangup()
        await self._drop_connection(code=1000, reason="closed by user")
        self._act_io(lambda p: p.session_closed())
        self._fail_waiters(SessionClosedError("the session was closed"))

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection, stop the I/O thread and finish the recording. Idempotent; safe
        from any thread (from a callback on the I/O thread it completes asynchronously)."""
        if self._closed:
            return
        self._closed = True
        _live_sessions.discard(self)
        if self._runner.in_loop_thread():
            task = self._loop.create_task(self._shutdown())
            task.add_done_callback(lambda _: self._finish_close())
            return
        if self._runner.running:
            with contextlib.suppress(Exception):
                self._runner.run(self._shutdown(), timeout, what="closing the session")
        self._finish_close(timeout)

    def _finish_close(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):  # a stuck tool or callback: the thread is a daemon
            self._runner.stop(timeout)
        self._recorder.close()

    async def aclose(self) -> None:
        """:meth:`close` for ``async`` code (runs it in a worker thread)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        await asyncio.wrap_future(self._connect_future)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        n = len(self._proto.state.order)
        return f"<Session {self.backend} {self.status}: {n} items, {self.cost}>"
