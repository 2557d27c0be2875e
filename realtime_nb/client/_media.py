"""Audio and images as the session sends them: any array, bytes or file converted to the input
format, and images as ``data:`` URLs. Reads files; no network, no threads."""

from __future__ import annotations

import base64
import os
import wave
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..core.audio import AudioFormat, encode_from_float, pcm16_to_float32, resample

__all__ = ["image_data_url", "prepare_audio"]


def _read_audio_file(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """Mono float32 samples and the sample rate of an audio file (WAV, or what soundfile reads).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a format neither ``wave`` nor ``soundfile`` can read.
    """
    if not path.exists():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
        if width == 2:
            x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
        elif width == 1:
            x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif width == 4:
            x = np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2.0**31
        elif width == 3:
            b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
            x = v.astype(np.float32) / 2.0**23
        else:
            raise ValueError(f"{path}: {8 * width}-bit WAV is not supported")
        if channels > 1:
            x = x.reshape(-1, channels).mean(axis=1)
        return x.astype(np.float32), rate
    except wave.Error:
        pass
    try:
        import soundfile
    except ImportError:
        raise ValueError(
            f"{path} is not a PCM WAV file; install soundfile to read FLAC, OGG and others"
        ) from None
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise ValueError(f"cannot read audio from {path}: {exc}") from None
    return np.asarray(data.mean(axis=1), dtype=np.float32), int(rate)


def _to_float_mono(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if x.ndim == 2:
        # (frames, channels) as soundfile returns, or (channels, frames) as librosa does.
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    elif x.ndim != 1:
        raise ValueError(f"audio arrays must be 1-D (mono) or 2-D, got shape {x.shape}")
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return x.astype(np.float32) / 2.0**31
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise ValueError(f"audio array dtype {x.dtype} is not supported; use float, int16 or int32")


def prepare_audio(
    audio: npt.NDArray[Any] | bytes | bytearray | memoryview | str | os.PathLike[str],
    fmt: AudioFormat,
    sample_rate: int | None = None,
) -> bytes:
    """Any audio as bytes in ``fmt`` (resampled, mixed to mono, encoded).

    ``bytes`` are taken as already in ``fmt`` unless ``sample_rate`` is given, in which case they
    are PCM16 at that rate. Arrays are at ``sample_rate`` (default: ``fmt.rate``). Paths are read
    (WAV, or anything ``soundfile`` reads).

    Raises:
        TypeError: ``audio`` is none of those types.
        ValueError: unreadable file, odd-length PCM16 bytes, or an unsupported array.
    """
    if isinstance(audio, (str, os.PathLike)):
        x, rate = _read_audio_file(Path(audio))
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        raw = bytes(audio)
        if sample_rate is None or (sample_rate == fmt.rate and fmt.type == "audio/pcm"):
            if fmt.type == "audio/pcm" and len(raw) % 2:
                raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(raw)}")
            return raw
        if len(raw) % 2:
            raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(raw)}")
        x, rate = pcm16_to_float32(raw), int(sample_rate)
    elif isinstance(audio, np.ndarray):
        x, rate = _to_float_mono(audio), int(sample_rate or fmt.rate)
    else:
        raise TypeError(
            "send_audio takes a numpy array, PCM bytes in the session's input format, or a path;"
            f" got {type(audio).__name__}"
        )
    if rate != fmt.rate:
        x = resample(x, rate, fmt.rate)
    return encode_from_float(x, fmt)


_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_data_url(image: bytes | bytearray | str | os.PathLike[str]) -> str:
    """A ``data:`` URL for an image given as bytes or a path (PNG, JPEG, GIF, WebP).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the bytes are not one of the accepted image formats.
    """
    if isinstance(image, str) and image.startswith(("data:", "http://", "https://")):
        return image
    data = Path(image).read_bytes() if isinstance(image, (str, os.PathLike)) else bytes(image)
    mime = next((m for magic, m in _IMAGE_MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        raise ValueError("image must be PNG, JPEG, GIF or WebP (checked by its first bytes)")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
