"""The local server against the published spec's words (tests/fixtures/spec), sans I/O.

- ``input_audio_buffer.clear``: "clear the audio bytes in the buffer". No sample (nor half a
  sample) survives a clear or a commit, whatever the byte count or the sample count (which need not
  fall on a millisecond); a turn after a clear is made of later audio only; ``audio_start_ms`` /
  ``audio_end_ms`` keep counting "from the start of all audio written to the buffer during the
  session", and the prefix padding does not reach back into cleared audio.
- ``conversation.item.truncate``: "Truncating audio will delete the server-side text transcript
  to ensure there is not text in the context that hasn't been heard by the user", and "If the
  audio_end_ms is greater than the actual audio duration, the server will respond with an error".

The state machine runs with the real parts (WebRTC VAD, PocketSphinx, eSpeak NG, echo responder)
through :class:`realtime_nb.local.server.JobRunner`, without a socket.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest

from realtime_nb.core.audio import AudioFormat
from realtime_nb.local._state import GenerateJob, RealtimeState
from realtime_nb.local.responders import EchoResponder
from realtime_nb.local.server import JobRunner
from realtime_nb.local.stt import shared_transcriber
from realtime_nb.local.tts import Synthesizer

from .local_helpers import DESCRIPTION_WAV, read_wav, silence, validate_server_event

JSON = dict[str, Any]
#: Bytes per append in the odd-size tests: what the recorded sessions' appends carry (33 bytes).
ODD_CHUNK = 33
#: 36011 samples = 1500.458 ms at 24 kHz (not a whole millisecond), plus half a sample.
CLEARED_SAMPLES = 36011
CLEARED = CLEARED_SAMPLES * 2 + 1


class Driver:
    """A state machine with its jobs run inline by the real parts; records every event."""

    def __init__(self, **kwargs: Any) -> None:
        self.state = RealtimeState(fast=True, **kwargs)
        self.state.start()
        self.events: list[JSON] = []
        self.requests: list[GenerateJob] = []
        self._runner = JobRunner(EchoResponder(), Synthesizer(), shared_transcriber())

    def send(self, *frames: JSON) -> list[JSON]:
        for frame in frames:
            self.state.receive(json.dumps(frame), 0.0)
        return self.settle()

    def append(self, pcm: bytes, chunk: int = 4800) -> list[JSON]:
        for i in range(0, len(pcm), chunk):
            audio = base64.b64encode(pcm[i : i + chunk]).decode()
            self.state.receive(
                json.dumps({"type": "input_audio_buffer.append", "audio": audio}), 0.0
            )
        return self.settle()

    def settle(self) -> list[JSON]:
        new: list[JSON] = []
        while True:
            new.extend(self.state.events_to_send())
            jobs = self.state.jobs_to_run()
            if not jobs:
                break
            for job in jobs:
                if isinstance(job, GenerateJob):
                    self.requests.append(job)
                self._runner.deliver(self.state, job, self._runner.run(job), None, 0.0)
        for event in new:
            validate_server_event(event)
        self.events.extend(new)
        return new

    def of(self, etype: str) -> list[JSON]:
        return [e for e in self.events if e["type"] == etype]

    def item_audio(self, item_id: str) -> bytes:
        (retrieved,) = self.send({"type": "conversation.item.retrieve", "item_id": item_id})
        return base64.b64decode(retrieved["item"]["content"][0]["audio"])


def noise(nbytes: int, seed: int = 0) -> bytes:
    """Loud random bytes: any of them left in the buffer would show in a byte comparison."""
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


MANUAL = {
    "type": "session.update",
    "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
}


# --- input_audio_buffer.clear ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "chunk"),
    [("audio/pcm", ODD_CHUNK), ("audio/pcm", 4801), ("audio/pcmu", ODD_CHUNK)],
)
def test_clear_leaves_no_byte_behind(weather_pcm: bytes, fmt: str, chunk: int) -> None:
    d = Driver()
    d.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"format": {"type": fmt}, "turn_detection": None}},
            },
        }
    )
    d.append(noise(CLEARED), chunk)
    assert [e["type"] for e in d.send({"type": "input_audio_buffer.clear"})] == [
        "input_audio_buffer.cleared"
    ]
    new = weather_pcm[:48_000] if fmt == "audio/pcm" else noise(8_001, seed=1)
    d.append(new, chunk)
    committed = d.send({"type": "input_audio_buffer.commit"})
    item_id = committed[0]["item_id"]
    width = AudioFormat.from_config({"type": fmt}).bytes_per_sample
    assert d.item_audio(item_id) == new[: len(new) // width * width]


def test_commit_leaves_no_half_sample_behind(weather_pcm: bytes) -> None:
    """A commit clears the buffer, the odd trailing byte included."""
    d = Driver()
    d.send(MANUAL)
    d.append(noise(CLEARED), ODD_CHUNK)
    first = d.send({"type": "input_audio_buffer.commit"})[0]["item_id"]
    assert d.item_audio(first) == noise(CLEARED)[: CLEARED_SAMPLES * 2]
    second_audio = weather_pcm[:24_000]
    d.append(second_audio, ODD_CHUNK)
    second = d.send({"type": "input_audio_buffer.commit"})[0]["item_id"]
    assert d.item_audio(second) == second_audio


def test_commit_after_clear_counts_only_new_audio() -> None:
    d = Driver()
    d.send(MANUAL)
    d.append(noise(CLEARED), ODD_CHUNK)
    d.send({"type": "input_audio_buffer.clear"})
    d.append(silence(50))
    (error,) = d.send({"type": "input_audio_buffer.commit"})
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert "buffer only has 50.00ms of audio" in error["error"]["message"]


@pytest.fixture(scope="module")
def reference_turn(weather_pcm: bytes) -> JSON:
    """The weather question alone, on a fresh session: what a turn after a clear must equal."""
    d = Driver()
    d.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            },
        }
    )
    d.append(silence(500) + weather_pcm + silence(800))
    (started,) = d.of("input_audio_buffer.speech_started")
    (stopped,) = d.of("input_audio_buffer.speech_stopped")
    (completed,) = d.of("conversation.item.input_audio_transcription.completed")
    return {
        "start": started["audio_start_ms"],
        "end": stopped["audio_end_ms"],
        "audio": d.item_audio(stopped["item_id"]),
        "transcript": completed["transcript"],
    }


def _interrupted_session(prefix_padding_ms: int = 300) -> tuple[Driver, JSON]:
    """A VAD session cleared in the middle of speech after ``CLEARED`` bytes (odd, not a whole
    millisecond); returns the driver and the speech_started that the clear cut off."""
    d = Driver()
    d.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {
                        "transcription": {"model": "whisper-1"},
                        "turn_detection": {
                            "type": "server_vad",
                            "prefix_padding_ms": prefix_padding_ms,
                        },
                    }
                },
            },
        }
    )
    d.append(read_wav(DESCRIPTION_WAV)[:CLEARED], ODD_CHUNK * 101)
    (cut_off,) = d.of("input_audio_buffer.speech_started")
    assert not d.of("input_audio_buffer.speech_stopped"), "the clear must come mid-speech"
    d.send({"type": "input_audio_buffer.clear"})
    return d, cut_off


def test_clear_mid_speech_then_a_turn_of_new_audio_only(
    weather_pcm: bytes, reference_turn: JSON
) -> None:
    d, cut_off = _interrupted_session()
    d.append(silence(500) + weather_pcm + silence(800))
    (started,) = d.of("input_audio_buffer.speech_started")[1:]
    (stopped,) = d.of("input_audio_buffer.speech_stopped")
    assert started["item_id"] == stopped["item_id"] != cut_off["item_id"]
    # Counted from the start of ALL audio written in the session, the cleared audio included.
    cleared_ms = CLEARED_SAMPLES * 1000 / 24000
    assert started["audio_start_ms"] == math.floor(cleared_ms + reference_turn["start"])
    assert stopped["audio_end_ms"] == math.floor(cleared_ms + reference_turn["end"])
    # The same audio, to the byte, as the question alone; so the same transcript.
    assert d.item_audio(stopped["item_id"]) == reference_turn["audio"]
    (completed,) = d.of("conversation.item.input_audio_transcription.completed")
    assert completed["item_id"] == stopped["item_id"]
    assert completed["transcript"] == reference_turn["transcript"]
    assert len(d.of("input_audio_buffer.committed")) == 1


def test_prefix_padding_does_not_reach_into_cleared_audio(weather_pcm: bytes) -> None:
    """Speech soon after a clear, with more padding than audio since the clear: the turn starts
    at the clear, with the first new sample, and says so."""
    d, _ = _interrupted_session(prefix_padding_ms=2000)
    new = silence(200) + weather_pcm + silence(800)
    d.append(new)
    (started,) = d.of("input_audio_buffer.speech_started")[1:]
    assert started["audio_start_ms"] == math.floor(CLEARED_SAMPLES * 1000 / 24000)
    (stopped,) = d.of("input_audio_buffer.speech_stopped")
    audio = d.item_audio(stopped["item_id"])
    assert audio == new[: len(audio)]
    assert len(audio) // 48 == stopped["audio_end_ms"] - started["audio_start_ms"]


# --- conversation.item.truncate --------------------------------------------------------------------


@pytest.fixture
def spoken_reply() -> tuple[Driver, JSON]:
    d = Driver()
    d.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Tell me about the weather today."}],
            },
        },
        {"type": "response.create"},
    )
    (done,) = d.of("response.done")
    return d, done["response"]["output"][0]


def test_truncate_deletes_the_transcript(spoken_reply: tuple[Driver, JSON]) -> None:
    d, item = spoken_reply
    full = item["content"][0]["transcript"]
    assert full == "You said: Tell me about the weather today."
    (truncated,) = d.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 1000,
        }
    )
    assert {k: v for k, v in truncated.items() if k != "event_id"} == {
        "type": "conversation.item.truncated",
        "item_id": item["id"],
        "content_index": 0,
        "audio_end_ms": 1000,
    }
    (retrieved,) = d.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    part = retrieved["item"]["content"][0]
    assert part["transcript"] == ""  # no text the user has not heard: none at all
    assert len(base64.b64decode(part["audio"])) == 24000 * 2 * 1000 // 1000
    # The model keeps the audio the user heard; a text responder sees it as the words in it.
    d.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Sorry?"}],
            },
        },
        {"type": "response.create", "response": {"output_modalities": ["text"]}},
    )
    context = d.requests[-1].request.items
    (assistant,) = [i for i in context if i["id"] == item["id"]]
    heard = assistant["content"][0]["transcript"]
    assert heard
    assert full.startswith(heard)
    assert len(heard) < len(full)


def test_truncate_past_the_end_is_an_error_naming_audio_end_ms(
    spoken_reply: tuple[Driver, JSON],
) -> None:
    d, item = spoken_reply
    (retrieved,) = d.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    duration_ms = len(base64.b64decode(retrieved["item"]["content"][0]["audio"])) * 1000 // 48000

    def truncate(ms: int) -> JSON:
        (event,) = d.send(
            {
                "type": "conversation.item.truncate",
                "event_id": f"evt_{ms}",
                "item_id": item["id"],
                "content_index": 0,
                "audio_end_ms": ms,
            }
        )
        return event

    error = truncate(duration_ms + 1)
    assert error["type"] == "error"
    assert error["error"]["param"] == "audio_end_ms"
    assert error["error"]["code"] == "invalid_value"
    assert error["error"]["event_id"] == f"evt_{duration_ms + 1}"
    assert error["error"]["message"] == (
        f"Audio content of {duration_ms}ms is already shorter than {duration_ms + 1}ms"
    )
    # Refused: the item is untouched.
    (after,) = d.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    assert after["item"]["content"][0]["transcript"] == item["content"][0]["transcript"]
    # The whole audio is fine; after a truncation, the new length is the limit.
    assert truncate(duration_ms)["type"] == "conversation.item.truncated"
    assert truncate(700)["type"] == "conversation.item.truncated"
    error = truncate(701)
    assert error["error"]["message"] == "Audio content of 700ms is already shorter than 701ms"


# --- output_audio_buffer.cleared -----------------------------------------------------------------


def test_output_audio_buffer_cleared_names_a_response(spoken_reply: tuple[Driver, JSON]) -> None:
    """``response_id`` is required (a string): the latest response, the one a client would cut."""
    d, _ = spoken_reply
    (cleared,) = d.send({"type": "output_audio_buffer.clear"})  # validated as GA by the driver
    assert cleared["response_id"] == d.of("response.done")[0]["response"]["id"]
