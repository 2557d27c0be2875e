"""Audio helpers for the Realtime formats: PCM16 <-> float32, base64, resampling, G.711.

Pure functions on bytes and numpy arrays; nothing here touches a device, a file or a socket.

The Realtime API speaks three audio formats (``session.audio.input/output.format.type``):

- ``audio/pcm``: 16-bit signed little-endian mono PCM at 24 kHz;
- ``audio/pcmu``: G.711 mu-law, 8 kHz, one byte a sample;
- ``audio/pcma``: G.711 A-law, 8 kHz, one byte a sample.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "PCM_RATE",
    "AudioFormat",
    "Resampler",
    "alaw_decode",
    "alaw_encode",
    "b64decode_audio",
    "b64encode_audio",
    "decode_to_float",
    "encode_from_float",
    "float32_to_pcm16",
    "pcm16_to_float32",
    "resample",
    "ulaw_decode",
    "ulaw_encode",
]

FloatArray = npt.NDArray[np.float32]

#: The Realtime API's PCM sample rate (the only rate ``audio/pcm`` accepts).
PCM_RATE: Final = 24_000
#: G.711 is always 8 kHz.
G711_RATE: Final = 8_000

#: Zero crossings of the windowed-sinc kernel on each side of its centre. 16 gives a stop band
#: below -80 dB with the Kaiser window below, which is inaudible next to PCM16's own noise floor.
_ZERO_CROSSINGS: Final = 16
#: Kaiser window beta for about 80 dB of stop-band attenuation.
_KAISER_BETA: Final = 8.0
#: Pass band edge as a fraction of the lower Nyquist frequency: the last 5 % is the transition band.
_ROLLOFF: Final = 0.95
#: Output samples computed per vectorised block, to bound temporary memory (block x taps floats).
_BLOCK: Final = 65_536


@dataclass(frozen=True)
class AudioFormat:
    """A Realtime audio format: its ``type`` and sample ``rate``."""

    type: str = "audio/pcm"
    rate: int = PCM_RATE

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    @property
    def bytes_per_ms(self) -> float:
        return self.rate * self.bytes_per_sample / 1000.0

    def duration_ms(self, nbytes: int) -> float:
        """Milliseconds of audio in ``nbytes`` bytes of this format."""
        return nbytes / self.bytes_per_ms

    def bytes_for_ms(self, ms: float) -> int:
        """Whole samples' worth of bytes for ``ms`` milliseconds (floored)."""
        samples = int(ms * self.rate / 1000.0)
        return samples * self.bytes_per_sample

    @classmethod
    def from_config(cls, fmt: object) -> AudioFormat:
        """Build from a session's ``audio.*.format`` object, a beta-era string, or ``None``.

        Beta sessions named formats ``"pcm16"``, ``"g711_ulaw"`` and ``"g711_alaw"``; GA uses
        ``{"type": "audio/pcm", "rate": 24000}``. Anything unrecognised (see :meth:`parse`) falls
        back to PCM 24 kHz, the API's default.
        """
        parsed = cls.parse(fmt)
        return parsed if parsed is not None else cls()

    @classmethod
    def parse(cls, fmt: object) -> AudioFormat | None:
        """The format a config value names, or ``None`` when it names none we know.

        Known: the GA types ``audio/pcm`` (any positive rate, 24 kHz by default), ``audio/pcmu``
        and ``audio/pcma`` (8 kHz), and the beta names. Providers send other values (xAI's
        ``"not specified"``); a caller decides what to fall back to and should say so, because
        guessing a format re-times every byte of audio.
        """
        if isinstance(fmt, dict):
            ftype = fmt.get("type", "audio/pcm")
            if not isinstance(ftype, str):
                return None
            ftype = _BETA_FORMATS.get(ftype, ftype)
            if ftype not in KNOWN_FORMAT_TYPES:
                return None
            default_rate = PCM_RATE if ftype == "audio/pcm" else G711_RATE
            rate = fmt.get("rate", default_rate)
            if rate is None:
                rate = default_rate
            if (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float))
                or not 0 < rate <= 384_000
            ):
                return None
            return cls(ftype, int(rate))
        if isinstance(fmt, str):
            ftype = _BETA_FORMATS.get(fmt, fmt)
            if ftype not in KNOWN_FORMAT_TYPES:
                return None
            return cls(ftype, PCM_RATE if ftype == "audio/pcm" else G711_RATE)
        return None

    def __str__(self) -> str:
        return f"{self.type} {self.rate} Hz"


_BETA_FORMATS: Final = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
#: The GA format types (what :meth:`AudioFormat.parse` recognises after beta names are mapped).
KNOWN_FORMAT_TYPES: Final = frozenset({"audio/pcm", "audio/pcmu", "audio/pcma"})


# --- PCM16 ---------------------------------------------------------------------------------------


