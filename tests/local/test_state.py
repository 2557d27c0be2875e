"""The sans-I/O state machine, driven with plain lists of events (no sockets, no threads)."""

from __future__ import annotations

import json
from typing import Any

from realtime_nb.local._state import GenerateJob, RealtimeState, SpeakJob
from realtime_nb.local.responders import (
    FunctionCall,
    ResponseRequest,
    RulesResponder,
    TextReply,
    instruction_prefix,
)

from .local_helpers import run_fake_job, validate_server_event


def drive(state: RealtimeState, *frames: dict[str, Any], now: float = 0.0) -> list[dict[str, Any]]:
    """Feed frames, run jobs inline (echo responder, fake transcripts, no speech), return events."""
    for frame in frames:
        state.receive(json.dumps(frame), now)
    out = []
    while True:
        out.extend(state.events_to_send())
        jobs = state.jobs_to_run()
        if not jobs:
            break
        for job in jobs:
            run_fake_job(state, job, now)
    for event in out:
        validate_server_event(event)
    return out


def test_text_turn_without_io() -> None:
    state = RealtimeState(fast=True)
    state.start()
    events = drive(
        state,
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        {"type": "response.create"},
    )
    types = [e["type"] for e in events]
    assert types[:2] == ["session.created", "session.updated"]
    assert types[-2:] == ["response.done", "rate_limits.updated"]
    assert [e["text"] for e in events if e["type"] == "response.output_text.done"] == [
        "You said: hi"
    ]


def test_paced_audio_is_released_by_the_clock() -> None:
    from realtime_nb.local.tts import synthesize

    state = RealtimeState(fast=False)
    state.start()
    state.receive(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                },
            }
        ),
        0.0,
    )
    state.receive(json.dumps({"type": "response.create"}), 0.0)
    state.events_to_send()
    (job,) = state.jobs_to_run()
    assert isinstance(job, GenerateJob)
    state.generation_done(job.response_id, [TextReply("You said: hi")], 10.0)
    total_ms = 0.0
    for expected in ("You said: ", "hi"):  # one segment at a time, the next once one is in
        (speak,) = state.jobs_to_run()
        assert isinstance(speak, SpeakJob)
        assert speak.text == expected
        part = synthesize(speak.text, speak.voice, speak.speed, speak.fmt)
        total_ms += part.duration_ms
        state.speech_done(speak.response_id, part, 10.0)
    assert state.jobs_to_run() == []
    first = [e["type"] for e in state.events_to_send()]
    assert first.count("response.output_audio.delta") == 1
    assert "response.done" not in first
    deadline = state.next_deadline()
    assert deadline is not None
    assert 10.05 < deadline <= 10.2
    state.poll(10.0 + total_ms / 1000 + 0.01)
    rest = [e["type"] for e in state.events_to_send()]
    assert rest[-2:] == ["response.done", "rate_limits.updated"]
    assert state.next_deadline() is None


def test_error_echoes_client_event_id() -> None:
    state = RealtimeState()
    events = drive(
        state,
        {
            "type": "session.update",
            "event_id": "evt_1",
            "session": {"type": "realtime", "voice": "x"},
        },
    )
    (error,) = events
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "unknown_parameter",
        "message": "Unknown parameter: 'session.voice'.",
        "param": "session.voice",
        "event_id": "evt_1",
    }


def test_instruction_prefix() -> None:
    assert instruction_prefix('Be brief. Start every answer with "Aye aye".') == "Aye aye"
    assert instruction_prefix("Start each reply with “Well,”") == "Well,"
    assert instruction_prefix("Be brief.") == ""


def test_rules_responder() -> None:
    tools = ({"type": "function", "name": "get_weather"},)
    rules = RulesResponder(
        {
            r"weather in (?P<city>\w+)": {"call": "get_weather", "arguments": {"city": "{city}"}},
            r"^hi": "Hello!",
        }
    )
    ask = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "weather in Oslo"}],
    }
    (call,) = rules.respond(ResponseRequest(items=(ask,), tools=tools))
    assert call == FunctionCall("get_weather", '{"city": "Oslo"}')
    # without the tool, a real model could not call it: fall back to echo
    assert rules.respond(ResponseRequest(items=(ask,))) == [TextReply("You said: weather in Oslo")]
    items = (
        ask,
        {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "sunny"},
    )
    assert rules.respond(ResponseRequest(items=items, tools=tools)) == [
        TextReply("The tool said: sunny")
    ]
    hi = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hi there"}],
    }
    assert rules.respond(
        ResponseRequest(items=(hi,), instructions='Start every answer with "Yo".')
    ) == [TextReply("Yo Hello!")]


def test_heavy_modules_are_lazy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import realtime_nb.local; "
        "bad = [m for m in ('webrtcvad', 'pocketsphinx', 'espeakng_loader') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0])


def test_missing_extra_error_names_the_extra() -> None:
    import pytest

    from realtime_nb.local._extras import MissingExtraError, require

    with pytest.raises(MissingExtraError, match=r"realtime-nb\[local\]"):
        require("no_such_module_xyz", "no-such-dist", "testing")
