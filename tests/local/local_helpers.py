"""Helpers for the local server tests: a raw WebSocket client, WAV loading, event validation."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from ..conftest import DESCRIPTION_WAV, WEATHER_WAV

__all__ = [
    "DESCRIPTION_WAV",
    "WEATHER_RULE",
    "WEATHER_TOOLS",
    "WEATHER_WAV",
]  # re-exported for the tests of this folder

JSON = dict[str, Any]
#: How long a test client waits for the next event: a guard against a hang, not a performance
#: target. Every turn is recognised afresh (nothing is cached) and PocketSphinx, at ~0.35x real
#: time alone, runs several times slower when the 2-core machine is shared with other suites.
EVENT_TIMEOUT_S = 60.0


def run_fake_job(state: Any, job: Any, now: float = 0.0, transcript: str = "hello") -> None:
    """Answer one job of a :class:`~realtime_nb.local._state.RealtimeState` with stand-ins: the
    echo responder, a fixed ``transcript`` for every turn, silent (empty) speech."""
    from realtime_nb.local._state import GenerateJob, SpeakJob, StreamJob, TranscribeJob
    from realtime_nb.local.responders import EchoResponder
    from realtime_nb.local.tts import Speech

    if isinstance(job, TranscribeJob):
        state.transcription_done(job.item_id, transcript, now)
    elif isinstance(job, StreamJob):
        if job.end and job.item_id is not None:
            state.transcription_done(job.item_id, transcript, now)
    elif isinstance(job, GenerateJob):
        state.generation_done(job.response_id, EchoResponder().respond(job.request), now)
    elif isinstance(job, SpeakJob):
        state.speech_done(job.response_id, Speech(job.text, b"", job.fmt), now)


#: The tool the scenario tests declare, and the rules responder's rule that calls it.
WEATHER_TOOLS: list[JSON] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Look up the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
WEATHER_RULE: JSON = {
    "pattern": r"weather in (?P<city>\w+)",
    "call": "get_weather",
    "arguments": {"city": "{city}"},
    "then": "In {city}: {output}",
}


def read_wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def silence(ms: int, rate: int = 24000) -> bytes:
    return bytes(2 * rate * ms // 1000)


_ADAPTER: TypeAdapter[Any] | None = None


def validate_server_event(event: JSON) -> None:
    """Raise unless ``event`` validates as ``openai.types.realtime.RealtimeServerEvent``."""
    global _ADAPTER
    if _ADAPTER is None:
        from openai.types.realtime import RealtimeServerEvent

        _ADAPTER = TypeAdapter(RealtimeServerEvent)
    _ADAPTER.validate_python(event)


_BETA_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _beta_adapter(kind: str) -> TypeAdapter[Any]:
    if kind not in _BETA_ADAPTERS:
        from openai.types.beta.realtime import RealtimeClientEvent, RealtimeServerEvent

        union = RealtimeServerEvent if kind == "server" else RealtimeClientEvent
        _BETA_ADAPTERS[kind] = TypeAdapter(union)
    return _BETA_ADAPTERS[kind]


def _beta_model_names() -> tuple[str, ...]:
    from typing import get_args

    from openai.types.beta.realtime import Session

    annotation = Session.model_fields["model"].annotation
    return tuple(a for arg in get_args(annotation) for a in get_args(arg) if isinstance(a, str))


def validate_beta_server_event(event: JSON) -> None:
    """Raise unless ``event`` validates as ``openai.types.beta.realtime.RealtimeServerEvent``.

    The package's beta ``Session.model`` is a closed list of names where the published schema
    (``RealtimeSession.model``) takes any string, so a custom model name is swapped for a listed
    one before validating; everything else is validated as sent.
    """
    session = event.get("session")
    if isinstance(session, dict) and session.get("model") not in _beta_model_names():
        event = {**event, "session": {**session, "model": "gpt-realtime"}}
    _beta_adapter("server").validate_python(event)


def validate_beta_client_event(event: JSON) -> None:
    """Raise unless ``event`` validates as ``openai.types.beta.realtime.RealtimeClientEvent``."""
    _beta_adapter("client").validate_python(event)


class Client:
    """A raw JSON WebSocket client that records every server event it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[JSON] = []

    async def send(self, event: JSON | str | bytes) -> None:
        await self.ws.send(event if isinstance(event, str | bytes) else json.dumps(event))

    async def append(
        self, pcm: bytes, chunk_ms: int = 100, rate: int = 24000, width: int = 2
    ) -> None:
        step = rate * width * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.send(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(pcm[i : i + step]).decode(),
                }
            )

    async def recv(self, timeout: float = EVENT_TIMEOUT_S) -> JSON:
        event: JSON = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(
        self, etype: str | Callable[[JSON], bool], timeout: float = EVENT_TIMEOUT_S
    ) -> JSON:
        """Receive until an event of type ``etype`` (or matching the predicate) arrives."""
        match = etype if callable(etype) else (lambda e: e["type"] == etype)
        while True:
            event = await self.recv(timeout)
            if match(event):
                return event

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, etype: str) -> list[JSON]:
        return [e for e in self.events if e["type"] == etype]


async def connect(url: str, **kwargs: Any) -> Any:
    import websockets

    return await websockets.connect(url + "?model=gpt-realtime", max_size=None, **kwargs)


def energy_boundaries(pcm: bytes, rate: int = 24000) -> tuple[float, float]:
    """Speech start and end (ms) by short-time energy: 10 ms frames louder than the noise floor
    by 20 dB, ignoring blips shorter than 100 ms (clicks)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768
    n = rate // 100
    frames = x[: len(x) // n * n].reshape(-1, n)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    floor = np.percentile(db, 10)
    active = db > floor + 20
    # keep runs of >= 10 frames, after closing gaps of <= 10 frames
    idx = np.flatnonzero(active)
    runs: list[list[int]] = []
    for i in idx:
        if runs and i - runs[-1][1] <= 10:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    runs = [r for r in runs if r[1] - r[0] + 1 >= 10]
    return runs[0][0] * 10.0, (runs[-1][1] + 1) * 10.0
