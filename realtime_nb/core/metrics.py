"""The one definition of each metric of a session: per-turn stage times and latencies, tokens and
cost per turn and per response, percentiles over a session, and the marks of its timeline.

Pure: everything is read from a reduced :class:`~realtime_nb.core.reducer.ConversationState`. The
summary, ``realtime-nb inspect``, ``rec.metrics()``, ``diff``, the plots and the widget all read
these numbers; none computes its own.

Times are session seconds (the recording's clock). A turn's stages, each ``None`` when the events
do not say it:

- ``speech_end_s``: the user finished. Spoken turns: when the audio holding the end of the speech
  was sent (the input chunk holding the last byte of the committed audio, as placed by the VAD's
  ``audio_end_ms`` or the commit); text turns: when the server added the text item. This is the
  zero of every latency, so VAD and manual-commit turns are measured from the same kind of moment.
- ``speech_stopped_s``: the server's ``input_audio_buffer.speech_stopped`` (VAD turns).
- ``committed_s``: ``input_audio_buffer.committed``.
- ``transcript_s``: ``...input_audio_transcription.completed`` of the user item (asynchronous: it
  may come after the answer started).
- ``response_created_s``: the turn's first ``response.created``.
- ``answer_created_s``: ``response.created`` of the turn's last response, when tool rounds came
  before it (the time from ``response_created_s`` to it is the tool rounds').
- ``first_audio_s``: the first output audio of any response of the turn (a spoken preamble before
  a tool call counts: it is what the listener hears first).
- ``answer_s``: the first output of the turn's last response, the answer after the tool rounds
  (its audio, else its text).
- ``heard_s``: ``local.playback.started`` of the turn's first assistant item (reported by the
  widget when it played the audio; absent for sessions without a browser).
- ``done_s``: ``response.done`` of the turn's last response.

Latencies are milliseconds from ``speech_end_s`` (falling back to ``speech_stopped_s``,
``committed_s``, then the text time when the audio's send time is unknown):
:attr:`TurnMetrics.latency_ms` to the first audio (to the first output of any kind for a turn
without audio), :attr:`TurnMetrics.heard_ms`, :attr:`TurnMetrics.answer_ms` and
:attr:`TurnMetrics.done_ms`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from .chunk_times import ChunkTimes
from .pricing import LOCAL_MODEL, ModelPrice, cost_of_usage, price_for
from .reducer import ConversationState, Item, Response, Turn, Usage

__all__ = [
    "PERCENTILES",
    "STAGES",
    "Percentiles",
    "ResponseMetrics",
    "SessionMetrics",
    "Span",
    "TimelineMark",
    "TurnMetrics",
    "TurnView",
    "compute",
    "percentiles",
    "session_model",
    "turn_views",
]

_NS_PER_S: Final = 1e9
_MS_PER_S: Final = 1000.0
#: The percentiles reported over a session: the typical turn, the slow tail, and the worst.
PERCENTILES: Final = (50, 90, 95)
#: The stages of a turn, in their usual order (see the module docstring); each is a ``*_s`` field
#: of :class:`TurnMetrics`.
STAGES: Final = (
    "speech_end",
    "speech_stopped",
    "committed",
    "transcript",
    "response_created",
    "answer_created",
    "first_audio",
    "first_output",
    "answer",
    "heard",
    "done",
)
#: Human labels of the stages (plots, text).
STAGE_LABELS: Final = {
    "speech_end": "speech end",
    "speech_stopped": "speech_stopped",
    "committed": "committed",
    "transcript": "transcript",
    "response_created": "response.created",
    "answer_created": "tool round(s) done: response.created",
    "first_audio": "first audio",
    "first_output": "first output (no audio)",
    "answer": "answer after tools",
    "heard": "playback started",
    "done": "done",
}


def _s(t_ns: int | None) -> float | None:
    return None if t_ns is None else t_ns / _NS_PER_S


def _ms(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return (b - a) * _MS_PER_S


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
    """The state's turns, each with its responses: a response belongs to the latest turn whose
    own response was created before it, so tool-call follow-ups stay with their turn."""
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
class Percentiles:
    """p50/p90/p95/max of some values (``None`` each when there are none); ``n`` values."""

    n: int
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentiles(values: Iterable[float | None]) -> Percentiles:
    """Percentiles of the values that are not ``None`` (linear interpolation between the closest
    ranks, as ``numpy.percentile`` does by default)."""
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not xs:
        return Percentiles(0, None, None, None, None)

    def at(p: float) -> float:
        k = (len(xs) - 1) * p / 100.0
        lo, hi = math.floor(k), math.ceil(k)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    p50, p90, p95 = (at(p) for p in PERCENTILES)
    return Percentiles(len(xs), p50, p90, p95, xs[-1])


@dataclass(frozen=True)
class ResponseMetrics:
    """One response: its times, tokens by modality, cost and the tools it called."""

    id: str
    status: str | None
    turn: int | None  # index of the turn it belongs to (None: out of band or before any turn)
    created_s: float | None
    first_audio_s: float | None
    done_s: float | None
    usage: Usage
    cost_usd: float | None  # None: the model has no price
    tool_calls: tuple[str, ...] = ()  # names of the functions it called

    @property
    def duration_ms(self) -> float | None:
        return _ms(self.created_s, self.done_s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.as_dict()
        d["tool_calls"] = list(self.tool_calls)
        d["duration_ms"] = self.duration_ms
        return d


@dataclass(frozen=True)
class TurnMetrics:
    """One user turn: stage times (session seconds), latencies (ms), tokens and cost."""

    index: int
    kind: str  # "vad" | "commit" | "text"
    item_id: str | None
    speech_end_s: float | None
    speech_stopped_s: float | None
    committed_s: float | None
    transcript_s: float | None
    response_created_s: float | None
    answer_created_s: float | None
    first_audio_s: float | None
    first_output_s: float | None
    answer_s: float | None
    heard_s: float | None
    done_s: float | None
    response_ids: tuple[str, ...]
    tool_rounds: int  # responses of this turn that called tools before the answer
    status: str | None  # of the turn's last response
    usage: Usage
    cost_usd: float | None

    @property
    def end_s(self) -> float | None:
        """The zero of this turn's latencies: the end of speech (or the text), else the first
        of speech_stopped and commit the events give."""
        for t in (self.speech_end_s, self.speech_stopped_s, self.committed_s):
            if t is not None:
                return t
        return None

    @property
    def latency_ms(self) -> float | None:
        """End of the user's turn -> first audio of the answer (tool rounds included); for a turn
        answered without audio, -> its first output. The headline latency everywhere."""
        first = self.first_audio_s if self.first_audio_s is not None else self.first_output_s
        return _ms(self.end_s, first)

    @property
    def heard_ms(self) -> float | None:
        """End of the user's turn -> playback started in the browser (``None``: not reported)."""
        return _ms(self.end_s, self.heard_s)

    @property
    def answer_ms(self) -> float | None:
        """End of the user's turn -> first output of the final response (after tool rounds)."""
        return _ms(self.end_s, self.answer_s)

    @property
    def done_ms(self) -> float | None:
        """End of the user's turn -> the last response done."""
        return _ms(self.end_s, self.done_s)

    def stage_times(self) -> dict[str, float]:
        """Each known stage (:data:`STAGES`) -> milliseconds after :attr:`end_s`."""
        end = self.end_s
        out: dict[str, float] = {}
        if end is None:
            return out
        for name in STAGES:
            t = getattr(self, f"{name}_s")
            if name == "answer" and self.tool_rounds == 0:
                continue  # the same moment as the first output: not a stage of its own
            if name == "first_output" and self.first_audio_s is not None:
                continue  # an answer with audio is timed by its audio
            if t is not None:
                out[name] = (t - end) * _MS_PER_S
        return out

    def stages(self, until: str = "heard") -> list[tuple[str, float, float]]:
        """The turn as consecutive segments ``(stage, start_ms, end_ms)`` in time order, each
        ending when ``stage`` happened, from the end of speech to the latest of the stages up to
        and including ``until`` in :data:`STAGES` order (``"done"`` for the whole turn). A stage
        keeps its place in time (a transcript that completes after the answer started comes
        after it); one at the same moment as the stage before it adds no segment.

        Raises:
            ValueError: ``until`` is not one of :data:`STAGES`.
        """
        if until not in STAGES:
            raise ValueError(f"unknown stage {until!r}; accepted: {', '.join(STAGES)}")
        keep = STAGES[: STAGES.index(until) + 1]
        times = sorted(
            ((ms, name) for name, ms in self.stage_times().items() if name in keep),
            key=lambda x: (x[0], STAGES.index(x[1])),
        )
        out: list[tuple[str, float, float]] = []
        cursor = 0.0
        for ms, name in times:
            if name == "speech_end" or ms <= cursor:
                continue  # a stage at the same moment as the one before adds no segment
            out.append((name, cursor, ms))
            cursor = ms
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["usage"] = self.usage.as_dict()
        d["response_ids"] = list(self.response_ids)
        for k in ("end_s", "latency_ms", "heard_ms", "answer_ms", "done_ms"):
            d[k] = getattr(self, k)
        return d


