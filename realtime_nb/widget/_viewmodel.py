"""What the browser shows of a conversation, computed from the reducer's state (pure).

The live widget and the replay view render the same JSON for a conversation item
(:func:`item_view`); the live widget also shows a summary of turns, tokens and cost
(:func:`stats_view`). A :class:`ConversationView` is all of it at one point of the event stream,
and :class:`ViewModel` keeps one up to date as events arrive, recomputing only the items an event
may have changed (:func:`items_touched`).

Nothing here reads a session, takes a lock or sends anything: it is handed a
:class:`~realtime_nb.core.reducer.ConversationState` that is consistent (on the session's I/O
thread, between two events, or a snapshot) and returns plain values. The widget shell decides
where that is and what to send.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..core._redact import needs_redaction, redact_obj
from ..core.events import Event
from ..core.metrics import compute as compute_metrics
from ..core.protocol import Source, canonical_type
from ..core.reducer import ConversationState, Item

__all__ = [
    "EMPTY_VIEW",
    "ConversationView",
    "ViewModel",
    "changes_nothing_shown",
    "conversation_view",
    "item_view",
    "items_touched",
    "stats_view",
    "transcribing",
    "transcript_pending",
]

JSON = dict[str, Any]

#: Item fields sent as they are (strings, or ``None``).
_PLAIN_FIELDS: Final = ("type", "role", "status", "text", "name", "call_id", "arguments", "output")
#: Token totals the summary shows.
_TOKEN_FIELDS: Final = ("input_tokens", "output_tokens", "total_tokens")
#: Client events that change no item and no turn: the reducer only extends the input timeline.
_APPEND: Final = "input_audio_buffer.append"


def _num(v: object) -> float | None:
    """A finite number rounded to 0.1 (JSON has no NaN), or ``None``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return round(f, 1) if math.isfinite(f) else None


def transcribing(state: ConversationState) -> bool:
    """Whether the session transcribes the user's audio (GA ``audio.input.transcription``, beta
    ``input_audio_transcription``), as the server confirmed it or, before that, as asked."""
    for sess in (state.session, state.requested_session):
        audio = sess.get("audio")
        audio_in = audio.get("input") if isinstance(audio, Mapping) else None
        if isinstance(audio_in, Mapping) and "transcription" in audio_in:
            return bool(audio_in["transcription"])
        if "input_audio_transcription" in sess:
            return bool(sess["input_audio_transcription"])
    return False


def transcript_pending(item: Item, transcribing: bool = False) -> bool:
    """Whether the item's words are still to come: an assistant message being spoken, or the
    user's audio while its transcript (asked for with ``transcribing``) has not arrived."""
    if item.type != "message":
        return False
    if item.role == "assistant":
        return item.status == "in_progress"
    part = item.audio_part()
    return (
        item.role == "user"
        and transcribing
        and part is not None
        and part.type == "input_audio"
        and item.transcription_status not in ("completed", "failed")
    )


def item_view(item: Item, transcribing: bool = False) -> JSON:
    """The JSON the front end renders for one conversation item, secrets redacted.

    ``id`` and the plain fields (``type``, ``role``, ``status``, ``text``, and a tool call's
    ``name``, ``call_id``, ``arguments``, ``output``); ``truncated`` and, when known,
    ``truncated_ms``, ``truncate_requested_ms`` and ``played_ms``; ``has_audio``; ``pending``
    while its words are still to come (:func:`transcript_pending`; ``transcribing``: the session
    transcribes the user's audio). A cut item (truncated, or a truncation requested and not yet
    confirmed) also carries ``heard_text``: what the listener heard of its text, for the view to
    mark the rest as never heard.
    """
    out: JSON = {"id": _redacted(item.id)}
    for name in _PLAIN_FIELDS:
        out[name] = _redacted(getattr(item, name))
    out["truncated"] = item.truncated
    for name, value in (
        ("truncated_ms", item.truncated_ms),
        ("truncate_requested_ms", item.truncate_requested_ms),
        ("played_ms", item.played_ms),
    ):
        if _num(value) is not None:
            out[name] = value
    if item.truncated or item.truncate_requested_ms is not None:
        # An estimate: the API does not say where it cut the transcript (Item.heard_text).
        out["heard_text"] = _redacted(item.heard_text())
    out["has_audio"] = item.audio_part() is not None
    out["pending"] = transcript_pending(item, transcribing)
    return out


def _redacted(value: str | None) -> str | None:
    """``value`` with anything that looks like a key blanked (:func:`redact_obj`). The cheap test
    first: the view is computed on the session's I/O thread, and almost no text holds a key."""
    if value is None or not needs_redaction(value.lower()):
        return value
    return str(redact_obj(value))


def stats_view(state: ConversationState, cost: float) -> JSON:
    """The summary line and turns table: ``{cost, tokens, turns}``.

    ``cost`` is the session's priced cost in USD (pricing is the session's, not the state's);
    a non-finite one shows as 0. Each turn is ``{index (from 1), latency_ms (or None)}``, the
    latency of :mod:`realtime_nb.core.metrics` (the one every other view shows).
    """
    usage = state.usage
    turns = compute_metrics(state).turns
    return {
        "cost": cost if math.isfinite(cost) else 0.0,
        "tokens": {k: int(getattr(usage, k)) for k in _TOKEN_FIELDS},
        "turns": [{"index": t.index + 1, "latency_ms": _num(t.latency_ms)} for t in turns],
    }


