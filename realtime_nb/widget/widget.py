"""RealtimeWidget: talk to a Realtime session from a notebook (mic, speakers, live views).

The browser half is plain ESM with no build step: ``loader.js`` (the ``_esm``) imports the other
modules of this folder, sent as the ``_modules`` trait, and renders ``widget.js``; the AudioWorklet
gets ``worklet.js`` with the pure ``audio.js`` inlined (``_worklet_js``); see ``_sources.py``, which
also hot-reloads all of them under ``ANYWIDGET_HMR=1``. The kernel half below is a thin shell around a
:class:`realtime_nb.Session`: it forwards mic audio and commands to the session, and batches what
the session's I/O thread produces (output audio, events, conversation changes) onto the comm.

What the transcript and the summary show is computed by :mod:`._viewmodel` from the reducer's
state on the session's I/O thread, right after each event is applied (the one place the live state
is consistent without the session's lock); the flusher thread only diffs the latest view against
the last one sent. Push-to-talk's commit rule is :mod:`._ptt`, the benchmark's latency bookkeeping
:mod:`._timings`.

Traits hold only what a re-render must restore (connection status, mic and mute state, settings,
audio rates); everything else travels as custom messages, every one ``{"type": ...}``, binary
payloads only in ``buffers``.

Message catalogue
=================

Browser -> kernel
-----------------
``ready`` ``{view}``
    A view has rendered. The first one releases what was queued; every one gets a ``snapshot``.
``mic`` ``{view, seq, t, tw[, resend]}`` + ``[pcm]``
    ~50 ms of PCM16 LE mono at ``input_rate``; ``seq`` counts from 0 per view, ``t`` is the
    browser's epoch ms at send, ``tw`` the epoch ms at which the AudioWorklet posted the chunk
    (``t - tw`` is how long it waited for the page's main thread). Late chunks (a blocked
    kernel) are fine; chunks that overtake an earlier one wait for it in a reorder buffer; a
    ``seq`` already seen is dropped as a duplicate; a chunk still missing after
    ``MAX_REORDER_CHUNKS`` later ones (or at the end of the press) is a gap (see
    :attr:`RealtimeWidget.mic_stats`). ``resend``: the mic lane closed with this chunk maybe in
    flight; the page sends its last chunks again, and those already here are dropped quietly.
``mic_state`` ``{view, state, reason}``
    ``state``: ``"on"`` | ``"off"`` | ``"unavailable"`` | ``"denied"`` | ``"error"``.
``ptt`` ``{view, action}``
    Push-to-talk ``"start"`` (cancel a running response, clear the input buffer) or ``"end"``
    (commit and respond; sent after the last ``mic`` chunk of the press).
``played`` ``{view, item_id, played_ms, reason}``
    Milliseconds of an item's audio rendered to the output (``reason``: ``"interrupted"`` after a
    ``flush``, ``"stopped"`` after the stop button, ``"finished"`` when it played to the end).
    Logged as ``local.playback.played``; for interrupted/stopped ones the session then sends the
    clamped ``conversation.item.truncate`` (its ``auto_truncate``, on by default).
``playback_started`` ``{view, item_id, t}``
    The first sample of an item reached the output (``t``: epoch ms, output latency included).
``text`` ``{view, text}``
    Send a user text message and ask for a response.
``stop`` ``{view}``
    Stop the assistant: cancel the response (the view flushes its playback itself).
``update`` ``{instructions?, voice?, mode?}``
    Session settings, only those the user changed (the API refuses a whole update naming a new
    voice once the assistant has spoken); ``mode`` is ``"push_to_talk"`` | ``"server_vad"`` |
    ``"semantic_vad"``.
``log`` ``{level, message}``
    A front-end problem worth keeping (kept in :attr:`RealtimeWidget.frontend_log`).
``webrtc.*``, ``clock.*``
    With ``transport == "webrtc"`` (a ``Session(transport="webrtc")``): the offer, the
    data-channel events, the tapped tracks and the clock round trips; see :mod:`._webrtc`. No
    ``mic``/``audio`` messages then: the audio travels on the peer connection.

Kernel -> browser
-----------------
``snapshot`` ``{order, items, events, stats}``
    Everything a fresh view shows: conversation items, the recent event log, cost and turns.
``audio`` ``{view, item_id, response_id}`` + ``[pcm]``
    Output audio, PCM16 LE mono at ``output_rate``, in messages of at most
    ``MAX_AUDIO_MESSAGE_MS``, each item at most ``MAX_LEAD_MS`` ahead of real time since its
    first message (:mod:`._pacing`), so that no message on the comm is large; only view ``view``
    (the last one the user used) plays it.
``audio_done`` ``{view, item_id}``
    No more audio for this item (``response.output_audio.done``).
``flush`` ``{view, reason}``
    Stop playback now (``reason``: ``"speech_started"``); the view answers with ``played``.
``events`` ``{events: [{seq, t_ms, source, type, item_id, response_id, data}]}``
    New events for the log, batched; audio is never included (``data`` is the event without it).
``items`` ``{order, items}``
    Conversation items that changed since the last message, and the current order of ids. A cut
    item (``truncated``, or ``truncate_requested_ms`` while the server has not confirmed) also
    carries ``heard_text``, what the listener heard of its text, for the view to mark the rest.
``stats`` ``{cost, tokens, turns}``
    Running cost (USD), token totals and per-turn latency.
``notice`` ``{level, text}``
    Something to tell the user in plain words (an API error, a too-short push-to-talk press).

The API key never reaches the browser: nothing here reads it, and every event sent to the log
goes through :func:`redact`, which blanks anything that looks like a key or a secret.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anywidget
import traitlets

from ..core._redact import redact_obj
from ..core.audio import (
    AudioFormat,
    decode_to_float,
    encode_from_float,
    float32_to_pcm16,
    pcm16_to_float32,
)
from ..core.events import Event
from ..core.protocol import canonical_type
from ._miclane import MicLane
from ._pacing import AudioPacer
from ._ptt import PushToTalk
from ._sources import ENTRY, module_sources, ship, text, worklet_source
from ._timings import LatencyBook, Timings
from ._viewmodel import EMPTY_VIEW, ConversationView, ViewModel, conversation_view
from ._webrtc import WebRTCBridge

if TYPE_CHECKING:
    from ..client.session import Session

__all__ = ["RealtimeWidget", "Timings", "redact", "worklet_source"]

logger = logging.getLogger(__name__)

_HERE: Final = Path(__file__).parent

#: Coalescing period for what is sent to the browser (the view's updates wait longer, see
#: :data:`UI_UPDATE_S`). 50 ms keeps the message rate at most
#: ~4 kinds x 20/s = 80/s, far under the kernel's IOPub limit of 1000 messages/s (past which
#: messages are dropped silently), while adding at most 50 ms to the start of playback.
AUDIO_BATCH_S: Final = 0.05
#: Least time between two updates of what the browser draws (``events``, ``items``, ``stats``):
#: each comm message costs the page's main thread JupyterLab's message handling plus a
#: style/layout/paint pass, and a mic chunk waits behind that work before it can be sent. At
#: 200 ms the transcript still reads as live (5 updates/s) while a reply's bursts of events, and
#: the log's 20 mic appends/s, go in one message each instead of one per 50 ms batch window.
#: Audio, ``flush`` and notices are not held back by it.
UI_UPDATE_S: Final = 0.2
#: Events kept for the log of a view that renders late (a snapshot), and shown by the front end.
EVENT_LOG_SIZE: Final = 2000
#: Output audio queued before any view is ready. Older audio is dropped: hearing a reply that
#: started half a minute ago is worse than reading its transcript.
MAX_QUEUED_AUDIO_S: Final = 30.0
#: Mic chunks that may wait for an earlier one that overtook them (about 2.5 s of 50 ms chunks)
#: before the missing one is declared lost: kernels that run comm handlers on several threads
#: reorder messages by a few at most, and a longer wait would hold back live audio.
MAX_REORDER_CHUNKS: Final = 50
#: How long the end of a push-to-talk press waits for its last chunks on the mic lane: they
#: arrive within milliseconds of the page posting them; a chunk later than this is lost anyway
#: (counted as a gap) rather than holding back the commit.
MIC_TAIL_WAIT_S: Final = 0.5
#: Milliseconds of microphone audio per ``mic`` message from the browser (the ``chunk_ms``
#: trait): 50 ms keeps the added latency low at 20 messages/s. Not the session's ``CHUNK_MS``
#: (100 ms), the size of the appends it sends the server itself when given audio to stream.
MIC_CHUNK_MS: Final = 50
#: Output audio the browser buffers before it starts an item (absorbs delivery jitter).
PREBUFFER_MS: Final = 60

_AUDIO_DELTA: Final = "response.output_audio.delta"
_AUDIO_DONE: Final = "response.output_audio.done"
_MODES: Final = ("push_to_talk", "server_vad", "semantic_vad")
_PLAYED_REASONS: Final = ("interrupted", "stopped", "finished")


# --- redaction -----------------------------------------------------------------------------------


def redact(obj: Any) -> Any:
    """A copy of a JSON-like object with anything that looks like a key or secret blanked.

    Events never carry the key (it only travels in the WebSocket's headers), but the browser is
    the one place it must never reach, so everything bound for it goes through here anyway.
    """
    return redact_obj(obj)


# --- plain-word errors ----------------------------------------------------------------------------

_STATUS_WORDS: Final = {
    "connecting": "Connecting…",
    "connected": "Connected",
    "closed": "Disconnected",
    "error": "Connection error",
}


def _plain_error(data: Mapping[str, Any]) -> str:
    err = data.get("error")
    err = err if isinstance(err, Mapping) else {}
    code = str(err.get("code") or err.get("type") or "")
    message = str(err.get("message") or "the server reported an error")
    hints = {
        "input_audio_buffer_commit_empty": "Nothing was heard: the input audio buffer was empty.",
        "conversation_already_has_active_response": (
            "The assistant is still answering; wait or press stop first."
        ),
        "response_cancel_not_active": "There was no answer in progress to stop.",
        "invalid_api_key": "The API key was refused. Check OPENAI_API_KEY in the kernel.",
        "rate_limit_exceeded": "Rate limited by the API; wait a moment and try again.",
        "cannot_update_voice": (
            "The voice cannot change once the assistant has spoken in this conversation (the API "
            "refuses it, and the rest of that update with it); start a new session for another "
            "voice."
        ),
    }
    text = hints.get(code, message)
    return str(redact(text))


# --- the widget -----------------------------------------------------------------------------------


@dataclass
class MicStats:
    """What arrived from the browser's microphone, per the sequence numbers."""

    chunks: int = 0  #: accepted chunks
    bytes: int = 0  #: accepted PCM16 bytes (before any G.711 encoding)
    duplicates: int = 0  #: chunks dropped because their seq was already seen
    gaps: int = 0  #: missing seq numbers (chunks that never arrived)
    late: int = 0  #: chunks that arrived more than a second after the browser sent them
    resent: int = 0  #: chunks sent again when the mic lane closed that had arrived already


class RealtimeWidget(anywidget.AnyWidget):
    """Mic, speakers, transcript, event log, tools, cost and settings for a realtime Session.

    ``RealtimeWidget(session)`` (or ``session.widget()``) subscribes to every event of the
    session; :meth:`close` unsubscribes. The API key stays in the kernel.
    """

    _esm = _HERE / ENTRY
    _css = _HERE / "widget.css"

    # The front end's modules (loader.js imports them) and the one that renders; the worklet.
    _main = traitlets.Unicode("widget.js").tag(sync=True)
    _modules = traitlets.Dict().tag(sync=True)
    _worklet_js = traitlets.Unicode("").tag(sync=True)

    status = traitlets.Unicode("connecting").tag(sync=True)
    status_text = traitlets.Unicode("").tag(sync=True)
    backend = traitlets.Unicode("").tag(sync=True)
    #: The session's recording file ("" when not recorded): the header says "recording to" it.
    recording = traitlets.Unicode("").tag(sync=True)
    input_rate = traitlets.Int(24_000).tag(sync=True)
    output_rate = traitlets.Int(24_000).tag(sync=True)
    chunk_ms = traitlets.Int(MIC_CHUNK_MS).tag(sync=True)
    prebuffer_ms = traitlets.Int(PREBUFFER_MS).tag(sync=True)
    #: "push_to_talk" | "server_vad" | "semantic_vad", from the session's turn_detection
    mode = traitlets.Unicode("server_vad").tag(sync=True)
    #: instructions, voice, turn_detection (as the session reports them)
    settings = traitlets.Dict().tag(sync=True)
    #: getUserMedia processing switches, applied on the next mic start (and live where possible)
    mic_options = traitlets.Dict(
        {"echoCancellation": True, "noiseSuppression": True, "autoGainControl": True}
    ).tag(sync=True)
    muted = traitlets.Bool(False).tag(sync=True)
    #: as last reported by a view: "off" | "on" | "unavailable" | "denied" | "error"
    mic = traitlets.Unicode("off").tag(sync=True)
    #: "websocket" (the kernel relays PCM over the comm) | "webrtc" (the page's own peer
    #: connection carries the audio; the kernel answers its offer), from the session
    transport = traitlets.Unicode("websocket").tag(sync=True)
    #: where the page's mic lane connects ("" = none: the mic goes over the comm); see _miclane.py
    mic_lane = traitlets.Unicode("").tag(sync=True)

    def __init__(self, session: Session, *, lane: bool = True, **kwargs: Any) -> None:
        """``lane=False`` keeps the mic on the comm (see :mod:`._miclane`; the widget benchmark's
        baseline)."""
        super().__init__(**kwargs)
        self._session = session
        self._in_fmt: AudioFormat = session.input_format
        self._out_fmt: AudioFormat = session.output_format
        ship(
            self,
            _modules=module_sources,
            _worklet_js=worklet_source,
            _esm=text(ENTRY),
            _css=text("widget.css"),
        )
        self.input_rate = int(self._in_fmt.rate)
        self.output_rate = int(self._out_fmt.rate)
        self.backend = str(session.backend)
        rec_path = session.recording_path
        self.recording = "" if rec_path is None else str(rec_path)

        # Everything below is touched by the session thread, the comm (shell) thread and the
        # flusher thread: guarded by one lock, sends happen only in the flusher thread.
        self._lock = threading.Condition()
        self._ready = False
        self._audio_view = ""  # the view that plays audio: the last one the user acted in
        self._snapshot_due = False
        # Output audio (PCM16) and ends of items not yet sent, cut and paced for the view.
        self._pacer = AudioPacer(self.output_rate)
        self._flush_reason: str | None = None
        self._dropped_items: set[str] = set()
        self._audio_items: set[str] = set()
        self._event_log: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_SIZE)
        self._new_events: list[dict[str, Any]] = []
        self._ui_sent_at = 0.0  # monotonic time of the last events/items/stats update sent
        self._notices: list[dict[str, str]] = []
        # The session's automatic reconnection: (attempt, attempts) under way, and whether the
        # connection in use is a reconnection (both from local.connection.* events).
        self._reconnect: tuple[int, int] | None = None
        self._reconnected = False
        self._conv_dirty = True
        self._state_dirty = True
        # The conversation as the browser shows it: computed on the session's I/O thread
        # (_view_model is only touched there), published as _view, sent by the flusher.
        self._view_model = ViewModel()
        self._view: ConversationView | None = None
        self._sent_view: ConversationView | None = None
        self._view_errors: set[str] = set()
        self._cost = 0.0
        self._cost_key: tuple[object, object] | None = None
        # Mic bookkeeping (comm thread).
        self._next_seq: dict[str, int] = {}
        self._mic_pending: dict[str, dict[int, tuple[Mapping[str, Any], bytes]]] = {}
        self._mic_lock = threading.Condition()  # notified when a chunk comes (comm or lane)
        self.mic_stats = MicStats()
        self._ptt = PushToTalk(self.input_rate)
        # Benchmark bookkeeping (under _lock).
        self._latency = LatencyBook()
        self.timings: Timings = self._latency.timings
        #: problems the front end reported (``log`` messages, unknown message types)
        self.frontend_log: list[dict[str, Any]] = []
        self.messages_sent = 0

        transport = getattr(session, "transport", None) or "websocket"
        self.transport = str(getattr(transport, "value", transport))
        self._webrtc: WebRTCBridge | None = None
        if self.transport == "webrtc":
            self._webrtc = WebRTCBridge(session, self._send_now, self._log_frontend)

        self._lane: MicLane | None = None
        if lane and self.transport != "webrtc":
            try:
                self._lane = MicLane(lambda v, c, pcm: self._on_mic(v, c, [pcm])).start()
                self.mic_lane = self._lane.url
            except (OSError, TimeoutError) as exc:
                logger.info("no mic lane (%s): the mic goes over the comm", exc)

        self._closed = threading.Event()
        self.on_msg(self._on_msg)
        self._unsubscribe: Callable[[], None] | None = session.on("*", self._on_event)
        # Subscribed first, so no event falls between this snapshot and the I/O thread's views.
        self._publish_view(self._initial_view)
        self._flusher = threading.Thread(
            target=self._flush_loop, name="realtime_nb-widget-flusher", daemon=True
        )
        self._flusher.start()

    @property
    def pace_audio(self) -> bool:
        """Whether output audio goes to the browser cut and paced (the default). ``False`` sends
        it as it arrives, each batch in one message (the behaviour before pacing, kept as the
        widget benchmark's baseline)."""
        return self._pacer.paced

    @pace_audio.setter
    def pace_audio(self, value: bool) -> None:
        with self._lock:
            self._pacer.paced = bool(value)
            self._lock.notify_all()

    @property
    def max_audio_message_bytes(self) -> int:
        """The largest output audio message sent to the browser so far (for the benchmark)."""
        with self._lock:
            return self._pacer.max_message_bytes

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Unsubscribe from the session, stop the sender thread and close the comm."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._closed.set()
        if self._lane is not None:
            self._lane.close()
            self._lane = None
            self.mic_lane = ""
        with self._lock:
            self._lock.notify_all()
        if self._flusher.is_alive() and threading.current_thread() is not self._flusher:
            self._flusher.join(timeout=2)
        super().close()

    # --- session thread ---------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        """Session I/O thread: note what changed; the flusher thread sends it."""
        # The reducer has applied ev and nothing else changes the state on this thread until
        # this returns: the one moment the live state can be read without the session's lock.
        self._publish_view(
            lambda: self._view_model.update(self._session.conversation, ev, self._priced())
        )
        now = time.time()
        etype = canonical_type(ev.type)
        source = str(getattr(ev.source, "value", ev.source))
        entry = {
            "seq": ev.seq,
            "t_ms": round(ev.t_ns / 1e6, 1),
            "source": source,
            "type": ev.type,
            "item_id": ev.item_id,
            "response_id": ev.response_id,
            "data": redact(ev.data),
        }
        with self._lock:
            self._event_log.append(entry)
            self._new_events.append(entry)
            if source == "server":
                self._on_server_event(etype, ev, now)
            elif source == "local" and etype.startswith("local.connection."):
                self._on_connection_event(etype, ev.data)
            elif source == "client" and etype == "input_audio_buffer.append" and ev.audio:
                self._latency.audio_sent(len(ev.audio), now * 1000)
            self._lock.notify_all()

    def _initial_view(self) -> ConversationView:
        """The view of a consistent copy of the state (the widget's own thread)."""
        return conversation_view(self._session.snapshot(), self._priced())

    def _priced(self) -> float:
        """The session's cost in USD, asked again only when usage or the model changed."""
        st = self._session.conversation
        key = (st.usage, st.session.get("model"))
        if key != self._cost_key:
            try:
                self._cost = float(self._session.cost)
            except (TypeError, ValueError):
                self._cost = 0.0
            self._cost_key = key
        return self._cost

    def _publish_view(self, compute: Callable[[], ConversationView]) -> None:
        """Compute a view and hand it to the flusher; on failure keep the last good one (the
        browser keeps showing it) and say why, once per distinct error."""
        try:
            view = compute()
        except Exception as exc:  # a bug in the view or the reducer: the widget must go on
            why = f"{type(exc).__name__}: {exc}"
            with self._lock:
                first = why not in self._view_errors
                self._view_errors.add(why)
                if first:
                    text = f"The conversation view could not be updated ({why}); it may be stale."
                    self._notices.append({"level": "error", "text": text})
                    self._lock.notify_all()
            if first:
                logger.exception("realtime_nb: the widget's conversation view failed")
            return
        with self._lock:
            if view is self._view:
                return  # the event changed nothing shown
            if self._view is None or view.version >= self._view.version:
                self._view = view
                self._conv_dirty = True
                self._lock.notify_all()

    def _on_server_event(self, etype: str, ev: Event, now: float) -> None:
        if etype.startswith("session."):
            self._state_dirty = True
            if etype == "session.created" and self._reconnect is not None:
                self._reconnect, self._reconnected = None, True
                self._notices.append({"level": "info", "text": "Reconnected: the conversation "
                                      "goes on on a new connection."})  # fmt: skip
        if etype == _AUDIO_DELTA and ev.audio:
            item = ev.item_id or ""
            if item in self._dropped_items:
                return
            self._audio_items.add(item)
            self._latency.first_delta(item, now * 1000)
            self._pacer.push(item, ev.response_id or "", self._to_pcm16(ev.audio))
            if not self._ready:
                self._pacer.trim(int(MAX_QUEUED_AUDIO_S * self.output_rate * 2))
        elif etype == _AUDIO_DONE and ev.item_id:
            if ev.item_id not in self._dropped_items:
                self._pacer.end(ev.item_id)
        elif etype == "input_audio_buffer.speech_started" and self.transport != "webrtc":
            # On a call the server stops its own track (output_audio_buffer.cleared, which the
            # page shows); there is no relayed audio to flush, and a flush would wipe that.
            self._request_flush("speech_started")
        elif etype == "error":
            self._notices.append({"level": "error", "text": _plain_error(ev.data)})

    def _on_connection_event(self, etype: str, data: Mapping[str, Any]) -> None:
        self._state_dirty = True  # the status changes with each of them
        if etype == "local.connection.reconnecting":
            self._reconnect = (int(data.get("attempt") or 1), int(data.get("attempts") or 1))
            self._reconnected = False
        elif etype in ("local.connection.closed", "local.connection.failed"):
            self._reconnect = None  # the next attempt, if any, says so again

    def _request_flush(self, reason: str) -> None:
        """Drop output audio not yet sent, and all later audio of the items heard so far."""
        self._flush_reason = reason
        self._pacer.drop()
        self._dropped_items |= self._audio_items

    def _to_pcm16(self, audio: bytes) -> bytes:
        if self._out_fmt.type == "audio/pcm":
            return audio[: len(audio) - len(audio) % 2]
        return float32_to_pcm16(decode_to_float(audio, self._out_fmt))

    # --- flusher thread ---------------------------------------------------------------------

    def _has_work(self) -> bool:
        if self._state_dirty:
            return True
        if not self._ready:
            return False
        return bool(
            self._snapshot_due
            or self._flush_reason is not None
            or self._pacer.can_send(time.monotonic())
            or self._notices
            or (self._ui_pending() and self._ui_wait(time.monotonic()) <= 0)
        )

    def _ui_pending(self) -> bool:
        return bool(self._new_events or self._conv_dirty)

    def _ui_wait(self, now: float) -> float:
        """Seconds until the next events/items/stats update may go (0 or less: now)."""
        return self._ui_sent_at + UI_UPDATE_S - now

    def _wait_timeout(self) -> float:
        """How long the flusher may sleep with nothing to send: paced audio and a held-back
        update of the view become due with time alone."""
        timeout = AUDIO_BATCH_S if self._pacer.has_pending else 0.5
        if self._ready and self._ui_pending():
            timeout = min(timeout, max(0.0, self._ui_wait(time.monotonic())))
        return timeout

    def _flush_loop(self) -> None:
        last = 0.0
        closed = self._closed.is_set
        while not closed():
            with self._lock:
                while not closed() and not self._has_work():
                    # Paced audio becomes due with time alone: look again each batch window.
                    self._lock.wait(timeout=self._wait_timeout())
                # Batch window: let more deltas accumulate, but never hold back an interruption.
                deadline = last + AUDIO_BATCH_S
                while not closed() and self._flush_reason is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(timeout=remaining)
            if closed():
                return
            try:
                self._send_batch()
            except Exception as exc:  # the comm may be closing; keep the thread and say why
                self._log_frontend("error", f"sending to the browser failed: {exc!r}")
            last = time.monotonic()

    def _send_batch(self) -> None:
        # Take what is pending under the lock; read the session and send outside it, so that a
        # session calling back into _on_event while holding its own lock cannot deadlock us.
        # The conversation is never read here: _view is what the I/O thread last computed.
        with self._lock:
            state_dirty, self._state_dirty = self._state_dirty, False
            if not self._ready:
                snapshot_events = None
                out: list[tuple[dict[str, Any], list[bytes]]] = []
                conv_dirty = False
            else:
                view = self._audio_view
                snapshot_events = list(self._event_log) if self._snapshot_due else None
                self._snapshot_due = False
                out = []
                if snapshot_events is not None:
                    self._new_events = []
                if self._flush_reason is not None:
                    out.append(({"type": "flush", "view": view, "reason": self._flush_reason}, []))
                    self._flush_reason = None
                for a in self._pacer.take(time.monotonic()):
                    if a.kind == "audio":
                        msg = {"type": "audio", "view": view, "item_id": a.item_id,
                               "response_id": a.response_id}  # fmt: skip
                        out.append((msg, [a.pcm]))
                    else:
                        out.append(({"type": "audio_done", "view": view, "item_id": a.item_id}, []))
                now = time.monotonic()
                ui_due = snapshot_events is not None or self._ui_wait(now) <= 0
                if ui_due and self._ui_pending():
                    self._ui_sent_at = now
                if ui_due and self._new_events:
                    out.append(({"type": "events", "events": self._new_events}, []))
                    self._new_events = []
                for notice in self._notices:
                    out.append(({"type": "notice", **notice}, []))
                self._notices = []
                conv_dirty = ui_due and self._conv_dirty
                if ui_due:
                    self._conv_dirty = False
            conv = self._view
        if state_dirty:
            self._sync_state()
        if snapshot_events is not None:
            # No view at all only if the very first one failed: a fresh view has nothing to lose.
            conv = conv if conv is not None else EMPTY_VIEW
            out.insert(0, (conv.snapshot_message(snapshot_events), []))
            self._sent_view = conv
        elif conv is not None and conv_dirty and conv is not self._sent_view:
            for message in (
                conv.items_message(self._sent_view),
                conv.stats_message(self._sent_view),
            ):
                if message is not None:
                    out.append((message, []))
            self._sent_view = conv
        for msg, buffers in out:
            self.send(msg, buffers=buffers or None)
            self.messages_sent += 1

    def _sync_state(self) -> None:
        """Traits that mirror the session (set here, so only one thread ever writes them)."""
        s = self._session
        status = str(getattr(s.status, "value", s.status))
        if status != self.status:
            self.status = status
        text = _STATUS_WORDS.get(status, status)
        with self._lock:
            reconnect, reconnected = self._reconnect, self._reconnected
        if status == "connecting" and reconnect is not None:
            text = f"Reconnecting (attempt {reconnect[0]} of {reconnect[1]})…"
        elif status == "connected" and reconnected:
            text = "Reconnected"
        if text != self.status_text:
            self.status_text = text
        settings = redact(dict(s.settings or {}))
        if settings != self.settings:
            self.settings = settings
        mode = _mode_of(settings.get("turn_detection"))
        if mode != self.mode:
            self.mode = mode

    # --- comm thread (messages from the browser) --------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        if not isinstance(content, Mapping):
            self._log_frontend("warning", f"message that is not an object: {content!r:.100}")
            return
        mtype = content.get("type")
        view = str(content.get("view") or "")
        s = self._session
        if mtype == "ready":
            with self._lock:
                self._ready = True
                if view != self._audio_view:
                    self._pacer.restart()
                self._audio_view = view
                self._snapshot_due = True
                self._state_dirty = True
                self._lock.notify_all()
            # Session.wait_until_heard() waits for this player's playback from now on.
            s.log_local("local.player.ready", {"view": view})
        elif mtype == "mic":
            self._on_mic(view, content, buffers or [])
        elif mtype == "mic_state":
            state = str(content.get("state", "off"))
            if state == "on":
                self._claim_audio(view)
                s.log_local("local.mic.started", {"view": view})
            elif self.mic == "on" and state != "on":
                self._flush_mic()
                s.log_local("local.mic.stopped", {"view": view, "state": state})
            self.mic = state
        elif mtype == "ptt":
            self._on_ptt(view, str(content.get("action")), content.get("seq"))
        elif mtype == "played":
            self._on_played(content)
        elif mtype == "playback_started":
            item = str(content.get("item_id") or "")
            s.log_local("local.playback.started", {"item_id": item})
            t = content.get("t")
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                with self._lock:
                    self._latency.playback_started(item, float(t))
        elif mtype == "text":
            text = str(content.get("text") or "").strip()
            if text:
                self._claim_audio(view)
                self._cancel_if_active()
                s.send_text(text, respond=True)
        elif mtype == "stop":
            self._claim_audio(view)
            self._cancel_if_active()
        elif mtype == "update":
            self._on_update(content)
        elif mtype == "log":
            self._log_frontend(str(content.get("level", "info")), str(content.get("message")))
        elif mtype == "lane":
            self._on_lane(content)
        elif self._webrtc is not None and self._webrtc.handle(content, buffers or []):
            pass
        else:
            self._log_frontend("warning", f"unknown message type from the front end: {mtype!r}")

    def _send_now(self, msg: dict[str, Any]) -> None:
        """Send at once from any thread (the clock's pong must not wait for a batch window)."""
        if self._closed.is_set():
            return
        self.send(msg)
        self.messages_sent += 1

    def _on_lane(self, content: Mapping[str, Any]) -> None:
        """The page's mic lane: its origin (to accept its connections) or its state."""
        origin = content.get("origin")
        if isinstance(origin, str) and self._lane is not None:
            self._lane.allow_origin(origin)
        state = content.get("state")
        if state == "open":
            self._session.log_local("local.mic.lane", {"state": "open"})
        elif state == "down":
            reason = str(content.get("reason") or "")
            self._session.log_local("local.mic.lane", {"state": "down", "reason": reason})
            self._log_frontend("info", f"mic lane unavailable ({reason}): the mic uses the comm")

    def _log_frontend(self, level: str, message: str) -> None:
        self.frontend_log.append({"level": level, "message": message, "t": time.time()})

    def _claim_audio(self, view: str) -> None:
        if view:
            with self._lock:
                if view != self._audio_view:
                    self._pacer.restart()
                self._audio_view = view

    def _cancel_if_active(self) -> None:
        """Cancel the answer in progress (the session ignores this when there is none)."""
        with self._lock:
            # Audio still on its way belongs to the answer being cancelled.
            self._pacer.drop()
            self._dropped_items |= self._audio_items
        self._session.cancel()

    def _on_mic(self, view: str, content: Mapping[str, Any], buffers: Sequence[Any]) -> None:
        """Accept mic chunks in sequence order, whatever order they arrive in.

        Kernels may run comm handlers on more than one thread (ipykernel 7's subshells), so a
        chunk can overtake the one before it. Chunks ahead of the next expected one wait in a
        reorder buffer; a chunk already seen is a duplicate; a gap is declared only when
        :data:`MAX_REORDER_CHUNKS` later chunks are waiting, or when the press/mic ends.
        """
        seq = content.get("seq")
        if not isinstance(seq, int) or not buffers:
            self._log_frontend("warning", "mic message without seq or audio")
            return
        with self._mic_lock:
            expected = self._next_seq.get(view, 0)
            pending = self._mic_pending.setdefault(view, {})
            if seq < expected or seq in pending:
                if content.get("resend") is True:
                    self.mic_stats.resent += 1  # the lane delivered it after all
                else:
                    self.mic_stats.duplicates += 1
                return
            pending[seq] = (content, bytes(buffers[0]))
            self._mic_lock.notify_all()
            if seq != expected and len(pending) <= MAX_REORDER_CHUNKS:
                return  # an earlier chunk is still on its way
            self._drain_mic(view, force=len(pending) > MAX_REORDER_CHUNKS)

    def _drain_mic(self, view: str, force: bool) -> None:
        """Pass on every waiting chunk that is next in sequence; with ``force``, skip over
        missing ones (counted as gaps). Call with ``_mic_lock`` held."""
        pending = self._mic_pending.get(view, {})
        expected = self._next_seq.get(view, 0)
        while pending:
            if expected not in pending:
                if not force:
                    break
                nxt = min(pending)
                self.mic_stats.gaps += nxt - expected
                self._log_frontend("warning", f"mic chunks {expected}..{nxt - 1} never arrived")
                expected = nxt
            content, pcm = pending.pop(expected)
            expected += 1
            self._accept_mic(content, pcm)
        self._next_seq[view] = expected

    def _flush_mic(self) -> None:
        """The mic stopped or a press ended: nothing more is coming for the waiting chunks."""
        with self._mic_lock:
            for view in list(self._mic_pending):
                self._drain_mic(view, force=True)

    def _accept_mic(self, content: Mapping[str, Any], pcm: bytes) -> None:
        stats = self.mic_stats
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        stats.chunks += 1
        stats.bytes += len(pcm)
        self._ptt.add(len(pcm))
        sent_at = _num(content.get("t"))
        posted_at = _num(content.get("tw"))
        if self._in_fmt.type == "audio/pcm":
            payload = pcm
        else:
            payload = encode_from_float(pcm16_to_float32(pcm), self._in_fmt)
        with self._lock:
            if (
                sent_at is not None
                and self._latency.mic_received(sent_at, time.time() * 1000, posted_at) > 1000
            ):
                stats.late += 1
            self._latency.mic_forwarded(len(payload), sent_at)
        self._session.append_audio(payload)

    def _await_mic(self, view: str, upto: object) -> None:
        """Wait (at most :data:`MIC_TAIL_WAIT_S`) until every chunk numbered below ``upto`` has
        come: on the mic lane they travel apart from the comm message that ended the press."""
        if not isinstance(upto, int) or isinstance(upto, bool):
            return
        if upto - self._next_seq.get(view, 0) > MAX_REORDER_CHUNKS:
            return  # not a number this page could have reached: nothing to wait for
        deadline = time.monotonic() + MIC_TAIL_WAIT_S
        with self._mic_lock:
            while True:
                expected = self._next_seq.get(view, 0)
                pending = self._mic_pending.get(view, {})
                if all(s in pending for s in range(expected, upto)):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # _flush_mic counts what never came as a gap
                self._mic_lock.wait(left)

    def _on_ptt(self, view: str, action: str, upto: object = None) -> None:
        s = self._session
        if action == "start":
            self._claim_audio(view)
            self._cancel_if_active()
            s.clear()
            self._ptt.start()
        elif action == "end":
            self._await_mic(view, upto)
            self._flush_mic()  # every chunk of the press is in before the commit
            decision = self._ptt.end()
            if decision.commit:
                s.commit()
                s.respond()
                return
            if decision.notice is not None:
                with self._lock:
                    self._notices.append({"level": "info", "text": decision.notice})
                    self._lock.notify_all()
            s.clear()
        else:
            self._log_frontend("warning", f"unknown push-to-talk action {action!r}")

    def _on_played(self, content: Mapping[str, Any]) -> None:
        item = str(content.get("item_id") or "")
        reason = str(content.get("reason") or "")
        played = _num(content.get("played_ms"))
        if not item or played is None or reason not in _PLAYED_REASONS:
            self._log_frontend("warning", f"bad played message: {dict(content)!r:.200}")
            return
        with self._lock:
            self._pacer.finished(item)
            self._lock.notify_all()
        # The session acts on this event itself: for an interrupted or stopped item it sends
        # conversation.item.truncate, clamped to the audio received, unless everything received
        # was heard (or the user chose Session(auto_truncate=False)). Calling truncate() here
        # as well would send it twice.
        self._session.log_local(
            "local.playback.played", {"item_id": item, "played_ms": played, "reason": reason}
        )

    def _on_update(self, content: Mapping[str, Any]) -> None:
        fields: dict[str, Any] = {}
        if isinstance(content.get("instructions"), str):
            fields["instructions"] = content["instructions"]
        if isinstance(content.get("voice"), str) and content["voice"]:
            fields["voice"] = content["voice"]
        mode = content.get("mode")
        if mode is not None:
            if mode not in _MODES:
                self._log_frontend("warning", f"unknown mode {mode!r}; accepted: {_MODES}")
            else:
                fields["turn_detection"] = None if mode == "push_to_talk" else {"type": mode}
        if fields:
            self._session.update(**fields)
            with self._lock:
                self._state_dirty = True
                self._lock.notify_all()


def _mode_of(turn_detection: Any) -> str:
    if not turn_detection:
        return "push_to_talk"
    kind = turn_detection.get("type") if isinstance(turn_detection, Mapping) else None
    return kind if kind in _MODES else "server_vad"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return round(f, 1) if math.isfinite(f) else None
