"""The state machine of a WebRTC call (``RealtimeState(webrtc=True)``), without sockets or peers.

Jobs run inline: the echo responder, a fixed transcript, and real eSpeak speech (the output audio
buffer needs audio to play). The track is played by calling ``read_output_audio`` as the shell's
speech track does, 20 ms at a time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime_nb.core.audio import AudioFormat, decode_to_float, resample
from realtime_nb.local._state import TRACK_RATE, RealtimeState, SpeakJob
from realtime_nb.local.tts import Synthesizer

from .local_helpers import run_fake_job, silence, validate_server_event

JSON = dict[str, Any]
FRAME = TRACK_RATE // 50  # 20 ms, the speech track's frame
SAY = "Please tell me a long and winding story about the sea and the sky."


def run_jobs(state: RealtimeState, now: float = 0.0) -> list[JSON]:
    """Run the jobs the state asked for until none is left; return (and validate) its events."""
    out: list[JSON] = []
    while True:
        out.extend(state.events_to_send())
        jobs = state.jobs_to_run()
        if not jobs:
            break
        for job in jobs:
            if isinstance(job, SpeakJob):
                speech = Synthesizer().synthesize(job.text, job.voice, job.speed, job.fmt)
                state.speech_done(job.response_id, speech, now)
            else:
                run_fake_job(state, job, now, transcript="what is the weather")
    for event in out:
        validate_server_event(event)
    return out


def send(state: RealtimeState, *events: JSON, now: float = 0.0) -> list[JSON]:
    for event in events:
        state.receive(json.dumps(event), now)
    return run_jobs(state, now)


def user_text(text: str) -> JSON:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def play(state: RealtimeState, frames: int) -> tuple[bytes, list[JSON]]:
    """Play ``frames`` frames of the track; the audio and the events it caused."""
    audio = b"".join(state.read_output_audio(FRAME, 0.0) for _ in range(frames))
    return audio, run_jobs(state)


def spoken_reply(state: RealtimeState) -> list[JSON]:
    state.start()
    return send(state, user_text(SAY), {"type": "response.create"})


def test_audio_goes_to_the_track_not_into_events() -> None:
    state = RealtimeState(fast=True, webrtc=True)
    events = spoken_reply(state)
    types = [e["type"] for e in events]
    assert "response.output_audio.delta" not in types
    assert types[-2:] == ["response.done", "rate_limits.updated"]  # generated ahead of playback
    assert "output_audio_buffer.started" not in types  # nothing played yet
    item_id = events[-2]["response"]["output"][0]["id"]
    response_id = events[-2]["response"]["id"]
    stored = state._item_audio[item_id]
    audio, played = play(state, 1)
    assert [e["type"] for e in played] == ["output_audio_buffer.started"]
    assert played[0]["response_id"] == response_id
    assert audio == bytes(stored[: 2 * FRAME])  # 24 kHz PCM16 both: the same samples
    frames = len(stored) // (2 * FRAME) + 1
    audio, played = play(state, frames)
    assert [e["type"] for e in played] == ["output_audio_buffer.stopped"]
    assert played[0]["response_id"] == response_id
    assert bytes(stored[2 * FRAME :]) == audio[: len(stored) - 2 * FRAME]
    assert not any(audio[len(stored) - 2 * FRAME :])  # then silence
    assert play(state, 5) == (bytes(2 * FRAME * 5), [])  # idle: silence, no events


def test_stopped_waits_for_the_response_to_end() -> None:
    # Over WebRTC the buffer may run dry between segments while the reply is still being
    # synthesised: no more audio may be forthcoming only once the response is over.
    state = RealtimeState(fast=True, webrtc=True)
    state.start()
    state.receive(json.dumps(user_text(SAY)), 0.0)
    state.receive(json.dumps({"type": "response.create"}), 0.0)
    held: list[SpeakJob] = []
    while True:  # run everything but the second segment's synthesis
        state.events_to_send()
        jobs = state.jobs_to_run()
        if not jobs:
            break
        for job in jobs:
            if isinstance(job, SpeakJob) and not held and not state._played:
                if state._playout:  # the first segment is in: hold the next one back
                    held.append(job)
                    continue
                speech = Synthesizer().synthesize(job.text, job.voice, job.speed, job.fmt)
                state.speech_done(job.response_id, speech, 0.0)
            else:
                run_fake_job(state, job, 0.0)
    assert held, "the reply should have more than one segment"
    _, played = play(state, 500)  # 10 s: all of the first segment and beyond
    assert [e["type"] for e in played] == ["output_audio_buffer.started"]
    job = held[0]
    speech = Synthesizer().synthesize(job.text, job.voice, job.speed, job.fmt)
    state.speech_done(job.response_id, speech, 0.0)
    run_jobs(state)
    _, played = play(state, 500)
    assert [e["type"] for e in played][-1] == "output_audio_buffer.stopped"


def test_barge_in_truncates_at_what_was_played(weather_pcm: bytes) -> None:
    state = RealtimeState(fast=True, webrtc=True)
    events = spoken_reply(state)
    done = events[-2]["response"]
    item_id, response_id = done["output"][0]["id"], done["id"]
    words = done["output"][0]["content"][0]["transcript"]
    _, played = play(state, 40)  # 800 ms heard
    assert [e["type"] for e in played] == ["output_audio_buffer.started"]
    # The user speaks (the track keeps playing while the VAD decides): 20 ms mic frames.
    mic = silence(200) + weather_pcm + silence(800)
    heard_ms = 800
    interrupted: list[JSON] = []
    for i in range(0, len(mic), 2 * FRAME):
        state.append_input_audio(mic[i : i + 2 * FRAME], 0.0)
        interrupted += run_jobs(state)
        if any(e["type"] == "output_audio_buffer.cleared" for e in interrupted):
            break
        _, more = play(state, 1)
        interrupted += more
        heard_ms += 20
    types = [e["type"] for e in interrupted]
    assert types[:3] == [
        "input_audio_buffer.speech_started",
        "conversation.item.truncated",
        "output_audio_buffer.cleared",
    ]
    truncated = interrupted[1]
    assert truncated["item_id"] == item_id and truncated["content_index"] == 0
    assert truncated["audio_end_ms"] == heard_ms  # exactly what the track read
    assert interrupted[2]["response_id"] == response_id
    assert len(state._item_audio[item_id]) == 2 * TRACK_RATE * heard_ms // 1000
    # What was not heard is not in the context: the transcript is gone, the heard words kept.
    assert state.items[-1]["id"] == item_id and state.items[-1]["content"][0]["transcript"] == ""
    assert words.startswith(state._heard[item_id]) and len(state._heard[item_id]) < len(words)
    audio, played = play(state, 3)
    assert not any(audio) and "output_audio_buffer.stopped" not in [e["type"] for e in played]


def test_barge_in_cancels_a_reply_still_in_progress(weather_pcm: bytes) -> None:
    state = RealtimeState(fast=True, webrtc=True)
    state.start()
    send(state, user_text(SAY))
    state.receive(json.dumps({"type": "response.create"}), 0.0)
    # Only the generation and the first segment: the reply is still being spoken.
    for job in state.jobs_to_run():
        run_fake_job(state, job, 0.0)
    (speak,) = state.jobs_to_run()
    assert isinstance(speak, SpeakJob)
    speech = Synthesizer().synthesize(speak.text, speak.voice, speak.speed, speak.fmt)
    state.speech_done(speak.response_id, speech, 0.0)
    state.events_to_send()
    for _ in range(10):  # played, the next segment still not synthesised
        state.read_output_audio(FRAME, 0.0)
    for i in range(0, len(weather_pcm), 2 * FRAME):
        state.append_input_audio(weather_pcm[i : i + 2 * FRAME], 0.0)
    events = state.events_to_send()
    types = [e["type"] for e in events]
    for e in events:
        validate_server_event(e)
    start = types.index("input_audio_buffer.speech_started")
    assert (
        types[start + 1 :].index("response.done")
        < types[start + 1 :].index("conversation.item.truncated")
        < types[start + 1 :].index("output_audio_buffer.cleared")
    )
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    truncated = next(e for e in events if e["type"] == "conversation.item.truncated")
    assert truncated["audio_end_ms"] == 200


def test_client_clear_stops_the_audio_without_truncating() -> None:
    state = RealtimeState(fast=True, webrtc=True)
    events = spoken_reply(state)
    response_id = events[-2]["response"]["id"]
    play(state, 10)
    out = send(state, {"type": "output_audio_buffer.clear"})
    assert [(e["type"], e["response_id"]) for e in out] == [
        ("output_audio_buffer.cleared", response_id)
    ]
    audio, played = play(state, 5)
    assert not any(audio) and played == []


def test_no_interruption_when_interrupt_response_is_off(weather_pcm: bytes) -> None:
    state = RealtimeState(fast=True, webrtc=True)
    state.start()
    send(
        state,
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {
                        "turn_detection": {
                            "type": "server_vad",
                            "interrupt_response": False,
                            "create_response": False,
                        }
                    }
                },
            },
        },
    )
    send(state, user_text(SAY), {"type": "response.create"})
    play(state, 10)
    for i in range(0, len(weather_pcm), 2 * FRAME):
        state.append_input_audio(weather_pcm[i : i + 2 * FRAME], 0.0)
    types = [e["type"] for e in run_jobs(state)]
    assert "input_audio_buffer.speech_started" in types
    assert "output_audio_buffer.cleared" not in types and "conversation.item.truncated" not in types
    audio, _ = play(state, 5)
    assert any(audio)  # still speaking


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_g711_session_formats_on_a_call(weather_pcm: bytes, fmt: str) -> None:
    # The track is always 24 kHz PCM16; a session in G.711 gets its mic audio converted (and
    # its VAD and transcripts work on it) and its speech converted back for the track.
    state = RealtimeState(fast=True, webrtc=True)
    state.configure(
        {
            "type": "realtime",
            "audio": {"input": {"format": {"type": fmt}}, "output": {"format": {"type": fmt}}},
        }
    )
    state.start()
    created = run_jobs(state)
    assert created[0]["session"]["audio"]["input"]["format"] == {"type": fmt}
    mic = silence(300) + weather_pcm + silence(900)
    events: list[JSON] = []
    for i in range(0, len(mic), 2 * FRAME):
        state.append_input_audio(mic[i : i + 2 * FRAME], 0.0)
        events += run_jobs(state)
    types = [e["type"] for e in events]
    assert types.count("input_audio_buffer.speech_started") == 1
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert 3000 < stopped["audio_end_ms"] < 4600  # on the input timeline, whatever the format
    done = next(e for e in events if e["type"] == "response.done")["response"]
    item_id = done["output"][0]["id"]
    g711 = bytes(state._item_audio[item_id])
    audio, _ = play(state, len(g711) // 160 + 2)  # 8 kHz, one byte a sample: 160 per 20 ms
    expected = resample(decode_to_float(g711, AudioFormat(fmt, 8000)), 8000, TRACK_RATE)
    got = decode_to_float(audio[: 2 * len(expected)], AudioFormat())
    assert len(got) == len(expected)
    assert float(abs(got - expected).max()) < 0.01  # only PCM16 rounding apart


def test_webrtc_is_ga_only() -> None:
    with pytest.raises(ValueError, match="GA protocol"):
        RealtimeState(webrtc=True, beta=True)
