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
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets as _secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ._redact import needs_redaction, redact_obj, redact_text, safe_url
from ._version import __version__
from .audio import AudioFormat, decode_to_float, resample
from .events import Event, extract_ids, split_audio
from .protocol import AUDIO_FIELDS, Source
from .reducer import ConversationState, Item, Reducer

__all__ = [
    "FLUSH_INTERVAL_S",
    "FORMAT_VERSION",
    "Recorder",
    "Recording",
    "RecordingFormatError",
    "RecordingSalvageWarning",
]

JSON = dict[str, Any]

#: Version of the file layout. Bump on any change a older reader would misread; readers refuse
#: newer versions instead of guessing.
FORMAT_VERSION: Final = 1
#: Longest time an appended event waits in memory before reaching the file. A killed kernel
#: loses at most this much; shorter intervals make more, smaller batches (slower to read back).
FLUSH_INTERVAL_S: Final = 0.25
#: A batch is also written once it holds this many bytes: bounds memory when events arrive
#: faster than real time (imports, benchmarks) and keeps binary offsets far below 2 GiB.
MAX_BATCH_BYTES: Final = 16 * 1024 * 1024
#: Pending bytes past which ``append`` writes the batch itself instead of waking the writer
#: thread: back-pressure when the disk is slower than the events (bounds memory to ~64 MiB).
MAX_PENDING_BYTES: Final = 4 * MAX_BATCH_BYTES
#: Metadata key of the recording description in the Arrow schema.
META_KEY: Final = b"realtime_nb"
#: The 8 bytes that end a cleanly closed Arrow IPC stream.
_EOS: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"
#: Default folder for recordings, relative to the working directory (the notebook's folder).
DEFAULT_DIR: Final = Path("recordings")

_SOURCES: Final[dict[Any, Source]] = {**{s: s for s in Source}, **{s.value: s for s in Source}}

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


class RecordingFormatError(ValueError):
    """A file that is not a realtime_nb recording, or one written by a newer realtime_nb."""


class RecordingSalvageWarning(UserWarning):
    """A recording's tail was cut (a killed process, a partial copy); the rest was recovered."""


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


class _Columns:
    """Rows not yet written, one tuple each (a single list append is the cheapest thing)."""

    __slots__ = ("nbytes", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, ev: Event) -> None:
        payload = ev.payload
        self.rows.append(
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

    def to_batch(self, schema: pa.Schema) -> pa.RecordBatch:
        cols = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(schema)
        return pa.RecordBatch.from_arrays(
            [_column(c, f.type) for c, f in zip(cols, schema, strict=True)], schema=schema
        )


def _column(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    """An Arrow array built straight from buffers.

    ``pa.array`` on Python lists imports pandas the first time (half a second, holding the GIL,
    on the session's clock) and converts element by element; joining bytes and computing offsets
    with numpy does neither.
    """
    n = len(values)
    if typ == pa.int64():
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(np.array(values, np.int64))])
    present: list[Any] = [v for v in values if v is not None]
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
        mask = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        lengths = np.zeros(n, np.int64)
        lengths[mask] = np.fromiter(map(len, present), dtype=np.int64, count=len(present))
        np.cumsum(lengths, out=offsets[1:])
        validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
    elif n:
        np.cumsum(np.fromiter(map(len, present), dtype=np.int64, count=n), out=offsets[1:])
    data = pa.py_buffer(joined)
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(offsets), data], null_count=nulls)


def _schema(meta: Mapping[str, Any]) -> pa.Schema:
    return pa.schema(SCHEMA_FIELDS, metadata={META_KEY: _dumps(dict(meta)).encode("utf-8")})


