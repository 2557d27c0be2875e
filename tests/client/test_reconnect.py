"""Sessions outlive their connection: automatic reconnection after the provider's expiry or a drop,
proactive rollover between turns, giving up, and ``close()`` that never reconnects. End to end
against the local server (every step checked in the recording read back from disk), and the
rollover decision of :class:`ClientProtocol` without a socket."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from realtime_nb.client._reconnect import (
    RECONNECT_ATTEMPTS,
    ReconnectPolicy,
    retry_after_close,
    retry_after_refusal,
)
from realtime_nb.client.protocol import ClientProtocol
from realtime_nb.client.session import SessionClosedError
from realtime_nb.core.events import Event, extract_ids
from realtime_nb.core.protocol import Source, client
from realtime_nb.core.reducer import ConversationState
from realtime_nb.local import Responder, ResponseRequest, TextReply
from realtime_nb.storage.recording import Recording

TIMEOUT = 20.0
#: Backoff short enough for tests, long enough to be seen in the recording.
FAST = ReconnectPolicy(first_delay_s=0.05, max_delay_s=0.2)


class Remember(Responder):
    """Answers with how many items it sees and the first user text: seeding is visible."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def respond(self, request: ResponseRequest) -> list[Any]:
        time.sleep(self.delay_s)
        texts = [
            p.get("text") or ""
            for it in request.items
            if it.get("role") == "user"
            for p in it.get("content", [])
        ]
        return [TextReply(f"{len(request.items)} items; first: {texts[0] if texts else ''}")]


def _of(rec: Recording, etype: str) -> list[Event]:
    return [e for e in rec.events if e.type == etype]


def _answer(s: Any, text: str) -> str:
    s.send_text(text)
    done = s.wait_for("response.done", TIMEOUT)
    return str(done.data["response"]["output"][0]["content"][0]["text"])


def _wait_connected(s: Any, session_created: int) -> None:
    """Until the ``session_created``-th ``session.created`` has come and the session is ready."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready = s.status == "connected" and s._proto.ready
        if ready and len(_of(s.recording(), "session.created")) >= session_created:
            return
        time.sleep(0.01)
    raise AssertionError(f"not reconnected: status {s.status}")


def _lifecycle(rec: Recording) -> list[str]:
    """The connection's story: local connection events, with the expiry error and each
    response's end."""
    out = []
    for e in rec.events:
        if e.type.startswith(("local.connection", "local.session")):
            data = e.data
            extra = data.get("cause") or data.get("code") or ""
            out.append(f"{e.type.removeprefix('local.')}{f':{extra}' if extra else ''}")
        elif e.type == "error":
            out.append(f"error:{(e.data.get('error') or {}).get('code')}")
    return out


# --- 1. past the provider's cap ------------------------------------------------------------------


def test_a_session_continues_past_the_servers_cap_in_one_recording(
    local_server: Callable[..., Any], session: Callable[..., Any], tmp_path: Any
) -> None:
    srv = local_server(responder=Remember(), max_session_s=2)
    # No rollover: the cap itself must end the connection.
    s = session(srv, output_modalities="text", reconnect=ReconnectPolicy(rollover_margin_s=None))
    assert _answer(s, "my name is Ada") == "1 items; first: my name is Ada"
    before = [it.id for it in s.conversation.items]
    expired = s.wait_for("error", TIMEOUT, after=0)
    assert expired.data["error"]["code"] == "session_expired"
    _wait_connected(s, 2)
    assert _answer(s, "who am I?") == "3 items; first: my name is Ada"  # the seed
    assert [it.id for it in s.conversation.items][:2] == before
    path = s.recording_path
    errors = s.errors
    s.close()
    assert sorted(p.name for p in tmp_path.glob("*.arrow")) == [path.name]  # ONE file
    rec = Recording.open(path)
    assert _lifecycle(rec)[:5] == [
        "connection.opened",
        "error:session_expired",
        "connection.closed:1001",
        "connection.reconnecting:session_expired",
        "connection.opened",
    ]
    first = _of(rec, "local.connection.reconnecting")[0].data
    assert (first["attempt"], first["attempts"], first["delay_s"]) == (1, RECONNECT_ATTEMPTS, 0.0)
    assert rec.state.errors == errors
    assert [e.code for e in errors[:2]] == ["session_expired", "connection_closed"]
    assert [it.id for it in rec.state.items][:2] == before
    assert rec.state.connection == "closed"


