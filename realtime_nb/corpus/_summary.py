"""One recording's rows of the corpus tables (sessions, turns, items), read without its audio.

The file is memory-mapped without read-ahead (:func:`map_file`) and read as an Arrow stream; the
events go to the one reducer with every audio value replaced by a view of as many zeros, never
read (:func:`reduce_light`), so the reducer sees every event's time and every length (the input
timeline, when each chunk was sent, the first audio of an answer) and no audio page of the file
is loaded. A file the stream reader cannot read whole (cut, damaged) goes through
:meth:`Recording.open`, which salvages what is intact and warns.

Pure apart from reading the one file; the per-turn metrics are :mod:`realtime_nb.core.metrics`'s
(the single definition of latency, tokens and cost), and :func:`summary_rows` builds the rows
from any reduced state (the tests compare it with the full reading's).
"""

from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import json
import mmap
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..core.events import Event
from ..core.metrics import compute, turn_views
from ..core.protocol import AUDIO_FIELDS, Source, canonical_type
from ..core.reducer import ConversationState, Reducer
from ..storage.recording import META_KEY, Recording, RecordingFormatError

JSON = dict[str, Any]

#: Bumped whenever a summary column or its meaning changes: cached summaries of another version
#: are recomputed, never mixed with new ones.
SUMMARY_VERSION: Final = 1
#: The end-of-stream marker an Arrow IPC stream writer leaves when it is closed: a recording whose
#: file ends with it was closed by its recorder (its ``complete`` column).
_EOS: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"

TOOL_CALL: Final = pa.struct(
    [
        pa.field("call_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("arguments", pa.string()),
        pa.field("output", pa.string()),
    ]
)

#: One row per recording. ``recording`` is the file's path relative to the corpus root (the key
#: of every table); ``parent`` the parent's path as the child's metadata gives it.
SESSIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("day", pa.string()),
        pa.field("model", pa.string()),
        pa.field("url", pa.string()),
        pa.field("package_version", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("events", pa.int64()),
        pa.field("turns", pa.int32()),
        pa.field("responses", pa.int32()),
        pa.field("tool_calls", pa.int32()),
        pa.field("errors", pa.int32()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("input_audio_tokens", pa.int64()),
        pa.field("output_audio_tokens", pa.int64()),
        pa.field("cached_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("user_audio_s", pa.float64()),
        pa.field("assistant_audio_s", pa.float64()),
        pa.field("instructions", pa.string()),
        pa.field("voice", pa.string()),
        pa.field("parent", pa.string()),
        pa.field("redrive_name", pa.string()),
        pa.field("settings_hash", pa.string()),
        pa.field("complete", pa.bool_()),
        pa.field("meta", pa.string()),
    ]
)

#: One row per user turn of every recording, with the turn's answer and metrics.
TURNS_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("turn", pa.int32(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("latency_ms", pa.float64()),
        pa.field("answer_ms", pa.float64()),
        pa.field("heard_ms", pa.float64()),
        pa.field("done_ms", pa.float64()),
        pa.field("tool_rounds", pa.int32()),
        pa.field("status", pa.string()),
        pa.field("interrupted", pa.bool_()),
        pa.field("responses", pa.int32()),
        pa.field("user_text", pa.string()),
        pa.field("assistant_text", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL)),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("errors", pa.list_(pa.string())),
    ]
)

#: One row per conversation item (messages, tool calls and their outputs), in order.
ITEMS_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("role", pa.string()),
        pa.field("status", pa.string()),
        pa.field("text", pa.string()),
        pa.field("call_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("arguments", pa.string()),
        pa.field("output", pa.string()),
        pa.field("response_id", pa.string()),
        pa.field("audio_ms", pa.float64()),
        pa.field("added_s", pa.float64()),
    ]
)


@dataclass
class Summary:
    """A recording's rows: one sessions row, its turns rows and its items rows."""

    session: JSON
    turns: list[JSON]
    items: list[JSON]