def pcm16_to_float32(data: bytes | bytearray | memoryview | npt.NDArray[np.int16]) -> FloatArray:
    """Little-endian PCM16 to float32 in [-1, 1).

    A trailing odd byte (a cut payload: not a whole sample) is ignored rather than refused, because
    real recordings contain them.
    """
    if isinstance(data, np.ndarray):
        ints = data.astype(np.int16, copy=False)
    else:
        mv = memoryview(data).cast("B")
        ints = np.frombuffer(mv[: len(mv) - len(mv) % 2], dtype="<i2")
    return ints.astype(np.float32) / np.float32(32768.0)


def float32_to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Float samples in [-1, 1] to little-endian PCM16 bytes, clipped and rounded to nearest."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got an array of shape {x.shape}")
    scaled = np.clip(np.rint(x * 32768.0), -32768, 32767)
    return bytes(scaled.astype("<i2").tobytes())


# --- base64 --------------------------------------------------------------------------------------


# The one base64 codec of the package: every audio chunk of every event goes through it (the
# recorder splits it off, the client and the local server put it back), so the SIMD one when
# installed (pybase64, a dependency: ~12x faster than binascii), the standard library's if not.
_fast_b64encode: Callable[..., bytes] | None
_fast_b64decode: Callable[..., bytes] | None
try:
    from pybase64 import b64decode as _fast_b64decode
    from pybase64 import b64encode as _fast_b64encode
except ImportError:  # pragma: no cover - pybase64 is a dependency; keep working without it
    _fast_b64encode = _fast_b64decode = None


def b64encode_audio(data: bytes | bytearray | memoryview) -> str:
    """Audio bytes to the base64 text the Realtime API carries in JSON (standard alphabet,
    padded, no newlines)."""
    if _fast_b64encode is not None:
        return _fast_b64encode(data).decode("ascii")
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode_audio(text: str) -> bytes:
    """Base64 text from an event to bytes, strictly: the standard alphabet with correct padding
    and nothing else (no whitespace, no data after the padding).

    Raises:
        ValueError: ``text`` is not valid base64 (the message names its length and first chars).
    """
    try:
        if _fast_b64decode is not None:
            return bytes(_fast_b64decode(text, validate=True))
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
        preview = text[:16] + ("..." if len(text) > 16 else "")
        raise ValueError(
            f"audio is not valid base64 ({len(text)} characters, starting {preview!r}): {exc}"
        ) from None


