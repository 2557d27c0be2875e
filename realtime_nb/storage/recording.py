"""Recordings: every event and audio chunk of a session in an Arrow IPC stream file.

:class:`Recorder` appends events (thread-safe) and writes a record batch at least every
:data:`FLUSH_INTERVAL_S`, through an unbuffered file, so a killed kernel loses at most the tail.
:class:`Recording` reads a file back (salvaging a cut one), reduces it with the same reducer as the
live session, and gives tables, audio tracks, WAV/JSONL export and notebook rendering.

File layout (one row per event)::

    seq int64 | t_ns int64 | source string | type string | event_id string | item_id string |
    response_id string | payload string (JSON, audio field emptied) | audio binary (raw bytes)

The schema metadata key ``realtime_nb`` holds a JSON object: ``format_version``,
``package_version``, ``model``, ``url`` (credentials removed), ``input_format``,
``output_format``, ``started_at`` (UTC, ISO 8601), and optional ``parent``/``description``.

Integrity (:mod:`realtime_nb.storage._integrity`): the schema metadata key ``realtime_nb.crc32c`` holds
the CRC-32C of that object; every batch carries its ``seq`` range and a CRC-32C of its contents
in its IPC message's custom metadata; ``close()`` writes an empty last batch with the event count.
Plain Arrow readers (and realtime_nb before checksums, which reads the same format version) ignore
all of it. The reader validates and verifies every batch before use, resumes after a damaged one
at the next intact message, and reports what was lost.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
import mmap
import secrets as _secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import repeat
from operator import is_not
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

# A dependency: ~12x binascii, and decoding is most of what recording a frame costs.
from pybase64 import b64decode as _b64decode

from ..core._redact import (
    hint_pattern,
    needs_redaction,
    redact_obj,
    redact_text,
    safe_url,
    searchable,
)
from ..core._version import __version__
from ..core.audio import AudioFormat, decode_to_float
from ..core.events import Event, extract_ids, split_audio
from ..core.protocol import AUDIO_FIELDS, Source, canonical_type, source_of_type
from ..core.reducer import Checkpoint, Checkpointer, ConversationState, Item, Reducer
from ._compact import MIN_BATCHES, compact
from ._integrity import (
    CRC_KEY,
    Damage,
    DamagedHeader,
    Integrity,
    batch_metadata,
    closing_metadata,
    meta_checksum,
    read_header,
    scan,
)
from ._tracks import WINDOW_FRAMES, Track, assistant_track, user_track
from ._wav import WavWriter

__all__ = [
    "CHECKPOINT_EVERY_S",
    "FLUSH_INTERVAL_S",
    "FORMAT_VERSION",
    "EventList",
    "Recorder",
    "Recording",
    "RecordingDamagedError",
    "RecordingFormatError",
    "RecordingSalvageWarning",
    "StateTimeline",
]

JSON = dict[str, Any]

#: Version of the file layout. Bump on any change a older reader would misread; readers refuse
#: newer versions instead of guessing.
FORMAT_VERSION: Final = 1
#: Longest time an appended event waits in memory before reaching the file. A killed kernel
#: loses at most this much; shorter intervals make more, smaller batches (slower to read back).
FLUSH_INTERVAL_S: Final = 0.25
#: A batch is also written once it holds this many bytes, by the thread that appends: bounds
#: memory when events arrive faster than real time (imports, benchmarks), keeps binary offsets
#: far below 2 GiB, and costs that thread ~10 ms per 16 MiB. A live session never gets there
#: (~100 KB/s of audio: the timer writes first); handing it to the writer thread instead cost
#: more than the write itself, in GIL hand-offs, once the machine was busy.
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024
#: Metadata key of the recording description in the Arrow schema.
META_KEY: Final = b"realtime_nb"
#: Default folder for recordings, relative to the working directory (the notebook's folder).
DEFAULT_DIR: Final = Path("recordings")

_SOURCES: Final[dict[Any, Source]] = {**{s: s for s in Source}, **{s.value: s for s in Source}}
#: ``Source.value`` is a property lookup on an enum: ~10x a dict lookup, once per event.
_VALUES: Final[dict[Source, str]] = {s: s.value for s in Source}
#: Per audio event type: the audio field and its key as JSON writes it.
_AUDIO_KEYS: Final = {t: (f, f'"{f}"', len(f) + 4) for t, f in AUDIO_FIELDS.items()}
_new_event: Final = Event.__new__


def _decode_plain(b64: str) -> bytes | None:
    """The audio of base64 text in the form every encoder writes (validated, whole groups, no
    padding: chunks of a multiple of 3 bytes, as 10 ms of PCM16 at 24 kHz is), else ``None``:
    anything else goes through ``split_audio``, which keeps non-canonical text as received."""
    try:
        audio: bytes = _b64decode(b64, validate=True)
    except (ValueError, TypeError):
        return None
    if b64[-1] == "=" or len(b64) != (len(audio) + 2) // 3 * 4:
        return None
    return audio


SCHEMA_FIELDS: Final = [
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("t_ns", pa.int64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("type", pa.string(), nullable=False),
    pa.field("event_id", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("response_id", pa.string()),
    pa.field("payload", pa.string(), nullable=False),
    pa.field("audio", pa.binary()),
]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: Seconds of session between reducer checkpoints (:meth:`Recording.state_at`, replay seeks). A
#: state at any time re-applies at most this much of the session: ~1 000 events of a busy
#: session, mostly audio appends applied in bulk, a few ms. Each checkpoint costs what changed
#: since the one before, so the interval trades memory (a few KB each) against seek time only.
CHECKPOINT_EVERY_S: Final = 30.0


class RecordingFormatError(ValueError):
    """A file that is not a realtime_nb recording, or one written by a newer realtime_nb."""


class RecordingDamagedError(RecordingFormatError):
    """A recording whose header (its first message: the columns and the description) is
    damaged: nothing in it can be decoded without the header."""


class RecordingSalvageWarning(UserWarning):
    """A recording was cut (a killed process, a partial copy) or damaged, and what was intact was
    recovered. The message says which ``seq`` ranges were lost, how many events, and at which
    byte offsets; :attr:`Recording.integrity` has the same as data."""


def _utcnow_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def make_meta(
    *,
    model: str | None = None,
    url: str | None = None,
    input_format: AudioFormat | None = None,
    output_format: AudioFormat | None = None,
    started_at: str | None = None,
    **extra: Any,
) -> JSON:
    """The metadata object of a recording (credentials stripped from ``url``)."""
    inf = input_format or AudioFormat()
    outf = output_format or AudioFormat()
    meta: JSON = {
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": model,
        "url": safe_url(url),
        "input_format": {"type": inf.type, "rate": inf.rate},
        "output_format": {"type": outf.type, "rate": outf.rate},
        "started_at": started_at or _utcnow_iso(),
    }
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def default_path(model: str | None = None, directory: str | Path = DEFAULT_DIR) -> Path:
    """``recordings/YYYYmmdd-HHMMSS-<model>-<4 hex>.arrow`` (unique, sortable by time)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in (model or "session"))
    return Path(directory) / f"{stamp}-{name}-{_secrets.token_hex(2)}.arrow"


#: Values per row in :class:`_Columns` (the file's columns, in order).
_WIDTH: Final = len(SCHEMA_FIELDS)
#: The payload's place in a row.
_PAYLOAD: Final = 7


class _Columns:
    """Rows not yet written, as one flat list of their values, row after row.

    One ``extend`` per event is the cheapest store there is, and it allocates no object that
    stays: a tuple (or a list) per row would be one more object for the cyclic collector per
    event until it is written, and collections walk everything a session holds (benchmarks/
    bench_recording.py). A column is a strided slice of the list, made once per batch.
    """

    __slots__ = ("nbytes", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.values) // _WIDTH

    def add(self, ev: Event) -> None:
        payload = ev.payload
        self.values.extend(
            (
                ev.seq,
                ev.t_ns,
                ev.source.value,
                ev.type,
                ev.event_id,
                ev.item_id,
                ev.response_id,
                payload,
                ev.audio,
            )
        )
        self.nbytes += len(payload) + (len(ev.audio) if ev.audio else 0)

    def seq_range(self) -> tuple[int, int]:
        """The first and the last ``seq`` (the rows are not empty)."""
        return self.values[0], self.values[-_WIDTH]

    def to_batch(self, schema: pa.Schema) -> pa.RecordBatch:
        v = self.values
        return pa.RecordBatch.from_arrays(
            [_column(v[i::_WIDTH], f.type) for i, f in enumerate(schema)], schema=schema
        )


_IS_VALUE: Final = partial(is_not, None)


def _redact_batch(
    batch: pa.RecordBatch, values: list[Any], secrets: tuple[str, ...], hints: Any
) -> pa.RecordBatch:
    """``batch`` (made of the rows ``values``, see :class:`_Columns`) with its payloads redacted
    as ``Event`` redacts them on first read, so that the file and the events agree.

    One scan of all the batch's text in C++ (``hints``: the options of
    :func:`~realtime_nb.core._redact.hint_pattern`, which matches wherever ``needs_redaction``
    would) clears a normal batch: a secret, or a hint of one, in any payload is in the text of
    them all. Otherwise only the payloads that match are checked and redacted, and the batch is
    rebuilt when one changed.
    """
    payloads = batch.column(_PAYLOAD)
    data = payloads.buffers()[2]
    if data is None or not data.size:
        return batch
    # The payloads' bytes as one string (no copy): a match across two of them is checked below.
    ends = pa.py_buffer(np.array([0, data.size], np.int32))
    whole = pa.Array.from_buffers(pa.string(), 1, [None, ends, data])
    if not pc.match_substring_regex(whole, options=hints)[0].as_py():
        return batch
    changed = False
    for i in pc.indices_nonzero(pc.match_substring_regex(payloads, options=hints)).to_pylist():
        at = i * _WIDTH + _PAYLOAD
        text = values[at]
        if needs_redaction(text, secrets):
            red = redact_text(text, secrets)
            if red is not text:
                values[at] = red
                changed = True
    if not changed:
        return batch
    column = _column(values[_PAYLOAD::_WIDTH], pa.string())
    return batch.set_column(_PAYLOAD, SCHEMA_FIELDS[_PAYLOAD], column)