@dataclass(frozen=True)
class ConversationView:
    """What the browser shows of a conversation, at one point of the event stream.

    Immutable: the thread that computes it hands it over and never changes it again.
    """

    #: ``state.event_count`` when computed: a later view of the same session has a larger one.
    version: int
    #: Ids of the items shown, in conversation order (deleted and out-of-band ones left out).
    order: tuple[str, ...]
    #: :func:`item_view` of each item in ``order``.
    items: Mapping[str, JSON]
    #: :func:`stats_view`.
    stats: JSON = field(default_factory=dict)

    def snapshot_message(self, events: Iterable[JSON]) -> JSON:
        """The ``snapshot`` message: every item, the given log events, the summary."""
        return {
            "type": "snapshot",
            "order": list(self.order),
            "items": [self.items[i] for i in self.order],
            "events": list(events),
            "stats": self.stats,
        }

    def items_message(self, since: ConversationView | None) -> JSON | None:
        """The ``items`` message bringing a view that shows ``since`` up to this one: the items
        that changed and the current order; ``None`` if nothing did."""
        before: Mapping[str, JSON] = since.items if since is not None else {}
        changed = [
            d for i in self.order if (d := self.items[i]) is not (old := before.get(i)) and d != old
        ]
        if not changed and since is not None and since.order == self.order:
            return None
        return {"type": "items", "order": list(self.order), "items": changed}

    def stats_message(self, since: ConversationView | None) -> JSON | None:
        """The ``stats`` message, or ``None`` if the summary did not change since ``since``."""
        if since is not None and since.stats == self.stats:
            return None
        return {"type": "stats", **self.stats}


#: The view of a conversation with no events yet.
EMPTY_VIEW: Final = ConversationView(
    version=0, order=(), items={}, stats={"cost": 0.0, "tokens": {}, "turns": []}
)


def changes_nothing_shown(ev: Event) -> bool:
    """A client audio append: the reducer only extends the input timeline (no item, no turn)."""
    return ev.source is Source.CLIENT and canonical_type(ev.type) == _APPEND


def items_touched(ev: Event) -> Collection[str] | None:
    """The ids of the items an event may have changed, ``None`` meaning any of them.

    The reducer's handlers change only the item an event names (``item_id``, or a nested
    ``item.id``) and, for an event carrying a response object (``response.created``/``done``),
    the items of that response's ``output``. Any other event may change any item. The order and
    the summary are recomputed for every event whatever this says.
    """
    touched: list[str] = [] if ev.item_id is None else [ev.item_id]
    response = ev.data.get("response")
    if isinstance(response, Mapping):
        output = response.get("output")
        if isinstance(output, list):
            touched += [
                o["id"] for o in output if isinstance(o, Mapping) and isinstance(o.get("id"), str)
            ]
        return touched
    return touched if ev.item_id is not None else None


def conversation_view(
    state: ConversationState,
    cost: float,
    previous: ConversationView | None = None,
    touched: Collection[str] | None = None,
) -> ConversationView:
    """The view of ``state``. With ``previous`` (a view of the same conversation, earlier), only
    the items in ``touched`` and the ones ``previous`` does not have are computed again; without
    it, or with ``touched=None``, every item is."""
    reuse = previous.items if previous is not None and touched is not None else {}
    again = touched if touched is not None else ()
    items: dict[str, JSON] = {}
    asr = transcribing(state)
    for it in state.items:
        old = reuse.get(it.id)
        items[it.id] = old if old is not None and it.id not in again else item_view(it, asr)
    return ConversationView(
        version=state.event_count,
        order=tuple(items),
        items=items,
        stats=stats_view(state, cost),
    )


class ViewModel:
    """Keeps a :class:`ConversationView` up to date as events are applied to a state.

    Call :meth:`update` after the reducer applied each event (on the thread that applies them),
    and read :attr:`view` anywhere: each view is a new immutable object. If computing a view
    fails, :meth:`update` raises and :attr:`view` stays the last good one; the items the failed
    events touched are computed again at the next update.
    """

    def __init__(self) -> None:
        self.view: ConversationView | None = None
        #: Items touched since the last good view (``None``: all of them).
        self._dirty: set[str] | None = None

    def update(self, state: ConversationState, ev: Event | None, cost: float) -> ConversationView:
        """The view after ``ev`` (``None``: recompute everything).

        Raises:
            Exception: whatever reading the state raised; :attr:`view` is left as it was.
        """
        if ev is not None and changes_nothing_shown(ev) and self.view is not None:
            return self.view
        touched = items_touched(ev) if ev is not None else None
        if touched is None or self.view is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.update(touched)
        view = conversation_view(state, cost, self.view, self._dirty)
        self.view = view
        self._dirty = set()
        return view
