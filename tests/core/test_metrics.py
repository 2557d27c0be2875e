"""The one definition of each metric (realtime_nb.core.metrics), on plain lists of events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime_nb.core.events import Event
from realtime_nb.core.metrics import compute, percentiles, session_model
from realtime_nb.core.pricing import LOCAL_MODEL, PRICES, cost_of_usage
from realtime_nb.core.protocol import Source
from realtime_nb.core.reducer import reduce

CHUNK_MS = 100
BYTES_PER_MS = 48  # PCM16 at 24 kHz
USAGE_R1 = {
    "total_tokens": 100, "input_tokens": 80, "output_tokens": 20,
    "input_token_details": {"text_tokens": 30, "audio_tokens": 50},
    "output_token_details": {"text_tokens": 20, "audio_tokens": 0},
}  # fmt: skip
USAGE_R2 = {
    "total_tokens": 300, "input_tokens": 100, "output_tokens": 200,
    "input_token_details": {"text_tokens": 100, "audio_tokens": 0},
    "output_token_details": {"text_tokens": 40, "audio_tokens": 160},
}  # fmt: skip


def ev(source: str, t_ms: float, data: dict[str, Any], audio: bytes | None = None) -> Event:
    return Event(
        0,
        int(t_ms * 1e6),
        Source(source),
        data["type"],
        data=data,
        audio=audio,
        item_id=data.get("item_id") or (data.get("item") or {}).get("id"),
        response_id=data.get("response_id") or (data.get("response") or {}).get("id"),
    )


def session(model: str = "gpt-realtime") -> list[Event]:
    """A spoken turn answered after a tool round (played, then cut), then a typed turn answered
    in text."""
    out = [ev("server", 0, {"type": "session.created", "session": {"model": model}})]
    chunk = b"\x01\x00" * (CHUNK_MS * BYTES_PER_MS // 2)
    out += [
        ev("client", k * CHUNK_MS, {"type": "input_audio_buffer.append", "audio": ""}, chunk)
        for k in range(20)
    ]
    audio_out = b"\x02\x00" * (1000 * BYTES_PER_MS // 2)  # one second of answer
    out += [
        ev("server", 250, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 200,
                           "item_id": "u1"}),
        ev("server", 1500, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1300,
                            "item_id": "u1"}),
        ev("server", 1510, {"type": "input_audio_buffer.committed", "item_id": "u1",
                            "previous_item_id": None}),
        ev("server", 1511, {"type": "conversation.item.added", "previous_item_id": None, "item": {
            "id": "u1", "type": "message", "role": "user",
            "content": [{"type": "input_audio", "transcript": None}]}}),
        ev("server", 1520, {"type": "response.created", "response": {"id": "r1",
                                                                     "conversation_id": "c"}}),
        ev("server", 1600, {"type": "response.output_item.added", "response_id": "r1", "item": {
            "id": "fc1", "type": "function_call", "name": "get_weather", "call_id": "c1",
            "arguments": ""}}),
        ev("server", 1650, {"type": "response.function_call_arguments.delta", "response_id": "r1",
                            "item_id": "fc1", "call_id": "c1", "delta": "{}"}),
        ev("server", 1700, {"type": "conversation.item.input_audio_transcription.completed",
                            "item_id": "u1", "content_index": 0, "transcript": "weather?"}),
        ev("server", 1700, {"type": "response.done", "response": {
            "id": "r1", "status": "completed", "usage": USAGE_R1,
            "output": [{"id": "fc1", "type": "function_call", "name": "get_weather",
                        "call_id": "c1", "arguments": "{}"}]}}),
        ev("local", 1705, {"type": "local.tool.started", "call_id": "c1", "name": "get_weather"}),
        ev("local", 1710, {"type": "local.tool.finished", "call_id": "c1", "name": "get_weather",
                           "output": "sunny", "error": None}),
        ev("server", 1720, {"type": "conversation.item.added", "previous_item_id": "fc1", "item": {
            "id": "fo1", "type": "function_call_output", "call_id": "c1", "output": "sunny"}}),
        ev("server", 1730, {"type": "response.created", "response": {"id": "r2",
                                                                     "conversation_id": "c"}}),
        ev("server", 1800, {"type": "response.output_item.added", "response_id": "r2", "item": {
            "id": "a1", "type": "message", "role": "assistant", "content": []}}),
        ev("server", 1850, {"type": "response.output_audio.delta", "response_id": "r2",
                            "item_id": "a1", "content_index": 0, "delta": ""}, audio_out),
        ev("local", 1950, {"type": "local.playback.started", "item_id": "a1"}),
        ev("server", 2000, {"type": "response.done", "response": {
            "id": "r2", "status": "completed", "usage": USAGE_R2}}),
        ev("server", 2460, {"type": "conversation.item.truncated", "item_id": "a1",
                            "content_index": 0, "audio_end_ms": 500}),
        ev("server", 3010, {"type": "conversation.item.added", "previous_item_id": "a1", "item": {
            "id": "u2", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "thanks"}]}}),
        ev("server", 3020, {"type": "response.created", "response": {"id": "r3",
                                                                     "conversation_id": "c"}}),
        ev("server", 3100, {"type": "response.output_text.delta", "response_id": "r3",
                            "item_id": "a2", "content_index": 0, "delta": "You're welcome"}),
        ev("server", 3200, {"type": "response.done", "response": {"id": "r3",
                                                                  "status": "completed"}}),
    ]  # fmt: skip
    return out


def test_every_stage_of_a_spoken_turn_with_a_tool_round() -> None:
    m = compute(reduce(session()), transcript_t_ns={"u1": 1_700_000_000})
    t = m.turns[0]
    assert (t.kind, t.item_id, t.tool_rounds, t.response_ids) == ("vad", "u1", 1, ("r1", "r2"))
    # The end of speech is when the chunk holding the VAD's last byte (1300 ms) was sent.
    assert t.speech_end_s == pytest.approx(1.2)
    assert t.stage_times() == pytest.approx(
        {"speech_end": 0, "speech_stopped": 300, "committed": 310, "transcript": 500,
         "response_created": 320, "answer_created": 530, "first_audio": 650, "answer": 650,
         "heard": 750, "done": 800}
    )  # fmt: skip
    assert t.latency_ms == pytest.approx(650)  # to the first audio, after the tool round
    assert t.heard_ms == pytest.approx(750)
    assert t.answer_ms == pytest.approx(650)
    assert t.done_ms == pytest.approx(800)
    # Segments in time order, each ending at its stage; they add up to the last one.
    stages = t.stages("heard")
    assert [s for s, _, _ in stages] == [
        "speech_stopped", "committed", "response_created", "transcript", "answer_created",
        "first_audio", "heard",
    ]  # fmt: skip
    assert all(a <= b for _, a, b in stages)
    assert stages[-1][2] == pytest.approx(750)
    with pytest.raises(ValueError, match="unknown stage 'nope'; accepted: speech_end"):
        t.stages("nope")


def test_a_text_turn_answered_in_text() -> None:
    m = compute(reduce(session()))
    t = m.turns[1]
    assert (t.kind, t.first_audio_s, t.heard_s, t.tool_rounds) == ("text", None, None, 0)
    assert t.latency_ms == pytest.approx(90)  # to the first output: there is no audio
    assert t.done_ms == pytest.approx(190)
    assert "answer" not in t.stage_times()  # no tool round: the answer is the first output
    assert [s for s, _, _ in t.stages()] == ["response_created", "first_output"]


def test_tokens_and_cost_per_turn_and_response() -> None:
    m = compute(reduce(session()))
    price = PRICES["gpt-realtime"]
    r1, r2 = cost_of_usage(USAGE_R1, price), cost_of_usage(USAGE_R2, price)
    assert r1 == pytest.approx((30 * 4.0 + 50 * 32.0 + 20 * 16.0) / 1e6)
    assert [r.cost_usd for r in m.responses] == pytest.approx([r1, r2, 0.0])
    assert [r.turn for r in m.responses] == [0, 0, 1]
    assert m.responses[0].tool_calls == ("get_weather",)
    assert m.turns[0].usage.total_tokens == 400
    assert m.turns[0].cost_usd == pytest.approx(r1 + r2)
    assert m.cost_usd == pytest.approx(r1 + r2)


def test_the_local_backend_costs_zero_and_an_unknown_model_has_no_price() -> None:
    local = compute(reduce(session(model=LOCAL_MODEL)))
    assert local.model == LOCAL_MODEL
    assert local.cost_usd == 0.0
    assert local.turns[0].cost_usd == 0.0
    unknown = compute(reduce(session(model="someone-elses-model")))
    assert unknown.cost_usd is None
    assert unknown.turns[0].cost_usd is None


def test_the_model_is_what_the_server_says_else_the_metadata() -> None:
    st = reduce(session(model="gpt-realtime-mini-2025-10-06"))
    assert session_model(st, {"model": "gpt-realtime"}) == "gpt-realtime-mini-2025-10-06"
    bare = reduce([ev("server", 0, {"type": "rate_limits.updated"})])
    assert session_model(bare, {"model": "gpt-realtime"}) == "gpt-realtime"
    assert session_model(bare, {"backend": "local backend (no API key)"}) == LOCAL_MODEL
    assert session_model(bare, {}) is None


def test_percentiles_interpolate_like_numpy() -> None:
    np = pytest.importorskip("numpy")
    xs = [120.0, 80.0, 900.0, 300.0, 310.0, None, 95.0]
    p = percentiles(xs)
    finite = [x for x in xs if x is not None]
    assert p.n == 6
    for q, got in ((50, p.p50), (90, p.p90), (95, p.p95), (100, p.max)):
        assert got == pytest.approx(float(np.percentile(finite, q)))
    assert percentiles([None]).to_dict() == {"n": 0, "p50": None, "p90": None, "p95": None,
                                             "max": None}  # fmt: skip
    m = compute(reduce(session()))
    assert m.latency.p50 == pytest.approx((650 + 90) / 2)
    assert m.latency.max == pytest.approx(650)


def test_timeline_marks_both_speakers_tools_responses_and_the_cut() -> None:
    m = compute(reduce(session()))
    (speech,) = [s for s in m.user_speech if s.ref == "u1"]
    assert (speech.start_s, speech.end_s) == pytest.approx((0.2, 1.2))
    (audio,) = m.assistant_audio
    # From playback start, cut where it was heard (500 ms of the one second).
    assert (audio.start_s, audio.end_s, audio.label) == pytest.approx((1.95, 2.45, "cut"))
    (tool,) = m.tool_calls
    assert (tool.label, tool.start_s, tool.end_s) == pytest.approx(("get_weather", 1.705, 1.71))
    (cut,) = m.truncations
    assert cut.t_s == pytest.approx(2.45)
    assert cut.label == "cut at 0.50 s"


def test_to_dict_is_plain_json() -> None:
    m = compute(reduce(session()))
    d = json.loads(json.dumps(m.to_dict()))
    assert d["turns"][0]["latency_ms"] == pytest.approx(650)
    assert d["latency_ms"]["n"] == 2
    assert d["responses"][0]["tool_calls"] == ["get_weather"]


def test_cost_reads_as_text_everywhere() -> None:
    from IPython.lib.pretty import pretty

    from realtime_nb.core.pricing import session_cost

    cost = session_cost("gpt-realtime", [("r1", USAGE_R1)])
    assert pretty(cost) == str(cost) == "$0.0020 (1 response)"
    html = cost._repr_html_()
    assert "tex2jax_ignore mathjax_ignore" in html  # the dollar sign is not a formula
    assert "$0.0020 (1 response)" in html
    assert str(session_cost(LOCAL_MODEL, [("r1", USAGE_R1)])) == "$0.0000 (1 response)"
