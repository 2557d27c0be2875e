"""The state at a time, from checkpoints, equals applying every event up to that time one by one;
and the events of a recording are a lazy sequence over its table.

The reference here never goes through checkpoints, the bulk path or the lazy event view: it is
``Reducer.apply`` on events read with ``_iter_events`` (the batch reader), one at a time.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime_nb.core.events import Event
from realtime_nb.core.reducer import Checkpointer, ConversationState, Reducer
from realtime_nb.storage.recording import (
    EventList,
    Recorder,
    Recording,
    StateTimeline,
    _iter_events,
    make_meta,
)
from realtime_nb.testing.synthetic import synthetic_session
from tests.conftest import cassettes

# -- helpers --------------------------------------------------------------------------------------


def canonical(state: ConversationState) -> dict[str, Any]:
    """Everything the state holds, as plain data (audio as bytes)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        out[f.name] = bytes(v.tobytes()) if f.name == "input_audio" else _plain(v)
    # What views read through methods, not fields: joined audio, item order.
    out["_audio"] = {i: state.item_audio(i) for i in state.items_by_id}
    out["_items"] = [i.id for i in state.items]
    return out


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        d = {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if "audio_chunks" in d:
            d["audio_chunks"] = b"".join(v.audio_chunks)
        return d
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def one_by_one(rec: Recording, t_s: float) -> ConversationState:
    """The reference: every event up to the first one later than ``t_s``, in order (NaN is
    time 0)."""
    limit = 0.0 if t_s != t_s else t_s * 1e9
    r = Reducer()
    for ev in _iter_events(rec.table):
        if ev.t_ns > limit:
            break
        r.apply(ev)
    return r.state


def assert_state_at_everywhere(rec: Recording, every_s: float, times: list[float]) -> None:
    tl = StateTimeline(rec.table, every_s)
    assert len(tl.checkpoints) >= 2
    for t in times:
        assert canonical(tl.state_at(t)) == canonical(one_by_one(rec, t)), t
    # Seeking back after seeking forward gives the same again: checkpoints are never mutated.
    for t in reversed(times[: len(times) // 2]):
        assert canonical(tl.state_at(t)) == canonical(one_by_one(rec, t)), t
    # Each checkpoint, restored, continues to exactly the full reduction (the reducer's private
    # bookkeeping, not only its state, is restored).
    full = canonical(one_by_one(rec, 1e9))
    assert canonical(tl.state) == full
    for row, cp in tl.checkpoints[:: max(1, len(tl.checkpoints) // 5)]:
        r = cp.restore()
        for ev in list(_iter_events(rec.table))[row:]:
            r.apply(ev)
        assert canonical(r.state) == full, row


def _timed(events: list[tuple[str, dict[str, Any]]], step_s: float) -> Recording:
    return Recording.from_events(
        [{"source": s, "event": e, "t": i * step_s} for i, (s, e) in enumerate(events)]
    )


# -- real sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", cassettes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_state_at_every_event_of_every_fixture_session(path: Path) -> None:
    """Each recorded session, one event every 10 ms, a checkpoint every 3.5 events: the state
    after every single event equals the one-by-one reduction."""
    doc = yaml.safe_load(path.read_text())
    events = [
        ("client" if i["direction"] == "sent" else "server", i["data"])
        for i in doc["interactions"]
        if "data" in i and isinstance(i.get("direction"), str)
    ]
    rec = _timed(events, 0.010)
    times = [i * 0.010 for i in range(len(events) + 1)] + [-1.0, float("nan"), float("inf")]
    assert_state_at_everywhere(rec, 0.035, times)


# -- long synthetic sessions: truncations, tool calls, transcription segments, deletes -----------


def _record_rich(path: Path, minutes: float) -> Recording:
    """A synthetic session with every third answer cut short, a tool call after every second
    turn, transcription segments on the user items and a deleted item: events that change items
    long after they were added."""
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"))
    seen: dict[str, int] = {}
    turn = 0
    for f in synthetic_session(minutes):
        d = f.data
        rec.append(f.source, d, raw=f.raw, t_ns=f.t_ns)
        t = f.t_ns
        item = d.get("item_id")
        if d["type"] == "response.output_audio.delta" and item not in seen:
            seen[str(item)] = t
            if len(seen) % 3 == 0:
                cut = {"item_id": item, "content_index": 0, "audio_end_ms": 700}
                rec.append("client", {"type": "conversation.item.truncate", **cut}, t_ns=t + 1)
                rec.append("server", {"type": "conversation.item.truncated", **cut}, t_ns=t + 2)
            if len(seen) > 2 and len(seen) % 4 == 0:  # an old answer deleted much later
                old = sorted(seen, key=seen.__getitem__)[len(seen) // 2]
                rec.append(
                    "server", {"type": "conversation.item.deleted", "item_id": old}, t_ns=t + 3
                )
        if d["type"] == "conversation.item.input_audio_transcription.delta":
            rec.append(
                "server",
                {
                    "type": "conversation.item.input_audio_transcription.segment",
                    "item_id": item,
                    "content_index": 0,
                    "id": f"seg{t}",
                    "text": d["delta"],
                    "start": 0.0,
                    "end": 0.1,
                },
                t_ns=t + 1,
            )
        if d["type"] == "response.done":
            turn += 1
            if turn % 2 == 0:
                for k, (src, ev) in enumerate(_tool_round(turn)):
                    rec.append(src, ev, t_ns=t + (k + 1) * 1_000_000)
            rec.append(
                "local",
                {
                    "type": "local.playback.played",
                    "item_id": f"item_a{turn:020d}",
                    "played_ms": 900,
                },
                t_ns=t + 50_000_000,
            )
    rec.close()
    return Recording.open(path)


def _tool_round(turn: int) -> list[tuple[str, dict[str, Any]]]:
    rid, fid, call = f"resp_tool{turn}", f"item_f{turn}", f"call_{turn}"
    fn = {"id": fid, "type": "function_call", "name": "get_weather", "call_id": call}
    return [
        ("server", {"type": "response.created", "response": {"id": rid, "conversation_id": "c"}}),
        ("server", {"type": "response.output_item.added", "response_id": rid, "item": fn}),
        ("server", {"type": "conversation.item.added", "item": fn}),
        (
            "server",
            {"type": "response.function_call_arguments.delta", "item_id": fid, "delta": '{"c'},
        ),
        (
            "server",
            {
                "type": "response.function_call_arguments.done",
                "item_id": fid,
                "call_id": call,
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
        ),
        (
            "server",
            {
                "type": "response.done",
                "response": {"id": rid, "status": "completed", "output": [fn], "usage": {}},
            },
        ),
        (
            "client",
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call, "output": "sunny"},
            },
        ),
        ("local", {"type": "local.tool.finished", "name": "get_weather", "error": "boom"}),
    ]


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return _record_rich(tmp_path_factory.mktemp("rich") / "rich.arrow", 3.0)


def test_state_at_on_a_rich_synthetic_session(rich: Recording) -> None:
    st = rich.state
    assert any(i.truncated for i in st.items_by_id.values())
    assert any(i.deleted for i in st.items_by_id.values())
    assert any(i.type == "function_call" for i in st.items_by_id.values())
    assert any(p.extra.get("segments") for i in st.items_by_id.values() for p in i.content)
    rng = np.random.default_rng(3)
    times = [0.0, 5.05, 7.0, 29.999, 30.0, 61.5, 179.9, 1e6]
    times += sorted(float(x) for x in rng.uniform(0, 180, 12))
    assert_state_at_everywhere(rich, 7.0, times)


def test_recording_state_at_uses_checkpoints(rich: Recording) -> None:
    rec = Recording.open(rich.path)  # type: ignore[arg-type]  # opened from a file: it has one
    st = rec.state
    tl = rec.timeline()
    assert tl.state is st  # one reduction for the state and the checkpoints
    assert rec.timeline() is tl  # kept
    assert len(tl.checkpoints) == 7  # 0, 30, ..., 180 s
    assert canonical(rec.state_at(95.5)) == canonical(one_by_one(rec, 95.5))
    assert rec.state_at(95.5) is not rec.state_at(95.5)  # a new object each call
    other = rec.timeline(10.0)  # another interval: its own reduction, the first one kept
    assert other is not tl and rec.timeline() is tl and len(other.checkpoints) == 19
    with pytest.raises(ValueError, match="positive number of seconds"):
        rec.timeline(0)


def test_a_state_read_from_a_file_keeps_views_of_it_and_copies_as_bytes(rich: Recording) -> None:
    """Reply audio read back is kept as views of the mapped file, not copied: the state still
    joins, compares, deep-copies (``snapshot()``) and pickles as one holding bytes, and
    ``output_arrays()`` gives every item's audio as views of one read-only array."""
    rec = Recording.open(rich.path)  # type: ignore[arg-type]  # opened from a file
    st = rec.state
    chunks = [c for i in st.items_by_id.values() for p in i.content for c in p.audio_chunks]
    assert chunks and all(type(c) is memoryview for c in chunks)
    reference = one_by_one(rec, 1e9)  # one event at a time: every chunk its own bytes
    assert canonical(st) == canonical(reference)
    for copied in (st.snapshot(), pickle.loads(pickle.dumps(st)), copy.copy(st)):
        assert canonical(copied) == canonical(reference)
    snap = st.snapshot()
    assert all(
        type(c) is bytes
        for i in snap.items_by_id.values()
        for p in i.content
        for c in p.audio_chunks
    )
    arrays = st.output_arrays()
    outputs = [i.id for i in st.items if (p := i.audio_part()) and p.type == "output_audio"]
    assert list(arrays) == outputs and outputs
    assert {k: a.tobytes() for k, a in arrays.items()} == {k: st.item_audio(k) for k in outputs}
    heard = st.output_arrays(heard=True)
    assert {k: a.tobytes() for k, a in heard.items()} == {
        k: st.item_audio(k, heard=True) for k in outputs
    }
    assert any(len(heard[k]) < len(arrays[k]) for k in outputs)  # the session has cut replies
    # Chosen items in a chosen order: one array holding exactly them, one after the other.
    order = outputs[::-1][:7] + [i.id for i in st.items if i.id not in arrays][:2]
    picked = st.output_arrays(heard=True, items=order)
    assert list(picked) == [k for k in order if k in arrays]
    assert {k: a.tobytes() for k, a in picked.items()} == {k: heard[k].tobytes() for k in picked}
    base = next(iter(picked.values())).base
    assert base.nbytes == sum(a.nbytes for a in picked.values())
    assert base.tobytes() == b"".join(a.tobytes() for a in picked.values())
    bases = {id(a.base) for a in arrays.values()}
    assert len(bases) == 1 and not any(a.flags.writeable for a in arrays.values())
    assert ConversationState().output_arrays() == {}


def test_checkpoints_share_what_did_not_change(rich: Recording) -> None:
    """A checkpoint copies only the items, responses and turns changed since the one before:
    everything else is the very same object as in the previous checkpoint."""
    r = Reducer()
    cps = Checkpointer(r)
    events = list(_iter_events(rich.table))
    half = len(events) // 2
    r.apply_all(events[:half])
    first = cps.take()
    changed = {e.item_id for e in events[half : half + 40] if e.item_id}
    r.apply_all(events[half : half + 40])
    second = cps.take()
    items1 = {**first.items[0], **first.items[1]}
    items2 = {**second.items[0], **second.items[1]}
    assert len(items2) >= len(items1) > 8
    same = [k for k in items1 if items2[k] is items1[k]]
    assert len(same) >= len(items1) - len(changed)
    for k in changed & set(items1):
        assert items2[k] is not items1[k]  # a copy: the first checkpoint keeps the old one
    # Append-only audio is referenced, not copied.
    assert second.input_audio[0] is first.input_audio[0] is r.state.input_audio
    assert second.input_audio[1] > first.input_audio[1]


def test_every_field_is_classified_and_unknown_ones_are_still_right() -> None:
    assert Checkpointer(Reducer()).deep_copied == ()  # every field shared the fast way
    r = Reducer()
    r.state.__dict__["new_thing"] = [1]  # a field added later, mutated in place
    cps = Checkpointer(r)
    assert cps.deep_copied == ("new_thing",)
    first = cps.take()
    r.state.__dict__["new_thing"].append(2)
    assert first.restore().state.__dict__["new_thing"] == [1]
    assert cps.take().restore().state.__dict__["new_thing"] == [1, 2]
    r._unknown_bookkeeping = {}  # type: ignore[attr-defined]  # an attribute the class lacks
    with pytest.raises(TypeError, match=r"_unknown_bookkeeping.*classify them"):
        Checkpointer(r)


# -- property: any event sequence, any checkpoint interval ----------------------------------------

_AUDIO = base64.b64encode(b"\x01\x00" * 240).decode()
_ITEMS = ["u1", "u2", "a1", "a2", "f1"]
_RESP = ["r1", "r2"]


def _event(kind: str, i: int, n: int) -> tuple[str, dict[str, Any]]:
    item, resp = _ITEMS[i % len(_ITEMS)], _RESP[i % len(_RESP)]
    role = "user" if item.startswith("u") else "assistant"
    body: dict[str, Any] = {
        "append": {"type": "input_audio_buffer.append", "audio": _AUDIO},
        "started": {"type": "input_audio_buffer.speech_started", "audio_start_ms": n, "item_id": item},
        "stopped": {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": n + 5, "item_id": item},
        "committed": {"type": "input_audio_buffer.committed", "item_id": item},
        "cleared": {"type": "input_audio_buffer.cleared"},
        "added": {
            "type": "conversation.item.added",
            "item": {"id": item, "type": "message", "role": role,
                     "content": [{"type": "input_audio" if role == "user" else "output_audio"}]},
        },
        "text": {
            "type": "conversation.item.added",
            "item": {"id": item, "type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": f"hi {n}"}]},
        },
        "created": {"type": "response.created", "response": {"id": resp, "conversation_id": "c"}},
        "out_item": {"type": "response.output_item.added", "response_id": resp,
                     "item": {"id": item, "type": "message", "role": "assistant"}},
        "delta": {"type": "response.output_audio.delta", "response_id": resp, "item_id": item,
                  "content_index": 0, "delta": _AUDIO},
        "transcript": {"type": "response.output_audio_transcript.delta", "response_id": resp,
                       "item_id": item, "delta": f"w{n} "},
        "segment": {"type": "conversation.item.input_audio_transcription.segment",
                    "item_id": item, "content_index": 0, "id": f"s{n}", "text": "x"},
        "args": {"type": "response.function_call_arguments.delta", "item_id": item, "delta": "{"},
        "done": {"type": "response.done", "response": {
            "id": resp, "status": "completed", "output": [{"id": item, "type": "message"}],
            "usage": {"total_tokens": n}}},
        "truncated": {"type": "conversation.item.truncated", "item_id": item, "audio_end_ms": n},
        "deleted": {"type": "conversation.item.deleted", "item_id": item},
        "error": {"type": "error", "error": {"message": f"e{n}"}},
        "played": {"type": "local.playback.played", "item_id": item, "played_ms": n},
    }[kind]  # fmt: skip
    source = "client" if kind == "append" else "local" if kind == "played" else "server"
    return source, body


_KINDS = [
    "append", "append", "append", "started", "stopped", "committed", "cleared", "added", "text",
    "created", "out_item", "delta", "delta", "transcript", "segment", "args", "done", "truncated",
    "deleted", "error", "played",
]  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(_KINDS), st.integers(0, 9), st.integers(0, 3)),
        min_size=5,
        max_size=120,
    ),
    every=st.sampled_from([0.01, 0.025, 0.07, 0.3]),
)
def test_state_at_equals_one_by_one_for_any_events(
    ops: list[tuple[str, int, int]], every: float
) -> None:
    """Random events (ids reused across turns, times that sometimes go back): the state at every
    event time, and between, equals the one-by-one reduction."""
    rows = []
    t = 0.0
    for n, (kind, i, dt) in enumerate(ops):
        t = max(t + (dt - 1) * 0.01, 0.0)  # dt 0 steps back in time
        src, ev = _event(kind, i, n)
        rows.append({"source": src, "event": ev, "t_ns": int(t * 1e9)})
    rec = Recording.from_events(rows)
    times = [*sorted({r["t_ns"] / 1e9 for r in rows}), 0.005, t + 1]
    tl = StateTimeline(rec.table, every)
    for x in times:
        assert canonical(tl.state_at(x)) == canonical(one_by_one(rec, x)), x
    assert canonical(tl.state) == canonical(one_by_one(rec, 1e9))


# -- the lazy event list --------------------------------------------------------------------------


def test_events_are_a_lazy_sequence_over_the_table(rich: Recording) -> None:
    rec = Recording.open(rich.path)  # type: ignore[arg-type]  # opened from a file
    evs = rec.events
    assert isinstance(evs, EventList)
    assert rec.events is evs  # one view, kept
    ref = list(_iter_events(rec.table))
    assert len(evs) == len(ref) == len(rec) > 1000

    def same(a: Event, b: Event) -> bool:
        return (a.seq, a.t_ns, a.source, a.type, a.event_id, a.item_id, a.response_id) == (
            b.seq, b.t_ns, b.source, b.type, b.event_id, b.item_id, b.response_id
        ) and a.audio == b.audio and a.wire() == b.wire()  # fmt: skip

    assert all(same(a, b) for a, b in zip(evs, ref, strict=True))
    n = len(ref)
    for i in (0, 1, 777, n // 2, n - 1, -1, -n):
        assert same(evs[i], ref[i]), i
    part = evs[100:260]
    assert isinstance(part, EventList) and len(part) == 160
    assert all(same(a, b) for a, b in zip(part, ref[100:260], strict=True))
    assert [e.seq for e in evs[5:50:7]] == [e.seq for e in ref[5:50:7]]
    assert [e.seq for e in evs[-3:]] == [e.seq for e in ref[-3:]]
    assert len(evs[n + 5 :]) == 0
    audio = next(e for e in evs if e.audio)
    assert isinstance(audio.audio, bytes)
    for copied in (copy.deepcopy(audio), pickle.loads(pickle.dumps(audio))):
        assert type(copied) is Event and same(copied, audio)
    with pytest.raises(IndexError, match="out of range"):
        evs[n]
    with pytest.raises(TypeError, match="integers or slices"):
        evs["3"]  # type: ignore[call-overload]  # a wrong index type on purpose
    # What the rest of the package does with events keeps working.
    assert canonical(Reducer().apply_all(evs)) == canonical(rec.state)
    again = Recording.from_events(evs[:300])
    assert [e.wire() for e in again.events] == [e.wire() for e in ref[:300]]
    assert rec.item_start_s(next(iter(rec.state.items_by_id))) is not None


def test_walking_the_events_does_not_copy_the_audio(rich: Recording) -> None:
    """Holding every event of a recording costs far less than its audio: the audio stays in the
    table until an event's ``audio`` is read."""
    rec = Recording.open(rich.path)  # type: ignore[arg-type]  # opened from a file
    audio_bytes = sum(len(x) for x in _iter_audio(rec))
    assert rec.events[3:9][2].type  # modules pyarrow imports on first use are not the events
    tracemalloc.start()
    try:
        kept = list(rec.events)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == len(rec)
    assert audio_bytes > 10_000_000
    # Copying the audio out would cost at least ``audio_bytes``; the events themselves (ids,
    # payload texts) cost ~0.7 KB each here.
    assert peak < audio_bytes / 2, (peak, audio_bytes)


def _iter_audio(rec: Recording) -> list[bytes]:
    col = rec.table.column("audio")
    return [b for chunk in col.chunks for b in chunk.to_pylist() if b]
