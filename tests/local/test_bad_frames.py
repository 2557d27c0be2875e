"""Every bad frame gets exactly one ``error`` event and leaves the session usable.

Property-based: from a fully populated, valid seed event of each of the 11 GA client event types,
hypothesis makes variants with one value anywhere in the event replaced by a value of another JSON
type (or NaN, Infinity, a number out of any range, nesting far too deep), or one key deleted. The
oracle is the published schema, as the ``openai`` package's ``RealtimeClientEvent`` models encode
it: a variant they refuse (validated strictly: no "1" for 1) must get exactly one
``invalid_request_error`` and nothing else, carrying the event's ``event_id``. NaN and Infinity
are refused with the path of the field that held them. Whatever the variant, no exception escapes
the state machine, every event emitted validates, and the same session then answers a text turn.

The variants go through the sans-I/O state machine (fast), in both dialects; the shell's own paths
(binary frames, nesting, frames over the size limit) go through a real WebSocket on loopback.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from realtime_nb.core._schema_fields import CLIENT
from realtime_nb.local import LocalServer
from realtime_nb.local._config import MAX_STRING_CHARS
from realtime_nb.local._frames import MAX_EVENT_BYTES, MAX_JSON_DEPTH
from realtime_nb.local._state import RealtimeState

from .local_helpers import (
    Client,
    connect,
    run_fake_job,
    validate_beta_server_event,
    validate_server_event,
)

JSON = dict[str, Any]
EVENT_ID = "evt_fuzz"

_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
_MCP_TOOL = {
    "type": "mcp",
    "server_label": "docs",
    "server_url": "https://mcp.example.invalid/sse",
    "headers": {"X-Team": "voice"},
    "allowed_tools": ["search"],
    "require_approval": {"never": {"tool_names": ["search"], "read_only": True}},
}
_PROMPT = {"id": "pmpt_123", "version": "2", "variables": {"city": "Paris"}}


def _user_item(item_id: str = "item_fuzz_user") -> JSON:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What's the weather?"},
            {"type": "input_audio", "audio": "AAAAAA==", "transcript": "hello"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        ],
    }


#: One or more valid, fully populated events of each GA client event type.
SEEDS: list[JSON] = [
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "tools": [_TOOL, _MCP_TOOL],
            "tool_choice": "auto",
            "max_output_tokens": 1000,
            "tracing": {"workflow_name": "fuzz", "group_id": "g1", "metadata": {"k": "v"}},
            "truncation": {
                "type": "retention_ratio",
                "retention_ratio": 0.5,
                "token_limits": {"post_instructions": 1000},
            },
            "prompt": _PROMPT,
            "include": ["item.input_audio_transcription.logprobs"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1", "language": "en", "prompt": "Hi"},
                    "noise_reduction": {"type": "near_field"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "idle_timeout_ms": 6000,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.25},
            },
        },
    },
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "tools": [_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "max_output_tokens": "inf",
            "tracing": "auto",
            "truncation": "disabled",
            "prompt": None,
            "audio": {
                "input": {
                    "transcription": None,
                    "turn_detection": {
                        "type": "semantic_vad",
                        "eagerness": "high",
                        "create_response": False,
                        "interrupt_response": False,
                    },
                },
                "output": {"voice": {"id": "voice_1234"}},
            },
        },
    },
    {"type": "input_audio_buffer.append", "audio": "AAAAAAAA"},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "output_audio_buffer.clear"},
    {"type": "conversation.item.create", "previous_item_id": "item_user", "item": _user_item()},
    {
        "type": "conversation.item.create",
        "previous_item_id": "root",
        "item": {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Sunny."},
                {"type": "output_audio", "transcript": "Sunny."},
            ],
        },
    },
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": "Be kind."}],
        },
    },
    {
        "type": "conversation.item.create",
        "item": {
            "type": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "call_id": "call_fuzz",
        },
    },
    {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_fuzz", "output": "Sunny"},
    },
    {"type": "conversation.item.retrieve", "item_id": "item_user"},
    {"type": "conversation.item.delete", "item_id": "item_user"},
    {
        "type": "conversation.item.truncate",
        "item_id": "item_assistant",
        "content_index": 0,
        "audio_end_ms": 0,
    },
    {
        "type": "response.create",
        "response": {
            "conversation": "none",
            "metadata": {"topic": "weather"},
            "prompt": _PROMPT,
            "input": [_user_item("item_fuzz_input")],
            "instructions": "Answer in one word.",
            "tools": [_TOOL, _MCP_TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "output_modalities": ["text"],
            "max_output_tokens": 200,
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}},
        },
    },
    {
        "type": "response.create",
        "response": {"conversation": "auto", "tool_choice": "required", "max_output_tokens": "inf"},
    },
    {"type": "response.cancel", "response_id": "resp_fuzz"},
]
for _seed in SEEDS:
    _seed["event_id"] = EVENT_ID

_ADAPTER: TypeAdapter[Any] | None = None


def schema_accepts(event: JSON) -> bool:
    """Whether the published schema (the SDK's models, strictly) accepts ``event``."""
    global _ADAPTER
    if _ADAPTER is None:
        from openai.types.realtime import RealtimeClientEvent

        _ADAPTER = TypeAdapter(RealtimeClientEvent)
    try:
        _ADAPTER.validate_python(event, strict=True)
    except ValidationError:
        return False
    return True


# --- driving the state machine -------------------------------------------------------------------


def settle(state: RealtimeState, now: float = 0.0) -> list[JSON]:
    """Run the jobs the state asked for inline (echo, a fixed transcript, no speech)."""
    out: list[JSON] = []
    while True:
        out.extend(state.events_to_send())
        jobs = state.jobs_to_run()
        if not jobs:
            return out
        for job in jobs:
            run_fake_job(state, job, now)


def fresh_state(beta: bool) -> RealtimeState:
    """A session with a user item ``item_user`` and an assistant audio item ``item_assistant``."""
    state = RealtimeState(fast=True, beta=beta)
    state.start()
    for item_id, role, part in (
        ("item_user", "user", {"type": "input_text", "text": "hi"}),
        ("item_assistant", "assistant", {"type": "output_audio", "transcript": "Hello."}),
    ):
        if beta:
            part = {**part, "type": {"output_audio": "audio"}.get(part["type"], part["type"])}
        item = {"id": item_id, "type": "message", "role": role, "content": [part]}
        state.receive(json.dumps({"type": "conversation.item.create", "item": item}), 0.0)
    events = settle(state)
    assert "error" not in [e["type"] for e in events], events
    return state


def assert_text_turn_works(state: RealtimeState, beta: bool, *, validate: bool = True) -> None:
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "still alive"}],
    }
    state.receive(json.dumps({"type": "conversation.item.create", "item": item}), 1.0)
    state.receive(json.dumps({"type": "response.create"}), 1.0)
    events = settle(state, 1.0)
    if validate:
        for event in events:
            (validate_beta_server_event if beta else validate_server_event)(event)
    assert [e for e in events if e["type"] == "error"] == []
    done = [e for e in events if e["type"] == "response.done"]
    assert done, [e["type"] for e in events]
    assert done[-1]["response"]["status"] == "completed"
    assert "You said: still alive" in json.dumps(done[-1]["response"]["output"])


