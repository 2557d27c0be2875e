"""Other providers' dialects of the protocol, reduced by principle (plain lists of events).

Each case is something a real provider sends (see tests/fixtures/README.md: xAI puts usage beside
the response, sends ``previous_item_id: null`` on every item, flat placeholder formats beside the
nested GA ones, interim transcription events, function-call items with a role), written here as
the smallest event list that shows it. The fixture sessions themselves are checked end to end in
test_fixtures_independent.py.
"""

from __future__ import annotations

import pytest

from realtime_nb.core.audio import AudioFormat
from realtime_nb.core.reducer import reduce

from .test_reducer import added, ev

JSON = dict  # type: ignore[type-arg]  # any JSON value


def _done(rid: str, usage_inside: JSON | None, usage_beside: JSON | None = None) -> JSON:
    d: JSON = {"type": "response.done", "response": {"id": rid, "status": "completed"}}
    if usage_inside is not None:
        d["response"]["usage"] = usage_inside
    if usage_beside is not None:
        d["usage"] = usage_beside
    return d


USAGE = {
    "total_tokens": 47,
    "input_tokens": 5,
    "output_tokens": 42,
    "input_token_details": {"text_tokens": 5, "audio_tokens": 0, "grok_tokens": 0},
    "output_token_details": {"text_tokens": 3, "audio_tokens": 39},
}


@pytest.mark.parametrize(
    ("inside", "beside"),
    [(USAGE, None), ({}, USAGE), (None, USAGE)],
    ids=["in-response", "beside-empty-response-usage", "beside-no-response-usage"],
)
def test_usage_is_read_where_the_provider_puts_it(inside: JSON | None, beside: JSON | None) -> None:
    st = reduce([ev("server", {"type": "response.created", "response": {"id": "r"}}),
                 ev("server", _done("r", inside, beside))])  # fmt: skip
    assert st.usage.total_tokens == 47
    assert st.usage.output_audio_tokens == 39
    assert st.responses["r"].usage is not None


def test_usage_inside_the_response_wins_over_a_copy_beside_it() -> None:
    other = {**USAGE, "total_tokens": 1}
    st = reduce([ev("server", _done("r", USAGE, other))])
    assert st.usage.total_tokens == 47


def _session(**sess: object) -> JSON:
    return {"type": "session.updated", "session": {"type": "realtime", **sess}}


def test_nested_ga_format_wins_over_a_flat_placeholder() -> None:
    st = reduce(
        [
            ev(
                "server",
                _session(
                    input_audio_format="not specified",
                    output_audio_format="not specified",
                    audio={
                        "input": {"format": {"type": "audio/pcm", "rate": 24000}},
                        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
                    },
                ),
            )
        ]
    )
    assert st.input_format == AudioFormat("audio/pcm", 24000)
    assert st.output_format == AudioFormat("audio/pcm", 24000)
    assert st.warnings == []


def test_an_unknown_format_keeps_the_current_one_and_says_so() -> None:
    g711 = {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}
    st = reduce(
        [
            ev("server", _session(**g711)),
            ev("server", _session(output_audio_format="not specified")),
            ev("server", _session(audio={"input": {"format": {"type": "audio/opus"}}})),
        ]
    )
    assert st.output_format == AudioFormat("audio/pcmu", 8000)  # not re-timed on a guess
    assert st.input_format == AudioFormat("audio/pcm", 24000)
    assert len(st.warnings) == 2
    assert "'not specified'" in st.warnings[0] and "kept as audio/pcmu 8000 Hz" in st.warnings[0]
    assert "audio/opus" in st.warnings[1] and "audio/pcm, audio/pcmu" in st.warnings[1]


def test_flat_beta_formats_still_apply_alone() -> None:
    st = reduce([ev("server", {"type": "session.updated",
                               "session": {"input_audio_format": "g711_alaw",
                                           "output_audio_format": "g711_ulaw"}})])  # fmt: skip
    assert st.input_format == AudioFormat("audio/pcma", 8000)
    assert st.output_format == AudioFormat("audio/pcmu", 8000)


