"""Fixtures for the third-party client tests: local servers on loopback, the weather recording.

Every test drives a real client library (openai-agents, pydantic-ai, pipecat) against
``realtime_nb.local.LocalServer`` through a :class:`~.thirdparty_helpers.WireTap`, so it can assert both on
what the library reports and on what went over the wire. No test reaches the internet.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator

import pytest

from realtime_nb.local import LocalServer

from ..conftest import WEATHER_WAV


@pytest.fixture(scope="session")
def fast_server() -> Iterator[LocalServer]:
    """The "tools" responder (calls an offered tool the user names, else echoes), audio sent as
    soon as it is synthesised."""
    with LocalServer("tools", fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def paced_server() -> Iterator[LocalServer]:
    """Like ``fast_server`` but output audio is paced at real time, so a reply is still being
    spoken when the test barges in."""
    with LocalServer("tools") as server:
        yield server


@pytest.fixture(scope="session")
def weather_pcm() -> bytes:
    """The "What's the weather like ..." recording: PCM16, 24 kHz, mono."""
    with wave.open(str(WEATHER_WAV)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())
