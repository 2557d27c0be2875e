"""Server VAD on real speech: one turn, boundaries within 150 ms of an energy measurement."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from realtime_nb.core.audio import pcm16_to_float32
from realtime_nb.local import LocalServer
from realtime_nb.local.vad import VadConfig, VoiceActivityDetector

from .local_helpers import Client, connect, energy_boundaries, silence, validate_server_event

TOLERANCE_MS = 150
LEAD_MS = 400  # silence prepended, so that the boundaries are not at the very start


def _turns(server: LocalServer, pcm: bytes, turn_detection: dict) -> Client:
    async def main() -> Client:
        ws = await connect(server.url)
        c = Client(ws)
        await c.recv()
        await c.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": turn_detection}},
                },
            }
        )
        await c.until("session.updated")
        await c.append(silence(LEAD_MS) + pcm + silence(1000))
        await c.until("response.done")
        await ws.close()
        return c

    client = asyncio.run(main())
    for e in client.events:
        validate_server_event(e)
    return client


def test_energy_reference(weather_pcm: bytes) -> None:
    start, end = energy_boundaries(weather_pcm)
    assert 400 < start < 700, start
    assert 2500 < end < 3000, end


def test_one_turn_raw_boundaries_within_150ms(fast_server: LocalServer, weather_pcm: bytes) -> None:
    """With no padding and a short silence window, the reported numbers are the boundaries."""
    start, end = energy_boundaries(weather_pcm)
    td = {"type": "server_vad", "prefix_padding_ms": 0, "silence_duration_ms": 100}
    c = _turns(fast_server, weather_pcm, td)
    (started,) = c.of("input_audio_buffer.speech_started")
    (stopped,) = c.of("input_audio_buffer.speech_stopped")
    assert abs(started["audio_start_ms"] - (start + LEAD_MS)) <= TOLERANCE_MS, (started, start)
    assert abs(stopped["audio_end_ms"] - (end + LEAD_MS)) <= TOLERANCE_MS, (stopped, end)
    assert started["item_id"] == stopped["item_id"]


def test_one_turn_default_settings_documented_offsets(
    fast_server: LocalServer, weather_pcm: bytes
) -> None:
    """With the defaults, audio_start_ms includes prefix_padding_ms and audio_end_ms includes
    silence_duration_ms, as the API documents; removing them gives the speech boundaries."""
    start, end = energy_boundaries(weather_pcm)
    c = _turns(fast_server, weather_pcm, {"type": "server_vad"})
    (started,) = c.of("input_audio_buffer.speech_started")
    (stopped,) = c.of("input_audio_buffer.speech_stopped")
    assert abs(started["audio_start_ms"] + 300 - (start + LEAD_MS)) <= TOLERANCE_MS
    assert abs(stopped["audio_end_ms"] - 200 - (end + LEAD_MS)) <= TOLERANCE_MS


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_threshold_changes_sensitivity_not_turn_count(weather_pcm: bytes, threshold: float) -> None:
    vad = VoiceActivityDetector(VadConfig(threshold, 0, 200), 24000)
    events = vad.feed(pcm16_to_float32(weather_pcm + silence(500)))
    assert [e.kind for e in events] == ["start", "stop"]


def test_quiet_noise_is_not_speech() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(24000 * 3) * 0.002).astype(np.float32)  # about -54 dBFS
    vad = VoiceActivityDetector(VadConfig(0.5, 300, 200), 24000)
    assert vad.feed(noise) == []
