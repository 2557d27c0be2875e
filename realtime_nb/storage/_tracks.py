"""A recording's two audio tracks on the session timeline, made window by window.

A track is a list of pieces: a stretch of some source's samples placed at a position of the
timeline, silence elsewhere. The user track is one source (the input timeline) cut into the runs
the chunks' send times give; the assistant track is one source per item. :meth:`Track.render`
fills any window of the timeline in order, so a WAV export holds one window at a time and never
the session: PCM16 in, PCM16 out, and float only where a resampler needs it (``rate`` different
from the recording's).

Pure: the caller gives the reduced state and writes the windows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from ..core.audio import AudioFormat, Resampler, alaw_decode, ulaw_decode
from ..core.reducer import ConversationState

__all__ = ["WINDOW_FRAMES", "Track", "assistant_track", "user_track"]

#: Frames per window of an export: 2^20 (~44 s at 24 kHz, 4 MiB of stereo PCM16) bounds what
#: an export holds whatever the session's length, and keeps the per-window Python work (a few
#: slices) negligible next to the copying: a 240-minute export is ~330 windows.
WINDOW_FRAMES: Final = 1 << 20
#: Input samples a resampler is fed at a time: bounds its buffers (~1 MiB of float32).
RESAMPLE_BLOCK: Final = 1 << 18
#: PCM16 full scale: float samples are ints / 32768, as everywhere in realtime_nb.
_SCALE: Final = np.float32(32768.0)
_INT32_SCALE: Final = 2147483648.0

Samples = npt.NDArray[Any]  # int16 straight from PCM, float32 out of a resampler


class _Source(Protocol):
    length: int

    def read(self, a: int, b: int) -> Samples: ...

    def release(self) -> None: ...


class _Pcm:
    """Samples of bytes in a Realtime format (PCM16, G.711), read by sample range, as int16."""

    def __init__(self, get: Callable[[int, int], Any], nbytes: int, fmt: AudioFormat) -> None:
        self._get = get
        self._bps = fmt.bytes_per_sample
        self._type = fmt.type
        self.length = nbytes // self._bps

    def read(self, a: int, b: int) -> Samples:
        data = self._get(a * self._bps, b * self._bps)
        if self._type == "audio/pcmu":
            return ulaw_decode(data)
        if self._type == "audio/pcma":
            return alaw_decode(data)
        return np.frombuffer(data, dtype="<i2")

    def release(self) -> None:
        pass


class _ItemAudio(_Pcm):
    """One item's audio, fetched from the state when first read and dropped once passed: an
    export holds one item at a time, not the whole assistant track."""

    def __init__(self, st: ConversationState, item_id: str, heard: bool) -> None:
        self._st, self._item_id, self._heard = st, item_id, heard
        self._data: Any = None
        super().__init__(self._slice, len(st.item_audio(item_id, heard=heard)), st.output_format)

    def _slice(self, a: int, b: int) -> Any:
        if self._data is None:
            self._data = memoryview(self._st.item_audio(self._item_id, heard=self._heard))
        return self._data[a:b]

    def release(self) -> None:
        self._data = None


class _Resampled:
    """``source`` resampled, read in order (each read starts at or after the previous one's
    start): :func:`realtime_nb.core.audio.resample` of the whole source, sample for sample,
    made block by block by the same streaming resampler."""

    def __init__(self, source: _Pcm, src_rate: int, dst_rate: int) -> None:
        self._src = source
        self._src_rate, self._dst_rate = src_rate, dst_rate
        self._rs: Resampler | None = None
        self.length = round(source.length * dst_rate / src_rate)
        self._fed = 0
        self._buf = np.zeros(0, np.float32)
        self._start = 0  # output index of self._buf[0]
        self._done = False

    def read(self, a: int, b: int) -> Samples:
        if a < self._start:
            raise ValueError(f"resampled audio is read in order: sample {a} is already gone")
        if self._rs is None:
            self._rs = Resampler(self._src_rate, self._dst_rate)
        while self._start + len(self._buf) < b and not self._done:
            end = min(self._fed + RESAMPLE_BLOCK, self._src.length)
            x = self._src.read(self._fed, end).astype(np.float32) / _SCALE
            self._fed = end
            self._done = end == self._src.length
            out = self._rs.process(x, final=self._done)
            keep = min(a - self._start, len(self._buf))
            self._buf = np.concatenate([self._buf[keep:], out])
            self._start += keep
        got = self._buf[a - self._start : b - self._start]
        if len(got) < b - a:  # past what the resampler gives: resample() pads with zeros too
            got = np.concatenate([got, np.zeros(b - a - len(got), np.float32)])
        return got

    def release(self) -> None:
        self._src.release()
        self._rs, self._buf = None, np.zeros(0, np.float32)


@dataclass(frozen=True)
class _Piece:
    at: int  # where on the timeline (output samples)
    start: int  # first sample of the source
    length: int
    source: _Source


class Track:
    """Pieces of sources on a timeline of ``length`` samples; silence between them.

    :meth:`render` is called with windows in increasing order (resampled sources stream)."""

    def __init__(self, pieces: list[_Piece], length: int) -> None:
        self._pieces = pieces  # sorted by position, not overlapping
        self.length = length
        self._next = 0  # the first piece not wholly before the last window

    def render(self, a: int, out: npt.NDArray[Any]) -> None:
        """Write samples ``a .. a + len(out)`` into ``out``, which holds zeros (the silence
        between pieces): int16 (PCM16; resampled audio converted as libsndfile converts float:
        see ``_as_pcm16``) or float32 (in [-1, 1))."""
        b = a + len(out)
        pieces = self._pieces
        i = self._next
        while i < len(pieces) and pieces[i].at + pieces[i].length <= a:
            if i + 1 == len(pieces) or pieces[i + 1].source is not pieces[i].source:
                pieces[i].source.release()  # its last piece is behind us
            i += 1
        self._next = i
        # Consecutive pieces of one source cover one stretch of it: read it once per window.
        group: list[tuple[int, int, int]] = []  # (out offset, source offset, n)
        source: _Source | None = None
        while i < len(pieces) and pieces[i].at < b:
            p = pieces[i]
            lo, hi = max(a, p.at), min(b, p.at + p.length)
            if hi > lo:
                if source is not None and p.source is not source:
                    _place(out, source, group)
                    group = []
                source = p.source
                group.append((lo - a, p.start + lo - p.at, hi - lo))
            i += 1
        if source is not None and group:
            _place(out, source, group)


def _place(out: npt.NDArray[Any], source: _Source, group: list[tuple[int, int, int]]) -> None:
    first, last = group[0][1], group[-1][1] + group[-1][2]
    x = source.read(first, last)
    for at, start, n in group:
        seg = x[start - first : start - first + n]
        dst = out[at : at + len(seg)]
        if out.dtype == np.int16:
            if seg.dtype == np.int16:
                dst[...] = seg
            else:
                dst[...] = _as_pcm16(seg)
        elif seg.dtype == np.int16:
            dst[...] = seg.astype(np.float32) / _SCALE
        else:
            dst[...] = seg


def _as_pcm16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Float samples as PCM16 values exactly as libsndfile writes them (so that the export
    gives the samples it gave when it wrote float through soundfile): rounded to 32 bits,
    clipped, then the top 16 bits kept (an arithmetic shift: rounds down)."""
    v = np.clip(np.rint(x.astype(np.float64) * _INT32_SCALE), -_INT32_SCALE, _INT32_SCALE - 1)
    return np.floor(v / 65536.0)