# --- making bad variants -------------------------------------------------------------------------

#: Stands in for a value whose JSON is written by hand: nesting far deeper than accepted.
DEEP = "\x00deep\x00"
DEEP_JSON = "[" * (MAX_JSON_DEPTH * 2) + "]" * (MAX_JSON_DEPTH * 2)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (keys and list indices), the root excluded."""
    out: list[tuple[Any, ...]] = []
    children = (
        value.items() if isinstance(value, dict) else enumerate(value)
        if isinstance(value, list) else ()
    )  # fmt: skip
    for key, child in children:
        out.append((*prefix, key))
        out.extend(paths(child, (*prefix, key)))
    return out


def param_of(path: tuple[Any, ...]) -> str:
    """The path as the server names a parameter: ``session.tools[0].name``."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def with_value(event: JSON, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> JSON:
    out = copy.deepcopy(event)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def contains_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(contains_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_non_finite(v) for v in value)
    return False


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 4097, 10**9, 2**63, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -0.5, 1.5, 1e300]),
    st.text(max_size=12),
    st.sampled_from(["", "x" * 40, "inf", "auto", "realtime", "message", "audio/pcm"]),
)
BAD_VALUES = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), _scalars, max_size=3),
    st.just(DEEP),
)


@st.composite
def variants(draw: st.DrawFn) -> tuple[JSON, tuple[Any, ...], Any, bool]:
    """(variant, path changed, value put there, whether the key was deleted instead)."""
    seed = draw(st.sampled_from(SEEDS))
    path = draw(st.sampled_from(paths(seed)))
    delete = not isinstance(path[-1], int) and draw(st.integers(0, 5)) == 0
    value = None if delete else draw(BAD_VALUES)
    return with_value(seed, path, value, delete=delete), path, value, delete


