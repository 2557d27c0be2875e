"""The reducer on plain lists of events (no I/O)."""

from __future__ import annotations

import os
import random

import pytest

from realtime_nb.core.events import Event
from realtime_nb.core.metrics import compute as compute_metrics
from realtime_nb.core.protocol import Source, canonical_part_type, canonical_type, is_known_type
from realtime_nb.core.reducer import AudioTimeline, Reducer, reduce


def ev(source: str, data: dict, t_ms: float = 0, audio: bytes | None = None, seq: int = 0) -> Event:  # type: ignore[type-arg]  # any JSON event
    d = data
    return Event(
        seq,
        int(t_ms * 1e6),
        Source(source),
        d["type"],
        data=d,
        audio=audio,
        item_id=d.get("item_id") or (d.get("item") or {}).get("id"),
        response_id=d.get("response_id") or (d.get("response") or {}).get("id"),
    )


def added(
    item_id: str, prev: str | None, role: str = "user", text: str = "hi", **kw: object
) -> dict:  # type: ignore[type-arg]  # any JSON event
    part = {"type": "input_text" if role == "user" else "output_text", "text": text}
    return {
        "type": "conversation.item.added",
        "previous_item_id": prev,
        "item": {"id": item_id, "type": "message", "role": role, "content": [part], **kw},
    }


def test_beta_names_map_to_ga() -> None:
    assert canonical_type("response.audio.delta") == "response.output_audio.delta"
    assert (
        canonical_type("response.audio_transcript.done") == "response.output_audio_transcript.done"
    )
    assert canonical_type("response.text.delta") == "response.output_text.delta"
    assert (
        canonical_part_type("audio") == "output_audio"
        and canonical_part_type("text") == "output_text"
    )
    assert is_known_type("response.audio.delta") and not is_known_type("vendor.thing")


def test_beta_session_reduces_like_ga() -> None:
    events = [
        ev("server", {"type": "response.created", "response": {"id": "r1", "conversation_id": "c"}}),
        ev("server", {"type": "conversation.item.created", "previous_item_id": None,
                      "item": {"id": "a1", "type": "message", "role": "assistant", "content": []}}),
        ev("server", {"type": "response.content_part.added", "item_id": "a1", "content_index": 0,
                      "response_id": "r1", "part": {"type": "audio", "transcript": ""}}),
        ev("server", {"type": "response.audio.delta", "item_id": "a1", "response_id": "r1",
                      "content_index": 0, "delta": ""}, 10, audio=b"\x01\x00" * 240),
        ev("server", {"type": "response.audio_transcript.delta", "item_id": "a1", "response_id": "r1",
                      "content_index": 0, "delta": "Hel"}, 11),
        ev("server", {"type": "response.audio_transcript.delta", "item_id": "a1", "response_id": "r1",
                      "content_index": 0, "delta": "lo"}, 12),
    ]  # fmt: skip
    st = reduce(events)
    (item,) = st.items
    assert item.content[0].type == "output_audio"
    assert item.transcript == "Hello"
    assert st.item_audio("a1") == b"\x01\x00" * 240
    assert st.responses["r1"].first_audio_t_ns == 10_000_000


def test_previous_item_id_orders_the_conversation() -> None:
    st = reduce(
        [
            ev("server", added("a", None)),
            ev("server", added("c", "a")),
            ev("server", added("b", "a")),  # inserted between a and c
            # null on a non-empty conversation gives no position (xAI sends it on every item)
            ev("server", added("n", None)),
            ev("server", added("z", "root")),  # "root": explicitly first
            ev("server", added("q", "no-such-item")),  # an unknown id: last
            ev(
                "server",
                {"type": "conversation.item.added", "item": {"id": "y", "type": "message"}},
            ),
        ]
    )
    assert [i.id for i in st.items] == ["z", "a", "b", "c", "n", "q", "y"]


def test_delete_truncate_and_out_of_band() -> None:
    st = reduce(
        [
            ev("server", added("u", None)),
            ev("server", {"type": "response.created", "response": {"id": "r", "conversation_id": None}}),
            ev("server", {"type": "response.output_item.added", "response_id": "r",
                          "item": {"id": "oob", "type": "message", "role": "assistant"}}),
            ev("server", added("a", "u", role="assistant", text="a long answer here")),
            ev("client", {"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": 300}),
            ev("server", {"type": "conversation.item.truncated", "item_id": "a", "content_index": 0, "audio_end_ms": 300}),
            ev("server", {"type": "conversation.item.deleted", "item_id": "u"}),
        ]
    )  # fmt: skip
    assert [i.id for i in st.items] == ["a"]
    assert st.items_by_id["u"].deleted
    assert st.responses["r"].out_of_band and not st.items_by_id["oob"].in_conversation
    a = st.item("a")
    assert a.truncated and a.truncated_ms == 300 and a.truncate_requested_ms == 300