def _column(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    """An Arrow array built straight from buffers.

    ``pa.array`` on Python lists imports pandas the first time (half a second, holding the GIL,
    on the session's clock) and converts element by element; joining bytes and computing offsets
    with numpy does neither.
    """
    n = len(values)
    if typ == pa.int64():
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.array(values, np.int64))])
    # map/filter over C functions: no Python frame per value (a generator here cost more than
    # the rest of the batch together).
    present: list[Any] = list(filter(_IS_VALUE, values))
    joined: bytes | None = None
    if typ == pa.string():
        text = "".join(present)
        if text.isascii():
            # Nearly all of it: byte lengths are character lengths, so one encode of the
            # joined text replaces one encode per value.
            joined = text.encode("ascii")
        else:
            present = [v.encode("utf-8") for v in present]
    if joined is None:
        joined = b"".join(present)
    nulls = n - len(present)
    offsets = np.zeros(n + 1, np.int32)
    validity = None
    if nulls:
        mask = np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=n)
        lengths = np.zeros(n, np.int64)
        lengths[mask] = np.fromiter(map(len, present), dtype=np.int64, count=len(present))
        np.cumsum(lengths, out=offsets[1:])
        validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
    elif n:
        np.cumsum(np.fromiter(map(len, present), dtype=np.int64, count=n), out=offsets[1:])
    data = pa.py_buffer(joined)
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(offsets), data], null_count=nulls)


def _schema(meta: Mapping[str, Any]) -> pa.Schema:
    """The file's schema: the columns, the description, and the description's checksum (whose
    presence tells the reader that every batch has one too)."""
    described = _dumps(dict(meta)).encode("utf-8")
    return pa.schema(
        SCHEMA_FIELDS, metadata={META_KEY: described, CRC_KEY: meta_checksum(described)}
    )


class Recorder:
    """Writes a session's events to an Arrow IPC stream file, crash-safe and thread-safe.

    Args:
        path: the ``.arrow`` file to create (parent folders are made), a folder (a file name is
            chosen in it), or ``None`` to build :class:`Event` objects without writing anything.
        meta: the recording's description (see :func:`make_meta`); credentials in ``url`` are
            stripped.
        secrets: exact strings that must never reach the file (the API key in use); they are
            replaced by ``[REDACTED]`` wherever they appear, as are ``sk-``/``ek_`` keys,
            Bearer/Basic credentials, URL user info and the values of credential fields
            (``password``, ``token``, ``client_secret``... see ``core._redact.SECRET_FIELDS``).
            A frame given as text is checked when its batch is written (one scan of the whole
            batch's text in the common case) and, in the returned :class:`Event`, when its
            ``data`` or ``payload`` is first read.
        flush_interval: seconds an event may wait in memory (default :data:`FLUSH_INTERVAL_S`).
        clock: monotonic nanosecond clock (tests may inject one).
        compact: on :meth:`close`, rewrite a file written in many small batches (a live
            session's: one per ``flush_interval``) in large ones, as an import writes it, so that
            it opens about three times faster (``storage._compact``: written beside it, then
            renamed over it; an hour's session takes about half a second more to close).

    Raises:
        FileExistsError: ``path`` names an existing file (recordings are never overwritten).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        secrets: Iterable[str] = (),
        flush_interval: float = FLUSH_INTERVAL_S,
        clock: Callable[[], int] = time.monotonic_ns,
        compact: bool = True,
    ) -> None:
        self._compact = compact
        self._batches = 0
        # Longest first, none too short to search for (a 4-letter key would blank words).
        self._secrets = searchable(secrets)
        self._hints = pc.MatchSubstringOptions(hint_pattern(self._secrets))
        base_meta = dict(meta) if meta is not None else make_meta()
        if "url" in base_meta:
            base_meta["url"] = safe_url(base_meta["url"])
        base_meta.setdefault("format_version", FORMAT_VERSION)
        base_meta.setdefault("package_version", __version__)
        base_meta.setdefault("started_at", _utcnow_iso())
        self.meta: JSON = redact_obj(base_meta, self._secrets)
        self._clock = clock
        self._t0 = clock()
        self._seq = 0
        self._lock = threading.Lock()  # guards _rows and _seq
        self._write_lock = threading.Lock()  # serializes batch writes, in seq order
        self._rows = _Columns()
        self._flushed_at = time.monotonic()
        self._closed = False
        self.path: Path | None = None
        self._file: Any = None
        self._writer: Any = None
        self._schema = _schema(self.meta)
        if path is not None:
            p = Path(path)
            if p.is_dir() or (not p.suffix and not p.exists()):
                p = default_path(self.meta.get("model"), p)
            if p.exists():
                raise FileExistsError(f"{p} already exists; recordings are never overwritten")
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
            # pa.OSFile writes straight to the file descriptor (no user-space buffer): what a
            # batch write returns from is in the OS page cache and survives a SIGKILL.
            self._file = pa.OSFile(str(p), "wb")
            self._writer = pa.ipc.new_stream(self._file, self._schema)
            self._stop = threading.Event()
            self._wake = threading.Event()
            self._flusher = threading.Thread(
                target=self._flush_loop,
                args=(flush_interval,),
                name="realtime_nb-recorder",
                daemon=True,
            )
            self._flusher.start()

    # -- appending -------------------------------------------------------------------------------

    def append(
        self,
        source: Source | str,
        data: JSON,
        *,
        raw: str | None = None,
        audio: bytes | None = None,
        t_ns: int | None = None,
    ) -> Event:
        """Record one event and return it as an :class:`Event`. Thread-safe, never blocks on I/O.

        Args:
            source: ``client`` (sent), ``server`` (received) or ``local``.
            data: the event as a dict (as parsed from, or serialized to, the wire).
            raw: the exact frame text, when the caller has it: the payload is cut from it, so
                nothing is serialized twice.
            audio: the event's audio already decoded (e.g. the PCM the session just encoded).
            t_ns: time since session start; defaults to now on the recorder's clock.

        Raises:
            ValueError: ``source`` is not a known source, or the recorder is closed.
        """
        # The hot path of every session and import: everything here runs once per event, so
        # the common shapes are handled inline (see the benchmark, benchmarks/bench_recording.py)
        # and anything unusual goes the general way (split_audio, redact_text).
        src = _SOURCES.get(source) or Source.parse(source)
        get = data.get  # five lookups per event
        etype = get("type")
        if not isinstance(etype, str):
            etype = "<missing type>"
        pdict: JSON | None = None
        payload: str | None = None
        audio_key = _AUDIO_KEYS.get(etype)
        if audio_key is None:
            audio = None
            if raw is not None:
                payload = raw
            else:
                pdict = data
        else:
            field, key, skip = audio_key  # skip: the length of '"audio":"'
            b64 = get(field)
            if raw is not None and isinstance(b64, str) and b64:
                if audio is None:
                    audio = _decode_plain(b64)
                if audio is not None:
                    # The frame as our encoder and the API's write it: '"audio":"<b64>"', the
                    # first key of that name. The base64 is compared in place, not searched.
                    v = raw.find(key) + skip
                    end = v + len(b64)
                    if (
                        v >= skip
                        and raw.startswith(':"', v - 2)
                        and raw.startswith(b64, v)
                        and raw.startswith('"', end)
                    ):
                        payload = raw[:v] + raw[end:]
            if payload is None:
                payload, pdict, audio = split_audio(etype, data, raw, audio)
        if payload is None:
            # Serialized here: checked for secrets now, as the caller's dict may hold them.
            payload = _dumps(pdict)
            if needs_redaction(payload, self._secrets):
                red = redact_text(payload, self._secrets)
                if red is not payload:
                    payload, pdict = red, None
        event_id = get("event_id")
        if not isinstance(event_id, str):
            event_id = None
        if "item" in data or "response" in data:
            _, item_id, response_id = extract_ids(data)
        else:
            item_id, response_id = get("item_id"), get("response_id")
            item_id = item_id if isinstance(item_id, str) else None
            response_id = response_id if isinstance(response_id, str) else None
        with self._lock:
            if self._closed:
                raise ValueError("this recorder is closed; start a new one to record more")
            seq = self._seq
            self._seq = seq + 1
            t = self._clock() - self._t0 if t_ns is None else t_ns
            if self._writer is not None:
                rows = self._rows
                rows.values.extend(
                    (seq, t, _VALUES[src], etype, event_id, item_id, response_id, payload, audio)
                )
                rows.nbytes += len(payload) + (len(audio) if audio is not None else 0)
                big = rows.nbytes >= MAX_BATCH_BYTES
            else:
                big = False
        if pdict is None:
            # Frame text: checked for secrets when first read (Event._check, run by the first
            # read of data or payload while _unchecked holds the secrets), and in the file a
            # batch at a time (_redact_batch): one scan of the batch's text in C++. Made
            # inline: a call with these ten arguments cost 0.2 us, a twentieth of an append.
            ev = _new_event(Event)
            ev.seq, ev.t_ns, ev.source, ev.type = seq, t, src, etype
            ev._data, ev._payload, ev._unchecked = None, payload, self._secrets
            ev.audio, ev.event_id, ev.item_id, ev.response_id = (
                audio,
                event_id,
                item_id,
                response_id,
            )
        else:
            ev = Event(
                seq,
                t,
                src,
                etype,
                data=pdict,
                payload=payload,
                audio=audio,
                event_id=event_id,
                item_id=item_id,
                response_id=response_id,
            )
        if big:
            try:
                self.flush()
            except Exception as exc:  # as in the writer thread: the session goes on
                warnings.warn(f"realtime_nb could not write {self.path}: {exc}", stacklevel=2)
        return ev

    def log_local(self, event_type: str, data: Mapping[str, Any] | None = None) -> Event:
        """Record a ``local`` event (``local.mic.started``, ``local.playback.played``, ...)."""
        return self.append(Source.LOCAL, {"type": event_type, **(data or {})})

    @property
    def elapsed_ns(self) -> int:
        return self._clock() - self._t0

    @property
    def count(self) -> int:
        """Events appended so far."""
        return self._seq

    # -- writing ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending events as one record batch (no-op when none are pending)."""
        with self._write_lock:
            with self._lock:
                rows = self._rows
                self._flushed_at = time.monotonic()
                if not len(rows) or self._writer is None:
                    return
                self._rows = _Columns()
            batch = _redact_batch(
                rows.to_batch(self._schema), rows.values, self._secrets, self._hints
            )
            first, last = rows.seq_range()
            self._writer.write_batch(batch, custom_metadata=batch_metadata(batch, first, last))
            self._batches += 1

    def _flush_loop(self, interval: float) -> None:
        # Pending events all arrived after the last flush (whoever made it): writing once that
        # is ``interval`` old keeps the promise, and skips a batch right after a full one.
        while not self._stop.is_set():
            left = self._flushed_at + interval - time.monotonic()
            if left > 0:
                self._wake.wait(left)
                self._wake.clear()
                continue
            try:
                self.flush()
            except Exception as exc:  # a full disk must not kill the session: say it, keep going
                warnings.warn(f"realtime_nb could not write {self.path}: {exc}", stacklevel=1)

    def close(self) -> None:
        """Flush and close the file (writes the end-of-stream marker). Idempotent."""
        with self._lock:
            if self._closed:
                return
        if self._writer is not None:
            self._stop.set()
            self._wake.set()
            self._flusher.join()
            self.flush()
        with self._lock:
            self._closed = True
        if self._writer is not None:
            with self._write_lock:
                try:
                    # The closing batch says how many events the file holds: without it, losing
                    # the last batches of a closed file would leave a file that looks whole.
                    empty = _Columns().to_batch(self._schema)
                    meta = closing_metadata(empty, self._seq)
                    self._writer.write_batch(empty, custom_metadata=meta)
                    self._writer.close()
                finally:
                    self._file.close()
            if self._compact and self.path is not None and self._batches >= MIN_BATCHES:
                try:
                    compact(self.path, self._seq, MAX_BATCH_BYTES)
                except OSError as exc:  # a full disk: the live-written file stays, whole
                    warnings.warn(f"realtime_nb could not compact {self.path}: {exc}", stacklevel=2)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory only"
        return f"<Recorder {where}: {self._seq} events{' (closed)' if self._closed else ''}>"