# --- G.711 ---------------------------------------------------------------------------------------


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _encode_table(decode: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """For each of the 65536 PCM16 values, the code whose decoded value is nearest.

    Built from the decode table so encode and decode are exact inverses on decoded values.
    """
    order = np.argsort(decode, kind="stable")
    levels = decode[order].astype(np.int32)
    values = np.arange(-32768, 32768, dtype=np.int32)
    idx = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    lower, upper = levels[idx - 1], levels[idx]
    nearest = np.where(values - lower <= upper - values, idx - 1, idx)
    return order[nearest].astype(np.uint8)


@cache
def _tables(kind: str) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    dec = _ulaw_decode_table() if kind == "ulaw" else _alaw_decode_table()
    return dec, _encode_table(dec)


def ulaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """G.711 mu-law bytes (``audio/pcmu``) to int16 samples."""
    return _tables("ulaw")[0][np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """int16 samples to G.711 mu-law bytes (``audio/pcmu``)."""
    idx = np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768
    return _tables("ulaw")[1][idx].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """G.711 A-law bytes (``audio/pcma``) to int16 samples."""
    return _tables("alaw")[0][np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """int16 samples to G.711 A-law bytes (``audio/pcma``)."""
    idx = np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768
    return _tables("alaw")[1][idx].tobytes()


def decode_to_float(data: bytes | bytearray | memoryview, fmt: AudioFormat) -> FloatArray:
    """Bytes in a Realtime format to float32 samples at ``fmt.rate``."""
    if fmt.type == "audio/pcmu":
        return ulaw_decode(data).astype(np.float32) / np.float32(32768.0)
    if fmt.type == "audio/pcma":
        return alaw_decode(data).astype(np.float32) / np.float32(32768.0)
    return pcm16_to_float32(data)


def encode_from_float(samples: npt.ArrayLike, fmt: AudioFormat) -> bytes:
    """float32 samples at ``fmt.rate`` to bytes in a Realtime format."""
    if fmt.type in ("audio/pcmu", "audio/pcma"):
        ints = np.frombuffer(float32_to_pcm16(samples), dtype="<i2")
        return ulaw_encode(ints) if fmt.type == "audio/pcmu" else alaw_encode(ints)
    return float32_to_pcm16(samples)


# --- resampling ----------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _polyphase_filter(up: int, down: int) -> tuple[npt.NDArray[np.float64], int]:
    """Kaiser-windowed sinc low-pass split into ``up`` phases of ``taps`` coefficients each.

    Returns the ``(up, taps)`` bank, each phase normalised to unit DC gain, and ``taps``.
    """
    cutoff = _ROLLOFF * min(1.0, up / down)  # relative to the input's Nyquist frequency
    half = math.ceil(_ZERO_CROSSINGS / cutoff)  # input samples on each side of the centre
    taps = 2 * half
    # Position, in input samples, of tap k of phase p relative to the output instant.
    k = np.arange(taps)[None, :]
    p = np.arange(up)[:, None]
    t = (k - half + 1) - p / up
    bank = (
        cutoff
        * np.sinc(cutoff * t)
        * np.kaiser(2 * half * up + 1, _KAISER_BETA)[
            np.clip(np.rint((t + half) * up).astype(int), 0, 2 * half * up)
        ]
    )
    bank /= bank.sum(axis=1, keepdims=True)
    # Reverse so that a forward dot product with x[base - half + 1 ... base + half] applies it.
    return bank, taps


def _ratio(src_rate: int, dst_rate: int) -> tuple[int, int]:
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive integers, got {src_rate} -> {dst_rate}")
    g = math.gcd(int(src_rate), int(dst_rate))
    return int(dst_rate) // g, int(src_rate) // g


def resample(samples: npt.ArrayLike, src_rate: int, dst_rate: int = PCM_RATE) -> FloatArray:
    """Band-limited polyphase resampling of mono float samples (any rate to any rate).

    The output has ``round(len(x) * dst_rate / src_rate)`` samples, aligned so that output sample
    ``n`` is the signal at time ``n / dst_rate``.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got an array of shape {x.shape}")
    if src_rate == dst_rate:
        return x.copy()
    r = Resampler(src_rate, dst_rate)
    out = r.process(x, final=True)
    n_out = round(len(x) * dst_rate / src_rate)
    if len(out) < n_out:
        out = np.concatenate([out, np.zeros(n_out - len(out), np.float32)])
    return out[:n_out]


class Resampler:
    """Streaming polyphase resampler: feed chunks, get contiguous output with no seams.

    Chunked output equals :func:`resample` of the concatenated input (up to float rounding).
    """

    def __init__(self, src_rate: int, dst_rate: int = PCM_RATE) -> None:
        self.src_rate = int(src_rate)
        self.dst_rate = int(dst_rate)
        self._up, self._down = _ratio(self.src_rate, self.dst_rate)
        self._bank, self._taps = _polyphase_filter(self._up, self._down)
        self._half = self._taps // 2
        # Input history: starts with half a kernel of silence so output 0 is centred on input 0.
        self._buf = np.zeros(self._half, dtype=np.float32)
        self._buf_start = -self._half  # input index of self._buf[0]
        self._n_out = 0  # index of the next output sample
        self._n_in = 0  # input samples received

    def process(self, samples: npt.ArrayLike, final: bool = False) -> FloatArray:
        """Resample the next chunk; with ``final=True`` also flush the tail (zero-padded)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._n_in += len(x)
        parts = [self._buf, x]
        if final:
            parts.append(np.zeros(self._half, dtype=np.float32))
        buf = np.concatenate(parts)
        up, down, half = self._up, self._down, self._half
        # Output n sits at input position n*down/up; it needs inputs base-half+1 .. base+half.
        avail_end = self._buf_start + len(buf)  # one past the last input index we hold
        if final:
            n_stop = -(-self._n_in * up // down)  # ceil: every output inside the input span
        else:
            n_stop = ((avail_end - half) * up) // down  # last n with base + half < avail_end
            n_stop = max(n_stop, self._n_out)
        n = np.arange(self._n_out, max(n_stop, self._n_out), dtype=np.int64)
        out = np.empty(len(n), dtype=np.float32)
        for start in range(0, len(n), _BLOCK):
            nb = n[start : start + _BLOCK]
            base = (nb * down) // up
            phase = (nb * down) % up
            idx = (base - half + 1 - self._buf_start)[:, None] + np.arange(self._taps)[None, :]
            idx = np.clip(idx, 0, len(buf) - 1)
            out[start : start + len(nb)] = np.einsum(
                "ij,ij->i", buf[idx], self._bank[phase], dtype=np.float64
            ).astype(np.float32)
        self._n_out = int(n_stop) if len(n) else self._n_out
        # Keep what the next output still needs.
        next_base = (self._n_out * down) // up
        keep_from = max(next_base - half + 1 - self._buf_start, 0)
        keep_from = min(keep_from, len(buf))
        self._buf = buf[keep_from:]
        self._buf_start += keep_from
        if final:
            self._buf = self._buf[: max(len(self._buf) - half, 0)]
        return out
