"""WebRTC calls of the local server, end to end over loopback with real parts.

A Python aiortc peer plays the browser: it posts its offer to the running ``LocalServer``'s calls
endpoint, speaks the fixture WAVs on its microphone track (Opus, paced in real time), reads the
``oai-events`` data channel and records the speech track it receives (Opus decoded back to 24 kHz
PCM16). Sidebands are plain WebSocket clients with ``?call_id=``. Every server event from a data
channel or a sideband is validated against ``openai.types.realtime``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime_nb.local import LocalServer
from realtime_nb.local._http import MAX_BODY_BYTES

from .local_helpers import (
    DESCRIPTION_WAV,
    EVENT_TIMEOUT_S,
    energy_boundaries,
    read_wav,
    silence,
    validate_server_event,
)

aiortc = pytest.importorskip("aiortc")  # the [webrtc] extra; CI installs it (the [test] extra)
from aiortc import (  # noqa: E402  # after the skip: the extra may be missing
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from av import AudioFrame, AudioResampler  # noqa: E402

from realtime_nb.local._webrtc import JITTER_PREFETCH  # noqa: E402  # imports aiortc

JSON = dict[str, Any]
RATE = 24000
FRAME = RATE // 50  # 20 ms, what a browser sends
#: A tool the ToolWordsResponder calls when the user says its name ("weather").
WEATHER_TOOL: JSON = {
    "type": "function",
    "name": "get_weather",
    "description": "Look up the weather.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
LONG_TEXT = (
    "Please tell me a long and winding story about the sea and the sky, "
    "with ships and storms and the light over the water at the end of the day."
)


class Mic(MediaStreamTrack):
    """A microphone: PCM16 24 kHz queued with :meth:`say`, sent in 20 ms frames in real time,
    silence in between (a browser's mic track never pauses)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue = bytearray()
        self._start: float | None = None
        self._pts = 0
        self._fresh = True  # the next queued audio starts a new utterance
        self.spoken = asyncio.Event()  # set when the queue runs dry
        self.said_at_ms: list[float] = []  # track time (ms) of each say()'s first frame

    def say(self, pcm: bytes) -> None:
        self._queue += pcm
        self.spoken.clear()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            await asyncio.sleep(max(self._start + self._pts / RATE - time.monotonic(), 0))
        chunk = bytes(self._queue[: 2 * FRAME])
        del self._queue[: 2 * FRAME]
        if chunk and self.spoken.is_set() is False and self._fresh:
            self.said_at_ms.append(self._pts * 1000 / RATE)
        self._fresh = not chunk
        if not self._queue:
            self.spoken.set()
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk + bytes(2 * FRAME - len(chunk)))
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class Browser:
    """The browser's side of a call: peer connection, mic, data channel, remote track."""

    def __init__(self, data_channel: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = Mic()
        self.pc.addTrack(self.mic)
        self.events: list[JSON] = []
        self.times: list[float] = []  # arrival (monotonic) of each event
        self._arrived = asyncio.Event()
        self.heard = bytearray()  # the remote track, decoded to 24 kHz PCM16
        self.heard_at: list[tuple[float, int]] = []  # (arrival, byte offset in heard)
        self.call_id = ""
        self._tasks: list[asyncio.Task[None]] = []
        if data_channel:
            channel = self.pc.createDataChannel("oai-events")
            channel.on("message", self._on_message)
            self.channel = channel
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        validate_server_event(event)
        self.events.append(event)
        self.times.append(time.monotonic())
        self._arrived.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                self.heard_at.append((time.monotonic(), len(self.heard)))
                self.heard += out.to_ndarray().tobytes()[: 2 * out.samples]

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def call(
        self, server: LocalServer, session: JSON | None = None, raw: bool = False
    ) -> httpx.Response:
        """Post the offer (multipart with ``session``, or raw SDP) and take the answer."""
        sdp = await self.offer()
        async with httpx.AsyncClient() as http:
            if raw:
                response = await http.post(
                    server.calls_url, content=sdp, headers={"Content-Type": "application/sdp"}
                )
            else:
                files: dict[str, Any] = {"sdp": (None, sdp)}
                if session is not None:
                    files["session"] = (None, json.dumps(session))
                response = await http.post(server.calls_url, files=files)
        assert response.status_code == 201, response.text
        await self.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        self.call_id = response.headers["Location"].rsplit("/", 1)[1]
        return response

    async def until(self, match: str | Callable[[JSON], bool], after: int = 0) -> JSON:
        """The first event from index ``after`` on matching ``match``, waiting for it."""
        pred = match if callable(match) else (lambda e: e["type"] == match)
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        seen = after
        while True:
            for event in self.events[seen:]:
                if pred(event):
                    return event
            seen = len(self.events)
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {match!r} among {self.types()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def time_of(self, event: JSON) -> float:
        return self.times[next(i for i, e in enumerate(self.events) if e is event)]

    def heard_between(self, t0: float, t1: float) -> bytes:
        """The remote audio that arrived between monotonic times ``t0`` and ``t1``."""
        offsets = [off for t, off in self.heard_at if t0 <= t <= t1]
        return bytes(self.heard[offsets[0] : offsets[-1]]) if len(offsets) > 1 else b""

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Sideband:
    """A server-side WebSocket attached to a call, recording (and validating) its events."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[JSON] = []

    async def send(self, event: JSON) -> None:
        await self.ws.send(json.dumps(event))

    async def until(self, match: str | Callable[[JSON], bool]) -> JSON:
        pred = match if callable(match) else (lambda e: e["type"] == match)
        while True:
            event = json.loads(await asyncio.wait_for(self.ws.recv(), EVENT_TIMEOUT_S))
            validate_server_event(event)
            self.events.append(event)
            if pred(event):
                return event

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


@contextlib.asynccontextmanager
async def sideband(server: LocalServer, call_id: str, **kwargs: Any) -> AsyncIterator[Sideband]:
    async with websockets.connect(f"{server.url}?call_id={call_id}", **kwargs) as ws:
        yield Sideband(ws)


@contextlib.asynccontextmanager
async def browser(data_channel: bool = True) -> AsyncIterator[Browser]:
    peer = Browser(data_channel)
    try:
        yield peer
    finally:
        await peer.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer("tools", fast=True) as srv:
        yield srv


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def speech_regions(pcm: bytes, gap_ms: int = 400, level: int = 500) -> list[tuple[int, int]]:
    """``(start_ms, end_ms)`` of each stretch of sound in ``pcm`` (20 ms frames peaking above
    ``level``), stretches less than ``gap_ms`` apart joined (pauses between words and segments)."""
    x = np.frombuffer(pcm, "<i2")
    frames = np.abs(x[: len(x) // FRAME * FRAME].reshape(-1, FRAME).astype(np.int32)).max(axis=1)
    regions: list[list[int]] = []
    for i in np.flatnonzero(frames > level):
        ms = int(i) * 20
        if regions and ms - regions[-1][1] <= gap_ms:
            regions[-1][1] = ms + 20
        else:
            regions.append([ms, ms + 20])
    return [(a, b) for a, b in regions]


def speech_ms(pcm: bytes) -> float:
    """Milliseconds from the first to the last speech in ``pcm`` (padded with silence, so that
    the energy floor is silence even for audio that is speech from end to end)."""
    start, end = energy_boundaries(silence(600) + pcm + silence(600))
    return end - start


# --- the spoken conversation -------------------------------------------------------------------


def test_spoken_turn_over_webrtc(server: LocalServer, weather_pcm: bytes) -> None:
    """Speech on the mic track -> VAD turn, transcript and answer on the data channel, and the
    answer's speech on the remote track, as long as the audio the server made for it."""

    async def main() -> tuple[Browser, httpx.Response, bytes]:
        async with browser() as peer:
            response = await peer.call(
                server,
                session={
                    "type": "realtime",
                    "instructions": "Answer briefly.",
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                },
            )
            await peer.until("session.created")
            # The call's receiver passes each Opus frame on as soon as the next shows it
            # complete (aiortc's default waits for 4: 80 ms more on every frame).
            (call,) = server._calls.values()
            jitter = call.pc.getTransceivers()[0].receiver._RTCRtpReceiver__jitter_buffer
            assert jitter._prefetch == JITTER_PREFETCH == 1
            peer.mic.say(silence(300) + weather_pcm + silence(900))
            done = await peer.until("output_audio_buffer.stopped")
            # The item's audio as the server made it, fetched over a sideband.
            async with sideband(server, peer.call_id) as side:
                item_id = next(e for e in peer.events if e["type"] == "response.done")["response"][
                    "output"
                ][0]["id"]
                await side.send({"type": "conversation.item.retrieve", "item_id": item_id})
                retrieved = await side.until("conversation.item.retrieved")
            made = base64.b64decode(retrieved["item"]["content"][0]["audio"])
            assert done["type"] == "output_audio_buffer.stopped"
            await asyncio.sleep(0.3)  # the track's last packets
            return peer, response, made

    peer, response, made = run(main())
    assert response.headers["Content-Type"] == "application/sdp"
    assert response.headers["Location"] == f"/v1/realtime/calls/{peer.call_id}"
    assert peer.call_id.startswith("rtc_") and len(peer.call_id) == 36
    types = peer.types()
    assert types[0] == "session.created"
    created = peer.events[0]["session"]
    assert created["instructions"] == "Answer briefly."  # the form's session, applied
    assert created["audio"]["input"]["transcription"]["model"] == "whisper-1"
    assert "response.output_audio.delta" not in types  # the audio went on the track
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.created",
        "conversation.item.input_audio_transcription.completed",
        "output_audio_buffer.started",
        "response.done",
        "output_audio_buffer.stopped",
    ]
    positions = [types.index(t) for t in order]
    assert positions == sorted(positions), types
    stopped = next(e for e in peer.events if e["type"] == "input_audio_buffer.speech_stopped")
    # 300 ms of silence, then the ~3.3 s utterance: the turn ends on the input timeline there.
    assert 3000 <= stopped["audio_end_ms"] <= 4600
    heard = next(
        e
        for e in peer.events
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    )["transcript"]
    assert "weather" in heard.lower()
    started = next(e for e in peer.events if e["type"] == "output_audio_buffer.started")
    ended = next(e for e in peer.events if e["type"] == "output_audio_buffer.stopped")
    done = next(e for e in peer.events if e["type"] == "response.done")["response"]
    assert started["response_id"] == ended["response_id"] == done["id"]
    # Played in real time, never faster: started..stopped spans the audio the server made for
    # the item. Both events cross the data channel, and the peer times their arrival: a late
    # `started` (a slow callback; asyncio debug mode logs ones over 100 ms on a busy 2-core
    # machine, and one cost 109 ms here) shortens the span by as much, hence 250 ms of slack.
    # A reply sent faster than real time is far outside it (a burst spans almost nothing).
    made_ms = len(made) / 2 / RATE * 1000
    assert made_ms > 1000
    span_ms = (peer.time_of(ended) - peer.time_of(started)) * 1000
    assert span_ms >= made_ms - 250, (span_ms, made_ms)
    # The remote track carried that speech: same length of speech after Opus both ways.
    answer = peer.heard_between(peer.time_of(started) - 0.1, peer.time_of(ended) + 0.5)
    assert abs(speech_ms(answer) - speech_ms(made)) <= 120
    # The browser went away: the call ended with it.
    assert wait_for(lambda: peer.call_id not in server.call_ids)


def test_tool_call_over_a_sideband(server: LocalServer, weather_pcm: bytes) -> None:
    """The user asks by voice; the sideband sees the function call and answers it; the spoken
    answer comes back on the data channel and the track."""

    async def main() -> tuple[Browser, Sideband]:
        async with browser() as peer:
            await peer.call(server, session={"type": "realtime", "tools": [WEATHER_TOOL]})
            async with sideband(server, peer.call_id) as side:
                # As the recorded sideband sessions begin: the server's first word on it is
                # the answer to this update.
                await side.send(
                    {
                        "type": "session.update",
                        "session": {"type": "realtime", "instructions": "Use tools."},
                    }
                )
                await side.until("session.updated")
                peer.mic.say(silence(300) + weather_pcm + silence(900))
                call = await side.until("response.function_call_arguments.done")
                await side.until("response.done")
                await side.send(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "function_call_output",
                            "call_id": call["call_id"],
                            "output": "sunny and warm",
                        },
                    }
                )
                await side.send({"type": "response.create"})
                await side.until(
                    lambda e: (
                        e["type"] == "response.output_audio_transcript.done"
                        and "sunny" in e["transcript"]
                    )
                )
                await peer.until("output_audio_buffer.stopped", after=len(peer.events) - 1)
                await side.until("output_audio_buffer.stopped")
                return peer, side

    peer, side = run(main())
    assert side.events[0]["type"] == "session.updated"  # no session.created on a sideband
    assert "session.created" not in side.types()
    assert "response.output_audio.delta" not in side.types()
    call = next(e for e in side.events if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "get_weather"
    answer = next(
        e
        for e in peer.events
        if e["type"] == "response.output_audio_transcript.done" and "sunny" in e["transcript"]
    )
    assert answer["transcript"] == "The tool said: sunny and warm"
    # The data channel saw the sideband's doing, and the sideband the data channel's: one session.
    side_ids = {e["event_id"] for e in side.events}
    assert answer["event_id"] in side_ids
    assert peer.types().count("output_audio_buffer.started") == 1  # only the spoken answer


def test_barge_in_truncates_where_the_user_stopped_hearing(
    server: LocalServer, weather_pcm: bytes
) -> None:
    async def main() -> Browser:
        async with browser() as peer:
            await peer.call(server)
            await peer.until("session.created")
            async with sideband(server, peer.call_id) as side:
                await side.send(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": LONG_TEXT}],
                        },
                    }
                )
                await side.send({"type": "response.create"})
                await peer.until("output_audio_buffer.started")
                await asyncio.sleep(1.0)
                peer.mic.say(weather_pcm + silence(900))
                cleared = await peer.until("output_audio_buffer.cleared")
                # The answer to the interruption starts playing: its first half second is enough.
                await peer.until("output_audio_buffer.started", after=peer.events.index(cleared))
                for _ in range(200):  # until its sound arrives after the first reply's
                    if len(speech_regions(bytes(peer.heard))) >= 2:
                        break
                    await asyncio.sleep(0.05)
                return peer

    peer = run(main())
    types = peer.types()
    first = next(e for e in peer.events if e["type"] == "output_audio_buffer.started")
    speech = next(e for e in peer.events if e["type"] == "input_audio_buffer.speech_started")
    truncated = next(e for e in peer.events if e["type"] == "conversation.item.truncated")
    cleared = next(e for e in peer.events if e["type"] == "output_audio_buffer.cleared")
    i_speech, i_trunc, i_clear = (peer.events.index(e) for e in (speech, truncated, cleared))
    assert i_speech < i_trunc < i_clear
    assert cleared["response_id"] == first["response_id"]
    item = next(e for e in peer.events if e["type"] == "response.output_item.added")["item"]
    assert truncated["item_id"] == item["id"] and truncated["content_index"] == 0
    # The user spoke a second into a reply of several: audio_end_ms is within the reply (the
    # track runs in real time, minus whatever stalls the shared machine gives the event loop).
    end_ms = truncated["audio_end_ms"]
    assert 400 <= end_ms <= 1000 + speech_ms(weather_pcm)
    # On the track as received: the first reply's speech lasts audio_end_ms, then silence until
    # the answer to the interruption (the user's ~3 s turn and its recognition in between).
    regions = speech_regions(bytes(peer.heard))
    assert len(regions) >= 2, regions
    (start, end), (next_start, _) = regions[0], regions[1]
    assert abs((end - start) - end_ms) <= 150, (regions, end_ms)
    assert next_start - end >= 1000, regions
    # The first reply was not played to its end: no stopped for it, and it was cut short.
    assert not any(
        e["type"] == "output_audio_buffer.stopped" and e["response_id"] == first["response_id"]
        for e in peer.events
    )
    assert "response.output_audio.delta" not in types


