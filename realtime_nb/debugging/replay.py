"""The data layer behind replay in the notebook: overview, marks, events, audio windows, seeking.

:class:`ReplayData` reads a :class:`~realtime_nb.storage.recording.Recording` once and then answers the
replay widget's questions cheaply:

- :meth:`ReplayData.overview`: waveform peaks (min/max per bin) of both tracks at any resolution;
- :meth:`ReplayData.vad_segments`, :meth:`ReplayData.truncations`: the marks on the timeline;
- :meth:`ReplayData.event_rows`: the event list with times (audio events left out by default);
- :meth:`ReplayData.audio_window`: PCM16 bytes of a track around the playhead, on demand;
- :meth:`ReplayData.state_at`: the conversation state at the playhead, from the nearest reducer
  checkpoint (taken every :data:`CHECKPOINT_EVERY_S` while the recording is read) plus the few
  events after it, so a seek never re-reduces the whole session.

Both tracks are laid out on the session timeline exactly as :meth:`Recording.audio` lays them out
(the user's chunks at the time they were sent, the assistant's items from their first delta or
``local.playback.started``, cut where they were truncated), so what the widget plays is what an
export contains. Windows are always PCM16 little-endian mono at :data:`RATE` Hz.

Pure computation over an in-memory recording; reading the file is the recording's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..core.audio import AudioFormat, decode_to_float, resample
from ..core.protocol import AUDIO_FIELDS
from ..core.reducer import ConversationState
from ..storage.recording import (
    CHECKPOINT_EVERY_S,
    Recording,
    StateTimeline,
    assistant_audio_starts,
)

__all__ = [
    "CHECKPOINT_EVERY_S",
    "RATE",
    "EventRow",
    "Overview",
    "ReplayData",
    "TruncationMark",
    "VadSegment",
    "open_replay",
]

#: Sample rate of every track, window and overview: the API's PCM rate (G.711 sessions are
#: resampled up once, when the recording is opened).
RATE: Final = 24_000
#: Finest granularity of an overview, in samples (10 ms): peaks are taken per block of the
#: stored audio and then placed on the timeline, so a block straddling two chunks sent with a
#: gap lands at the first one. Far below one pixel of any overview of a session.
OVERVIEW_BLOCK: Final = 240
#: Most bins an overview may have: one per pixel of a very wide screen, twice.
MAX_BINS: Final = 20_000
#: Longest audio window served at once (seconds): a playhead needs a few seconds ahead; whole
#: tracks are what :meth:`Recording.audio` is for.
MAX_WINDOW_S: Final = 120.0
#: Event types that carry audio: left out of :meth:`ReplayData.event_rows` unless asked for
#: (they are >90 % of a session's events and the timeline shows them as waveforms).
AUDIO_EVENT_TYPES: Final = frozenset(AUDIO_FIELDS)
_TRACKS: Final = ("user", "assistant")

Int16 = npt.NDArray[np.int16]
Int64 = npt.NDArray[np.int64]
Float32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Overview:
    """Waveform peaks of both tracks: ``bins`` values each, in [-1, 1], bin ``i`` covering
    ``[i, i + 1) * duration_s / bins`` of the timeline (silence and gaps are 0)."""

    duration_s: float
    bins: int
    user_min: Float32
    user_max: Float32
    assistant_min: Float32
    assistant_max: Float32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (for a widget trait or message)."""
        return {
            "duration_s": self.duration_s,
            "bins": self.bins,
            "user_min": self.user_min.tolist(),
            "user_max": self.user_max.tolist(),
            "assistant_min": self.assistant_min.tolist(),
            "assistant_max": self.assistant_max.tolist(),
        }


@dataclass(frozen=True)
class VadSegment:
    """A span of user speech as the server's VAD saw it.

    ``start_s``/``end_s`` place the speech on the timeline (from ``audio_start_ms``/
    ``audio_end_ms``, positions in the input audio, mapped through the user track's layout);
    ``started_event_s``/``stopped_event_s`` are when the events arrived (later, by the VAD's
    padding and the network). ``end_s``/``stopped_event_s`` are ``None`` for speech never ended.
    """

    item_id: str | None
    start_s: float
    end_s: float | None
    started_event_s: float
    stopped_event_s: float | None


