"""The beta protocol (``OpenAI-Beta: realtime=v1``) end to end: beta names and shapes both ways.

Every server event a beta connection receives must validate against
``openai.types.beta.realtime.RealtimeServerEvent`` AND carry no field that the beta event, session
(``RealtimeSession`` in the published spec), response (``RealtimeBetaResponse``) or item
(``openai.types.beta.realtime.ConversationItem``) does not define: the package's models accept
unknown fields, so validation alone would let GA leftovers (``output_modalities``, nested
``audio``, ``conversation.item.added``) through. Every client event sent is a valid beta
``RealtimeClientEvent``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import typing
from collections.abc import Awaitable, Callable, Iterator
from functools import cache
from typing import Any

import pytest
from openai import AsyncOpenAI

from realtime_nb.core.protocol import SERVER_EVENT_TYPES
from realtime_nb.local import LocalServer
from realtime_nb.local._beta import BETA_SERVER_EVENT_TYPES, BetaDialect
from realtime_nb.local._state import RealtimeState

from ..conftest import SPEC
from .local_helpers import (
    WEATHER_RULE,
    WEATHER_TOOLS,
    Client,
    connect,
    run_fake_job,
    silence,
    validate_beta_client_event,
    validate_beta_server_event,
    validate_server_event,
)

JSON = dict[str, Any]
BETA_HEADERS = {"OpenAI-Beta": "realtime=v1"}
TOOLS = WEATHER_TOOLS
RULES = [WEATHER_RULE]
#: GA-only event names that must never reach a beta client.
GA_ONLY = SERVER_EVENT_TYPES - BETA_SERVER_EVENT_TYPES


# --- strict beta checks --------------------------------------------------------------------------


@cache
def _spec_fields(schema: str) -> frozenset[str]:
    schemas = json.loads((SPEC / "realtime_schemas_subset.json").read_text())["components"]
    return frozenset(schemas["schemas"][schema]["properties"])


@cache
def _beta_event_fields() -> dict[str, frozenset[str]]:
    from openai.types.beta.realtime import RealtimeServerEvent

    union = typing.get_args(RealtimeServerEvent)[0]
    return {
        typing.get_args(cls.model_fields["type"].annotation)[0]: frozenset(cls.model_fields)
        for cls in typing.get_args(union)
    }


def _check_item(item: JSON) -> None:
    from openai.types.beta.realtime import ConversationItem, ConversationItemContent

    assert set(item) <= set(ConversationItem.model_fields), set(item) - set(
        ConversationItem.model_fields
    )
    assert item["object"] == "realtime.item"
    for part in item.get("content") or []:
        extra = set(part) - set(ConversationItemContent.model_fields)
        assert not extra, (part, extra)


def check_beta_event(event: JSON) -> None:
    """Validate as a beta server event, with no field the beta protocol does not define."""
    validate_beta_server_event(event)
    extra = set(event) - _beta_event_fields()[event["type"]]
    assert not extra, (event["type"], extra)
    if event["type"] in ("session.created", "session.updated"):
        extra = set(event["session"]) - _spec_fields("RealtimeSession")
        assert not extra, extra
    if event["type"] in ("response.created", "response.done"):
        extra = set(event["response"]) - _spec_fields("RealtimeBetaResponse")
        assert not extra, extra
        for item in event["response"]["output"]:
            _check_item(item)
    if "item" in event:
        _check_item(event["item"])


# --- the pure dialect, driven with plain lists -----------------------------------------------------


def drive(state: RealtimeState, *frames: JSON, transcript: str = "hello") -> list[JSON]:
    """Feed beta frames, run jobs inline (echo responder, fake transcripts, no speech)."""
    for frame in frames:
        validate_beta_client_event(frame)
        state.receive(json.dumps(frame), 0.0)
    out = []
    while True:
        out.extend(state.events_to_send())
        jobs = state.jobs_to_run()
        if not jobs:
            break
        for job in jobs:
            run_fake_job(state, job, 0.0, transcript)
    for event in out:
        check_beta_event(event)
    return out


def user_text(text: str) -> JSON:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def test_session_objects_are_flat_beta_sessions() -> None:
    state = RealtimeState(beta=True)
    state.start()
    (created,) = drive(state)
    session = created["session"]
    assert list(session) == [
        "id", "object", "modalities", "model", "instructions", "voice", "input_audio_format",
        "output_audio_format", "input_audio_transcription", "turn_detection",
        "input_audio_noise_reduction", "speed", "tracing", "tools", "tool_choice", "temperature",
        "max_response_output_tokens", "expires_at", "prompt", "include",
    ]  # fmt: skip
    assert session["modalities"] == ["text", "audio"]
    assert (session["input_audio_format"], session["output_audio_format"]) == ("pcm16", "pcm16")
    assert session["temperature"] == 0.8
    assert session["max_response_output_tokens"] == "inf"
    assert session["turn_detection"]["type"] == "server_vad"
    (updated,) = drive(
        state,
        {
            "type": "session.update",
            "session": {
                "modalities": ["text"],
                "voice": "ash",
                "speed": 1.25,
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_alaw",
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "input_audio_noise_reduction": {"type": "near_field"},
                "turn_detection": None,
                "temperature": 0.7,
                "max_response_output_tokens": 300,
                "instructions": "Be brief.",
            },
        },
    )
    s = updated["session"]
    assert s["modalities"] == ["text"]
    assert (s["voice"], s["speed"], s["temperature"]) == ("ash", 1.25, 0.7)
    assert (s["input_audio_format"], s["output_audio_format"]) == ("g711_ulaw", "g711_alaw")
    assert s["input_audio_transcription"] == {
        "model": "whisper-1",
        "language": "en",
        "prompt": None,
    }
    assert s["input_audio_noise_reduction"] == {"type": "near_field"}
    assert s["turn_detection"] is None
    assert (s["max_response_output_tokens"], s["instructions"]) == (300, "Be brief.")
    # Inside, the state machine is GA.
    assert state.session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert state.session["output_modalities"] == ["text"]


@pytest.mark.parametrize(
    ("session", "param", "code"),
    [
        ({"voice": "nobody"}, "session.voice", "invalid_value"),
        ({"input_audio_format": "wav"}, "session.input_audio_format", "invalid_value"),
        ({"modalities": ["video"]}, "session.modalities[0]", "invalid_value"),
        ({"temperature": 2.0}, "session.temperature", "decimal_above_max_value"),
        ({"turn_detection": {"threshold": 3}}, "session.turn_detection.threshold", None),
        ({"max_response_output_tokens": 0}, "session.max_response_output_tokens", None),
    ],
)
def test_errors_name_the_beta_field(session: JSON, param: str, code: str | None) -> None:
    state = RealtimeState(beta=True)
    state.receive(
        json.dumps({"type": "session.update", "event_id": "evt_1", "session": session}), 0
    )
    (error,) = state.events_to_send()
    check_beta_event(error)
    assert error["error"]["param"] == param
    assert error["error"]["event_id"] == "evt_1"
    message = error["error"]["message"]
    for ga_name in ("audio.", "output_modalities", "max_output_tokens"):
        assert ga_name not in message, message
    if code is not None:
        assert error["error"]["code"] == code


def test_refused_update_leaves_temperature_alone() -> None:
    state = RealtimeState(beta=True)
    # temperature is valid, voice is not: the update is refused whole.
    bad = {"type": "session.update", "session": {"temperature": 1.1, "voice": "nobody"}}
    state.receive(json.dumps(bad), 0.0)
    assert [e["type"] for e in state.events_to_send()] == ["error"]
    state.start()
    (created,) = drive(state)
    assert created["session"]["temperature"] == 0.8


def test_text_turn_and_item_shapes() -> None:
    state = RealtimeState(beta=True)
    events = drive(
        state,
        {"type": "session.update", "session": {"temperature": 0.9}},
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Hi."}],
            },
        },
        user_text("hello"),
        {
            "type": "response.create",
            "response": {
                "modalities": ["text"],
                "max_response_output_tokens": 50,
                "temperature": 1.0,
                "instructions": "Echo.",
            },
        },
    )
    types = [e["type"] for e in events]
    assert types == [
        "session.updated",
        "conversation.item.created",
        "conversation.item.created",
        "response.created",
        "response.output_item.added",
        "conversation.item.created",
        "response.content_part.added",
        "response.text.delta",
        "response.text.delta",
        "response.text.delta",
        "response.text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    assistant, user = events[1]["item"], events[2]["item"]
    assert assistant["content"] == [{"type": "text", "text": "Hi."}]
    assert user["content"] == [{"type": "input_text", "text": "hello"}]
    assert state.items[0]["content"][0]["type"] == "output_text"  # GA inside
    response = events[-2]["response"]
    assert response["modalities"] == ["text"]
    assert response["max_output_tokens"] == 50
    assert response["temperature"] == 0.9  # the session's: per-response temperature is ignored
    assert response["output"][0]["content"] == [{"type": "text", "text": "You said: hello"}]
    assert events[6]["part"] == {"type": "text", "text": ""}


def test_other_events_and_items_in_beta_shape() -> None:
    state = RealtimeState(beta=True)
    audio = base64.b64encode(silence(300)).decode()
    events = drive(
        state,
        {
            "type": "session.update",
            "session": {
                "turn_detection": None,
                "input_audio_transcription": {"model": "whisper-1"},
            },
        },
        {"type": "input_audio_buffer.append", "audio": audio},
        {"type": "input_audio_buffer.clear"},
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_audio",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": audio}],
            },
        },
        {"type": "conversation.item.retrieve", "item_id": "item_audio"},
        transcript="hmm",
    )
    events += drive(
        state,
        {"type": "conversation.item.delete", "item_id": "item_audio"},
        {"type": "output_audio_buffer.clear"},
        {"type": "response.cancel"},
    )
    types = [e["type"] for e in events]
    assert types == [
        "session.updated",
        "input_audio_buffer.cleared",
        "conversation.item.created",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.deleted",
        "output_audio_buffer.cleared",
        "error",
    ]
    retrieved = events[3]["item"]
    assert retrieved["object"] == "realtime.item"
    assert retrieved["content"][0]["type"] == "input_audio"
    assert base64.b64decode(retrieved["content"][0]["audio"]) == silence(300)
    assert events[5]["transcript"] == "hmm"
    assert events[-1]["error"]["code"] == "response_cancel_not_active"


def test_dialect_drops_events_beta_does_not_have() -> None:
    dialect = BetaDialect()
    assert (
        dialect.server_event({"type": "conversation.item.done", "event_id": "e", "item": {}})
        is None
    )
    timeout = {
        "type": "input_audio_buffer.timeout_triggered",
        "event_id": "e",
        "audio_start_ms": 0,
        "audio_end_ms": 5000,
        "item_id": "item_1",
    }
    assert dialect.server_event(timeout) is None
    done = dialect.server_event(
        {
            "type": "response.function_call_arguments.done",
            "event_id": "e",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "call_id": "c",
            "name": "f",
            "arguments": "{}",
        }
    )
    assert done is not None and "name" not in done
    # Every GA event type maps into the beta union or is dropped; only these are dropped.
    dropped = set()
    for etype in SERVER_EVENT_TYPES:
        out = dialect.server_event({"type": etype, "event_id": "e"})
        if out is None:
            dropped.add(etype)
        else:
            assert out["type"] in _beta_event_fields(), out
    assert dropped == {
        "conversation.item.done",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "conversation.item.input_audio_transcription.segment",
        *(t for t in SERVER_EVENT_TYPES if "mcp" in t),
    }
    assert set(_beta_event_fields()) - BETA_SERVER_EVENT_TYPES == {
        "transcription_session.updated"  # a transcription-only session: not served here
    }


# --- over a real WebSocket -------------------------------------------------------------------------


class BetaClient(Client):
    """A raw client that validates what it sends as a beta client event."""

    async def send(self, event: JSON | str | bytes) -> None:
        if isinstance(event, dict):
            validate_beta_client_event(event)
        await super().send(event)


def run_beta(
    scenario: Callable[[BetaClient], Awaitable[None]], url: str, **connect_kwargs: Any
) -> BetaClient:
    kwargs = connect_kwargs or {"additional_headers": BETA_HEADERS}

    async def main() -> BetaClient:
        ws = await connect(url, **kwargs)
        client = BetaClient(ws)
        try:
            created = await client.recv()
            assert created["type"] == "session.created"
            await scenario(client)
        finally:
            await ws.close()
        return client

    client = asyncio.run(main())
    for event in client.events:
        check_beta_event(event)
    assert not GA_ONLY & set(client.types()), GA_ONLY & set(client.types())
    return client


@pytest.fixture(scope="module")
def rules_server() -> Iterator[LocalServer]:
    with LocalServer("rules", rules=RULES, fast=True) as server:
        yield server


def test_ws_text_turn(fast_server: LocalServer) -> None:
    async def scenario(c: BetaClient) -> None:
        await c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        await c.until("session.updated")
        await c.send(user_text("Good morning"))
        await c.send({"type": "response.create"})
        await c.until("response.done")

    client = run_beta(scenario, fast_server.url)
    assert client.of("session.updated")[0]["session"]["modalities"] == ["text"]
    assert client.of("response.text.done")[0]["text"] == "You said: Good morning"
    assert client.types().count("conversation.item.created") == 2  # the user's, the reply


def test_ws_ga_connection_still_speaks_ga(fast_server: LocalServer) -> None:
    async def main() -> list[JSON]:
        ws = await connect(fast_server.url)
        c = Client(ws)
        await c.recv()
        await c.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["text"]},
            }
        )
        await c.send(user_text("Good morning"))
        await c.send({"type": "response.create"})
        await c.until("response.done")
        await ws.close()
        return c.events

    events = asyncio.run(main())
    for event in events:
        validate_server_event(event)
    types = {e["type"] for e in events}
    assert {
        "conversation.item.added",
        "conversation.item.done",
        "response.output_text.done",
    } <= types
    assert not types & {"conversation.item.created", "response.text.done"}


def test_ws_audio_turn_with_server_vad(fast_server: LocalServer, weather_pcm: bytes) -> None:
    """Beta by subprotocol (what browsers send): an audio turn, then a truncation."""

    async def scenario(c: BetaClient) -> None:
        await c.send(
            {
                "type": "session.update",
                "session": {
                    "input_audio_transcription": {"model": "whisper-1"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    "voice": "sage",
                },
            }
        )
        await c.until("session.updated")
        await c.append(silence(500) + weather_pcm + silence(800))
        done = await c.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        await c.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 500,
            }
        )
        await c.until("conversation.item.truncated")
        await c.send({"type": "conversation.item.retrieve", "item_id": item_id})
        await c.until("conversation.item.retrieved")

    client = run_beta(
        scenario, fast_server.url, subprotocols=["realtime", "openai-beta.realtime-v1"]
    )
    types = client.types()
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
        "response.created",
        "conversation.item.input_audio_transcription.completed",
        "response.output_item.added",
        "response.content_part.added",
        "response.audio_transcript.delta",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "rate_limits.updated",
    ]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), types
    user_item = client.of("conversation.item.created")[0]["item"]
    assert user_item["content"] == [{"type": "input_audio", "transcript": None}]
    heard = client.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert heard, "pocketsphinx heard nothing"
    assert client.of("response.audio_transcript.done")[0]["transcript"] == f"You said: {heard}"
    assert client.of("response.content_part.added")[0]["part"] == {
        "type": "audio",
        "transcript": "",
    }
    response = client.of("response.done")[0]["response"]
    assert (response["modalities"], response["voice"]) == (["text", "audio"], "sage")
    assert response["output_audio_format"] == "pcm16"
    assert response["output"][0]["content"][0]["type"] == "audio"
    audio = b"".join(base64.b64decode(e["delta"]) for e in client.of("response.audio.delta"))
    assert len(audio) > 24000 * 2
    retrieved = client.of("conversation.item.retrieved")[0]["item"]
    part = retrieved["content"][0]
    assert part["type"] == "audio"
    assert part["transcript"] == ""  # deleted by the truncation, as the spec says
    assert len(base64.b64decode(part["audio"])) == 24000 * 2 * 500 // 1000


def test_ws_tool_call_round(rules_server: LocalServer) -> None:
    async def scenario(c: BetaClient) -> None:
        await c.send(
            {
                "type": "session.update",
                "session": {"tools": TOOLS, "tool_choice": "auto", "modalities": ["text"]},
            }
        )
        await c.until("session.updated")
        await c.send(user_text("What is the weather in London?"))
        await c.send({"type": "response.create"})
        done = await c.until("response.done")
        call = done["response"]["output"][0]
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": call["call_id"],
                    "output": json.dumps({"forecast": "rain"}),
                },
            }
        )
        await c.send({"type": "response.create", "response": {"modalities": ["text"]}})
        await c.until("response.done")

    client = run_beta(scenario, rules_server.url)
    session = client.of("session.updated")[0]["session"]
    assert session["tools"] == TOOLS
    first, second = (e["response"] for e in client.of("response.done"))
    call = first["output"][0]
    assert (call["type"], call["name"], call["object"]) == (
        "function_call",
        "get_weather",
        "realtime.item",
    )
    (args_done,) = client.of("response.function_call_arguments.done")
    assert json.loads(args_done["arguments"]) == {"city": "London"}
    assert args_done["call_id"] == call["call_id"]
    assert second["output"][0]["content"][0]["type"] == "text"
    assert client.of("response.text.done")[-1]["text"].startswith("In London:")


def test_openai_beta_client(fast_server: LocalServer) -> None:
    """``client.beta.realtime.connect`` (header ``OpenAI-Beta: realtime=v1``) holds a text turn
    and an audio turn; its parsed events are the beta models."""

    async def main() -> list[Any]:
        client = AsyncOpenAI(api_key="test", websocket_base_url=fast_server.base_url)
        events: list[Any] = []
        async with client.beta.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(
                session={"modalities": ["text"], "instructions": 'Start every answer with "Sure."'}
            )
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Hello"}],
                }
            )
            await conn.response.create()
            async for event in conn:
                events.append(event)
                if event.type == "response.done":
                    break
            await conn.response.create(response={"modalities": ["audio", "text"], "voice": "ash"})
            async for event in conn:
                events.append(event)
                if event.type == "response.done":
                    break
        return events

    events = asyncio.run(asyncio.wait_for(main(), 60))
    for event in events:
        check_beta_event(event.model_dump(mode="json", exclude_unset=True))
    types = [e.type for e in events]
    assert types[0] == "session.created"
    text_done = next(e for e in events if e.type == "response.text.done")
    assert text_done.text == "Sure. You said: Hello"
    transcript = next(e for e in events if e.type == "response.audio_transcript.done")
    assert transcript.transcript == "Sure. You said: Hello"
    assert "response.audio.delta" in types
    last = events[-1]
    assert last.type == "response.done"
    assert last.response.modalities == ["text", "audio"]
    assert last.response.voice == "ash"
