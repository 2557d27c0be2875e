"""A streaming PCM16 WAV writer: the header for a known length, then frames written as they are.

``export_wav`` knows the length of what it writes before it starts, so the header is written
once, right, with no seek back; the frames are the int16 arrays' own bytes (WAV is
little-endian, as numpy's int16 is on every platform realtime_nb runs on; a big-endian array is
swapped first). Through libsndfile (``soundfile``) the same write cost about twice as much: it
copies every frame through its own conversion buffer.

A file whose data would not fit the 32-bit sizes of RIFF (more than 4 GiB: over 12 hours of
stereo at 24 kHz) is written as RF64 (EBU Tech 3306), which soundfile, ffmpeg and sox read.
The file appears under its name only once complete: it is written beside it and renamed.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_RIFF_DATA", "WavWriter"]

#: Largest data chunk a plain RIFF WAV can describe: its RIFF size (data + 36 header bytes)
#: must fit in 32 bits.
MAX_RIFF_DATA: Final = 0xFFFFFFFF - 36
_PCM: Final = 1  # WAVE_FORMAT_PCM
_BITS: Final = 16


class WavWriter:
    """Write ``frames`` frames of PCM16 with ``channels`` channels at ``rate`` Hz to ``path``.

    Use as a context manager; :meth:`write` takes ``(n, channels)`` int16 arrays (C-contiguous)
    until exactly ``frames`` frames have come. Leaving the block completes the file and renames
    it into place; an exception (or fewer frames than announced) leaves no file behind.
    """

    def __init__(self, path: str | Path, rate: int, channels: int, frames: int) -> None:
        if rate <= 0 or channels <= 0 or frames < 0:
            raise ValueError(
                f"WAV needs a positive rate and channel count and a frame count >= 0; "
                f"got rate={rate}, channels={channels}, frames={frames}"
            )
        self.path = Path(path)
        self.rate, self.channels, self.frames = rate, channels, frames
        self.written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        self._f: Any = None

    def header(self) -> bytes:
        """The bytes before the samples (44 for RIFF, 80 for RF64)."""
        block = self.channels * _BITS // 8
        data = self.frames * block
        fmt = struct.pack(
            "<4sIHHIIHH",
            b"fmt ",
            16,
            _PCM,
            self.channels,
            self.rate,
            self.rate * block,
            block,
            _BITS,
        )
        if data <= MAX_RIFF_DATA:
            return (
                struct.pack("<4sI4s", b"RIFF", 36 + data, b"WAVE")
                + fmt
                + struct.pack("<4sI", b"data", data)
            )
        # RF64: the 32-bit sizes say "see ds64", which holds the 64-bit ones.
        ds64 = struct.pack("<4sIQQQI", b"ds64", 28, 72 + data, data, self.frames, 0)
        return (
            struct.pack("<4sI4s", b"RF64", 0xFFFFFFFF, b"WAVE")
            + ds64
            + fmt
            + struct.pack("<4sI", b"data", 0xFFFFFFFF)
        )

    def __enter__(self) -> WavWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self._tmp, "wb", buffering=0)  # closed in __exit__
        self._f.write(self.header())
        return self

    def write(self, frames: npt.NDArray[np.int16]) -> None:
        if frames.dtype.kind != "i" or frames.dtype.itemsize != 2:
            raise TypeError(f"WAV frames must be int16; got {frames.dtype}")
        if frames.ndim != 2 or frames.shape[1] != self.channels:
            raise ValueError(
                f"frames must have shape (n, {self.channels}); got {tuple(frames.shape)}"
            )
        if self.written + len(frames) > self.frames:
            raise ValueError(
                f"more frames than the header announced ({self.written + len(frames)} > "
                f"{self.frames})"
            )
        if frames.dtype.byteorder == ">":
            frames = frames.astype("<i2")
        view = np.ascontiguousarray(frames).data.cast("B")
        while view:  # a raw file may take less than asked
            view = view[self._f.write(view) :]
        self.written += len(frames)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        f, self._f = self._f, None
        f.close()
        if exc_type is None and self.written != self.frames:
            self._discard()
            raise ValueError(
                f"{self.written} frames written, {self.frames} announced: {self.path} not made"
            )
        if exc_type is not None:
            self._discard()
            return
        os.replace(self._tmp, self.path)

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
