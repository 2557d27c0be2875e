"""The Realtime client's protocol logic, sans I/O: :class:`ClientProtocol`.

The client-side twin of the local server's :class:`~realtime_nb.local._state.RealtimeState`. It is
told what happened, in the order it was recorded (:meth:`~ClientProtocol.receive`: a server event
as received, a client event as sent, a local event as recorded), what the user asks for
(:meth:`~ClientProtocol.send`, :meth:`~ClientProtocol.request_response`, ...; each request is
validated first and refused with :class:`~realtime_nb.core.protocol.ProtocolError` or
``ValueError`` before anything is queued), how the connection fares (``connection_made`` /
``connection_failed`` / ``connection_lost`` / ``connection_closed``) and how tool calls ended
(:meth:`~ClientProtocol.tool_done`, :meth:`~ClientProtocol.tool_failed`). It decides, and hands
out through three queues that the caller drains:

- :meth:`~ClientProtocol.events_to_send`: client events for the socket, in order;
- :meth:`~ClientProtocol.calls_to_run`: :class:`ToolRun` s (a tool, its parsed arguments);
- :meth:`~ClientProtocol.events_to_record`: local events (``local.tool.*``,
  ``local.connection.*``, ``local.protocol.invalid_event``) for the recording; recorded, they
  come back through ``receive``.

A server event whose fields do not have the types its type promises (``core._shapes``) is
ignored by the reducer, and so by everything here; each event type and problem is reported once,
as ``local.protocol.invalid_event``, which the reducer adds to the errors.

Everything the session reports (items, usage, errors, the connection's state) is the one
:class:`~realtime_nb.core.reducer.Reducer`'s fold of those recorded events, so a recording read
back says the same. No awaits, threads, sockets or clocks here: the I/O shell is
:class:`~realtime_nb.client.session.Session`; tests drive this class with plain lists of events.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..core._redact import redact_message
from ..core._shapes import ShapeProblem
from ..core.audio import b64encode_audio
from ..core.events import Event
from ..core.protocol import (
    Source,
    canonical_type,
    client,
    deep_merge,
    new_event_id,
    validate_client_event,
)
from ..core.reducer import ConversationState, Reducer
from ..core.tools import (
    MAX_TOOL_OUTPUT_CHARS,
    Tool,
    ToolCall,
    cap_output,
    encode_error,
    encode_result,
)
from ._calls import EventDedup, OutputPlayback, Transport, is_silent
from ._policies import PlaybackModel, ResponseGate, ToolCallTracker, seed_items
from ._reconnect import ROLLOVER_MAX_SHARE, retry_after_close

__all__ = ["ClientProtocol", "ToolRun"]

JSON = dict[str, Any]
Outgoing = tuple[JSON, bytes | None]  # a client event and, for an audio append, its raw audio

log = logging.getLogger("realtime_nb.client")

#: Server events the response gate and the tool-call tracker act on (all others only reduce).
_GATE_TYPES: Final = frozenset({"response.created", "response.done", "error"})
_CALL_TYPES: Final = frozenset(
    {"response.function_call_arguments.done", "response.output_item.done", "response.done"}
)

#: ``down``: no connection. ``created``: connected, waiting for ``session.created``. ``setup``:
#: the configuration and seeded items are sent, waiting for the server to confirm them.
#: ``ready``: requests flow.
Phase = Literal["down", "created", "setup", "ready"]


@dataclass(frozen=True)
class ToolRun:
    """Run ``tool.func(**kwargs)`` for ``call``; answer with :meth:`ClientProtocol.tool_done` or
    :meth:`ClientProtocol.tool_failed`."""

    call: ToolCall
    tool: Tool
    kwargs: dict[str, Any]


class ClientProtocol:
    """One Realtime client session's protocol state. Not thread-safe: drive it from one thread at
    a time (the session holds its lock around every call).

    Args:
        config: the GA ``session`` object to send on each connection (``{"type": "realtime"}``
            alone sends nothing).
        tools: the Python tools the session declares, by name.
        auto_truncate: on an interruption, truncate the assistant's audio to what was heard.
        secrets: strings never to put in a tool's error output (the API key).
        url, backend: where the connection goes (for ``local.connection.*`` and messages).
        session_cap_s: the provider's session cap in seconds (``None``: only what the server's
            ``session.expires_at`` says). rollover_margin_s: how long before the cap to roll over
            to a new connection at a quiet moment (``None``: never; see :meth:`rollover_due`).
        transport: ``websocket``, or ``webrtc``: the connection is a call's sideband (no
            ``session.created`` comes: the configuration goes out as soon as it is open; a new
            connection re-attaches to the same call, unseeded), server events may also come
            from the page (:meth:`first_sighting` keeps one copy), and the page's tapped audio
            is recorded as :meth:`track_event` s.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        tools: Mapping[str, Tool] | None = None,
        *,
        auto_truncate: bool = True,
        secrets: Sequence[str] = (),
        url: str | None = None,
        backend: str = "the server",
        session_cap_s: float | None = None,
        rollover_margin_s: float | None = None,
        transport: Transport | str = Transport.WEBSOCKET,
    ) -> None:
        self.transport = Transport.parse(transport)
        self.dedup = EventDedup()
        self.output = OutputPlayback()
        self.config: JSON = dict(config or {"type": "realtime"})
        self.tools: dict[str, Tool] = dict(tools or {})
        self.response_tools: dict[str, Tool] = {}
        self.auto_truncate = auto_truncate
        self.url = url
        self.backend = backend
        self._secrets = tuple(s for s in secrets if s)
        self.reducer = Reducer()
        self.gate = ResponseGate()
        self.calls = ToolCallTracker()
        self.playback = PlaybackModel()
        self.phase: Phase = "down"
        #: Why the server refused the configuration or a seeded item (the setup failed).
        self.setup_error: str | None = None
        self._seed: list[JSON] = []
        self._acks: dict[str, tuple[str, Any]] = {}  # setup event id -> (answer type, item id)
        self._outbox: list[Outgoing] = []
        self._held: list[Outgoing] = []  # requests made before the setup was confirmed
        self._undelivered: list[tuple[str, str]] = []  # tool outputs waiting for a connection
        self._runs: list[ToolRun] = []
        self._records: list[JSON] = []
        self._reported: set[tuple[str, str]] = set()  # (event type, problem) said once already
        # The connection's lifetime, on the shell's clock (see connection_made).
        self.session_cap_s = session_cap_s
        self.rollover_margin_s = rollover_margin_s
        #: The server said ``session_expired`` on this connection (its close is then expected).
        self.expired = False
        self._connected_at: float | None = None
        self._expires_at: float | None = None  # the server's session.expires_at (epoch s)
        self._speech = False  # the server's VAD heard speech start, and not yet stop
        self._input_pending = False  # audio appended since the last commit or clear
        self._playing: set[str] = set()  # items a player started and has not stopped
        # Once a player said it is ready, the assistant items whose audio it has to play and has
        # not finished playing, each with when its first audio arrived (event t_ns): what
        # heard_pending() waits for.
        self._player_ready = False
        self._unheard: dict[str, int] = {}
        self._heard: set[str] = set()  # items whose playback ended (later deltas do not count)

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> ConversationState:
        """The reducer's state: everything recorded so far, folded."""
        return self.reducer.state

    @property
    def ready(self) -> bool:
        """Connected and set up: requests go out as they are made."""
        return self.phase == "ready"

    @property
    def has_work(self) -> bool:
        """:meth:`events_to_record` or :meth:`calls_to_run` has something."""
        return bool(self._records or self._runs)

    @property
    def wants_to_send(self) -> bool:
        """:meth:`events_to_send` has something."""
        return bool(self._outbox)

    @property
    def idle(self) -> bool:
        """No response active, in flight or queued, no call running, nothing left to send."""
        gate = self.gate
        return not (
            gate.busy
            or gate.queue
            or self.calls.running
            or self._outbox
            or self._held
            or self._runs
        )

    # --- outputs (each call empties its queue) -------------------------------------------------

    def events_to_send(self) -> list[Outgoing]:
        """Client events to send, in order, each with its raw audio (appends) or ``None``."""
        out, self._outbox = self._outbox, []
        return out

    def calls_to_run(self) -> list[ToolRun]:
        """Tool calls to run now."""
        out, self._runs = self._runs, []
        return out

    def events_to_record(self) -> list[JSON]:
        """Local events to record; feed each back to :meth:`receive` once recorded."""
        out, self._records = self._records, []
        return out

    # --- requests (validated, then queued; a refused request changes nothing) -----------------

    def send(self, event: Mapping[str, Any], audio: bytes | None = None) -> JSON:
        """Queue any client event (``response.create`` goes through :meth:`request_response`).
        An ``event_id`` is added when missing. Returns the event as queued.

        Raises:
            ProtocolError: not a valid client event (the message names the type and the field).
        """
        ev = dict(event)
        if "event_id" not in ev:
            ev["event_id"] = new_event_id()
        validate_client_event(ev)
        if ev["type"] == "response.create":
            return self.request_response(ev)
        self._queue(ev, audio)
        return ev

    def send_audio(self, pcm: bytes) -> JSON:
        """Queue ``input_audio_buffer.append`` of ``pcm`` (already in the input format)."""
        ev = client.input_audio_buffer_append(base64.b64encode(pcm).decode("ascii"))
        self._queue(ev, pcm)
        return ev

    def request_response(
        self, event: Mapping[str, Any], tools: Mapping[str, Tool] | None = None
    ) -> JSON:
        """Ask for a response: sent now, or queued while another response is active. ``tools``
        are Python tools this response declares (run like the session's).

        Raises:
            ProtocolError: not a valid ``response.create``.
        """
        ev = dict(event)
        if ev.get("type") != "response.create":
            raise ValueError(f"request_response takes a response.create, got {ev.get('type')!r}")
        validate_client_event(ev)
        if tools:
            self.response_tools.update(tools)
        for req in self.gate.request(ev):
            self._queue(req)
        return ev

    def cancel_response(self) -> bool:
        """Drop queued response requests and cancel the active (or requested) response, if any.
        Returns whether a ``response.cancel`` was queued.

        On a WebRTC call the server also stops the audio it is still streaming on the track
        (``output_audio_buffer.clear``, after the cancel, as the API asks): a reply is usually
        generated well before it has played, so there is often nothing left to cancel and
        still seconds to hear."""
        self.gate.drop_queued()
        cancelled = False
        if self.gate.active is not None or self.gate.in_flight is not None:
            rid = self.gate.active if self.gate.active != "?" else None
            self._queue(client.response_cancel(rid))
            cancelled = True
        if self.transport is Transport.WEBRTC and self.output.streaming():
            self._queue(client.output_audio_buffer_clear())
        return cancelled

    def truncate(self, item_id: str, audio_end_ms: float, content_index: int = 0) -> int:
        """Queue a truncation of ``item_id`` at ``audio_end_ms``, floored and clamped to the audio
        received. Returns the value queued.

        Raises:
            ValueError: no audio was received for ``item_id``, or a non-finite value.
        """
        ms = self.playback.clamp(self.state, item_id, audio_end_ms)
        ev = client.conversation_item_truncate(item_id, ms, content_index)
        validate_client_event(ev)
        self._queue(ev)
        return ms

    def update_session(self, cfg: Mapping[str, Any], tools: Mapping[str, Tool] | None) -> JSON:
        """Queue ``session.update`` with ``cfg`` and remember it for later connections; ``tools``
        replace the session's Python tools when ``cfg`` has ``tools``."""
        ev = client.session_update(dict(cfg))
        validate_client_event(ev)
        self.config = deep_merge(self.config, cfg)
        if "tools" in cfg:
            self.config["tools"] = cfg["tools"]
            self.tools = dict(tools or {})
        self._queue(ev)
        return ev

    def add_tools(self, definitions: Sequence[JSON], tools: Mapping[str, Tool]) -> JSON:
        """Declare more tools (replacing any of the same name); queues ``session.update``."""
        names = {d.get("name") for d in definitions}
        kept = [d for d in self.config.get("tools", []) if d.get("name") not in names]
        self.tools.update(tools)
        return self.update_session({"tools": kept + list(definitions)}, self.tools)

    def remove_tool(self, name: str) -> JSON:
        """Stop offering ``name``; queues ``session.update``.

        Raises:
            KeyError: no tool of that name (the declared ones are named).
        """
        defs = self.config.get("tools", [])
        if not any(d.get("name") == name for d in defs):
            known = ", ".join(str(d.get("name")) for d in defs) or "none"
            raise KeyError(f"no tool named {name!r} (tools: {known})")
        tools = {k: v for k, v in self.tools.items() if k != name}
        return self.update_session({"tools": [d for d in defs if d.get("name") != name]}, tools)

    # --- the connection ------------------------------------------------------------------------

    def connection_made(self, seed: Sequence[JSON] = (), *, now: float | None = None) -> None:
        """A connection is open. On ``session.created`` the configuration and ``seed`` items go
        first; requests made meanwhile follow once the server has confirmed them. ``now``: the
        shell's clock, in epoch seconds (the clock ``session.expires_at`` is on); without it no
        rollover is planned for this connection."""
        self.phase = "created"
        self.setup_error = None
        self._seed = list(seed)
        self._connected_at = now
        self._expires_at = None
        self.expired = self._speech = self._input_pending = False
        self._record("local.connection.opened", url=self.url, backend=self.backend)
        if self.transport is Transport.WEBRTC:
            # A sideband gets no session.created: the call's session is live already. The
            # configuration (already posted with the offer) is sent again, and its
            # session.updated is the handshake that the socket is attached.
            self._begin_setup(always=True)

    def connection_failed(self, message: str) -> None:
        """No connection could be made (refused, unreachable, no ``session.created`` in time)."""
        self._record("local.connection.failed", url=self.url, backend=self.backend,
                     message=message)  # fmt: skip
        self._reset()

    def connection_lost(self, code: int, reason: str, *, initiated_by: str, clean: bool) -> str:
        """The server or the network ended the connection. Returns what happened, in words.

        The close reason is the server's text: it may echo a credential, so it is redacted before
        it is recorded, logged or shown."""
        reason = redact_message(reason, self._secrets)
        hint = " (the session reached its time limit)" if "expire" in reason else ""
        message = f"connection to {self.backend} lost: code {code}{hint}"
        if reason:
            message += f", reason {reason!r}"
        self._record("local.connection.closed", code=code, reason=reason,
                     initiated_by=initiated_by, clean=clean, message=message)  # fmt: skip
        self._reset()
        return message

    def connection_closed(self, code: int, reason: str) -> None:
        """The client closed the connection (``close()``, ``reconnect()``)."""
        reason = redact_message(reason, self._secrets)
        self._record("local.connection.closed", code=code, reason=reason,
                     initiated_by="client", clean=True)  # fmt: skip
        self._reset()

    def reconnecting(self) -> list[JSON]:
        """The items to seed a new connection with (the conversation so far, as text)."""
        if self.transport is Transport.WEBRTC:  # the call keeps its conversation: re-attach
            self._record("local.note", text="re-attaching the sideband to the call")
            return []
        seed = seed_items(self.state.items)
        self._record("local.note", text=f"reconnecting with {len(seed)} items")
        return seed

    def session_closed(self) -> None:
        """The user closed the session: nothing more will happen."""
        self._reset()
        self._record("local.session.closed")

    # --- outliving the connection (reconnection and rollover) ----------------------------------

    def worth_reconnecting(self, code: int) -> bool:
        """Whether a connection the server or the network ended with close ``code`` is worth a
        new one: a drop, a server going away, or the session's expiry (see
        :func:`~._reconnect.retry_after_close`)."""
        return retry_after_close(code, expired=self.expired)

    def reconnect_scheduled(self, attempt: int, attempts: int, delay_s: float, cause: str) -> None:
        """The shell will try connection ``attempt`` of ``attempts`` in ``delay_s`` seconds
        (``cause``: ``session_expired``, ``rollover``, ``dropped``, ``connect_failed``)."""
        self._record("local.connection.reconnecting", attempt=attempt, attempts=attempts,
                     delay_s=round(delay_s, 3), cause=cause, url=self.url,
                     backend=self.backend)  # fmt: skip

    def reconnect_gave_up(self, attempts: int, last_error: str) -> str:
        """No attempt succeeded: recorded as a connection failure. Returns the message."""
        message = (
            f"gave up reconnecting to {self.backend} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {last_error}"
        )
        self.connection_failed(message)
        return message

    def cap_deadline(self) -> float | None:
        """When the provider ends this connection's session (epoch seconds), if known: the
        earlier of the connection time plus ``session_cap_s`` and the server's ``expires_at``."""
        if self._connected_at is None:
            return None
        times = [t for t in (self._expires_at,) if t is not None]
        if self.session_cap_s is not None:
            times.append(self._connected_at + self.session_cap_s)
        return min(times, default=None)

    def next_deadline(self) -> float | None:
        """When a rollover may start (epoch seconds), if one is planned: ``rollover_margin_s``
        before :meth:`cap_deadline`, the margin at most :data:`~._reconnect.ROLLOVER_MAX_SHARE`
        of the connection's lifetime. The shell asks :meth:`rollover_due` then, and again after
        each event until it is due."""
        cap = self.cap_deadline()
        if cap is None or self.rollover_margin_s is None or self.phase != "ready":
            return None
        assert self._connected_at is not None
        margin = min(self.rollover_margin_s, (cap - self._connected_at) * ROLLOVER_MAX_SHARE)
        return cap - max(margin, 0.0)

    @property
    def quiet(self) -> bool:
        """Between turns: :attr:`idle` (no response, no tool call, nothing to send), no user
        speech in progress (the VAD's, or push-to-talk audio not yet committed) and no
        assistant audio a player is still playing."""
        return self.idle and not (self._speech or self._ptt_pending() or self._playing)

    def heard_pending(self, now_ns: int, start_grace_ns: int) -> list[str]:
        """Assistant items a ready player still has to finish playing (oldest first): their
        audio arrived and no ``local.playback.played`` said playback ended. An item whose
        playback has not started ``start_grace_ns`` after its first audio (``now_ns`` on the
        events' clock) is taken as one the player will not play (a closed page) and no longer
        waited for. Empty without a player: nothing will be heard, so nothing to wait for.

        On a WebRTC call: the responses whose audio the server is streaming on the track (an
        ``output_audio_buffer.started`` not yet ``stopped``/``cleared``), by their response id."""
        if self.transport is Transport.WEBRTC:
            return self.output.streaming()
        return [
            item
            for item, first_ns in self._unheard.items()
            if item in self._playing or now_ns - first_ns < start_grace_ns
        ]

    def rollover_due(self, now: float) -> bool:
        """Whether to roll over to a new connection now (``now``: epoch seconds): the rollover
        window (:meth:`next_deadline`) is open and the conversation is :attr:`quiet`."""
        start = self.next_deadline()
        return start is not None and now >= start and self.quiet

    def _ptt_pending(self) -> bool:
        """Audio appended and not committed, with no server turn detection to end the turn."""
        if not self._input_pending:
            return False
        sess = self.state.session
        audio_in = (sess.get("audio") or {}).get("input") or {}
        td = audio_in["turn_detection"] if "turn_detection" in audio_in else (
            sess.get("turn_detection", "server_vad"))  # fmt: skip
        return td is None

    def _watch_lifecycle(self, ev: Event) -> None:
        """What the connection's lifetime and the rollover's quiet moment depend on."""
        t = canonical_type(ev.type)
        if ev.source is Source.SERVER:
            if t in ("session.created", "session.updated"):
                expires = (ev.data.get("session") or {}).get("expires_at")
                if isinstance(expires, (int, float)) and not isinstance(expires, bool) and (
                        expires > 0):  # fmt: skip
                    self._expires_at = float(expires)
            elif t == "error" and (ev.data.get("error") or {}).get("code") == "session_expired":
                self.expired = True
            elif t == "input_audio_buffer.speech_started":
                self._speech = True
            elif t in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                       "input_audio_buffer.cleared"):  # fmt: skip
                self._speech = self._input_pending = False
        elif ev.source is Source.CLIENT:
            if t == "input_audio_buffer.append":
                self._input_pending = True
            elif t in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
                self._input_pending = False
        elif t == "local.playback.started" and isinstance(ev.data.get("item_id"), str):
            self._playing.add(ev.data["item_id"])
        elif t == "local.playback.played":
            self._playing.discard(ev.data.get("item_id"))
            played = ev.data.get("item_id")
            if isinstance(played, str):
                self._unheard.pop(played, None)
                self._heard.add(played)
        elif t == "local.player.ready":
            self._player_ready = True
        if (
            self._player_ready
            and ev.source is Source.SERVER
            and t == "response.output_audio.delta"
            and ev.item_id
            and ev.item_id not in self._unheard
            and ev.item_id not in self._heard
        ):
            self._unheard[ev.item_id] = ev.t_ns

    # --- a WebRTC call --------------------------------------------------------------------------

    def first_sighting(self, event: Mapping[str, Any], *, from_peer: bool) -> bool:
        """Whether a server event of the call is seen for the first time (it is remembered):
        the sideband's copy and the page's data-channel copy share an ``event_id``, and the
        first to arrive is the one recorded. A page event without an ``event_id`` is not
        recorded (the sideband has its copy); a sideband event without one always is."""
        if self.transport is not Transport.WEBRTC:
            return True
        return self.dedup.first_sighting(event) if from_peer else self.dedup.note(event)

    def track_event(self, track: str, pcm16: bytes, rate: int, t_ns: int) -> JSON:
        """The ``local.track.input``/``local.track.output`` event of a chunk of the page's
        tapped audio (PCM16) whose first sample is at ``t_ns`` (session time): an output chunk
        names the response playing then, and its assistant item when known (see
        :class:`~._calls.OutputPlayback`); silence just before or after a reply's window is the
        quiet between replies, no reply's."""
        audio_b64 = b64encode_audio(pcm16)
        if track == "input":
            return {"type": "local.track.input", "audio": audio_b64, "rate": rate, "t_ns": t_ns}
        rid, margin = self.output.place(t_ns)
        if margin and is_silent(pcm16):
            rid = None
        item_id = None
        if rid is not None:
            resp = self.state.responses.get(rid)
            for iid in resp.output_item_ids if resp is not None else ():
                it = self.state.items_by_id.get(iid)
                if it is not None and it.type == "message":
                    item_id = iid
                    break
        return {"type": "local.track.output", "audio": audio_b64, "rate": rate, "t_ns": t_ns,
                "response_id": rid, "item_id": item_id}  # fmt: skip

    # --- tools ---------------------------------------------------------------------------------

    def tool_done(self, call: ToolCall, result: Any, duration_ms: float) -> None:
        """``call``'s tool returned ``result``: send it (and the follow-up response when due)."""
        self._finish(call, encode_result(result), None, duration_ms)

    def tool_failed(self, call: ToolCall, exc: BaseException, duration_ms: float) -> None:
        """``call``'s tool raised ``exc`` (or timed out): tell the model, record the error."""
        output = encode_error(exc, secrets=self._secrets)
        error = str(json.loads(output)["error"])
        log.warning("realtime_nb: tool %s failed: %s", call.name, error)
        self._finish(call, output, error, duration_ms)

    # --- events --------------------------------------------------------------------------------

    def receive(self, ev: Event) -> None:
        """Apply one recorded event (server, client as sent, or local) and act on it."""
        problem = self.reducer.apply(ev)
        if problem is not None:  # the reducer ignored it; so does everything else
            self._invalid_event(ev, problem)
            return
        self._watch_lifecycle(ev)
        t = ev.type
        if ev.source is Source.SERVER and self.transport is Transport.WEBRTC:
            self.output.on_server_event(t, ev.data, ev.t_ns)
        if ev.source is Source.SERVER:
            if t in _GATE_TYPES:
                for req in self.gate.on_server_event(ev.data):
                    self._queue(req)
            if t in _CALL_TYPES:
                starts, due = self.calls.on_server_event(ev.data)
                for start in starts:
                    self._start(start.call)
                if due:
                    self.request_response(client.response_create())
            if t == "error":
                err = ev.data.get("error") or {}
                log.warning("realtime_nb: server error %s: %s", err.get("code") or err.get("type"),
                            redact_message(str(err.get("message")), self._secrets))  # fmt: skip
            if self.phase in ("created", "setup"):
                self._setup_progress(ev)
        if t == "input_audio_buffer.speech_started" or t.startswith("local.playback."):
            decision = self.playback.on_event(ev, self.state)
            if decision is not None and self.auto_truncate and self.phase != "down":
                self._queue(client.conversation_item_truncate(*decision))

    # --- internals -----------------------------------------------------------------------------

    def _queue(self, event: JSON, audio: bytes | None = None) -> None:
        (self._outbox if self.phase == "ready" else self._held).append((event, audio))

    def _record(self, etype: str, **data: Any) -> None:
        self._records.append({"type": etype, **data})

    def _reset(self) -> None:
        """The connection is gone: what was meant for it is dropped (tool outputs are kept)."""
        self.phase = "down"
        self._outbox.clear()
        self._held.clear()
        self._acks.clear()
        self.gate.reset()
        self.calls.reset()

    def _setup_progress(self, ev: Event) -> None:
        t = canonical_type(ev.type)
        if self.phase == "created":
            if t != "session.created":
                return
            self._begin_setup(always=False)
        elif t == "error":
            err = ev.data.get("error") or {}
            if err.get("event_id") in self._acks:
                self.setup_error = str(err.get("message") or err)
                return
        else:
            for eid, (answer, item_id) in list(self._acks.items()):
                if t == answer and (item_id is None or ev.item_id == item_id):
                    del self._acks[eid]
                    break
        if self.phase == "setup" and not self._acks and self.setup_error is None:
            self._ready()

    def _begin_setup(self, always: bool) -> None:
        """Send the configuration (when it says anything, or ``always``) and the seed items;
        requests wait until the server confirmed them."""
        setup: list[JSON] = []
        if always or len(self.config) > 1 or self.tools:
            update = client.session_update(self.config)
            self._acks[update["event_id"]] = ("session.updated", None)
            setup.append(update)
        for item in self._seed:
            create = client.conversation_item_create(item)
            self._acks[create["event_id"]] = ("conversation.item.added", item.get("id"))
            setup.append(create)
        self._outbox.extend((e, None) for e in setup)
        self.phase = "setup"
        if not self._acks:
            self._ready()

    def _ready(self) -> None:
        self.phase = "ready"
        self._outbox.extend(self._held)
        self._held.clear()
        undelivered, self._undelivered = self._undelivered, []
        for call_id, output in undelivered:
            self._queue(client.conversation_item_create(
                client.function_call_output_item(call_id, output)))  # fmt: skip
        if undelivered:
            self.request_response(client.response_create())

    def _start(self, call: ToolCall) -> None:
        self._record("local.tool.started", call_id=call.call_id, name=call.name,
                     arguments=call.arguments)  # fmt: skip
        tool = self.tools.get(call.name) or self.response_tools.get(call.name)
        try:
            if tool is None:
                known = ", ".join(sorted({*self.tools, *self.response_tools})) or "none"
                raise LookupError(f"no tool named {call.name!r} (tools: {known})")
            kwargs = tool.parse_arguments(call.arguments)
        except Exception as exc:  # the model asked for something we cannot run: tell it
            self.tool_failed(call, exc, 0.0)
            return
        self._runs.append(ToolRun(call, tool, kwargs))

    def _invalid_event(self, ev: Event, problem: ShapeProblem) -> None:
        """Say once per event type and problem that a server event was ignored for its shape."""
        key = (canonical_type(ev.type), str(problem))
        if key in self._reported:
            return
        self._reported.add(key)
        quoted = f" ({problem.value})" if problem.value else ""
        message = (
            f"{ev.type} {ev.event_id or '(no event_id)'} was ignored: {problem}{quoted} "
            "(reported once per event type and problem)"
        )
        log.warning("realtime_nb: %s", redact_message(message, self._secrets))
        self._record("local.protocol.invalid_event", event_type=ev.type, event_id=ev.event_id,
                     seq=ev.seq, field=problem.field, problem=str(problem), value=problem.value,
                     message=message)  # fmt: skip

    def _finish(self, call: ToolCall, output: str, error: str | None, duration_ms: float) -> None:
        capped = cap_output(output)
        if capped is not output:
            log.warning("realtime_nb: tool %s returned %d characters; the model gets the first "
                        "%d (MAX_TOOL_OUTPUT_CHARS)", call.name, len(output),
                        MAX_TOOL_OUTPUT_CHARS)  # fmt: skip
            self._record("local.tool.output_cut", call_id=call.call_id, name=call.name,
                         sent_chars=MAX_TOOL_OUTPUT_CHARS, total_chars=len(output))  # fmt: skip
            output = capped
        self._record("local.tool.finished", call_id=call.call_id, name=call.name, output=output,
                     error=error, duration_ms=round(duration_ms, 3))  # fmt: skip
        if not self.ready:
            self._undelivered.append((call.call_id, output))
            return
        self._queue(client.conversation_item_create(
            client.function_call_output_item(call.call_id, output)))  # fmt: skip
        if self.calls.finish(call.call_id):
            self.request_response(client.response_create())
