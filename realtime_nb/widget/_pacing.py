"""How the widget sends output audio to the browser: small messages, at real-time pace (sans I/O).

A Realtime server sends reply audio faster than real time (a 20 s answer can arrive in a couple
of seconds). Forwarding it as it comes puts one huge message on the comm, and every message the
page or the kernel handles after it waits for it. The :class:`AudioPacer` instead cuts the audio
into messages of at most :data:`MAX_AUDIO_MESSAGE_MS` and sends an item no further than
:data:`MAX_LEAD_MS` ahead of real time since its first message: the page always has that much
queued (what a late message must not exhaust), and the rest waits in the kernel, where an
interruption drops it for free.

The pace is the kernel's clock, not the page's played-position reports: a page that is behind
(a busy main thread, a loaded machine) reports late, and pacing on late reports starves its
queue while the audio waits in the kernel; in the widget benchmark on a loaded 2-core machine the
kernel <-> page round trip reached seconds, far past any lead worth keeping. The page never plays
faster than real time, so the clock is an upper bound on what it played, which is all a lead
bound needs.

The shell (``widget.py``) feeds it what arrives (:meth:`~AudioPacer.push`, :meth:`~AudioPacer.end`),
what the page finished (:meth:`~AudioPacer.finished`), interruptions (:meth:`~AudioPacer.drop`) and
sends what :meth:`~AudioPacer.take` returns, in order; ``now`` is any monotonic clock in seconds.

With ``paced=False`` it behaves as the widget did before pacing (all pending audio of an item in
one message): the benchmark's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["MAX_AUDIO_MESSAGE_MS", "MAX_LEAD_MS", "AudioOut", "AudioPacer"]

#: Audio per kernel -> page message. 100 ms (4.8 kB at 24 kHz) is the size of a local-server
#: delta and a fifth of a typical OpenAI one: a message this small is handled in well under a
#: millisecond on every hop, so whatever queues behind it (a mic chunk) waits at most that, while
#: 10 messages/s stay far below the kernel's IOPub limit of 1000 messages/s.
MAX_AUDIO_MESSAGE_MS: Final = 100
#: Audio sent ahead of real time. It must cover the flusher's batch window (50 ms), the page's
#: pre-buffer (60 ms) and the jitter of a message's trip to the page's worklet on a loaded machine
#: (a few hundred ms; the p95 of a mic chunk's trip the other way was ~0.4-1 s with the load
#: average at 10-15 on 2 cores) without running dry; 1 s does, and is all the page throws away
#: on an interruption.
MAX_LEAD_MS: Final = 1000


@dataclass(frozen=True)
class AudioOut:
    """One message to send: ``audio`` (with ``pcm``) or ``done`` (no more audio for the item)."""

    kind: Literal["audio", "done"]
    item_id: str
    response_id: str = ""
    pcm: bytes = b""


@dataclass
class _Item:
    response_id: str
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False  # audio_done arrived: send "done" once pending is empty
    done_sent: bool = False  # "done" went out: later items may follow
    sent_bytes: int = 0  # sent to the page since the last reset
    #: when the page starts playing it, by the clock: its first message, or the end of the items
    #: before it if that is later (the page plays them first)
    first_sent_at: float | None = None


class AudioPacer:
    """Output audio waiting for the page, per item, in arrival order.

    Args:
        rate: samples per second of the PCM16 mono audio pushed.
        paced: cut and pace (``False``: send everything at once, the old behaviour).
        max_message_ms: the largest ``audio`` message, in milliseconds of audio.
        lead_ms: the most audio sent ahead of real time (since the item's first message).

    Raises:
        ValueError: a rate, size or lead that is not positive.
    """

    def __init__(
        self,
        rate: int,
        *,
        paced: bool = True,
        max_message_ms: float = MAX_AUDIO_MESSAGE_MS,
        lead_ms: float = MAX_LEAD_MS,
    ) -> None:
        if rate <= 0 or max_message_ms <= 0 or lead_ms <= 0:
            raise ValueError(
                f"AudioPacer needs a positive rate, message size and lead; got rate={rate}, "
                f"max_message_ms={max_message_ms}, lead_ms={lead_ms}"
            )
        self.rate = rate
        self.paced = paced
        self.lead_ms = float(lead_ms)
        # Whole samples per message, in bytes (PCM16: 2 bytes a sample).
        self._chunk = max(2, 2 * int(rate * max_message_ms / 1000))
        self._items: dict[str, _Item] = {}  # insertion order = the order to send in
        #: the largest ``audio`` payload handed out so far, in bytes (for the benchmark)
        self.max_message_bytes = 0

    # --- input --------------------------------------------------------------------------------

    def push(self, item_id: str, response_id: str, pcm: bytes) -> None:
        """Queue PCM16 audio of an item (an odd trailing byte is the caller's to avoid).

        Audio of a new item ends the ones before it: the server speaks one item at a time, and
        an item whose ``audio_done`` never comes (its response was cancelled) must not hold back
        the ones after it.
        """
        it = self._items.get(item_id)
        if it is None:
            for earlier in self._items.values():
                earlier.ended = True
            it = self._items[item_id] = _Item(response_id)
        it.response_id = it.response_id or response_id
        it.pending += pcm

    def end(self, item_id: str) -> None:
        """No more audio for this item: ``done`` follows its last audio message."""
        it = self._items.get(item_id)
        if it is None:
            it = self._items[item_id] = _Item("")
        it.ended = True

    def finished(self, item_id: str) -> None:
        """The page is done with the item (played to the end, or cut): forget it."""
        it = self._items.get(item_id)
        if it is not None and not it.pending:
            del self._items[item_id]

    def drop(self) -> None:
        """An interruption: drop everything not yet sent, and forget what was sent."""
        self._items.clear()

    def trim(self, max_bytes: int) -> None:
        """Drop the oldest pending audio past ``max_bytes`` (while no page is there to play it)."""
        excess = self.pending_bytes - max_bytes
        for it in self._items.values():
            if excess <= 0:
                return
            n = min(excess, len(it.pending))
            n -= n % 2
            del it.pending[:n]
            excess -= n

    def restart(self) -> None:
        """Another page plays from now on: what was sent counts no more (nothing is resent)."""
        for it in self._items.values():
            it.sent_bytes = 0
            it.first_sent_at = None

    # --- output -------------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """Whether anything (audio or an end) is still to be sent, now or later."""
        return any(it.pending or (it.ended and not it.done_sent) for it in self._items.values())

    @property
    def pending_bytes(self) -> int:
        return sum(len(it.pending) for it in self._items.values())

    def lead_ms_at(self, now: float) -> float:
        """Milliseconds sent ahead of real time at ``now``, over the items not yet played."""
        lead = 0.0
        for it in self._items.values():
            if it.first_sent_at is not None:
                played = max(0.0, (now - it.first_sent_at) * 1000.0)
                lead += max(0.0, it.sent_bytes * 500.0 / self.rate - played)
        return lead

    def _queue_end(self) -> float:
        """When the page will have played everything sent so far, by the clock."""
        return max(
            (
                it.first_sent_at + it.sent_bytes / (2.0 * self.rate)
                for it in self._items.values()
                if it.first_sent_at is not None
            ),
            default=0.0,
        )

    def can_send(self, now: float) -> bool:
        """Whether :meth:`take` would return something at ``now``."""
        for it in self._items.values():
            if it.pending:
                return not self.paced or self.lead_ms_at(now) < self.lead_ms
            if it.ended and not it.done_sent:
                return True
            if self.paced and not it.done_sent:
                return False  # more of this item may come: the ones after it wait
        return False

    def take(self, now: float) -> list[AudioOut]:
        """The messages to send at ``now``, in order; they count as sent."""
        out: list[AudioOut] = []
        lead = self.lead_ms_at(now)
        for item_id, it in list(self._items.items()):
            while it.pending:
                if self.paced and lead >= self.lead_ms:
                    return out
                n = len(it.pending) if not self.paced else min(self._chunk, len(it.pending))
                pcm = bytes(it.pending[:n])
                del it.pending[:n]
                if it.first_sent_at is None:
                    it.first_sent_at = max(now, self._queue_end())
                it.sent_bytes += n
                lead += n * 500.0 / self.rate
                self.max_message_bytes = max(self.max_message_bytes, n)
                out.append(AudioOut("audio", item_id, it.response_id, pcm))
            if it.ended and not it.done_sent:
                out.append(AudioOut("done", item_id, it.response_id))
                it.done_sent = True  # kept while its lead counts, or until the page finished it
            elif it.done_sent and it.first_sent_at is not None:
                if (now - it.first_sent_at) * 1000.0 >= it.sent_bytes * 500.0 / self.rate:
                    del self._items[item_id]  # played out by the clock: nothing left to count
            elif self.paced and not it.done_sent:
                # An item still receiving audio holds back the ones after it: order is the
                # order of speech.
                return out
        return out