# --- reading -------------------------------------------------------------------------------------


def _read(path: Path) -> tuple[pa.Schema, Integrity] | None:
    """The schema and what a walk over the file found (``None``: the file ends inside its
    header, nothing to recover).

    The file is mapped, not read: the batches returned are zero-copy views of it.

    Raises:
        RecordingDamagedError: the header is damaged.
        RecordingFormatError: not a recording (or, see :func:`_meta_of`, a newer one).
    """
    with open(path, "rb") as f:
        head = f.read(4)
        if not head:
            return None
        if head != b"\xff\xff\xff\xff"[: len(head)] and _not_a_recording_hint(head):
            raise RecordingFormatError(_not_a_recording(path, head))
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    expected = pa.schema(SCHEMA_FIELDS)
    try:
        header = read_header(data, expected)
    except DamagedHeader as exc:
        raise RecordingDamagedError(f"{path}: {exc}") from None
    if header is None:
        if head != b"\xff\xff\xff\xff"[: len(head)]:
            raise RecordingFormatError(_not_a_recording(path, head))
        return None
    schema, header_end = header
    described = (schema.metadata or {}).get(META_KEY)
    crc = (schema.metadata or {}).get(CRC_KEY)
    if described is not None and crc is not None and crc != meta_checksum(described):
        raise RecordingDamagedError(
            f"{path}: its header is damaged (the recording's description fails its checksum)"
        )
    _meta_of(schema, path)  # not a recording, or a newer one: say so before anything else
    if not schema.equals(expected):
        raise RecordingDamagedError(
            f"{path}: its header is damaged, or it was not written by realtime_nb: its columns "
            f"are {', '.join(f'{f.name}: {f.type}' for f in schema)}"
        )
    report = scan(data, schema, header_end, checksummed=crc is not None)
    if crc is None and report.verified:
        report.damage.insert(
            0,
            Damage(0, header_end, "the header has no checksum but its batches do: it is damaged"),
        )
    return schema, report


def _not_a_recording_hint(head: bytes) -> bool:
    return head[:1] in (b"{", b"[") or head[:4] in (b"inte", b"vers", b"---\n", b"- ki", b"ARRO")


def _not_a_recording(path: Path, head: bytes) -> str:
    hint = ""
    if head[:1] in (b"{", b"["):
        hint = " It looks like JSON lines: use Recording.import_file(path) (or import_jsonl)."
    elif head[:4] in (b"inte", b"vers", b"---\n", b"- ki"):
        hint = " It looks like a YAML cassette: use Recording.import_file(path)."
    elif head[:4] == b"ARRO":
        hint = " It is an Arrow IPC *file* (random access); realtime_nb writes IPC *streams*."
    return f"{path} is not a realtime_nb recording (an Arrow IPC stream).{hint}"


