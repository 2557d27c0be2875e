"""Events in, conversation state out: the one reducer behind live views, replay, diff and metrics.

:class:`Reducer` is pure: :meth:`Reducer.apply` takes one :class:`~realtime_nb.core.events.Event` and
updates :attr:`Reducer.state`; nothing else. The live session feeds it as events arrive, a
recording feeds it from disk, so the two can never disagree.

It reasons in GA terms (beta event and content-part names are mapped on the way in) and keeps
everything it does not understand: unknown event types and unknown fields are counted in
:attr:`ConversationState.unknown_types` / :attr:`ConversationState.unknown_fields` and the events
themselves stay in the recording.
"""

from __future__ import annotations

import bisect
import copy
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, islice
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from . import _schema_fields
from ._shapes import ShapeProblem, shape_problem
from .audio import AudioFormat
from .chunk_times import ChunkTimes
from .events import Event
from .protocol import (
    LOCAL_EVENT_TYPES,
    Source,
    canonical_part_type,
    canonical_type,
    deep_merge,
)

__all__ = [
    "Checkpoint",
    "Checkpointer",
    "ContentPart",
    "ConversationState",
    "ErrorRecord",
    "Item",
    "Reducer",
    "Response",
    "Turn",
    "Usage",
    "reduce",
]

JSON = dict[str, Any]
#: What the recorded events say of the connection (see :attr:`ConversationState.connection`).
ConnectionStatus = Literal["connecting", "connected", "closed", "error"]

#: How many missing content parts an event's ``content_index`` may skip over. Real servers count
#: parts from 0 without gaps; a few missing parts (events lost from a cut recording) are padded,
#: anything further is treated as "the next part" so that no number in an event drives work.
MAX_CONTENT_INDEX_GAP: Final = 16
#: A WebRTC output-track chunk played more than this many ms after the previous one of its item
#: ended follows a pause in playback (a page's player plays 20 ms frames back to back, so one
#: frame late is not a pause yet): the pause is kept as silence in the item's audio.
PLAYBACK_GAP_MS: Final = 20


def _copy_chunks(
    dest: memoryview, pos: int, chunks: Iterable[bytes | memoryview], limit: int | None = None
) -> int:
    """Copy ``chunks`` one after the other into ``dest`` from ``pos``, at most ``limit`` bytes
    of them; returns the end.

    Each chunk is copied once, straight into place: a memoryview slice assignment costs a
    fraction of a numpy one per chunk (a live session's timeline is one chunk per append), and
    joining short chunks first copied them twice.
    """
    stop = None if limit is None else pos + limit
    for chunk in chunks:
        end = pos + len(chunk)
        if stop is not None and end > stop:
            if pos >= stop:
                break
            chunk, end = memoryview(chunk)[: stop - pos], stop
        try:
            dest[pos:end] = chunk
        except (ValueError, TypeError):  # a view of signed bytes ('b', as Arrow's buffers)
            dest[pos:end] = memoryview(chunk).cast("B")
        pos = end
    return pos


class AudioTimeline:
    """Append-only audio bytes: chunks are kept as given and joined once, when read.

    Appending is O(1) with no copy (a bytearray would copy the whole timeline on every growth);
    reading joins the chunks once and caches the result.
    """

    __slots__ = ("_chunks", "_ends", "_len")

    def __init__(self) -> None:
        self._chunks: list[bytes | memoryview] = []
        self._ends: list[int] = []  # cumulative end offset of each chunk, for slicing
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iadd__(self, data: bytes | bytearray | memoryview) -> AudioTimeline:
        n = len(data)
        if n:
            self._chunks.append(data if not isinstance(data, bytearray) else bytes(data))
            self._len += n
            self._ends.append(self._len)
        return self

    def extend(self, pieces: Iterable[bytes | bytearray | memoryview]) -> None:
        """Append each piece in turn (as ``+=`` does), in one call."""
        add: list[Any] = list(pieces)
        # The pieces' types, a set made in C (usually one type): a reader's are never bytearrays.
        if any(issubclass(t, bytearray) for t in set(map(type, add))):
            add = [bytes(p) if isinstance(p, bytearray) else p for p in add]
        sizes = list(map(len, add))
        if 0 in sizes:
            add = [p for p in add if len(p)]
            sizes = [n for n in sizes if n]
        if add:
            self._chunks.extend(add)
            ends = list(accumulate(sizes, initial=self._len))
            self._ends.extend(ends[1:])
            self._len = ends[-1]

    def tobytes(self) -> bytes:
        """All audio so far, as one bytes object (joined on first use after an append)."""
        chunks = self._chunks
        if not chunks:
            return b""
        if len(chunks) != 1 or not isinstance(chunks[0], bytes):
            joined = b"".join(chunks)
            self._chunks = [joined]
            self._ends = [self._len]
            return joined
        return chunks[0]

    __bytes__ = tobytes

    def array(self) -> npt.NDArray[np.uint8]:
        """All audio so far as one read-only numpy array of bytes (``.view("<i2")`` for PCM16),
        joined on first use after an append, like :meth:`tobytes`.

        Faster than :meth:`tobytes` for long audio: numpy backs a large array with huge pages,
        which the process fills two to three times faster than the small pages a ``bytes`` object
        gets (an hour of microphone audio in 90,000 chunks: 0.08 s against 0.19 s).
        """
        chunks = self._chunks
        if not chunks:
            return np.zeros(0, np.uint8)
        if len(chunks) == 1:
            view = np.frombuffer(chunks[0], np.uint8)
            view.flags.writeable = False  # a memoryview appended may be of writable memory
            return view
        out = np.empty(self._len, np.uint8)
        _copy_chunks(out.data, 0, chunks)
        out.flags.writeable = False
        self._chunks = [out.data]
        self._ends = [self._len]
        return out

    def __getitem__(self, index: slice) -> bytes:
        """Bytes ``[start:stop]`` (step 1), touching only the chunks that overlap."""
        start, stop, step = index.indices(self._len)
        if step != 1:
            return self.tobytes()[index]
        if stop <= start:
            return b""
        first = bisect.bisect_right(self._ends, start)
        out = []
        pos = self._ends[first - 1] if first else 0
        for k in range(first, len(self._chunks)):
            chunk = self._chunks[k]
            end = self._ends[k]
            out.append(chunk[max(start - pos, 0) : min(stop, end) - pos])
            if end >= stop:
                break
            pos = end
        return b"".join(out)

    def head(self, n: int) -> AudioTimeline:
        """The first ``n`` bytes as a new timeline that shares this one's chunks (no copy)."""
        clone = AudioTimeline()
        n = min(max(n, 0), self._len)
        if not n:
            return clone
        k = bisect.bisect_left(self._ends, n)  # the chunk holding byte n - 1
        chunks = self._chunks[: k + 1]
        ends = self._ends[: k + 1]
        if ends[k] > n:
            start = ends[k - 1] if k else 0
            chunks[k] = memoryview(chunks[k])[: n - start]
            ends[k] = n
        clone._chunks, clone._ends, clone._len = chunks, ends, n
        return clone

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AudioTimeline):
            return self.tobytes() == other.tobytes()
        if isinstance(other, (bytes, bytearray, memoryview)):
            return self.tobytes() == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __deepcopy__(self, memo: dict[int, Any]) -> AudioTimeline:
        clone = AudioTimeline()
        clone += self.tobytes()  # bytes are immutable: sharing them is a deep copy
        return clone

    def __repr__(self) -> str:
        return f"<AudioTimeline {self._len} bytes>"