def encode(event: JSON) -> str:
    return json.dumps(event).replace(json.dumps(DEEP), DEEP_JSON)


# --- the properties ------------------------------------------------------------------------------


def test_seeds_are_valid_and_accepted() -> None:
    """The oracle's premise: every seed is schema-valid and the server takes it without error."""
    assert {s["type"] for s in SEEDS} == set(CLIENT) - {"transcription_session.update"}
    for seed in SEEDS:
        assert schema_accepts(seed), seed
        for beta in (False, True):
            state = fresh_state(beta)
            state.receive(json.dumps(seed), 0.0)
            errors = [e for e in settle(state) if e["type"] == "error"]
            # Referring to an item or response that is not there is the only refusal expected.
            codes = {e["error"]["code"] for e in errors}
            assert codes <= {"response_cancel_not_active", "input_audio_buffer_commit_empty"}, (
                seed,
                errors,
            )


@settings(
    max_examples=800,
    deadline=None,
    derandomize=True,  # the same variants on every run: CI never turns red by chance
    database=None,  # and no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)
@given(variants())
def test_every_bad_frame_gets_one_error_and_the_session_goes_on(
    case: tuple[JSON, tuple[Any, ...], Any, bool],
) -> None:
    event, path, value, _deleted = case
    frame = encode(event)
    non_finite = contains_non_finite(value)
    deep = value == DEEP
    refused = non_finite or deep or not schema_accepts(event)
    for beta in (False, True):
        state = fresh_state(beta)
        state.receive(frame, 0.0)
        events = settle(state)
        errors = [e for e in events if e["type"] == "error"]
        # A beta session that took GA-only values (an MCP tool, a tool_choice object, a voice
        # object: the beta dialect passes GA fields through) reports them as they are, which the
        # beta schema has no room for; so beta events are checked only where nothing was taken.
        check_schema = not beta or bool(errors)
        for e in events:
            if check_schema:
                (validate_beta_server_event if beta else validate_server_event)(e)
        if errors:
            assert events == errors and len(errors) == 1, [e["type"] for e in events]
            error = errors[0]["error"]
            assert error["type"] == "invalid_request_error", error
            if event.get("event_id") == EVENT_ID and not deep:
                assert error["event_id"] == EVENT_ID, error
        if not beta:  # the beta dialect accepts more (GA fields pass, beta ones translate)
            assert not refused or errors, f"accepted a bad frame: {frame[:300]}"
            if non_finite:
                assert errors[0]["error"]["param"].startswith(param_of(path)), errors[0]
        assert_text_turn_works(state, beta, validate=check_schema)


@pytest.mark.parametrize(
    ("event", "param"),
    [
        (
            {"type": "session.update", "session": {"type": "realtime", "instructions": "{S}"}},
            "session.instructions",
        ),
        ({"type": "response.create", "response": {"instructions": "{S}"}}, "response.instructions"),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "{S}"}],
                },
            },
            "item.content[0].text",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "c", "output": "{S}"},
            },
            "item.output",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call", "name": "f", "arguments": "{S}"},
            },
            "item.arguments",
        ),
    ],
)
def test_strings_over_the_limit_are_refused(event: JSON, param: str) -> None:
    huge = "x" * (MAX_STRING_CHARS + 1)
    frame = json.dumps({**event, "event_id": EVENT_ID}).replace("{S}", huge)
    assert len(frame) < MAX_EVENT_BYTES  # the string limit is reached before the frame limit
    state = fresh_state(False)
    state.receive(frame, 0.0)
    events = settle(state)
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "string_above_max_length",
        param,
        EVENT_ID,
    )
    assert len(error["message"]) < 300
    validate_server_event(events[0])
    assert_text_turn_works(state, False)


