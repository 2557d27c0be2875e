from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from realtime_nb.core.audio import (
    AudioFormat,
    Resampler,
    alaw_decode,
    alaw_encode,
    b64decode_audio,
    b64encode_audio,
    float32_to_pcm16,
    pcm16_to_float32,
    resample,
    ulaw_decode,
    ulaw_encode,
)
from tests.conftest import WEATHER_WAV


def test_pcm16_float_roundtrip_is_exact() -> None:
    ints = np.arange(-32768, 32768, 7, dtype=np.int16)
    f = pcm16_to_float32(ints.tobytes())
    assert f.dtype == np.float32
    assert f.min() >= -1
    assert f.max() < 1
    assert float32_to_pcm16(f) == ints.tobytes()


def test_pcm16_clips_and_ignores_odd_trailing_byte() -> None:
    assert np.frombuffer(float32_to_pcm16([2.0, -2.0]), "<i2").tolist() == [32767, -32768]
    assert len(pcm16_to_float32(b"\x00" * 33)) == 16  # a cut 33-byte payload


def test_float32_to_pcm16_refuses_stereo() -> None:
    with pytest.raises(ValueError, match=r"mono.*shape \(2, 2\)"):
        float32_to_pcm16(np.zeros((2, 2)))


def test_base64_roundtrip_and_clear_error() -> None:
    data = bytes(range(256)) * 3 + b"\x01"
    assert b64decode_audio(b64encode_audio(data)) == data
    with pytest.raises(ValueError, match=r"not valid base64 .*7 characters"):
        b64decode_audio("abc$%^&")


@pytest.mark.parametrize(
    ("src", "dst"),
    [(44100, 24000), (48000, 24000), (16000, 24000), (8000, 24000), (24000, 16000), (22050, 24000)],
)
def test_resampler_is_accurate(src: int, dst: int) -> None:
    t = np.arange(src) / src
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, src, dst)
    assert len(y) == dst
    ideal = np.sin(2 * np.pi * 440 * np.arange(dst) / dst)
    assert np.abs(y - ideal)[100:-100].max() < 1e-3


def test_resampler_removes_aliases() -> None:
    x = np.sin(2 * np.pi * 15000 * np.arange(48000) / 48000).astype(np.float32)
    assert np.abs(resample(x, 48000, 24000))[100:-100].max() < 1e-3  # 15 kHz > 12 kHz Nyquist


def test_streaming_resampler_equals_one_shot() -> None:
    x, rate = sf.read(WEATHER_WAV, dtype="float32")
    one = resample(x, rate, 16000)
    r = Resampler(rate, 16000)
    parts = [r.process(x[i : i + 1234]) for i in range(0, len(x), 1234)]
    parts.append(r.process(np.zeros(0, np.float32), final=True))
    streamed = np.concatenate(parts)[: len(one)]
    assert np.allclose(streamed, one, atol=1e-6)


@pytest.mark.parametrize(("enc", "dec"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_roundtrip(enc, dec) -> None:  # type: ignore[no-untyped-def]  # parametrized codec functions
    x = (np.sin(np.linspace(0, 60, 8000)) * 20000).astype(np.int16)
    y = dec(enc(x))
    # G.711 keeps ~13 bits: error within 1/16 of the magnitude plus a small floor.
    assert np.all(np.abs(y.astype(int) - x) <= np.abs(x) / 16 + 16)
    assert dec(enc(y)).tolist() == y.tolist()  # decoded values are exact fixed points


def test_g711_known_codes() -> None:
    assert ulaw_decode(bytes([0xFF, 0x00, 0x80])).tolist() == [0, -32124, 32124]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA])).tolist() == [8, -8, 32256]


def test_audio_format_from_config() -> None:
    assert AudioFormat.from_config({"type": "audio/pcm", "rate": 24000}) == AudioFormat()
    assert AudioFormat.from_config("g711_ulaw") == AudioFormat("audio/pcmu", 8000)
    assert AudioFormat.from_config({"type": "audio/pcma"}).bytes_per_ms == 8
    assert AudioFormat().bytes_for_ms(1000.7) == 48032
