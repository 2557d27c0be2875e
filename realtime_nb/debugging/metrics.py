"""Latency, tokens and cost of a recorded session, per turn and per response, and their plots.

Everything is computed from the reduced :class:`~realtime_nb.core.reducer.ConversationState` (pure);
only the plot functions import matplotlib (lazily).

Latencies of a turn (all from the user's end of speech: ``speech_stopped``, else the commit, else
when the text item was added):

- ``first_audio_ms``: to the first ``response.output_audio.delta`` of its response (what the API
  controls);
- ``first_heard_ms``: to the ``local.playback.started`` of its first assistant item, when the
  widget reported one (what the listener lived: adds buffering and the browser's playback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..core.pricing import ModelPrice, cost_of_usage, price_for
from ..core.reducer import ConversationState, Item, Response, Turn, Usage
from ..storage.recording import Recording

__all__ = [
    "ResponseMetrics",
    "SessionMetrics",
    "TurnMetrics",
    "TurnView",
    "metrics",
    "plot_latency",
    "plot_timeline",
    "turn_views",
]

_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1e9


@dataclass
class TurnView:
    """A user turn with everything answering it: the responses it started (tool-call follow-ups
    included), their output items and the tool outputs sent back."""

    turn: Turn
    user_item: Item | None
    responses: list[Response] = field(default_factory=list)
    outputs: list[Item] = field(default_factory=list)  # output items of those responses, in order
    tool_outputs: dict[str, Item] = field(default_factory=dict)  # call_id -> function_call_output

    @property
    def user_text(self) -> str:
        """What the user said or typed (transcript of an audio turn; ``""`` if not transcribed)."""
        return self.user_item.text if self.user_item is not None else ""

    @property
    def assistant_text(self) -> str:
        """The assistant's messages in this turn, joined (transcripts of spoken answers)."""
        return " ".join(
            it.text for it in self.outputs if it.type == "message" and it.role == "assistant"
        ).strip()


def turn_views(state: ConversationState) -> list[TurnView]:
    """The state's turns, each with its responses (a response belongs to the latest turn whose
    own response was created before it, so tool-call follow-ups stay with their turn)."""
    responses = [r for r in state.responses.values() if not r.out_of_band]
    position = {r.id: i for i, r in enumerate(responses)}
    starts = [position.get(t.response_id or "", -1) for t in state.turns]
    tool_outputs = {
        it.call_id: it
        for it in state.items_by_id.values()
        if it.type == "function_call_output" and it.call_id
    }
    views = []
    for i, turn in enumerate(state.turns):
        user = state.items_by_id.get(turn.item_id) if turn.item_id else None
        view = TurnView(turn, user)
        first = starts[i]
        if first >= 0:
            later = [s for s in starts[i + 1 :] if s > first]
            end = min(later) if later else len(responses)
            view.responses = responses[first:end]
            for r in view.responses:
                for item_id in r.output_item_ids:
                    it = state.items_by_id.get(item_id)
                    if it is not None:
                        view.outputs.append(it)
                        if it.call_id and it.call_id in tool_outputs:
                            view.tool_outputs[it.call_id] = tool_outputs[it.call_id]
        views.append(view)
    return views


@dataclass(frozen=True)
class TurnMetrics:
    """Timings of one user turn (milliseconds; ``None`` when an event is missing)."""

    index: int
    kind: str
    item_id: str | None
    end_s: float | None  # when the user finished, in session seconds
    first_audio_ms: float | None
    first_heard_ms: float | None
    response_ids: tuple[str, ...]
    status: str | None  # of the turn's last response


@dataclass(frozen=True)
class ResponseMetrics:
    """Tokens by modality and cost of one response."""

    id: str
    status: str | None
    created_s: float | None
    done_s: float | None
    usage: Usage
    cost_usd: float | None  # None: the model has no price

    @property
    def duration_ms(self) -> float | None:
        if self.created_s is None or self.done_s is None:
            return None
        return (self.done_s - self.created_s) * 1000.0


@dataclass
class SessionMetrics:
    """Per-turn and per-response metrics of a session, with totals and plots."""

    model: str | None
    turns: list[TurnMetrics]
    responses: list[ResponseMetrics]
    usage: Usage
    #: Raw material for the timeline plot: (start_s, end_s) of user speech and of responses.
    speech: list[tuple[float, float]] = field(default_factory=list)
    response_spans: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def cost_usd(self) -> float | None:
        """Total cost (``None`` if the model has no price)."""
        if any(r.cost_usd is None for r in self.responses):
            return None
        return sum(r.cost_usd or 0.0 for r in self.responses)

    def text(self) -> str:
        """A plain-text table of the turns and the totals."""
        lines = [f"{'turn':>4}  {'kind':<6} {'->audio ms':>10} {'->heard ms':>10}  status"]
        for t in self.turns:
            lines.append(
                f"{t.index:>4}  {t.kind:<6} {_ms(t.first_audio_ms):>10} {_ms(t.first_heard_ms):>10}"
                f"  {t.status or '-'}"
            )
        u = self.usage
        cost = "unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        lines.append(
            f"tokens: in {u.input_tokens} (text {u.input_text_tokens}, audio "
            f"{u.input_audio_tokens}, cached {u.cached_tokens}), out {u.output_tokens} (text "
            f"{u.output_text_tokens}, audio {u.output_audio_tokens}); cost {cost}"
        )
        return "\n".join(lines)

    def plot_latency(self, ax: Any = None) -> Any:
        """Bar chart of latency per turn; returns the matplotlib Axes."""
        return plot_latency(self, ax)

    def plot_timeline(self, ax: Any = None) -> Any:
        """The session timeline (user speech, responses, first audio); returns the Axes."""
        return plot_timeline(self, ax)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _load(recording: Recording | str | Path) -> Recording:
    if isinstance(recording, Recording):
        return recording
    if isinstance(recording, (str, Path)):
        return Recording.import_file(recording)
    raise TypeError(f"expected a Recording or a recording path, got {type(recording).__name__}")