@dataclass(frozen=True)
class Span:
    """Something that lasted on the session timeline (seconds). ``label``: what it was."""

    start_s: float
    end_s: float
    label: str
    ref: str | None = None  # the item, response or call id
    text: str | None = None  # what was said (assistant audio: the transcript as heard)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimelineMark:
    """Something that happened at one moment of the session (seconds)."""

    t_s: float
    label: str
    ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SessionMetrics:
    """All metrics of a session: per turn, per response, totals, percentiles, timeline marks."""

    model: str | None
    priced: bool
    turns: tuple[TurnMetrics, ...]
    responses: tuple[ResponseMetrics, ...]
    usage: Usage
    #: User speech (or a text message, as a zero-length span), per turn.
    user_speech: tuple[Span, ...] = ()
    #: Assistant audio as played (from playback start or first audio, cut where it was heard).
    assistant_audio: tuple[Span, ...] = ()
    #: Tool calls, from the run's start to its end (or the call's arguments being done).
    tool_calls: tuple[Span, ...] = ()
    #: Where an answer was cut (truncation), with the milliseconds heard.
    truncations: tuple[TimelineMark, ...] = ()

    @property
    def cost_usd(self) -> float | None:
        """Total cost of every response (``None`` if the model has no price)."""
        if not self.priced:
            return None
        return sum(r.cost_usd or 0.0 for r in self.responses)

    @property
    def latency(self) -> Percentiles:
        """Percentiles of :attr:`TurnMetrics.latency_ms` over the turns."""
        return percentiles(t.latency_ms for t in self.turns)

    @property
    def heard(self) -> Percentiles:
        return percentiles(t.heard_ms for t in self.turns)

    @property
    def answer(self) -> Percentiles:
        return percentiles(t.answer_ms for t in self.turns)

    def turn(self, index: int) -> TurnMetrics:
        """The turn with this index. Raises ``IndexError`` naming the number of turns."""
        for t in self.turns:
            if t.index == index:
                return t
        raise IndexError(f"no turn {index}: this session has {len(self.turns)} turns")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "priced": self.priced,
            "cost_usd": self.cost_usd,
            "usage": self.usage.as_dict(),
            "latency_ms": self.latency.to_dict(),
            "heard_ms": self.heard.to_dict(),
            "answer_ms": self.answer.to_dict(),
            "turns": [t.to_dict() for t in self.turns],
            "responses": [r.to_dict() for r in self.responses],
            "user_speech": [s.to_dict() for s in self.user_speech],
            "assistant_audio": [s.to_dict() for s in self.assistant_audio],
            "tool_calls": [s.to_dict() for s in self.tool_calls],
            "truncations": [m.to_dict() for m in self.truncations],
        }


