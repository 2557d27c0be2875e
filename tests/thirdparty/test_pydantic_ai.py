"""pydantic-ai's realtime sessions (``Agent.realtime(...).session()`` on ``OpenAIRealtimeModel``)
against the local server: a text turn, a spoken turn, a tool turn and a barge-in. Assertions are
on what pydantic-ai reports (its events and message history) and on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelRequest,
    ModelResponse,
    SpeechPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.realtime import (
    RealtimeEvent,
    RealtimeInputSpeechEndEvent,
    RealtimeInputSpeechStartEvent,
    RealtimeSession,
    RealtimeSessionErrorEvent,
    RealtimeTurnCompleteEvent,
)
from pydantic_ai.realtime.openai import OpenAIRealtimeModel

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


class Run:
    """One pydantic-ai RealtimeSession through a WireTap: its events, and the audio it played."""

    def __init__(self, session: RealtimeSession, tap: WireTap) -> None:
        self.session = session
        self.tap = tap
        self.events: list[RealtimeEvent] = []
        self.audio = bytearray()
        self.first_audio = asyncio.Event()

    async def play(self) -> None:
        """The single playback consumer a voice app has (``stream_audio``)."""
        async for chunk in self.session.stream_audio():
            self.audio.extend(chunk)
            self.first_audio.set()

    async def turn(self) -> None:
        """Consume events until pydantic-ai reports the turn complete; fails after a timeout."""

        async def consume() -> None:
            events: AsyncIterator[RealtimeEvent] = self.session.__aiter__()
            async for event in events:
                self.events.append(event)
                if isinstance(event, RealtimeTurnCompleteEvent):
                    return
            raise AssertionError(f"the session ended; events: {self.events}")

        await asyncio.wait_for(consume(), TURN_TIMEOUT_S)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def assert_clean(self) -> None:
        assert not self.of(RealtimeSessionErrorEvent), self.of(RealtimeSessionErrorEvent)
        self.tap.assert_server_clean()


def scenario(
    server: LocalServer, agent: Agent[None, str], body: Callable[[Run], Awaitable[None]]
) -> tuple[Run, list[Any]]:
    """Run ``body`` in a session; returns the run and the session's final message history."""

    async def main() -> tuple[Run, list[Any]]:
        async with WireTap(server.url) as tap:
            provider = OpenAIProvider(base_url=tap.http_base_url, api_key=API_KEY)
            model = OpenAIRealtimeModel("gpt-realtime", provider=provider)
            async with agent.realtime(model).session() as session:
                run = Run(session, tap)
                player = asyncio.create_task(run.play())
                try:
                    await body(run)
                finally:
                    player.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await player
                return run, session.all_messages()

    return asyncio.run(main())


def test_text_turn(fast_server: LocalServer) -> None:
    agent = Agent(instructions="Answer briefly.")

    async def body(run: Run) -> None:
        await run.session.send("Hello from pydantic-ai")
        await run.turn()

    run, messages = scenario(fast_server, agent, body)
    run.assert_clean()
    request, response = messages
    assert isinstance(request, ModelRequest)
    assert [type(p) for p in request.parts] == [UserPromptPart]
    assert request.parts[0].content == "Hello from pydantic-ai"
    assert isinstance(response, ModelResponse)
    (speech,) = response.parts
    assert isinstance(speech, SpeechPart)
    assert speech.speaker == "assistant"
    assert speech.transcript == "You said: Hello from pydantic-ai"
    assert response.finish_reason == "stop"
    (done,) = run.tap.received("response.done")
    assert response.provider_response_id == done["response"]["id"]
    assert response.usage.output_audio_tokens > 0
    assert len(run.audio) > 24000 * 2 // 2  # over half a second of 24 kHz PCM16 was played
    assert run.tap.received("session.updated")[-1]["session"]["instructions"] == "Answer briefly."