def _s(t_ns: int | None) -> float | None:
    return None if t_ns is None else t_ns / _NS_PER_S


def response_cost(resp: Response, price: ModelPrice | None) -> float | None:
    """USD of one response from its ``usage`` (``None``: no price known)."""
    if price is None:
        return None
    return cost_of_usage(resp.usage_raw, price)


def metrics(
    recording: Recording | str | Path | ConversationState,
    *,
    model: str | None = None,
    price: ModelPrice | None = None,
) -> SessionMetrics:
    """Per-turn latencies and per-response tokens/cost of a recording (or a reduced state).

    ``model`` defaults to the recording's; ``price`` to :func:`realtime_nb.core.pricing.price_for`.

    Raises:
        TypeError: not a Recording, a path or a ConversationState.
    """
    if isinstance(recording, ConversationState):
        state = recording
    else:
        rec = _load(recording)
        state = rec.state
        model = model or rec.meta.get("model")
    model = model or (state.session.get("model") if isinstance(state.session, dict) else None)
    price = price or price_for(model)
    played: dict[str, int] = {}
    for t_ns, etype, data in state.local_events:
        if etype == "local.playback.started" and isinstance(data.get("item_id"), str):
            played.setdefault(data["item_id"], t_ns)
    turns = []
    for view in turn_views(state):
        t = view.turn
        end = t.end_t_ns
        heard = None
        for it in view.outputs:
            if it.id in played:
                heard = played[it.id]
                break
        turns.append(
            TurnMetrics(
                index=t.index,
                kind=t.kind,
                item_id=t.item_id,
                end_s=_s(end),
                first_audio_ms=(
                    (t.first_audio_t_ns - end) / _NS_PER_MS
                    if end is not None and t.first_audio_t_ns is not None
                    else None
                ),
                first_heard_ms=(heard - end) / _NS_PER_MS if end is not None and heard else None,
                response_ids=tuple(r.id for r in view.responses),
                status=view.responses[-1].status if view.responses else None,
            )
        )
    responses = [
        ResponseMetrics(
            id=r.id,
            status=r.status,
            created_s=_s(r.created_t_ns),
            done_s=_s(r.done_t_ns),
            usage=r.usage or Usage(),
            cost_usd=response_cost(r, price),
        )
        for r in state.responses.values()
    ]
    speech = []
    for t in state.turns:
        a = t.speech_started_t_ns if t.speech_started_t_ns is not None else t.committed_t_ns
        b = t.end_t_ns
        if a is not None and b is not None:
            speech.append((a / _NS_PER_S, b / _NS_PER_S))
        elif b is not None:
            speech.append((b / _NS_PER_S, b / _NS_PER_S))
    spans = [
        (r.created_t_ns / _NS_PER_S, r.done_t_ns / _NS_PER_S, r.status or "?")
        for r in state.responses.values()
        if r.created_t_ns is not None and r.done_t_ns is not None
    ]
    return SessionMetrics(model, turns, responses, state.usage, speech, spans)


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, new_ax = plt.subplots(figsize=(8, 3))
    return new_ax


def plot_latency(m: SessionMetrics, ax: Any = None) -> Any:
    """Bars of speech end -> first audio (and -> first heard, when known) per turn."""
    ax = _axes(ax)
    idx = [t.index for t in m.turns]
    audio = [t.first_audio_ms or 0.0 for t in m.turns]
    heard = [t.first_heard_ms or 0.0 for t in m.turns]
    width = 0.4
    ax.bar([i - width / 2 for i in idx], audio, width, label="end of speech -> first audio delta")
    if any(heard):
        ax.bar([i + width / 2 for i in idx], heard, width, label="end of speech -> first heard")
    ax.set_xlabel("turn")
    ax.set_ylabel("ms")
    ax.set_title("Latency per turn")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def plot_timeline(m: SessionMetrics, ax: Any = None) -> Any:
    """User speech and responses on the session's time axis, first audio marked."""
    ax = _axes(ax)
    ax.broken_barh([(a, max(b - a, 0.05)) for a, b in m.speech], (1.6, 0.8), color="tab:blue")
    colors = {"completed": "tab:green", "cancelled": "tab:red", "incomplete": "tab:orange"}
    for a, b, status in m.response_spans:
        ax.broken_barh([(a, max(b - a, 0.05))], (0.6, 0.8), color=colors.get(status, "tab:gray"))
    for t in m.turns:
        if t.end_s is not None and t.first_audio_ms is not None:
            ax.plot([t.end_s + t.first_audio_ms / 1000.0], [1.0], "k|", markersize=14)
    ax.set_yticks([1.0, 2.0], labels=["assistant", "user"])
    ax.set_xlabel("session time (s)")
    ax.set_title("Session timeline")
    return ax
