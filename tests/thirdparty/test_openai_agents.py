"""The OpenAI Agents SDK (``agents.realtime``) against the local server: a RealtimeAgent with a
function tool in a RealtimeRunner session, through a text turn, a spoken turn, a tool turn and two
barge-ins. Assertions are on what the SDK reports (its events and history) and on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from agents import function_tool, set_tracing_disabled
from agents.realtime import (
    RealtimeAgent,
    RealtimeRunConfig,
    RealtimeRunner,
    RealtimeSession,
    RealtimeSessionEvent,
    RealtimeSessionModelSettings,
)
from agents.realtime.items import AssistantMessageItem, RealtimeToolCallItem, UserMessageItem

from realtime_nb.local import LocalServer

from .thirdparty_helpers import WireTap, chunks, silence

pytestmark = pytest.mark.timeout(60)

#: Any string: the local server is started without a key and takes whatever it is given.
API_KEY = "sk-local-test"
#: Longest wait for one reply; a turn takes well under a second on the fast server.
TURN_TIMEOUT_S = 20.0
#: Long enough that its spoken echo (~6 s at real time) is still playing when the test barges in.
LONG_REQUEST = (
    "Please tell me a long and winding story about the sea, the sky, the mountains far away "
    "and the people who live between them."
)


@pytest.fixture(autouse=True, scope="module")
def _no_trace_export() -> Iterator[None]:
    # The SDK's trace exporter posts to api.openai.com; these tests never leave loopback.
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


def run_config(**model_settings: Any) -> RealtimeRunConfig:
    settings = cast(RealtimeSessionModelSettings, model_settings)
    return {"model_settings": settings, "tracing_disabled": True}


class Run:
    """One RealtimeSession against the server through a WireTap, with every SDK event kept."""

    def __init__(self, session: RealtimeSession, tap: WireTap) -> None:
        self.session = session
        self.tap = tap
        self.events: list[RealtimeSessionEvent] = []

    async def until(self, done: Callable[[RealtimeSessionEvent], bool]) -> RealtimeSessionEvent:
        """Consume SDK events until ``done(event)``; fails after TURN_TIMEOUT_S."""

        async def consume() -> RealtimeSessionEvent:
            async with contextlib.aclosing(self.session.__aiter__()) as events:
                async for event in events:
                    self.events.append(event)
                    if done(event):
                        return event
            raise AssertionError(f"the session ended; events: {self.types()}")

        return await asyncio.wait_for(consume(), TURN_TIMEOUT_S)

    async def turns(self, n: int) -> None:
        """Consume events until the n-th ``agent_end`` (the SDK's end of a model response)."""
        target = sum(e.type == "agent_end" for e in self.events) + n
        await self.until(lambda _: sum(e.type == "agent_end" for e in self.events) >= target)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    def history(self) -> list[Any]:
        updates = self.of("history_updated")
        assert updates, "the SDK reported no history"
        return list(updates[-1].history)

    def assistant_items(self) -> list[AssistantMessageItem]:
        return [i for i in self.history() if isinstance(i, AssistantMessageItem)]

    def audio_bytes(self) -> int:
        return sum(len(e.audio.data) for e in self.of("audio"))

    def assert_clean(self) -> None:
        """The SDK reported no error and the server sent none (and only schema-valid events)."""
        assert not self.of("error"), [e.error for e in self.of("error")]
        self.tap.assert_server_clean()


def scenario(
    server: LocalServer,
    agent: RealtimeAgent,
    config: RealtimeRunConfig,
    body: Callable[[Run], Awaitable[None]],
) -> Run:
    async def main() -> Run:
        async with WireTap(server.url) as tap:
            runner = RealtimeRunner(agent, config=config)
            session = await runner.run(
                model_config={"url": f"{tap.url}?model=gpt-realtime", "api_key": API_KEY}
            )
            async with session:
                run = Run(session, tap)
                await body(run)
            return run

    return asyncio.run(main())


def transcript(item: AssistantMessageItem) -> str:
    return " ".join(
        str(getattr(part, "transcript", None) or getattr(part, "text", None) or "")
        for part in item.content
    ).strip()


def test_text_turn(fast_server: LocalServer) -> None:
    agent = RealtimeAgent(name="echo", instructions="Answer briefly.")

    async def body(run: Run) -> None:
        await run.session.send_message("Hello from the agents SDK")
        await run.turns(1)

    run = scenario(fast_server, agent, run_config(), body)
    run.assert_clean()
    user, assistant = run.history()
    assert isinstance(user, UserMessageItem)
    assert user.content[0].type == "input_text"
    assert user.content[0].text == "Hello from the agents SDK"
    assert isinstance(assistant, AssistantMessageItem)
    assert assistant.status == "completed"
    assert transcript(assistant) == "You said: Hello from the agents SDK"
    assert run.audio_bytes() > 24000 * 2 // 2  # over half a second of 24 kHz PCM16 reached the SDK
    assert run.of("audio_end")
    # The SDK configured the session and asked for the response itself.
    assert {"session.update", "conversation.item.create", "response.create"} <= set(
        run.tap.types("client")
    )
    assert run.tap.received("session.updated")[-1]["session"]["instructions"] == "Answer briefly."


def test_audio_turn_server_vad(fast_server: LocalServer, weather_pcm: bytes) -> None:
    agent = RealtimeAgent(name="listener", instructions="Answer briefly.")
    config = run_config(turn_detection={"type": "server_vad", "silence_duration_ms": 500})

    async def body(run: Run) -> None:
        for chunk in chunks(silence(300) + weather_pcm + silence(900)):
            await run.session.send_audio(chunk)
        await run.turns(1)

    run = scenario(fast_server, agent, config, body)
    run.assert_clean()
    td = run.tap.received("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"
    assert td["silence_duration_ms"] == 500
    types = run.tap.types("server")
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.done",
    ]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order), types
    # The server's VAD ended the turn and started the response: the SDK only streamed audio.
    client_types = set(run.tap.types("client"))
    assert "input_audio_buffer.commit" not in client_types
    assert "response.create" not in client_types
    user, assistant = run.history()
    assert isinstance(user, UserMessageItem)
    heard = str(getattr(user.content[0], "transcript", "") or "")
    assert "weather" in heard.lower()
    assert isinstance(assistant, AssistantMessageItem)
    assert transcript(assistant) == f"You said: {heard}"
    assert run.audio_bytes() > 24000 * 2


