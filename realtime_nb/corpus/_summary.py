"""One recording's rows of the corpus tables (sessions, turns, items), read without its audio.

The file is memory-mapped and read as an Arrow stream; the audio column's bytes are swapped for
zeros of the same length (lazily zeroed pages) before reducing, so the reducer sees every event
and every length (the input timeline, when each chunk was sent, the first audio of an answer)
but no audio page of the file is ever read. Audio durations come from the column's offsets. A file the
stream reader cannot read whole (cut, damaged) goes through :meth:`Recording.open`, which
salvages what is intact and warns.

Pure apart from reading the one file; the per-turn metrics are :mod:`realtime_nb.core.metrics`'s
(the single definition of latency, tokens and cost).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa

from ..core.metrics import compute, turn_views
from ..core.reducer import ConversationState
from ..storage.recording import META_KEY, Recording, RecordingFormatError, reduce_table

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
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_stream(source)
            table = reader.read_all()
            raw = (table.schema.metadata or {}).get(META_KEY)
            meta = json.loads(raw) if raw is not None else None
            whole = _ends_with_eos(path)
    except (pa.ArrowInvalid, OSError, ValueError):
        meta = None
    if meta is None or not isinstance(meta.get("format_version"), int) or not whole:
        with warnings.catch_warnings():
            # The corpus reports the salvage once per file itself (Corpus.damaged).
            warnings.simplefilter("ignore")
            rec = Recording.open(path)  # raises the precise error of a file that is not one
        return dict(rec.meta), rec.table, rec.complete
    if meta["format_version"] > 1:
        Recording.open(path)  # raises RecordingFormatError naming the version and the fix
        raise RecordingFormatError(f"{path}: unsupported recording format")  # pragma: no cover
    return dict(meta), table, True


def _ends_with_eos(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() < len(_EOS):
            return False
        f.seek(-len(_EOS), 2)
        return f.read() == _EOS


#: The one event whose rows are merged before reducing (see :func:`without_audio`).
_DELTA: Final = "response.output_audio.delta"


def without_audio(table: pa.Table) -> pa.Table:
    """``table`` ready to reduce without its audio: every audio value's bytes replaced by as many
    zeros (nulls and lengths kept: only the column's validity and offsets are read, never an
    audio page), and each run of consecutive output audio deltas of one item merged into its
    first delta, carrying the run's length.

    The merge keeps everything the summary reads (when an answer's first audio came, each
    item's audio length) and spares the reducer two thirds of a spoken session's events, the
    most numerous after the microphone's (which it already takes in bulk).
    """
    import pyarrow.compute as pc

    lengths = pc.binary_length(table.column("audio")).combine_chunks()
    is_delta = pc.and_(
        pc.equal(table.column("type"), _DELTA), pc.equal(table.column("source"), "server")
    ).combine_chunks()
    delta_rows = np.flatnonzero(is_delta.to_numpy(zero_copy_only=False))
    length_np = lengths.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(delta_rows):
        items = table.column("item_id").take(pa.array(delta_rows)).to_pylist()
        starts = [0] + [k for k in range(1, len(items)) if items[k] != items[k - 1]]
        sums = np.add.reduceat(length_np[delta_rows], starts)
        keep = np.ones(table.num_rows, dtype=bool)
        keep[delta_rows] = False
        keep[delta_rows[starts]] = True
        length_np[delta_rows[starts]] = sums
        valid = lengths.is_valid().to_numpy(zero_copy_only=False)
        table = table.filter(pa.array(keep))
        length_np, valid = length_np[keep], valid[keep]
    else:
        valid = lengths.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(length_np) + 1, np.int32)
    np.cumsum(length_np, out=offsets[1:])
    # calloc'd: untouched zero pages cost no memory nor reading until the reducer copies them.
    zeros = pa.py_buffer(np.zeros(int(offsets[-1]), np.uint8))
    validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    column = pa.Array.from_buffers(
        pa.binary(),
        len(length_np),
        [validity, pa.py_buffer(offsets), zeros],
        null_count=int(len(valid) - valid.sum()),
    )
    return table.set_column(table.schema.get_field_index("audio"), "audio", column)


def _audio_seconds(table: pa.Table, state: ConversationState) -> tuple[float, float]:
    """Seconds of user (sent) and assistant (received) audio, from the column's offsets."""
    import pyarrow.compute as pc

    lengths = pc.binary_length(table.column("audio"))
    client = pc.equal(table.column("source"), "client")
    sent = pc.sum(pc.if_else(client, lengths, 0)).as_py() or 0
    got = pc.sum(pc.if_else(pc.invert(client), lengths, 0)).as_py() or 0
    return (
        state.input_format.duration_ms(int(sent)) / 1000.0,
        state.output_format.duration_ms(int(got)) / 1000.0,
    )


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
    """The corpus rows of the recording at ``path``, keyed ``key``.

    Raises:
        RecordingFormatError: not a recording (or a newer format).
        FileNotFoundError: no such file.
    """
    stat = path.stat()
    meta, table, whole = read_light(path)
    light = without_audio(table)
    state = reduce_table(light)
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
    user_s, assistant_s = _audio_seconds(table, state)
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
        "events": table.num_rows,
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
    message crosses the process boundary where an exception might not pickle)."""
    try:
        return summarize(path, key)
    except (RecordingFormatError, OSError, pa.ArrowException) as exc:
        return str(exc)