# --- the endpoint -----------------------------------------------------------------------------


def test_raw_sdp_offer_hangup_and_after(server: LocalServer) -> None:
    async def main() -> tuple[Browser, Sideband, httpx.Response, httpx.Response, Any]:
        async with browser() as peer:
            await peer.call(server, raw=True)
            await peer.until("session.created")
            assert peer.call_id in server.call_ids
            async with sideband(server, peer.call_id) as side:
                async with httpx.AsyncClient() as http:
                    hangup = await http.post(f"{server.calls_url}/{peer.call_id}/hangup")
                    with pytest.raises(ConnectionClosed):
                        await side.until("never")
                    again = await http.post(f"{server.calls_url}/{peer.call_id}/hangup")
                with pytest.raises(InvalidStatus) as late:
                    await websockets.connect(f"{server.url}?call_id={peer.call_id}")
                for _ in range(100):  # the peer learns the call is over (DTLS close)
                    if peer.pc.connectionState == "closed":
                        break
                    await asyncio.sleep(0.05)
                return peer, side, hangup, again, late.value.response

    peer, side, hangup, again, late = run(main())
    assert hangup.status_code == 200
    assert side.ws.close_code == 1000 and side.ws.close_reason == "hung up"
    assert peer.call_id not in server.call_ids
    assert again.status_code == 404 and again.json()["error"]["code"] == "call_id_not_found"
    assert late.status_code == 404
    assert json.loads(late.body)["error"]["code"] == "call_id_not_found"
    assert peer.pc.connectionState == "closed"


