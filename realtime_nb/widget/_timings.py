"""Latency samples for the widget benchmark (pure bookkeeping; the shell passes the clocks).

Three spans, each in milliseconds of wall clock on one machine (browser and kernel share it):

- ``mic_to_kernel``: a mic chunk sent by the browser -> received by the kernel;
- ``mic_relay``: a mic chunk posted by the AudioWorklet -> sent by the page's main thread, or by
  the mic lane's Worker (the wait for a busy thread, which ``mic_to_kernel`` does not include);
- ``mic_from_worklet``: a mic chunk posted by the AudioWorklet -> received by the kernel (the two
  above together: the whole way from the audio thread);
- ``mic_to_server``: a mic chunk sent by the browser -> its last byte handed to the WebSocket by
  the session (matched on cumulative byte counts: the session may split or merge chunks);
- ``delta_to_playback``: an item's first output audio delta received -> its first sample played.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["LatencyBook", "Timings"]


@dataclass
class Timings:
    """Latency samples (milliseconds) collected for the benchmark, wall clock on one machine."""

    #: mic chunk sent by the browser -> received by the kernel
    mic_to_kernel: list[float] = field(default_factory=list)
    #: mic chunk posted by the AudioWorklet -> sent by the page's main thread or the lane's Worker
    mic_relay: list[float] = field(default_factory=list)
    #: mic chunk posted by the AudioWorklet -> received by the kernel
    mic_from_worklet: list[float] = field(default_factory=list)
    #: mic chunk sent by the browser -> its last byte sent to the server by the session
    mic_to_server: list[float] = field(default_factory=list)
    #: first audio delta of an item received by the session -> its first sample played
    delta_to_playback: list[float] = field(default_factory=list)


class LatencyBook:
    """Matches the events of each span and appends the samples to :attr:`timings`.

    Not thread-safe by itself: the shell calls it under its own lock.
    """

    def __init__(self) -> None:
        self.timings = Timings()
        self._mic_marks: deque[tuple[int, float]] = deque()  # (cumulative bytes, browser t ms)
        self._mic_bytes = 0  # bytes handed to the session, as encoded for it
        self._sent_bytes = 0  # bytes the session sent (its input_audio_buffer.append events)
        self._first_delta_ms: dict[str, float] = {}

    def mic_received(
        self, browser_t_ms: float, now_ms: float, posted_t_ms: float | None = None
    ) -> float:
        """A chunk the browser sent at ``browser_t_ms`` (its worklet posted it at
        ``posted_t_ms``, when known) arrived; returns how late it is."""
        late = now_ms - browser_t_ms
        self.timings.mic_to_kernel.append(late)
        if posted_t_ms is not None:
            self.timings.mic_relay.append(browser_t_ms - posted_t_ms)
            self.timings.mic_from_worklet.append(now_ms - posted_t_ms)
        return late

    def mic_forwarded(self, nbytes: int, browser_t_ms: float | None) -> None:
        """``nbytes`` of a chunk (``browser_t_ms``: when the browser sent it) went to the
        session."""
        self._mic_bytes += nbytes
        if browser_t_ms is not None:
            self._mic_marks.append((self._mic_bytes, browser_t_ms))

    def audio_sent(self, nbytes: int, now_ms: float) -> None:
        """The session sent an append of ``nbytes``: every chunk it completes is now sent."""
        self._sent_bytes += nbytes
        marks = self._mic_marks
        while marks and marks[0][0] <= self._sent_bytes:
            _, t_browser = marks.popleft()
            self.timings.mic_to_server.append(now_ms - t_browser)

    def first_delta(self, item_id: str, now_ms: float) -> None:
        """An output audio delta of ``item_id`` arrived (only the item's first one counts)."""
        self._first_delta_ms.setdefault(item_id, now_ms)

    def playback_started(self, item_id: str, browser_t_ms: float) -> None:
        """The browser played the first sample of ``item_id`` at ``browser_t_ms``."""
        first = self._first_delta_ms.pop(item_id, None)
        if first is not None:
            self.timings.delta_to_playback.append(browser_t_ms - first)