def session_model(state: ConversationState, meta: Mapping[str, Any] | None = None) -> str | None:
    """The model that answered: what the server's session says, else the recording's metadata
    (what the client asked for). A local backend that says nothing of its model is
    :data:`~realtime_nb.core.pricing.LOCAL_MODEL` when the metadata names that backend."""
    model = state.session.get("model") if isinstance(state.session, dict) else None
    if isinstance(model, str) and model:
        return model
    meta = meta or {}
    if isinstance(meta.get("model"), str) and meta["model"]:
        return str(meta["model"])
    return LOCAL_MODEL if str(meta.get("backend") or "").startswith("local") else None


class _InputClock:
    """When each byte of the input timeline was sent: the send time of the chunk holding it."""

    def __init__(self, chunk_times: ChunkTimes) -> None:
        self._chunks = chunk_times

    def sent_s(self, byte: int) -> float | None:
        if byte < 0:
            return None
        k = self._chunks.index_at(byte)
        return None if k < 0 else self._chunks[k][0] / _NS_PER_S


def _speech_range(turn: Turn, state: ConversationState) -> tuple[int, int] | None:
    if turn.input_range is not None and turn.input_range[1] > turn.input_range[0]:
        return turn.input_range
    fmt = state.input_format
    if turn.audio_end_ms is not None:
        start = fmt.bytes_for_ms(turn.audio_start_ms or 0)
        end = fmt.bytes_for_ms(turn.audio_end_ms)
        if end > start:
            return start, end
    return None