def test_item_audio_duration_follows_the_output_format() -> None:
    delta = {"type": "response.output_audio.delta", "item_id": "a", "response_id": "r",
             "content_index": 0, "delta": ""}  # fmt: skip
    st = reduce(
        [
            ev("server", _session(audio={"output": {"format": {"type": "audio/pcmu"}}})),
            ev("server", added("a", None, role="assistant", text="")),
            ev("server", delta, 1, audio=b"\x7f" * 8000),
        ]
    )
    assert st.items_by_id["a"].output_audio_ms == pytest.approx(1000.0)


def test_null_previous_item_id_appends_after_the_first_item() -> None:
    """xAI's tool round: every event says previous_item_id null; the order is arrival order."""
    fc = {"type": "conversation.item.added", "previous_item_id": None,
          "item": {"id": "fc", "type": "function_call", "role": "tool", "name": "get_weather",
                   "call_id": "c1", "arguments": ""}}  # fmt: skip
    out = {"type": "conversation.item.added", "previous_item_id": None,
           "item": {"id": "out", "type": "function_call_output", "role": "tool",
                    "call_id": "c1", "output": "foggy"}}  # fmt: skip
    st = reduce(
        [
            ev("server", added("u", None)),
            ev("server", added("a1", "u", role="assistant")),
            ev("server", fc),
            ev("server", out),
            ev("server", added("a2", "out", role="assistant")),
        ]
    )
    assert [i.id for i in st.items] == ["u", "a1", "fc", "out", "a2"]
    assert st.items_by_id["fc"].type == "function_call"
    assert st.items_by_id["fc"].text == "get_weather()"


def test_function_call_with_a_user_role_is_a_call_not_a_user_turn() -> None:
    fc = {"type": "response.output_item.added", "response_id": "r",
          "item": {"id": "fc", "type": "function_call", "role": "user", "name": "f",
                   "call_id": "c", "arguments": ""}}  # fmt: skip
    fc_done = {**fc["item"], "arguments": '{"x":1}'}
    st = reduce(
        [
            ev("server", added("u", None)),
            ev("server", {"type": "response.created", "response": {"id": "r"}}),
            ev("server", fc),
            ev("server", {**fc, "type": "response.output_item.done", "item": fc_done}),
        ]
    )
    assert [t.item_id for t in st.turns] == ["u"]
    assert st.items_by_id["fc"].arguments == '{"x":1}'
    # never announced with conversation.item.added: placed when done, at the end
    assert [i.id for i in st.items] == ["u", "fc"]


def test_interim_transcripts_update_without_being_final() -> None:
    def tr(t: str, **kw: object) -> JSON:
        return {"item_id": "u", "content_index": 0, "transcript": t, **kw}

    completed = "conversation.item.input_audio_transcription.completed"
    updated = "conversation.item.input_audio_transcription.updated"
    user = {"id": "u", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}
    events = [
        ev("server", {"type": "conversation.item.added", "previous_item_id": None, "item": user}),
        ev("server", {"type": updated, **tr("Hello?")}),
        ev("server", {"type": completed, **tr("Hello, my name is", status="in_progress")}),
    ]
    st = reduce(events)
    item = st.items_by_id["u"]
    assert item.transcript == "Hello, my name is"
    assert item.transcription_status == "in_progress"
    events.append(ev("server", {"type": completed, **tr("Hello, my name is Marcelo.")}))
    events.append(ev("server", {"type": updated, **tr("late interim")}))  # after final: ignored
    st = reduce(events)
    item = st.items_by_id["u"]
    assert item.transcript == "Hello, my name is Marcelo."
    assert item.transcription_status == "completed"
    assert updated not in st.unknown_types


def test_a_response_answers_the_latest_input_not_the_seeded_history() -> None:
    events = [
        ev("server", added("u1", None, text="My name is Alice."), 1),
        ev("server", added("a1", "u1", role="assistant", text="Nice to meet you."), 2),
        ev("server", added("u2", "a1", text="What is my name?"), 3),
        ev("server", {"type": "response.created", "response": {"id": "r"}}, 4),
    ]
    st = reduce(events)
    by_item = {t.item_id: t.response_id for t in st.turns}
    assert by_item == {"u1": None, "u2": "r"}
