"""The local Realtime server: a thin asyncio + ``websockets`` shell around :class:`RealtimeState`.

Each connection owns one :class:`~._state.RealtimeState`. The shell feeds it frames and the clock,
sends what it emits through one sender task (so events never reorder), and runs the slow work it
asks for (PocketSphinx, the responder, eSpeak NG) on a thread pool through a :class:`JobRunner`,
feeding results back on the event loop; a recognition stream's jobs run one after the other, in
order. All protocol decisions live in the state machine.

The server reports its own model label, :data:`~realtime_nb.core.pricing.LOCAL_MODEL`, whatever
model the client asks for, so a session recorded against it says it was made offline and costs
nothing.

URLs accepted (``ws://HOST:PORT`` then):

- ``/v1/realtime?model=...`` (OpenAI; also ``/realtime``);
- ``/openai/realtime?api-version=...&deployment=...`` (Azure; also ``/openai/v1/realtime``);
- ``?call_id=rtc_...`` on any of them: the sideband of a live WebRTC call (see below); an
  unknown or ended call gets HTTP 404 ``call_id_not_found``, as from the API.

WebRTC (the ``webrtc`` extra, aiortc), plain HTTP on the same port (``http://HOST:PORT`` then):

- ``POST /v1/realtime/calls`` (also ``/openai/v1/realtime/calls``): the body is the SDP offer
  (``Content-Type: application/sdp``) or ``multipart/form-data`` with ``sdp`` and an optional
  ``session`` (the GA session config, JSON). Answer: ``201 Created``, the answer SDP, and
  ``Location: /v1/realtime/calls/rtc_...``. Refusals are the API's JSON error bodies: 400 (what
  is wrong and what is accepted), 401, 413 (over :data:`~._http.MAX_BODY_BYTES`), 501 (aiortc
  not installed).
- ``POST /v1/realtime/calls/{call_id}/hangup``: ends the call (200; 404 if there is none).

A call's events go on its ``oai-events`` data channel and to every sideband attached to it
(several may attach; each sees the events from when it attached, with no ``session.created``, as
the recorded sideband sessions show), and client events from any of them drive the one session.
See :mod:`._webrtc`.

Authentication: any credential (or none) is accepted unless ``api_key`` is set; then the client
must send ``Authorization: Bearer <key>``, ``api-key: <key>`` (Azure) or the browser subprotocol
``openai-insecure-api-key.<key>``, or get HTTP 401. ``OpenAI-Beta: realtime=v1`` (header or
``openai-beta.realtime-v1`` subprotocol) selects the beta protocol for that connection: beta event
names and session/item/response shapes both ways (see :mod:`._beta` for the mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio import server as ws_server
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from ..core._redact import install as install_redaction
from ..core.pricing import LOCAL_MODEL
from ..runtime import LoopThread
from ._http import HttpError, HttpRequest, HttpResponse, front_connection_class, json_error
from ._state import GenerateJob, Job, RealtimeState, StreamJob, TranscribeJob
from .responders import Output, Responder, ResponderError, RuleSpec, make_responder
from .stt import DecoderBusy, Transcriber, TranscriptionStream, shared_transcriber
from .tts import Speech, Synthesizer

if TYPE_CHECKING:
    from ._webrtc import Call

__all__ = ["DEFAULT_MODEL", "JobRunner", "LocalServer", "serve_forever"]

log = logging.getLogger("realtime_nb.local")

#: The model every session of this server reports (see the module docstring).
DEFAULT_MODEL: Final = LOCAL_MODEL
#: Paths that lead to the Realtime endpoint (OpenAI style and Azure style).
REALTIME_PATHS: Final = ("/v1/realtime", "/realtime", "/openai/realtime", "/openai/v1/realtime")
#: Paths of the WebRTC calls endpoint (OpenAI style and Azure style); a call's hangup is
#: ``{path}/{call_id}/hangup``.
CALLS_PATHS: Final = ("/v1/realtime/calls", "/openai/v1/realtime/calls")
#: The install hint when the calls endpoint is asked for without aiortc.
WEBRTC_EXTRA_HINT: Final = "pip install 'realtime-nb[webrtc]'"
#: Largest frame the WebSocket layer accepts. Bigger than the protocol's own limit (16 MiB, see
#: ``_frames.MAX_EVENT_BYTES``) so that an oversized event gets a protocol ``error`` event and the
#: session stays usable, instead of the connection being closed with code 1009.
WS_MAX_SIZE: Final = 64 * 1024 * 1024
#: Worker threads for transcription, responders and synthesis: eSpeak is serialised by a lock and
#: PocketSphinx is pooled per core, so a few threads keep 2 cores busy while HTTP responders wait.
MAX_WORKERS: Final = 8
#: How long ``start()`` waits for the server to bind before giving up.
START_TIMEOUT_S: Final = 10.0
_INSECURE_KEY_PREFIX: Final = "openai-insecure-api-key."
#: Loggers that see the server's traffic and get a redacting filter: websockets dumps request
#: headers (``Authorization: Bearer <key>``, the key subprotocol) at DEBUG, on both sides of an
#: in-process connection. A filter sees only its own logger's records, so each is named.
REDACTED_LOGGERS: Final = (
    "realtime_nb.local",
    "websockets",
    "websockets.server",
    "websockets.client",
)


JobResult = str | list[Output] | Speech | None


class JobRunner:
    """Does one session's slow jobs and hands their results to its state machine.

    :meth:`run` does a job's work, blocking (the shell calls it on a worker thread; tests call it
    inline); :meth:`deliver` gives the result, or the failure, to the state (on the state's
    thread). Recognition streams live here between their jobs: run a stream's jobs one at a time,
    in order; jobs of different streams, and other jobs, may run at once.
    """

    def __init__(
        self, responder: Responder, synthesizer: Synthesizer, transcriber: Transcriber
    ) -> None:
        self.responder = responder
        self.synthesizer = synthesizer
        self.transcriber = transcriber
        self._streams: dict[int, TranscriptionStream] = {}
        self._failed: dict[int, str] = {}  # stream id -> why it failed before its end
        self._fed_ends: set[StreamJob] = set()  # ends waiting for a decoder, audio already fed
        self._closed = False
        self._lock = threading.Lock()

    def run(self, job: Job, *, wait: bool = False) -> JobResult:
        """Do ``job``'s work: a transcript (``str``), the responder's outputs, a segment's
        speech, or ``None`` (a stream's job that has nothing to answer yet).

        A recognition (a stream's end, or a whole turn) needs a decoder: with ``wait``, if none is free
        this raises :class:`~.stt.DecoderBusy` (run the same job again when
        :meth:`~.stt.Transcriber.when_free` says so; its audio is not fed twice); without, one is
        made beyond the pool's cap.

        Raises:
            DecoderBusy: see above.
            ResponderError: the responder failed.
            Exception: whatever the recogniser or synthesiser raised.
        """
        if isinstance(job, StreamJob):
            return self._run_stream(job, wait)
        if isinstance(job, TranscribeJob):
            if not wait:
                return self.transcriber.transcribe(job.audio, job.fmt)
            stream = self.transcriber.stream(job.fmt)  # a new one each try: nothing fed twice
            stream.feed(job.audio)
            return stream.finish()
        if isinstance(job, GenerateJob):
            return list(self.responder.respond(job.request))
        return self.synthesizer.synthesize(job.text, job.voice, job.speed, job.fmt)

    def _run_stream(self, job: StreamJob, wait: bool) -> str | None:
        with self._lock:
            if self._closed:  # a job that was queued when the session ended: no decoder for it
                return None
            stream = self._streams.get(job.stream_id)
            if stream is None and job.stream_id not in self._failed:
                stream = self._streams[job.stream_id] = self.transcriber.stream(job.fmt)
            fed = job in self._fed_ends
        if stream is not None and not fed:
            try:
                if job.item_id is not None or not job.end:
                    stream.feed(job.audio)
            except Exception as exc:  # reported with the stream's end, to its item
                log.exception("local server: recognition stream failed")
                with self._lock:
                    self._streams.pop(job.stream_id, None)
                    self._failed[job.stream_id] = f"{type(exc).__name__}: {exc}"
                stream.abort()
                stream = None
        if not job.end:
            return None
        with self._lock:
            failure = self._failed.pop(job.stream_id, None)
            if job.item_id is None:
                self._streams.pop(job.stream_id, None)
        if job.item_id is None:  # the turn was dropped: nobody to tell
            if stream is not None:
                stream.abort()
            return None
        if failure is not None or stream is None:
            raise RuntimeError(failure or "the recognition stream failed")
        try:
            text = stream.finish(force=not wait)
        except DecoderBusy:
            with self._lock:
                self._fed_ends.add(job)  # its audio is in the stream: not again on the retry
            raise
        with self._lock:
            self._streams.pop(job.stream_id, None)
            self._fed_ends.discard(job)
        return text

    def deliver(
        self, state: RealtimeState, job: Job, result: JobResult, error: Exception | None, now: float
    ) -> None:
        """Give ``job``'s ``result`` (or its ``error``) to ``state``."""
        if error is not None:
            message = (
                str(error)
                if isinstance(error, ResponderError)
                else f"{type(error).__name__}: {error}"
            )
            if isinstance(job, TranscribeJob):
                state.transcription_failed(job.item_id, message, now)
            elif isinstance(job, StreamJob):
                if job.item_id is not None:
                    state.transcription_failed(job.item_id, message, now)
            elif isinstance(job, GenerateJob):
                state.generation_failed(job.response_id, message, now)
            else:
                state.speech_failed(job.response_id, message, now)
            return
        if isinstance(job, (TranscribeJob, StreamJob)):
            if job.item_id is not None and isinstance(result, str):
                state.transcription_done(job.item_id, result, now)
        elif isinstance(job, GenerateJob):
            assert isinstance(result, list)
            state.generation_done(job.response_id, result, now)
        else:
            assert isinstance(result, Speech)
            state.speech_done(job.response_id, result, now)

    def close(self) -> None:
        """Abort the streams still open (their decoders go back to the pool); stream jobs run
        after this do nothing. Blocks while a stream's block is being decoded."""
        with self._lock:
            self._closed = True
            streams = list(self._streams.values())
            self._streams.clear()
            self._failed.clear()
            self._fed_ends.clear()
        for stream in streams:
            stream.abort()


async def send_queued(ws: Any, outgoing: asyncio.Queue[Any]) -> None:
    """Send a connection's queued events in order, one sender per connection so events never
    reorder: a dict is sent as JSON, ``(code, reason)`` closes the socket, ``None`` stops."""
    while True:
        event = await outgoing.get()
        if event is None:
            return
        if isinstance(event, tuple):
            await ws.close(*event)
            return
        await ws.send(json.dumps(event))


class _Driver:
    """One session's shell: its state machine, its pacer and its job tasks, on the server's loop.

    Where the events go is the subclass's business: :meth:`deliver` each event, in order, and
    :meth:`end_session` once the state asks to close (after the events before it).
    """

    def __init__(self, server: LocalServer, state: RealtimeState) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.state = state
        self.runner = JobRunner(server.responder, server._synthesizer, server._transcriber)
        # The last task of each recognition stream: the next one of that stream waits for it.
        self.stream_tails: dict[int, asyncio.Task[None]] = {}
        self.closing = False
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def deliver(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def end_session(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def now(self) -> float:
        return self.loop.time()

    def flush(self) -> None:
        for event in self.state.events_to_send():
            self.deliver(event)
        if self.state.close_request is not None and not self.closing:
            self.closing = True  # after the events above (the session_expired error)
            self.end_session(*self.state.close_request)
        for job in self.state.jobs_to_run():
            after = None
            if isinstance(job, StreamJob):
                after = self.stream_tails.get(job.stream_id)
            task = asyncio.create_task(self.run(job, after))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            if isinstance(job, StreamJob):
                if job.end:
                    self.stream_tails.pop(job.stream_id, None)
                else:
                    self.stream_tails[job.stream_id] = task
        self.wake.set()

    async def run(self, job: Job, after: asyncio.Task[None] | None = None) -> None:
        """Run ``job`` on the worker threads (after ``after``, the same stream's previous job)
        and deliver its result. Cancelled: the result, if any comes, is dropped."""
        if after is not None:
            await asyncio.wait({after})  # its failure, or cancellation, is its own business
        error: Exception | None = None
        result: JobResult = None
        try:
            while True:
                try:
                    result = await self.loop.run_in_executor(
                        self.server._job_executor(),
                        functools.partial(self.runner.run, job, wait=True),
                    )
                    break
                except DecoderBusy:
                    # Waiting here, not on a worker thread: the streams holding the decoders
                    # need the workers to finish. No decoder beyond the cap is made: loading one
                    # holds the GIL for seconds, stalling every session of the process.
                    await self.decoder_freed()
        except Exception as exc:  # a failed job must end its response, not kill the session
            if not isinstance(exc, ResponderError):
                log.exception("local server job failed")
            error = exc
        self.runner.deliver(self.state, job, result, error, self.now())
        self.flush()

    async def decoder_freed(self) -> None:
        """Wait until a decoder may be free."""
        freed = self.loop.create_future()

        def settle() -> None:
            if not freed.done():
                freed.set_result(None)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the connection's loop is gone: no one waits
                self.loop.call_soon_threadsafe(settle)

        self.server._transcriber.when_free(wake)
        await freed

    async def pacer(self) -> None:
        while True:
            deadline = self.state.next_deadline()
            self.wake.clear()
            timeout = None if deadline is None else max(deadline - self.now(), 0.0)
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            self.state.poll(self.now())
            self.flush()
            self.wake.clear()

    async def release(self) -> None:
        """Cancel the session's jobs and give its recognition streams' decoders back.

        Cancelled: the decoders come back all the same, then the cancellation goes on."""
        for task in list(self.tasks):
            task.cancel()
        # On a worker: it waits for a block being decoded, which must not stall the loop.
        try:
            await self.loop.run_in_executor(self.server._job_executor(), self.runner.close)
        except RuntimeError:  # the workers are shut down (the server is stopping)
            self.runner.close()
        except asyncio.CancelledError:
            self.runner.close()
            raise


class _Connection(_Driver):
    """One WebSocket client: a session of its own, sent through one sender task."""

    def __init__(self, server: LocalServer, ws: ServerConnection, beta: bool) -> None:
        super().__init__(
            server,
            RealtimeState(
                model=DEFAULT_MODEL,
                fast=server.fast,
                beta=beta,
                created_at=time.time(),
                max_session_s=server.max_session_s,
                streaming=server.streaming,
            ),
        )
        self.ws = ws
        # Events to send, in order; then (code, reason) to close with, or None to just stop.
        self.outgoing: asyncio.Queue[dict[str, Any] | tuple[int, str] | None] = asyncio.Queue()
        self.dropping: asyncio.Task[None] | None = None

    def deliver(self, event: dict[str, Any]) -> None:
        self.outgoing.put_nowait(event)

    def end_session(self, code: int, reason: str) -> None:
        self.outgoing.put_nowait((code, reason))

    async def sender(self) -> None:
        await send_queued(self.ws, self.outgoing)

    async def drop(self, code: int | None, reason: str) -> None:
        """Drop the connection now, whatever is queued: send a close frame with ``code`` (the
        closing handshake goes on in the background), or with ``None`` abort the TCP
        connection."""
        self.closing = True
        if code is None:
            self.ws.transport.abort()
            return
        # Not awaited here: the client may be on the caller's own (blocked) thread.
        self.dropping = asyncio.create_task(self.ws.close(code, reason))
        await asyncio.sleep(0)  # ws.close() writes the close frame before its first real wait

    async def serve(self) -> None:
        self.state.start(self.now())
        self.flush()
        sender = asyncio.create_task(self.sender())
        pacer = asyncio.create_task(self.pacer())
        try:
            async for frame in self.ws:
                self.state.receive(frame, self.now())
                self.flush()
        except ConnectionClosed:
            pass
        finally:
            pacer.cancel()
            for task in list(self.tasks):
                task.cancel()
            self.outgoing.put_nowait(None)
            with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
                await sender
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
            await self.release()


class LocalServer:
    """An offline Realtime API server on its own thread (or your event loop, via :meth:`serve`).

    ``responder`` is ``"echo"`` (default), ``"rules"`` (with ``rules=...``), ``"chat"`` (with
    ``chat_url=...``, ``chat_model=...``) or a :class:`~.responders.Responder` instance. ``fast``
    sends output audio as soon as it is synthesised instead of at real time. ``api_key``, when set,
    is required from clients. ``port=0`` picks a free port. ``streaming`` (default) recognises
    a turn while it is spoken and sends a reply's first audio as soon as its first sentence is
    synthesised; ``streaming=False`` is the previous batch pipeline (recognition after
    ``speech_stopped``, the whole reply synthesised first), kept as a benchmark baseline. ``max_session_s`` ends every session
    that long after it started, as the API does at 60 minutes: an ``error`` event with code
    ``session_expired``, then close code 1001 (default: no limit).

    Usage::

        with LocalServer() as server:
            url = server.url  # "ws://127.0.0.1:PORT/v1/realtime"; add ?model=...
            calls = server.calls_url  # WebRTC: POST an SDP offer here (the webrtc extra)

    :meth:`start` and :meth:`stop` are thread-safe and idempotent; :meth:`stop` closes open
    connections with close code 1001 (going away), ends the WebRTC calls (their sidebands get
    1001 too) and leaves no thread behind.
    :meth:`drop_connections` drops the open connections as a failing server would (for tests of
    reconnection).
    """

    def __init__(
        self,
        responder: str | Responder = "echo",
        *,
        fast: bool = False,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rules: Iterable[RuleSpec] | Mapping[str, Any] | None = None,
        chat_url: str | None = None,
        chat_model: str | None = None,
        chat_api_key: str | None = None,
        max_session_s: float | None = None,
        streaming: bool = True,
    ) -> None:
        if max_session_s is not None and not max_session_s > 0:
            raise ValueError(f"max_session_s must be a positive number, got {max_session_s!r}")
        self.streaming = streaming
        self.responder = make_responder(
            responder,
            rules=rules,
            chat_url=chat_url,
            chat_model=chat_model,
            chat_api_key=chat_api_key,
        )
        self.fast = fast
        self.api_key = api_key
        self.host = host
        self.port = port
        self.max_session_s = max_session_s
        self._synthesizer = Synthesizer()
        self._transcriber = shared_transcriber()
        # Made on first use and shut down (threads joined) by stop(), so a stopped server holds
        # no thread; start() after stop() makes a new one.
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._calls: dict[str, Call] = {}  # live WebRTC calls by call_id (the loop's thread only)
        self._lock = threading.Lock()
        self._runner: LoopThread | None = None
        self._server: ws_server.Server | None = None
        # Before anything can log: the keys in play never reach a log record, at any level.
        install_redaction(REDACTED_LOGGERS, [k for k in (api_key, chat_api_key) if k])

    # -- URLs --

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v1/realtime`` (the bound port once started)."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    @property
    def base_url(self) -> str:
        """``ws://HOST:PORT/v1``: what ``AsyncOpenAI(websocket_base_url=...)`` wants."""
        return f"ws://{self.host}:{self.port}/v1"

    @property
    def calls_url(self) -> str:
        """``http://HOST:PORT/v1/realtime/calls``: the WebRTC calls endpoint."""
        return f"http://{self.host}:{self.port}/v1/realtime/calls"

    @property
    def call_ids(self) -> list[str]:
        """The ids of the WebRTC calls in progress (a snapshot)."""
        return list(self._calls)

    # -- handshake --

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path.rstrip("/")
        if path not in REALTIME_PATHS:
            return connection.respond(
                http.HTTPStatus.NOT_FOUND,
                f"Not found: {path!r}. The Realtime endpoint is /v1/realtime?model=... "
                f"(or /openai/realtime?deployment=... for Azure clients).\n",
            )
        refusal = self._refuse_key(request.headers)
        if refusal is None:
            call_id = _call_id(request.path)
            if call_id is not None and call_id not in self._calls:
                refusal = _unknown_call(call_id)
        if refusal is not None:
            response = connection.respond(refusal.status, refusal.body.decode())
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    def _refuse_key(self, headers: Headers) -> HttpResponse | None:
        """A 401 if this server has a key and ``headers`` do not carry it."""
        if self.api_key is None or _authorized(headers, self.api_key):
            return None
        return json_error(
            http.HTTPStatus.UNAUTHORIZED,
            "Incorrect API key provided. This local server requires the key it was started "
            "with (Authorization: Bearer <key> or api-key: <key>).",
            "invalid_api_key",
        )

    async def _http(self, request: HttpRequest) -> HttpResponse:
        """A plain HTTP request on the server's port: the WebRTC calls endpoint.

        Raises:
            HttpError: a refused request (its status and JSON body).
        """
        path = request.path.rstrip("/")
        prefix = next((p for p in CALLS_PATHS if path == p or path.startswith(p + "/")), None)
        if request.method == "OPTIONS" and prefix is not None:  # a browser's CORS preflight
            return HttpResponse(
                http.HTTPStatus.NO_CONTENT,
                headers=[
                    ("Access-Control-Allow-Methods", "POST, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Authorization, Content-Type, api-key"),
                    ("Access-Control-Max-Age", "600"),
                ],
            )
        rest = path[len(prefix) :].strip("/").split("/") if prefix is not None else []
        if prefix is None or not (rest == [""] or (len(rest) == 2 and rest[1] == "hangup")):
            raise HttpError(
                http.HTTPStatus.NOT_FOUND,
                f"Not found: {request.method} {request.path!r}. This server answers POST "
                f"/v1/realtime/calls (a WebRTC call), POST /v1/realtime/calls/{{call_id}}/hangup "
                f"and WebSockets at /v1/realtime.",
                "not_found",
            )
        if request.method != "POST":
            raise HttpError(
                http.HTTPStatus.METHOD_NOT_ALLOWED,
                f"Method {request.method} not allowed on {path!r}: use POST.",
                "method_not_allowed",
            )
        refusal = self._refuse_key(request.headers)
        if refusal is not None:
            return refusal
        if rest != [""]:  # .../{call_id}/hangup
            call = self._calls.get(rest[0])
            if call is None:
                return _unknown_call(rest[0])
            await call.end("hung up")
            return HttpResponse(http.HTTPStatus.OK)
        from ._http import parse_call_body

        offer = parse_call_body(request.headers.get("Content-Type"), request.body)
        try:
            from ._webrtc import create_call
        except ImportError as exc:
            raise HttpError(
                http.HTTPStatus.NOT_IMPLEMENTED,
                f"WebRTC calls need aiortc, which is not installed ({exc}). Install the extra: "
                f"{WEBRTC_EXTRA_HINT}",
                "webrtc_unavailable",
            ) from None
        call = await create_call(self, offer)
        return HttpResponse(
            http.HTTPStatus.CREATED,
            call.pc.localDescription.sdp.encode(),
            "application/sdp",
            [("Location", f"{prefix}/{call.call_id}")],
        )

    @staticmethod
    def _select_subprotocol(
        connection: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        # Browsers authenticate with ["realtime", "openai-insecure-api-key.<key>", ...]: the
        # server must echo "realtime" for the handshake to succeed.
        return Subprotocol("realtime") if "realtime" in subprotocols else None

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        protocols = request.headers.get("Sec-WebSocket-Protocol", "")
        beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "") or (
            "openai-beta.realtime-v1" in protocols
        )
        call_id = _call_id(request.path)
        if call_id is not None:  # a sideband: GA events of the call's one session
            call = self._calls.get(call_id)
            if call is None:  # ended between the handshake and here
                await ws.close(1000, "call ended")
                return
            await call.attach(ws)
            return
        connection = _Connection(self, ws, beta)
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)

    def _job_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    MAX_WORKERS, thread_name_prefix="realtime_nb-local-job"
                )
            return self._executor

    def _shutdown_executor(self) -> None:
        """Wait for running jobs (queued ones are cancelled) and join the worker threads."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def _drop(self, code: int | None, reason: str) -> int:
        connections = list(self._connections)
        sidebands = [s for call in self._calls.values() for s in call.sidebands]
        await asyncio.gather(
            *(c.drop(code, reason) for c in connections), *(s.drop(code, reason) for s in sidebands)
        )
        return len(connections) + len(sidebands)

    def drop_connections(
        self, code: int | None = 1011, reason: str = "", timeout: float = 10.0
    ) -> int:
        """Drop every open WebSocket connection now (WebRTC calls' sidebands included; the calls
        themselves go on), as a failing server would, and return how many.

        Events not yet sent are lost. ``code`` is the close code (1011 "internal error" by
        default; 1001 "going away", 1012 "service restart" ...); ``None`` aborts the TCP
        connection without a close frame, like a network failure. Returns once the close frames
        are written (or the connections aborted), without waiting for the clients' answers, so a
        client on the caller's own event loop is not deadlocked. The server keeps accepting new
        connections. Call it from any thread but the server's own.

        Raises:
            realtime_nb.runtime.LoopTimeoutError: (a ``TimeoutError``) the server's loop did not
                get to it within ``timeout`` seconds.
        """
        with self._lock:
            runner = self._runner
        if runner is None or not runner.running:
            return 0
        return runner.run(self._drop(code, reason), timeout, what="dropping connections")

    # -- running --

    def _serve_kwargs(self) -> dict[str, Any]:
        return {
            "process_request": self._process_request,
            "select_subprotocol": self._select_subprotocol,
            "max_size": WS_MAX_SIZE,
            # Audio in base64 barely compresses; deflate would only cost CPU.
            "compression": None,
            # Plain HTTP on the same port: the WebRTC calls endpoint (see _http.FrontConnection).
            "create_connection": front_connection_class(self._http),
        }

    def serve(self) -> ws_server.serve:
        """The ``websockets`` server (a ``serve`` object) to ``async with`` or await on your own
        loop (advanced use)."""
        return serve(self._handler, self.host, self.port, **self._serve_kwargs())

    async def _open(self) -> ws_server.Server:
        server = await self.serve()
        self.port = int(next(iter(server.sockets)).getsockname()[1])
        return server

    async def _close(self, server: ws_server.Server) -> None:
        server.close()  # stops accepting; closes open connections with 1001 (going away)
        await self._end_calls()
        await server.wait_closed()

    async def _end_calls(self) -> None:
        calls = list(self._calls.values())
        await asyncio.gather(*(call.end("the server stopped", 1001) for call in calls))

    def start(self) -> LocalServer:
        """Start serving on a daemon thread (``realtime_nb-local``); returns once the port is
        bound.

        Raises:
            OSError: the port cannot be bound (e.g. already in use).
            realtime_nb.runtime.LoopTimeoutError: (a ``TimeoutError``) the server did not come up
                within :data:`START_TIMEOUT_S`.
        """
        with self._lock:
            if self._runner is not None and self._runner.running:
                return self
            self._runner, self._server = LoopThread.start_with(
                "local", self._open(), START_TIMEOUT_S, what="starting the local Realtime server"
            )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close all connections (code 1001), stop the server thread and join the job threads
        (waiting for jobs still running: a chat responder's request, say). Safe to call twice.

        Raises:
            realtime_nb.runtime.LoopTimeoutError: (a ``TimeoutError``) connections or the thread
                still open after ``timeout`` seconds.
        """
        with self._lock:
            runner, server = self._runner, self._server
            self._runner = self._server = None
        if runner is None:
            self._shutdown_executor()  # a server run by serve() on the caller's loop
            return
        deadline = time.monotonic() + timeout
        try:
            if server is not None:
                runner.run(self._close(server), timeout, what="closing the local server")
        finally:
            try:
                runner.stop(max(deadline - time.monotonic(), 0.1))
            finally:
                self._shutdown_executor()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = self._runner is not None and self._runner.running
        status = "running" if running else "stopped"
        return f"<LocalServer {self.url} responder={self.responder.name} {status}>"


def _authorized(headers: Headers, key: str) -> bool:
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer ") and auth[len("Bearer ") :].strip() == key:
        return True
    if headers.get("api-key", "") == key:
        return True
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        for proto in value.split(","):
            proto = proto.strip()
            if proto.startswith(_INSECURE_KEY_PREFIX) and proto[len(_INSECURE_KEY_PREFIX) :] == key:
                return True
    return False


def _call_id(path: str) -> str | None:
    """The ``call_id`` query parameter of a WebSocket request's path, if any."""
    values = parse_qs(urlsplit(path).query).get("call_id")
    return values[0] if values else None


def _unknown_call(call_id: str) -> HttpResponse:
    # The API's answer to a sideband or a hangup for a call it does not have (or no longer has).
    return json_error(
        http.HTTPStatus.NOT_FOUND,
        f"No session found for the provided call_id {call_id!r}: no WebRTC call with that id is "
        f"in progress on this server (it ended, or was never made here).",
        "call_id_not_found",
        "call_id",
    )


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    responder: str | Responder = "echo",
    fast: bool = False,
    api_key: str | None = None,
    rules: Iterable[RuleSpec] | Mapping[str, Any] | None = None,
    chat_url: str | None = None,
    chat_model: str | None = None,
    chat_api_key: str | None = None,
    max_session_s: float | None = None,
) -> None:
    """Serve until Ctrl-C (blocking; for ``realtime-nb serve``). Prints the URL once listening.

    Raises:
        OSError: the port cannot be bound.
        ValueError: an unknown responder name, ``"chat"`` without ``chat_url``, or a
            ``max_session_s`` that is not positive.
    """
    server = LocalServer(
        responder,
        fast=fast,
        api_key=api_key,
        host=host,
        port=port,
        rules=rules,
        chat_url=chat_url,
        chat_model=chat_model,
        chat_api_key=chat_api_key,
        max_session_s=max_session_s,
    )

    async def main() -> None:
        async with server.serve() as ws_server:
            bound = next(iter(ws_server.sockets)).getsockname()[1]
            server.port = int(bound)
            print(
                f"realtime-nb local server on {server.url}?model={DEFAULT_MODEL} "
                f"(responder={server.responder.name}; WebRTC calls: POST {server.calls_url}); "
                f"Ctrl-C stops",
                flush=True,
            )
            try:
                await asyncio.Future()  # until cancelled by Ctrl-C
            finally:
                await server._end_calls()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    finally:
        server.stop()  # joins the job threads
