"""The streaming WAV writer behind ``export_wav`` (realtime_nb/storage/_wav.py), read back by
libsndfile (soundfile) and the standard library's ``wave``."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from realtime_nb.storage import _wav
from realtime_nb.storage._wav import WavWriter


def _frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-32768, 32767, (n, 2), dtype=np.int16)


def test_written_in_windows_reads_back_identical(tmp_path: Path) -> None:
    x = _frames(10_000)
    out = tmp_path / "sub" / "a.wav"
    with WavWriter(out, 24_000, 2, len(x)) as w:
        for a in range(0, len(x), 3_000):
            w.write(x[a : a + 3_000])
    assert out.stat().st_size == 44 + x.nbytes
    y, rate = sf.read(out, dtype="int16")
    assert rate == 24_000 and np.array_equal(y, x)
    with wave.open(str(out)) as wv:
        assert (wv.getnchannels(), wv.getsampwidth(), wv.getframerate()) == (2, 2, 24_000)
        assert wv.readframes(wv.getnframes()) == x.tobytes()
    assert list(tmp_path.rglob("*.part")) == []


def test_past_four_gib_the_file_is_rf64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 GiB of audio is too much for a test: lower the limit so a small file takes that path.
    monkeypatch.setattr(_wav, "MAX_RIFF_DATA", 100)
    x = _frames(1_000)
    out = tmp_path / "big.wav"
    with WavWriter(out, 16_000, 2, len(x)) as w:
        w.write(x)
    head = out.read_bytes()[:80]
    assert head[:4] == b"RF64" and head[12:16] == b"ds64"
    assert int.from_bytes(head[28:36], "little") == x.nbytes  # the 64-bit data size
    info = sf.info(out)
    assert (info.format, info.frames, info.samplerate) == ("RF64", 1_000, 16_000)
    assert np.array_equal(sf.read(out, dtype="int16")[0], x)


def test_an_unfinished_file_is_not_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "a.wav"

    def short() -> None:
        with WavWriter(out, 24_000, 2, 1_000) as w:
            w.write(_frames(999))

    def failing() -> None:
        with WavWriter(out, 24_000, 2, 1_000) as w:
            w.write(_frames(10))
            raise RuntimeError("boom")

    with pytest.raises(ValueError, match="999 frames written, 1000 announced"):
        short()
    with pytest.raises(RuntimeError, match="boom"):
        failing()
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_are_refused_with_what_is_accepted(tmp_path: Path) -> None:
    with WavWriter(tmp_path / "a.wav", 24_000, 2, 10) as w:
        with pytest.raises(TypeError, match="must be int16; got float32"):
            w.write(np.zeros((10, 2), np.float32))
        with pytest.raises(ValueError, match=r"shape \(n, 2\); got \(10,\)"):
            w.write(np.zeros(10, np.int16))
        with pytest.raises(ValueError, match="more frames than the header announced"):
            w.write(np.zeros((11, 2), np.int16))
        w.write(np.zeros((10, 2), ">i2"))  # big-endian samples are swapped, not refused
    assert np.array_equal(sf.read(tmp_path / "a.wav", dtype="int16")[0], np.zeros((10, 2)))
    with pytest.raises(ValueError, match="positive rate"):
        WavWriter(tmp_path / "b.wav", 0, 2, 10)
