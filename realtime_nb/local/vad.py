"""Streaming voice activity detection for ``server_vad`` (and an honest ``semantic_vad`` stand-in).

Frames of :data:`FRAME_MS` at 16 kHz go through WebRTC's VAD (``webrtcvad-wheels``) AND an energy
gate; a frame is voiced when both agree. Then:

- speech *starts* once :data:`MIN_SPEECH_MS` of voiced frames accumulate with no gap longer than
  :data:`MAX_ONSET_GAP_MS` (so clicks and breaths do not open a turn); the onset is the first voiced
  frame of that run, and ``audio_start_ms = onset - prefix_padding_ms`` (clamped at the detector's
  origin: no padding reaches back before a clear or a commit), which is what the API documents:
  the start of the audio sent to the model, padding included;
- speech *stops* after ``silence_duration_ms`` without a voiced frame;
  ``audio_end_ms = last voiced ms + silence_duration_ms``, again as documented ("includes the
  silence duration").

``threshold`` (0..1) sets both WebRTC's aggressiveness (0-3) and the energy gate (from
:data:`GATE_DBFS_AT_0` to :data:`GATE_DBFS_AT_1`): higher thresholds need louder, clearer speech.

``semantic_vad`` is approximated, not implemented: there is no language model judging whether the
user finished a thought, only the same detector with a silence duration taken from ``eagerness``
(:data:`SEMANTIC_SILENCE_MS`).

Pure computation on samples: no clock, no I/O. Times are milliseconds of input audio, counted
from the start of the session's input timeline: a detector made at ``origin_ms`` (the position of a
clear, commit or session update, which need not fall on a frame or millisecond boundary) reports
exact times from there instead of rounding the origin to a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from realtime_nb.core.audio import Resampler, float32_to_pcm16

from ._extras import require

__all__ = [
    "FRAME_MS",
    "SEMANTIC_SILENCE_MS",
    "VadConfig",
    "VadEvent",
    "VoiceActivityDetector",
]

#: webrtcvad accepts 10, 20 or 30 ms frames; 10 ms gives the finest boundaries.
FRAME_MS: Final = 10
#: webrtcvad runs at 8/16/32/48 kHz; 16 kHz is its best-tested rate and cheap to resample to.
VAD_RATE: Final = 16_000
_FRAME_SAMPLES: Final = VAD_RATE * FRAME_MS // 1000
#: Voiced audio needed before a turn starts: longer than a click or a lip smack (measured at
#: 60-110 ms in the shared fixtures), shorter than the shortest word ("no" is ~200 ms).
MIN_SPEECH_MS: Final = 150
#: Unvoiced gap tolerated inside an onset run: the closure of a stop consonant ("what's the")
#: silences 50-80 ms in the middle of a word.
MAX_ONSET_GAP_MS: Final = 100
#: Energy gate in dBFS at threshold 0 and 1; 0.5 gives -55 dBFS, above the -70 dBFS room noise
#: of the fixtures and below the soft onsets of conversational speech (-45 .. -20 dBFS).
GATE_DBFS_AT_0: Final = -70.0
GATE_DBFS_AT_1: Final = -40.0
#: ``semantic_vad`` stand-in: silence needed per eagerness (the real one waits longer for "low").
SEMANTIC_SILENCE_MS: Final = {"low": 1200, "medium": 600, "auto": 600, "high": 300}


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200

    @classmethod
    def from_turn_detection(cls, td: dict[str, Any]) -> VadConfig:
        if td.get("type") == "semantic_vad":
            eagerness = str(td.get("eagerness") or "auto")
            return cls(0.5, 300, SEMANTIC_SILENCE_MS.get(eagerness, 600))
        return cls(
            float(td.get("threshold", 0.5)),
            int(td.get("prefix_padding_ms", 300)),
            int(td.get("silence_duration_ms", 200)),
        )


@dataclass(frozen=True)
class VadEvent:
    """``kind`` is ``"start"`` (``ms`` = audio_start_ms) or ``"stop"`` (``ms`` = audio_end_ms).

    ``ms`` is exact (it may fall between milliseconds); the API reports it rounded down.
    """

    kind: str
    ms: float


class _Vad(Protocol):
    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


class VoiceActivityDetector:
    """Feed float32 samples at ``rate`` with :meth:`feed`; get start/stop events back.

    ``origin_ms`` is the input-timeline position of the first sample fed.

    Raises:
        MissingExtraError: ``webrtcvad-wheels`` is not installed.
    """

    def __init__(self, config: VadConfig, rate: int, *, origin_ms: float = 0.0) -> None:
        webrtcvad = require("webrtcvad", "webrtcvad-wheels", "server voice activity detection")
        self.config = config
        self.origin_ms = origin_ms
        mode = int(min(max(config.threshold, 0.0), 1.0) * 4)
        self._vad: _Vad = webrtcvad.Vad(min(mode, 3))
        t = min(max(config.threshold, 0.0), 1.0)
        gate_dbfs = GATE_DBFS_AT_0 + (GATE_DBFS_AT_1 - GATE_DBFS_AT_0) * t
        self._gate_power = float(10.0 ** (gate_dbfs / 10.0))
        self._resampler = Resampler(rate, VAD_RATE) if rate != VAD_RATE else None
        self._pending = np.zeros(0, np.float32)
        self._frame = 0  # index of the next frame
        self.speaking = False
        self._run_start: int | None = None  # first voiced frame of the current onset run
        self._run_voiced = 0
        self._last_voiced = -1  # last voiced frame index

    def feed(self, samples: npt.NDArray[np.float32]) -> list[VadEvent]:
        x = self._resampler.process(samples) if self._resampler else samples
        buf = np.concatenate([self._pending, x]) if len(self._pending) else x
        n = len(buf) // _FRAME_SAMPLES
        self._pending = buf[n * _FRAME_SAMPLES :]
        events: list[VadEvent] = []
        for i in range(n):
            frame = buf[i * _FRAME_SAMPLES : (i + 1) * _FRAME_SAMPLES]
            ev = self._step(self._is_voiced(frame))
            if ev is not None:
                events.append(ev)
        return events

    def _is_voiced(self, frame: npt.NDArray[np.float32]) -> bool:
        if float(np.mean(frame.astype(np.float64) ** 2)) < self._gate_power:
            return False
        return bool(self._vad.is_speech(float32_to_pcm16(frame), VAD_RATE))

    def _step(self, voiced: bool) -> VadEvent | None:
        f = self._frame
        self._frame += 1
        cfg = self.config
        if voiced:
            self._last_voiced = f
        if not self.speaking:
            if voiced:
                if self._run_start is None:
                    self._run_start, self._run_voiced = f, 0
                self._run_voiced += 1
                if self._run_voiced * FRAME_MS >= MIN_SPEECH_MS:
                    self.speaking = True
                    onset = self.origin_ms + self._run_start * FRAME_MS
                    self._run_start = None
                    return VadEvent("start", max(onset - cfg.prefix_padding_ms, self.origin_ms))
            elif (
                self._run_start is not None
                and (f - self._last_voiced) * FRAME_MS > MAX_ONSET_GAP_MS
            ):
                self._run_start = None
            return None
        silent_ms = (f - self._last_voiced) * FRAME_MS
        if silent_ms >= cfg.silence_duration_ms:
            self.speaking = False
            end = self.origin_ms + (self._last_voiced + 1) * FRAME_MS + cfg.silence_duration_ms
            return VadEvent("stop", end)
        return None
