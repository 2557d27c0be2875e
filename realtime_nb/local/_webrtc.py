"""WebRTC calls of the local server: the I/O shell of a call, around the same state machine.

A ``POST /v1/realtime/calls`` makes a :class:`Call`: an aiortc ``RTCPeerConnection`` answering the
offer, and a :class:`~._state.RealtimeState` in WebRTC mode driven like a WebSocket session's
(:class:`~.server._Driver`: jobs on the worker threads, the pacer). The shell only moves things:

- the ``oai-events`` data channel: client events in (``state.receive``), server events out;
- the microphone track: Opus decoded by aiortc, resampled to 24 kHz PCM16, fed to
  ``state.append_input_audio`` (VAD and recognition as for ``input_audio_buffer.append``);
- the speech track (:class:`SpeechTrack`): 20 ms frames in real time from
  ``state.read_output_audio`` (silence when nothing plays), Opus-encoded by aiortc;
- sideband WebSockets (``/v1/realtime?call_id=...``, :class:`Sideband`): every server event from
  the moment they attach, and any client event from them.

Every protocol decision (no audio deltas on a call, ``output_audio_buffer.*``, the truncation at a
barge-in) is the state machine's. A call ends on hangup, when its peer connection closes or fails,
when it does not connect within :data:`CONNECT_TIMEOUT_S`, when its session expires, or when the
server stops; its tracks, tasks and sidebands go with it.

ICE: host candidates only, no STUN server (aiortc's default would be Google's; this server stays
off the network). A browser's mDNS (``.local``) candidates need not resolve: its checks reach this
server's host candidates, and it is learnt as a peer-reflexive candidate from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ._config import ClientError
from ._http import CallOffer, HttpError
from ._state import TRACK_RATE, RealtimeState
from .server import DEFAULT_MODEL, _Driver, send_queued

if TYPE_CHECKING:
    from av.frame import Frame

    from .server import LocalServer

__all__ = ["CONNECT_TIMEOUT_S", "DATA_CHANNEL_LABEL", "Call", "Sideband", "SpeechTrack"]

log = logging.getLogger("realtime_nb.local")

#: Complete Opus frames (20 ms each) aiortc's audio jitter buffer waits for before it passes the
#: oldest one on. Its default, 4, absorbs a network's jitter at the cost of 80 ms on every frame;
#: this server's peers are on the same machine or network, where packets come in order and on
#: time, so it passes each frame on as soon as the next one shows it complete. A packet that is
#: late or lost is still waited for, as with the default, up to the buffer's 16 packets.
JITTER_PREFETCH: Final = 1


def _shallow_jitter_buffer(receiver: Any) -> bool:
    """Give ``receiver`` (an aiortc ``RTCRtpReceiver``, before media flows) a jitter buffer of
    :data:`JITTER_PREFETCH` frames. aiortc has no setting for it, so its private attribute is
    replaced when it is there and of the expected class; otherwise the default stays (and the
    call works as before, 60 ms slower)."""
    from aiortc.jitterbuffer import JitterBuffer

    name = "_RTCRtpReceiver__jitter_buffer"
    old = getattr(receiver, name, None)
    if not isinstance(old, JitterBuffer) or old.capacity <= 0:
        log.warning("aiortc's audio jitter buffer not found; kept its default")
        return False
    setattr(receiver, name, JitterBuffer(capacity=old.capacity, prefetch=JITTER_PREFETCH))
    return True


#: The data channel the API's WebRTC clients open for events.
DATA_CHANNEL_LABEL: Final = "oai-events"
#: The speech track's frame: 20 ms, Opus's usual packet (and what browsers send).
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = TRACK_RATE * FRAME_MS // 1000
#: How far behind its schedule the speech track may fall and catch up by sending faster (a few
#: frames of event-loop jitter). After a longer stall (the GIL held by a decoder loading, say) it
#: starts its schedule afresh instead: a burst of late audio would be played faster than real time
#: by the state's clock, and a browser's jitter buffer would drop or stretch it anyway.
MAX_TRACK_LAG_S: Final = 0.06
#: A call whose peer has not connected this long after the answer is given up: ICE checks
#: between hosts on one machine take milliseconds, a browser behind a slow page seconds.
CONNECT_TIMEOUT_S: Final = 30.0
#: Events kept for a data channel that is not open yet. Normally one (``session.created``) waits
#: for the channel, which opens with the connection; a peer that offers a channel and never opens
#: it must not make the call hold every event of its life.
MAX_PENDING_EVENTS: Final = 1000
#: How long the end of a call waits for the data channel to send what it has queued (the last
#: events, a ``session_expired`` error say) before the peer connection is closed.
CLOSE_FLUSH_TIMEOUT_S: Final = 1.0
#: Close code for the sidebands of a call that ended (hangup, peer gone): a normal closure.
CALL_ENDED_CLOSE_CODE: Final = 1000


def new_call_id() -> str:
    """``rtc_`` and 32 hex digits, the shape of the API's WebRTC call ids."""
    return "rtc_" + uuid.uuid4().hex


