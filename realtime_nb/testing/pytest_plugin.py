"""pytest plugin: the ``realtime_replay`` fixture, a one-line cassette server for tests.

Registered through the ``pytest11`` entry point, so installing realtime_nb makes it available::

    def test_my_agent(realtime_replay):
        srv = realtime_replay("tests/cassettes/weather.yaml")
        run_my_agent(url=srv.url)

The server stops when the test ends, and the test fails with the :class:`ReplayMismatch` message
if the client went off the recorded script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..storage.recording import Recording
from .replay_server import ReplayServer

__all__ = ["realtime_replay"]


@pytest.fixture
def realtime_replay() -> Iterator[Callable[..., ReplayServer]]:
    """``realtime_replay(recording, **options) -> ReplayServer`` (started); options as for
    :class:`~realtime_nb.testing.ReplayServer` (``audio=``, ``ignore=``)."""
    servers: list[ReplayServer] = []

    def start(recording: Recording | str | Path, **options: Any) -> ReplayServer:
        srv = ReplayServer(recording, **options).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
    for srv in servers:
        srv.check()