@dataclass
class ContentPart:
    """One content part of an item (``input_text``, ``input_audio``, ``output_audio``, ...)."""

    type: str
    text: str | None = None
    transcript: str | None = None
    #: Output audio as received, chunk by chunk (joined on demand by :meth:`output_audio`).
    #: A recording read back keeps read-only views of its file here (``memoryview``), not
    #: copies: use them as bytes-like objects (``bytes(chunk)`` for a copy).
    audio_chunks: list[bytes | memoryview] = field(default_factory=list)
    #: Input audio: a byte range of the session's input timeline (see ConversationState).
    input_range: tuple[int, int] | None = None
    image_url: str | None = None
    #: Audio carried inline in the item (``conversation.item.create`` with ``input_audio``).
    inline_audio: bytes | None = None
    #: The output audio is what the listener's player played (a WebRTC call's output track,
    #: ``local.track.output``), not what the server sent: it is what was heard, nothing to cut.
    played: bool = False
    extra: JSON = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._joined: bytes | None = None
        self._joined_n = 0

    @property
    def audio_bytes(self) -> int:
        if self.inline_audio is not None:
            return len(self.inline_audio)
        if self.input_range is not None:
            return self.input_range[1] - self.input_range[0]
        return sum(map(len, self.audio_chunks))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (and copied) with its audio chunks as ``bytes``: a view cannot be."""
        state = self.__dict__.copy()
        state["audio_chunks"] = [
            bytes(c) if type(c) is memoryview else c for c in self.audio_chunks
        ]
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> ContentPart:
        """A deep copy whose audio chunks are all ``bytes`` (a view of a file cannot be
        copied as such; bytes are immutable, so sharing them is a deep copy)."""
        clone = _copy_part(self)
        memo[id(self)] = clone
        clone.audio_chunks = [bytes(c) if type(c) is memoryview else c for c in self.audio_chunks]
        clone.extra = copy.deepcopy(self.extra, memo)
        return clone

    def output_audio(self) -> bytes:
        """The output audio received for this part, joined (cached until more arrives)."""
        if self._joined is None or self._joined_n != len(self.audio_chunks):
            self._joined = b"".join(self.audio_chunks)
            self._joined_n = len(self.audio_chunks)
        return self._joined


@dataclass
class Item:
    """A conversation item and everything the events said about it."""

    id: str
    type: str = "message"
    role: str | None = None
    status: str | None = None
    previous_item_id: str | None = None
    content: list[ContentPart] = field(default_factory=list)
    # function_call / function_call_output / mcp_*
    name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    output: str | None = None
    response_id: str | None = None
    #: Out-of-band items (``conversation: "none"``) belong to a response, not to the conversation.
    in_conversation: bool = True
    deleted: bool = False
    #: ``audio_end_ms`` of a confirmed truncation (``conversation.item.truncated``).
    truncated_ms: int | None = None
    #: ``audio_end_ms`` requested by the client (``conversation.item.truncate``).
    truncate_requested_ms: int | None = None
    #: Milliseconds the listener actually heard (``local.playback.played``).
    played_ms: float | None = None
    #: Input transcription: ``None`` (not requested), ``in_progress``, ``completed``, ``failed``.
    transcription_status: str | None = None
    transcription_error: JSON | None = None
    #: Where a user audio item sits on the input timeline, from the VAD/commit events.
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    added_t_ns: int | None = None
    done_t_ns: int | None = None
    #: When the item's first output audio delta arrived.
    first_audio_t_ns: int | None = None
    #: Bytes per millisecond of the item's output audio: the session's output format when its
    #: first audio delta arrived (PCM16 24 kHz until a session event says otherwise).
    output_bytes_per_ms: float = 48.0
    #: The latest full item object as received, unknown fields included.
    raw: JSON = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.truncated_ms is not None

    @property
    def transcript(self) -> str:
        """The spoken words of the item (audio transcripts joined)."""
        return "".join(p.transcript or "" for p in self.content if p.transcript)

    @property
    def text(self) -> str:
        """What the item says, as text: message text or transcript, call arguments or output."""
        if self.type == "function_call":
            return f"{self.name}({self.arguments or ''})"
        if self.type == "function_call_output":
            return self.output or ""
        parts = [p.text if p.text is not None else (p.transcript or "") for p in self.content]
        return "".join(parts)

    def heard_text(self) -> str:
        """The text up to the truncation point (estimated by the fraction of audio heard).

        The API cuts the transcript of a truncated item server-side but does not say where; this
        estimate assumes words are spread evenly over the audio.
        """
        text = self.text
        if self.truncated_ms is None:
            return text
        total = self.output_audio_ms
        if total <= 0:
            return text
        cut = int(len(text) * min(1.0, self.truncated_ms / total))
        return text[:cut]

    def audio_part(self) -> ContentPart | None:
        for p in self.content:
            if p.type in ("output_audio", "input_audio"):
                return p
        return None

    @property
    def output_audio_ms(self) -> float:
        part = self.audio_part()
        if part is None or part.type != "output_audio":
            return 0.0
        return part.audio_bytes / self.output_bytes_per_ms

    @property
    def audio_end_ms_heard(self) -> float | None:
        """Where playback of this item stopped: truncation, else the played ms, else ``None``.
        Audio that is the played track itself (a WebRTC call) stopped where it ends."""
        part = self.audio_part()
        if part is not None and part.played and self.played_ms is not None:
            return self.played_ms
        marks = [m for m in (self.truncated_ms, self.played_ms) if m is not None]
        return float(min(marks)) if marks else None


@dataclass
class Usage:
    """Token counts of one ``response.done`` (or a sum of several)."""

    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    cached_tokens: int = 0
    cached_text_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        """From a ``response.usage`` object; missing or odd fields count as zero."""
        if not isinstance(usage, dict):
            return cls()

        def num(d: Any, key: str) -> int:
            return (_int(d.get(key)) or 0) if isinstance(d, dict) else 0

        ind = usage.get("input_token_details") or {}
        outd = usage.get("output_token_details") or {}
        cached = ind.get("cached_tokens_details") if isinstance(ind, dict) else None
        return cls(
            total_tokens=num(usage, "total_tokens"),
            input_tokens=num(usage, "input_tokens"),
            output_tokens=num(usage, "output_tokens"),
            input_text_tokens=num(ind, "text_tokens"),
            input_audio_tokens=num(ind, "audio_tokens"),
            input_image_tokens=num(ind, "image_tokens"),
            cached_tokens=num(ind, "cached_tokens"),
            cached_text_tokens=num(cached, "text_tokens"),
            cached_audio_tokens=num(cached, "audio_tokens"),
            cached_image_tokens=num(cached, "image_tokens"),
            output_text_tokens=num(outd, "text_tokens"),
            output_audio_tokens=num(outd, "audio_tokens"),
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Response:
    """A model response: status, output items, usage and timings."""

    id: str
    status: str | None = None
    status_details: JSON | None = None
    output_item_ids: list[str] = field(default_factory=list)
    usage: Usage | None = None
    #: The usage object as received (in the response, or beside it in the event), unknown
    #: fields included: what pricing reads.
    usage_raw: JSON | None = None
    conversation_id: str | None = None
    output_modalities: list[str] | None = None
    metadata: JSON | None = None
    out_of_band: bool = False
    created_t_ns: int | None = None
    first_audio_t_ns: int | None = None
    first_text_t_ns: int | None = None
    done_t_ns: int | None = None
    raw: JSON = field(default_factory=dict)

    @property
    def cancel_reason(self) -> str | None:
        d = self.status_details or {}
        reason = d.get("reason") if isinstance(d, dict) else None
        return str(reason) if reason is not None else None

    @property
    def done(self) -> bool:
        return self.done_t_ns is not None


@dataclass
class Turn:
    """A user turn: speech (VAD), a manual commit, or a text message, and the response it got."""

    index: int
    kind: str  # "vad" | "commit" | "text"
    item_id: str | None = None
    speech_started_t_ns: int | None = None
    speech_stopped_t_ns: int | None = None
    committed_t_ns: int | None = None
    text_t_ns: int | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    response_id: str | None = None
    first_audio_t_ns: int | None = None
    first_output_t_ns: int | None = None
    #: Byte range of the committed audio on the session's input timeline.
    input_range: tuple[int, int] | None = None

    @property
    def end_t_ns(self) -> int | None:
        """When the user finished: speech stopped, else commit, else the text was added."""
        for t in (self.speech_stopped_t_ns, self.committed_t_ns, self.text_t_ns):
            if t is not None:
                return t
        return None


@dataclass
class ErrorRecord:
    """A server ``error`` event or a ``*.failed`` event, in plain fields."""

    t_ns: int
    event_type: str
    type: str | None
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None
    item_id: str | None = None

    def __str__(self) -> str:
        where = f" (param {self.param})" if self.param else ""
        code = f"{self.code}: " if self.code else ""
        return f"{self.event_type}: {code}{self.message}{where}"


@dataclass
class ConversationState:
    """Everything known about a session after some events. Built only by :class:`Reducer`."""

    items_by_id: dict[str, Item] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    responses: dict[str, Response] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    #: The session object from the latest ``session.created``/``session.updated``.
    session: JSON = field(default_factory=dict)
    #: Every ``session`` body the client sent, merged in order (what was asked for).
    requested_session: JSON = field(default_factory=dict)
    conversation_id: str | None = None
    input_format: AudioFormat = field(default_factory=AudioFormat)
    output_format: AudioFormat = field(default_factory=AudioFormat)
    #: All input audio sent, in order: the input timeline (byte offsets are ms * bytes_per_ms).
    input_audio: AudioTimeline = field(default_factory=AudioTimeline)
    #: Byte offset on the input timeline where the uncommitted buffer starts.
    input_buffer_start: int = 0
    #: Where each input chunk sits: (t_ns when sent, byte offset on the input timeline).
    input_chunk_times: ChunkTimes = field(default_factory=ChunkTimes)
    active_response_id: str | None = None
    event_count: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    unknown_types: Counter[str] = field(default_factory=Counter)
    unknown_fields: Counter[str] = field(default_factory=Counter)
    #: Server events ignored because a field they carry has the wrong type, by event type (each
    #: type+problem is also reported once, as an error: ``local.protocol.invalid_event``).
    invalid_events: Counter[str] = field(default_factory=Counter)
    last_t_ns: int = 0
    #: Local events (mic on/off, playback, tool runs), as (t_ns, type, data).
    local_events: list[tuple[int, str, JSON]] = field(default_factory=list)
    #: The data of the latest ``local.connection.closed`` (code, reason, initiated_by, clean).
    connection_closed: JSON | None = None
    #: The connection as the local events and ``session.created`` tell it: ``connecting`` (no
    #: session yet), ``connected``, ``closed`` (by the client) or ``error`` (failed or lost).
    connection: ConnectionStatus = "connecting"
    #: What the reducer had to decide for itself because the events did not say it in a way it
    #: understands (an unrecognised audio format name, for example), one line each, in order.
    warnings: list[str] = field(default_factory=list)

    @property
    def items(self) -> list[Item]:
        """Conversation items in conversation order (deleted and out-of-band ones excluded)."""
        by_id = self.items_by_id
        return [by_id[i] for i in self.order if not by_id[i].deleted]

    def item(self, item_id: str) -> Item:
        """The item with this id. Raises ``KeyError`` naming the id and the known ones."""
        try:
            return self.items_by_id[item_id]
        except KeyError:
            known = ", ".join(list(self.items_by_id)[:10]) or "none"
            raise KeyError(f"no item {item_id!r} in this conversation (known: {known})") from None

    @property
    def duration_s(self) -> float:
        return self.last_t_ns / 1e9

    @property
    def input_ms(self) -> float:
        return self.input_format.duration_ms(len(self.input_audio))

    def output_arrays(
        self, heard: bool = False, items: Iterable[str] | None = None
    ) -> dict[str, npt.NDArray[np.uint8]]:
        """The output audio of conversation items, by item id: what :meth:`item_audio` gives
        (``heard=True``: cut where the listener stopped hearing it).

        Args:
            heard: cut each where it was heard.
            items: which items, in this order (any known id; those with no output audio are
                left out). Default: every conversation item, in conversation order.

        Each is a read-only numpy view (bytes: ``.view("<i2")`` for PCM16) of one array that
        holds exactly them, one after the other in that order: one allocation for all, where
        joining each item's audio (:meth:`ContentPart.output_audio`) makes one per item, and
        a process that has not just freed as much memory faults in every page of each (an
        hour of replies in 180 items: 0.05 s against 0.02 s here). Made anew on each call.
        """
        chosen = self.items if items is None else [self.item(i) for i in items]
        parts = []
        for item in chosen:
            part = item.audio_part()
            if part is not None and part.type == "output_audio":
                chunks = part.audio_chunks if part.inline_audio is None else [part.inline_audio]
                size = sum(map(len, chunks))
                cut = self._heard_bytes(item, part) if heard else None
                if cut is not None:
                    size = len(range(size)[:cut])  # as bytes[:cut] would
                parts.append((item.id, chunks, size))
        out = np.empty(sum(size for _, _, size in parts), np.uint8)
        dest = out.data
        spans = []
        pos = 0
        for item_id, chunks, size in parts:
            _copy_chunks(dest, pos, chunks, size)
            spans.append((item_id, pos, pos + size))
            pos += size
        out.flags.writeable = False  # before the views are made: they inherit it
        return {item_id: out[start:end] for item_id, start, end in spans}

    def _heard_bytes(self, item: Item, part: ContentPart) -> int | None:
        """How many bytes of an output part the listener heard (``None``: all of it)."""
        if part.type != "output_audio" or part.played:
            return None
        end_ms = item.audio_end_ms_heard
        return None if end_ms is None else self.output_format.bytes_for_ms(end_ms)

    def input_audio_between(self, start_byte: int, end_byte: int) -> bytes:
        return self.input_audio[start_byte:end_byte]

    def item_audio(self, item_id: str, heard: bool = False) -> bytes:
        """An item's audio bytes (input or output format); ``heard=True`` cuts at truncation."""
        item = self.item(item_id)
        part = item.audio_part()
        if part is None:
            return b""
        if part.inline_audio is not None:
            data = part.inline_audio
        elif part.input_range is not None:
            data = self.input_audio_between(*part.input_range)
        else:
            data = part.output_audio()
        cut = self._heard_bytes(item, part) if heard else None
        return data if cut is None else data[:cut]

    def snapshot(self) -> ConversationState:
        """A deep copy (for views that must not see later events)."""
        return copy.deepcopy(self)


