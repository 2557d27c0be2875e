"""Speech output: eSpeak NG through ``espeakng-loader``, resampled to the session's output format.

The shared library and its voice data ship inside the ``espeakng-loader`` wheel, so nothing is
downloaded and no system package is needed; we drive it with :mod:`ctypes`. eSpeak NG keeps global
state (one voice, one callback), so every synthesis holds :data:`_LOCK`; a sentence takes a few
milliseconds, so the lock is never held long.

Each Realtime voice name maps to a distinct eSpeak voice (:data:`VOICES`). Word events from eSpeak
give the millisecond at which each word starts, which the server uses to interleave transcript
deltas with the audio they describe and to cut a transcript when an item is truncated.
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from realtime_nb.core.audio import AudioFormat, encode_from_float, resample

from ._extras import require

__all__ = ["VOICES", "Speech", "Synthesizer", "Word", "split_segments", "synthesize"]

#: Realtime voice -> eSpeak NG voice ("language+variant"). Chosen so that every Realtime voice
#: sounds different: female/male variants, three English accents, and distinct pitches below.
VOICES: Final[dict[str, str]] = {
    "alloy": "en-us+f3",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m2",
    "cedar": "en-us+m1",
    "coral": "en-us+f2",
    "echo": "en-us+m7",
    "marin": "en-us+f4",
    "sage": "en-gb-x-rp+f1",
    "shimmer": "en-us+f5",
    "verse": "en-gb-scotland+m4",
}
#: Base pitch (eSpeak 0-100 scale, default 50) per voice, to separate voices sharing a variant.
_PITCH: Final[dict[str, int]] = {
    "alloy": 55,
    "ash": 45,
    "ballad": 40,
    "cedar": 35,
    "coral": 60,
    "echo": 50,
    "marin": 65,
    "sage": 52,
    "shimmer": 70,
    "verse": 42,
}
#: eSpeak's default speaking rate in words per minute; ``speed`` in the session scales it.
_BASE_WPM: Final = 175
#: eSpeak accepts 80-450 words per minute; we clamp scaled rates into that range.
_MIN_WPM, _MAX_WPM = 80, 450

# eSpeak NG C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2  # synthesis runs in the calling thread, audio via callback
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_EVENT_LIST_TERMINATED: Final = 0
_EVENT_WORD: Final = 1
_PARAM_RATE: Final = 1
_PARAM_PITCH: Final = 3

_LOCK = threading.Lock()

#: Where a reply is cut into separately synthesised segments: after a sentence's or a clause's
#: punctuation and the spaces that follow it. eSpeak pauses there anyway, so the seams do not
#: show, and the first segment is short: "Sure. " or "You said: " is ready in ~10 ms, where the
#: whole reply takes ~25 ms per second of speech before its first sample.
_SEGMENT_END: Final = re.compile(r"(?<=[.!?;:,…])\s+")


def split_segments(text: str) -> list[str]:
    """``text`` cut after each sentence or clause; the pieces join back to ``text`` exactly (the
    spaces stay with the piece before them). ``""`` gives ``[]``."""
    pieces: list[str] = []
    start = 0
    for m in _SEGMENT_END.finditer(text):
        if m.end() < len(text):
            pieces.append(text[start : m.end()])
            start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class _EspeakEvent(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    )


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


@dataclass(frozen=True)
class Word:
    """A word of the spoken text: ``text[start:end]``, heard from ``ms`` into the audio."""

    start: int
    end: int
    ms: float


@dataclass(frozen=True)
class Speech:
    """Synthesised speech: ``audio`` bytes in ``fmt`` and the timing of each word."""

    text: str
    audio: bytes
    fmt: AudioFormat
    words: tuple[Word, ...] = field(default=())

    @property
    def duration_ms(self) -> float:
        return self.fmt.duration_ms(len(self.audio))


class Synthesizer:
    """A handle on the process-wide eSpeak NG engine (initialised once, on first use).

    Raises:
        MissingExtraError: ``espeakng-loader`` is not installed (on first synthesis).
        RuntimeError: the library cannot be loaded or initialised.
    """

    _lib: ctypes.CDLL | None = None
    _rate: int = 0

    @classmethod
    def _load(cls) -> tuple[ctypes.CDLL, int]:
        if cls._lib is None:
            loader = require("espeakng_loader", "espeakng-loader", "speech output (eSpeak NG)")
            lib = ctypes.CDLL(str(loader.get_library_path()))
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(loader.get_data_path()).encode(), 0
            )
            if rate <= 0:
                raise RuntimeError(f"eSpeak NG failed to initialise (espeak_Initialize -> {rate})")
            cls._lib, cls._rate = lib, rate
        return cls._lib, cls._rate

    def synthesize(
        self, text: str, voice: str = "alloy", speed: float = 1.0, fmt: AudioFormat | None = None
    ) -> Speech:
        """Speak ``text`` with a Realtime ``voice`` at ``speed`` into ``fmt`` (PCM 24 kHz default).

        Unknown voice names fall back to ``alloy``'s eSpeak voice.
        """
        fmt = fmt or AudioFormat()
        if not text.strip():
            return Speech(text, b"", fmt)
        with _LOCK:
            lib, rate = self._load()
            chunks: list[npt.NDArray[np.int16]] = []
            words: list[Word] = []

            def on_audio(
                wav: ctypes._Pointer[ctypes.c_short], n: int, events: ctypes._Pointer[_EspeakEvent]
            ) -> int:
                if n > 0:
                    chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
                i = 0
                while events[i].type != _EVENT_LIST_TERMINATED:
                    ev = events[i]
                    if ev.type == _EVENT_WORD:
                        start = max(ev.text_position - 1, 0)  # eSpeak counts from 1
                        words.append(Word(start, start + ev.length, float(ev.audio_position)))
                    i += 1
                return 0

            callback = _Callback(on_audio)  # kept alive until synthesis ends
            lib.espeak_SetSynthCallback(callback)
            lib.espeak_SetVoiceByName(VOICES.get(voice, VOICES["alloy"]).encode())
            wpm = int(min(max(_BASE_WPM * speed, _MIN_WPM), _MAX_WPM))
            lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, _PITCH.get(voice, 50), 0)
            data = text.encode("utf-8") + b"\0"
            status = lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            del callback
        if status != 0:
            raise RuntimeError(
                f"eSpeak NG could not synthesise the text (espeak_Synth -> {status})"
            )
        samples = (
            np.concatenate(chunks).astype(np.float32) / np.float32(32768.0)
            if chunks
            else np.zeros(0, np.float32)
        )
        audio = encode_from_float(resample(samples, rate, fmt.rate), fmt)
        return Speech(text, audio, fmt, tuple(words))


def synthesize(
    text: str, voice: str = "alloy", speed: float = 1.0, fmt: AudioFormat | None = None
) -> Speech:
    """Module-level shortcut for :meth:`Synthesizer.synthesize`."""
    return Synthesizer().synthesize(text, voice, speed, fmt)