# --- 2. a dropped connection ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [1011, None])
def test_a_dropped_connection_reconnects_with_backoff(
    local_server: Callable[..., Any], session: Callable[..., Any], code: int | None
) -> None:
    srv = local_server(responder=Remember())
    s = session(srv, output_modalities="text", reconnect=FAST)
    assert _answer(s, "my name is Ada") == "1 items; first: my name is Ada"
    assert srv.drop_connections(code, "test drop") == 1
    ev = s.wait_for("local.connection.reconnecting", TIMEOUT, after=0)
    assert ev.data["cause"] == "dropped" and ev.data["attempt"] == 1
    assert 0.025 <= ev.data["delay_s"] <= 0.05  # the first backoff step, with jitter
    _wait_connected(s, 2)
    assert _answer(s, "who am I?") == "3 items; first: my name is Ada"
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    closed = _of(rec, "local.connection.closed")[0].data
    assert closed["code"] == (code or 1006)
    assert _lifecycle(rec)[:4] == [
        "connection.opened",
        f"connection.closed:{code or 1006}",
        "connection.reconnecting:dropped",
        "connection.opened",
    ]
    assert rec.state.errors == s.errors


def test_requests_made_while_reconnecting_wait_for_the_new_connection(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(responder=Remember())
    s = session(srv, output_modalities="text",
                reconnect=ReconnectPolicy(first_delay_s=0.5, jitter=0.0))  # fmt: skip
    srv.drop_connections(1012, "service restart")
    s.wait_for("local.connection.reconnecting", TIMEOUT, after=0)
    assert s.status == "connecting"
    s.send_text("hello again")  # held, not refused
    done = s.wait_for("response.done", TIMEOUT)
    assert done.data["response"]["output"][0]["content"][0]["text"] == "1 items; first: hello again"


# --- 3. proactive rollover -----------------------------------------------------------------------


def test_rollover_before_the_cap_between_turns_not_during_a_response(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(responder=Remember(delay_s=1.0), max_session_s=4)
    policy = ReconnectPolicy(session_cap_s=4, rollover_margin_s=2)
    s = session(srv, output_modalities="text", reconnect=policy)
    window = s._proto.next_deadline()
    assert window is not None
    # A response that is still running when the rollover window opens.
    time.sleep(max(window - time.time() - 0.3, 0.0))
    s.send_text("my name is Ada")
    s.wait_for("response.done", TIMEOUT)
    ev = s.wait_for("local.connection.reconnecting", TIMEOUT, after=0)
    assert ev.data["cause"] == "rollover" and ev.data["delay_s"] == 0
    _wait_connected(s, 2)
    assert _answer(s, "who am I?") == "3 items; first: my name is Ada"
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    types = [e.type for e in rec.events]
    rolled = types.index("local.connection.reconnecting")
    closed = rec.events[rolled - 1]
    assert closed.type == "local.connection.closed"
    assert closed.data["initiated_by"] == "client" and closed.data["reason"] == "session rollover"
    # Not during the response: it had ended (and nothing else had started) before the close.
    assert types[:rolled].count("response.created") == types[:rolled].count("response.done") == 1
    assert closed.t_ns / 1e9 >= _of(rec, "response.done")[0].t_ns / 1e9
    # The server's cap never came: no session_expired on any connection.
    assert "error:session_expired" not in _lifecycle(rec)
    assert not [e for e in s.errors if e.code == "session_expired"]
    assert rec.state.errors == s.errors


# --- 4. close() never reconnects -----------------------------------------------------------------


def test_close_never_reconnects_even_while_a_reconnection_waits(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, reconnect=True)
    path = s.recording_path
    s.close()
    assert "connection.reconnecting" not in " ".join(_lifecycle(Recording.open(path)))
    # A reconnection waiting out its backoff is cancelled by close().
    s = session(srv, reconnect=ReconnectPolicy(first_delay_s=5.0, jitter=0.0))
    srv.drop_connections(1011)
    s.wait_for("local.connection.reconnecting", TIMEOUT, after=0)
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 2.0
    time.sleep(0.1)
    story = _lifecycle(Recording.open(s.recording_path))
    assert story == [
        "connection.opened",
        "connection.closed:1011",
        "connection.reconnecting:dropped",
        "session.closed",
    ]
    assert s.status == "closed"


# --- 5. giving up --------------------------------------------------------------------------------


def test_giving_up_after_n_attempts_is_a_recorded_error(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, reconnect=ReconnectPolicy(attempts=3, first_delay_s=0.05, max_delay_s=0.1))
    srv.stop()  # close 1001, and nothing listens any more
    ev = s.wait_for("local.connection.failed", TIMEOUT, after=0,
                    where=lambda e: "gave up" in e.data["message"])  # fmt: skip
    assert ev.data["message"].startswith(f"gave up reconnecting to {s.backend} after 3 attempts: ")
    assert "could not connect" in ev.data["message"]
    assert s.status == "error"
    with pytest.raises(SessionClosedError, match="reconnect"):
        s.send_text("anyone?")
    assert s.errors[-1].code == "connection_failed" and "gave up" in s.errors[-1].message
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    assert _lifecycle(rec) == [
        "connection.opened",
        "connection.closed:1001",
        *["connection.reconnecting:dropped", "connection.failed"] * 3,
        "connection.failed",
        "session.closed",
    ]
    assert [e.data["attempt"] for e in _of(rec, "local.connection.reconnecting")] == [1, 2, 3]
    assert rec.state.errors == s.errors


def test_a_refused_key_is_not_retried(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, reconnect=FAST)
    srv.api_key = "sk-another-key-entirely"  # the next handshake gets HTTP 401
    srv.drop_connections(1011)
    ev = s.wait_for("local.connection.failed", TIMEOUT, after=0,
                    where=lambda e: "gave up" in e.data["message"])  # fmt: skip
    assert "after 1 attempt: " in ev.data["message"] and "HTTP 401" in ev.data["message"]
    assert len(_of(s.recording(), "local.connection.reconnecting")) == 1


def test_reconnect_false_keeps_a_lost_connection_lost(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, reconnect=False)
    srv.drop_connections(1011)
    s.wait_for("local.connection.closed", TIMEOUT, after=0)
    time.sleep(0.1)
    assert s.status == "error"
    assert not _of(s.recording(), "local.connection.reconnecting")


# --- the widget says so --------------------------------------------------------------------------


def test_the_widget_shows_reconnecting_and_reconnected(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    from realtime_nb.widget import RealtimeWidget

    srv = local_server()
    s = session(srv, reconnect=ReconnectPolicy(first_delay_s=0.5, jitter=0.0))
    w = RealtimeWidget(s)
    seen: list[str] = []
    w.observe(lambda change: seen.append(change["new"]), names="status_text")
    notices: list[dict[str, Any]] = []

    def send(msg: dict[str, Any], buffers: Any = None) -> None:
        if msg["type"] == "notice":
            notices.append(msg)

    w.send = send
    w._on_msg(w, {"type": "ready", "view": "v"}, [])
    try:
        srv.drop_connections(1011)
        _wait_connected(s, 2)
        deadline = time.monotonic() + TIMEOUT
        while "Reconnected" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        w.close()
    assert "Reconnecting (attempt 1 of 6)…" in seen
    assert seen[-1] == "Reconnected"
    assert any("Reconnected" in n["text"] for n in notices)


# --- 6. the rollover decision, without a socket --------------------------------------------------


class Feed:
    """Drives a ClientProtocol as the shell does: each event, then what it sends and records fed
    back as client and local events."""

    def __init__(self, proto: ClientProtocol) -> None:
        self.proto = proto
        self.seq = itertools.count()

    def __call__(self, source: Source, data: dict[str, Any]) -> None:
        self.receive(source, data)
        self.settle()

    def receive(self, source: Source, data: dict[str, Any]) -> None:
        _, item_id, response_id = extract_ids(data)
        n = next(self.seq)
        self.proto.receive(Event(n, n * 1000, source, data["type"], data=data,
                                 item_id=item_id, response_id=response_id))  # fmt: skip

    def settle(self) -> None:
        while self.proto.wants_to_send or self.proto.has_work:
            for data, _ in self.proto.events_to_send():
                self.receive(Source.CLIENT, data)
            for data in self.proto.events_to_record():
                self.receive(Source.LOCAL, data)
            self.proto.calls_to_run()

    def connect(self, now: float, session: dict[str, Any] | None = None) -> None:
        self.proto.connection_made(now=now)
        self.settle()
        self(
            Source.SERVER,
            {"type": "session.created", "session": {"type": "realtime", **(session or {})}},
        )
        assert self.proto.ready


@pytest.fixture
def feed() -> Feed:
    return Feed(ClientProtocol(session_cap_s=100.0, rollover_margin_s=10.0))


def test_the_rollover_window_opens_margin_before_the_cap(feed: Feed) -> None:
    p = feed.proto
    assert p.next_deadline() is None  # not connected
    feed.connect(now=1000.0)
    assert p.cap_deadline() == 1100.0
    assert p.next_deadline() == 1090.0
    assert not p.rollover_due(1089.9)
    assert p.rollover_due(1090.0)
    # The server's expires_at, when earlier, wins; the margin is at most half the lifetime.
    feed(Source.SERVER, {"type": "session.updated", "session": {"expires_at": 1012}})
    assert p.cap_deadline() == 1012.0
    assert p.next_deadline() == 1006.0
    # A new connection starts a new lifetime (and forgets the old expires_at).
    p.connection_lost(1006, "", initiated_by="network", clean=False)
    assert p.next_deadline() is None and not p.rollover_due(10**10)
    feed.connect(now=2000.0)
    assert p.next_deadline() == 2090.0


def test_no_rollover_without_a_margin_or_a_clock() -> None:
    for proto, now in [
        (ClientProtocol(session_cap_s=100.0, rollover_margin_s=None), 0.0),
        (ClientProtocol(session_cap_s=100.0, rollover_margin_s=10.0), None),
        (ClientProtocol(session_cap_s=None, rollover_margin_s=10.0), 0.0),
    ]:
        f = Feed(proto)
        proto.connection_made(now=now)
        f.settle()
        f(Source.SERVER, {"type": "session.created", "session": {"type": "realtime"}})
        assert proto.next_deadline() is None
        assert not proto.rollover_due(10**10)
    # With only the server's expires_at, that is the cap.
    proto = ClientProtocol(session_cap_s=None, rollover_margin_s=10.0)
    Feed(proto).connect(now=0.0, session={"expires_at": 3600})
    assert proto.next_deadline() == 3590.0


def test_never_during_a_response_a_tool_call_speech_or_playback(feed: Feed) -> None:
    p = feed.proto
    p.tools = {}
    feed.connect(now=0.0)
    late = 95.0
    assert p.rollover_due(late)
    # A response requested, then running.
    p.request_response(client.response_create())
    feed.settle()
    assert not p.rollover_due(late)
    feed(Source.SERVER, {"type": "response.created", "response": {"id": "resp_1"}})
    assert not p.rollover_due(late)
    feed(Source.SERVER, {"type": "response.done", "response": {"id": "resp_1", "output": []}})
    assert p.rollover_due(late)
    # The user speaking (server VAD).
    feed(Source.SERVER, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                         "item_id": "item_u1"})  # fmt: skip
    assert not p.rollover_due(late)
    feed(Source.SERVER, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900,
                         "item_id": "item_u1"})  # fmt: skip
    assert p.rollover_due(late)
    # Assistant audio a player is still playing.
    feed(Source.LOCAL, {"type": "local.playback.started", "item_id": "item_a1"})
    assert not p.rollover_due(late)
    feed(Source.LOCAL, {"type": "local.playback.played", "item_id": "item_a1", "played_ms": 10,
                        "reason": "finished"})  # fmt: skip
    assert p.rollover_due(late)
    # A tool call running (an unknown tool fails at once, so declare one that must run).
    from realtime_nb.core.tools import tool

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return q

    p.tools = {"lookup": lookup}
    call = {"type": "function_call", "id": "item_c1", "call_id": "call_1", "name": "lookup",
            "arguments": '{"q": "x"}'}  # fmt: skip
    feed(Source.SERVER, {"type": "response.created", "response": {"id": "resp_2"}})
    feed(Source.SERVER, {"type": "response.done", "response": {"id": "resp_2", "output": [call]}})
    assert p.calls.running == 1
    assert not p.rollover_due(late)


def test_push_to_talk_audio_not_yet_committed_is_speech(feed: Feed) -> None:
    p = feed.proto
    feed.connect(now=0.0, session={"audio": {"input": {"turn_detection": None}}})
    assert p.rollover_due(95.0)
    feed(Source.CLIENT, client.input_audio_buffer_append("AAAA"))
    assert not p.rollover_due(95.0)
    feed(Source.CLIENT, client.input_audio_buffer_commit())
    assert p.rollover_due(95.0)


def test_which_endings_are_retried_and_what_is_recorded(feed: Feed) -> None:
    p = feed.proto
    feed.connect(now=0.0)
    assert p.worth_reconnecting(1011) and p.worth_reconnecting(1006)
    assert p.worth_reconnecting(1001) and p.worth_reconnecting(1012)
    assert not p.worth_reconnecting(1000) and not p.worth_reconnecting(1008)
    assert not p.worth_reconnecting(4000)
    feed(Source.SERVER, {"type": "error", "error": {"type": "invalid_request_error",
                         "code": "session_expired", "message": "expired"}})  # fmt: skip
    assert p.worth_reconnecting(1000)  # whatever the code, after the expiry
    p.connection_lost(1001, "expired", initiated_by="server", clean=True)
    p.reconnect_scheduled(1, 6, 0.0, "session_expired")
    feed.settle()
    state: ConversationState = p.state
    assert str(state.connection) == "connecting"
    assert state.local_events[-1][1:] == (
        "local.connection.reconnecting",
        {"type": "local.connection.reconnecting", "attempt": 1, "attempts": 6, "delay_s": 0.0,
         "cause": "session_expired", "url": None, "backend": "the server"},
    )  # fmt: skip
    message = p.reconnect_gave_up(6, "HTTP 503")
    feed.settle()
    assert message == "gave up reconnecting to the server after 6 attempts: HTTP 503"
    assert state.connection == "error"
    assert state.errors[-1].code == "connection_failed" and state.errors[-1].message == message
    assert retry_after_close(1000, expired=True) and not retry_after_close(1000, expired=False)
    assert not retry_after_refusal(401) and not retry_after_refusal(403)
    assert retry_after_refusal(None) and retry_after_refusal(503) and retry_after_refusal(429)


def test_the_policy_backoff_and_the_reconnect_argument() -> None:
    policy = ReconnectPolicy()
    assert [policy.delay(n, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, 0.999) == pytest.approx(0.25, abs=0.001)  # jitter: down to half
    assert ReconnectPolicy.coerce(True) == policy
    assert ReconnectPolicy.coerce(False) is None
    assert ReconnectPolicy.coerce(3) == ReconnectPolicy(attempts=3)
    assert ReconnectPolicy.coerce(FAST) is FAST
    with pytest.raises(ValueError, match="reconnect=0"):
        ReconnectPolicy.coerce(0)
    with pytest.raises(TypeError, match="ReconnectPolicy"):
        ReconnectPolicy.coerce("always")  # type: ignore[arg-type]  # the wrong type is the point
    for bad in ({"attempts": 0}, {"factor": 0.5}, {"jitter": 2}, {"session_cap_s": 0},
                {"first_delay_s": float("nan")}, {"rollover_margin_s": -1}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            ReconnectPolicy(**bad)