def _at(path: str, value: Any) -> JSON:
    """A ``session.update`` / ``response.create`` with ``value`` at the dotted ``path``."""
    keys = path.split(".")
    body: Any = value
    for key in reversed(keys[1:]):
        body = {key: body}
    if keys[0] == "session":
        body = {"type": "realtime", **body}
        return {"type": "session.update", "session": body}
    return {"type": "response.create", "response": body}


_VAD = "session.audio.input.turn_detection"
#: Every numeric field of the session and of a response, with values just outside its range.
NUMERIC_FIELDS: list[tuple[str, list[Any], JSON | None]] = [
    ("session.max_output_tokens", [0, 4097, 10**40], None),
    ("response.max_output_tokens", [0, 4097, -(10**40)], None),
    ("session.audio.output.speed", [0.24, 1.51, 0, 100], None),
    (f"{_VAD}.threshold", [-0.01, 1.01, 10**40], {"type": "server_vad"}),
    (f"{_VAD}.prefix_padding_ms", [-1, 60_001, 10**400 // 10**300], {"type": "server_vad"}),
    (f"{_VAD}.silence_duration_ms", [-1, 60_001], {"type": "server_vad"}),
    (f"{_VAD}.idle_timeout_ms", [4999, 30_001, 0], {"type": "server_vad"}),
    ("session.audio.input.format.rate", [16_000, 0], {"type": "audio/pcm"}),
    ("session.audio.output.format.rate", [48_000], {"type": "audio/pcm"}),
    ("session.truncation.retention_ratio", [-0.1, 1.1], {"type": "retention_ratio"}),
    (
        "session.truncation.token_limits.post_instructions",
        [-1],
        {"type": "retention_ratio", "retention_ratio": 0.5},
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "siblings"),
    [(path, v, sib) for path, values, sib in NUMERIC_FIELDS for v in values],
)
def test_numbers_out_of_range_are_refused(path: str, value: Any, siblings: JSON | None) -> None:
    event = _at(path, value)
    if siblings is not None:  # fields the object needs beside the one tested
        parent: Any = event["session" if path.startswith("session") else "response"]
        for key in path.split(".")[1:-1]:
            parent = parent[key]
        if "token_limits" in path:
            parent = event["session"]["truncation"]
        for key, sibling in siblings.items():
            parent.setdefault(key, sibling)
    state = fresh_state(False)
    state.receive(json.dumps({**event, "event_id": EVENT_ID}), 0.0)
    events = settle(state)
    assert [e["type"] for e in events] == ["error"], events
    error = events[0]["error"]
    assert (error["param"], error["event_id"]) == (path, EVENT_ID)
    validate_server_event(events[0])
    assert_text_turn_works(state, False)


@pytest.mark.parametrize("value", [0.59, 1.21, -1])
def test_beta_temperature_out_of_range_is_refused(value: float) -> None:
    state = fresh_state(True)
    event = {"type": "session.update", "event_id": EVENT_ID, "session": {"temperature": value}}
    state.receive(json.dumps(event), 0.0)
    events = settle(state)
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["error"]["param"] == "session.temperature"
    validate_beta_server_event(events[0])
    assert_text_turn_works(state, True)


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "response.metadata"),
        ({"k" * 65: "v"}, "response.metadata." + "k" * 65),
        ({"k": "v" * 513}, "response.metadata.k"),
        ({"k": 1}, "response.metadata.k"),
    ],
)
def test_metadata_limits(metadata: JSON, param: str) -> None:
    state = fresh_state(False)
    event = {"type": "response.create", "response": {"metadata": metadata}}
    state.receive(json.dumps(event), 0.0)
    events = settle(state)
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["error"]["param"].startswith(param[:80])
    assert_text_turn_works(state, False)