def test_audio_turn_server_vad(fast_server: LocalServer, weather_pcm: bytes) -> None:
    agent = Agent(instructions="Answer briefly.")

    async def body(run: Run) -> None:
        for chunk in chunks(silence(300) + weather_pcm + silence(900)):
            await run.session.send_audio(chunk)
        await run.turn()

    run, messages = scenario(fast_server, agent, body)
    run.assert_clean()
    session = run.tap.received("session.updated")[-1]["session"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    (start,) = run.of(RealtimeInputSpeechStartEvent)
    (end,) = run.of(RealtimeInputSpeechEndEvent)
    assert start.item_id == end.item_id
    assert run.events.index(start) < run.events.index(end)
    # The server's VAD ended the turn and started the response: pydantic-ai only streamed audio.
    assert "input_audio_buffer.commit" not in run.tap.types("client")
    assert "response.create" not in run.tap.types("client")
    request, response = messages
    (heard,) = request.parts
    assert isinstance(heard, SpeechPart)
    assert heard.speaker == "user"
    assert "weather" in heard.transcript.lower()
    (answer,) = response.parts
    assert isinstance(answer, SpeechPart)
    assert answer.transcript == f"You said: {heard.transcript}"
    assert len(run.audio) > 24000 * 2


def test_tool_turn(fast_server: LocalServer) -> None:
    agent = Agent(instructions="Use your tools.")
    calls: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """Look up the current weather for a city."""
        calls.append(city)
        return f"Sunny and 21 degrees in {city}"

    async def body(run: Run) -> None:
        await run.session.send("What is the weather in Paris?")
        await run.turn()

    run, messages = scenario(fast_server, agent, body)
    run.assert_clean()
    assert calls == ["Paris"]
    (call_event,) = run.of(FunctionToolCallEvent)
    (result_event,) = run.of(FunctionToolResultEvent)
    assert call_event.part.tool_name == "get_weather"
    assert call_event.part.args_as_dict() == {"city": "Paris"}
    assert result_event.part.content == "Sunny and 21 degrees in Paris"
    # History: the question, the call, its return, and the answer built from the return.
    question, call_response, tool_return, answer = messages
    assert isinstance(question.parts[0], UserPromptPart)
    (call_part,) = call_response.parts
    assert isinstance(call_part, ToolCallPart)
    assert call_response.finish_reason == "tool_call"
    (return_part,) = tool_return.parts
    assert isinstance(return_part, ToolReturnPart)
    assert return_part.tool_call_id == call_part.tool_call_id
    (speech,) = answer.parts
    assert isinstance(speech, SpeechPart)
    assert speech.transcript == "The tool said: Sunny and 21 degrees in Paris"
    # On the wire: the server's call_id came back with the output, then a new response.
    (server_call,) = [
        e["item"]
        for e in run.tap.received("response.output_item.done")
        if e["item"]["type"] == "function_call"
    ]
    assert server_call["call_id"] == call_part.tool_call_id
    (output,) = [
        e["item"]
        for e in run.tap.sent("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert output["call_id"] == server_call["call_id"]
    assert output["output"] == "Sunny and 21 degrees in Paris"
    assert len(run.tap.received("response.done")) == 2


def test_barge_in(paced_server: LocalServer) -> None:
    """``interrupt(played_ms=...)`` mid-reply: pydantic-ai truncates the item to what was played
    and cancels the response; the server does both, and the history marks the reply interrupted."""
    agent = Agent(instructions="Tell stories.")

    async def body(run: Run) -> None:
        await run.session.send(LONG_REQUEST)
        await asyncio.wait_for(run.first_audio.wait(), TURN_TIMEOUT_S)
        await asyncio.sleep(0.5)
        await run.session.interrupt(played_ms=500)
        await run.turn()

    run, messages = scenario(paced_server, agent, body)
    run.assert_clean()
    sent = run.tap.types("client")
    assert sent.index("conversation.item.truncate") < sent.index("response.cancel")
    (done,) = run.tap.received("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    item_id = done["response"]["output"][0]["id"]
    (truncated,) = run.tap.received("conversation.item.truncated")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 500)
    # The server deleted the unheard transcript, as the API does.
    assert done["response"]["output"][0]["content"][0]["transcript"] == ""
    _, response = messages
    assert isinstance(response, ModelResponse)
    assert response.state == "interrupted"
    (speech,) = response.parts
    assert isinstance(speech, SpeechPart)
    assert speech.interrupted_at_ms == 500
    assert response.provider_details == {"status": "cancelled", "finish_reason": "client_cancelled"}
    assert len(run.audio) < 24000 * 2 * 4  # far less than the ~6 s reply was sent
