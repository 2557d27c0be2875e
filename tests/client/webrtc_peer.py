"""The page's side of a WebRTC call, played by a Python aiortc peer wired to a kernel
:class:`~realtime_nb.client.session.Session` as the widget's page is: its offer goes to
``Session.aaccept_offer``, its microphone (fixture speech, Opus, paced in real time) and the
remote track as it plays it are tapped into ``Session.record_track`` (each chunk at its first
sample's capture or play time on the kernel clock, as a page's AudioWorklet reports it), its
``oai-events`` data channel into ``Session.feed_peer_event``. Import it after
``pytest.importorskip("aiortc")``."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from realtime_nb.client.session import Session

from ..conftest import WEATHER_WAV

JSON = dict[str, Any]
RATE = 24000
FRAME = RATE // 50  # 20 ms, what a browser sends
#: A sample louder than this (of 32768) is speech, not Opus's near-silence.
LOUD = 1500
#: How long a step of the conversation may take on a loaded 2-core machine.
STEP_S = 60.0


def weather_pcm() -> bytes:
    data, rate = sf.read(str(WEATHER_WAV), dtype="int16")
    assert rate == RATE
    return bytes(data.tobytes())


def silence(ms: int) -> bytes:
    return bytes(2 * RATE * ms // 1000)


def first_loud(pcm: bytes | np.ndarray) -> int | None:
    x = np.frombuffer(pcm, "<i2") if isinstance(pcm, bytes) else pcm
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > LOUD)
    return int(idx[0]) if len(idx) else None


class Mic(MediaStreamTrack):
    """The page's microphone: PCM16 queued with :meth:`say`, sent in 20 ms frames in real time
    (silence in between), each frame tapped into the session as it is sent."""

    kind = "audio"

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._queue = bytearray()
        self._start: float | None = None
        self._start_ns = 0  # the kernel time of the first frame's capture
        self._pts = 0
        #: The kernel time of the first loud sample of each utterance, as sent.
        self.onsets_ns: list[int] = []
        self._in_speech = False

    def say(self, pcm: bytes) -> None:
        self._queue += pcm
        self._in_speech = False

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            self._start_ns = self.session.clock_ns()
        else:
            self._pts += FRAME
            await asyncio.sleep(max(self._start + self._pts / RATE - time.monotonic(), 0))
        chunk = bytes(self._queue[: 2 * FRAME])
        del self._queue[: 2 * FRAME]
        chunk += bytes(2 * FRAME - len(chunk))
        # When its first sample was captured: on the audio clock, as a page's AudioWorklet
        # reports it (the frame itself may leave late, when the loop is busy).
        t_ns = self._start_ns + self._pts * 1_000_000_000 // RATE
        self.session.record_track("input", chunk, t_ns)
        loud = first_loud(chunk)
        if loud is not None and not self._in_speech:
            self._in_speech = True
            self.onsets_ns.append(t_ns + loud * 1_000_000_000 // RATE)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk)
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class Page:
    """The page's side of the call: peer connection, mic, ``oai-events`` data channel, and the
    remote track played (as a page's player does: each frame when it arrives or right after the
    one before, whichever is later) and tapped into the session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = Mic(session)
        self.pc.addTrack(self.mic)
        self.events: list[JSON] = []
        self.event_ns: list[int] = []  # the kernel time each event arrived
        self.played: list[tuple[int, bytes]] = []  # (kernel ns of the first sample, PCM16)
        self._tasks: list[asyncio.Task[None]] = []
        channel = self.pc.createDataChannel("oai-events")
        channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        t_ns = self.session.clock_ns()
        self.events.append(event)
        self.event_ns.append(t_ns)
        self.session.feed_peer_event(event, t_ns=t_ns)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._play(track)))

    async def _play(self, track: MediaStreamTrack) -> None:
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        end_ns = 0  # when what was queued so far has played
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            t_ns = max(self.session.clock_ns(), end_ns)
            for out in resampler.resample(frame):
                pcm = out.to_ndarray().tobytes()[: 2 * out.samples]
                self.played.append((t_ns, pcm))
                self.session.record_track("output", pcm, t_ns)
                t_ns += out.samples * 1_000_000_000 // RATE
            end_ns = t_ns

    async def until(self, pred: Callable[[JSON], bool], after: int = 0) -> int:
        """The index of the first data-channel event from ``after`` on matching ``pred``."""
        deadline = time.monotonic() + STEP_S
        while time.monotonic() < deadline:
            for i in range(after, len(self.events)):
                if pred(self.events[i]):
                    return i
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no match among {[e['type'] for e in self.events[after:]]}")

    def reply_onsets_ns(self) -> list[int]:
        """The kernel time of the first loud played sample after each reply's audio started."""
        out = []
        t_all = [t for t, _ in self.played]
        for i, e in enumerate(self.events):
            if e["type"] != "output_audio_buffer.started":
                continue
            end = next(
                (
                    j
                    for j in range(i, len(self.events))
                    if self.events[j]["type"]
                    in ("output_audio_buffer.stopped", "output_audio_buffer.cleared")
                ),
                None,
            )
            if end is None:
                continue
            k = 0
            # The reply's first chunk is after the event arrived, minus the peer's jitter.
            started_ns = self.event_ns[i] - 100_000_000
            while k < len(t_all) and t_all[k] < started_ns:
                k += 1
            for t, pcm in self.played[k:]:
                loud = first_loud(pcm)
                if loud is not None:
                    out.append(t + loud * 1_000_000_000 // RATE)
                    break
        return out

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
