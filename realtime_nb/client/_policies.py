"""The client's pure policies, each a small state machine fed with events and asked what to do:

- :class:`ResponseGate`: one ``response.create`` at a time, the next when ``response.done`` comes;
- :class:`ToolCallTracker`: when to run a function call, when to ask for the follow-up response;
- :class:`PlaybackModel`: the truncation to send on an interruption, from the reducer's state;
- :func:`seed_items`: a conversation re-created as text for a new connection.

:class:`~realtime_nb.client.protocol.ClientProtocol` routes events between them; nothing here
touches a socket, a thread or a clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..core.events import Event
from ..core.protocol import client
from ..core.reducer import ConversationState, Item
from ..core.tools import ToolCall

__all__ = [
    "INTERRUPT_REASONS",
    "PlaybackModel",
    "ResponseGate",
    "StartCall",
    "ToolCallTracker",
    "seed_items",
]

JSON = dict[str, Any]

#: Playback stop reasons (from the widget's ``local.playback.played``) that mean the listener did
#: not hear the rest, so the item must be truncated to what was played.
INTERRUPT_REASONS: Final = frozenset(
    {"interrupted", "interruption", "barge_in", "speech_started", "stopped", "cancelled", "cleared"}
)
#: WebSocket keepalive: the API closes idle sockets; a 20 s ping keeps NATs open and notices a
#: dead peer within ping + timeout.


class ResponseGate:
    """Holds ``response.create`` requests while a response is active (or one is on its way).

    The API refuses a second response with ``conversation_already_has_active_response``; this
    gate sends one request at a time and the next when ``response.done`` arrives. A request the
    server refused for that reason anyway (a server-VAD response overtook it) is queued again.
    """

    #: Requests remembered by event id to re-queue them if the server refuses them as "busy".
    _REMEMBER: Final = 32

    def __init__(self) -> None:
        self.queue: deque[JSON] = deque()
        self.in_flight: JSON | None = None
        self.active: str | None = None
        self._sent: dict[str, JSON] = {}

    @property
    def busy(self) -> bool:
        return self.in_flight is not None or self.active is not None

    def request(self, event: JSON) -> list[JSON]:
        """A ``response.create`` to send: returns it if it may go now, else queues it."""
        if self.busy:
            self.queue.append(event)
            return []
        return [self._send(event)]

    def _send(self, event: JSON) -> JSON:
        self.in_flight = event
        eid = event.get("event_id")
        if isinstance(eid, str):
            self._sent[eid] = event
            while len(self._sent) > self._REMEMBER:
                self._sent.pop(next(iter(self._sent)))
        return event

    def _release(self) -> list[JSON]:
        if self.busy or not self.queue:
            return []
        return [self._send(self.queue.popleft())]

    def on_server_event(self, data: Mapping[str, Any]) -> list[JSON]:
        """Update with a server event; returns queued requests that may be sent now."""
        t = data.get("type")
        if t == "response.created":
            resp = data.get("response") or {}
            self.in_flight = None
            self.active = resp.get("id") if isinstance(resp.get("id"), str) else "?"
            return []
        if t == "response.done":
            resp = data.get("response") or {}
            rid = resp.get("id")
            if self.active in (rid, "?") or self.active is None:
                self.active = None
            return self._release()
        if t == "error":
            err = data.get("error") or {}
            eid = err.get("event_id")
            request = self._sent.pop(eid, None) if isinstance(eid, str) else None
            if request is None:
                return []
            if self.in_flight is request:
                self.in_flight = None
            if err.get("code") == "conversation_already_has_active_response":
                self.queue.appendleft(request)
                if self.active is None:
                    self.active = "?"  # a response we did not see start is running
            return self._release()
        return []

    def drop_queued(self) -> int:
        """Forget queued requests (after :meth:`Session.cancel`); returns how many."""
        n = len(self.queue)
        self.queue.clear()
        return n

    def reset(self) -> None:
        """A new connection: nothing is active or in flight, nothing is queued."""
        self.queue.clear()
        self.in_flight = None
        self.active = None
        self._sent.clear()


@dataclass(frozen=True)
class StartCall:
    """Action: run this call now."""

    call: ToolCall


@dataclass
class _ResponseCalls:
    pending: set[str] = field(default_factory=set)
    done: bool = False  # response.done seen
    answered: int = 0  # outputs sent


class ToolCallTracker:
    """Decides when to run function calls and when to ask for the follow-up response.

    Feed every server event to :meth:`on_server_event` (returns calls to start) and report each
    finished call with :meth:`finish` (returns whether to send ``response.create`` now). The
    follow-up response is requested once per model response, after its ``response.done`` and
    after every call it made has an output, so parallel calls lead to one answer, not several.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._by_response: dict[str, _ResponseCalls] = {}
        self._response_of: dict[str, str] = {}

    @property
    def running(self) -> int:
        """Calls started and not yet finished."""
        return sum(len(r.pending) for r in self._by_response.values())

    def reset(self) -> None:
        """Forget responses in progress (a new connection) but keep which calls were seen."""
        self._by_response.clear()
        self._response_of.clear()

    def _start(self, item: Mapping[str, Any], response_id: str | None) -> list[StartCall]:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or call_id in self._seen:
            return []
        self._seen.add(call_id)
        rid = response_id or f"<no-response:{call_id}>"
        calls = self._by_response.setdefault(rid, _ResponseCalls())
        calls.pending.add(call_id)
        if response_id is None:  # no response.done will come for it: answer when it finishes
            calls.done = True
        self._response_of[call_id] = rid
        call = ToolCall(
            call_id=call_id,
            name=str(item.get("name") or ""),
            arguments=str(item.get("arguments") or ""),
            item_id=item.get("id") if isinstance(item.get("id"), str) else None,
            response_id=response_id,
        )
        return [StartCall(call)]

    def on_server_event(self, data: Mapping[str, Any]) -> tuple[list[StartCall], bool]:
        """Update with one server event; return the calls to start and whether a follow-up
        ``response.create`` is due now."""
        t = data.get("type")
        if t == "response.function_call_arguments.done":
            item = {
                "call_id": data.get("call_id"),
                "name": data.get("name"),
                "arguments": data.get("arguments"),
                "id": data.get("item_id"),
            }
            return self._start(item, data.get("response_id")), False
        if t == "response.output_item.done":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                return self._start(item, data.get("response_id")), False
            return [], False
        if t == "response.done":
            response = data.get("response") or {}
            rid = response.get("id")
            starts: list[StartCall] = []
            for item in response.get("output") or []:
                if isinstance(item, Mapping) and item.get("type") == "function_call":
                    starts += self._start(item, rid)
            if not isinstance(rid, str) or rid not in self._by_response:
                return starts, False
            self._by_response[rid].done = True
            return starts, self._due(rid)
        return [], False

    def finish(self, call_id: str) -> bool:
        """Record that ``call_id`` has its output sent; return whether to ask for a response."""
        rid = self._response_of.pop(call_id, None)
        if rid is None:
            return False
        calls = self._by_response.get(rid)
        if calls is None:
            return False
        calls.pending.discard(call_id)
        calls.answered += 1
        return self._due(rid)

    def _due(self, rid: str) -> bool:
        calls = self._by_response[rid]
        if calls.done and not calls.pending and calls.answered:
            del self._by_response[rid]
            return True
        return False