class Recording:
    """A recorded session: events, reduced state, audio, export and rendering.

    Open with :meth:`open`; build from other tools' logs with :meth:`import_file`,
    :meth:`import_jsonl` or :meth:`from_events`.
    """

    def __init__(
        self,
        table: pa.Table,
        meta: Mapping[str, Any],
        path: Path | None = None,
        complete: bool = True,
    ) -> None:
        self.table: pa.Table = table
        self.meta: JSON = dict(meta)
        self.path = path
        #: True only for a whole file: closed by its writer (the end-of-stream marker is there)
        #: and nothing lost or damaged. False while it is still being written, or when the
        #: writer was killed, or when anything was lost (see :attr:`integrity`).
        self.complete = complete
        #: What reading the file found: batches, checksums verified, damage with byte offsets
        #: and the ``seq`` ranges lost (``None`` for a recording not read from a file).
        self.integrity: Integrity | None = None
        self._events: list[Event] | None = None
        self._event_list: EventList | None = None
        self._state: ConversationState | None = None
        self._timeline: StateTimeline | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Recording:
        """Read a recording file, recovering every intact batch of a cut or damaged one.

        Every batch is validated and its checksum verified before it is used (files written
        before checksums existed are validated only); damage to one batch costs that batch
        only, and ``seq`` continuity says which events are missing.

        Warns:
            RecordingSalvageWarning: something was cut or damaged; says which ``seq`` ranges
                (how many events) were lost, and where in the file.

        Raises:
            FileNotFoundError: no such file.
            RecordingDamagedError: the header (the first message) is damaged.
            RecordingFormatError: not a recording, or written by a newer realtime_nb.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no recording at {p}")
        if p.is_dir():
            raise RecordingFormatError(f"{p} is a folder; give a .arrow file inside it")
        read = _read(p)
        if read is None:
            warnings.warn(
                RecordingSalvageWarning(
                    f"{p} ends inside its header ({p.stat().st_size} bytes): nothing to recover"
                ),
                stacklevel=2,
            )
            return cls(_empty_table(make_meta()), make_meta(), p, complete=False)
        schema, report = read
        meta = _meta_of(schema, p)
        if report.damage:
            warnings.warn(
                RecordingSalvageWarning(
                    f"{p} {'was cut' if report.cut_only else 'is damaged'}: {report.summary()}"
                ),
                stacklevel=2,
            )
        batches = [b.batch for b in report.batches]
        table = pa.Table.from_batches(batches, schema=schema) if batches else _empty_table(meta)
        rec = cls(table, meta, p, complete=report.whole)
        rec.integrity = report
        return rec

    @classmethod
    def from_events(
        cls,
        events: Iterable[Any],
        *,
        meta: Mapping[str, Any] | None = None,
        path: str | Path | None = None,
        source: Source | str | None = None,
    ) -> Recording:
        """Build a recording from events of any common shape.

        Each element may be an :class:`Event`; a ``(source, event_dict)`` pair; a dict with a
        direction (``source``/``direction``/``dir``: client|server|local|sent|received|in|out)
        and the event under ``event``/``data``/``message`` (an object or its JSON text), plus an
        optional time (``t_ns``, or ``t``/``time``/``timestamp``/``ts``: seconds, milliseconds
        since the epoch, or ISO 8601 text); or a bare event dict. A bare event is given
        ``source`` when it is set, else the source its type implies
        (:func:`~realtime_nb.core.protocol.source_of_type`), and a type known to neither side is
        taken as a server event. Times since the epoch are made relative to the first one;
        events without a time take the time of the event before them. With ``path`` the
        recording is also written there.

        Raises:
            ValueError: an element of unknown shape or an unknown source (its index and what is
                accepted). Nothing is left at ``path`` then.
        """
        rows = (_normalize(el, f"event {i}", source) for i, el in enumerate(events))
        return cls._build(rows, meta or make_meta(), path)

    @classmethod
    def _build(
        cls, rows: Iterable[_Row], meta: Mapping[str, Any], path: str | Path | None
    ) -> Recording:
        """A recording of ``(source, event, t_ns or None)`` rows, written to ``path`` if given."""
        rec = Recorder(path, meta=meta, flush_interval=3600)
        evs: list[Event] = []
        last_t = 0
        base: int | None = None  # subtracted from every given time (the first one, if absolute)
        try:
            for src, data, t_ns in rows:
                if t_ns is None:
                    t_ns = last_t
                else:
                    if base is None:
                        base = t_ns if t_ns >= _EPOCH_NS else 0
                    t_ns = max(t_ns - base, 0)
                last_t = max(last_t, t_ns)
                evs.append(rec.append(src, data, t_ns=t_ns))
        except BaseException:
            rec.close()
            if rec.path is not None:  # a half import must not block the next attempt
                rec.path.unlink(missing_ok=True)
            raise
        rec.close()
        if rec.path is not None:
            return cls.open(rec.path)
        cols = _Columns()
        for ev in evs:
            cols.add(ev)
        table = pa.Table.from_batches([cols.to_batch(rec._schema)])
        r = cls(table, rec.meta, None)
        r._events = evs
        return r

    @classmethod
    def import_jsonl(cls, path: str | Path, *, save_to: str | Path | None = None) -> Recording:
        """Import a JSON-lines log: one event per line (blank lines are skipped).

        A line may hold:

        - a **bare event**, ``{"type": "response.done", ...}``, with no direction, as a browser
          console or most loggers write them. Its source is inferred from its type: the client
          event types are the client's, the server ones (beta names included) the server's,
          ``local.*`` local. A type known to neither side is taken as a **server** event (a
          vendor's extension, such as xAI's ``ping``, usually is one) and kept as it is;
        - an event with its direction, ``{"direction": "sent", "event": {...}}``: the direction
          under ``direction``/``dir``/``source`` (``sent``/``received``, ``client``/``server``/
          ``local``, ``out``/``in``), the event under ``event``/``data``/``message`` (an object,
          or its JSON text), an optional time in ``t_ns``, or in ``t``/``time``/``timestamp``/
          ``ts`` (seconds, milliseconds since the epoch, or ISO 8601 text; times since the epoch
          are made relative to the first one). The direction may also sit beside the event's own
          fields: ``{"direction": "sent", "type": "response.create"}``;
        - a ``[direction, event]`` pair, or a JSON array of any of these;
        - what :meth:`export_jsonl` writes (its metadata line restores the recording's metadata).

        A whole file holding one JSON document (an array of events, pretty-printed, or a
        cassette written as JSON) is read too.

        Raises:
            ValueError: names the file and line (``file:line:``), what the line holds and what
                is accepted.
        """
        p = Path(path)
        try:
            parsed = _jsonl_rows(p)
        except UnicodeDecodeError as exc:
            raise RecordingFormatError(
                f"{p}: not UTF-8 text (byte {exc.start}); expected JSON lines"
            ) from None
        if isinstance(parsed, _CassetteDoc):
            rows, meta = _cassette_rows(parsed.doc, p)
            return cls._build(rows, meta, save_to)
        rows, file_meta = parsed
        if file_meta is not None:
            meta = _fresh_meta(file_meta, p)
        else:
            meta = make_meta(model=_guess_model(rows), imported_from=p.name)
        return cls._build(rows, meta, save_to)

    @classmethod
    def import_cassette(cls, path: str | Path, *, save_to: str | Path | None = None) -> Recording:
        """Import a YAML cassette: ``{version, interactions: [...]}``, every interaction kind.

        - ``{kind: message, direction: sent|received, data: <event>}``: the event, as a client
          (``sent``) or server (``received``) event; without a direction, its source is inferred
          from its type as in :meth:`import_jsonl`;
        - ``{kind: close, code, reason, ok}`` (a dropped connection): a ``local.connection.closed``
          event with those fields, as the live session records a drop. When messages follow it
          (a second connection), a ``local.connection.opened`` event (``url`` and ``backend``
          unknown: ``None``) marks where that connection starts;
        - an HTTP exchange (``{request, response}``, e.g. a WebRTC SDP offer): ``local.http``;
        - any other kind: a ``local.cassette.<kind>`` event with every field of the interaction
          (its own ``type`` field, if any, renamed ``interaction_type``). Nothing is dropped.

        Secrets in local events are redacted, as in every recording.

        Raises:
            RecordingFormatError: not YAML, or not a cassette.
            ValueError: an interaction that is not a mapping, a message without an event or with
                an unknown direction (the message names the file, the interaction's index and
                what is accepted).
        """
        p = Path(path)
        rows, meta = _cassette_rows(_load_yaml(p), p)
        return cls._build(rows, meta, save_to)

    @classmethod
    def import_file(cls, path: str | Path, *, save_to: str | Path | None = None) -> Recording:
        """Open or import a file, by its content: a realtime_nb recording (an Arrow IPC stream,
        ``.arrow``), a JSON-lines log with or without a direction per line, our own
        :meth:`export_jsonl` output included (see :meth:`import_jsonl`), or a YAML cassette of
        any interaction kinds (see :meth:`import_cassette`). ``save_to`` writes what is imported
        as a recording (a recording is opened where it is).

        Raises:
            FileNotFoundError: no such file.
            RecordingFormatError: none of those formats, or a recording written by a newer
                realtime_nb (the message says which formats are accepted).
            ValueError: a line or an interaction that cannot be read (the message names the
                file, the line or interaction index, and what is accepted).
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no recording, JSON-lines log or cassette at {p}")
        if p.is_dir():
            raise RecordingFormatError(f"{p} is a folder; accepted: {_FORMATS}")
        with open(p, "rb") as f:
            head = f.read(64)
        if head[:4] == b"\xff\xff\xff\xff" or head[:6] == b"ARROW1":
            return cls.open(p)
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
        if text[:1] in (b"{", b"["):  # by content, whatever the name says
            return cls.import_jsonl(p, save_to=save_to)
        if p.suffix == ".arrow" and (not text or head[:1] == b"\xff" or b"\0" in head):
            return cls.open(p)  # empty or cut inside its header: the reader says what it recovers
        if not text:
            raise RecordingFormatError(f"{p} is empty; accepted: {_FORMATS}")
        return cls.import_cassette(p, save_to=save_to)

    # -- events and state ------------------------------------------------------------------------

    @property
    def events(self) -> Sequence[Event]:
        """The events, in order: a sequence (``len``, index, slice, iteration) of :class:`Event`
        objects made from the table when accessed (see :class:`EventList`); nothing is copied
        up front. A recording built in memory by :meth:`from_events` keeps its event list."""
        if self._events is not None:
            return self._events
        if self._event_list is None:
            self._event_list = EventList(self.table)
        return self._event_list

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    @property
    def state(self) -> ConversationState:
        """The conversation reduced from all events (cached). The same reduction keeps
        checkpoints every :data:`CHECKPOINT_EVERY_S` seconds for :meth:`state_at`."""
        if self._state is None:
            self._state = self.timeline().state
        return self._state

    def timeline(self, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> StateTimeline:
        """The reduction of this recording with checkpoints every ``checkpoint_every_s`` seconds
        of session (made once per interval, kept; the first one made is what :attr:`state` and
        :meth:`state_at` use).

        Raises:
            ValueError: ``checkpoint_every_s`` is not a positive number.
        """
        tl = self._timeline
        if tl is not None and tl.every_s == checkpoint_every_s:
            return tl
        tl = StateTimeline(self.table, checkpoint_every_s)
        if self._timeline is None:
            self._timeline = tl
            if self._state is None:
                self._state = tl.state
        return tl

    def state_at(self, t_s: float) -> ConversationState:
        """The state as the live session had it ``t_s`` seconds into the session: every event up
        to the first one later than ``t_s``, applied in order. A new object on each call.

        Starts from the nearest reducer checkpoint before ``t_s`` (the first call reduces the
        whole recording once, as :attr:`state` does) and applies at most
        :data:`CHECKPOINT_EVERY_S` of events after it, audio appends in bulk.
        """
        return self.timeline().state_at(t_s)

    @property
    def items(self) -> list[Any]:
        return self.state.items

    def item(self, item_id: str) -> ItemView:
        """One item, with its audio, rendered in a notebook with a player.

        Raises:
            KeyError: no such item (the message lists some known ids).
        """
        return ItemView(self, self.state.item(item_id))

    def item_start_s(self, item_id: str) -> float | None:
        """Where an item's audio starts on the session timeline, in seconds (``None``: no audio).

        User audio: when its first chunk was sent; assistant audio: when its first delta arrived.
        """
        st = self.state
        item = st.item(item_id)
        part = item.audio_part()
        if part is None:
            return None
        if part.input_range is not None:
            # The first chunk starting at or after the item's first byte (offsets only grow).
            times = st.input_chunk_times
            k = times.index_at(part.input_range[0] - 1) + 1
            return times[k][0] / 1e9 if k < len(times) else None
        import pyarrow.compute as pc

        tbl = self.table
        if not tbl.num_rows:
            return None
        first = tbl.filter(
            pc.and_(
                pc.and_(pc.equal(tbl.column("item_id"), item_id), pc.is_valid(tbl.column("audio"))),
                pc.equal(tbl.column("source"), Source.SERVER.value),
            )
        ).column("t_ns")
        return first[0].as_py() / 1e9 if len(first) else None

    @property
    def duration_s(self) -> float:
        if not self.table.num_rows:
            return 0.0
        import pyarrow.compute as pc

        return float(pc.max(self.table.column("t_ns")).as_py()) / 1e9

    def to_pandas(self) -> Any:
        """The events table as a pandas DataFrame (needs pandas)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from None
        return self.table.to_pandas()

    def to_polars(self) -> Any:
        """The events table as a polars DataFrame (needs polars)."""
        try:
            import polars as pl
        except ImportError:
            raise ImportError("to_polars() needs polars: pip install polars") from None
        return pl.from_arrow(self.table)

    # -- the debugging loop ----------------------------------------------------------------------

    def redrive(self, **settings: Any) -> Recording:
        """Send this recording's user turns to a live server with changed settings (instructions,
        tools, voice, url, ...), turn by turn, and return the new recording (its metadata names
        this one as its parent). See :func:`realtime_nb.debugging.redrive.redrive` for every option."""
        from ..debugging.redrive import redrive

        return redrive(self, **settings)

    def replay_data(self, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> Any:
        """The replay data layer (overview peaks, audio windows, state at a playhead)."""
        from ..debugging.replay import ReplayData

        return ReplayData(self, checkpoint_every_s=checkpoint_every_s)

    def metrics(self) -> Any:
        """Per-turn latency and per-response tokens and cost (:func:`realtime_nb.debugging.metrics.metrics`)."""
        from ..debugging.metrics import metrics

        return metrics(self)

    def play(self) -> Any:
        """Show this recording in the widget's replay mode (a timeline, both tracks, the
        transcript and event log in sync with the playhead)."""
        from ..widget import ReplayWidget

        return ReplayWidget(self)

    # -- audio -----------------------------------------------------------------------------------

    def item_audio(self, item_id: str, heard: bool = True) -> npt.NDArray[np.float32]:
        """One item's audio as float32 samples at its format's rate (cut where it was heard)."""
        st = self.state
        item = st.item(item_id)
        part = item.audio_part()
        fmt = (
            st.input_format if part is not None and part.type == "input_audio" else st.output_format
        )
        return decode_to_float(st.item_audio(item_id, heard=heard), fmt)

    def audio(
        self, track: str = "user", rate: int = 24_000, heard: bool = True
    ) -> npt.NDArray[np.float32]:
        """A whole track on the session timeline: sample ``i`` is time ``i / rate``.

        ``track="user"``: every input chunk at the time it was sent (gaps are silence).
        ``track="assistant"``: each output item from when its first delta arrived (or, if the
        browser reported it, when it started playing), after the previous one finished, cut at
        the point it was truncated or stopped (``heard=False`` keeps everything received).

        Raises:
            ValueError: an unknown track name.
        """
        if track == "user":
            return self._user_track(rate)
        if track == "assistant":
            return self._assistant_track(rate, heard)
        raise ValueError(f"unknown track {track!r}; accepted: 'user', 'assistant'")

    def _user_track(self, rate: int) -> npt.NDArray[np.float32]:
        return _render_float(user_track(self.state, rate))

    def _assistant_track(self, rate: int, heard: bool) -> npt.NDArray[np.float32]:
        st = self.state
        starts = assistant_audio_starts(self.table, st)
        return _render_float(assistant_track(st, starts, rate, heard))

    def export_wav(self, path: str | Path, rate: int = 24_000, heard: bool = True) -> Path:
        """Write a stereo WAV (PCM16): the user on the left, the assistant on the right,
        time-aligned, the assistant as it was heard (cut at truncations).

        Streams: one window of :data:`~realtime_nb.storage._tracks.WINDOW_FRAMES` frames at a
        time, PCM16 copied as recorded (resampled only when ``rate`` differs from the
        recording's), so memory stays a few MiB whatever the session's length. The file appears
        once complete (RF64 past 4 GiB: see :mod:`._wav`)."""
        st = self.state
        user = user_track(st, rate)
        bot = assistant_track(st, assistant_audio_starts(self.table, st), rate, heard)
        n = max(user.length, bot.length)
        p = Path(path)
        window = np.zeros((min(n, WINDOW_FRAMES), 2), np.int16)
        with WavWriter(p, rate, 2, n) as f:
            for a in range(0, n, WINDOW_FRAMES):
                buf = window[: min(WINDOW_FRAMES, n - a)]
                buf.fill(0)
                user.render(a, buf[:, 0])
                bot.render(a, buf[:, 1])
                f.write(buf)
        return p

    # -- export ----------------------------------------------------------------------------------

    def export_jsonl(self, path: str | Path) -> Path:
        """Write JSON lines: a metadata line, then ``{seq, t_ns, source, event}`` per event, audio
        as base64 as on the wire (readable by :meth:`import_jsonl`)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            f.write(_dumps({"realtime_nb_meta": self.meta}) + "\n")
            for ev in self.events:
                f.write(_dumps(ev.to_dict()) + "\n")
        return p

    # -- rendering -------------------------------------------------------------------------------

    def summary(self) -> JSON:
        """Duration, counts, tokens, cost, errors and latency percentiles, as plain values
        (:func:`realtime_nb.debugging.inspection.summarize`)."""
        from ..debugging.inspection import summarize

        return summarize(self)

    def describe(self) -> str:
        """The plain-text summary that ``realtime-nb inspect`` prints."""
        from ..debugging.inspection import summary_text

        return summary_text(self)

    def __str__(self) -> str:
        return self.describe()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("..." if cycle else self.describe())

    def _repr_html_(self) -> str:
        """The summary and the items, audio left out (players show each clip's duration)."""
        from ..debugging.inspection import recording_html

        return recording_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> JSON:
        """In a notebook: the HTML, plus (in a running kernel) a view whose players fetch an
        item's audio when pressed; the audio is never embedded in the output."""
        from ..widget.clip import recording_bundle

        return recording_bundle(self)

    def __repr__(self) -> str:
        where = self.path.name if self.path else "in memory"
        return (
            f"<Recording {where}: {len(self)} events, {self.duration_s:.1f} s, "
            f"model {self.meta.get('model')!r}>"
        )


class ItemView:
    """An :class:`~realtime_nb.core.reducer.Item` of a recording: its fields, its audio, and an HTML
    rendering with a player. Attribute access falls through to the item."""

    def __init__(self, recording: Recording, item: Item) -> None:
        self._recording = recording
        self.item = item

    def __getattr__(self, name: str) -> Any:
        return getattr(self.item, name)

    def audio(self, heard: bool = True) -> npt.NDArray[np.float32]:
        """The item's audio as float32 samples at its format's rate."""
        return self._recording.item_audio(self.item.id, heard=heard)

    def _repr_html_(self) -> str:
        from ..debugging.inspection import item_html

        return item_html(self._recording, self.item)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> JSON:
        """Like :meth:`Recording._repr_mimebundle_`, for one item."""
        from ..widget.clip import recording_bundle

        return recording_bundle(self._recording, self.item)

    def __str__(self) -> str:
        who = self.item.role or self.item.type
        return f"{who} {self.item.id} ({self.item.status or '-'}): {self.item.text}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("..." if cycle else str(self))

    def __repr__(self) -> str:
        who = self.item.role or self.item.type
        return f"<Item {self.item.id} {who}: {self.item.text[:60]!r}>"


def _render_float(track: Track) -> npt.NDArray[np.float32]:
    """A whole track as float32, made window by window (no float copy of the session besides
    the result)."""
    out = np.zeros(track.length, np.float32)
    for a in range(0, track.length, WINDOW_FRAMES):
        track.render(a, out[a : a + WINDOW_FRAMES])
    return out


def assistant_audio_starts(table: pa.Table, state: ConversationState) -> dict[str, int]:
    """When each assistant item's audio started, in ns: its first audio delta's arrival, or the
    browser's ``local.playback.started`` report when there is one (what was actually heard)."""
    import pyarrow.compute as pc

    starts: dict[str, int] = {}
    if table.num_rows:
        # Only the two columns read: filtering the whole table would copy every delta's audio.
        deltas = table.select(["item_id", "t_ns"]).filter(
            pc.and_(
                pc.is_in(table.column("type"), pa.array(_DELTA_TYPES)),
                pc.equal(table.column("source"), "server"),
            )
        )
        ids = deltas.column("item_id").to_pylist()
        times = deltas.column("t_ns").to_pylist()
        for item_id, t_ns in zip(ids, times, strict=True):
            if item_id:
                starts.setdefault(item_id, t_ns)
    for t_ns, etype, data in state.local_events:
        if etype == "local.playback.started" and isinstance(data.get("item_id"), str):
            starts[data["item_id"]] = t_ns
    return starts


_DELTA_TYPES: Final = [t for t, f in AUDIO_FIELDS.items() if f == "delta"]


def _empty_table(meta: Mapping[str, Any]) -> pa.Table:
    return _schema(meta).empty_table()


def _meta_of(schema: pa.Schema, path: Path) -> JSON:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise RecordingFormatError(
            f"{path} is an Arrow stream but not a realtime_nb recording (no {META_KEY.decode()!r} "
            "metadata); read it with pyarrow.ipc.open_stream"
        )
    try:
        meta = json.loads(raw)
    except ValueError:
        raise RecordingFormatError(f"{path}: its realtime_nb metadata is not JSON") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RecordingFormatError(
            f"{path} uses recording format version {version!r}, written by realtime_nb "
            f"{meta.get('package_version', '?')}; this realtime_nb ({__version__}) reads versions "
            f"up to {FORMAT_VERSION}. Upgrade it: pip install -U realtime-nb"
        )
    return dict(meta)


def reduce_table(table: pa.Table, reducer: Reducer | None = None) -> ConversationState:
    """Reduce a recording's table without building an Event for every audio event.

    Client ``input_audio_buffer.append`` rows go to :meth:`Reducer.apply_input_pieces` and reply
    audio deltas to :meth:`Reducer.apply_output_run`, straight from the Arrow buffers; every
    other row becomes an :class:`Event` for :meth:`Reducer.apply`, in order (see
    :class:`_BulkRows`). The result is identical to applying each event in turn (tested).
    """
    r = reducer or Reducer()
    if table.num_rows:
        _BulkRows(table).apply(r, 0, table.num_rows)
    return r.state


#: Wire types the reducer reads, with audio, only for their ids and audio: every spelling of the
#: reply audio delta (see :meth:`Reducer.apply_output_run`).
_DELTA_TYPE: Final = "response.output_audio.delta"
#: The frequent event types (GA names) whose handlers neither read nor change the input
#: timeline: pending audio appends need not be applied before them. Every other type gets them
#: first, so a handler added later that reads the timeline is right without a change here.
_INPUT_BLIND: Final = frozenset(
    {
        "response.output_audio_transcript.delta",
        "conversation.item.input_audio_transcription.delta",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.added",
        "response.output_item.added",
        "response.created",
    }
)


class _BulkRows:
    """A table's rows sorted once for a bulk reduction.

    Three kinds: client audio appends with their audio (>80 % of a session), reply audio deltas
    with their audio and an ``item_id`` (most of the rest), and every other row. :meth:`apply`
    applies the rows of a range in order, with each other row preceded by the appends and the
    deltas before it: appends only touch the input timeline and deltas only their item's output
    audio (and its first-audio times), so between two other rows their relative order does not
    matter, and no other row is ever moved. Deltas go in runs of one item and response.

    The masks and offsets are computed once over the whole table, not per record batch: a live
    recording has a batch every :data:`FLUSH_INTERVAL_S` (~14 400 in an hour), and per-batch
    compute calls cost ten times the reduction itself.
    """

    def __init__(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        audio = table.column(8)
        # The short columns joined into one array first: a compute kernel costs a dispatch per
        # chunk, and the masks are then plain numpy.
        types = table.column(3).combine_chunks()
        kinds = pc.unique(types)
        names = kinds.to_pylist()
        code = np.asarray(pc.index_in(types, value_set=kinds).to_numpy(zero_copy_only=False))
        append_t = np.array([t == "input_audio_buffer.append" for t in names], dtype=bool)
        delta_t = np.array([canonical_type(t) == _DELTA_TYPE for t in names], dtype=bool)
        has_audio = _bools(pc.is_valid(audio))
        app = append_t[code] & has_audio
        if app.any():
            app &= _bools(pc.equal(table.column(2).combine_chunks(), "client"))
        dlt = delta_t[code] & has_audio
        if dlt.any():
            dlt &= _bools(pc.is_valid(table.column(5)))
        other = ~(app | dlt)
        app_rows, dlt_rows = np.flatnonzero(app), np.flatnonzero(dlt)
        other_rows = np.flatnonzero(other)
        self._app_rows, self._dlt_rows, self._other_rows = app_rows, dlt_rows, other_rows
        blind_t = np.array([canonical_type(t) in _INPUT_BLIND for t in names], dtype=bool)
        self._blind: list[bool] = blind_t[code[other_rows]].tolist()
        self._app_before = np.searchsorted(app_rows, other_rows).tolist()
        self._dlt_before = np.searchsorted(dlt_rows, other_rows).tolist()
        t_all = np.asarray(table.column(1).to_numpy(), dtype=np.int64)
        # The audio is referenced where it lies in its batch (the mapped file), not copied.
        # Per row: its chunk, its start and its end (the start of row i + 1 in the chunk).
        starts: list[npt.NDArray[np.int32]] = []
        lengths: list[int] = []
        self._datas: list[memoryview] = []
        for chunk in audio.chunks:
            m = len(chunk)
            bufs = chunk.buffers()
            if bufs[1] is None:  # an empty chunk: no offsets buffer
                offs = np.zeros(m + 1, np.int32)
            else:
                offs = np.frombuffer(bufs[1], np.int32, count=m + 1, offset=4 * chunk.offset)
            starts.append(offs)
            # As unsigned bytes, the format of the arrays they are copied into.
            data = memoryview(bufs[2]).cast("B") if bufs[2] is not None else memoryview(b"")
            self._datas.append(data)
            lengths.append(m)
        sizes = np.asarray(lengths, np.int64)
        chunk_of = np.repeat(np.arange(len(sizes)), sizes)
        base = np.concatenate([[0], np.cumsum(sizes + 1)])[:-1]  # each chunk's place in offs_all
        first_row = np.concatenate([[0], np.cumsum(sizes)])  # each chunk's first row
        offs_all = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)

        def where(rows: npt.NDArray[np.intp]) -> tuple[Any, Any, Any]:
            cid = chunk_of[rows]
            at = base[cid] + rows - first_row[cid]
            return offs_all[at], offs_all[at + 1], cid

        # The other rows as events. Only their own columns are taken: a take over the audio
        # column would first join its chunks (the whole recording's audio).
        picked = pa.array(other_rows)
        cols = [table.column(i).take(picked).to_pylist() for i in range(8)]
        o_first, o_end, o_cid = (x.tolist() for x in where(other_rows))
        datas = self._datas
        o_audio = [
            bytes(datas[c][f:e]) if ok else None
            for ok, f, e, c in zip(
                has_audio[other_rows].tolist(), o_first, o_end, o_cid, strict=True
            )
        ]
        sources = _SOURCES
        # Made as _row_events makes them (slots set directly: a third of the constructor's
        # cost, which was a fifth of this set-up).
        events: list[Event] = []
        add = events.append
        for seq, t_ns, src, etype, eid, iid, rid, payload, au in zip(*cols, o_audio, strict=True):
            ev = _new_event(Event)
            ev.seq, ev.t_ns, ev.source, ev.type = seq, t_ns, sources.get(src, Source.LOCAL), etype
            ev._data, ev._payload, ev._unchecked = None, payload, None
            ev.audio, ev.event_id, ev.item_id, ev.response_id = au, eid, iid, rid
            add(ev)
        self._events = events
        # Appends: times, sizes, and the runs whose audio is contiguous in one buffer (each run
        # one piece for the input timeline).
        a_first, a_end, a_cid = where(app_rows)
        breaks = np.flatnonzero((a_end[:-1] != a_first[1:]) | (a_cid[:-1] != a_cid[1:])) + 1
        # Kept as arrays: the state's chunk times are arrays too (ChunkTimes), filled from these
        # in one copy per run.
        self._a_t: npt.NDArray[np.int64] = t_all[app_rows]
        self._a_off = np.zeros(len(app_rows) + 1, np.int64)  # where each starts, and the end
        np.cumsum(a_end - a_first, out=self._a_off[1:])
        self._a_first, self._a_end, self._a_cid = a_first, a_end, a_cid
        self._a_runs: list[int] = [0, *breaks.tolist(), len(app_rows)]
        # Each run's audio as one view, made once: a range of appends is then the runs it
        # covers, cut only at its two ends.
        if len(app_rows):
            lo, hi = np.asarray(self._a_runs[:-1]), np.asarray(self._a_runs[1:]) - 1
            self._a_pieces: list[memoryview] = [
                datas[c][f:e]
                for f, e, c in zip(
                    a_first[lo].tolist(), a_end[hi].tolist(), a_cid[lo].tolist(), strict=True
                )
            ]
        else:
            self._a_pieces = []
        # Deltas: times, audio places, and where the (item, response) pair changes.
        d_first, d_end, d_cid = where(dlt_rows)
        self._d_t: list[int] = t_all[dlt_rows].tolist()
        # Each delta's audio: a view of the file, not a copy (output_audio() joins them, one
        # copy in all). Made here in one pass: a run is then a slice of this list.
        self._d_audio: list[memoryview] = [
            datas[c][f:e]
            for f, e, c in zip(d_first.tolist(), d_end.tolist(), d_cid.tolist(), strict=True)
        ]
        picked = pa.array(dlt_rows)
        items = table.column(5).take(picked).combine_chunks()
        responses = table.column(6).take(picked).combine_chunks()
        self._d_item: list[str] = items.to_pylist()
        self._d_resp: list[str | None] = responses.to_pylist()
        # Where the (item, response) pair changes: compared as dictionary codes (a missing
        # response is a code of its own).
        change = np.zeros(len(dlt_rows), dtype=bool)
        for ids in (items, responses):
            codes = _codes(ids)
            change[1:] |= codes[1:] != codes[:-1]
        change[:1] = True
        starts_at = np.flatnonzero(change)
        self._d_groups: list[int] = [*starts_at.tolist(), len(dlt_rows)]
        # Per delta, the end of its run: most ranges of deltas lie in one run, applied in one
        # call without the search :meth:`_deltas` makes.
        self._d_run_end: list[int] = np.repeat(self._d_groups[1:], np.diff(self._d_groups)).tolist()

    def apply(self, r: Reducer, lo: int, hi: int) -> None:
        """Apply rows ``[lo, hi)`` to ``r`` (which holds the rows before ``lo``)."""
        search = np.searchsorted
        o_lo, o_hi = int(search(self._other_rows, lo)), int(search(self._other_rows, hi))
        a, a_hi = int(search(self._app_rows, lo)), int(search(self._app_rows, hi))
        d, d_hi = int(search(self._dlt_rows, lo)), int(search(self._dlt_rows, hi))
        app_before, dlt_before, events = self._app_before, self._dlt_before, self._events
        blind, run_end = self._blind, self._d_run_end
        d_item, d_resp, d_t, d_audio = self._d_item, self._d_resp, self._d_t, self._d_audio
        apply, output_run = r.apply, r.apply_output_run
        for j in range(o_lo, o_hi):
            ab = app_before[j]
            if ab > a and not blind[j]:
                self._appends(r, a, ab)
                a = ab
            db = dlt_before[j]
            if db > d:
                if db <= run_end[d]:  # within one run (the usual case): as _deltas does
                    output_run(d_item[d], d_resp[d], d_t[d:db], d_audio[d:db])
                else:
                    self._deltas(r, d, db)
                d = db
            apply(events[j])
        if a_hi > a:
            self._appends(r, a, a_hi)
        if d_hi > d:
            self._deltas(r, d, d_hi)

    def _appends(self, r: Reducer, a: int, b: int) -> None:
        """Appends ``[a, b)`` (indexes among the appends)."""
        runs = self._a_runs
        k = bisect.bisect_right(runs, a) - 1  # the run holding append a
        last = bisect.bisect_right(runs, b - 1) - 1  # and the one holding append b - 1
        pieces = self._a_pieces[k : last + 1]
        if a != runs[k] or (k == last and b != runs[k + 1]):
            # Cut inside a run: from append a's start (to the run's end, or append b - 1's).
            stop = b - 1 if k == last else runs[k + 1] - 1
            pieces[0] = self._view(a, stop)
        if k != last and b != runs[last + 1]:
            pieces[-1] = self._view(runs[last], b - 1)
        r.apply_input_pieces(self._a_t[a:b], self._a_off[a : b + 1], pieces)

    def _view(self, first: int, last: int) -> memoryview:
        """The audio of appends ``first..last`` (both in one run)."""
        start, end = int(self._a_first[first]), int(self._a_end[last])
        return self._datas[int(self._a_cid[first])][start:end]

    def _deltas(self, r: Reducer, a: int, b: int) -> None:
        """Deltas ``[a, b)`` (indexes among the deltas), in runs of one item and response."""
        groups, audio, times = self._d_groups, self._d_audio, self._d_t
        k = bisect.bisect_right(groups, a) - 1
        lo = a
        while lo < b:
            hi = min(groups[k + 1], b)
            r.apply_output_run(self._d_item[lo], self._d_resp[lo], times[lo:hi], audio[lo:hi])
            lo = hi
            k += 1


def _codes(values: pa.Array) -> npt.NDArray[np.int32]:
    """Each value's code in a dictionary of the values (nulls: a code of their own)."""
    enc = pc.dictionary_encode(values, null_encoding="encode")
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int32)


