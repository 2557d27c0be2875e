"""Scenario suite over a real WebSocket: every server event must validate against
``openai.types.realtime.RealtimeServerEvent``."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from realtime_nb.core.audio import AudioFormat, decode_to_float, encode_from_float, resample
from realtime_nb.core.pricing import LOCAL_MODEL
from realtime_nb.local import LocalServer

from .local_helpers import (
    WEATHER_RULE,
    WEATHER_TOOLS,
    Client,
    connect,
    silence,
    validate_beta_server_event,
    validate_server_event,
)

JSON = dict[str, Any]
ALL_EVENTS: list[JSON] = []

TOOLS = WEATHER_TOOLS
RULES = [
    WEATHER_RULE,
    {"pattern": r"hello", "reply": "Hi from the rules."},
]


def run(scenario: Callable[..., Awaitable[None]], url: str, **kwargs: Any) -> Client:
    async def main() -> Client:
        ws = await connect(url, **kwargs)
        client = Client(ws)
        try:
            created = await client.recv()
            assert created["type"] == "session.created"
            await scenario(client)
        finally:
            await ws.close()
        return client

    client = asyncio.run(main())
    for event in client.events:
        validate_server_event(event)
    ALL_EVENTS.extend(client.events)
    return client


def session_update(**session: Any) -> JSON:
    return {
        "type": "session.update",
        "event_id": "evt_update",
        "session": {"type": "realtime", **session},
    }


def user_text(text: str) -> JSON:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def audio_of(client: Client, item_id: str | None = None) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in client.of("response.output_audio.delta")
        if item_id is None or e["item_id"] == item_id
    )


@pytest.fixture(scope="module")
def rules_server() -> Any:
    with LocalServer("rules", rules=RULES, fast=True) as server:
        yield server


@pytest.fixture(scope="module")
def paced_server() -> Any:
    with LocalServer(fast=False) as server:
        yield server


def test_session_created_is_a_full_ga_session(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        pass

    client = run(scenario, fast_server.url)
    session = client.events[0]["session"]
    assert client.events[0]["event_id"].startswith("event_")
    assert session["id"].startswith("sess_")
    assert list(session) == [
        "type", "object", "id", "model", "output_modalities", "instructions", "tools",
        "tool_choice", "max_output_tokens", "tracing", "truncation", "prompt", "expires_at",
        "audio", "include",
    ]  # fmt: skip
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"


def test_audio_turn_with_server_vad(fast_server: LocalServer, weather_pcm: bytes) -> None:
    async def scenario(c: Client) -> None:
        await c.send(session_update(audio={"input": {"transcription": {"model": "whisper-1"}}}))
        assert (await c.until("session.updated"))["session"]["audio"]["input"]["transcription"] == {
            "model": "whisper-1",
            "language": None,
            "prompt": None,
        }
        await c.append(silence(500) + weather_pcm + silence(800))
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    types = client.types()
    assert types.count("input_audio_buffer.speech_started") == 1
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "conversation.item.input_audio_transcription.completed",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), types
    heard = client.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    assert "weather" in heard.lower()
    transcript = client.of("response.output_audio_transcript.done")[0]["transcript"]
    assert transcript == f"You said: {heard}"
    assert (
        "".join(e["delta"] for e in client.of("response.output_audio_transcript.delta"))
        == transcript
    )
    audio = audio_of(client)
    assert len(audio) > 24000 * 2  # more than a second of 24 kHz PCM16
    done = client.of("response.done")[-1]["response"]
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] > 0
    assert usage["output_token_details"]["audio_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert done["id"].startswith("resp_")
    assert done["conversation_id"].startswith("conv_")


def test_manual_commit(fast_server: LocalServer, weather_pcm: bytes) -> None:
    async def scenario(c: Client) -> None:
        await c.send(session_update(audio={"input": {"turn_detection": None}}))
        await c.until("session.updated")
        await c.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
        await c.until("error")
        await c.append(weather_pcm)
        await c.send({"type": "input_audio_buffer.commit"})
        await c.until("input_audio_buffer.committed")
        await c.send({"type": "response.create"})
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    error = client.of("error")[0]["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["event_id"] == "evt_empty"
    assert "input_audio_buffer.speech_started" not in client.types()
    assert client.of("response.output_audio_transcript.done")[0]["transcript"].startswith(
        "You said: "
    )


def test_text_turn(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(session_update(output_modalities=["text"]))
        await c.until("session.updated")
        await c.send(user_text("Say a short greeting."))
        await c.send({"type": "response.create"})
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    assert "response.output_audio.delta" not in client.types()
    text = client.of("response.output_text.done")[0]["text"]
    assert text == "You said: Say a short greeting."
    assert "".join(e["delta"] for e in client.of("response.output_text.delta")) == text
    part = client.of("response.content_part.added")[0]["part"]
    assert part == {"type": "text", "text": ""}
    done = client.of("response.done")[0]["response"]
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["usage"]["output_token_details"]["audio_tokens"] == 0


def test_instructions_change_the_answer(fast_server: LocalServer) -> None:
    answers = []
    for phrase in ("Ahoy", "Good evening"):

        async def scenario(c: Client, phrase: str = phrase) -> None:
            await c.send(
                session_update(
                    instructions=f'Start every answer with "{phrase}".', output_modalities=["text"]
                )
            )
            await c.send(user_text("hello"))
            await c.send({"type": "response.create"})
            await c.until("response.done")

        answers.append(run(scenario, fast_server.url).of("response.output_text.done")[0]["text"])
    assert answers == ["Ahoy You said: hello", "Good evening You said: hello"]


def test_interruption_mid_response(paced_server: LocalServer, weather_pcm: bytes) -> None:
    async def scenario(c: Client) -> None:
        await c.send(
            user_text("Please tell me a long and winding story about the sea and the sky.")
        )
        await c.send({"type": "response.create"})
        await c.until("response.output_audio.delta")
        await c.append(weather_pcm + silence(600), chunk_ms=200)
        await c.until(lambda e: e["type"] == "response.done")
        await c.until("response.done")  # the answer to the interruption

    client = run(scenario, paced_server.url)
    first, second = client.of("response.done")
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert first["response"]["output"][0]["status"] == "incomplete"
    types = client.types()
    assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
    assert second["response"]["status"] == "completed"
    # The cancelled item's audio stopped early: far less than the whole reply.
    item = first["response"]["output"][0]["id"]
    assert len(audio_of(client, item)) < 24000 * 2 * 3


def test_response_cancel_by_client(paced_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(user_text("Tell me something rather long, please, with many words in it."))
        await c.send({"type": "response.create"})
        await c.until("response.output_audio.delta")
        await c.send({"type": "response.cancel"})
        await c.until("response.done")
        await c.send({"type": "response.cancel", "event_id": "evt_again"})
        await c.until("error")

    client = run(scenario, paced_server.url)
    done = client.of("response.done")[0]["response"]
    assert done["status_details"]["reason"] == "client_cancelled"
    assert client.of("error")[0]["error"]["code"] == "response_cancel_not_active"


def test_truncation(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(user_text("This is a sentence long enough to truncate."))
        await c.send({"type": "response.create"})
        done = await c.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        user_id = c.of("conversation.item.added")[0]["item"]["id"]
        await c.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_past",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 60_000,
            }
        )
        await c.until("error")
        await c.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_user",
                "item_id": user_id,
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
        await c.until("error")
        await c.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_neg",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": -5,
            }
        )
        await c.until("error")
        await c.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 800,
            }
        )
        await c.until("conversation.item.truncated")
        await c.send({"type": "conversation.item.retrieve", "item_id": item_id})
        await c.until("conversation.item.retrieved")

    client = run(scenario, fast_server.url)
    past, user, negative = (e["error"] for e in client.of("error"))
    assert past["event_id"] == "evt_past"
    assert past["message"].startswith("Audio content of ")
    assert "is already shorter than 60000ms" in past["message"]
    assert user["code"] == "unsupported_content_type"
    assert user["message"] == "Only model output audio messages can be truncated"
    assert negative["code"] == "integer_below_min_value"
    truncated = client.of("conversation.item.truncated")[0]
    assert truncated["audio_end_ms"] == 800
    retrieved = client.of("conversation.item.retrieved")[0]["item"]
    audio = base64.b64decode(retrieved["content"][0]["audio"])
    assert len(audio) == 24000 * 2 * 800 // 1000
    full = client.of("response.output_audio_transcript.done")[0]["transcript"]
    assert len(retrieved["content"][0]["transcript"]) < len(full)


def test_tool_call_round(rules_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(session_update(tools=TOOLS, output_modalities=["text"]))
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
                    "output": "foggy, 12 degrees",
                },
            }
        )
        await c.send({"type": "response.create"})
        await c.until("response.done")

    client = run(scenario, rules_server.url)
    args_done = client.of("response.function_call_arguments.done")[0]
    assert json.loads(args_done["arguments"]) == {"city": "London"}
    assert args_done["name"] == "get_weather"
    deltas = "".join(e["delta"] for e in client.of("response.function_call_arguments.delta"))
    assert deltas == args_done["arguments"]
    first = client.of("response.done")[0]["response"]["output"][0]
    assert first["type"] == "function_call"
    assert first["status"] == "completed"
    assert first["call_id"] == args_done["call_id"]
    assert client.of("response.output_text.done")[0]["text"] == "In London: foggy, 12 degrees"


def test_tool_call_round_spoken_with_echo(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call",
                    "name": "lookup",
                    "call_id": "call_1",
                    "arguments": "{}",
                },
            }
        )
        await c.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            }
        )
        await c.send({"type": "response.create"})
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    assert (
        client.of("response.output_audio_transcript.done")[0]["transcript"] == "The tool said: 42"
    )


def test_out_of_band_response(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(user_text("in the conversation"))
        await c.until("conversation.item.done")
        await c.send(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "metadata": {"topic": "classification"},
                    "output_modalities": ["text"],
                    "instructions": 'Start every answer with "OOB:".',
                    "input": [
                        {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "only here"}],
                        }
                    ],
                },
            }
        )
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    done = client.of("response.done")[0]["response"]
    assert done["conversation_id"] is None
    assert done["metadata"] == {"topic": "classification"}
    assert client.of("response.output_text.done")[0]["text"] == "OOB: You said: only here"
    out_id = done["output"][0]["id"]
    assert all(e["item"]["id"] != out_id for e in client.of("conversation.item.added"))


def test_item_retrieve_delete_and_insert(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(user_text("first"))
        first = (await c.until("conversation.item.done"))["item"]["id"]
        await c.send({**user_text("zeroth"), "previous_item_id": "root"})
        added = await c.until("conversation.item.added")
        assert added["previous_item_id"] is None
        await c.send({"type": "conversation.item.retrieve", "item_id": first})
        await c.until("conversation.item.retrieved")
        await c.send({"type": "conversation.item.delete", "item_id": first})
        await c.until("conversation.item.deleted")
        await c.send({"type": "conversation.item.delete", "event_id": "evt_gone", "item_id": first})
        await c.until("error")

    client = run(scenario, fast_server.url)
    assert client.of("error")[0]["error"]["code"] == "item_not_found"
    assert client.of("error")[0]["error"]["event_id"] == "evt_gone"


def test_error_cases_leave_the_session_usable(fast_server: LocalServer) -> None:
    bad: list[tuple[JSON | str, str, str | None]] = [
        (session_update(foo=1), "unknown_parameter", "session.foo"),
        (session_update(instructions=5), "invalid_type", "session.instructions"),
        (
            {"type": "session.update", "event_id": "evt_update", "session": {"instructions": "x"}},
            "missing_required_parameter",
            "session.type",
        ),
        (
            session_update(
                audio={"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}
            ),
            "decimal_above_max_value",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            session_update(audio={"output": {"voice": "nobody"}}),
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            session_update(audio={"input": {"format": {"type": "audio/pcm", "rate": 16000}}}),
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        ({"type": "no.such.event", "event_id": "evt_update"}, "invalid_value", "type"),
        (
            {"type": "input_audio_buffer.append", "event_id": "evt_update", "audio": 12},
            "invalid_type",
            "audio",
        ),
        (
            {"type": "input_audio_buffer.append", "event_id": "evt_update", "audio": "***"},
            "invalid_value",
            "audio",
        ),
        (
            {
                "type": "conversation.item.create",
                "event_id": "evt_update",
                "item": {"type": "message", "role": "robot", "content": []},
            },
            "invalid_value",
            "item.role",
        ),
        (
            {"type": "conversation.item.create", "event_id": "evt_update"},
            "missing_required_parameter",
            "item",
        ),
        (
            {"type": "response.create", "event_id": "evt_update", "response": {"bogus": True}},
            "unknown_parameter",
            "response.bogus",
        ),
    ]

    async def scenario(c: Client) -> None:
        for event, _, _ in bad:
            await c.send(event)
            await c.until("error")
        await c.send("{not json")
        await c.until("error")
        await c.send(json.dumps({"event_id": "evt_update"}))
        await c.until("error")
        await c.send(user_text("still here"))
        await c.send({"type": "response.create"})
        await c.send({"type": "response.create", "event_id": "evt_busy"})
        await c.until(lambda e: e["type"] == "error")
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    errors = [e["error"] for e in client.of("error")]
    for (_, code, param), error in zip(bad, errors, strict=False):
        assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_update"), (
            error
        )
        assert error["type"] == "invalid_request_error"
        assert error["message"]
    assert errors[len(bad)]["code"] == "invalid_json"
    assert errors[len(bad) + 1]["message"] == "The 'type' field is missing."
    assert errors[-1]["code"] == "conversation_already_has_active_response"
    assert errors[-1]["event_id"] == "evt_busy"
    assert "session.updated" not in client.types()  # nothing invalid was applied
    assert client.of("response.done")[0]["response"]["status"] == "completed"


def test_idle_timeout(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(
            session_update(
                audio={"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}
            )
        )
        await c.until("session.updated")
        await c.append(silence(5500), chunk_ms=500)
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    timeout = client.of("input_audio_buffer.timeout_triggered")[0]
    assert timeout["audio_start_ms"] == 0
    assert 5000 <= timeout["audio_end_ms"] <= 5500
    assert client.of("input_audio_buffer.committed")[0]["item_id"] == timeout["item_id"]


def test_semantic_vad_is_accepted(fast_server: LocalServer, weather_pcm: bytes) -> None:
    async def scenario(c: Client) -> None:
        await c.send(
            session_update(
                audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}
            )
        )
        await c.until("session.updated")
        await c.append(weather_pcm + silence(800))
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    td = client.of("session.updated")[0]["session"]["audio"]["input"]["turn_detection"]
    assert td == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    assert client.types().count("input_audio_buffer.speech_started") == 1


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_g711_formats_in_and_out(fast_server: LocalServer, weather_pcm: bytes, fmt: str) -> None:
    g711 = AudioFormat(fmt, 8000)
    samples = resample(decode_to_float(weather_pcm, AudioFormat()), 24000, 8000)
    encoded = (
        encode_from_float(samples, g711) + bytes([0xFF if fmt == "audio/pcmu" else 0xD5]) * 6400
    )

    async def scenario(c: Client) -> None:
        await c.send(
            session_update(
                audio={"input": {"format": {"type": fmt}}, "output": {"format": {"type": fmt}}}
            )
        )
        await c.until("session.updated")
        await c.append(encoded, rate=8000, width=1)
        await c.until("response.done")

    client = run(scenario, fast_server.url)
    assert client.types().count("input_audio_buffer.speech_started") == 1
    audio = audio_of(client)
    duration_ms = g711.duration_ms(len(audio))
    assert duration_ms > 1000
    assert client.of("response.created")[0]["response"]["audio"]["output"]["format"] == {
        "type": fmt
    }


def test_voice_cannot_change_after_audio(fast_server: LocalServer) -> None:
    async def scenario(c: Client) -> None:
        await c.send(user_text("hi"))
        await c.send({"type": "response.create"})
        await c.until("response.done")
        await c.send(session_update(audio={"output": {"voice": "verse"}}))
        await c.until("error")

    client = run(scenario, fast_server.url)
    assert client.of("error")[0]["error"]["code"] == "cannot_update_voice"


def test_voices_sound_different() -> None:
    from realtime_nb.local.tts import VOICES, synthesize

    signatures = {}
    for voice in VOICES:
        speech = synthesize("Hello there, how are you?", voice)
        assert speech.duration_ms > 500
        signatures[voice] = (len(speech.audio), speech.audio[2000:2400])
    assert len(set(signatures.values())) == len(VOICES)


def test_azure_path_beta_header_and_call_id(fast_server: LocalServer) -> None:
    import websockets
    from websockets.exceptions import InvalidStatus

    base = fast_server.url.removesuffix("/v1/realtime")

    async def main() -> list[JSON]:
        events = []
        url = f"{base}/openai/realtime?api-version=2025-04-01-preview&deployment=my-gpt-realtime"
        async with websockets.connect(
            url, additional_headers={"api-key": "anything", "OpenAI-Beta": "realtime=v1"}
        ) as ws:
            events.append(json.loads(await ws.recv()))
            # beta-shaped session.update, accepted on a beta connection
            await ws.send(
                json.dumps(
                    {"type": "session.update", "session": {"modalities": ["text"], "voice": "ash"}}
                )
            )
            events.append(json.loads(await ws.recv()))
        # A sideband to a call the server does not have: refused as the API refuses it
        # (tests/local/test_webrtc.py attaches sidebands to live calls).
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(fast_server.url + "?call_id=rtc_123")
        events.append(json.loads(refused.value.response.body))
        return events

    created, updated, unknown = asyncio.run(main())
    # The beta header selects the beta protocol (tests/local/test_beta_dialect.py has more).
    for e in (created, updated):
        validate_beta_server_event(e)
    # Whatever deployment the client names, the session says what answers: the local backend.
    assert created["session"]["model"] == LOCAL_MODEL
    assert updated["type"] == "session.updated"
    assert updated["session"]["modalities"] == ["text"]
    assert updated["session"]["voice"] == "ash"
    assert unknown["error"]["code"] == "call_id_not_found"


def test_required_api_key() -> None:
    import websockets
    from websockets.exceptions import InvalidStatus

    with LocalServer(fast=True, api_key="sekrit") as server:

        async def main() -> None:
            with pytest.raises(InvalidStatus) as info:
                await websockets.connect(
                    server.url + "?model=x", additional_headers={"Authorization": "Bearer wrong"}
                )
            assert info.value.response.status_code == 401
            async with websockets.connect(
                server.url + "?model=x", additional_headers={"Authorization": "Bearer sekrit"}
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
            async with websockets.connect(
                server.url, subprotocols=["realtime", "openai-insecure-api-key.sekrit"]
            ) as ws:  # type: ignore[list-item]  # websockets types subprotocols as Subprotocol, plain strings work
                assert ws.subprotocol == "realtime"
                assert json.loads(await ws.recv())["type"] == "session.created"

        asyncio.run(main())


def test_every_scenario_event_validated() -> None:
    """Runs last in this module: the scenarios above emitted (and validated) a broad event set."""
    types = {e["type"] for e in ALL_EVENTS}
    for event in ALL_EVENTS:
        validate_server_event(event)
    expected = {
        "session.created", "session.updated", "error", "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "input_audio_buffer.timeout_triggered", "conversation.item.added",
        "conversation.item.done", "conversation.item.retrieved", "conversation.item.deleted",
        "conversation.item.truncated", "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed", "response.created",
        "response.output_item.added", "response.content_part.added", "response.output_audio.delta",
        "response.output_audio_transcript.delta", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.done", "rate_limits.updated",
    }  # fmt: skip
    assert expected <= types, expected - types