def test_peer_close_ends_the_call_and_its_sidebands(server: LocalServer) -> None:
    async def main() -> tuple[str, Sideband]:
        async with browser() as peer:
            await peer.call(server)
            await peer.until("session.created")
            async with sideband(server, peer.call_id) as side:
                await peer.pc.close()  # the tab goes away
                with pytest.raises(ConnectionClosed):
                    await side.until("never")
            # The call is over: a sideband that comes late is refused, as for any unknown call.
            with pytest.raises(InvalidStatus) as late:
                await websockets.connect(f"{server.url}?call_id={peer.call_id}")
            assert late.value.response.status_code == 404
            return peer.call_id, side

    call_id, side = run(main())
    assert side.ws.close_code == 1000
    assert "closed" in side.ws.close_reason
    assert call_id not in server.call_ids


def test_several_sidebands_share_the_call_and_a_stop_ends_it() -> None:
    """Two sidebands see the same events (same event ids) and both may drive the session; the
    server's stop ends the call: sidebands closed (1001), peer connection closed, no thread."""
    before = set(threading.enumerate())
    with LocalServer(fast=True) as srv:

        async def main() -> tuple[Browser, Sideband, Sideband]:
            async with browser() as peer:
                await peer.call(srv)
                await peer.until("session.created")
                async with sideband(srv, peer.call_id) as one, sideband(srv, peer.call_id) as two:
                    await one.send(
                        {
                            "type": "session.update",
                            "session": {"type": "realtime", "instructions": "One."},
                        }
                    )
                    await two.until("session.updated")
                    await one.until("session.updated")
                    await two.send({"type": "response.cancel", "event_id": "evt_two"})
                    await one.until("error")
                    await two.until("error")
                    await asyncio.get_running_loop().run_in_executor(None, srv.stop)
                    for side in (one, two):
                        with pytest.raises(ConnectionClosed):
                            await side.until("never")
                    for _ in range(100):
                        if peer.pc.connectionState == "closed":
                            break
                        await asyncio.sleep(0.05)
                    return peer, one, two

        peer, one, two = run(main())
    assert [e["event_id"] for e in one.events] == [e["event_id"] for e in two.events]
    assert one.events[1]["error"]["event_id"] == "evt_two"
    assert one.ws.close_code == two.ws.close_code == 1001
    assert peer.pc.connectionState == "closed"
    assert srv.call_ids == []
    # No thread left: the server's, its job workers, aiortc's decoders of the call's track.
    assert wait_for(lambda: set(threading.enumerate()) <= before), (
        set(threading.enumerate()) - before
    )


