"""Live session against its recording, on the real local server: items, usage, cost, errors and
the connection's events the live session reports are what ``Recording.open`` of its file says,
through a tool that raises, a tool that times out, a server that goes away and a network drop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from realtime_nb.client.session import Session, SessionClosedError
from realtime_nb.core.protocol import ProtocolError, Source
from realtime_nb.core.tools import tool
from realtime_nb.storage.recording import Recording

from .session_constants import KEY

# The local backend is free; priced here so that parity is checked on a cost that is not zero.
pytestmark = pytest.mark.usefixtures("priced_local")

TIMEOUT = 20.0
RULES = [
    {
        "pattern": r"weather in (?P<city>\w+)",
        "call": "get_weather",
        "arguments": {"city": "{city}"},
    },
    {"pattern": r"explode", "call": "explode", "arguments": {"why": "test"}},
    {"pattern": r"slow", "call": "slow", "arguments": {}},
    {"pattern": r"ghost", "call": "ghost", "arguments": {}},
]


@tool
def get_weather(city: str) -> str:
    """Look up the weather for a city."""
    return f"foggy in {city}"


@tool
def explode(why: str) -> str:
    """Always fails."""
    raise RuntimeError(f"boom because {why}")


@tool(timeout=0.2)
async def slow() -> str:
    """Never finishes in time."""
    await asyncio.sleep(10)
    return "late"


def _connection_events(state: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (t, d)
        for _, t, d in state.local_events
        if t.startswith(("local.connection", "local.session"))
    ]


def assert_parity(s: Session, rec: Recording) -> None:
    """What the live session reports is what its recording, read back, reduces to."""
    st = rec.state
    live = s.snapshot()
    assert live.items == st.items
    assert s.usage.total == st.usage
    assert dict(s.usage.responses) == {r: x.usage for r, x in st.responses.items() if x.usage}
    assert s.cost.total == rec.metrics().cost_usd
    assert [(r.response_id, r.usd) for r in s.cost.responses] == [
        (r.id, r.cost_usd) for r in rec.metrics().responses if r.usage.total_tokens
    ]
    assert s.errors == st.errors
    assert _connection_events(live) == _connection_events(st)
    assert s.close_info == st.connection_closed
    assert s.status == st.connection


def _wait_status(s: Session, status: str) -> None:
    deadline = time.monotonic() + 5
    while s.status != status and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.status == status


def test_tool_errors_and_a_server_that_goes_away(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(responder="rules", rules=RULES)
    # "ghost" is declared to the model but has no Python function behind it.
    ghost = {"type": "function", "name": "ghost", "description": "Boo.", "parameters": {}}
    s = session(srv, tools=[get_weather, explode, ghost], output_modalities="text", reconnect=False)
    s.send_text("what is the weather in Paris")
    s.wait_until_idle(TIMEOUT)
    s.send_text("please explode")
    s.wait_until_idle(TIMEOUT)
    s.send_text("call the ghost")
    s.wait_until_idle(TIMEOUT)
    # A bad request is refused before it is queued: nothing is sent or recorded.
    n = len(s.recording().events)
    with pytest.raises(ProtocolError, match="'audio_end_ms' must be int"):
        s.send_event({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
                      "audio_end_ms": 1.5})  # fmt: skip
    with pytest.raises(ValueError, match="no audio was received"):
        s.truncate("item_nope", 10)
    assert s.idle
    srv.__exit__(None, None, None)  # the server goes away: close code 1001
    s.wait_for("local.connection.closed", TIMEOUT, after=0)
    _wait_status(s, "error")
    assert [e.type for e in s.errors] == ["tool_error", "tool_error", "connection_closed"]
    assert "boom because test" in s.errors[0].message
    assert "no tool named 'ghost'" in s.errors[1].message
    assert "code 1001" in s.errors[2].message
    assert s.close_info is not None and s.close_info["initiated_by"] == "server"
    live = s.recording()  # while the session is open
    assert [e.type for e in live.events[n:]] == ["local.connection.closed"]
    assert_parity(s, live)
    path = s.recording_path
    s.close()
    saved = Recording.open(path)
    assert [t for t, _ in _connection_events(saved.state)][-1] == "local.session.closed"
    assert_parity(s, saved)
    assert s.status == saved.state.connection == "closed"


def test_a_network_drop_a_reconnect_and_a_timeout(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(responder="rules", rules=RULES)
    s = session(srv, tools=[get_weather, slow], output_modalities="audio", reconnect=False)
    s.send_text("what is the weather in Oslo")
    s.wait_until_idle(TIMEOUT)
    s._loop.call_soon_threadsafe(lambda: s._ws.transport.abort())  # no close frame
    s.wait_for("local.connection.closed", TIMEOUT, after=0)
    _wait_status(s, "error")
    with pytest.raises(SessionClosedError, match="reconnect"):
        s.send_text("anyone?")
    assert_parity(s, s.recording())
    s.reconnect()
    assert s.status == "connected"
    s.send_text("be slow")
    s.wait_until_idle(TIMEOUT)
    assert [e.type for e in s.errors] == ["connection_closed", "tool_error"]
    assert "code 1006" in s.errors[0].message
    assert "did not finish within 0.2 s" in s.errors[1].message
    assert s.usage.total.total_tokens > 0 and s.cost.total
    assert_parity(s, s.recording())
    path = s.recording_path
    s.close()
    assert_parity(s, Recording.open(path))


def test_a_refused_connection_is_recorded(local_server: Callable[..., Any], tmp_path: Any) -> None:
    srv = local_server()
    with pytest.raises(SessionClosedError, match="HTTP 401"):
        Session(url=srv.url, api_key=KEY + "x", record=tmp_path / "refused.arrow")
    rec = Recording.open(tmp_path / "refused.arrow")
    assert [e.type for e in rec.events] == ["local.connection.failed", "local.session.closed"]
    assert all(e.source is Source.LOCAL for e in rec.events)
    (err,) = rec.state.errors
    assert err.type == "connection_failed"
    assert "HTTP 401" in err.message
    assert rec.state.connection == "closed"