class SpeechTrack(MediaStreamTrack):
    """The call's outgoing audio: :data:`FRAME_MS` frames of the state's output audio buffer,
    paced at real time from the first frame read (see :data:`MAX_TRACK_LAG_S`)."""

    kind = "audio"

    def __init__(self, call: Call) -> None:
        super().__init__()
        self._call = call
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> Frame:
        """The next frame, when it is due.

        Raises:
            MediaStreamError: the track has ended (the call is over).
        """
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / TRACK_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_TRACK_LAG_S:
                self._start -= wait  # this frame is due now; the ones after it in real time
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._call.play(FRAME_SAMPLES))
        frame.pts = self._pts
        frame.sample_rate = TRACK_RATE
        frame.time_base = fractions.Fraction(1, TRACK_RATE)
        return frame


class Sideband:
    """A WebSocket attached to a call with ``?call_id=``: it gets every server event from now
    on, through its own sender (so one slow socket delays nobody), and may send client events."""

    def __init__(self, call: Call, ws: ServerConnection) -> None:
        self.call = call
        self.ws = ws
        self.outgoing: asyncio.Queue[dict[str, Any] | tuple[int, str] | None] = asyncio.Queue()

    async def sender(self) -> None:
        await send_queued(self.ws, self.outgoing)

    async def serve(self) -> None:
        """Relay until the socket or the call ends. Cancelled: stops relaying."""
        sender = asyncio.create_task(self.sender())
        try:
            async for frame in self.ws:
                self.call.receive(frame)
        except ConnectionClosed:
            pass
        finally:
            self.call.sidebands.discard(self)
            if not sender.done():
                self.outgoing.put_nowait(None)
            with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
                await sender

    async def drop(self, code: int | None, reason: str) -> None:
        """Drop the socket now (``code=None``: abort the TCP connection)."""
        if code is None:
            self.ws.transport.abort()
            return
        self.outgoing.put_nowait((code, reason))
        await asyncio.sleep(0)