def test_data_channel_events_drive_the_session(server: LocalServer) -> None:
    errors: list[JSON] = []

    async def main() -> Browser:
        async with browser() as peer:
            await peer.call(server)
            await peer.until("session.created")
            peer.channel.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {"type": "realtime", "output_modalities": ["text"]},
                    }
                )
            )
            peer.channel.send(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "hello"}],
                        },
                    }
                )
            )
            peer.channel.send(json.dumps({"type": "response.create"}))
            peer.channel.send("not json")
            await peer.until("response.done")
            errors.append(await peer.until("error"))
            return peer

    peer = run(main())
    assert (
        next(e for e in peer.events if e["type"] == "response.output_text.done")["text"]
        == "You said: hello"
    )
    assert errors[0]["error"]["type"] == "invalid_request_error"
    assert "output_audio_buffer.started" not in peer.types()  # text only: nothing to play


# --- refusals ---------------------------------------------------------------------------------


def post(server: LocalServer, path: str = "", **kwargs: Any) -> httpx.Response:
    return httpx.post(server.calls_url + path, **kwargs)


def error_of(response: httpx.Response) -> JSON:
    assert response.headers["Content-Type"] == "application/json"
    error: JSON = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.fixture(scope="module")
def offer() -> str:
    async def make() -> str:
        peer = Browser()
        try:
            return await peer.offer()
        finally:
            await peer.close()

    return str(run(make()))