class Recorder:
    """Writes a session's events to an Arrow IPC stream file, crash-safe and thread-safe.

    Args:
        path: the ``.arrow`` file to create (parent folders are made), a folder (a file name is
            chosen in it), or ``None`` to build :class:`Event` objects without writing anything.
        meta: the recording's description (see :func:`make_meta`); credentials in ``url`` are
            stripped.
        secrets: exact strings that must never reach the file (the API key in use); they are
            replaced by ``[REDACTED]`` wherever they appear, as are ``sk-``/``ek_`` keys,
            ``Authorization`` values and ``client_secret`` fields.
        flush_interval: seconds an event may wait in memory (default :data:`FLUSH_INTERVAL_S`).
        clock: monotonic nanosecond clock (tests may inject one).

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
    ) -> None:
        self._secrets = tuple(s for s in secrets if s)
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
        src = _SOURCES.get(source) or Source.parse(source)
        etype = data.get("type")
        if not isinstance(etype, str):
            etype = "<missing type>"
        pdict: JSON | None
        if etype in AUDIO_FIELDS:
            payload, pdict, audio = split_audio(etype, data, raw, audio)
        else:
            payload, pdict, audio = raw, (None if raw is not None else data), None
        if payload is None:
            payload = _dumps(pdict)
        if needs_redaction(payload, self._secrets):
            red = redact_text(payload, self._secrets)
            if red is not payload:
                payload, pdict = red, None
        event_id = data.get("event_id")
        if not isinstance(event_id, str):
            event_id = None
        if "item" in data or "response" in data:
            _, item_id, response_id = extract_ids(data)
        else:
            item_id, response_id = data.get("item_id"), data.get("response_id")
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
                rows.rows.append(
                    (seq, t, src.value, etype, event_id, item_id, response_id, payload, audio)
                )
                rows.nbytes += len(payload) + (len(audio) if audio is not None else 0)
                big = rows.nbytes >= MAX_BATCH_BYTES
            else:
                big = False
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
            if rows.nbytes >= MAX_PENDING_BYTES:
                self.flush()  # the writer thread is behind: apply back-pressure here
            else:
                self._wake.set()  # write in the background: the file write releases the GIL
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
                if not len(rows) or self._writer is None:
                    return
                self._rows = _Columns()
            self._writer.write_batch(rows.to_batch(self._schema))

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
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
                self._writer.close()
                self._file.close()

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


def _read_stream(path: Path) -> tuple[pa.Schema | None, list[pa.RecordBatch], int, bool]:
    """``(schema, batches, bytes_unread, clean_end)`` of a possibly cut IPC stream file."""
    size = path.stat().st_size
    if size == 0:
        return None, [], 0, False
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(max(size - 8, 0))
        tail = f.read(8)
    if head not in (b"\xff\xff\xff\xff", b"\xff\xff\xff"[: len(head)]):
        raise RecordingFormatError(_not_a_recording(path, head))
    source = pa.memory_map(str(path), "r")
    try:
        reader = pa.ipc.open_stream(source)
    except (pa.ArrowInvalid, OSError):
        return None, [], size, False
    batches: list[pa.RecordBatch] = []
    pos = source.tell()
    while True:
        try:
            batches.append(reader.read_next_batch())
            pos = source.tell()
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            break
    clean = tail == _EOS
    unread = 0 if clean else size - pos
    return reader.schema, batches, unread, clean


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
        #: False when the file did not end with the end-of-stream marker (still being written,
        #: or the writer was killed).
        self.complete = complete
        self._events: list[Event] | None = None
        self._state: ConversationState | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Recording:
        """Read a recording file, recovering every complete batch of a cut file.

        Warns:
            RecordingSalvageWarning: the file's tail was cut; says how many bytes were lost.

        Raises:
            FileNotFoundError: no such file.
            RecordingFormatError: not a recording, or written by a newer realtime_nb.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no recording at {p}")
        if p.is_dir():
            raise RecordingFormatError(f"{p} is a folder; give a .arrow file inside it")
        schema, batches, unread, clean = _read_stream(p)
        if schema is None:
            warnings.warn(
                RecordingSalvageWarning(
                    f"{p} ends inside its header ({p.stat().st_size} bytes): nothing to recover"
                ),
                stacklevel=2,
            )
            return cls(_empty_table(make_meta()), make_meta(), p, complete=False)
        meta = _meta_of(schema, p)
        if unread:
            n = sum(b.num_rows for b in batches)
            warnings.warn(
                RecordingSalvageWarning(
                    f"{p} was cut: recovered {n} events in {len(batches)} batches; the last "
                    f"{unread} bytes (an incomplete batch, at most {FLUSH_INTERVAL_S * 1000:.0f} ms "
                    "of events) were lost"
                ),
                stacklevel=2,
            )
        table = pa.Table.from_batches(batches, schema=schema) if batches else _empty_table(meta)
        return cls(table, meta, p, complete=clean)

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
        direction (``source``/``direction``/``dir``: client|server|local|sent|received) and the
        event under ``event``/``data``/``message`` plus optional ``t_ns``/``t``/``timestamp``
        (seconds); or a bare event dict when ``source`` is given. With ``path`` the recording is
        also written there.

        Raises:
            ValueError: an element of unknown shape (its index and what is accepted).
        """
        rec = Recorder(path, meta=meta or make_meta(), flush_interval=3600)
        evs: list[Event] = []
        last_t = 0
        try:
            for i, el in enumerate(events):
                src, data, t_ns = _normalize(el, i, source)
                if t_ns is None:
                    t_ns = last_t
                last_t = max(last_t, t_ns)
                evs.append(rec.append(src, data, t_ns=t_ns))
        finally:
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
        """Import a JSON-lines log (one event per line, with a direction field; our own
        ``export_jsonl`` output included).

        Raises:
            ValueError: a line that is not JSON or has no direction (its line number).
        """
        p = Path(path)
        records: list[Any] = []
        meta: JSON | None = None
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{p}:{lineno}: not JSON ({exc})") from None
                if isinstance(obj, dict) and "realtime_nb_meta" in obj:
                    meta = obj["realtime_nb_meta"]
                    continue
                records.append(obj)
        imported = dict(meta or make_meta())
        imported.setdefault("imported_from", p.name)
        try:
            return cls.from_events(records, meta=_fresh_meta(imported, p), path=save_to)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None

    @classmethod
    def import_cassette(cls, path: str | Path, *, save_to: str | Path | None = None) -> Recording:
        """Import a YAML cassette (``{version, interactions: [{kind, direction, data}]}``).

        Non-WebSocket interactions (HTTP request/response pairs, e.g. WebRTC SDP exchanges) are
        kept as ``local.http`` events, secrets redacted.
        """
        import yaml

        p = Path(path)
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("interactions"), list):
            raise ValueError(
                f"{p}: not a cassette (expected a mapping with an 'interactions' list)"
            )
        records: list[Any] = []
        for i, inter in enumerate(doc["interactions"]):
            if isinstance(inter, dict) and "data" in inter and "direction" in inter:
                records.append({"direction": inter["direction"], "event": inter["data"]})
            elif isinstance(inter, dict) and ("request" in inter or "response" in inter):
                records.append(("local", {"type": "local.http", **_http_summary(inter)}))
            else:
                raise ValueError(f"{p}: interaction {i} has neither direction+data nor request")
        meta = make_meta(
            model=_guess_model(records), imported_from=p.name, cassette_version=doc.get("version")
        )
        return cls.from_events(records, meta=meta, path=save_to)

    @classmethod
    def import_file(cls, path: str | Path, *, save_to: str | Path | None = None) -> Recording:
        """Open or import by content: a recording, a JSONL log, or a YAML cassette."""
        p = Path(path)
        with open(p, "rb") as f:
            head = f.read(64).lstrip()
        if head[:4] == b"\xff\xff\xff\xff":
            return cls.open(p)
        if head[:1] in (b"{", b"["):
            return cls.import_jsonl(p, save_to=save_to)
        return cls.import_cassette(p, save_to=save_to)

    # -- events and state ------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """The events, in order, as :class:`Event` objects (payloads parsed on access)."""
        if self._events is None:
            self._events = list(_iter_events(self.table))
        return self._events

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    @property
    def state(self) -> ConversationState:
        """The conversation reduced from all events (cached)."""
        if self._state is None:
            if self._events is not None:
                self._state = Reducer().apply_all(self._events)
            else:
                self._state = reduce_table(self.table)
        return self._state

    def state_at(self, t_s: float) -> ConversationState:
        """The state as the live session had it ``t_s`` seconds into the session."""
        limit = int(t_s * 1e9)
        r = Reducer()
        for ev in self.events:
            if ev.t_ns > limit:
                break
            r.apply(ev)
        return r.state

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
            start = part.input_range[0]
            for t_ns, off in st.input_chunk_times:
                if off + 1 > start:
                    return t_ns / 1e9
            return None
        for ev in self.events:
            if ev.item_id == item_id and ev.audio is not None and ev.source is Source.SERVER:
                return ev.t_ns / 1e9
        return None

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
        this one as its parent). See :func:`realtime_nb.redrive.redrive` for every option."""
        from .redrive import redrive

        return redrive(self, **settings)

    def replay_data(self, checkpoint_every_s: float = 30.0) -> Any:
        """The replay data layer (overview peaks, audio windows, state at a playhead)."""
        from .replay import ReplayData

        return ReplayData(self, checkpoint_every_s=checkpoint_every_s)

    def metrics(self) -> Any:
        """Per-turn latency and per-response tokens and cost (:func:`realtime_nb.metrics.metrics`)."""
        from .metrics import metrics

        return metrics(self)

    def play(self) -> Any:
        """Show this recording in the widget's replay mode (a timeline, both tracks, the
        transcript and event log in sync with the playhead)."""
        from .widget import ReplayWidget

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
        st = self.state
        fmt = st.input_format
        if not st.input_chunk_times:
            return np.zeros(0, np.float32)
        samples = decode_to_float(st.input_audio.tobytes(), fmt)
        if fmt.rate != rate:
            samples = resample(samples, fmt.rate, rate)
        bps = fmt.bytes_per_sample
        t = np.array([c[0] for c in st.input_chunk_times], dtype=np.float64)
        off = np.array([c[1] for c in st.input_chunk_times], dtype=np.float64)
        # Chunk i starts at its send time or right after chunk i-1, whichever is later:
        # start_i = off_i + running max of (t_j - off_j) (all in output samples).
        t_s = np.round(t * 1e-9 * rate)
        off_s = np.round(off / bps / fmt.rate * rate)
        shift = np.maximum.accumulate(t_s - off_s).astype(np.int64)
        n = len(samples)
        out = np.zeros(n + int(shift[-1]) if len(shift) else n, np.float32)
        # Copy contiguous runs (where the shift does not change) in one slice each.
        change = np.flatnonzero(np.diff(shift)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(shift)]])
        for a, b in zip(starts, ends, strict=False):
            s0 = int(off_s[a])
            s1 = int(off_s[b]) if b < len(off_s) else n
            out[s0 + shift[a] : s1 + shift[a]] = samples[s0:s1]
        return out

    def _assistant_track(self, rate: int, heard: bool) -> npt.NDArray[np.float32]:
        st = self.state
        fmt = st.output_format
        starts = assistant_audio_starts(self.table, st)
        pieces: list[tuple[int, npt.NDArray[np.float32]]] = []
        cursor = 0
        for item_id, t0 in sorted(starts.items(), key=lambda kv: kv[1]):
            x = decode_to_float(st.item_audio(item_id, heard=heard), fmt)
            if fmt.rate != rate:
                x = resample(x, fmt.rate, rate)
            start = max(round(t0 * 1e-9 * rate), cursor)
            pieces.append((start, x))
            cursor = start + len(x)
        out = np.zeros(cursor, np.float32)
        for start, x in pieces:
            out[start : start + len(x)] = x
        return out

    def export_wav(self, path: str | Path, rate: int = 24_000, heard: bool = True) -> Path:
        """Write a stereo WAV (PCM16): the user on the left, the assistant on the right,
        time-aligned, the assistant as it was heard (cut at truncations)."""
        import soundfile as sf

        user = self.audio("user", rate)
        bot = self.audio("assistant", rate, heard=heard)
        n = max(len(user), len(bot))
        stereo = np.zeros((n, 2), np.float32)
        stereo[: len(user), 0] = user
        stereo[: len(bot), 1] = bot
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), stereo, rate, subtype="PCM_16")
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
        from .inspection import summarize

        return summarize(self)

    def describe(self) -> str:
        """The plain-text summary that ``realtime-nb inspect`` prints."""
        from .inspection import summary_text

        return summary_text(self)

    def _repr_html_(self) -> str:
        from .inspection import recording_html

        return recording_html(self)

    def __repr__(self) -> str:
        where = self.path.name if self.path else "in memory"
        return (
            f"<Recording {where}: {len(self)} events, {self.duration_s:.1f} s, "
            f"model {self.meta.get('model')!r}>"
        )