def settings_hash(changed: Any, model: str | None = None) -> str:
    """A short, stable hash of re-drive settings (the batch re-drive's resume key)."""
    text = json.dumps({"changed": changed, "model": model}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_light(path: Path) -> tuple[JSON, pa.Table, bool]:
    """The recording's metadata, its events without audio bytes, and whether it is whole.

    Raises:
        RecordingFormatError: not a recording, or a newer format (from :meth:`Recording.open`).
        FileNotFoundError: no such file.
    """
    try:
        mapped = map_file(path)
        table = pa.ipc.open_stream(pa.BufferReader(mapped)).read_all()
        raw = (table.schema.metadata or {}).get(META_KEY)
        meta = json.loads(raw) if raw is not None else None
        whole = mapped[max(mapped.size - len(_EOS), 0) :].to_pybytes() == _EOS
    except (pa.ArrowInvalid, OSError, ValueError):
        meta = None
    if meta is None or not isinstance(meta.get("format_version"), int) or not whole:
        # The lock: catch_warnings swaps the process's filters, and the export reads files on
        # several threads.
        with _SALVAGE_LOCK, warnings.catch_warnings():
            # The corpus reports the salvage once per file itself (Corpus.damaged).
            warnings.simplefilter("ignore")
            rec = Recording.open(path)  # raises the precise error of a file that is not one
        return dict(rec.meta), rec.table, rec.complete
    if meta["format_version"] > 1:
        Recording.open(path)  # raises RecordingFormatError naming the version and the fix
        raise RecordingFormatError(f"{path}: unsupported recording format")  # pragma: no cover
    return dict(meta), table, True


def map_file(path: Path) -> pa.Buffer:
    """The file as a zero-copy Arrow buffer over a read-only memory mapping that reads only the
    pages touched.

    ``pyarrow.memory_map`` is not used: its reads advise the kernel that the whole message body
    will be needed (``MADV_WILLNEED``), which reads a record batch's audio from disk with the
    rest. Here the mapping is advised ``MADV_RANDOM`` instead: no read-ahead (which, at Linux's
    usual window of megabytes, would bring most of a recording's audio along with the columns
    around it). The mapping lives as long as the buffers over it.

    Raises:
        OSError: the file cannot be opened or mapped.
        ValueError: the file is empty.
    """
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    advice = getattr(mmap, "MADV_RANDOM", None)  # absent on Windows, which reads what is touched
    if advice is not None:
        mapping.madvise(advice)
    return pa.py_buffer(mapping)


_SALVAGE_LOCK: Final = threading.Lock()
#: Output audio delta types (GA and beta names): the rows :func:`reduce_light` merges.
_DELTAS: Final = tuple(
    t for t in AUDIO_FIELDS if canonical_type(t) == "response.output_audio.delta"
)
_APPEND: Final = "input_audio_buffer.append"
_SOURCES: Final = {s.value: s for s in Source}


def _silence(n: int) -> memoryview:
    """``n`` bytes of zeros that cost neither memory nor reading: a read-only anonymous mapping,
    whose pages the kernel provides only when touched (the summary never touches them)."""
    size = max(n, 1)  # a mapping cannot be empty
    if hasattr(mmap, "MAP_PRIVATE"):  # POSIX: private and read-only, so never even committed
        zeros = mmap.mmap(
            -1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ
        )
    else:  # pragma: no cover - Windows: a pagefile-backed mapping, zeroed when first touched
        zeros = mmap.mmap(-1, size)
    return memoryview(zeros)[:n]


def _bools(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


@dataclass
class LightReduction:
    """What :func:`reduce_light` gives: the conversation state and the audio byte counts."""

    state: ConversationState
    #: Bytes of audio sent (client rows) and received or played (every other row).
    sent_bytes: int
    received_bytes: int


def reduce_light(table: pa.Table) -> LightReduction:
    """Reduce a recording's events without reading a byte of its audio.

    Only the audio column's validity bitmap and offsets are read: every audio value reaches the
    reducer as a view of as many zeros (:func:`_silence`), never a copy. Each event goes to the
    one reducer (:class:`~realtime_nb.core.reducer.Reducer`), in order, except that:

    - each run of client audio appends between two other events goes to
      :meth:`Reducer.apply_input_run` at once (each chunk's send time and length kept: the
      latency metric reads when the last byte of the user's speech was sent);
    - each run of output audio deltas of one item is given as its first delta, carrying the
      run's length: the summary reads when an answer's first audio came and how long each
      item's audio is, both unchanged, and the reducer is spared two thirds of a spoken
      session's server events.

    :func:`realtime_nb.storage.recording.reduce_table` is not used because it makes every
    non-append row's audio a ``bytes`` object: a copy of each answer's audio, read from the
    file. ``tests/corpus/test_fast_summary.py`` checks the rows equal those of the full reading
    (:attr:`Recording.state`).
    """
    import pyarrow.compute as pc

    r = Reducer()
    n = table.num_rows
    if not n:
        return LightReduction(r.state, 0, 0)
    source = table.column(2).combine_chunks()
    types = table.column(3).combine_chunks()
    # Computed from the offsets alone, chunk by chunk in Arrow (a live recording has a record
    # batch every few hundred milliseconds: thousands of chunks).
    sizes = pc.binary_length(table.column(8))
    valid = _bools(pc.is_valid(sizes))
    length = np.asarray(
        sizes.combine_chunks().fill_null(0).to_numpy(zero_copy_only=False), np.int64
    )
    client = _bools(pc.equal(source, "client"))
    sent = int(length[client].sum())
    received = int(length.sum()) - sent
    bulk = _bools(pc.equal(types, _APPEND)) & client & valid
    keep = ~bulk
    event_audio = length.copy()  # the audio length each applied row carries
    delta_rows = np.flatnonzero(
        _bools(pc.is_in(types, pa.array(_DELTAS))) & _bools(pc.equal(source, "server")) & valid
    )
    if len(delta_rows):
        items = table.column(5).take(pa.array(delta_rows)).to_pylist()
        firsts = [0] + [k for k in range(1, len(items)) if items[k] != items[k - 1]]
        heads = delta_rows[firsts]
        keep[delta_rows] = False
        keep[heads] = True
        event_audio[heads] = np.add.reduceat(length[delta_rows], firsts)
    # The appends' audio as consecutive ranges of one run of zeros: append k's audio starts
    # where the appends before it end.
    bulk_rows = np.flatnonzero(bulk)
    bulk_len = length[bulk_rows]
    bulk_end = np.cumsum(bulk_len)
    others = np.flatnonzero(keep)
    longest = int(event_audio[others].max()) if len(others) else 0
    silence = _silence(max(int(bulk_end[-1]) if len(bulk_end) else 0, longest))
    # Per other row: how many appends come before it (they are applied first).
    before = np.searchsorted(bulk_rows, others).tolist()
    t_bulk = table.column(1).take(pa.array(bulk_rows)).to_numpy().tolist()
    first_bulk = (bulk_end - bulk_len).tolist()
    end_bulk = bulk_end.tolist()
    rows = pa.array(others)
    cols = [table.column(i).take(rows).to_pylist() for i in range(8)]
    has_audio = valid[others].tolist()
    carried = event_audio[others].tolist()
    apply, apply_run = r.apply, r.apply_input_run
    a = 0
    for k, (seq, t, src, etype, eid, iid, rid, payload) in enumerate(zip(*cols, strict=True)):
        b = before[k]
        if b > a:
            apply_run(t_bulk[a:b], [*first_bulk[a:b], end_bulk[b - 1]], silence)
            a = b
        apply(
            Event(
                seq,
                t,
                _SOURCES.get(src, Source.LOCAL),
                etype,
                payload=payload,
                audio=silence[: carried[k]] if has_audio[k] else None,  # type: ignore[arg-type]  # a view, read as bytes
                event_id=eid,
                item_id=iid,
                response_id=rid,
            )
        )
    if a < len(t_bulk):
        apply_run(t_bulk[a:], [*first_bulk[a:], end_bulk[-1]], silence)
    return LightReduction(r.state, sent, received)


def _audio_seconds(state: ConversationState, sent: int, received: int) -> tuple[float, float]:
    """Seconds of user (sent) and assistant (received) audio, from their byte counts."""
    return (
        state.input_format.duration_ms(sent) / 1000.0,
        state.output_format.duration_ms(received) / 1000.0,
    )


def audio_bytes(table: pa.Table) -> tuple[int, int]:
    """Bytes of audio sent (client rows) and received (every other row) in ``table``, from the
    audio column's offsets."""
    import pyarrow.compute as pc

    lengths = pc.binary_length(table.column("audio"))
    client = pc.equal(table.column("source"), "client")
    sent = pc.sum(pc.if_else(client, lengths, 0)).as_py() or 0
    got = pc.sum(pc.if_else(pc.invert(client), lengths, 0)).as_py() or 0
    return int(sent), int(got)


def _started_at(meta: JSON) -> _dt.datetime | None:
    return utc_time(meta.get("started_at"))


def utc_time(value: Any) -> _dt.datetime | None:
    """An ISO 8601 time (``Z`` or an offset; naive read as UTC) in UTC, or ``None`` if ``value``
    is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc)


def _s(t_ns: int | None) -> float | None:
    return None if t_ns is None else t_ns / 1e9


def summarize(path: Path, key: str) -> Summary:
    """The corpus rows of the recording at ``path``, keyed ``key``, read without its audio
    (:func:`reduce_light`).

    Raises:
        RecordingFormatError: not a recording (or a newer format).
        FileNotFoundError: no such file.
    """
    stat = path.stat()
    meta, table, whole = read_light(path)
    light = reduce_light(table)
    return summary_rows(
        key,
        path,
        stat,
        meta,
        light.state,
        events=table.num_rows,
        sent_bytes=light.sent_bytes,
        received_bytes=light.received_bytes,
        whole=whole,
    )


def summary_rows(
    key: str,
    path: Path,
    stat: os.stat_result,
    meta: JSON,
    state: ConversationState,
    *,
    events: int,
    sent_bytes: int,
    received_bytes: int,
    whole: bool,
) -> Summary:
    """The corpus rows of a recording from its reduced ``state`` (however it was read), its
    metadata, its file's ``stat``, its number of events and its audio byte counts."""
    m = compute(state, meta=meta)
    model = m.model
    views = turn_views(state)
    starts = [
        (v.turn.speech_started_t_ns or v.turn.committed_t_ns or v.turn.text_t_ns) for v in views
    ]
    turns: list[JSON] = []
    tool_call_count = 0
    for k, (view, tm) in enumerate(zip(views, m.turns, strict=True)):
        start = starts[k]
        # A turn owns the errors from its start to the next turn's (the first turn also those
        # before it: a session error at connect time shows on turn 0, not nowhere).
        lower = None if k == 0 else start
        until = next((s for s in starts[k + 1 :] if s is not None), None)
        errors = [
            str(e)
            for e in state.errors
            if (lower is None or e.t_ns >= lower) and (until is None or e.t_ns < until)
        ]
        calls = [
            {
                "call_id": it.call_id,
                "name": it.name,
                "arguments": it.arguments,
                "output": (
                    view.tool_outputs[it.call_id].output
                    if it.call_id and it.call_id in view.tool_outputs
                    else None
                ),
            }
            for it in view.outputs
            if it.type == "function_call"
        ]
        tool_call_count += len(calls)
        turns.append(
            {
                "recording": key,
                "turn": tm.index,
                "kind": tm.kind,
                "item_id": tm.item_id,
                "start_s": _s(start),
                "end_s": tm.end_s,
                "latency_ms": tm.latency_ms,
                "answer_ms": tm.answer_ms,
                "heard_ms": tm.heard_ms,
                "done_ms": tm.done_ms,
                "tool_rounds": tm.tool_rounds,
                "status": tm.status,
                "interrupted": any(r.status == "cancelled" for r in view.responses)
                or any(it.truncated_ms is not None for it in view.outputs),
                "responses": len(tm.response_ids),
                "user_text": view.user_text,
                "assistant_text": view.assistant_text,
                "tool_calls": calls,
                "input_tokens": tm.usage.input_tokens,
                "output_tokens": tm.usage.output_tokens,
                "total_tokens": tm.usage.total_tokens,
                "cost_usd": tm.cost_usd,
                "errors": errors,
            }
        )
    items: list[JSON] = []
    for pos, it in enumerate(state.items):
        audio_ms = it.output_audio_ms if it.role == "assistant" else None
        if it.role == "user" and it.audio_start_ms is not None and it.audio_end_ms is not None:
            audio_ms = float(it.audio_end_ms - it.audio_start_ms)
        items.append(
            {
                "recording": key,
                "position": pos,
                "item_id": it.id,
                "type": it.type,
                "role": it.role,
                "status": it.status,
                "text": it.text,
                "call_id": it.call_id,
                "name": it.name,
                "arguments": it.arguments,
                "output": it.output,
                "response_id": it.response_id,
                "audio_ms": audio_ms or None,
                "added_s": _s(it.added_t_ns),
            }
        )
    user_s, assistant_s = _audio_seconds(state, sent_bytes, received_bytes)
    requested = state.requested_session
    session = state.session or {}
    instructions = requested.get("instructions", session.get("instructions"))
    voice = ((requested.get("audio") or {}).get("output") or {}).get("voice") or (
        (session.get("audio") or {}).get("output") or {}
    ).get("voice")
    redrive = meta.get("redrive") if isinstance(meta.get("redrive"), dict) else None
    parent = meta.get("parent")
    parent_path = parent.get("path") if isinstance(parent, dict) else parent
    started = _started_at(meta)
    u = m.usage
    row: JSON = {
        "recording": key,
        "path": str(path.resolve()),
        "size_bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "started_at": started,
        "day": started.date().isoformat() if started else None,
        "model": model if isinstance(model, str) else None,
        "url": meta.get("url") if isinstance(meta.get("url"), str) else None,
        "package_version": str(meta.get("package_version") or "") or None,
        "duration_s": state.last_t_ns / 1e9,
        "events": events,
        "turns": len(turns),
        "responses": len(m.responses),
        "tool_calls": tool_call_count,
        "errors": len(state.errors),
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "input_audio_tokens": u.input_audio_tokens,
        "output_audio_tokens": u.output_audio_tokens,
        "cached_tokens": u.cached_tokens,
        "cost_usd": m.cost_usd,
        "user_audio_s": user_s,
        "assistant_audio_s": assistant_s,
        "instructions": instructions if isinstance(instructions, str) else None,
        "voice": voice if isinstance(voice, str) else None,
        "parent": parent_path if isinstance(parent_path, str) else None,
        "redrive_name": redrive.get("name") if redrive else None,
        "settings_hash": (
            settings_hash(redrive.get("changed"), meta.get("model")) if redrive else None
        ),
        "complete": whole,
        "meta": json.dumps(meta, sort_keys=True, default=str),
    }
    return Summary(row, turns, items)


def summarize_or_error(path: Path, key: str) -> Summary | str:
    """:func:`summarize`, or why the file could not be read (a worker process's job: the
    message crosses the process boundary where an exception might not pickle).

    The cyclic garbage collector is paused meanwhile: a reduction allocates tens of thousands of
    small objects and no reference cycle (all freed as soon as the rows are built), and the
    collector's passes over them cost a third of the time.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return summarize(path, key)
    except (RecordingFormatError, OSError, pa.ArrowException) as exc:
        return str(exc)
    finally:
        if paused:
            gc.enable()
