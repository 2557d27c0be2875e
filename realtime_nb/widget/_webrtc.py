"""The widget's WebRTC transport, kernel half: the bridge between the page's peer connection and
the session (``Session(transport="webrtc")``).

The page owns the ``RTCPeerConnection`` (its mic track with the browser's echo cancellation, the
``oai-events`` data channel, the remote track it plays); the kernel owns every secret. So the page
sends its SDP offer over the comm and this bridge hands it to :meth:`Session.accept_offer`, which
posts it to the provider's calls endpoint with the kernel's key and opens the sideband; the answer
goes back to the page. After that the page forwards what only it sees: each data-channel event
(recorded once, deduplicated with the sideband's copy by the session) and the audio it tapped from
its mic and from the remote track as played, which the session stores in the recording's audio
columns placed on its own timeline.

Page times are ``performance.timeOrigin + performance.now()`` milliseconds; the session's
timeline is :meth:`Session.clock_ns`. The two clocks may belong to two machines (a remote
notebook server), so the offset is measured, not assumed: :class:`ClockSync` keeps the round trip
with the smallest delay (its error is at most half that round trip) and the bridge records each
improvement as a ``local.webrtc.clock`` event.

Messages (the widget's catalogue lists them too)
------------------------------------------------
Browser -> kernel: ``webrtc.offer {sdp}``, ``webrtc.event {event, t_page_ms}``, ``webrtc.track
{track, t_page_ms, rate} + [pcm16]``, ``webrtc.state {state, reason}``, ``webrtc.hangup``,
``clock.ping {t_page_ms}``, ``clock.sync {t_page_ms, t_kernel_ns, t_back_ms}``.
Kernel -> browser: ``webrtc.answer {sdp}``, ``webrtc.error {message}``, ``clock.pong {t_page_ms,
t_kernel_ns}``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..core._redact import redact_obj

__all__ = ["ClockEstimate", "ClockSync", "WebRTCBridge"]

logger = logging.getLogger(__name__)

#: Track chunks held while no clock estimate exists yet (the page pings before it offers, so
#: this only fills if the comm is very slow): 200 chunks of 50 ms = 10 s of each track.
MAX_PENDING_TRACK_CHUNKS: Final = 200
#: The sample rate the page taps at (the session's audio columns are 24 kHz PCM16).
TRACK_RATE: Final = 24_000
#: How long the kernel waits for the calls endpoint to answer an offer.
OFFER_TIMEOUT_S: Final = 15.0
_TRACKS: Final = ("input", "output")


@dataclass(frozen=True)
class ClockEstimate:
    """Kernel clock minus page clock, from one round trip."""

    offset_ms: float  #: add to a page time (ms) to get the kernel time (ms)
    rtt_ms: float  #: the round trip it came from: the estimate is within rtt_ms / 2


class ClockSync:
    """Minimum-round-trip estimate of the page->kernel clock offset (NTP's idea, one hop).

    A round trip is: the page sends ``t_page_ms``, the kernel stamps ``t_kernel_ns`` when it
    answers, the page gets the answer back at ``t_back_ms``. Assuming the two legs took equally
    long, the kernel's stamp corresponds to the page's midpoint; the shorter the round trip, the
    smaller the possible error, so the shortest one seen wins. Pure: no clocks read here.
    """

    def __init__(self) -> None:
        self.best: ClockEstimate | None = None
        self.samples = 0

    def add(self, t_page_ms: float, t_kernel_ns: int, t_back_ms: float) -> bool:
        """Add a round trip; returns whether it became the estimate.

        Raises:
            ValueError: the times are not finite or the round trip is negative.
        """
        if not all(math.isfinite(v) for v in (t_page_ms, t_back_ms, float(t_kernel_ns))):
            raise ValueError("clock sample times must be finite numbers")
        rtt = t_back_ms - t_page_ms
        if rtt < 0:
            raise ValueError(f"clock sample ends before it starts (round trip {rtt} ms)")
        self.samples += 1
        if self.best is not None and rtt >= self.best.rtt_ms:
            return False
        offset = t_kernel_ns / 1e6 - (t_page_ms + t_back_ms) / 2
        self.best = ClockEstimate(offset_ms=offset, rtt_ms=rtt)
        return True

    def to_kernel_ns(self, t_page_ms: float) -> int | None:
        """A page time as a kernel time (ns), or None before the first round trip."""
        if self.best is None:
            return None
        return round((t_page_ms + self.best.offset_ms) * 1e6)


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


Send = Callable[[dict[str, Any]], None]
Log = Callable[[str, str], None]


class WebRTCBridge:
    """Routes the page's WebRTC messages to a ``transport="webrtc"`` session.

    ``send`` posts a message to the page (it must be callable from any thread); ``log`` keeps a
    front-end problem (level, message). :meth:`handle` returns False for a message that is not
    this bridge's.
    """

    def __init__(self, session: Any, send: Send, log: Log) -> None:
        self._session = session
        self._send = send
        self._log = log
        self.clock = ClockSync()
        self._lock = threading.Lock()
        # Chunks that came before the first clock estimate; and the order of recording: the
        # kernel may run comm handlers on more than one thread, and the chunks held back must
        # go before any that came after them.
        self._pending: deque[tuple[str, bytes, float, int]] = deque()
        self._record_lock = threading.Lock()
        self._offer_thread: threading.Thread | None = None
        #: the peer connection's states the page reported, in order (tests and the benchmark)
        self.states: list[str] = []
        #: counts of what was forwarded: events new / duplicate, track chunks per track
        self.counts: dict[str, int] = {"events": 0, "duplicates": 0, "input": 0, "output": 0}

    def handle(self, content: Mapping[str, Any], buffers: Sequence[Any]) -> bool:
        mtype = content.get("type")
        if mtype == "clock.ping":
            self._on_ping(content)
        elif mtype == "clock.sync":
            self._on_sync(content)
        elif mtype == "webrtc.offer":
            self._on_offer(content)
        elif mtype == "webrtc.event":
            self._on_event(content)
        elif mtype == "webrtc.track":
            self._on_track(content, buffers)
        elif mtype == "webrtc.state":
            state = str(content.get("state") or "")
            self.states.append(state)
            data = {"state": state, "reason": str(content.get("reason") or "")}
            self._session.log_local("local.webrtc.state", data)
        elif mtype == "webrtc.hangup":
            threading.Thread(target=self._hangup, name="realtime_nb-webrtc-hangup",
                             daemon=True).start()  # fmt: skip
        else:
            return False
        return True

    # --- clock ------------------------------------------------------------------------------

    def _on_ping(self, content: Mapping[str, Any]) -> None:
        t = _finite(content.get("t_page_ms"))
        if t is None:
            self._log("warning", "clock.ping without a numeric t_page_ms")
            return
        # Stamped as late as possible: the time between the stamp and the send is all on the
        # way back, which the midpoint rule charges half to each leg.
        self._send({"type": "clock.pong", "t_page_ms": t, "t_kernel_ns": self._session.clock_ns()})

    def _on_sync(self, content: Mapping[str, Any]) -> None:
        t_page = _finite(content.get("t_page_ms"))
        t_back = _finite(content.get("t_back_ms"))
        t_kernel = content.get("t_kernel_ns")
        if t_page is None or t_back is None or not isinstance(t_kernel, int):
            self._log("warning", f"bad clock.sync message: {dict(content)!r:.200}")
            return
        try:
            with self._lock:
                better = self.clock.add(t_page, t_kernel, t_back)
                best = self.clock.best
        except ValueError as exc:
            self._log("warning", f"clock.sync refused: {exc}")
            return
        if better and best is not None:
            self._session.log_local(
                "local.webrtc.clock",
                {"offset_ms": round(best.offset_ms, 3), "rtt_ms": round(best.rtt_ms, 3),
                 "samples": self.clock.samples},
            )  # fmt: skip
            with self._record_lock:
                self._drain_pending()

    def to_kernel_ns(self, t_page_ms: float) -> int | None:
        with self._lock:
            return self.clock.to_kernel_ns(t_page_ms)

    # --- offer / answer ---------------------------------------------------------------------

    def _on_offer(self, content: Mapping[str, Any]) -> None:
        sdp = content.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            self._send({"type": "webrtc.error",
                        "message": "the page's offer is not an SDP (it must start with 'v=0')"})  # fmt: skip
            return
        # Posting the offer and opening the sideband take a round trip or two to the provider:
        # off the comm thread, so the kernel keeps answering clock pings and the page meanwhile.
        thread = threading.Thread(
            target=self._answer, args=(sdp,), name="realtime_nb-webrtc-offer", daemon=True
        )
        self._offer_thread = thread
        thread.start()

    def _answer(self, sdp: str) -> None:
        try:
            answer = self._session.accept_offer(sdp, timeout=OFFER_TIMEOUT_S)
        except Exception as exc:  # any failure goes to the page, in words, without secrets
            message = str(redact_obj(f"{type(exc).__name__}: {exc}"))
            logger.warning("realtime_nb: the WebRTC offer failed: %s", message)
            self._send({"type": "webrtc.error", "message": message})
            return
        self._send({"type": "webrtc.answer", "sdp": str(answer)})

    def _hangup(self) -> None:
        try:
            self._session.hangup()
        except Exception as exc:  # already closed, or the endpoint is gone: say so, go on
            self._log("warning", f"hangup failed: {exc}")

    # --- forwarded events and tracks ---------------------------------------------------------

    def _on_event(self, content: Mapping[str, Any]) -> None:
        event = content.get("event")
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            self._log("warning", f"webrtc.event without an event object: {dict(content)!r:.200}")
            return
        t = _finite(content.get("t_page_ms"))
        t_ns = None if t is None else self.to_kernel_ns(t)
        new = self._session.feed_peer_event(event, t_ns)
        self.counts["events" if new else "duplicates"] += 1

    def _on_track(self, content: Mapping[str, Any], buffers: Sequence[Any]) -> None:
        track = content.get("track")
        t = _finite(content.get("t_page_ms"))
        rate = content.get("rate", TRACK_RATE)
        if track not in _TRACKS or t is None or not buffers or not isinstance(rate, int):
            self._log("warning", f"bad webrtc.track message: {dict(content)!r:.200}")
            return
        pcm = bytes(buffers[0])
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        with self._record_lock:
            with self._lock:
                t_ns = self.clock.to_kernel_ns(t)
                if t_ns is None:
                    if len(self._pending) >= MAX_PENDING_TRACK_CHUNKS:
                        self._pending.popleft()
                        self._log("warning", "track audio dropped: no clock estimate yet")
                    self._pending.append((str(track), pcm, t, rate))
                    return
            self._drain_pending()
            self._record(str(track), pcm, t_ns, rate)

    def _drain_pending(self) -> None:
        """Record the chunks held for a clock estimate (there is one now)."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                track, pcm, t, rate = self._pending.popleft()
                t_ns = self.clock.to_kernel_ns(t)
            if t_ns is not None:
                self._record(track, pcm, t_ns, rate)

    def _record(self, track: str, pcm: bytes, t_ns: int, rate: int) -> None:
        self.counts[track] += 1
        self._session.record_track(track, pcm, t_ns, rate=rate)