class Reducer:
    """Folds events into a :class:`ConversationState`. Feed it with :meth:`apply`.

    The reducer is not thread-safe by itself; the session applies events on its I/O thread and
    readers take :meth:`ConversationState.snapshot` or read under the session's lock.
    """

    def __init__(self) -> None:
        self.state = ConversationState()
        self._pending_turn: Turn | None = None
        self._turn_by_item: dict[str, Turn] = {}
        self._awaiting_response: list[Turn] = []
        # Indexes over the state, so that a long session's events cost the same as a short one's:
        # the ids in ``state.order``, and the turns by the response they got.
        self._placed: set[str] = set()
        self._turns_by_response: dict[str, list[Turn]] = {}
        #: What changed since the last checkpoint, kept only while a :class:`Checkpointer`
        #: watches this reducer (``None`` otherwise: nothing to pay when nobody asks).
        self._changes: _Changes | None = None

    # -- entry points ----------------------------------------------------------------------------

    def apply_all(self, events: Iterable[Event]) -> ConversationState:
        for ev in events:
            self.apply(ev)
        return self.state

    def apply(self, ev: Event) -> ShapeProblem | None:
        """Update the state with one event. Never raises on odd input: what it cannot use, it
        counts (``unknown_types``/``unknown_fields``) and leaves in the recording.

        Returns what is wrong with a server event whose fields do not have the types its type
        promises (:func:`~realtime_nb.core._shapes.shape_problem`); such an event changes
        nothing but :attr:`ConversationState.invalid_events` and the event counts.
        """
        st = self.state
        st.event_count += 1
        st.last_t_ns = ev.t_ns if ev.t_ns > st.last_t_ns else st.last_t_ns
        etype = ev.type
        # Hot path first: audio appends and deltas are >90 % of a session's events and need no
        # JSON parsing (the ids and the audio are columns of the recording).
        if etype == "input_audio_buffer.append" and ev.source is Source.CLIENT:
            st.counts[etype] += 1
            if ev.audio is not None:
                st.input_chunk_times.add(ev.t_ns, len(st.input_audio))
                st.input_audio += ev.audio
            else:  # audio kept inline (not canonical base64): decode it now
                self._append_inline_input(ev)
            return None
        t = canonical_type(etype)
        st.counts[t] += 1
        if t == "response.output_audio.delta" and ev.audio is not None:
            self._audio_delta(ev)  # reads only the recorded ids and audio: nothing to check
            return None
        handler = _HANDLERS.get(t)
        data = ev.data
        if handler is None:
            if ev.source is Source.LOCAL or t in LOCAL_EVENT_TYPES:
                st.local_events.append((ev.t_ns, t, data))
                if t == "local.playback.played":
                    self._played(data)
                elif t in _LOCAL_HANDLERS:
                    _LOCAL_HANDLERS[t](self, ev, data)
            elif ev.source is Source.SERVER or ev.source is Source.CLIENT:
                known = (
                    _schema_fields.SERVER if ev.source is Source.SERVER else _schema_fields.CLIENT
                )
                if t not in known:
                    st.unknown_types[etype] += 1
            return None
        if ev.source is Source.SERVER:
            # Before anything reads it: a field of the wrong type (a string where an object is
            # promised, NaN milliseconds) must not become a crash, or a loop driven by a number.
            problem = shape_problem(t, data)
            if problem is not None:
                st.invalid_events[t] += 1
                return problem
        known_fields = (
            _schema_fields.SERVER if ev.source is Source.SERVER else _schema_fields.CLIENT
        ).get(t)
        # The common case, every field known, checked in C; the fields are named only if not.
        if known_fields is not None and not known_fields.issuperset(data):
            for k in data:
                if k not in known_fields:
                    st.unknown_fields[f"{t}.{k}"] += 1
        handler(self, ev, data)
        return None

    def apply_input_run(self, t_ns: Sequence[int], offsets: Sequence[int], audio: Any) -> None:
        """Apply a run of consecutive client ``input_audio_buffer.append`` events at once.

        Exactly what :meth:`apply` does for each of them (their audio appended to the input
        timeline, each chunk's send time noted), done in bulk: a recording read back is >80 %
        appends, and this keeps reading a 60-minute session well under a second.

        Args:
            t_ns: each event's time (n values).
            offsets: where each event's audio starts in ``audio``, plus its end (n + 1 values).
            audio: a buffer holding the run's audio from ``offsets[0]`` to ``offsets[-1]``.
        """
        st = self.state
        n = len(t_ns)
        if not n:
            return
        st.event_count += n
        st.counts["input_audio_buffer.append"] += n
        shift = len(st.input_audio) - offsets[0]
        st.input_chunk_times.extend_arrays(t_ns, [shift + off for off in offsets[:n]])
        st.input_audio += audio[offsets[0] : offsets[n]]
        last = max(t_ns)
        if last > st.last_t_ns:
            st.last_t_ns = last

    def apply_input_pieces(
        self,
        t_ns: Sequence[int] | npt.NDArray[np.int64],
        offsets: Sequence[int] | npt.NDArray[np.int64],
        pieces: Iterable[Any],
    ) -> None:
        """Apply consecutive client ``input_audio_buffer.append`` events at once, their audio
        given as a few buffers rather than one per event.

        Exactly what :meth:`apply` does for each of them in turn. For a reader whose events'
        audio lies in stretches of a file: appends interleaved with reply audio are many short
        runs, and this takes them all in one call.

        Args:
            t_ns: each event's time (n values).
            offsets: where each event's audio starts, plus the end of the last (n + 1 values,
                on any origin: a reader computes them once for all its appends). Numpy int64
                arrays go through without a Python loop.
            pieces: buffers whose concatenation is the n events' audio, in order.
        """
        st = self.state
        n = len(t_ns)
        if not n:
            return
        st.event_count += n
        st.counts["input_audio_buffer.append"] += n
        shift = len(st.input_audio) - int(offsets[0])
        if isinstance(offsets, np.ndarray):
            starts: Any = offsets[:n] + shift
        else:
            starts = [off + shift for off in offsets[:n]]
        st.input_chunk_times.extend_arrays(t_ns, starts)
        st.input_audio.extend(pieces)
        last = int(t_ns.max()) if isinstance(t_ns, np.ndarray) else max(t_ns)
        if last > st.last_t_ns:
            st.last_t_ns = last

    def apply_output_run(
        self,
        item_id: str,
        response_id: str | None,
        t_ns: Sequence[int],
        chunks: Sequence[bytes | memoryview],
    ) -> None:
        """Apply consecutive ``response.output_audio.delta`` events (either spelling) of one item
        and one ``response_id``, each with its audio, at once.

        Exactly what :meth:`apply` does for each of them in turn, when no other event comes
        between them (client audio appends may: they touch no item or response).

        Args:
            item_id: the events' ``item_id``.
            response_id: their ``response_id`` (``None``: the item's own).
            t_ns: each event's time (n values).
            chunks: each event's audio (n values).
        """
        st = self.state
        n = len(t_ns)
        if not n:
            return
        st.event_count += n
        st.counts["response.output_audio.delta"] += n
        last = max(t_ns)
        if last > st.last_t_ns:
            st.last_t_ns = last
        it = self._item(item_id)
        part = self._output_audio_part(it)
        part.audio_chunks.extend(chunks)
        first = t_ns[0]
        if it.first_audio_t_ns is None:
            it.first_audio_t_ns = first
            it.output_bytes_per_ms = st.output_format.bytes_per_ms
        rid = response_id or it.response_id
        if rid is not None:
            resp = self._response(rid)
            if resp is not None and resp.first_audio_t_ns is None:
                resp.first_audio_t_ns = first
                self._first_output(resp, first, audio=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _append_inline_input(self, ev: Event) -> None:
        from .audio import b64decode_audio

        b64 = ev.data.get("audio")
        if isinstance(b64, str):
            try:
                audio = b64decode_audio(b64)
            except ValueError:
                self.state.errors.append(
                    ErrorRecord(
                        ev.t_ns, ev.type, "client_error", "invalid_audio", "audio is not base64"
                    )
                )
                return
            self.state.input_chunk_times.add(ev.t_ns, len(self.state.input_audio))
            self.state.input_audio += audio

    def _item(self, item_id: str) -> Item:
        it = self.state.items_by_id.get(item_id)
        if it is None:
            it = Item(id=item_id)
            self.state.items_by_id[item_id] = it
        if self._changes is not None:
            self._changes.items.add(item_id)
        return it

    def _response(self, response_id: str) -> Response | None:
        """The response with this id, if known (every change to a response goes through here)."""
        resp = self.state.responses.get(response_id)
        if resp is not None and self._changes is not None:
            self._changes.responses.add(response_id)
        return resp

    def _touch_turn(self, turn: Turn) -> Turn:
        """Note that ``turn`` is about to change (for checkpoints; see :class:`Checkpointer`)."""
        if self._changes is not None:
            self._changes.turns.add(turn.index)
        return turn

    def _bind_turn(self, item_id: str, turn: Turn) -> None:
        self._turn_by_item[item_id] = turn
        if self._changes is not None:
            self._changes.turn_keys.add(item_id)

    def _update_item(self, it: Item, obj: JSON, t_ns: int) -> None:
        """Merge an item object as received into our Item (later events refine earlier ones)."""
        it.raw = {**it.raw, **obj}
        for key in ("type", "status", "name", "call_id"):
            v = obj.get(key)
            if isinstance(v, str):
                setattr(it, key, v)
        # A role belongs to messages. Some providers put one on function calls too (xAI: "user"
        # in response.output_item.*, "tool" in conversation.item.added); it stays in ``raw`` but
        # must not make a call read as somebody's utterance.
        role = obj.get("role")
        if isinstance(role, str):
            it.role = role if it.type == "message" else None
        args = obj.get("arguments")
        if isinstance(args, str) and (args or not it.arguments):
            it.arguments = args
        out = obj.get("output")
        if isinstance(out, str):
            it.output = out
        content = obj.get("content")
        if isinstance(content, list):
            for idx, part_obj in enumerate(content):
                if not isinstance(part_obj, dict):
                    continue
                part = self._part(it, idx, part_obj.get("type"))
                self._update_part(part, part_obj)
        if it.added_t_ns is None:
            it.added_t_ns = t_ns

    def _part(self, it: Item, index: Any, part_type: Any) -> ContentPart:
        idx = index if isinstance(index, int) and index >= 0 else len(it.content)
        if idx > len(it.content) + MAX_CONTENT_INDEX_GAP:
            # An index far past the parts we have (a hostile or broken event): one new part, not
            # a loop driven by a number in the event.
            note = f"item {it.id}: content_index {idx} far past its {len(it.content)} parts"
            if note not in self.state.warnings:
                self.state.warnings.append(note)
            idx = len(it.content)
        while len(it.content) <= idx:
            it.content.append(ContentPart(type="unknown"))
        part = it.content[idx]
        ptype = canonical_part_type(part_type) if isinstance(part_type, str) else None
        if (ptype and part.type == "unknown") or (
            ptype and ptype != part.type and ptype == "output_audio"
        ):
            part.type = ptype
        return part

    def _update_part(self, part: ContentPart, obj: JSON) -> None:
        text = obj.get("text")
        if isinstance(text, str) and (text or part.text is None):
            part.text = text
        tr = obj.get("transcript")
        if isinstance(tr, str) and (tr or part.transcript is None):
            part.transcript = tr
        url = obj.get("image_url")
        if isinstance(url, str):
            part.image_url = url
        audio = obj.get("audio")
        if isinstance(audio, str) and audio and part.inline_audio is None:
            from .audio import b64decode_audio

            try:
                part.inline_audio = b64decode_audio(audio)
            except ValueError:
                part.extra["audio_invalid"] = True
        for k, v in obj.items():
            if k not in ("type", "text", "transcript", "image_url", "audio"):
                part.extra[k] = v

    def _place(self, item_id: str, data: JSON) -> None:
        """Put an item in conversation order from ``previous_item_id``.

        An id we know places the item right after it, and ``"root"`` places it first (the
        client's way of inserting at the start). Anything else is "no position given" and
        appends: an absent key, an unknown id, and ``null``, which OpenAI sends only for the first
        item but other providers (xAI) send on every item.
        """
        order = self.state.order
        if item_id in self._placed:
            return
        self._placed.add(item_id)
        prev = data.get("previous_item_id")
        if isinstance(prev, str):
            if prev in self._placed:
                # Usually the last item: searched from the end (ids in the order are unique).
                i = len(order) - 1
                while order[i] != prev:
                    i -= 1
                order.insert(i + 1, item_id)
                return
            if prev == "root":
                order.insert(0, item_id)
                return
        order.append(item_id)

    def _turn_for_new_input(self, kind: str) -> Turn:
        st = self.state
        turn = Turn(index=len(st.turns), kind=kind)
        st.turns.append(turn)
        return turn

    def _played(self, data: JSON) -> None:
        item_id = data.get("item_id")
        ms = data.get("played_ms")
        if isinstance(item_id, str) and isinstance(ms, (int, float)) and math.isfinite(ms):
            self._item(item_id).played_ms = float(ms)

    def _output_audio_part(self, it: Item) -> ContentPart:
        """The item's output audio part, made when its first audio comes."""
        for p in it.content:
            if p.type == "output_audio":
                return p
        return self._part(it, None, "output_audio")

    def _audio_delta(self, ev: Event) -> None:
        st = self.state
        item_id = ev.item_id
        if item_id is None:
            return
        it = self._item(item_id)
        part = self._output_audio_part(it)
        assert ev.audio is not None
        part.audio_chunks.append(ev.audio)
        if it.first_audio_t_ns is None:
            it.first_audio_t_ns = ev.t_ns
            it.output_bytes_per_ms = st.output_format.bytes_per_ms
        rid = ev.response_id or it.response_id
        if rid is not None:
            resp = self._response(rid)
            if resp is not None and resp.first_audio_t_ns is None:
                resp.first_audio_t_ns = ev.t_ns
                self._first_output(resp, ev.t_ns, audio=True)

    def _first_output(self, resp: Response, t_ns: int, audio: bool) -> None:
        if resp.first_text_t_ns is None and not audio:
            resp.first_text_t_ns = t_ns
        for turn in self._turns_by_response.get(resp.id, ()):
            if turn.response_id == resp.id:  # not since given to a later response
                self._touch_turn(turn)
                if audio and turn.first_audio_t_ns is None:
                    turn.first_audio_t_ns = t_ns
                if turn.first_output_t_ns is None:
                    turn.first_output_t_ns = t_ns

    def _error(self, ev: Event, err: Any, item_id: str | None = None) -> None:
        e = err if isinstance(err, dict) else {"message": str(err)}
        self.state.errors.append(
            ErrorRecord(
                t_ns=ev.t_ns,
                event_type=ev.type,
                type=_str(e.get("type")),
                code=_str(e.get("code")),
                message=str(e.get("message") or e.get("code") or "unknown error"),
                param=_str(e.get("param")),
                event_id=_str(e.get("event_id")),
                item_id=item_id,
            )
        )

    # -- local events: the connection and the tools, as the client recorded them -------------------

    def _local_error(self, ev: Event, kind: str, message: str) -> None:
        self.state.errors.append(ErrorRecord(ev.t_ns, ev.type, kind, kind, message))

    def on_connection_opened(self, ev: Event, data: JSON) -> None:
        self.state.connection = "connecting"

    def on_connection_reconnecting(self, ev: Event, data: JSON) -> None:
        """The client will connect again by itself: the session goes on (requests wait)."""
        self.state.connection = "connecting"

    def on_connection_failed(self, ev: Event, data: JSON) -> None:
        self.state.connection = "error"
        message = data.get("message") or f"could not connect to {data.get('url') or 'the server'}"
        self._local_error(ev, "connection_failed", str(message))

    def on_connection_closed(self, ev: Event, data: JSON) -> None:
        """A close the client asked for ends the connection; any other (the server's, the
        network's, or a cassette's close that was not ``ok``) is an error."""
        st = self.state
        st.connection_closed = data
        by = data.get("initiated_by")
        if by == "client" or (by is None and data.get("ok") is True):
            st.connection = "closed"
            return
        st.connection = "error"
        message = data.get("message")
        if not isinstance(message, str):
            message = f"connection lost: code {data.get('code')}"
            if data.get("reason"):
                message += f", reason {data.get('reason')!r}"
        self._local_error(ev, "connection_closed", message)

    def on_session_closed(self, ev: Event, data: JSON) -> None:
        self.state.connection = "closed"

    def on_tool_finished(self, ev: Event, data: JSON) -> None:
        error = data.get("error")
        if error:
            self._local_error(ev, "tool_error", f"{data.get('name')}: {error}")

    def on_invalid_event(self, ev: Event, data: JSON) -> None:
        """A server event the client ignored for its shape (reported once per type+problem)."""
        message = data.get("message") or f"{data.get('event_type')}: {data.get('problem')}"
        self.state.errors.append(ErrorRecord(
            ev.t_ns, ev.type, "invalid_event", "invalid_event", str(message),
            param=_str(data.get("field")), event_id=_str(data.get("event_id")),
        ))  # fmt: skip

    # -- handlers (one per canonical type) -------------------------------------------------------

    def on_session(self, ev: Event, data: JSON) -> None:
        st = self.state
        if ev.source is Source.SERVER and (
            ev.type == "session.created"
            # A WebRTC call's sideband gets no session.created: its first session event says
            # the socket is attached to a live session.
            or (ev.type == "session.updated" and st.connection == "connecting")
        ):
            st.connection = "connected"
        sess = data.get("session")
        if not isinstance(sess, dict):
            return
        if ev.source is Source.CLIENT:
            st.requested_session = deep_merge(st.requested_session, sess)
        else:
            st.session = sess
        # The nested GA format wins over a flat beta-era field in the same session object: some
        # providers (xAI) send both, the flat one as a placeholder ("not specified").
        audio = sess.get("audio")
        audio = audio if isinstance(audio, dict) else {}
        for direction in ("input", "output"):
            nested = audio.get(direction)
            fmt = nested.get("format") if isinstance(nested, dict) else None
            where = f"session.audio.{direction}.format"
            if fmt is None:
                fmt = sess.get(f"{direction}_audio_format")
                where = f"session.{direction}_audio_format"
            if fmt is not None:
                self._set_format(ev, direction, fmt, where)

    def _set_format(self, ev: Event, direction: str, fmt: Any, where: str) -> None:
        """Adopt a format the session names; keep the current one (and say so) when the name is
        not one we know, rather than re-timing every byte of audio on a guess."""
        st = self.state
        parsed = AudioFormat.parse(fmt)
        current = st.input_format if direction == "input" else st.output_format
        if parsed is None:
            note = (
                f"{ev.type}: {where} {fmt!r} is not an audio format realtime_nb knows "
                f"(audio/pcm, audio/pcmu, audio/pcma, pcm16, g711_ulaw, g711_alaw); "
                f"{direction} audio kept as {current}"
            )
            if note not in st.warnings:
                st.warnings.append(note)
        elif direction == "input":
            st.input_format = parsed
        else:
            st.output_format = parsed

    def on_conversation_created(self, ev: Event, data: JSON) -> None:
        conv = data.get("conversation")
        if isinstance(conv, dict) and isinstance(conv.get("id"), str):
            self.state.conversation_id = conv["id"]

    def on_item_added(self, ev: Event, data: JSON) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return
        it = self._item(item["id"])
        self._update_item(it, item, ev.t_ns)
        it.in_conversation = True
        if "previous_item_id" in data:
            it.previous_item_id = _str(data.get("previous_item_id"))
        self._place(it.id, data)
        if it.role == "user" and it.type == "message":
            turn = self._turn_by_item.get(it.id)
            if turn is None and any(p.type == "input_text" for p in it.content):
                turn = self._turn_for_new_input("text")
                turn.item_id = it.id
                turn.text_t_ns = ev.t_ns
                self._bind_turn(it.id, turn)
                self._awaiting_response.append(turn)
            self._attach_input_audio(it)

    def _attach_input_audio(self, it: Item, replace: bool = False) -> None:
        """Give a user item its turn's input audio range and times (``replace``: also when it
        has a range already, the turn's having been re-cut)."""
        turn = self._turn_by_item.get(it.id)
        if turn is None or turn.kind == "text":
            return
        for part in it.content:
            if (
                part.type == "input_audio"
                and (replace or part.input_range is None)
                and part.inline_audio is None
            ):
                part.input_range = turn.input_range
        it.audio_start_ms = turn.audio_start_ms
        it.audio_end_ms = turn.audio_end_ms

    def on_item_done(self, ev: Event, data: JSON) -> None:
        item = data.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return
        it = self._item(item["id"])
        self._update_item(it, item, ev.t_ns)
        it.done_t_ns = ev.t_ns
        if it.in_conversation and "previous_item_id" in data:
            self._place(it.id, data)
        self._attach_input_audio(it)

    def on_item_retrieved(self, ev: Event, data: JSON) -> None:
        item = data.get("item")
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            self._update_item(self._item(item["id"]), item, ev.t_ns)

    def on_item_create(self, ev: Event, data: JSON) -> None:
        """A client ``conversation.item.create``: remember inline audio for the item to come."""
        item = data.get("item")
        if not isinstance(item, dict):
            return
        if isinstance(item.get("id"), str):
            it = self._item(item["id"])
            self._update_item(it, item, ev.t_ns)
            it.added_t_ns = None  # not in the conversation until the server says so

    def on_item_truncate(self, ev: Event, data: JSON) -> None:
        item_id, ms = data.get("item_id"), _int(data.get("audio_end_ms"))
        if isinstance(item_id, str) and ms is not None:
            self._item(item_id).truncate_requested_ms = ms

    def on_item_truncated(self, ev: Event, data: JSON) -> None:
        item_id, ms = data.get("item_id"), _int(data.get("audio_end_ms"))
        if isinstance(item_id, str) and ms is not None:
            self._item(item_id).truncated_ms = ms

    def on_item_deleted(self, ev: Event, data: JSON) -> None:
        item_id = data.get("item_id")
        if isinstance(item_id, str):
            self._item(item_id).deleted = True

    def _transcribed(self, data: JSON) -> tuple[Item, ContentPart] | None:
        """The user item and input-audio part an input transcription event is about."""
        item_id = data.get("item_id")
        if not isinstance(item_id, str):
            return None
        it = self._item(item_id)
        return it, self._part(it, data.get("content_index", 0), "input_audio")

    def on_transcription_delta(self, ev: Event, data: JSON) -> None:
        target = self._transcribed(data)
        if target is None:
            return
        it, part = target
        delta = data.get("delta")
        if isinstance(delta, str):
            part.transcript = (part.transcript or "") + delta
        it.transcription_status = "in_progress"

    def on_transcription_segment(self, ev: Event, data: JSON) -> None:
        target = self._transcribed(data)
        if target is not None:
            target[1].extra.setdefault("segments", []).append(
                {k: data.get(k) for k in ("id", "text", "speaker", "start", "end")}
            )

    def on_transcription_completed(self, ev: Event, data: JSON) -> None:
        # xAI also sends interim "completed" events with status "in_progress": the transcript so
        # far, not the final one.
        final = data.get("status") != "in_progress"
        self._transcript_so_far(data, final=final)

    def on_transcription_updated(self, ev: Event, data: JSON) -> None:
        """xAI's ``...input_audio_transcription.updated``: the whole transcript so far (not a
        delta), never final."""
        self._transcript_so_far(data, final=False)

    def _transcript_so_far(self, data: JSON, final: bool) -> None:
        target = self._transcribed(data)
        if target is None:
            return
        it, part = target
        if it.transcription_status == "completed" and not final:
            return  # an interim guess that arrives after the final transcript changes nothing
        tr = data.get("transcript")
        if isinstance(tr, str):
            part.transcript = tr
        it.transcription_status = "completed" if final else "in_progress"

    def on_transcription_failed(self, ev: Event, data: JSON) -> None:
        item_id = data.get("item_id")
        if isinstance(item_id, str):
            it = self._item(item_id)
            it.transcription_status = "failed"
            err = data.get("error")
            it.transcription_error = err if isinstance(err, dict) else {"message": str(err)}
        self._error(ev, data.get("error"), item_id=_str(item_id))

    def on_speech_started(self, ev: Event, data: JSON) -> None:
        turn = self._turn_for_new_input("vad")
        turn.speech_started_t_ns = ev.t_ns
        turn.audio_start_ms = _int(data.get("audio_start_ms"))
        item_id = _str(data.get("item_id"))
        if item_id:
            turn.item_id = item_id
            self._bind_turn(item_id, turn)
        self._pending_turn = turn

    def on_speech_stopped(self, ev: Event, data: JSON) -> None:
        turn = self._pending_turn
        item_id = _str(data.get("item_id"))
        if turn is None or (item_id and turn.item_id and turn.item_id != item_id):
            turn = self._turn_by_item.get(item_id or "") or self._turn_for_new_input("vad")
        self._touch_turn(turn)
        turn.speech_stopped_t_ns = ev.t_ns
        turn.audio_end_ms = _int(data.get("audio_end_ms"))
        if item_id:
            turn.item_id = item_id
            self._bind_turn(item_id, turn)
        if turn.input_range is not None and turn.audio_end_ms is not None:
            # Recorded after the commit (two copies of a stream merged out of order): the
            # segment the VAD reports is the item's audio, not the whole buffer taken then.
            self._place_input(turn, len(self.state.input_audio))
            if turn.item_id and turn.item_id in self.state.items_by_id:
                self._attach_input_audio(self._item(turn.item_id), replace=True)

    def on_committed(self, ev: Event, data: JSON) -> None:
        st = self.state
        item_id = _str(data.get("item_id"))
        turn = self._turn_by_item.get(item_id or "") if item_id else None
        if (
            turn is None
            and self._pending_turn is not None
            and self._pending_turn.committed_t_ns is None
        ):
            turn = self._pending_turn
        if turn is None:
            turn = self._turn_for_new_input("commit")
        self._touch_turn(turn)
        turn.committed_t_ns = ev.t_ns
        if item_id:
            turn.item_id = item_id
            self._bind_turn(item_id, turn)
        self._place_input(turn, len(st.input_audio))
        self._pending_turn = None
        self._awaiting_response.append(turn)
        if item_id and item_id in st.items_by_id:
            self._attach_input_audio(self._item(item_id))

    def _place_input(self, turn: Turn, total: int) -> None:
        """Which input bytes a committed turn's item holds: the VAD's segment, else the whole
        buffer (from where the VAD says speech started, if it said so)."""
        st = self.state
        fmt = st.input_format
        bpms = fmt.bytes_per_ms
        if turn.audio_start_ms is not None:
            start = min(total, fmt.bytes_for_ms(turn.audio_start_ms))
        else:
            start = min(total, st.input_buffer_start)
            turn.audio_start_ms = int(start / bpms) if bpms else None
        if turn.audio_end_ms is not None:
            end = max(start, min(total, fmt.bytes_for_ms(turn.audio_end_ms)))
        else:
            end = total
            turn.audio_end_ms = int(end / bpms) if bpms else None
        turn.input_range = (start, end)
        st.input_buffer_start = max(st.input_buffer_start, end)

    def on_cleared(self, ev: Event, data: JSON) -> None:
        self.state.input_buffer_start = len(self.state.input_audio)

    def on_response_created(self, ev: Event, data: JSON) -> None:
        st = self.state
        resp_obj = data.get("response")
        if not isinstance(resp_obj, dict) or not isinstance(resp_obj.get("id"), str):
            return
        resp = self._response(resp_obj["id"]) or Response(id=resp_obj["id"])
        st.responses[resp.id] = resp
        self._update_response(resp, resp_obj)
        resp.created_t_ns = ev.t_ns
        resp.out_of_band = resp_obj.get("conversation_id") is None and "conversation_id" in resp_obj
        if not resp.out_of_band:
            st.active_response_id = resp.id
            if self._awaiting_response:
                # A response answers the latest input before it: after a history seed (user,
                # assistant, user, then response.create) that is the last user item, not the
                # first; earlier inputs that got no response of their own stay unanswered.
                turn = self._touch_turn(self._awaiting_response[-1])
                turn.response_id = resp.id
                self._turns_by_response.setdefault(resp.id, []).append(turn)
                self._awaiting_response.clear()

    def _update_response(self, resp: Response, obj: JSON) -> None:
        resp.raw = {**resp.raw, **obj}
        if isinstance(obj.get("status"), str):
            resp.status = obj["status"]
        if "status_details" in obj:
            sd = obj.get("status_details")
            resp.status_details = sd if isinstance(sd, dict) else None
        if isinstance(obj.get("conversation_id"), str):
            resp.conversation_id = obj["conversation_id"]
        mods = obj.get("output_modalities", obj.get("modalities"))
        if isinstance(mods, list):
            resp.output_modalities = [str(m) for m in mods]
        if isinstance(obj.get("metadata"), dict):
            resp.metadata = obj["metadata"]
        out = obj.get("output")
        if isinstance(out, list):
            for o in out:
                if isinstance(o, dict) and isinstance(o.get("id"), str):
                    if o["id"] not in resp.output_item_ids:
                        resp.output_item_ids.append(o["id"])
                    it = self._item(o["id"])
                    it.response_id = resp.id
                    self._update_item(it, o, 0)

    def on_response_done(self, ev: Event, data: JSON) -> None:
        st = self.state
        resp_obj = data.get("response")
        if not isinstance(resp_obj, dict) or not isinstance(resp_obj.get("id"), str):
            return
        resp = self._response(resp_obj["id"])
        if resp is None:
            resp = Response(id=resp_obj["id"])
            st.responses[resp.id] = resp
        self._update_response(resp, resp_obj)
        resp.done_t_ns = ev.t_ns
        # Usage sits in the response (OpenAI, Azure) or beside it in the event (xAI, whose
        # response.usage is an empty object).
        usage = resp_obj.get("usage")
        if not usage and isinstance(data.get("usage"), dict):
            usage = data["usage"]
        if isinstance(usage, dict):
            resp.usage = Usage.from_api(usage)
            resp.usage_raw = usage
            st.usage = st.usage + resp.usage
        if st.active_response_id == resp.id:
            st.active_response_id = None
        if resp.status == "failed":
            err = (resp.status_details or {}).get("error") if resp.status_details else None
            self._error(ev, err or {"message": f"response {resp.id} failed"})

    def on_output_item(self, ev: Event, data: JSON) -> None:
        item = data.get("item")
        rid = _str(data.get("response_id"))
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return
        it = self._item(item["id"])
        self._update_item(it, item, ev.t_ns)
        if rid:
            it.response_id = rid
            resp = self._response(rid)
            if resp is not None:
                if it.id not in resp.output_item_ids:
                    resp.output_item_ids.append(it.id)
                if resp.out_of_band:
                    it.in_conversation = False
        if ev.type == "response.output_item.done":
            it.done_t_ns = ev.t_ns
            # A server that never announces its output items with conversation.item.added still
            # put them in the conversation: at the end (OpenAI has placed them by now).
            if it.in_conversation:
                self._place(it.id, {})

    def on_content_part(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        part_obj = data.get("part")
        if not item_id or not isinstance(part_obj, dict):
            return
        it = self._item(item_id)
        part = self._part(it, data.get("content_index"), part_obj.get("type"))
        self._update_part(part, part_obj)

    def on_text_delta(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        delta = data.get("delta")
        if not item_id or not isinstance(delta, str):
            return
        it = self._item(item_id)
        part = self._part(it, data.get("content_index"), "output_text")
        part.text = (part.text or "") + delta
        self._first_text(ev)

    def on_text_done(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        text = data.get("text")
        if item_id and isinstance(text, str):
            self._part(self._item(item_id), data.get("content_index"), "output_text").text = text

    def on_transcript_delta(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        delta = data.get("delta")
        if not item_id or not isinstance(delta, str):
            return
        it = self._item(item_id)
        part = self._part(it, data.get("content_index"), "output_audio")
        part.transcript = (part.transcript or "") + delta
        self._first_text(ev)

    def on_transcript_done(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        tr = data.get("transcript")
        if item_id and isinstance(tr, str):
            self._part(
                self._item(item_id), data.get("content_index"), "output_audio"
            ).transcript = tr

    def _first_text(self, ev: Event) -> None:
        rid = _str(ev.data.get("response_id"))
        resp = self._response(rid) if rid else None
        if resp is not None and resp.first_text_t_ns is None:
            resp.first_text_t_ns = ev.t_ns
            self._first_output(resp, ev.t_ns, audio=False)

    def on_audio_delta_inline(self, ev: Event, data: JSON) -> None:
        """An audio delta whose base64 could not be split off (odd text): decode it here."""
        from .audio import b64decode_audio

        b64 = data.get("delta")
        if not isinstance(b64, str):
            return
        try:
            audio = b64decode_audio(b64)
        except ValueError:
            self._error(ev, {"type": "client_error", "message": "audio delta is not base64"})
            return
        clone = Event(
            ev.seq,
            ev.t_ns,
            ev.source,
            ev.type,
            data=data,
            audio=audio,
            item_id=ev.item_id or _str(data.get("item_id")),
            response_id=ev.response_id or _str(data.get("response_id")),
        )
        self._audio_delta(clone)

    def on_function_args_delta(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        delta = data.get("delta")
        if item_id and isinstance(delta, str):
            it = self._item(item_id)
            it.type = it.type if it.type != "message" else "function_call"
            it.arguments = (it.arguments or "") + delta
            if isinstance(data.get("call_id"), str):
                it.call_id = data["call_id"]
            self._first_text(ev)

    def on_function_args_done(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        if not item_id:
            return
        it = self._item(item_id)
        if isinstance(data.get("arguments"), str):
            it.arguments = data["arguments"]
        for key in ("call_id", "name"):
            if isinstance(data.get(key), str):
                setattr(it, key, data[key])

    def on_mcp_args_delta(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        delta = data.get("delta")
        if item_id and isinstance(delta, str):
            it = self._item(item_id)
            it.arguments = (it.arguments or "") + delta

    def on_mcp_args_done(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        if item_id and isinstance(data.get("arguments"), str):
            self._item(item_id).arguments = data["arguments"]

    def on_mcp_status(self, ev: Event, data: JSON) -> None:
        item_id = _str(data.get("item_id"))
        if item_id:
            self._item(item_id).status = canonical_type(ev.type).rsplit(".", 1)[-1]
        if ev.type.endswith(".failed"):
            self._error(ev, data.get("error") or {"message": f"{ev.type} for {item_id}"}, item_id)

    def on_error(self, ev: Event, data: JSON) -> None:
        self._error(ev, data.get("error"))

    def on_response_create(self, ev: Event, data: JSON) -> None:
        """Client ``response.create``: a text turn with no item of its own still awaits this."""

    def on_output_buffer_started(self, ev: Event, data: JSON) -> None:
        """``output_audio_buffer.started`` (a WebRTC or SIP call): the server began streaming a
        response's audio on the call's track. No audio delta comes over such a call, so this is
        the response's first audio, as its first delta is over a WebSocket."""
        rid = _str(data.get("response_id"))
        resp = self._response(rid) if rid else None
        if resp is not None and resp.first_audio_t_ns is None:
            resp.first_audio_t_ns = ev.t_ns
            self._first_output(resp, ev.t_ns, audio=True)

    def on_track_input(self, ev: Event, data: JSON) -> None:
        """Microphone audio a WebRTC page tapped (``local.track.input``): the input timeline, as
        appends make it over a WebSocket (the server's ``audio_start_ms`` counts the samples it
        received from the track's first one on), each chunk noted at its first sample's
        capture time (its ``t_ns``)."""
        audio = ev.audio
        if not audio:
            return
        st = self.state
        self._check_track_rate(data, st.input_format, "input")
        times = st.input_chunk_times
        t = _track_time(ev, data)
        if times and t < times[-1][0]:  # capture times jitter a little: kept in order
            t = times[-1][0]
        times.add(t, len(st.input_audio))
        st.input_audio += audio

    def on_track_output(self, ev: Event, data: JSON) -> None:
        """Remote-track audio as a WebRTC page played it (``local.track.output``): the audio of
        the item it was playing (its ``item_id``, else the assistant message of its
        ``response_id``); between replies it belongs to no item. The item's first chunk is when
        its playback started (noted as ``local.playback.started`` at that chunk's time)."""
        audio = ev.audio
        if not audio:
            return
        st = self.state
        item_id = _str(data.get("item_id"))
        if item_id is None:
            rid = _str(data.get("response_id"))
            item_id = self._audio_item_of(rid) if rid else None
        if item_id is None:
            return
        self._check_track_rate(data, st.output_format, "output")
        it = self._item(item_id)
        part = next((p for p in it.content if p.type == "output_audio"), None)
        if part is None:
            part = self._part(it, None, "output_audio")
        part.played = True
        t = _track_time(ev, data)
        if it.first_audio_t_ns is not None and st.output_format.type == "audio/pcm":
            # A chunk that starts well after the previous one ended follows a pause in playback
            # (the player ran dry): the listener heard silence there, and so does the audio.
            bpms = it.output_bytes_per_ms
            end_ns = it.first_audio_t_ns + int(part.audio_bytes / bpms * 1e6)
            if t - end_ns > PLAYBACK_GAP_MS * 1_000_000:
                part.audio_chunks.append(bytes(st.output_format.bytes_for_ms((t - end_ns) / 1e6)))
        part.audio_chunks.append(audio)
        if it.first_audio_t_ns is None:
            it.first_audio_t_ns = t
            it.output_bytes_per_ms = st.output_format.bytes_per_ms
            st.local_events.append(
                (t, "local.playback.started", {"item_id": item_id, "track": "output"})
            )
        it.played_ms = part.audio_bytes / it.output_bytes_per_ms

    def _audio_item_of(self, response_id: str) -> str | None:
        """The assistant message of a response: the item its audio belongs to."""
        st = self.state
        resp = st.responses.get(response_id)
        for iid in resp.output_item_ids if resp is not None else ():
            it = st.items_by_id.get(iid)
            if it is not None and it.type == "message" and it.role in ("assistant", None):
                return iid
        return None

    def _check_track_rate(self, data: JSON, fmt: AudioFormat, direction: str) -> None:
        rate = data.get("rate")
        if isinstance(rate, int) and (rate != fmt.rate or fmt.type != "audio/pcm"):
            note = (
                f"local.track.{direction}: PCM16 at {rate} Hz on a session whose {direction} "
                f"format is {fmt}; the audio is read as {fmt}"
            )
            if note not in self.state.warnings:
                self.state.warnings.append(note)

    def on_ignore(self, ev: Event, data: JSON) -> None:
        """Known events that change nothing the state tracks (rate limits, buffer notices)."""


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _track_time(ev: Event, data: JSON) -> int:
    """When a track chunk's first sample was captured or played (its ``t_ns``), else when the
    chunk was recorded."""
    t = _int(data.get("t_ns"))
    return t if t is not None else ev.t_ns


def _int(v: Any) -> int | None:
    """A JSON number as an int; ``None`` for anything else (booleans, NaN and infinities too)."""
    if isinstance(v, int):
        return None if isinstance(v, bool) else v
    return int(v) if isinstance(v, float) and math.isfinite(v) else None


_LOCAL_HANDLERS: Final = {
    "local.connection.opened": Reducer.on_connection_opened,
    "local.connection.reconnecting": Reducer.on_connection_reconnecting,
    "local.connection.failed": Reducer.on_connection_failed,
    "local.connection.closed": Reducer.on_connection_closed,
    "local.session.closed": Reducer.on_session_closed,
    "local.tool.finished": Reducer.on_tool_finished,
    "local.protocol.invalid_event": Reducer.on_invalid_event,
}

_HANDLERS: Final = {
    "session.created": Reducer.on_session,
    "session.updated": Reducer.on_session,
    "session.update": Reducer.on_session,
    "conversation.created": Reducer.on_conversation_created,
    "conversation.item.added": Reducer.on_item_added,
    "conversation.item.done": Reducer.on_item_done,
    "conversation.item.retrieved": Reducer.on_item_retrieved,
    "conversation.item.create": Reducer.on_item_create,
    "conversation.item.truncate": Reducer.on_item_truncate,
    "conversation.item.truncated": Reducer.on_item_truncated,
    "conversation.item.deleted": Reducer.on_item_deleted,
    "conversation.item.input_audio_transcription.delta": Reducer.on_transcription_delta,
    "conversation.item.input_audio_transcription.segment": Reducer.on_transcription_segment,
    "conversation.item.input_audio_transcription.completed": Reducer.on_transcription_completed,
    "conversation.item.input_audio_transcription.failed": Reducer.on_transcription_failed,
    "conversation.item.input_audio_transcription.updated": Reducer.on_transcription_updated,
    "input_audio_buffer.speech_started": Reducer.on_speech_started,
    "input_audio_buffer.speech_stopped": Reducer.on_speech_stopped,
    "input_audio_buffer.committed": Reducer.on_committed,
    "input_audio_buffer.cleared": Reducer.on_cleared,
    "response.created": Reducer.on_response_created,
    "response.done": Reducer.on_response_done,
    "response.output_item.added": Reducer.on_output_item,
    "response.output_item.done": Reducer.on_output_item,
    "response.content_part.added": Reducer.on_content_part,
    "response.content_part.done": Reducer.on_content_part,
    "response.output_text.delta": Reducer.on_text_delta,
    "response.output_text.done": Reducer.on_text_done,
    "response.output_audio.delta": Reducer.on_audio_delta_inline,
    "response.output_audio_transcript.delta": Reducer.on_transcript_delta,
    "response.output_audio_transcript.done": Reducer.on_transcript_done,
    "response.function_call_arguments.delta": Reducer.on_function_args_delta,
    "response.function_call_arguments.done": Reducer.on_function_args_done,
    "response.mcp_call_arguments.delta": Reducer.on_mcp_args_delta,
    "response.mcp_call_arguments.done": Reducer.on_mcp_args_done,
    "response.mcp_call.in_progress": Reducer.on_mcp_status,
    "response.mcp_call.completed": Reducer.on_mcp_status,
    "response.mcp_call.failed": Reducer.on_mcp_status,
    "mcp_list_tools.failed": Reducer.on_mcp_status,
    "error": Reducer.on_error,
    "response.create": Reducer.on_response_create,
    "response.cancel": Reducer.on_ignore,
    "response.output_audio.done": Reducer.on_ignore,
    "rate_limits.updated": Reducer.on_ignore,
    "input_audio_buffer.commit": Reducer.on_ignore,
    "input_audio_buffer.clear": Reducer.on_ignore,
    "input_audio_buffer.timeout_triggered": Reducer.on_ignore,
    "input_audio_buffer.dtmf_event_received": Reducer.on_ignore,
    "output_audio_buffer.started": Reducer.on_output_buffer_started,
    "local.track.input": Reducer.on_track_input,
    "local.track.output": Reducer.on_track_output,
    "output_audio_buffer.stopped": Reducer.on_ignore,
    "output_audio_buffer.cleared": Reducer.on_ignore,
    "output_audio_buffer.clear": Reducer.on_ignore,
    "conversation.item.retrieve": Reducer.on_ignore,
    "conversation.item.delete": Reducer.on_ignore,
    "mcp_list_tools.in_progress": Reducer.on_ignore,
    "mcp_list_tools.completed": Reducer.on_ignore,
}


# -- checkpoints -----------------------------------------------------------------------------------

#: Changed entries a checkpoint keeps beside the index it shares with earlier checkpoints, before
#: they are folded into a new shared index. Folding copies the whole index (a C-level dict copy,
#: microseconds), so it happens once per this many changes: checkpoints stay O(changes), and a
#: restore merges at most this many entries on top of the shared index.
OVERLAY_LIMIT: Final = 64

#: Fields of ConversationState that the reducer only ever *replaces* (scalars, frozen values, dicts
#: taken from events): a checkpoint shares them as they are.
_REPLACED_FIELDS: Final = frozenset(
    {
        "usage", "session", "requested_session", "conversation_id", "input_format",
        "output_format", "input_buffer_start", "active_response_id", "event_count", "last_t_ns",
        "connection_closed", "connection",
    }
)  # fmt: skip
#: Fields that only ever grow at their end: a checkpoint keeps the live list and its length.
_APPEND_ONLY_FIELDS: Final = ("errors", "input_chunk_times", "local_events", "warnings")
_COUNTER_FIELDS: Final = ("counts", "unknown_types", "unknown_fields", "invalid_events")
#: Fields with their own copy-on-write handling in :class:`Checkpointer`.
_SHARED_FIELDS: Final = frozenset({"items_by_id", "responses", "turns", "order", "input_audio"})
_REDUCER_FIELDS: Final = frozenset(
    {
        "state", "_pending_turn", "_turn_by_item", "_awaiting_response", "_changes", "_placed",
        "_turns_by_response",
    }
)  # fmt: skip


@dataclass
class _Changes:
    """What the reducer touched since the last checkpoint (ids of items/responses, turn indexes,
    item ids whose turn binding was set)."""

    items: set[str] = field(default_factory=set)
    responses: set[str] = field(default_factory=set)
    turns: set[int] = field(default_factory=set)
    turn_keys: set[str] = field(default_factory=set)


def _copy_part(p: ContentPart) -> ContentPart:
    c = ContentPart.__new__(ContentPart)
    c.__dict__.update(p.__dict__)
    c.audio_chunks = p.audio_chunks.copy()
    if p.extra:  # updated in place, and its transcription ``segments`` list grows in place
        c.extra = {k: (v.copy() if isinstance(v, list) else v) for k, v in p.extra.items()}
    else:
        c.extra = {}
    return c


def _copy_item(it: Item) -> Item:
    c = Item.__new__(Item)
    c.__dict__.update(it.__dict__)
    c.content = [_copy_part(p) for p in it.content]
    return c


def _copy_response(r: Response) -> Response:
    c = Response.__new__(Response)
    c.__dict__.update(r.__dict__)
    c.output_item_ids = r.output_item_ids.copy()
    return c


def _copy_turn(t: Turn) -> Turn:
    c = Turn.__new__(Turn)
    c.__dict__.update(t.__dict__)  # every field is a scalar or a tuple
    return c


def _turn_index(t: Turn) -> int:
    return t.index


class _History:
    """Copy-on-write snapshots of one growing index (items by id, turns by position, ...).

    A snapshot is ``(base, overlay)``: ``base`` is shared by many snapshots, ``overlay`` holds the
    entries copied since ``base`` was made. Taking one copies only what changed since the last.
    """

    __slots__ = ("_base", "_copy", "_overlay")

    def __init__(self, copy: Any) -> None:
        self._copy = copy
        self._base: dict[Any, Any] = {}
        self._overlay: dict[Any, Any] = {}

    def take(
        self, get: Any, new: Iterable[Any], touched: Iterable[Any]
    ) -> tuple[dict[Any, Any], dict[Any, Any]]:
        base, old = self._base, self._overlay
        # Changed entries first, then the new ones in the order they were added: merged over
        # ``base``, the index keeps its insertion order.
        fresh = {k: self._copy(get(k)) for k in touched if k in base or k in old}
        for k in new:
            fresh[k] = self._copy(get(k))
        if fresh:
            overlay = {**old, **fresh}
            if len(overlay) > OVERLAY_LIMIT:
                self._base = {**base, **overlay}
                overlay = {}
            self._overlay = overlay
        return self._base, self._overlay


@dataclass(frozen=True)
class Checkpoint:
    """The state of a reducer at one moment, sharing structure with the checkpoints before it.

    Made by :meth:`Checkpointer.take`; :meth:`restore` gives a new, independent reducer that
    continues from here. Never mutated.
    """

    items: tuple[dict[str, Item], dict[str, Item]]
    responses: tuple[dict[str, Response], dict[str, Response]]
    turns: tuple[dict[int, Turn], dict[int, Turn]]
    turn_by_item: tuple[dict[str, int], dict[str, int]]
    order: list[str]
    fields: dict[str, Any]
    deep_copied: dict[str, Any]
    #: Copied as plain dicts (a ``Counter.copy()`` runs Python code; ``dict()`` does not).
    counters: dict[str, dict[str, int]]
    #: Append-only parts: the live container (which only grows) and its length now.
    input_audio: tuple[AudioTimeline, int]
    appended: dict[str, tuple[Any, int]]
    pending_turn: int | None
    awaiting_response: tuple[int, ...]

    def restore(self) -> Reducer:
        """A new reducer in exactly the state this checkpoint was taken in.

        Costs one shallow copy of every item, response and turn (those are what the next events
        may change); audio and other append-only parts are shared, not copied.
        """
        r = Reducer()
        st = r.state
        st.__dict__.update(self.fields)
        for name, value in self.deep_copied.items():
            setattr(st, name, copy.deepcopy(value))
        st.items_by_id = {k: _copy_item(v) for k, v in {**self.items[0], **self.items[1]}.items()}
        st.responses = {
            k: _copy_response(v) for k, v in {**self.responses[0], **self.responses[1]}.items()
        }
        by_index = {**self.turns[0], **self.turns[1]}
        st.turns = [_copy_turn(by_index[i]) for i in range(len(by_index))]
        st.order = self.order.copy()
        for name, counter in self.counters.items():
            setattr(st, name, Counter(counter))
        timeline, n = self.input_audio
        st.input_audio = timeline.head(n)
        for name, (live, n) in self.appended.items():
            setattr(st, name, live[:n])
        turns = st.turns
        r._turn_by_item = {
            k: turns[i] for k, i in {**self.turn_by_item[0], **self.turn_by_item[1]}.items()
        }
        r._pending_turn = None if self.pending_turn is None else turns[self.pending_turn]
        r._awaiting_response = [turns[i] for i in self.awaiting_response]
        # The indexes are rebuilt from the state they index.
        r._placed = set(st.order)
        for t in turns:
            if t.response_id is not None:
                r._turns_by_response.setdefault(t.response_id, []).append(t)
        return r


class Checkpointer:
    """Takes :class:`Checkpoint` s of one reducer as it runs, each in time proportional to what
    changed since the previous one (the items, responses and turns the events in between touched),
    not to the size of the state: a long session's checkpoints cost linear time in total.

    Append-only parts (all input audio, output audio chunks, chunk times, local events, errors) are
    referenced with their length, never copied; an item's audio chunk list is copied as a list of
    references when the item changes.

    A state field not classified below (one added to :class:`ConversationState` later) is still
    checkpointed correctly, by a deep copy each time: slower, and listed in
    :attr:`deep_copied` so that a test can insist on classifying it.

    Raises:
        TypeError: the reducer has an attribute this class does not know (its private
            bookkeeping holds shared references that a copy would break: classify it here).
    """

    def __init__(self, reducer: Reducer) -> None:
        unknown = set(reducer.__dict__) - _REDUCER_FIELDS
        if unknown:
            raise TypeError(
                f"cannot checkpoint reducer attributes {sorted(unknown)}: classify them in "
                "realtime_nb/core/reducer.py (_REDUCER_FIELDS and Checkpoint.restore)"
            )
        known = _REPLACED_FIELDS | _SHARED_FIELDS | set(_APPEND_ONLY_FIELDS) | set(_COUNTER_FIELDS)
        #: State fields of unknown use, deep-copied at every checkpoint and restore.
        self.deep_copied = tuple(sorted(set(reducer.state.__dict__) - known))
        self._reducer = reducer
        reducer._changes = _Changes()
        self._items = _History(_copy_item)
        self._responses = _History(_copy_response)
        self._turns = _History(_copy_turn)
        self._turn_keys = _History(_turn_index)
        self._n_items = self._n_responses = self._n_turns = self._n_turn_keys = 0

    def take(self) -> Checkpoint:
        """The reducer's state now."""
        r = self._reducer
        st = r.state
        ch = r._changes
        assert ch is not None, "the reducer is watched by another Checkpointer"
        items, responses, turns, tbi = st.items_by_id, st.responses, st.turns, r._turn_by_item
        cp = Checkpoint(
            items=self._items.take(items.__getitem__, islice(items, self._n_items, None), ch.items),
            responses=self._responses.take(
                responses.__getitem__, islice(responses, self._n_responses, None), ch.responses
            ),
            turns=self._turns.take(turns.__getitem__, range(self._n_turns, len(turns)), ch.turns),
            turn_by_item=self._turn_keys.take(
                tbi.__getitem__, islice(tbi, self._n_turn_keys, None), ch.turn_keys
            ),
            order=st.order.copy(),
            fields={k: getattr(st, k) for k in _REPLACED_FIELDS},
            deep_copied={k: copy.deepcopy(getattr(st, k)) for k in self.deep_copied},
            counters={k: dict(getattr(st, k)) for k in _COUNTER_FIELDS},
            input_audio=(st.input_audio, len(st.input_audio)),
            appended={k: (getattr(st, k), len(getattr(st, k))) for k in _APPEND_ONLY_FIELDS},
            pending_turn=None if r._pending_turn is None else r._pending_turn.index,
            awaiting_response=tuple(t.index for t in r._awaiting_response),
        )
        self._n_items, self._n_responses = len(items), len(responses)
        self._n_turns, self._n_turn_keys = len(turns), len(tbi)
        r._changes = _Changes()
        return cp

    def stop(self) -> None:
        """Stop watching the reducer (it no longer notes what changes)."""
        self._reducer._changes = None


def reduce(events: Iterable[Event]) -> ConversationState:
    """Fold events into a fresh state (``Reducer().apply_all(events)``)."""
    return Reducer().apply_all(events)
