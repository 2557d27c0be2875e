"""The streaming pipeline: recognition while the user speaks, replies spoken segment by segment.

Sans I/O with the real parts (WebRTC VAD, PocketSphinx, eSpeak NG) run inline by the server's
:class:`~realtime_nb.local.server.JobRunner`, and once over a real WebSocket with the OpenAI
models validating every event.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from realtime_nb.core.audio import AudioFormat
from realtime_nb.core.pricing import LOCAL_MODEL, session_cost
from realtime_nb.local import LocalServer
from realtime_nb.local._state import (
    GenerateJob,
    Job,
    RealtimeState,
    SpeakJob,
    StreamJob,
    TranscribeJob,
)
from realtime_nb.local.responders import EchoResponder, TextReply
from realtime_nb.local.server import JobRunner
from realtime_nb.local.stt import DecoderBusy, Transcriber, shared_transcriber
from realtime_nb.local.tts import Synthesizer, split_segments

from .local_helpers import connect, silence, validate_server_event

JSON = dict[str, Any]
TRANSCRIBE = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
}


class Recorder:
    """A state machine whose jobs are recorded, then run inline by the real parts."""

    def __init__(self, *, streaming: bool = True, fast: bool = True) -> None:
        self.state = RealtimeState(fast=fast, streaming=streaming)
        self.state.start()
        self.runner = JobRunner(EchoResponder(), Synthesizer(), shared_transcriber())
        self.log: list[tuple[str, Any]] = []  # ("event", event) and ("job", job), in order

    def pump(self, now: float = 0.0) -> None:
        while True:
            for event in self.state.events_to_send():
                validate_server_event(event)
                self.log.append(("event", event))
            jobs = self.state.jobs_to_run()
            if not jobs:
                return
            for job in jobs:
                self.log.append(("job", job))
                self.runner.deliver(self.state, job, self.runner.run(job), None, now)

    def send(self, *frames: JSON) -> None:
        for frame in frames:
            self.state.receive(json.dumps(frame), 0.0)
            self.pump()

    def append(self, pcm: bytes, chunk: int = 960) -> None:
        for i in range(0, len(pcm), chunk):
            audio = base64.b64encode(pcm[i : i + chunk]).decode()
            self.send({"type": "input_audio_buffer.append", "audio": audio})

    def events(self, etype: str | None = None) -> list[JSON]:
        return [x for k, x in self.log if k == "event" and etype in (None, x["type"])]

    def jobs(self, kind: type) -> list[Job]:
        return [x for k, x in self.log if k == "job" and isinstance(x, kind)]

    def position(self, etype: str) -> int:
        return next(i for i, (k, x) in enumerate(self.log) if k == "event" and x["type"] == etype)


def test_a_turn_is_recognised_while_it_is_spoken(weather_pcm: bytes) -> None:
    r = Recorder()
    r.send(TRANSCRIBE)
    r.append(silence(400) + weather_pcm + silence(700))
    stopped = r.position("input_audio_buffer.speech_stopped")
    started = r.position("input_audio_buffer.speech_started")
    feeds = [(i, x) for i, (k, x) in enumerate(r.log) if k == "job" and isinstance(x, StreamJob)]
    assert not r.jobs(TranscribeJob), "no batch recognition of a streamed turn"
    assert len({job.stream_id for _, job in feeds}) == 1
    # All the turn's audio but the last append reached the recogniser before the turn ended.
    before = sum(len(job.audio) for i, job in feeds if started < i < stopped)
    (item_id,) = [e["item_id"] for e in r.events("input_audio_buffer.committed")]
    audio = bytes(r.state._item_audio[item_id])
    assert len(audio) - before <= 960
    end = feeds[-1][1]
    assert end.end and end.item_id == item_id
    # The transcript equals a batch recognition of the item's audio (no cache: decoded again).
    (completed,) = r.events("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == r.runner.transcriber.transcribe(audio, AudioFormat())
    assert "weather" in completed["transcript"].lower()
    deltas = r.events("conversation.item.input_audio_transcription.delta")
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    assert r.position("conversation.item.input_audio_transcription.completed") > stopped
    assert [e["response"]["status"] for e in r.events("response.done")] == ["completed"]


def test_the_baseline_recognises_after_the_turn_and_hears_the_same(weather_pcm: bytes) -> None:
    streamed, batch = Recorder(), Recorder(streaming=False)
    for r in (streamed, batch):
        r.send(TRANSCRIBE)
        r.append(silence(400) + weather_pcm + silence(700), chunk=4801)
    assert not batch.jobs(StreamJob)
    (job,) = batch.jobs(TranscribeJob)
    assert batch.log.index(("job", job)) > batch.position("input_audio_buffer.speech_stopped")
    heard = [
        r.events("conversation.item.input_audio_transcription.completed")[0]["transcript"]
        for r in (streamed, batch)
    ]
    assert heard[0] == heard[1]
    # The baseline speaks each reply in one piece.
    assert [j.text for j in batch.jobs(SpeakJob)] == [f"You said: {heard[1]}"]


def test_recognition_depends_on_the_audio_only(weather_pcm: bytes) -> None:
    """Not on the append sizes, nor on what the decoder heard before (no carried-over state)."""
    transcriber = Transcriber(max_decoders=1)
    fmt = AudioFormat()
    whole = transcriber.transcribe(weather_pcm, fmt)
    for chunk in (33, 4801, len(weather_pcm)):
        stream = transcriber.stream(fmt)
        for i in range(0, len(weather_pcm), chunk):
            stream.feed(weather_pcm[i : i + chunk])
        assert stream.finish() == whole
    assert "weather" in whole.lower()


def test_streams_wait_for_a_decoder_when_all_are_busy(weather_pcm: bytes) -> None:
    transcriber = Transcriber(max_decoders=1)
    fmt = AudioFormat()
    first, second = transcriber.stream(fmt), transcriber.stream(fmt)
    first.feed(weather_pcm[:48_000])  # takes the only decoder
    second.feed(weather_pcm)  # kept: no decoder to be had
    woken: list[bool] = []
    transcriber.when_free(lambda: woken.append(True))
    with pytest.raises(DecoderBusy):
        second.finish()
    assert woken == []
    first.finish()
    assert woken == [True]
    assert second.finish() == transcriber.transcribe(weather_pcm, fmt)


def test_segments_join_back_to_the_reply() -> None:
    for text in ("Sure. You said: hello there.", "no punctuation", "", "Wait... what?! Yes."):
        assert "".join(split_segments(text)) == text
    assert split_segments("Sure. You said: hi") == ["Sure. ", "You said: ", "hi"]


def test_first_audio_goes_out_with_the_first_segment() -> None:
    """Paced: the first delta is out once the first segment is in, before the next is asked for;
    the transcript deltas and the audio deltas describe the same speech."""
    state = RealtimeState(fast=False)
    state.start()
    _text_turn_state(state, "one two three")
    (gen,) = state.jobs_to_run()
    assert isinstance(gen, GenerateJob)
    reply = "Sure. One two three, and four."
    state.generation_done(gen.response_id, [TextReply(reply)], 5.0)
    synth = Synthesizer()
    events: list[JSON] = list(state.events_to_send())
    audio: list[bytes] = []
    now = 5.0
    for expected in split_segments(reply):
        (speak,) = state.jobs_to_run()
        assert isinstance(speak, SpeakJob) and speak.text == expected
        speech = synth.synthesize(speak.text, speak.voice, speak.speed, speak.fmt)
        # Each segment goes out as whole milliseconds (24 samples at 24 kHz), padded with silence.
        audio.append(speech.audio + bytes(-len(speech.audio) % 48))
        state.speech_done(speak.response_id, speech, now)
        events += state.events_to_send()
        if expected == "Sure. ":
            deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
            assert len(deltas) == 1, "the first audio is out before the rest is synthesised"
    while (deadline := state.next_deadline()) is not None:
        state.poll(deadline)
        events += state.events_to_send()
    for e in events:
        validate_server_event(e)
    for e in events:
        if e["type"] == "response.output_audio.delta":
            assert len(base64.b64decode(e["delta"])) % 48 == 0
    sent = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert sent == b"".join(audio)
    said = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    (done,) = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert said == done["transcript"] == reply
    assert events[-2]["type"] == "response.done"
    assert events[-2]["response"]["status"] == "completed"


def _text_turn_state(state: RealtimeState, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    state.receive(json.dumps({"type": "conversation.item.create", "item": item}), 0.0)
    state.receive(json.dumps({"type": "response.create"}), 0.0)
    state.events_to_send()


def test_cancel_and_truncate_mid_reply() -> None:
    """A truncation inside the second segment keeps the words heard; a cancellation while a
    segment is being synthesised ends the response, and the late segment changes nothing."""
    state = RealtimeState(fast=False)
    state.start()
    _text_turn_state(state, "x")
    (gen,) = state.jobs_to_run()
    assert isinstance(gen, GenerateJob)
    state.generation_done(gen.response_id, [TextReply("First part. Second part. Third.")], 0.0)
    synth = Synthesizer()
    speeches = []
    for _ in range(2):
        (speak,) = state.jobs_to_run()
        assert isinstance(speak, SpeakJob)
        speeches.append(synth.synthesize(speak.text, speak.voice, speak.speed, speak.fmt))
        state.speech_done(speak.response_id, speeches[-1], 0.0)
    (third,) = state.jobs_to_run()  # being synthesised when the user barges in
    assert isinstance(third, SpeakJob) and third.text == "Third."
    first_ms = speeches[0].duration_ms
    state.poll(first_ms / 1000 + 0.35)  # a little of the second segment has been sent
    events = state.events_to_send()
    (added,) = [e for e in events if e["type"] == "response.output_item.added"]
    item_id = added["item"]["id"]
    cut = int(first_ms) + 200
    for frame in (
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
         "audio_end_ms": cut},
        {"type": "response.cancel"},
    ):  # fmt: skip
        state.receive(json.dumps(frame), 1.0)
    events += state.events_to_send()
    late = synth.synthesize(third.text, third.voice, third.speed, third.fmt)
    state.speech_done(third.response_id, late, 2.0)
    assert state.events_to_send() == [] and state.jobs_to_run() == []
    for e in events:
        validate_server_event(e)
    types = [e["type"] for e in events]
    assert "error" not in types
    (done,) = [e for e in events if e["type"] == "response.done"]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["output"][0]["content"][0]["transcript"] == ""  # deleted on truncate
    # What the "model" heard: the first segment and the words begun before the cut.
    heard = state._heard[item_id]
    assert heard.startswith("First part. Second")
    assert "Third" not in heard


def test_the_server_reports_its_own_model_and_costs_nothing(weather_pcm: bytes) -> None:
    """Over a real WebSocket, with the OpenAI models validating every event: whatever model the
    client asks for, the session says it is the local backend, priced at zero."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(RealtimeServerEvent)

    async def main(url: str) -> list[JSON]:
        ws = await connect(url)
        events = [json.loads(await ws.recv())]
        await ws.send(json.dumps({**TRANSCRIBE, "session": {**TRANSCRIBE["session"],
                                                             "model": "gpt-realtime"}}))  # fmt: skip
        pcm = silence(300) + weather_pcm[: 24_000 * 2 * 2] + silence(600)
        for i in range(0, len(pcm), 9600):
            await ws.send(
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(pcm[i : i + 9600]).decode(),
                    }
                )
            )
        while events[-1]["type"] != "response.done":
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        await ws.close()
        return events

    with LocalServer(fast=True) as server:
        events = asyncio.run(main(server.url))
    for e in events:
        adapter.validate_python(e)
        validate_server_event(e)
    created, updated = events[0], next(e for e in events if e["type"] == "session.updated")
    assert created["session"]["model"] == updated["session"]["model"] == LOCAL_MODEL
    usage = [(e["response"]["id"], e["response"]["usage"]) for e in events[-1:]]
    assert usage[0][1]["total_tokens"] > 0
    assert session_cost(LOCAL_MODEL, usage).total == 0.0
