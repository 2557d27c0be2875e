"""Push-to-talk: whether a press holds enough audio to commit (pure).

The browser sends ``ptt start``, the press's mic chunks, then ``ptt end``. The shell tells
:class:`PushToTalk` how much audio arrived and, at the end, does what :meth:`PushToTalk.end`
decided: commit and ask for a response, or clear the input buffer and tell the user why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MIN_COMMIT_MS", "PressEnd", "PushToTalk"]

#: The Realtime API refuses to commit less than 100 ms of input audio
#: (``input_audio_buffer_commit_empty``): a shorter press is dropped here, with a notice, instead.
MIN_COMMIT_MS: Final = 100.0
#: Bytes of one PCM16 sample (what the browser sends, before any G.711 encoding).
_SAMPLE_BYTES: Final = 2


@dataclass(frozen=True)
class PressEnd:
    """What to do when a press ends."""

    #: Commit the input buffer and ask for a response (else clear the buffer).
    commit: bool
    #: Milliseconds of audio the press held.
    ms: float
    #: What to tell the user when nothing is sent, else ``None``.
    notice: str | None = None


class PushToTalk:
    """Counts the audio of the current press (PCM16 mono at ``rate`` Hz)."""

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"the input rate must be positive, got {rate!r}")
        self.rate = rate
        self._bytes = 0

    def start(self) -> None:
        """A press began: what came before it does not count."""
        self._bytes = 0

    def add(self, pcm16_bytes: int) -> None:
        """Mic audio arrived (counted whether or not a press is on; :meth:`start` resets)."""
        self._bytes += pcm16_bytes

    @property
    def ms(self) -> float:
        """Milliseconds of audio since the press began."""
        return self._bytes / _SAMPLE_BYTES / self.rate * 1000

    def end(self) -> PressEnd:
        """The press ended (after its last chunk): commit it, or drop a too-short one."""
        ms = self.ms
        if ms < MIN_COMMIT_MS:
            text = f"Hold to talk: only {ms:.0f} ms were recorded, nothing was sent."
            return PressEnd(commit=False, ms=ms, notice=text)
        return PressEnd(commit=True, ms=ms)
