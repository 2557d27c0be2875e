"""The server's lifecycle: the maximum session length, dropped connections, no thread left."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from realtime_nb.core.audio import AudioFormat
from realtime_nb.local import LocalServer
from realtime_nb.local._state import GenerateJob, RealtimeState, SpeakJob
from realtime_nb.local.responders import TextReply
from realtime_nb.local.tts import Speech

from .local_helpers import Client, connect, validate_server_event

TEXT_TURN = [
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        },
    },
    {"type": "response.create"},
]


# --- maximum session length, sans I/O (a fake clock) -----------------------------------------


def test_session_expires_at_its_cap_on_a_fake_clock() -> None:
    state = RealtimeState(max_session_s=1.0, created_at=1_000.0)
    state.start(now=10.0)
    assert state.events_to_send()[0]["session"]["expires_at"] == 1_001
    assert state.next_deadline() == 11.0
    # A reply whose 2 s of audio, paced in real time, starts 0.5 s before the cap.
    for frame in TEXT_TURN:
        state.receive(json.dumps(frame), 10.5)
    (job,) = state.jobs_to_run()
    assert isinstance(job, GenerateJob)
    fmt = AudioFormat.from_config({"type": "audio/pcm", "rate": 24000})
    speech = Speech("hello", bytes(fmt.bytes_for_ms(2000)), fmt)
    state.generation_done(job.response_id, [TextReply("hello")], 10.5)
    (speak,) = state.jobs_to_run()
    assert isinstance(speak, SpeakJob) and speak.fmt == fmt
    state.speech_done(job.response_id, Speech(speak.text, speech.audio, fmt), 10.5)
    events = state.events_to_send()
    while (deadline := state.next_deadline()) is not None:
        assert deadline <= 11.0
        state.poll(deadline)
        events += state.events_to_send()
    for e in events:
        validate_server_event(e)
    # The audio due before the cap went out (0.5 s: deltas at 0, 100 ... 500 ms), then the error.
    assert len([e for e in events if e["type"] == "response.output_audio.delta"]) == 6
    assert "response.done" not in [e["type"] for e in events]
    error = events[-1]
    assert error["type"] == "error"
    message = "Your session hit the maximum duration of 1 second."
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "session_expired",
        "message": message,
        "param": None,
        "event_id": None,
    }
    assert state.close_request == (1001, message)
    # Nothing more: frames are ignored, late job results and polls emit nothing.
    state.receive(json.dumps({"type": "response.create"}), 12.0)
    state.generation_done(job.response_id, [], 12.0)
    state.poll(100.0)
    assert state.events_to_send() == [] and state.jobs_to_run() == []


@pytest.mark.parametrize(
    ("cap", "words"),
    [(3600, "60 minutes"), (60, "1 minute"), (90, "90 seconds"), (1.5, "1.5 seconds")],
)
def test_session_expired_message_words_the_cap(cap: float, words: str) -> None:
    state = RealtimeState(max_session_s=cap)
    state.start(0.0)
    state.poll(cap)
    assert state.events_to_send()[-1]["error"]["message"] == (
        f"Your session hit the maximum duration of {words}."
    )


def test_no_cap_by_default_and_a_bad_cap_is_refused() -> None:
    state = RealtimeState()
    state.start(0.0)
    assert state.next_deadline() is None
    state.poll(10**9)
    assert state.close_request is None
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_session_s"):
            RealtimeState(max_session_s=bad)
        with pytest.raises(ValueError, match="max_session_s"):
            LocalServer(max_session_s=bad)


# --- maximum session length, over a WebSocket ------------------------------------------------


def test_session_expires_over_a_websocket() -> None:
    async def main(url: str) -> tuple[Client, float, ConnectionClosed]:
        start = time.monotonic()
        ws = await connect(url)
        c = Client(ws)
        await c.recv()
        for frame in TEXT_TURN:
            await c.send(frame)
        await c.until("response.done")
        await c.until("error", timeout=5)
        elapsed = time.monotonic() - start
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv(timeout=5)
        return c, elapsed, closed.value

    with LocalServer(fast=True, max_session_s=1.5) as server:
        c, elapsed, closed = asyncio.run(asyncio.wait_for(main(server.url), 30))
    assert 1.4 < elapsed < 3.0
    message = "Your session hit the maximum duration of 1.5 seconds."
    assert c.of("error")[0]["error"]["code"] == "session_expired"
    assert c.of("error")[0]["error"]["message"] == message
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, message)
    for e in c.events:
        validate_server_event(e)


# --- dropping connections --------------------------------------------------------------------


def test_drop_connections_with_a_code_or_without_a_close_frame() -> None:
    async def main(server: LocalServer) -> None:
        first = [Client(await connect(server.url)) for _ in range(2)]
        for c in first:
            await c.recv()
        assert server.drop_connections(1011, "test drop") == 2
        for c in first:
            with pytest.raises(ConnectionClosed) as closed:
                await c.recv(timeout=5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "test drop")
        # The server goes on: a new connection answers, then is aborted with no close frame.
        c = Client(await connect(server.url))
        await c.recv()
        for frame in TEXT_TURN:
            await c.send(frame)
        await c.until("response.done")
        assert server.drop_connections(None) == 1
        with pytest.raises(ConnectionClosed) as aborted:
            await c.until(lambda e: False, timeout=5)  # rate_limits.updated may come first
        assert aborted.value.rcvd is None  # no close frame: 1006 for the client
        await asyncio.sleep(0.2)
        assert server.drop_connections() == 0

    with LocalServer(fast=True) as server:
        asyncio.run(asyncio.wait_for(main(server), 30))
    assert LocalServer().drop_connections() == 0  # never started


# --- no thread left behind -------------------------------------------------------------------


def test_start_stop_cycles_leave_no_thread() -> None:
    async def turn(url: str) -> None:
        c = Client(await connect(url))
        await c.recv()
        for frame in TEXT_TURN:
            await c.send(frame)
        await c.until("response.done")
        await c.ws.close()

    before = set(threading.enumerate())
    server = LocalServer(fast=True)
    for _ in range(20):
        server.start()
        asyncio.run(asyncio.wait_for(turn(server.url), 30))  # the job threads get work
        server.stop()
    for _ in range(10):  # and fresh servers, used from a with block
        with LocalServer(fast=True) as other:
            asyncio.run(asyncio.wait_for(turn(other.url), 30))
    left = [t for t in threading.enumerate() if t not in before]
    assert left == [], [t.name for t in left]