def user_track(st: ConversationState, rate: int) -> Track:
    """Every input chunk at the time it was sent: chunk ``i`` starts at its send time or right
    after chunk ``i - 1``, whichever is later (gaps are silence)."""
    fmt = st.input_format
    times = st.input_chunk_times
    if not times:
        return Track([], 0)
    audio = st.input_audio
    pcm = _Pcm(lambda a, b: audio[a:b], len(audio), fmt)
    source: _Source = pcm if fmt.rate == rate else _Resampled(pcm, fmt.rate, rate)
    n = source.length
    t, off = (a.astype(np.float64) for a in times.arrays())
    # start_i = off_i + running max of (t_j - off_j), all in output samples.
    t_s = np.round(t * 1e-9 * rate)
    off_s = np.round(off / fmt.bytes_per_sample / fmt.rate * rate)
    shift = np.maximum.accumulate(t_s - off_s).astype(np.int64)
    # One piece per run of chunks whose shift does not change.
    change = np.flatnonzero(np.diff(shift)) + 1
    starts = [0, *change.tolist()]
    ends = [*change.tolist(), len(shift)]
    offs = off_s.astype(np.int64).tolist()
    shifts = shift.tolist()
    pieces = []
    for a, b in zip(starts, ends, strict=True):
        s0 = offs[a]
        s1 = min(offs[b] if b < len(offs) else n, n)
        if s1 > s0:
            pieces.append(_Piece(s0 + shifts[a], s0, s1 - s0, source))
    return Track(pieces, n + shifts[-1])


def assistant_track(
    st: ConversationState, starts: Mapping[str, int], rate: int, heard: bool
) -> Track:
    """Each output item from ``starts[item]`` (ns), after the previous one finished, cut where
    it was heard unless ``heard=False``."""
    fmt = st.output_format
    pieces = []
    cursor = 0
    for item_id, t0 in sorted(starts.items(), key=lambda kv: kv[1]):
        item = _ItemAudio(st, item_id, heard)
        source: _Source = item if fmt.rate == rate else _Resampled(item, fmt.rate, rate)
        start = max(round(t0 * 1e-9 * rate), cursor)
        if source.length:
            pieces.append(_Piece(start, 0, source.length, source))
        cursor = start + source.length
    return Track(pieces, cursor)