def test_tool_turn(fast_server: LocalServer) -> None:
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Look up the current weather for a city."""
        calls.append(city)
        return f"Sunny and 21 degrees in {city}"

    agent = RealtimeAgent(name="weather", instructions="Use your tools.", tools=[get_weather])

    async def body(run: Run) -> None:
        await run.session.send_message("What is the weather in Paris?")
        await run.turns(2)  # the function call, then the answer made of its output

    run = scenario(fast_server, agent, run_config(), body)
    run.assert_clean()
    assert calls == ["Paris"]
    (start,) = run.of("tool_start")
    (end,) = run.of("tool_end")
    assert start.tool.name == end.tool.name == "get_weather"
    assert json.loads(end.arguments) == {"city": "Paris"}
    assert end.output == "Sunny and 21 degrees in Paris"
    # The tool was offered to the server with the schema the SDK derived from the signature.
    (tool_def,) = run.tap.received("session.updated")[0]["session"]["tools"]
    assert tool_def["name"] == "get_weather"
    assert tool_def["parameters"]["required"] == ["city"]
    # The SDK's history: the call with its output, then the answer built from that output.
    history = run.history()
    (call,) = [i for i in history if isinstance(i, RealtimeToolCallItem)]
    assert call.name == "get_weather"
    assert call.output == "Sunny and 21 degrees in Paris"
    assert history.index(call) < history.index(run.assistant_items()[-1])
    assert transcript(run.assistant_items()[-1]) == "The tool said: Sunny and 21 degrees in Paris"
    # On the wire: the output went back under the server's call_id, then a new response.
    (server_call,) = [
        e["item"]
        for e in run.tap.received("response.output_item.done")
        if e["item"]["type"] == "function_call"
    ]
    outputs = [
        e["item"]
        for e in run.tap.sent("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert [o["call_id"] for o in outputs] == [server_call["call_id"]]
    sent = run.tap.types("client")
    assert "response.create" in sent[sent.index("conversation.item.create", 1) :]


def test_barge_in_by_speech(paced_server: LocalServer, weather_pcm: bytes) -> None:
    """The user talks over the reply: the server's VAD cancels the response, the SDK stops its
    playback (audio_interrupted) and truncates the item, the server confirms the truncation and
    answers what the user said."""
    agent = RealtimeAgent(name="storyteller", instructions="Tell stories.")
    config = run_config(turn_detection={"type": "server_vad", "silence_duration_ms": 500})

    async def body(run: Run) -> None:
        await run.session.send_message(LONG_REQUEST)
        await run.until(lambda e: e.type == "audio")
        await asyncio.sleep(0.5)  # half a second of the reply is "played"
        for chunk in chunks(weather_pcm + silence(900)):
            await run.session.send_audio(chunk)
        await run.turns(2)  # the interrupted reply, then the answer to the interruption

    run = scenario(paced_server, agent, config, body)
    run.assert_clean()
    first, second = run.tap.received("response.done")
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"]["reason"] == "turn_detected"
    assert second["response"]["status"] == "completed"
    interrupted_id = first["response"]["output"][0]["id"]
    # The SDK stopped local playback of the interrupted item ...
    assert interrupted_id in {e.item_id for e in run.of("audio_interrupted")}
    # ... and told the server how much of it was heard; the server cut the item there.
    (truncate,) = run.tap.sent("conversation.item.truncate")
    (truncated,) = run.tap.received("conversation.item.truncated")
    assert truncate["item_id"] == truncated["item_id"] == interrupted_id
    assert truncated["audio_end_ms"] == truncate["audio_end_ms"]
    assert 300 <= truncate["audio_end_ms"] < 5000
    # The SDK's history keeps the cut reply and the answer to what the user said.
    heard = run.tap.received("conversation.item.input_audio_transcription.completed")[0][
        "transcript"
    ]
    assert "weather" in heard.lower()
    assert transcript(run.assistant_items()[-1]) == f"You said: {heard}"


def test_barge_in_by_interrupt(paced_server: LocalServer) -> None:
    """Push-to-talk (no server VAD) with a stop button: ``session.interrupt()`` mid-reply makes
    the SDK truncate the item and cancel the response; the server does both."""
    agent = RealtimeAgent(name="storyteller", instructions="Tell stories.")

    async def body(run: Run) -> None:
        await run.session.send_message(LONG_REQUEST)
        await run.until(lambda e: e.type == "audio")
        await asyncio.sleep(0.5)
        await run.session.interrupt()
        await run.turns(1)

    run = scenario(paced_server, agent, run_config(turn_detection=None), body)
    run.assert_clean()
    assert (
        run.tap.received("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"]
        is None
    )
    sent = run.tap.types("client")
    assert sent.index("conversation.item.truncate") < sent.index("response.cancel")
    (done,) = run.tap.received("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    item_id = done["response"]["output"][0]["id"]
    (truncated,) = run.tap.received("conversation.item.truncated")
    assert truncated["item_id"] == item_id
    assert 300 <= truncated["audio_end_ms"] < 5000
    assert item_id in {e.item_id for e in run.of("audio_interrupted")}
    # Far less than the ~6 s reply went out: the cancel stopped the audio.
    assert run.audio_bytes() < 24000 * 2 * 4
