"""Fixtures for live tests: a real local server on loopback, sessions that are checked after
each test (every client event validates against the published schema; the API key appears in no
recording, log line or output)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source

from .session_constants import KEY

VALIDATOR: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)


@pytest.fixture
def local_server() -> Iterator[Callable[..., Any]]:
    """``local_server(**kwargs)`` starts a LocalServer (fast, requiring KEY); all are stopped."""
    from realtime_nb.local import LocalServer

    servers: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("fast", True)
        kwargs.setdefault("api_key", KEY)
        srv = LocalServer(**kwargs)
        srv.__enter__()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.__exit__(None, None, None)


@pytest.fixture
def session(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., Any]]:
    """``session(server, **kwargs)`` opens a recorded Session with KEY. After the test: every
    client event it sent validates as a ``RealtimeClientEvent``; KEY is in no recording, log
    record (websockets DEBUG included) or captured output."""
    from realtime_nb.client.session import Session

    caplog.set_level(logging.DEBUG)
    opened: list[tuple[Any, list[Event]]] = []

    def open_session(server: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("record", tmp_path / f"session{len(opened)}.arrow")
        kwargs.setdefault("api_key", KEY)
        s = Session(url=server.url, **kwargs)
        sent: list[Event] = []
        s.on("*", lambda ev: sent.append(ev) if ev.source is Source.CLIENT else None)
        # Events sent before the subscription (the initial session.update) come from the file.
        opened.append((s, sent))
        return s

    yield open_session
    for s, _ in opened:
        s.close()
    for s, sent in opened:
        from realtime_nb.storage.recording import Recording

        if s.recording_path is None:
            continue
        rec = Recording.open(s.recording_path)
        client_events = [e for e in rec.events if e.source is Source.CLIENT]
        assert len(client_events) >= len(sent)
        for ev in client_events:
            VALIDATOR.validate_python(ev.wire())
        assert KEY.encode() not in s.recording_path.read_bytes()
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    out, err = capsys.readouterr()
    assert KEY not in out
    assert KEY not in err


@pytest.fixture
def priced_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local backend's model label priced like ``gpt-realtime`` (it is free), so that a test
    checks a cost that is not zero."""
    from realtime_nb.core.pricing import LOCAL_MODEL, PRICES

    monkeypatch.setitem(PRICES, LOCAL_MODEL, PRICES["gpt-realtime"])