class Call(_Driver):
    """One WebRTC call: a peer connection, its session, and the sidebands attached to it."""

    def __init__(self, server: LocalServer, offer: CallOffer) -> None:
        state = RealtimeState(
            model=DEFAULT_MODEL,
            fast=server.fast,
            created_at=time.time(),
            max_session_s=server.max_session_s,
            streaming=server.streaming,
            webrtc=True,
        )
        if offer.session is not None:
            try:
                state.configure(offer.session)
            except ClientError as err:
                raise HttpError(400, err.message, err.code, err.param) from None
        super().__init__(server, state)
        self.call_id = new_call_id()
        self.offer = offer
        # aiortc's default ICE servers are a public STUN server: none, to stay on this host.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = SpeechTrack(self)
        self.channel: RTCDataChannel | None = None
        # Events for the data channel before it opens (session.created first); only kept when
        # the offer has a data channel section, so a call without one cannot pile them up.
        self.expects_channel = "m=application" in offer.sdp
        self.pending: list[str] = []
        self.sidebands: set[Sideband] = set()
        self.ended = False
        self.end_reason = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()

    # -- setting up --

    async def answer(self) -> str:
        """Answer the offer; returns the answer SDP (ICE candidates included).

        Raises:
            HttpError: 400, aiortc cannot use the offer (the reason is in the message).
        """
        pc = self.pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(self.offer.sdp, "offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise ValueError("the offer has no audio transceiver")
            opus = [
                c
                for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"
            ]
            audio[0].setCodecPreferences(opus)
            _shallow_jitter_buffer(audio[0].receiver)
            pc.addTrack(self.track)  # on the offer's audio transceiver: sendrecv
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc's parse and negotiation errors
            await pc.close()
            raise HttpError(
                400,
                f"Invalid SDP offer: it cannot be answered ({type(exc).__name__}: {exc}). Send "
                f"a browser's offer with one audio track (Opus) and the '{DATA_CHANNEL_LABEL}' "
                f"data channel.",
                "invalid_offer",
                "sdp",
            ) from None
        return pc.localDescription.sdp

    def start(self) -> None:
        """Start the session (``session.created`` waits for the data channel) and its timers."""
        self.state.start(self.now())
        self.flush()
        self._spawn(self.pacer())
        self._spawn(self._connect_deadline())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_deadline(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState != "connected":
            await self.end(f"the peer did not connect within {CONNECT_TIMEOUT_S:g} s")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL_LABEL or self.channel is not None:
            log.info("local server: ignoring data channel %r", channel.label)
            return
        self.channel = channel
        channel.on("message", self.receive)
        pending, self.pending = self.pending, []
        for text in pending:
            channel.send(text)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._listen(track))

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._spawn(self.end(f"the peer connection {state}"))

    # -- moving audio and events --

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Feed the microphone to the session until the track ends."""
        resampler = AudioResampler(format="s16", layout="mono", rate=TRACK_RATE)
        while not self.ended:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            for out in resampler.resample(frame):
                pcm = out.to_ndarray().tobytes()[: 2 * out.samples]
                self.state.append_input_audio(pcm, self.now())
            self.flush()

    def play(self, n_samples: int) -> bytes:
        """The speech track's next ``n_samples`` (silence once the call is over)."""
        if self.ended:
            return bytes(2 * n_samples)
        pcm = self.state.read_output_audio(n_samples, self.now())
        self.flush()
        return pcm

    def receive(self, frame: str | bytes) -> None:
        """A client event, from the data channel or a sideband."""
        if self.ended:
            return
        self.state.receive(frame, self.now())
        self.flush()

    def deliver(self, event: dict[str, Any]) -> None:
        if self.ended:
            return
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(event))
        elif (
            self.channel is None and self.expects_channel and len(self.pending) < MAX_PENDING_EVENTS
        ):
            self.pending.append(json.dumps(event))
        for sideband in self.sidebands:
            sideband.outgoing.put_nowait(event)

    def end_session(self, code: int, reason: str) -> None:
        self._spawn(self.end(reason, code))

    async def attach(self, ws: ServerConnection) -> None:
        """Serve a sideband WebSocket until it or the call ends."""
        sideband = Sideband(self, ws)
        self.sidebands.add(sideband)
        await sideband.serve()

    # -- ending --

    async def end(self, reason: str, code: int = CALL_ENDED_CLOSE_CODE) -> None:
        """End the call (idempotent): its sidebands are closed with ``code``, its tracks and peer
        connection closed, its jobs cancelled. Returns once all is released."""
        if self.ended:
            await self._closed.wait()
            return
        self.ended = True
        self.end_reason = reason
        log.info("local server: call %s ended: %s", self.call_id, reason)
        self.server._calls.pop(self.call_id, None)
        try:
            for sideband in list(self.sidebands):
                sideband.outgoing.put_nowait((code, reason[:120]))  # a close reason is short
            self.track.stop()
            channel = self.channel
            if channel is not None and channel.readyState == "open" and channel.bufferedAmount:
                drained = asyncio.Event()
                channel.on("bufferedamountlow", drained.set)  # at 0: the default threshold
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drained.wait(), CLOSE_FLUSH_TIMEOUT_S)
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            await self.pc.close()
            await self.release()
        finally:
            self._closed.set()


async def create_call(server: LocalServer, offer: CallOffer) -> Call:
    """Make, answer and start a call for ``offer``; it is registered under its ``call_id``.

    Raises:
        HttpError: 400, the session config or the offer is refused.
    """
    call = Call(server, offer)
    await call.answer()
    server._calls[call.call_id] = call
    call.start()
    return call