def _first_output_s(r: Response) -> float | None:
    times = [t for t in (r.first_audio_t_ns, r.first_text_t_ns) if t is not None]
    return _s(min(times)) if times else None


def _answer_s(r: Response) -> float | None:
    """The first audio of a response, else its first output of any kind."""
    return _s(r.first_audio_t_ns) if r.first_audio_t_ns is not None else _first_output_s(r)


def compute(
    state: ConversationState,
    *,
    model: str | None = None,
    meta: Mapping[str, Any] | None = None,
    price: ModelPrice | None = None,
    transcript_t_ns: Mapping[str, int] | None = None,
) -> SessionMetrics:
    """Every metric of ``state`` (see the module docstring).

    ``model`` defaults to :func:`session_model`; ``price`` to
    :func:`~realtime_nb.core.pricing.price_for` of the model (no price: costs are ``None``).
    ``transcript_t_ns``: user item id -> when its input transcription completed (the reducer's
    state does not keep that moment; a recording reads it from its events table).
    """
    model = model or session_model(state, meta)
    price = price or price_for(model)
    clock = _InputClock(state.input_chunk_times)
    played: dict[str, int] = {}
    tool_runs: dict[str, tuple[int, int | None, str]] = {}
    for t_ns, etype, data in state.local_events:
        if etype == "local.playback.started" and isinstance(data.get("item_id"), str):
            played.setdefault(data["item_id"], t_ns)
        elif etype == "local.tool.started" and isinstance(data.get("call_id"), str):
            tool_runs[data["call_id"]] = (t_ns, None, str(data.get("name") or "?"))
        elif etype == "local.tool.finished" and isinstance(data.get("call_id"), str):
            start, _, name = tool_runs.get(data["call_id"], (t_ns, None, str(data.get("name"))))
            tool_runs[data["call_id"]] = (start, t_ns, name)

    def cost(r: Response) -> float | None:
        return None if price is None else cost_of_usage(r.usage_raw, price)

    def calls(r: Response) -> tuple[str, ...]:
        out = []
        for item_id in r.output_item_ids:
            it = state.items_by_id.get(item_id)
            if it is not None and it.type == "function_call":
                out.append(it.name or "?")
        return tuple(out)

    views = turn_views(state)
    turn_of: dict[str, int] = {}
    turns: list[TurnMetrics] = []
    for view in views:
        t = view.turn
        for r in view.responses:
            turn_of[r.id] = t.index
        # The end of speech: when the chunk holding the last byte of the user's audio was sent.
        speech_end: float | None = None
        if t.kind == "text":
            speech_end = _s(t.text_t_ns)
        else:
            rng = _speech_range(t, state)
            if rng is not None:
                speech_end = clock.sent_s(rng[1] - 1)
        user = view.user_item
        transcript_s = None
        if user is not None and user.transcription_status == "completed" and transcript_t_ns:
            transcript_s = _s(transcript_t_ns.get(user.id))
        rs = view.responses
        audio_times = [r.first_audio_t_ns for r in rs if r.first_audio_t_ns is not None]
        output_times = [x for x in (_first_output_s(r) for r in rs) if x is not None]
        heard = None
        for it in view.outputs:
            if it.id in played:
                heard = played[it.id]
                break
        last = rs[-1] if rs else None
        usage = Usage()
        for r in rs:
            if r.usage is not None:
                usage = usage + r.usage
        costs = [cost(r) for r in rs]
        turns.append(
            TurnMetrics(
                index=t.index,
                kind=t.kind,
                item_id=t.item_id,
                speech_end_s=speech_end,
                speech_stopped_s=_s(t.speech_stopped_t_ns),
                committed_s=_s(t.committed_t_ns),
                transcript_s=transcript_s,
                response_created_s=_s(rs[0].created_t_ns) if rs else None,
                answer_created_s=(
                    _s(last.created_t_ns) if last is not None and len(rs) > 1 else None
                ),
                first_audio_s=_s(min(audio_times)) if audio_times else None,
                first_output_s=min(output_times) if output_times else None,
                answer_s=_answer_s(last) if last is not None else None,
                heard_s=_s(heard),
                done_s=_s(last.done_t_ns) if last is not None else None,
                response_ids=tuple(r.id for r in rs),
                tool_rounds=sum(1 for r in rs[:-1] if calls(r)),
                status=last.status if last is not None else None,
                usage=usage,
                cost_usd=None if price is None else sum(c or 0.0 for c in costs),
            )
        )
    responses = tuple(
        ResponseMetrics(
            id=r.id,
            status=r.status,
            turn=turn_of.get(r.id),
            created_s=_s(r.created_t_ns),
            first_audio_s=_s(r.first_audio_t_ns),
            done_s=_s(r.done_t_ns),
            usage=r.usage or Usage(),
            cost_usd=cost(r),
            tool_calls=calls(r),
        )
        for r in state.responses.values()
    )
    return SessionMetrics(
        model=model,
        priced=price is not None,
        turns=tuple(turns),
        responses=responses,
        usage=state.usage,
        user_speech=tuple(_user_speech(state, clock)),
        assistant_audio=tuple(_assistant_audio(state, played)),
        tool_calls=tuple(_tool_spans(state, tool_runs)),
        truncations=tuple(_truncations(state, played)),
    )