def test_cancelled_response_and_errors_and_unknowns_are_kept() -> None:
    st = reduce(
        [
            ev("server", {"type": "response.created", "response": {"id": "r", "conversation_id": "c"}}),
            ev("server", {"type": "response.done", "response": {"id": "r", "status": "cancelled",
                          "status_details": {"type": "cancelled", "reason": "turn_detected"},
                          "usage": {"total_tokens": 10, "input_tokens": 7, "output_tokens": 3,
                                    "input_token_details": {"audio_tokens": 5, "text_tokens": 2,
                                                            "cached_tokens_details": {"text_tokens": 1}},
                                    "output_token_details": {"audio_tokens": 3}}}}),
            ev("server", {"type": "error", "error": {"type": "invalid_request_error", "code": "x",
                          "message": "bad", "param": "session.voice", "event_id": "e1"}}),
            ev("server", {"type": "vendor.heartbeat", "n": 1}),
            ev("server", {"type": "rate_limits.updated", "rate_limits": [], "surprise": True}),
        ]
    )  # fmt: skip
    r = st.responses["r"]
    assert r.status == "cancelled" and r.cancel_reason == "turn_detected"
    assert st.active_response_id is None
    assert st.usage.input_audio_tokens == 5 and st.usage.cached_text_tokens == 1
    assert st.usage.output_audio_tokens == 3 and st.usage.total_tokens == 10
    (err,) = st.errors
    assert (err.code, err.param, err.event_id) == ("x", "session.voice", "e1")
    assert "session.voice" in str(err)
    assert st.unknown_types == {"vendor.heartbeat": 1}
    assert st.unknown_fields == {"rate_limits.updated.surprise": 1}


def test_manual_commit_turn_gets_its_audio_and_latency() -> None:
    chunk = b"\x02\x00" * 480  # 20 ms
    events = [
        ev("client", {"type": "input_audio_buffer.append", "audio": ""}, i * 20, audio=chunk)
        for i in range(10)
    ]
    events += [
        ev("server", {"type": "input_audio_buffer.committed", "item_id": "u", "previous_item_id": None}, 250),
        ev("server", {"type": "conversation.item.added", "previous_item_id": None,
                      "item": {"id": "u", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}}, 251),
        ev("server", {"type": "response.created", "response": {"id": "r", "conversation_id": "c"}}, 260),
        ev("server", {"type": "response.output_audio.delta", "response_id": "r", "item_id": "a", "delta": ""}, 400, audio=chunk),
    ]  # fmt: skip
    st = reduce(events)
    (turn,) = st.turns
    assert turn.kind == "commit" and turn.item_id == "u" and turn.response_id == "r"
    assert (turn.committed_t_ns, turn.first_audio_t_ns) == (250 * 10**6, 400 * 10**6)
    # Latency runs from the end of speech (the last chunk sent, at 180 ms) to the first audio.
    assert compute_metrics(st).turns[0].latency_ms == pytest.approx(220)
    assert st.item_audio("u") == chunk * 10
    assert (st.item("u").audio_start_ms, st.item("u").audio_end_ms) == (0, 200)


def test_input_transcription_deltas_then_completed_replaces() -> None:
    st = reduce(
        [
            ev("server", {"type": "conversation.item.added", "previous_item_id": None,
                          "item": {"id": "u", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}}),
            ev("server", {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u", "content_index": 0, "delta": "helo "}),
            ev("server", {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u", "content_index": 0, "delta": "wrld"}),
            ev("server", {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u", "content_index": 0, "transcript": "hello world"}),
        ]
    )  # fmt: skip
    assert (
        st.item("u").transcript == "hello world"
        and st.item("u").transcription_status == "completed"
    )


def test_audio_timeline_slices_like_bytes() -> None:
    rng = random.Random(3)
    for _ in range(20):
        t, ref = AudioTimeline(), bytearray()
        for _ in range(60):
            c = os.urandom(rng.randrange(0, 40))
            t += c
            ref += c
            if rng.random() < 0.1:
                assert t.tobytes() == bytes(ref)
            a, b = rng.randrange(len(ref) + 3), rng.randrange(len(ref) + 3)
            assert t[a:b] == bytes(ref[a:b])
        assert len(t) == len(ref) and t == bytes(ref)


def test_audio_timeline_as_one_array_keeps_the_order_of_short_and_long_chunks() -> None:
    """``array()`` copies each chunk into place, whatever its kind (bytes, a view of unsigned or
    of signed bytes, as Arrow's buffers are) and size, added one at a time or with
    ``extend()``: any mix comes out in order, read-only, and the timeline reads the same
    after it."""
    rng = random.Random(5)
    sizes = [1, 1920, 700_000, 1 << 20, 3_000_000, 0, 5]
    kinds = [bytes, memoryview, lambda c: memoryview(c).cast("b"), bytearray]
    for _ in range(8):
        t, ref = AudioTimeline(), bytearray()
        for _ in range(rng.randrange(1, 12)):
            pieces = [os.urandom(rng.choice(sizes)) for _ in range(rng.randrange(1, 4))]
            given = [rng.choice(kinds)(c) for c in pieces]
            if rng.random() < 0.5:
                t.extend(given)
            else:
                for c in given:
                    t += c
            ref += b"".join(pieces)
        assert len(t) == len(ref) and t[: len(ref)] == bytes(ref)
        a = t.array()
        assert a.dtype == "uint8" and a.tobytes() == bytes(ref) and not a.flags.writeable
        assert t.array().tobytes() == bytes(ref) and t.tobytes() == bytes(ref)
        t += b"xy"
        assert t.array().tobytes() == bytes(ref) + b"xy" and t[1:9] == bytes(ref + b"xy")[1:9]
    assert AudioTimeline().array().size == 0
    one = AudioTimeline()
    one += memoryview(bytearray(b"abcd"))
    assert not one.array().flags.writeable


def test_snapshot_is_independent() -> None:
    r = Reducer()
    r.apply(ev("server", added("a", None)))
    snap = r.state.snapshot()
    r.apply(ev("server", added("b", "a")))
    assert [i.id for i in snap.items] == ["a"] and len(r.state.items) == 2