def test_bad_requests_are_refused_with_what_is_accepted(server: LocalServer, offer: str) -> None:
    no_sdp = post(server, files={"session": (None, "{}")})
    assert no_sdp.status_code == 400
    assert error_of(no_sdp)["param"] == "sdp" and "'sdp'" in error_of(no_sdp)["message"]

    not_sdp = post(server, content=b"hello", headers={"Content-Type": "application/sdp"})
    assert not_sdp.status_code == 400 and error_of(not_sdp)["code"] == "invalid_offer"
    assert "v=0" in error_of(not_sdp)["message"]

    no_audio = offer.replace("m=audio ", "m=video ")
    refused = post(server, content=no_audio, headers={"Content-Type": "application/sdp"})
    assert refused.status_code == 400 and "m=audio" in error_of(refused)["message"]

    no_opus = "\r\n".join(
        line for line in offer.split("\r\n") if "opus" not in line.lower()
    ).replace(" 96 ", " ")
    refused = post(server, content=no_opus, headers={"Content-Type": "application/sdp"})
    assert refused.status_code == 400 and "Opus" in error_of(refused)["message"]

    no_fingerprint = "\r\n".join(
        line for line in offer.split("\r\n") if not line.startswith("a=fingerprint:")
    )
    refused = post(server, content=no_fingerprint, headers={"Content-Type": "application/sdp"})
    assert refused.status_code == 400 and "a=fingerprint" in error_of(refused)["message"]

    broken = offer.replace("a=setup:actpass", "a=setup:bogus")  # aiortc's own parse refuses it
    refused = post(server, content=broken, headers={"Content-Type": "application/sdp"})
    assert refused.status_code == 400 and error_of(refused)["code"] == "invalid_offer"
    assert "cannot be answered" in error_of(refused)["message"]

    wrong_type = post(
        server, content=json.dumps({"sdp": offer}), headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 400 and error_of(wrong_type)["code"] == "invalid_content_type"
    assert "application/sdp" in error_of(wrong_type)["message"]
    assert "multipart/form-data" in error_of(wrong_type)["message"]

    bad_json = post(server, files={"sdp": (None, offer), "session": (None, "{nope")})
    assert bad_json.status_code == 400 and error_of(bad_json)["param"] == "session"

    bad_session = post(
        server,
        files={
            "sdp": (None, offer),
            "session": (None, json.dumps({"type": "realtime", "audio": {"output": {"speed": 9}}})),
        },
    )
    assert bad_session.status_code == 400
    assert error_of(bad_session)["param"] == "session.audio.output.speed"

    too_big = post(
        server,
        content=b"v=0\r\n" + b"a" * MAX_BODY_BYTES,
        headers={"Content-Type": "application/sdp"},
    )
    assert too_big.status_code == 413 and str(MAX_BODY_BYTES) in error_of(too_big)["message"]

    nowhere = post(server, "/rtc_123/transfer", content=b"")
    assert nowhere.status_code == 404 and "/v1/realtime/calls" in error_of(nowhere)["message"]
    unknown = post(server, "/rtc_123/hangup")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "call_id_not_found"
    put = httpx.put(server.calls_url, content=offer)
    assert put.status_code == 405 and "POST" in error_of(put)["message"]

    preflight = httpx.options(server.calls_url, headers={"Origin": "http://localhost:8888"})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert server.call_ids == []  # nothing refused left a call behind


def test_raw_http_edge_cases(server: LocalServer) -> None:
    def exchange(data: bytes, eof: bool = True) -> bytes:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(data)
            if eof:
                sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    chunked = exchange(
        b"POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert chunked.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in chunked
    garbage = exchange(b"POST\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    head = exchange(b"POST /v1/realtime/calls HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    # A GET is websockets' to answer (the WebSocket endpoint's 404 for a path it does not serve).
    plain = exchange(b"GET /v1/realtime/calls HTTP/1.1\r\nHost: x\r\n\r\n", eof=False)
    assert plain.startswith(b"HTTP/1.1 404 ")


def test_the_key_is_required_everywhere_when_set(offer: str) -> None:
    with LocalServer(fast=True, api_key="sekrit") as srv:
        wrong = httpx.post(
            srv.calls_url,
            content=offer,
            headers={"Content-Type": "application/sdp", "Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"
        assert "sekrit" not in wrong.text
        missing = httpx.post(
            srv.calls_url, content=offer, headers={"Content-Type": "application/sdp"}
        )
        assert missing.status_code == 401

        async def main() -> tuple[str, int]:
            async with browser() as peer:
                sdp = await peer.offer()
                async with httpx.AsyncClient() as http:
                    ok = await http.post(  # Azure's path and header work as well
                        srv.calls_url.replace("/v1/", "/openai/v1/"),
                        files={"sdp": (None, sdp)},
                        headers={"api-key": "sekrit"},
                    )
                assert ok.status_code == 201
                call_id = ok.headers["Location"].rsplit("/", 1)[1]
                assert ok.headers["Location"] == f"/openai/v1/realtime/calls/{call_id}"
                with pytest.raises(InvalidStatus) as refused:
                    await websockets.connect(f"{srv.url}?call_id={call_id}")
                async with httpx.AsyncClient() as http:
                    no_key = await http.post(f"{srv.calls_url}/{call_id}/hangup")
                    hung = await http.post(
                        f"{srv.calls_url}/{call_id}/hangup",
                        headers={"Authorization": "Bearer sekrit"},
                    )
                return call_id, [
                    refused.value.response.status_code,
                    no_key.status_code,
                    hung.status_code,
                ]

        call_id, statuses = run(main())
        assert statuses == [401, 401, 200]  # sideband and hangup without the key; with it
        assert call_id not in srv.call_ids


def test_a_call_without_a_data_channel(server: LocalServer, weather_pcm: bytes) -> None:
    """Audio only (no oai-events channel): the sideband is the only way to see the events."""

    async def main() -> Sideband:
        async with browser(data_channel=False) as peer:
            await peer.call(server)
            async with sideband(server, peer.call_id) as side:
                peer.mic.say(silence(300) + weather_pcm + silence(900))
                await side.until("output_audio_buffer.stopped")
                return side

    side = run(main())
    assert side.types()[0] == "input_audio_buffer.speech_started"


def test_long_speech_keeps_real_time() -> None:
    """12 s of speech through the mic: the turn's length on the server's input timeline matches
    the audio sent (no frame lost or doubled by decoding and resampling)."""
    pcm = read_wav(DESCRIPTION_WAV)
    with LocalServer(fast=True) as srv:

        async def main() -> Browser:
            async with browser() as peer:
                await peer.call(
                    srv,
                    session={
                        "type": "realtime",
                        "audio": {
                            "input": {
                                "turn_detection": {
                                    "type": "server_vad",
                                    "silence_duration_ms": 700,
                                    "create_response": False,
                                }
                            }
                        },
                    },
                )
                await peer.until("session.created")
                t0 = len(peer.events)
                peer.mic.say(silence(500) + pcm + silence(1500))
                await peer.mic.spoken.wait()
                await peer.until("input_audio_buffer.speech_stopped", after=t0)
                await asyncio.sleep(1.0)
                return peer

        peer = run(main())
    starts = [e for e in peer.events if e["type"] == "input_audio_buffer.speech_started"]
    stops = [e for e in peer.events if e["type"] == "input_audio_buffer.speech_stopped"]
    lo, hi = energy_boundaries(pcm)
    said = peer.mic.said_at_ms[0] + 500  # where the speech went on the track
    # The first onset and the last offset bracket the speech, wherever the VAD split it: 12 s
    # of frames later, still in step (a lost or doubled frame a second would show as 240 ms).
    assert abs(starts[0]["audio_start_ms"] - (said + lo)) <= 350  # prefix padding is 300 ms
    # audio_end_ms is the last voiced frame plus silence_duration_ms, as the API documents.
    assert abs(stops[-1]["audio_end_ms"] - (said + hi + 700)) <= 150


def test_a_capped_session_ends_the_call() -> None:
    """max_session_s on a call: the session_expired error reaches the data channel and the
    sideband, then the call ends (sideband closed with 1001, as the API closes at its cap)."""
    with LocalServer(fast=True, max_session_s=3) as srv:

        async def main() -> tuple[Browser, Sideband]:
            async with browser() as peer:
                await peer.call(srv)
                async with sideband(srv, peer.call_id) as side:
                    await peer.until("session.created")
                    expired = await side.until("error")
                    with pytest.raises(ConnectionClosed):
                        await side.until("never")
                    await peer.until("error")
                    assert expired["error"]["code"] == "session_expired"
                    return peer, side

        peer, side = run(main())
        assert wait_for(lambda: srv.call_ids == [])
    assert side.ws.close_code == 1001
    assert (
        next(e for e in peer.events if e["type"] == "error")["error"]["code"] == "session_expired"
    )


def test_a_peer_that_never_connects_is_given_up(
    monkeypatch: pytest.MonkeyPatch, offer: str
) -> None:
    from realtime_nb.local import _webrtc

    monkeypatch.setattr(_webrtc, "CONNECT_TIMEOUT_S", 0.5)  # 30 s in earnest
    with LocalServer(fast=True) as srv:
        answer = httpx.post(
            srv.calls_url, content=offer, headers={"Content-Type": "application/sdp"}
        )
        assert answer.status_code == 201  # the offer's peer never takes the answer
        call_id = answer.headers["Location"].rsplit("/", 1)[1]
        assert call_id in srv.call_ids
        assert wait_for(lambda: call_id not in srv.call_ids, timeout=5)


def test_without_aiortc_the_endpoint_names_the_extra(offer: str) -> None:
    """A server whose Python cannot import aiortc still serves WebSockets, and answers the calls
    endpoint with 501 naming the extra to install (checked in a child process that blocks it)."""
    import subprocess
    import sys

    script = f"""
import sys, json, httpx
sys.modules["aiortc"] = None  # as if not installed: importing it raises ImportError
from realtime_nb.local import LocalServer
with LocalServer(fast=True) as srv:
    r = httpx.post(srv.calls_url, content={offer!r}, headers={{"Content-Type": "application/sdp"}})
    print(json.dumps([r.status_code, r.json()]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    status, body = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 501
    assert "realtime-nb[webrtc]" in body["error"]["message"]