# --- the WebSocket shell -------------------------------------------------------------------------


def _update(**audio: Any) -> str:
    return json.dumps(
        {"type": "session.update", "event_id": EVENT_ID, "session": {"type": "realtime", **audio}}
    )


SHELL_FRAMES: list[tuple[str | bytes, str, str | None]] = [
    (b'{"type": "input_audio_buffer.clear"}', "invalid_json", None),  # JSON, but binary
    (bytes(range(256)), "invalid_json", None),
    ("[" * 1000 + "]" * 1000, "invalid_json", None),  # the 2 KB frame that killed the server
    (
        '{"type": "session.update", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "invalid_json",
        None,
    ),
    (
        _update(audio={"input": {"turn_detection": {"type": "server_vad", "threshold": math.nan}}}),
        "invalid_json",
        "session.audio.input.turn_detection.threshold",
    ),
    (_update(audio={"output": {"speed": math.nan}}), "invalid_json", "session.audio.output.speed"),
    (_update(max_output_tokens=math.inf), "invalid_json", "session.max_output_tokens"),
    (_update().replace('"realtime"', '"realtime", "x": 1e400'), "invalid_json", "session.x"),
    (_update(audio={"output": {"speed": 9}}), "decimal_above_max_value", None),
    (_update(max_output_tokens=10**40), "integer_above_max_value", None),
    ("[1, 2]", "invalid_event", None),
    ("42", "invalid_event", None),
    ('"session.update"', "invalid_event", None),
    ("null", "invalid_event", None),
    ('{"type": "session.delete"}', "invalid_value", None),
    ("OVERSIZE", "event_too_large", None),  # made when sent: 16 MiB is not kept around
]


def test_bad_frames_over_a_websocket(fast_server: LocalServer) -> None:
    async def main() -> Client:
        ws = await connect(fast_server.url)
        c = Client(ws)
        await c.recv()
        for frame, _, _ in SHELL_FRAMES:
            if frame == "OVERSIZE":  # over the protocol's limit, under the WebSocket layer's
                frame = '{"type": "input_audio_buffer.append", "audio": "' + "A" * MAX_EVENT_BYTES
                frame += '"}'
            await c.send(frame)
            await c.until("error")
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "still alive"}],
                },
            }
        )
        await c.send({"type": "response.create"})
        await c.until("response.done")
        await ws.close()
        return c

    c = asyncio.run(asyncio.wait_for(main(), 60))
    errors = [e["error"] for e in c.of("error")]
    assert c.types()[1 : len(SHELL_FRAMES) + 1] == ["error"] * len(SHELL_FRAMES)
    assert [e["code"] for e in errors] == [code for _, code, _ in SHELL_FRAMES]
    for error, (_, _, param) in zip(errors, SHELL_FRAMES, strict=True):
        assert error["type"] == "invalid_request_error"
        if param is not None:
            assert (error["param"], error["event_id"]) == (param, EVENT_ID)
    for e in c.events:
        validate_server_event(e)
    done = c.of("response.done")[-1]["response"]
    assert done["status"] == "completed"
    assert "You said: still alive" in json.dumps(done["output"])
