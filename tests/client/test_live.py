"""Session against the real local server over loopback: every scenario is checked on the
recording read back from disk, not only on the live state."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from realtime_nb.client._policies import PlaybackModel
from realtime_nb.client.session import Session, SessionClosedError
from realtime_nb.core.protocol import Source
from realtime_nb.core.tools import tool
from realtime_nb.local import Responder, ResponseRequest, TextReply
from realtime_nb.storage.recording import Recording

from .session_constants import KEY, WAV

TIMEOUT = 20.0


def _types(rec: Recording, source: Source | None = None) -> list[str]:
    return [e.type for e in rec.events if source is None or e.source is source]


def _silence(ms: int) -> np.ndarray:
    return np.zeros(24 * ms, dtype=np.float32)


def test_spoken_turn_with_server_vad(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, instructions="Be brief.", turn_detection="server_vad", transcription=True)
    sent_ms = s.send_audio(WAV)
    s.send_audio(_silence(1200))  # end of speech for the VAD
    done = s.wait_for("response.done", TIMEOUT)
    assert done.data["response"]["status"] == "completed"
    assert sent_ms > 3000
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    types = _types(rec)
    for t in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.output_audio.delta",
        "response.done",
    ):
        assert t in types, t
    assert "input_audio_buffer.commit" not in _types(rec, Source.CLIENT)  # the server committed
    appended = b"".join(e.audio or b"" for e in rec.events if e.type == "input_audio_buffer.append")
    assert (
        len(appended) == 2 * 24 * (int(sent_ms) + 1200)
        or abs(len(appended) / 48 - sent_ms - 1200) < 1
    )
    user = [it for it in rec.state.items if it.role == "user"]
    assert len(user) == 1
    assert user[0].content[0].type == "input_audio"
    assert any(it.role == "assistant" and it.transcript for it in rec.state.items)
    assert len(rec.audio("user")) > 0


def test_push_to_talk(local_server: Callable[..., Any], session: Callable[..., Any]) -> None:
    srv = local_server()
    s = session(srv, turn_detection=None, output_modalities="text")
    s.send_audio(WAV)
    s.commit()
    s.respond()
    s.wait_for("response.done", TIMEOUT)
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    client_types = _types(rec, Source.CLIENT)
    assert client_types[0] == "session.update"
    upd = next(e for e in rec.events if e.type == "session.update")
    assert upd.data["session"]["audio"]["input"]["turn_detection"] is None
    assert client_types.index("input_audio_buffer.commit") < client_types.index("response.create")
    assert "input_audio_buffer.speech_started" not in _types(rec, Source.SERVER)
    assert "input_audio_buffer.committed" in _types(rec, Source.SERVER)
    assert rec.state.responses
    assert all(r.status == "completed" for r in rec.state.responses.values())


@pytest.mark.usefixtures("priced_local")
def test_text_turns_queue_response_requests(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, output_modalities="audio", voice="alloy")
    # Three turns without waiting: the 2nd and 3rd response.create must wait for response.done.
    s.send_text("first")
    s.send_text("second")
    s.send_text("third")
    s.wait_until_idle(TIMEOUT)
    assert len(s.conversation.responses) == 3
    assert s.cost.total is not None
    assert s.cost.total > 0
    assert len(s.cost.responses) == 3
    assert s.usage.total.total_tokens > 0
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    errors = [e for e in rec.events if e.type == "error"]
    assert errors == []
    seq = [
        (e.type, e.source)
        for e in rec.events
        if e.type in ("response.create", "response.created", "response.done")
    ]
    # Never two response.create without a response.done in between.
    active = False
    for t, _src in seq:
        if t == "response.create":
            assert not active
            active = True
        elif t == "response.done":
            active = False
    # Items are not held back (only response.create is): the 2nd response already sees "third".
    texts = [it.transcript for it in rec.state.items if it.role == "assistant"]
    assert texts == ["You said: first", "You said: third", "You said: third"]


@tool
def get_weather(city: str) -> str:
    """Look up the weather for a city."""
    return f"foggy in {city}"


@tool(timeout=5)
async def get_time(city: str, fmt: str = "24h") -> dict[str, str]:
    """What time is it in a city.

    Args:
        city: the city.
        fmt: 12h or 24h.
    """
    await asyncio.sleep(0.01)
    return {"city": city, "time": "12:00", "fmt": fmt}


RULES = [
    {
        "pattern": r"weather in (?P<city>\w+)",
        "call": "get_weather",
        "arguments": {"city": "{city}"},
    },
    {"pattern": r"time in (?P<city>\w+)", "call": "get_time", "arguments": {"city": "{city}"}},
    {"pattern": r"explode", "call": "explode", "arguments": {"why": "test"}},
    {"pattern": r"slow", "call": "slow", "arguments": {}},
]


def test_tool_round_trip_sync_and_async(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(responder="rules", rules=RULES)
    s = session(srv, tools=[get_weather, get_time], output_modalities="text")
    s.send_text("what is the weather in Paris")
    s.wait_until_idle(TIMEOUT)
    s.send_text("what time in Oslo")
    s.wait_until_idle(TIMEOUT)
    assert threading.current_thread() is threading.main_thread()
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    outputs = [
        e.data["item"]
        for e in rec.events
        if e.type == "conversation.item.create" and e.data["item"]["type"] == "function_call_output"
    ]
    assert outputs[0]["output"] == "foggy in Paris"
    assert json.loads(outputs[1]["output"]) == {"city": "Oslo", "time": "12:00", "fmt": "24h"}
    finished = [e.data for e in rec.events if e.type == "local.tool.finished"]
    assert [f["name"] for f in finished] == ["get_weather", "get_time"]
    assert all(f["error"] is None for f in finished)
    answers = [it.text for it in rec.state.items if it.role == "assistant"]
    assert answers == [
        "The tool said: foggy in Paris",
        'The tool said: {"city": "Oslo", "time": "12:00", "fmt": "24h"}',
    ]
    # Each call got exactly one follow-up response.create, after its output.
    client_types = _types(rec, Source.CLIENT)
    assert client_types.count("response.create") == 4


def test_failing_and_timing_out_tools(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    @tool
    def explode(why: str) -> str:
        """Always fails."""
        raise RuntimeError(f"boom because {why}")

    @tool(timeout=0.2)
    async def slow() -> str:
        """Never finishes in time."""
        await asyncio.sleep(10)
        return "late"

    srv = local_server(responder="rules", rules=RULES)
    s = session(srv, tools=[explode, slow], output_modalities="text")
    s.send_text("please explode")
    s.wait_until_idle(TIMEOUT)
    s.send_text("be slow")
    s.wait_until_idle(TIMEOUT)
    errs = [e for e in s.errors if e.type == "tool_error"]
    assert len(errs) == 2
    assert "boom because test" in errs[0].message
    assert "did not finish within 0.2 s" in errs[1].message
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    outs = [
        json.loads(e.data["item"]["output"])
        for e in rec.events
        if e.type == "conversation.item.create" and e.data["item"]["type"] == "function_call_output"
    ]
    assert outs == [
        {"error": "RuntimeError: boom because test"},
        {"error": "slow did not finish within 0.2 s"},
    ]
    finished = [e.data for e in rec.events if e.type == "local.tool.finished"]
    assert all(f["error"] for f in finished)
    # The model was told and answered anyway: the conversation went on.
    assert sum(1 for it in rec.state.items if it.role == "assistant") == 2


def test_slow_sync_tool_does_not_freeze_the_conversation(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    release = threading.Event()

    @tool
    def slow() -> str:
        """Blocks until released (runs in a worker thread)."""
        release.wait(10)
        return "done at last"

    srv = local_server(responder="rules", rules=RULES)
    s = session(srv, tools=[slow], output_modalities="text")
    s.send_text("be slow")
    s.wait_for("local.tool.started", TIMEOUT)
    s.wait_for("response.done", TIMEOUT)  # the function-call response
    s.send_text("still there?")  # the user keeps talking while the tool runs
    ev = s.wait_for("response.done", TIMEOUT)
    assert ev.data["response"]["output"][0]["content"][0]["text"] == "You said: still there?"
    release.set()
    s.wait_until_idle(TIMEOUT)
    assert s.conversation.items[-1].text == "The tool said: done at last"
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    t = _types(rec)
    second_done = [i for i, x in enumerate(t) if x == "response.done"][1]
    assert t.index("local.tool.finished") > second_done  # the tool outlived the 2nd turn


def test_interruption_truncates_to_what_was_heard(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    long_text = "This is a long answer that goes on and on. " * 6
    srv = local_server(responder="rules", rules=[{"pattern": "story", "reply": long_text}])
    s = session(
        srv,
        turn_detection={"type": "server_vad", "interrupt_response": True, "create_response": False},
    )
    s.send_text("tell me a story")
    first = s.wait_for("response.output_audio.delta", TIMEOUT)
    item_id = first.item_id
    time.sleep(0.3)  # "hearing" the first 300 ms
    s.send_audio(WAV)  # the user talks over it
    truncate = s.wait_for("conversation.item.truncate", TIMEOUT)
    s.wait_for("conversation.item.truncated", TIMEOUT)
    heard = truncate.data["audio_end_ms"]
    received = PlaybackModel.received_ms(s.conversation, item_id)
    assert isinstance(heard, int)
    assert 300 <= heard < received
    # An explicit truncate is floored and clamped to the audio received.
    assert s.truncate(item_id, 10**9 + 0.7) == int(received)
    with pytest.raises(ValueError, match="no audio was received"):
        s.truncate("item_nope", 10)
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    truncs = [e.data for e in rec.events if e.type == "conversation.item.truncate"]
    assert truncs[0]["item_id"] == item_id
    assert truncs[0]["audio_end_ms"] == heard
    assert all(isinstance(t["audio_end_ms"], int) for t in truncs)
    assert rec.state.item(item_id).truncated_ms is not None


def test_dropped_connection_and_reconnect_keep_the_conversation(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    class Remember(Responder):
        def respond(self, request: ResponseRequest) -> list[Any]:
            texts = [
                p.get("text") or p.get("transcript") or ""
                for it in request.items
                if it.get("role") == "user"
                for p in it.get("content", [])
            ]
            return [TextReply(f"{len(request.items)} items; first: {texts[0] if texts else ''}")]

    srv = local_server(responder=Remember())
    s = session(srv, output_modalities="text", instructions="remember", reconnect=False)
    s.send_text("my name is Ada")
    s.wait_until_idle(TIMEOUT)
    before = [it.id for it in s.conversation.items]
    assert len(before) == 2
    # Drop the TCP connection without a close frame (a network failure).
    s._loop.call_soon_threadsafe(lambda: s._ws.transport.abort())
    ev = s.wait_for("local.connection.closed", TIMEOUT, after=0)
    assert ev.data["code"] == 1006
    deadline = time.monotonic() + 5
    while s.status != "error" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.status == "error"
    assert any(e.type == "connection_closed" for e in s.errors)
    with pytest.raises(SessionClosedError, match="reconnect"):
        s.send_text("anyone?")
    s.reconnect()
    assert s.status == "connected"
    s.send_text("who am I?")
    done = s.wait_for("response.done", TIMEOUT)
    text = done.data["response"]["output"][0]["content"][0]["text"]
    assert text == "3 items; first: my name is Ada"
    assert [it.id for it in s.conversation.items][:2] == before
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    t = _types(rec)
    assert t.count("local.connection.opened") == 2
    assert t.count("session.created") == 2
    second = t.index("session.created", t.index("local.connection.closed"))
    seeded = [e.data["item"] for e in rec.events[second:] if e.type == "conversation.item.create"]
    assert [i["id"] for i in seeded[:2]] == before
    assert seeded[1]["content"] == [
        {"type": "output_text", "text": "1 items; first: my name is Ada"}
    ]
    # The recording's state has each item once, in order, plus the new turn.
    assert [it.id for it in rec.state.items][:2] == before
    assert len(rec.state.items) == 4


def test_server_close_is_surfaced(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, reconnect=False)
    srv.__exit__(None, None, None)  # the server goes away: close code 1001
    ev = s.wait_for("local.connection.closed", TIMEOUT, after=0)
    assert ev.data["code"] == 1001
    assert ev.data["initiated_by"] == "server"
    deadline = time.monotonic() + 5
    while s.status != "error" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.status == "error"
    assert "code 1001" in s.errors[-1].message
    path = s.recording_path
    s.close()
    assert Recording.open(path).state.connection_closed["code"] == 1001  # type: ignore[index]  # not None after a close: the test's premise


def test_server_error_events_are_recorded_and_surfaced(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv)
    update_id = s.update(voice="not-a-voice", instructions="x")
    s.cancel()  # nothing active: nothing sent
    s.send_event(
        {"type": "conversation.item.delete", "event_id": "evt_bad1", "item_id": "item_missing"}
    )
    err = s.wait_for("error", TIMEOUT, where=lambda e: e.data["error"]["event_id"] == "evt_bad1")
    assert err.data["error"]["event_id"] == "evt_bad1"
    assert {e.event_id for e in s.errors} == {update_id, "evt_bad1"}
    assert s.status == "connected"
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    assert rec.state.errors
    assert "response.cancel" not in _types(rec, Source.CLIENT)


def test_wrong_key_is_refused_without_leaking_it(
    local_server: Callable[..., Any], tmp_path: Any
) -> None:
    srv = local_server()
    with pytest.raises(SessionClosedError, match="HTTP 401") as exc:
        Session(url=srv.url, api_key=KEY + "x", record=tmp_path / "bad.arrow")
    assert KEY not in str(exc.value)
    assert KEY not in repr(exc.value)
    assert KEY.encode() not in (tmp_path / "bad.arrow").read_bytes()


def test_two_sessions_side_by_side(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server(
        responder="rules",
        rules=[{"pattern": ".", "reply": "A says {text}", "instructions": "prompt A"}],
    )
    a = session(srv, instructions="prompt A", output_modalities="text")
    b = session(srv, instructions="prompt B", output_modalities="text")
    a.send_text("hi")
    b.send_text("hi")
    a.wait_until_idle(TIMEOUT)
    b.wait_until_idle(TIMEOUT)
    assert a.conversation.items[-1].text == "A says hi"
    assert b.conversation.items[-1].text == "You said: hi"
    assert a.recording_path != b.recording_path
    a.close()
    assert a.status == "closed"
    assert b.status == "connected"
    b.send_text("still here")
    b.wait_until_idle(TIMEOUT)
    assert b.conversation.items[-1].text == "You said: still here"


def test_async_api(local_server: Callable[..., Any], session: Callable[..., Any]) -> None:
    srv = local_server()
    s = session(srv, output_modalities="text", wait=False)

    async def main() -> list[str]:
        async with s:
            seen: list[str] = []

            async def consume() -> None:
                async for ev in s:
                    seen.append(ev.type)
                    if ev.type == "response.done":
                        return

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            await s.asend_text("hello async")
            ev = await s.await_for("response.done", TIMEOUT)
            await asyncio.wait_for(task, TIMEOUT)
            assert ev.data["response"]["status"] == "completed"
            return seen

    seen = asyncio.run(main())
    assert "conversation.item.create" in seen
    assert seen[-1] == "response.done"
    assert s.status == "closed"


def test_no_key_no_url_starts_the_embedded_local_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    import realtime_nb.client.session as session_module

    monkeypatch.setattr(session_module, "_local_notice_shown", False)
    with Session(record=False, output_modalities="text") as a, Session(record=False) as b:
        assert a.backend == "local backend (no API key)"
        assert a.status == "connected"
        a.send_text("hello")
        assert a.wait_for("response.done", TIMEOUT).data["response"]["status"] == "completed"
        assert b.status == "connected"
        assert a.recording_path is None
    err = capsys.readouterr().err
    assert err.count("using the embedded local server") == 1  # said once, not per session


def test_recording_of_a_live_session_is_the_same_view_as_a_saved_one(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, output_modalities="text")
    s.send_text("hello there")
    s.wait_until_idle(TIMEOUT)
    live = s.recording()  # while the session is still open
    assert not live.complete
    assert [i.text for i in live.state.items] == [i.text for i in s.conversation.items]
    assert live.state.usage == s.conversation.usage
    s.close()
    saved = s.recording()
    assert saved.complete
    assert [i.text for i in saved.state.items] == [i.text for i in live.state.items]
    unrecorded = session(srv, record=False)
    with pytest.raises(ValueError, match="not recorded"):
        unrecorded.recording()


def test_wait_until_heard_waits_for_a_ready_player_and_not_without_one(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    srv = local_server()
    s = session(srv, output_modalities="audio")
    # No player: heard as soon as idle.
    s.send_text("hello")
    s.wait_until_heard(TIMEOUT)
    assert s.idle
    # A player (what the widget logs when its view is ready) that plays the next answer.
    s.log_local("local.player.ready", {"view": "v1"})
    s.wait_for("local.player.ready", TIMEOUT)
    s.send_text("again")
    first = s.wait_for("response.output_audio.delta", TIMEOUT)
    s.log_local("local.playback.started", {"item_id": first.item_id})
    s.wait_for("local.playback.started", TIMEOUT)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (s.wait_until_heard(TIMEOUT), done.set()))
    waiter.start()
    s.wait_until_idle(TIMEOUT)
    assert not done.wait(0.5), "returned while the player was still playing"
    s.log_local(
        "local.playback.played", {"item_id": first.item_id, "played_ms": 500, "reason": "ended"}
    )
    assert done.wait(TIMEOUT)
    waiter.join()
    s.send_text("once more")
    item = s.wait_for("response.output_audio.delta", TIMEOUT).item_id
    s.log_local("local.playback.started", {"item_id": item})
    s.wait_for("local.playback.started", TIMEOUT, where=lambda ev: ev.data["item_id"] == item)
    s.wait_until_idle(TIMEOUT)
    with pytest.raises(TimeoutError, match=f"still playing {item}"):
        s.wait_until_heard(0.5)