class ItemView:
    """An :class:`~realtime_nb.reducer.Item` of a recording: its fields, its audio, and an HTML
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
        from .inspection import item_html

        return item_html(self._recording, self.item)

    def __repr__(self) -> str:
        who = self.item.role or self.item.type
        return f"<Item {self.item.id} {who}: {self.item.text[:60]!r}>"


def assistant_audio_starts(table: pa.Table, state: ConversationState) -> dict[str, int]:
    """When each assistant item's audio started, in ns: its first audio delta's arrival, or the
    browser's ``local.playback.started`` report when there is one (what was actually heard)."""
    import pyarrow.compute as pc

    starts: dict[str, int] = {}
    if table.num_rows:
        deltas = table.filter(
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


#: Events whose effect depends on how much input audio came before them; bulk appends are
#: applied up to each of these, in order (every other event ignores the input timeline).
_INPUT_SENSITIVE: Final = ["input_audio_buffer.committed", "input_audio_buffer.cleared"]


def reduce_table(table: pa.Table, reducer: Reducer | None = None) -> ConversationState:
    """Reduce a recording's table without building an Event for every audio append.

    Client ``input_audio_buffer.append`` rows go to :meth:`Reducer.apply_input_run` straight from
    the Arrow buffers, in as few runs as possible: appends only matter to the events that read
    the input timeline (commit and clear), so each run covers all appends up to the next of
    those. Every other row becomes an :class:`Event` for :meth:`Reducer.apply`, in order. The
    result is identical to applying each event in turn (tested).
    """
    import pyarrow.compute as pc

    r = reducer or Reducer()
    for batch in table.to_batches():
        n = batch.num_rows
        if not n:
            continue
        types, audio = batch.column(3), batch.column(8)
        is_append = pc.and_(
            pc.equal(types, "input_audio_buffer.append"), pc.equal(batch.column(2), "client")
        )
        bulk = pc.and_(is_append, pc.is_valid(audio))
        mask = bulk.to_numpy(zero_copy_only=False)
        if not mask.any():
            r.apply_all(_iter_batch(batch))
            continue
        others = _iter_batch(batch.filter(pc.invert(bulk)))
        sensitive = pc.or_(
            pc.is_in(types, pa.array(_INPUT_SENSITIVE)), pc.and_(is_append, pc.invert(bulk))
        ).to_numpy(zero_copy_only=False)
        bulk_audio = audio.filter(bulk)  # contiguous: one buffer slice per run
        offsets = np.frombuffer(bulk_audio.buffers()[1], dtype=np.int32)[
            bulk_audio.offset : bulk_audio.offset + len(bulk_audio) + 1
        ].tolist()
        buf = bulk_audio.buffers()[2]
        data = memoryview(buf) if buf is not None else memoryview(b"")
        t_bulk = batch.column(1).to_numpy()[mask].tolist()
        bulk_before = np.concatenate([[0], np.cumsum(mask)]).tolist()  # bulk rows before row i
        k = 0  # bulk rows applied so far
        pos = 0  # first row not yet applied
        for s in [*np.flatnonzero(sensitive).tolist(), n]:
            kb = bulk_before[s]
            if kb > k:
                r.apply_input_run(t_bulk[k:kb], offsets[k : kb + 1], data)
                k = kb
            end = min(s + 1, n)  # the sensitive row itself comes after the appends before it
            for _ in range((end - pos) - (bulk_before[end] - bulk_before[pos])):
                r.apply(next(others))
            pos = end
    return r.state


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


def _normalize(
    el: Any, i: int, default_source: Source | str | None
) -> tuple[Source, JSON, int | None]:
    accepted = (
        "an Event, a (source, event) pair, a dict with 'source'/'direction' and 'event'/'data', "
        "or a bare event dict with source= given"
    )
    if isinstance(el, Event):
        return el.source, el.wire(), el.t_ns
    if isinstance(el, (tuple, list)) and len(el) == 2 and isinstance(el[1], dict):
        return Source.parse(el[0]), el[1], None
    if isinstance(el, dict):
        direction = el.get("source", el.get("direction", el.get("dir")))
        body = el.get("event", el.get("data", el.get("message")))
        if direction is not None and isinstance(body, dict):
            return Source.parse(direction), body, _time_of(el)
        if default_source is not None and isinstance(el.get("type"), str):
            return Source.parse(default_source), el, _time_of(el)
    raise ValueError(f"event {i} has an unknown shape ({type(el).__name__}); accepted: {accepted}")


def _time_of(el: Mapping[str, Any]) -> int | None:
    if isinstance(el.get("t_ns"), int):
        return int(el["t_ns"])
    for key in ("t", "time", "timestamp", "ts"):
        v = el.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v * 1e9)
    return None


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


def _guess_model(records: Sequence[Any]) -> str | None:
    for r in records:
        ev = r.get("event") if isinstance(r, dict) else None
        if isinstance(ev, dict) and ev.get("type") == "session.created":
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