@dataclass(frozen=True)
class TruncationMark:
    """An assistant item cut short: where on the timeline the listener stopped hearing it."""

    item_id: str
    audio_end_ms: int
    t_s: float | None  # on the timeline; None if the item's audio was never placed
    event_s: float  # when ``conversation.item.truncated`` arrived


@dataclass(frozen=True)
class EventRow:
    """One row of the event list."""

    seq: int
    t_s: float
    source: str
    type: str
    item_id: str | None
    response_id: str | None


@dataclass
class _Track:
    """A track as stored audio (int16 at RATE) plus its layout on the timeline: segment ``k``
    takes ``src[src_start[k] : src_start[k] + length[k]]`` to timeline sample ``tl_start[k]``."""

    src: Int16
    src_start: Int64
    tl_start: Int64
    length: Int64

    @property
    def end(self) -> int:
        return int(self.tl_start[-1] + self.length[-1]) if len(self.length) else 0

    def window(self, a: int, b: int) -> Int16:
        """Timeline samples ``[a, b)`` (zeros where nothing plays)."""
        out = np.zeros(max(b - a, 0), np.int16)
        if not len(self.tl_start) or b <= a:
            return out
        k = max(int(np.searchsorted(self.tl_start, a, side="right")) - 1, 0)
        n = len(self.tl_start)
        while k < n and self.tl_start[k] < b:
            s0 = int(self.tl_start[k])
            s1 = s0 + int(self.length[k])
            lo, hi = max(a, s0), min(b, s1)
            if lo < hi:
                src0 = int(self.src_start[k]) + lo - s0
                out[lo - a : hi - a] = self.src[src0 : src0 + hi - lo]
            k += 1
        return out

    def to_timeline(self, src_index: Int64) -> Int64:
        """Timeline positions of stored-audio sample indices."""
        k = np.searchsorted(self.src_start, src_index, side="right") - 1
        k = np.clip(k, 0, max(len(self.src_start) - 1, 0))
        out: Int64 = (self.tl_start[k] + (src_index - self.src_start[k])).astype(np.int64)
        return out

    def peaks(self, bins: int, total: int) -> tuple[Float32, Float32]:
        lo = np.zeros(bins, np.float32)
        hi = np.zeros(bins, np.float32)
        n = len(self.src)
        if not n or not len(self.tl_start) or total <= 0:
            return lo, hi
        block = max(1, min(OVERVIEW_BLOCK, total // bins))
        whole = n // block * block
        mins = []
        maxs = []
        if whole:
            blocks = self.src[:whole].reshape(-1, block)
            mins.append(blocks.min(axis=1))
            maxs.append(blocks.max(axis=1))
        if whole < n:
            mins.append(self.src[whole:].min(keepdims=True))
            maxs.append(self.src[whole:].max(keepdims=True))
        bmin = np.concatenate(mins).astype(np.float32) / 32768.0
        bmax = np.concatenate(maxs).astype(np.float32) / 32768.0
        starts = np.arange(len(bmin), dtype=np.int64) * block
        idx = np.clip(self.to_timeline(starts) * bins // total, 0, bins - 1)
        np.minimum.at(lo, idx, bmin)
        np.maximum.at(hi, idx, bmax)
        return lo, hi


def _empty_track() -> _Track:
    z = np.zeros(0, np.int64)
    return _Track(np.zeros(0, np.int16), z, z.copy(), z.copy())


def _to_pcm24k(data: bytes | npt.NDArray[np.uint8], fmt: AudioFormat) -> Int16:
    """Stored audio (bytes, or bytes as an array) as int16 at RATE: a zero-copy view for PCM16
    at 24 kHz (the common case)."""
    if fmt.type == "audio/pcm" and fmt.rate == RATE:
        raw = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
        return raw[: len(raw) // 2 * 2].view("<i2")
    x = decode_to_float(bytes(data), fmt)
    if fmt.rate != RATE:
        x = resample(x, fmt.rate, RATE)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _joined(pieces: list[Int16]) -> Int16:
    """The pieces one after the other: a view when they already lie so in one array (the
    replies from ``output_arrays``), a copy otherwise."""
    first = pieces[0]
    if len(pieces) == 1:
        return first
    base = first
    while isinstance(base.base, np.ndarray):
        base = base.base
    start = end = first.__array_interface__["data"][0]
    for p in pieces:
        if p.dtype != first.dtype or not p.flags.c_contiguous:
            return np.concatenate(pieces)
        if p.__array_interface__["data"][0] != end:
            return np.concatenate(pieces)
        end += p.nbytes
    at = start - base.__array_interface__["data"][0]
    if base.ndim != 1 or not base.flags.c_contiguous or at < 0 or at + end - start > base.nbytes:
        return np.concatenate(pieces)
    joined: Int16 = base.view(np.uint8)[at : at + end - start].view(first.dtype)
    return joined


class ReplayData:
    """Everything the replay view needs from one recording, precomputed once.

    Args:
        recording: a :class:`Recording` (or a path to open).
        checkpoint_every_s: seconds between reducer checkpoints (see :data:`CHECKPOINT_EVERY_S`).

    Raises:
        ValueError: ``checkpoint_every_s`` is not a positive number.
    """

    def __init__(
        self, recording: Recording | str | Path, checkpoint_every_s: float = CHECKPOINT_EVERY_S
    ) -> None:
        if not isinstance(checkpoint_every_s, (int, float)) or checkpoint_every_s <= 0:
            raise ValueError(
                f"checkpoint_every_s must be a positive number of seconds, got {checkpoint_every_s!r}"
            )
        rec = recording if isinstance(recording, Recording) else Recording.open(recording)
        self.recording = rec
        self.checkpoint_every_s = float(checkpoint_every_s)
        table: pa.Table = rec.table
        self._table = table
        # The recording's own reduction when the interval is the same (a recording already
        # reduced is not reduced again), else one of our own.
        self._timeline: StateTimeline = rec.timeline(self.checkpoint_every_s)
        self.state: ConversationState = self._timeline.state
        st = self.state
        self._input_bytes = st.input_audio.array()
        self._user = self._user_track(st)
        self._assistant = self._assistant_track(st)
        last_t = self._timeline.last_t_ns
        end = max(last_t * RATE // 1_000_000_000, self._user.end, self._assistant.end)
        #: Length of the timeline in samples at :data:`RATE`.
        self.total_samples = int(end)

    # -- state at the playhead ------------------------------------------------------------------

    def state_at(self, t_s: float) -> ConversationState:
        """The conversation state ``t_s`` seconds into the session: what the live session's
        reducer held then (equal to :meth:`Recording.state_at`). A fresh object each call.

        Cost: one checkpoint restore plus at most :attr:`checkpoint_every_s` of events.
        """
        return self._timeline.state_at(t_s)

    # -- tracks ----------------------------------------------------------------------------------

    def _user_track(self, st: ConversationState) -> _Track:
        fmt = st.input_format
        if not st.input_chunk_times:
            return _empty_track()
        src = _to_pcm24k(self._input_bytes, fmt)
        t, off = (a.astype(np.float64) for a in st.input_chunk_times.arrays())
        # The same layout as Recording._user_track: chunk i starts when it was sent or right
        # after chunk i-1, whichever is later.
        t_s = np.round(t * 1e-9 * RATE)
        off_s = np.round(off / fmt.bytes_per_sample / fmt.rate * RATE)
        shift = np.maximum.accumulate(t_s - off_s).astype(np.int64)
        change = np.flatnonzero(np.diff(shift)) + 1
        starts = np.concatenate([[0], change]).astype(np.int64)
        src_start = off_s[starts].astype(np.int64)
        ends = np.concatenate([src_start[1:], [len(src)]]).astype(np.int64)
        return _Track(src, src_start, src_start + shift[starts], np.maximum(ends - src_start, 0))

    def _assistant_track(self, st: ConversationState) -> _Track:
        fmt = st.output_format
        starts = assistant_audio_starts(self._table, st)
        pieces: list[Int16] = []
        src_start: list[int] = []
        tl_start: list[int] = []
        self._item_starts: dict[str, int] = {}
        cursor = 0
        pos = 0
        order = [
            (item_id, t0)
            for item_id, t0 in sorted(starts.items(), key=lambda kv: kv[1])
            if item_id in st.items_by_id
        ]
        # Every item's heard audio at once, one after the other in timeline order in one array:
        # no bytes join per item (a page fault per 4 KiB in a process that has not just freed
        # as much), and for PCM16 at 24 kHz that array is the track itself (see _joined).
        heard = st.output_arrays(heard=True, items=[item_id for item_id, _ in order])
        for item_id, t0 in order:
            audio = heard.get(item_id)
            x = _to_pcm24k(st.item_audio(item_id, heard=True) if audio is None else audio, fmt)
            start = max(round(t0 * 1e-9 * RATE), cursor)
            self._item_starts[item_id] = start
            pieces.append(x)
            src_start.append(pos)
            tl_start.append(start)
            pos += len(x)
            cursor = start + len(x)
        if not pieces:
            return _empty_track()
        src = _joined(pieces)
        lengths = [len(p) for p in pieces]
        return _Track(
            src,
            np.array(src_start, np.int64),
            np.array(tl_start, np.int64),
            np.array(lengths, np.int64),
        )

    def _track(self, track: str) -> _Track:
        if track == "user":
            return self._user
        if track == "assistant":
            return self._assistant
        raise ValueError(f"unknown track {track!r}; accepted: 'user', 'assistant'")

    # -- public queries --------------------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        """Length of the timeline (the last event or the end of the last audio, if later)."""
        return self.total_samples / RATE

    def overview(self, bins: int = 1000) -> Overview:
        """Min/max peaks of both tracks over the whole timeline, in ``bins`` bins.

        Raises:
            ValueError: ``bins`` not an integer in 1..:data:`MAX_BINS`.
        """
        if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= MAX_BINS:
            raise ValueError(f"bins must be an integer from 1 to {MAX_BINS}, got {bins!r}")
        total = max(self.total_samples, 1)
        umin, umax = self._user.peaks(bins, total)
        amin, amax = self._assistant.peaks(bins, total)
        return Overview(self.duration_s, bins, umin, umax, amin, amax)

    def audio_window(self, track: str, start_s: float, duration_s: float) -> bytes:
        """PCM16 LE mono at :data:`RATE` Hz of ``track`` from ``start_s`` for ``duration_s``
        (silence where nothing plays, before 0 and past the end).

        Raises:
            ValueError: an unknown track, a negative duration, or one longer than
                :data:`MAX_WINDOW_S`.
        """
        tr = self._track(track)
        if not 0 <= duration_s <= MAX_WINDOW_S:
            raise ValueError(
                f"duration_s must be between 0 and {MAX_WINDOW_S} seconds, got {duration_s!r}"
            )
        a = round(start_s * RATE)
        n = round(duration_s * RATE)
        if a >= 0:
            return tr.window(a, a + n).tobytes()
        pad = min(-a, n)
        return (np.zeros(pad, np.int16).tobytes()) + tr.window(0, n - pad).tobytes()

    def vad_segments(self) -> list[VadSegment]:
        """Every ``speech_started`` with its ``speech_stopped`` (matched by item id, else the
        next one), in order."""
        rows = self._rows_of(
            ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped")
        )
        out: list[VadSegment] = []
        open_: list[tuple[str | None, float, float]] = []  # item_id, start_s, event_s
        for t_ns, etype, data in rows:
            item_id = data.get("item_id") if isinstance(data.get("item_id"), str) else None
            if etype.endswith("speech_started"):
                open_.append((item_id, self._input_ms_to_s(data.get("audio_start_ms"), t_ns), t_ns))
                continue
            match = next((o for o in open_ if item_id and o[0] == item_id), None)
            if match is None and open_:
                match = open_[0]
            end_s = self._input_ms_to_s(data.get("audio_end_ms"), t_ns)
            if match is None:
                out.append(VadSegment(item_id, end_s, end_s, t_ns / 1e9, t_ns / 1e9))
                continue
            open_.remove(match)
            out.append(VadSegment(match[0] or item_id, match[1], end_s, match[2] / 1e9, t_ns / 1e9))
        for item_id, start_s, ev_ns in open_:
            out.append(VadSegment(item_id, start_s, None, ev_ns / 1e9, None))
        out.sort(key=lambda s: s.started_event_s)
        return out

    def item_starts_s(self) -> dict[str, float]:
        """Where each assistant item's audio starts on the timeline, in seconds."""
        return {item_id: start / RATE for item_id, start in self._item_starts.items()}

    def truncations(self) -> list[TruncationMark]:
        """Every ``conversation.item.truncated``: the item and where its playback was cut."""
        out = []
        for t_ns, _etype, data in self._rows_of(("conversation.item.truncated",)):
            item_id, ms = data.get("item_id"), data.get("audio_end_ms")
            if not isinstance(item_id, str) or not isinstance(ms, (int, float)):
                continue
            start = self._item_starts.get(item_id)
            t_s = None if start is None else start / RATE + ms / 1000.0
            out.append(TruncationMark(item_id, int(ms), t_s, t_ns / 1e9))
        return out

    def event_rows(
        self,
        start_s: float | None = None,
        end_s: float | None = None,
        *,
        types: Iterable[str] | None = None,
        include_audio: bool = False,
    ) -> list[EventRow]:
        """The event list: every event (audio appends/deltas only with ``include_audio``) whose
        time is in ``[start_s, end_s]``, optionally only of the given ``types``, in order."""
        tbl = self._table
        if not tbl.num_rows:
            return []
        mask = None
        if not include_audio:
            mask = pc.invert(pc.is_in(tbl.column("type"), pa.array(sorted(AUDIO_EVENT_TYPES))))
        if types is not None:
            m = pc.is_in(tbl.column("type"), pa.array(list(types), pa.string()))
            mask = m if mask is None else pc.and_(mask, m)
        if start_s is not None:
            m = pc.greater_equal(tbl.column("t_ns"), int(start_s * 1e9))
            mask = m if mask is None else pc.and_(mask, m)
        if end_s is not None:
            m = pc.less_equal(tbl.column("t_ns"), int(end_s * 1e9))
            mask = m if mask is None else pc.and_(mask, m)
        sel = tbl.filter(mask) if mask is not None else tbl
        cols = [
            sel.column(c).to_pylist()
            for c in ("seq", "t_ns", "source", "type", "item_id", "response_id")
        ]
        return [
            EventRow(seq, t / 1e9, src, typ, iid, rid)
            for seq, t, src, typ, iid, rid in zip(*cols, strict=True)
        ]

    # -- helpers ---------------------------------------------------------------------------------

    def _rows_of(self, types: Sequence[str]) -> list[tuple[int, str, dict[str, Any]]]:
        tbl = self._table
        if not tbl.num_rows:
            return []
        sel = tbl.filter(pc.is_in(tbl.column("type"), pa.array(list(types))))
        import json

        return [
            (t, typ, json.loads(p))
            for t, typ, p in zip(
                sel.column("t_ns").to_pylist(),
                sel.column("type").to_pylist(),
                sel.column("payload").to_pylist(),
                strict=True,
            )
        ]

    def _input_ms_to_s(self, ms: Any, fallback_ns: int) -> float:
        """A position in the input audio (ms) as a time on the timeline (s)."""
        if not isinstance(ms, (int, float)) or not len(self._user.src_start):
            return fallback_ns / 1e9
        src = np.array([round(ms * RATE / 1000)], np.int64)
        return float(self._user.to_timeline(src)[0]) / RATE

    def __repr__(self) -> str:
        return (
            f"<ReplayData {self.duration_s:.1f} s, {self._table.num_rows} events, "
            f"{len(self._timeline.checkpoints)} checkpoints>"
        )


def open_replay(
    recording: Recording | str | Path, checkpoint_every_s: float = CHECKPOINT_EVERY_S
) -> ReplayData:
    """:class:`ReplayData` of a recording or a recording file."""
    return ReplayData(recording, checkpoint_every_s)