def _bools(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


_MAX_T_NS: Final = 2**62


class StateTimeline:
    """A recording's table reduced once, with a reducer checkpoint every ``every_s`` seconds.

    Checkpoints share structure (:class:`~realtime_nb.core.reducer.Checkpointer`): the whole
    reduction costs time linear in the recording. :meth:`state_at` restores the nearest one and
    applies the rows after it with :func:`reduce_table` (audio appends in bulk).

    Raises:
        ValueError: ``every_s`` is not a positive number.
    """

    def __init__(self, table: pa.Table, every_s: float = CHECKPOINT_EVERY_S) -> None:
        if (
            not isinstance(every_s, (int, float))
            or isinstance(every_s, bool)
            or not every_s > 0
            or every_s == float("inf")
        ):
            raise ValueError(
                f"checkpoint_every_s must be a positive number of seconds, got {every_s!r}"
            )
        import gc

        self.every_s = float(every_s)
        self._table = table
        # One concatenation in C++: a live recording has a batch (a chunk) every 250 ms, and a
        # Python call per chunk cost more than the rest of this set-up.
        t = np.asarray(table.column("t_ns").to_numpy(), dtype=np.int64)
        # Events are applied in seq order up to the first one later than the playhead: the
        # running maximum of the times makes that a binary search.
        self._tmax: npt.NDArray[np.int64] = np.maximum.accumulate(t) if len(t) else t
        self._step_ns = max(int(self.every_s * 1e9), 1)
        self.checkpoints: list[tuple[int, Checkpoint]] = []  # (rows applied, checkpoint)
        # The reduction allocates ~10^5 small objects per hour that all stay alive: cyclic GC
        # passes over them would find nothing to free and cost ~30 % of the time.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            r = Reducer()
            cps = Checkpointer(r)
            last = int(self._tmax[-1]) if len(self._tmax) else 0
            # Sorted once for the whole table: per slice, the set-up would cost more than the
            # rows of a live recording's ~120 batches between two checkpoints.
            rows = _BulkRows(table) if table.num_rows else None
            row = 0
            k = 0
            while True:
                upto = self.rows_until(k * self._step_ns)
                if upto > row and rows is not None:
                    rows.apply(r, row, upto)
                    row = upto
                self.checkpoints.append((row, cps.take()))
                if k * self._step_ns > last:
                    break
                k += 1
            cps.stop()
        finally:
            if gc_was_enabled:
                gc.enable()
        #: The state after every event.
        self.state: ConversationState = r.state

    @property
    def last_t_ns(self) -> int:
        """The time of the latest event (0 for none)."""
        return int(self._tmax[-1]) if len(self._tmax) else 0

    def rows_until(self, t_ns: int) -> int:
        """How many rows are applied at ``t_ns`` (up to the first event later than it)."""
        return int(np.searchsorted(self._tmax, t_ns, side="right"))

    def state_at(self, t_s: float) -> ConversationState:
        """The state ``t_s`` seconds into the session (NaN: time 0; before 0: no events yet).
        A new object on each call, independent of the checkpoints and of :attr:`state`."""
        import gc

        # A time past int64 nanoseconds is "after every event".
        limit = int(min(max(t_s * 1e9, -1.0), _MAX_T_NS)) if t_s == t_s else 0
        upto = self.rows_until(limit)
        k = min(max(limit, 0) // self._step_ns, len(self.checkpoints) - 1)
        row, cp = self.checkpoints[k]
        # A restore allocates thousands of objects and frees none: a collection it would
        # trigger walks the whole heap (the recording's state included) for nothing, and was
        # the slowest seeks' cost.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if upto < row:  # before the first checkpoint (a negative time): from the start
                row, r = 0, Reducer()
            else:
                r = cp.restore()
            if upto > row:
                reduce_table(self._table.slice(row, upto - row), r)
        finally:
            if gc_was_enabled:
                gc.enable()
        return r.state

    def __repr__(self) -> str:
        return (
            f"<StateTimeline {self._table.num_rows} events, {len(self.checkpoints)} checkpoints "
            f"every {self.every_s:g} s>"
        )


class _RowEvent(Event):
    """An :class:`Event` read from a recording's table: its audio stays in the table (Arrow
    memory, usually the mapped file) and is copied out as bytes each time it is read."""

    __slots__ = ("_col", "_row")

    _col: _AudioColumn
    _row: int

    @property
    def audio(self) -> bytes | None:
        return self._col.get(self._row)

    @audio.setter
    def audio(self, value: bytes | None) -> None:
        self._col = _AudioColumn.constant(value)
        self._row = 0

    def __reduce__(self) -> tuple[Any, ...]:
        """Copied or pickled as a plain :class:`Event`, its audio copied out of the table."""
        fields = (self.seq, self.t_ns, self.source, self.type, self.payload, self.audio)
        return (_plain_event, (*fields, self.event_id, self.item_id, self.response_id))


def _plain_event(
    seq: int,
    t_ns: int,
    source: Source,
    etype: str,
    payload: str,
    audio: bytes | None,
    event_id: str | None,
    item_id: str | None,
    response_id: str | None,
) -> Event:
    return Event(
        seq,
        t_ns,
        source,
        etype,
        payload=payload,
        audio=audio,
        event_id=event_id,
        item_id=item_id,
        response_id=response_id,
    )


class _AudioColumn:
    """The audio column of one record batch, read row by row without copying the column."""

    __slots__ = ("_data", "_offsets", "_valid")

    def __init__(self, arr: pa.Array | None) -> None:
        self._data = memoryview(b"")
        self._offsets: list[int] = [0, 0]
        self._valid: list[bool] = [False]
        if arr is None or not len(arr):
            return
        bufs = arr.buffers()
        self._offsets = np.frombuffer(bufs[1], dtype=np.int32)[
            arr.offset : arr.offset + len(arr) + 1
        ].tolist()
        self._data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
        self._valid = arr.is_valid().to_numpy(zero_copy_only=False).tolist()

    @classmethod
    def constant(cls, value: bytes | None) -> _AudioColumn:
        col = cls(None)
        if value is not None:
            col._data, col._offsets, col._valid = memoryview(value), [0, len(value)], [True]
        return col

    def get(self, row: int) -> bytes | None:
        if not self._valid[row]:
            return None
        return bytes(self._data[self._offsets[row] : self._offsets[row + 1]])


def _row_events(batch: pa.RecordBatch) -> Iterator[Event]:
    """The events of one batch; the audio column is not materialized (see :class:`_RowEvent`)."""
    if not batch.num_rows:
        return
    sources = _SOURCES
    audio = _AudioColumn(batch.column(8))
    cols = [batch.column(i).to_pylist() for i in range(8)]
    new = _RowEvent.__new__
    for row, (seq, t_ns, src, etype, eid, iid, rid, payload) in enumerate(zip(*cols, strict=True)):
        ev = new(_RowEvent)
        ev.seq, ev.t_ns, ev.source, ev.type = seq, t_ns, sources.get(src, Source.LOCAL), etype
        ev._data, ev._payload, ev._unchecked = None, payload, None
        ev.event_id, ev.item_id, ev.response_id = eid, iid, rid
        ev._col, ev._row = audio, row
        yield ev


class EventList(Sequence[Event]):
    """The events of a recording as a read-only sequence over its Arrow table.

    ``len``, indexing (negative too), slicing (a new view, no copy) and iteration. Each access
    makes :class:`Event` objects for the rows it touches; their payload is parsed when ``data``
    is read and their audio copied out of the table when ``audio`` is read, so walking the
    events of a long recording never holds all of its audio twice.
    """

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._batches = [b for b in table.to_batches() if b.num_rows]
        self._starts = np.cumsum([0] + [b.num_rows for b in self._batches]).tolist()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return EventList(self._table.slice(start, max(stop - start, 0)))
            return EventList(self._table.take(pa.array(range(start, stop, step), pa.int64())))
        try:
            i = int(index.__index__())
        except AttributeError:
            raise TypeError(
                f"event indices must be integers or slices, not {type(index).__name__}"
            ) from None
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"event index {index} out of range for {n} events")
        import bisect

        b = bisect.bisect_right(self._starts, i) - 1
        row = i - self._starts[b]
        return next(_row_events(self._batches[b].slice(row, 1)))

    def __iter__(self) -> Iterator[Event]:
        for batch in self._batches:
            yield from _row_events(batch)

    def __repr__(self) -> str:
        return f"<EventList of {len(self)} events>"


def _iter_events(table: pa.Table) -> Iterator[Event]:
    for batch in table.to_batches():
        yield from _iter_batch(batch)


def _iter_batch(batch: pa.RecordBatch) -> Iterator[Event]:
    sources = _SOURCES
    if batch.num_rows:
        cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for seq, t_ns, src, etype, eid, iid, rid, payload, audio in zip(*cols, strict=False):
            yield Event(
                seq,
                t_ns,
                sources.get(src, Source.LOCAL),
                etype,
                payload=payload,
                audio=audio,
                event_id=eid,
                item_id=iid,
                response_id=rid,
            )


#: One imported event: its source, the event, and its time in ns when the log gave one.
_Row = tuple[Source, JSON, int | None]

#: Given times at or above this many ns (2001-09-09 as nanoseconds since the epoch) are clock
#: times, not offsets into the session: the import makes them relative to the first one.
_EPOCH_NS: Final = 10**18
#: A numeric time above this is milliseconds since the epoch (as seconds it would be past the
#: year 5000); below it, seconds.
_MS_EPOCH_THRESHOLD: Final = 1e11
_DIRECTION_KEYS: Final = ("direction", "dir", "source")
_BODY_KEYS: Final = ("event", "data", "message")
_TIME_KEYS: Final = ("t", "time", "timestamp", "ts")
_ACCEPTED_EVENTS: Final = (
    "an Event, a (source, event) pair, a dict with 'source'/'direction' and 'event'/'data', "
    "or a bare event dict (its source inferred from its type)"
)
_ACCEPTED_LINES: Final = (
    'one JSON object per line: a bare event {"type": ...} (its source inferred from its type), '
    '{"direction": "sent"|"received"|"client"|"server"|"local", "event": {...}} (also '
    '"source"/"dir" and "data"/"message"), a [direction, event] pair, '
    "or realtime_nb's export_jsonl lines"
)
_ACCEPTED_INTERACTIONS: Final = (
    "a mapping per interaction: {kind: message, direction: sent|received, data: <event>}, "
    "{kind: close, code, reason, ok}, an HTTP exchange {request, response}, or any other kind "
    "(kept as a local.cassette.<kind> event)"
)
_FORMATS: Final = (
    "a realtime_nb recording (.arrow, an Arrow IPC stream), JSON lines (one event per line, "
    "with or without a direction), or a YAML cassette {version, interactions: [...]}"
)


def _normalize(
    el: Any, where: str, default_source: Source | str | None, accepted: str = _ACCEPTED_EVENTS
) -> _Row:
    """``(source, event, t_ns)`` of one element of an event log; ``where`` names it in errors.

    Raises:
        ValueError: an unknown shape, or an unknown direction.
    """
    if isinstance(el, Event):
        return el.source, el.wire(), el.t_ns
    if isinstance(el, (tuple, list)) and len(el) == 2 and isinstance(el[1], dict):
        return _parse_source(el[0], where), el[1], None
    if isinstance(el, dict):
        dkey = next((k for k in _DIRECTION_KEYS if k in el), None)
        bkey = next((k for k in _BODY_KEYS if k in el), None)
        body = _as_object(el[bkey]) if bkey is not None else None
        etype = el.get("type")
        if isinstance(etype, str) and dkey is None:  # a bare event
            return _source_for(etype, default_source, where), el, None
        if body is not None:  # {direction?, event, time?}
            if dkey is not None:
                src = _parse_source(el[dkey], where)
            else:
                src = _source_for(body.get("type"), default_source, where)
            return src, body, _time_of(el)
        if isinstance(etype, str):  # the direction beside the event's own fields
            assert dkey is not None
            return _parse_source(el[dkey], where), {k: v for k, v in el.items() if k != dkey}, None
        keys = ", ".join(map(str, list(el)[:8])) or "none"
        raise ValueError(
            f"{where} has neither a string 'type' nor an event under "
            f"'event'/'data'/'message' (its keys: {keys}); accepted: {accepted}"
        )
    raise ValueError(f"{where} has an unknown shape ({type(el).__name__}); accepted: {accepted}")


def _parse_source(value: Any, where: str) -> Source:
    try:
        return Source.parse(value if isinstance(value, (str, Source)) else str(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _source_for(event_type: Any, default: Source | str | None, where: str) -> Source:
    """``default`` when given, else the source the event type implies (server when unknown)."""
    if default is not None:
        return _parse_source(default, where)
    if isinstance(event_type, str):
        return source_of_type(event_type) or Source.SERVER
    return Source.SERVER


def _as_object(value: Any) -> JSON | None:
    """``value`` if it is a JSON object, or the object its JSON text holds; else ``None``."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip()[:1] == "{":
        try:
            obj = json.loads(value)
        except ValueError:
            return None
        return obj if isinstance(obj, dict) else None
    return None


def _time_of(el: Mapping[str, Any]) -> int | None:
    """A record's time in ns: ``t_ns``, or seconds / epoch milliseconds / ISO 8601 text."""
    import math

    t_ns = el.get("t_ns")
    if isinstance(t_ns, int) and not isinstance(t_ns, bool):
        return t_ns
    for key in _TIME_KEYS:
        v = el.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v * 1e6) if abs(v) >= _MS_EPOCH_THRESHOLD else int(v * 1e9)
        if isinstance(v, str) and v[:1].isdigit():
            try:
                when = _dt.datetime.fromisoformat(v)
            except ValueError:
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
            return int(when.timestamp() * 1e6) * 1000
    return None


class _CassetteDoc:
    """A JSON file that turned out to be a cassette."""

    def __init__(self, doc: JSON) -> None:
        self.doc = doc


def _jsonl_rows(p: Path) -> tuple[list[_Row], JSON | None] | _CassetteDoc:
    """The rows of a JSON-lines log and its realtime_nb metadata line (if any); a file holding
    one JSON document is read as a whole.

    Raises:
        ValueError: ``file:line:`` what is wrong and what is accepted.
        UnicodeDecodeError: not UTF-8.
    """
    rows: list[_Row] = []
    meta: JSON | None = None
    with open(p, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if not rows and meta is None and line[:1] in "[{":
                    whole = _json_document(p)
                    if whole is not None:
                        return whole
                raise ValueError(
                    f"{p}:{lineno}: not JSON ({exc}); accepted: {_ACCEPTED_LINES}"
                ) from None
            if isinstance(obj, dict) and "realtime_nb_meta" in obj:
                if not isinstance(obj["realtime_nb_meta"], dict):
                    raise ValueError(f"{p}:{lineno}: 'realtime_nb_meta' must be an object")
                meta = obj["realtime_nb_meta"]
                continue
            if (
                isinstance(obj, dict)
                and isinstance(obj.get("interactions"), list)
                and not rows
                and meta is None
            ):
                return _CassetteDoc(obj)  # a cassette written as one line of JSON
            if isinstance(obj, list) and not _is_pair(obj):
                for j, el in enumerate(obj):
                    rows.append(_line_row(el, f"element {j} of the line", p, lineno))
            else:
                rows.append(_line_row(obj, "the line", p, lineno))
    return rows, meta


def _line_row(obj: Any, where: str, p: Path, lineno: int) -> _Row:
    try:
        return _normalize(obj, where, None, _ACCEPTED_LINES)
    except ValueError as exc:
        raise ValueError(f"{p}:{lineno}: {exc}") from None


def _is_pair(obj: list[Any]) -> bool:
    return len(obj) == 2 and isinstance(obj[1], dict) and not isinstance(obj[0], (dict, list))


def _json_document(p: Path) -> tuple[list[_Row], JSON | None] | _CassetteDoc | None:
    """A file that is one (pretty-printed) JSON document: an array of events, a cassette, or one
    event; ``None`` when it is not one JSON document."""
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("interactions"), list):
        return _CassetteDoc(doc)
    elements = doc if isinstance(doc, list) and not _is_pair(doc) else [doc]
    rows = []
    for j, el in enumerate(elements):
        try:
            rows.append(_normalize(el, f"element {j}", None, _ACCEPTED_LINES))
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None
    return rows, None


def _load_yaml(p: Path) -> Any:
    """The YAML document of a cassette; dates are left as text (events are JSON).

    Raises:
        RecordingFormatError: not UTF-8 text or not YAML (names the file and the line).
    """
    import yaml

    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordingFormatError(
            f"{p} is not text (byte {exc.start} is not UTF-8); accepted: {_FORMATS}"
        ) from None
    try:
        # A SafeLoader subclass: builds plain data only, never arbitrary objects.
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RecordingFormatError(f"{p}: not YAML ({problem}{at}); accepted: {_FORMATS}") from None


_LOADER: list[Any] = []


def _yaml_loader() -> Any:
    """yaml's safe loader (the C one when available) without the timestamp resolver: an
    unquoted date in a cassette stays the text it was, as it would be in JSON."""
    if not _LOADER:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        resolvers = {
            first: [r for r in rs if r[0] != "tag:yaml.org,2002:timestamp"]
            for first, rs in base.yaml_implicit_resolvers.items()
        }
        _LOADER.append(type("_CassetteLoader", (base,), {"yaml_implicit_resolvers": resolvers}))
    return _LOADER[0]


def _cassette_rows(doc: Any, p: Path) -> tuple[list[_Row], JSON]:
    """The rows and metadata of a cassette document (see :meth:`Recording.import_cassette`).

    Raises:
        RecordingFormatError: not a cassette. ValueError: an interaction that cannot be read.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("interactions"), list):
        got = (
            f"a mapping with keys {', '.join(map(str, list(doc)[:8]))}"
            if isinstance(doc, dict)
            else f"a {type(doc).__name__}"
        )
        raise RecordingFormatError(
            f"{p}: not a cassette (expected a mapping with an 'interactions' list, got {got}); "
            f"accepted: {_FORMATS}"
        )
    rows: list[_Row] = []
    closed = False  # a close was seen and no message since: the next message opens a connection
    for i, inter in enumerate(doc["interactions"]):
        where = f"{p}: interaction {i}"
        if not isinstance(inter, dict):
            raise ValueError(
                f"{where} is a {type(inter).__name__}, not a mapping; accepted: "
                f"{_ACCEPTED_INTERACTIONS}"
            )
        kind = inter.get("kind")
        if kind is None:
            if "data" in inter:
                kind = "message"
            elif "request" in inter or "response" in inter:
                kind = "http"
        if kind == "message":
            data = _as_object(inter.get("data"))
            if data is None:
                raise ValueError(
                    f"{where} (kind message) has no event mapping under 'data' (got a "
                    f"{type(inter.get('data')).__name__}); accepted: {_ACCEPTED_INTERACTIONS}"
                )
            direction = inter.get("direction")
            src = (
                _source_for(data.get("type"), None, where)
                if direction is None
                else _parse_source(direction, where + " (kind message)")
            )
            if closed:
                rows.append((Source.LOCAL, _connection_opened(), None))
                closed = False
            rows.append((src, data, None))
        elif kind == "close":
            rows.append((Source.LOCAL, _local_of("local.connection.closed", inter), None))
            closed = True
        elif kind == "http":
            rows.append((Source.LOCAL, {"type": "local.http", **_http_summary(inter)}, None))
        else:
            rows.append((Source.LOCAL, _local_of(f"local.cassette.{_slug(kind)}", inter), None))
    meta = make_meta(
        model=_guess_model(rows), imported_from=p.name, cassette_version=doc.get("version")
    )
    return rows, meta


def _connection_opened() -> JSON:
    # The fields the live session records on (re)connecting; a cassette knows neither.
    return {"type": "local.connection.opened", "url": None, "backend": None}


def _local_of(event_type: str, inter: Mapping[str, Any]) -> JSON:
    """A local event keeping every field of a cassette interaction (but ``kind``, which its
    type names; an own ``type`` field becomes ``interaction_type``), secrets redacted."""
    out: JSON = {"type": event_type}
    for k, v in inter.items():
        if k == "kind":
            continue
        out["interaction_type" if k == "type" else str(k)] = v
    redacted: JSON = redact_obj(out)
    return redacted


def _slug(kind: Any) -> str:
    """``kind`` as one segment of an event type name (``None``, no kind at all: ``unknown``)."""
    if kind is None:
        return "unknown"
    text = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(kind)).strip("_")
    return text or "unknown"


def _fresh_meta(meta: JSON, path: Path) -> JSON:
    out = dict(meta)
    out["format_version"] = FORMAT_VERSION
    out["package_version"] = __version__
    out.setdefault("imported_from", path.name)
    return out


def _http_summary(inter: Mapping[str, Any]) -> JSON:
    req = inter.get("request") or {}
    resp = inter.get("response") or {}
    status = resp.get("status") if isinstance(resp, dict) else None
    summary: JSON = redact_obj(
        {
            "method": req.get("method") if isinstance(req, dict) else None,
            "uri": safe_url(req.get("uri")) if isinstance(req, dict) else None,
            "status": status.get("code") if isinstance(status, dict) else status,
            "request_body": req.get("body") if isinstance(req, dict) else None,
            "response_body": (resp.get("body") or {}).get("string")
            if isinstance(resp, dict) and isinstance(resp.get("body"), dict)
            else None,
        }
    )
    return summary


def _guess_model(rows: Sequence[_Row]) -> str | None:
    """The model a ``session.created`` among the rows names."""
    for _src, ev, _t in rows:
        if ev.get("type") == "session.created":
            sess = ev.get("session")
            if isinstance(sess, dict) and isinstance(sess.get("model"), str):
                return str(sess["model"])
    return None


def recordings_in(directory: str | Path = DEFAULT_DIR) -> list[Path]:
    """The ``.arrow`` files of a folder, oldest first."""
    d = Path(directory)
    return (
        sorted(d.glob("*.arrow"), key=lambda p: (p.stat().st_mtime, p.name)) if d.is_dir() else []
    )
