"""WAV export and audio tracks stream window by window: the same samples as the whole-session
float implementation they replace, on every real session we have, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

import realtime_nb.storage._tracks as tracks
import realtime_nb.storage.recording as recording
from realtime_nb.core.audio import decode_to_float, resample
from realtime_nb.storage.recording import Recorder, Recording, assistant_audio_starts, make_meta
from realtime_nb.testing.synthetic import synthetic_session
from tests.conftest import cassettes

DEMO = Path(__file__).resolve().parents[2] / "recordings" / "demo.arrow"


# --- the implementation before streaming, kept here as the reference -----------------------------


def _old_user(rec: Recording, rate: int) -> npt.NDArray[np.float32]:
    st = rec.state
    fmt = st.input_format
    if not st.input_chunk_times:
        return np.zeros(0, np.float32)
    samples = decode_to_float(st.input_audio.tobytes(), fmt)
    if fmt.rate != rate:
        samples = resample(samples, fmt.rate, rate)
    bps = fmt.bytes_per_sample
    t = np.array([c[0] for c in st.input_chunk_times], dtype=np.float64)
    off = np.array([c[1] for c in st.input_chunk_times], dtype=np.float64)
    t_s = np.round(t * 1e-9 * rate)
    off_s = np.round(off / bps / fmt.rate * rate)
    shift = np.maximum.accumulate(t_s - off_s).astype(np.int64)
    n = len(samples)
    out = np.zeros(n + int(shift[-1]), np.float32)
    change = np.flatnonzero(np.diff(shift)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(shift)]])
    for a, b in zip(starts, ends, strict=False):
        s0 = int(off_s[a])
        s1 = int(off_s[b]) if b < len(off_s) else n
        out[s0 + shift[a] : s1 + shift[a]] = samples[s0:s1]
    return out


def _old_assistant(rec: Recording, rate: int, heard: bool) -> npt.NDArray[np.float32]:
    st = rec.state
    fmt = st.output_format
    pieces = []
    cursor = 0
    starts = assistant_audio_starts(rec.table, st)
    for item_id, t0 in sorted(starts.items(), key=lambda kv: kv[1]):
        x = decode_to_float(st.item_audio(item_id, heard=heard), fmt)
        if fmt.rate != rate:
            x = resample(x, fmt.rate, rate)
        start = max(round(t0 * 1e-9 * rate), cursor)
        pieces.append((start, x))
        cursor = start + len(x)
    out = np.zeros(cursor, np.float32)
    for start, x in pieces:
        out[start : start + len(x)] = x
    return out


def _old_wav(rec: Recording, path: Path, rate: int, heard: bool) -> npt.NDArray[np.int16]:
    user, bot = _old_user(rec, rate), _old_assistant(rec, rate, heard)
    stereo = np.zeros((max(len(user), len(bot)), 2), np.float32)
    stereo[: len(user), 0] = user
    stereo[: len(bot), 1] = bot
    sf.write(str(path), stereo, rate, subtype="PCM_16")
    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return data


# --- tests -------------------------------------------------------------------------------------------


def _recordings(tmp_path: Path) -> list[tuple[str, Recording]]:
    out = [(p.parent.name + "/" + p.stem, Recording.import_file(p)) for p in cassettes()]
    out.append(("demo", Recording.open(DEMO)))
    with Recorder(tmp_path / "synthetic.arrow", meta=make_meta(model="gpt-realtime")) as r:
        for f in synthetic_session(1.5):
            r.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    out.append(("synthetic", Recording.open(tmp_path / "synthetic.arrow")))
    return out


@pytest.mark.parametrize("rate", [24_000, 16_000])
def test_export_matches_the_whole_session_float_implementation(tmp_path: Path, rate: int) -> None:
    with_audio = 0
    for name, rec in _recordings(tmp_path):
        for heard in (True, False):
            old = _old_wav(rec, tmp_path / "old.wav", rate, heard)
            new_path = rec.export_wav(tmp_path / "new.wav", rate=rate, heard=heard)
            new, got_rate = sf.read(str(new_path), dtype="int16", always_2d=True)
            assert got_rate == rate
            assert new.shape == old.shape, name
            assert np.array_equal(new, old), f"{name} heard={heard}: samples differ"
            with_audio += bool(np.count_nonzero(new[:, 0])) and bool(np.count_nonzero(new[:, 1]))
    assert with_audio >= 4  # both directions really carried audio in several sessions


def test_float_tracks_match_the_whole_session_implementation(tmp_path: Path) -> None:
    for name, rec in _recordings(tmp_path):
        for rate in (24_000, 16_000):
            assert np.array_equal(rec.audio("user", rate), _old_user(rec, rate)), name
            for heard in (True, False):
                got = rec.audio("assistant", rate, heard=heard)
                assert np.array_equal(got, _old_assistant(rec, rate, heard)), name


def test_window_boundaries_do_not_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows and resampler blocks far smaller than a chunk or an item: every boundary case
    (a piece across windows, a window inside a piece, a resampler block across both)."""
    rec = Recording.open(DEMO)
    whole = {r: rec.export_wav(tmp_path / f"whole{r}.wav", rate=r) for r in (24_000, 22_050)}
    monkeypatch.setattr(tracks, "WINDOW_FRAMES", 997)
    monkeypatch.setattr(recording, "WINDOW_FRAMES", 997)
    monkeypatch.setattr(tracks, "RESAMPLE_BLOCK", 1031)
    for r, path in whole.items():
        small = rec.export_wav(tmp_path / f"small{r}.wav", rate=r)
        assert np.array_equal(
            sf.read(str(small), dtype="int16")[0], sf.read(str(path), dtype="int16")[0]
        )


def test_export_memory_is_a_window_not_the_session(tmp_path: Path) -> None:
    path = tmp_path / "long.arrow"
    with Recorder(path, meta=make_meta(model="gpt-realtime")) as r:
        for f in synthetic_session(3):
            r.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec = Recording.open(path)
    st = rec.state
    frames = max(len(st.input_audio) // 2, 1)  # the user track's length, in samples
    tracemalloc.start()
    try:
        rec.export_wav(tmp_path / "long.wav")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Before streaming: float32 tracks and a stereo float32 copy, ~16 bytes per frame (69 MB
    # here, growing with the session). Now: a 4 MiB window, a window of user audio, one item.
    assert peak < min(16e6, frames * 16 / 4), f"export held {peak / 1e6:.0f} MB"


def test_empty_recording_exports_an_empty_stereo_wav(tmp_path: Path) -> None:
    rec = Recording.from_events([{"type": "session.created", "session": {}}])
    out = rec.export_wav(tmp_path / "empty.wav")
    info = sf.info(str(out))
    assert (info.frames, info.channels, info.samplerate, info.subtype) == (0, 2, 24_000, "PCM_16")
