"""pipecat's ``OpenAIRealtimeLLMService`` against the local server, in a real pipeline (context
aggregators around the service) with no transport and no audio device: frames go in through the
pipeline worker, and an observer sees every frame pushed. A text turn, a spoken turn, a tool turn
and a barge-in; assertions are on the frames, on the pipeline's LLMContext and on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime.events import (
    AudioConfiguration,
    AudioInput,
    InputAudioTranscription,
    SessionProperties,
    TurnDetection,
)
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

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
WEATHER = FunctionSchema(
    name="get_weather",
    description="Look up the current weather for a city.",
    properties={"city": {"type": "string"}},
    required=["city"],
)


class FrameLog(BaseObserver):
    """Every frame pushed in the pipeline, once each, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._seen: set[int] = set()
        self._pushed = asyncio.Event()

    async def on_push_frame(self, data: FramePushed) -> None:
        if data.frame.id not in self._seen:
            self._seen.add(data.frame.id)
            self.frames.append(data.frame)
            self._pushed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` holds, checking after each new frame; fails after a timeout."""

        async def wait() -> None:
            while not done():
                self._pushed.clear()
                await self._pushed.wait()

        await asyncio.wait_for(wait(), TURN_TIMEOUT_S)

    def of(self, kind: type[Any]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]


class Pipe:
    """A running pipeline: user aggregator -> realtime service -> assistant aggregator."""

    def __init__(self, worker: PipelineWorker, context: LLMContext, log: FrameLog, tap: WireTap):
        self.worker = worker
        self.context = context
        self.log = log
        self.tap = tap

    async def responses(self, n: int) -> None:
        """Wait until the server has finished ``n`` responses and pipecat has ended as many."""

        # pipecat pushes frames after each response.done it handles, so the log moves after the
        # tap has recorded the event.
        await self.log.until(
            lambda: (
                len(self.tap.received("response.done")) >= n
                and len(self.log.of(LLMFullResponseEndFrame)) >= n
            )
        )

    async def send_audio(self, pcm: bytes) -> None:
        for chunk in chunks(pcm):
            await self.worker.queue_frame(
                InputAudioRawFrame(audio=chunk, sample_rate=24000, num_channels=1)
            )

    def spoken_text(self) -> str:
        return "".join(f.text for f in self.log.of(TTSTextFrame))

    def audio_bytes(self) -> int:
        return sum(len(f.audio) for f in self.log.of(TTSAudioRawFrame))

    def assert_clean(self) -> None:
        assert not self.log.of(ErrorFrame), self.log.of(ErrorFrame)
        self.tap.assert_server_clean()


def scenario(
    server: LocalServer,
    body: Callable[[Pipe], Awaitable[None]],
    *,
    messages: list[Any] | None = None,
    tools: ToolsSchema | None = None,
    functions: dict[str, Callable[[FunctionCallParams], Awaitable[None]]] | None = None,
) -> Pipe:
    async def main() -> Pipe:
        async with WireTap(server.url) as tap:
            context = LLMContext(messages=messages or [], tools=tools or ToolsSchema([]))
            pair = LLMContextAggregatorPair(context)
            llm = OpenAIRealtimeLLMService(
                api_key=API_KEY,
                base_url=tap.url,
                settings=OpenAIRealtimeLLMService.Settings(
                    model="gpt-realtime",
                    system_instruction="Answer briefly.",
                    # pipecat leaves input transcription off unless asked for.
                    session_properties=SessionProperties(
                        audio=AudioConfiguration(
                            input=AudioInput(
                                transcription=InputAudioTranscription(),
                                turn_detection=TurnDetection(silence_duration_ms=500),
                            )
                        )
                    ),
                ),
            )
            for name, handler in (functions or {}).items():
                llm.register_function(name, handler)
            log = FrameLog()
            worker = PipelineWorker(
                Pipeline([pair.user(), llm, pair.assistant()]),
                observers=[log],
                cancel_on_idle_timeout=False,
            )
            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            running = asyncio.create_task(runner.run())
            pipe = Pipe(worker, context, log, tap)
            try:
                await body(pipe)
            finally:
                await worker.queue_frame(EndFrame())
                try:
                    await asyncio.wait_for(running, TURN_TIMEOUT_S)
                except TimeoutError:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    raise
            return pipe

    return asyncio.run(main())


def test_text_turn(fast_server: LocalServer) -> None:
    async def body(pipe: Pipe) -> None:
        await pipe.worker.queue_frame(LLMRunFrame())
        await pipe.responses(1)

    pipe = scenario(fast_server, body, messages=[{"role": "user", "content": "Hello from pipecat"}])
    pipe.assert_clean()
    assert pipe.tap.received("session.updated")[0]["session"]["instructions"] == "Answer briefly."
    (created,) = [
        e["item"]
        for e in pipe.tap.sent("conversation.item.create")
        if e["item"]["type"] == "message"
    ]
    assert created["content"] == [{"type": "input_text", "text": "Hello from pipecat"}]
    assert pipe.spoken_text().strip() == "You said: Hello from pipecat"
    assert pipe.audio_bytes() > 24000 * 2 // 2  # over half a second of 24 kHz PCM16
    assert {f.sample_rate for f in pipe.log.of(TTSAudioRawFrame)} == {24000}
    assert pipe.context.get_messages()[-1] == {
        "role": "assistant",
        "content": "You said: Hello from pipecat",
    }


def test_audio_turn_server_vad(fast_server: LocalServer, weather_pcm: bytes) -> None:
    async def body(pipe: Pipe) -> None:
        # A pipecat bot starts with a run of its initial context (the greeting), then listens.
        await pipe.worker.queue_frame(LLMRunFrame())
        await pipe.responses(1)
        await pipe.send_audio(silence(300) + weather_pcm + silence(900))
        await pipe.responses(2)

    pipe = scenario(fast_server, body, messages=[{"role": "user", "content": "Say hello."}])
    pipe.assert_clean()
    td = pipe.tap.received("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"]
    assert (td["type"], td["silence_duration_ms"]) == ("server_vad", 500)
    # The server's VAD ended the spoken turn and started its response: pipecat only asked for
    # the greeting, and only streamed audio after it.
    assert "input_audio_buffer.commit" not in pipe.tap.types("client")
    assert pipe.tap.types("client").count("response.create") == 1
    (transcription,) = pipe.log.of(TranscriptionFrame)
    heard = transcription.text
    assert "weather" in heard.lower()
    assert pipe.spoken_text().strip().endswith(f"You said: {heard}")
    assert pipe.audio_bytes() > 24000 * 2
    messages = pipe.context.get_messages()
    assert {"role": "user", "content": heard} in messages
    assert messages[-1] == {"role": "assistant", "content": f"You said: {heard}"}


def test_tool_turn(fast_server: LocalServer) -> None:
    calls: list[str] = []

    async def get_weather(params: FunctionCallParams) -> None:
        calls.append(params.arguments["city"])
        await params.result_callback(f"Sunny and 21 degrees in {params.arguments['city']}")

    async def body(pipe: Pipe) -> None:
        await pipe.worker.queue_frame(LLMRunFrame())
        await pipe.responses(2)  # the function call, then the answer made of its output

    pipe = scenario(
        fast_server,
        body,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=ToolsSchema(standard_tools=[WEATHER]),
        functions={"get_weather": get_weather},
    )
    pipe.assert_clean()
    assert calls == ["Paris"]
    (tool_def,) = pipe.tap.received("session.updated")[-1]["session"]["tools"]
    assert tool_def["name"] == "get_weather"
    # The service broadcasts the result both ways: two frames, one result.
    results = pipe.log.of(FunctionCallResultFrame)
    assert len({(f.tool_call_id, f.result) for f in results}) == 1
    result = results[0]
    assert result.function_name == "get_weather"
    assert result.arguments == {"city": "Paris"}
    (server_call,) = [
        e["item"]
        for e in pipe.tap.received("response.output_item.done")
        if e["item"]["type"] == "function_call"
    ]
    assert result.tool_call_id == server_call["call_id"]
    (output,) = [
        e["item"]
        for e in pipe.tap.sent("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert output["call_id"] == server_call["call_id"]
    # pipecat sends the result JSON-encoded; the echoing tools responder reads it back verbatim.
    assert output["output"] == '"Sunny and 21 degrees in Paris"'
    assert pipe.spoken_text().strip() == 'The tool said: "Sunny and 21 degrees in Paris"'
    roles = [m["role"] for m in pipe.context.get_messages()]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_barge_in_by_speech(paced_server: LocalServer, weather_pcm: bytes) -> None:
    """The user talks over the reply: the server's VAD cancels it, pipecat truncates the item it
    was playing, the server confirms, and the user's words get their answer."""

    async def body(pipe: Pipe) -> None:
        await pipe.worker.queue_frame(LLMRunFrame())
        await pipe.log.until(lambda: bool(pipe.log.of(TTSAudioRawFrame)))
        await asyncio.sleep(0.5)
        await pipe.send_audio(weather_pcm + silence(900))
        await pipe.responses(2)

    pipe = scenario(paced_server, body, messages=[{"role": "user", "content": LONG_REQUEST}])
    pipe.assert_clean()
    first, second = pipe.tap.received("response.done")
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"]["reason"] == "turn_detected"
    assert second["response"]["status"] == "completed"
    interrupted_id = first["response"]["output"][0]["id"]
    (truncate,) = pipe.tap.sent("conversation.item.truncate")
    (truncated,) = pipe.tap.received("conversation.item.truncated")
    assert truncate["item_id"] == truncated["item_id"] == interrupted_id
    assert truncated["audio_end_ms"] == truncate["audio_end_ms"]
    assert 300 <= truncate["audio_end_ms"] < 5000
    (transcription,) = pipe.log.of(TranscriptionFrame)
    assert "weather" in transcription.text.lower()
    assert pipe.context.get_messages()[-1] == {
        "role": "assistant",
        "content": f"You said: {transcription.text}",
    }