def _user_speech(state: ConversationState, clock: _InputClock) -> Iterable[Span]:
    for t in state.turns:
        label = f"turn {t.index}"
        if t.kind == "text":
            if t.text_t_ns is not None:
                yield Span(t.text_t_ns / _NS_PER_S, t.text_t_ns / _NS_PER_S, label, t.item_id)
            continue
        rng = _speech_range(t, state)
        a = clock.sent_s(rng[0]) if rng else None
        b = clock.sent_s(rng[1] - 1) if rng else None
        a = a if a is not None else _s(t.speech_started_t_ns)
        b = b if b is not None else _s(t.speech_stopped_t_ns or t.committed_t_ns)
        if a is not None and b is not None:
            yield Span(a, max(a, b), label, t.item_id)


def _assistant_audio(state: ConversationState, played: Mapping[str, int]) -> Iterable[Span]:
    cursor = 0.0
    spans = []
    for it in state.items_by_id.values():
        if it.first_audio_t_ns is None:
            continue
        start = (played.get(it.id) or it.first_audio_t_ns) / _NS_PER_S
        spans.append((start, it))
    for start, it in sorted(spans, key=lambda x: x[0]):
        start = max(start, cursor)
        heard = it.audio_end_ms_heard
        ms = min(it.output_audio_ms, heard) if heard is not None else it.output_audio_ms
        end = start + ms / _MS_PER_S
        cursor = end
        label = "cut" if it.truncated else "audio"
        yield Span(start, end, label, it.id, it.heard_text() or None)


def _tool_spans(
    state: ConversationState, runs: Mapping[str, tuple[int, int | None, str]]
) -> Iterable[Span]:
    seen = set()
    for call_id, (a, b, name) in runs.items():
        seen.add(call_id)
        yield Span(a / _NS_PER_S, (b if b is not None else a) / _NS_PER_S, name, call_id)
    for it in state.items_by_id.values():
        if it.type == "function_call" and it.call_id not in seen:
            t = it.done_t_ns or it.added_t_ns
            if t is not None:
                yield Span(t / _NS_PER_S, t / _NS_PER_S, it.name or "?", it.call_id)


def _truncations(state: ConversationState, played: Mapping[str, int]) -> Iterable[TimelineMark]:
    for span in _assistant_audio(state, played):
        if span.label == "cut" and span.ref is not None:
            it = state.items_by_id[span.ref]
            yield TimelineMark(span.end_s, f"cut at {(it.truncated_ms or 0) / 1000:.2f} s", it.id)