class PlaybackModel:
    """Decides the truncation to send on an interruption, from the reducer's state.

    What was received of each assistant item and when its audio began come from the
    :class:`~realtime_nb.core.reducer.ConversationState` (the same fold the views and replay use); this
    class keeps only what no event says: whether a player reports playback, and which items it
    already decided to truncate. Without a player reporting ``local.playback.*`` events (a
    notebook with no widget), audio is assumed to play in real time from its first delta, so an
    interruption at time ``t`` heard ``t - first_delta`` ms of it. Once a player reports, its
    ``played_ms`` is used instead.
    """

    def __init__(self) -> None:
        self.player_reports = False
        self._decided: set[str] = set()

    @staticmethod
    def received_ms(state: ConversationState, item_id: str) -> float | None:
        """Milliseconds of output audio received for ``item_id`` (``None``: none at all)."""
        item = state.items_by_id.get(item_id)
        part = item.audio_part() if item is not None else None
        if part is None or part.type != "output_audio" or not part.audio_chunks:
            return None
        return state.output_format.duration_ms(part.audio_bytes)

    def clamp(self, state: ConversationState, item_id: str, audio_end_ms: float) -> int:
        """``audio_end_ms`` floored to an integer and clamped to ``[0, received]``.

        Raises:
            ValueError: no audio was received for ``item_id`` (items with audio are named), or
                ``audio_end_ms`` is not a finite number.
        """
        if not isinstance(audio_end_ms, (int, float)) or not math.isfinite(audio_end_ms):
            raise ValueError(f"audio_end_ms must be a finite number, got {audio_end_ms!r}")
        received = self.received_ms(state, item_id)
        if received is None:
            with_audio = [i for i in state.items_by_id if self.received_ms(state, i) is not None]
            known = ", ".join(with_audio[-5:]) or "none yet"
            raise ValueError(
                f"no audio was received for item {item_id!r}; items with audio: {known}"
            )
        return max(0, min(math.floor(audio_end_ms), math.floor(received)))

    def on_event(self, ev: Event, state: ConversationState) -> tuple[str, int] | None:
        """Given an event already applied to ``state``, ``(item_id, audio_end_ms)`` to truncate."""
        t = ev.type
        if t.startswith("local.playback."):
            self.player_reports = True
            if t != "local.playback.played":
                return None
            data = ev.data
            item_id, played = data.get("item_id"), data.get("played_ms")
            if data.get("reason") not in INTERRUPT_REASONS:
                return None
            if not isinstance(item_id, str) or not isinstance(played, (int, float)):
                return None
            if not math.isfinite(played):  # a player's NaN must not become a truncation error
                return None
            return self._decide(state, item_id, float(played))
        if t == "input_audio_buffer.speech_started" and not self.player_reports:
            playing = [
                i for i in state.items_by_id.values()
                if i.first_audio_t_ns is not None and i.first_audio_t_ns <= ev.t_ns
            ]  # fmt: skip
            if not playing:
                return None
            last = max(playing, key=lambda i: i.first_audio_t_ns or 0)
            assert last.first_audio_t_ns is not None
            return self._decide(state, last.id, (ev.t_ns - last.first_audio_t_ns) / 1e6)
        return None

    def _decide(
        self, state: ConversationState, item_id: str, played_ms: float
    ) -> tuple[str, int] | None:
        item = state.items_by_id.get(item_id)
        if item is None or item_id in self._decided:
            return None
        if item.truncated or item.truncate_requested_ms is not None:
            return None  # already cut (by the user, the widget or an earlier decision)
        received = self.received_ms(state, item_id)
        if received is None or played_ms >= received:
            return None  # everything received was heard: nothing to cut
        self._decided.add(item_id)
        return item_id, self.clamp(state, item_id, played_ms)


def seed_items(items: Iterable[Item]) -> list[JSON]:
    """Items to ``conversation.item.create`` on a new connection so it knows the conversation.

    Messages become text (user audio -> its transcript, assistant audio -> what was heard of its
    transcript); function calls and outputs are re-created as they were. Each keeps its original
    id. Items with nothing to say (audio never transcribed) are left out.
    """
    out: list[JSON] = []
    for it in items:
        if it.type == "function_call" and it.call_id:
            out.append({
                "id": it.id, "type": "function_call", "call_id": it.call_id,
                "name": it.name or "", "arguments": it.arguments or "{}",
            })  # fmt: skip
        elif it.type == "function_call_output" and it.call_id:
            out.append(
                {"id": it.id, **client.function_call_output_item(it.call_id, it.output or "")}
            )
        elif it.type == "message" and it.role in ("user", "assistant", "system"):
            text = it.heard_text() if it.role == "assistant" else it.text
            if not text.strip():
                continue
            out.append({"id": it.id, **client.text_message_item(it.role, text)})
    return out
