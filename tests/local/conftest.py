"""Fixtures for the local server tests: one fast echo server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realtime_nb.local import LocalServer

from .local_helpers import WEATHER_WAV, read_wav


@pytest.fixture(scope="session")
def fast_server() -> Iterator[LocalServer]:
    with LocalServer(fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def weather_pcm() -> bytes:
    return read_wav(WEATHER_WAV)
