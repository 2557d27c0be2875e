"""The corpus's reading without audio (``reduce_light``) gives exactly the rows of the full
reading (``Recording.state``, every byte of audio included), and does not read the audio."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings
from pathlib import Path

import pytest

from realtime_nb.corpus._summary import Summary, audio_bytes, summarize, summary_rows
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import synthetic_session
from tests.conftest import SESSIONS

CASSETTES = sorted(SESSIONS.glob("*/*.yaml"))


def reference(path: Path, key: str) -> Summary:
    """The rows computed from the full reading: the storage layer's own reduction of every
    event, audio included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a salvaged file warns; the fast path says so itself
        rec = Recording.open(path)
    sent, received = audio_bytes(rec.table)
    return summary_rows(
        key,
        path,
        path.stat(),
        dict(rec.meta),
        rec.state,
        events=rec.table.num_rows,
        sent_bytes=sent,
        received_bytes=received,
        whole=rec.complete,
    )


def assert_same(path: Path) -> Summary:
    fast, full = summarize(path, "key"), reference(path, "key")
    assert fast.session == full.session
    assert fast.turns == full.turns
    assert fast.items == full.items
    return fast


def synthetic(path: Path, minutes: float, seed: int, flush_interval: float) -> Path:
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"), flush_interval=flush_interval)
    for f in synthetic_session(minutes, seed=seed):
        rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec.close()
    return path


@pytest.mark.parametrize("cassette", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_real_sessions_give_the_full_readings_rows(cassette: Path, tmp_path: Path) -> None:
    path = Recording.import_file(cassette, save_to=tmp_path / "rec.arrow").path
    assert path is not None
    assert_same(path)


def test_the_demo_scripted_and_tool_recordings_give_the_full_readings_rows(
    base_dir: Path,
) -> None:
    paths = sorted(base_dir.rglob("*.arrow"))
    assert any(p.parent.name == "demo" for p in paths)
    turns = [assert_same(p).turns for p in paths]
    assert sum(map(len, turns)) >= 4
    assert any(t["latency_ms"] is not None for ts in turns for t in ts)


def test_a_long_spoken_session_gives_the_full_readings_rows(tmp_path: Path) -> None:
    # Many record batches (a live recording's flushes), interleaved appends and output deltas:
    # every path of the light reduction (runs cut by batches and by other events, merged
    # deltas) against the full one.
    path = synthetic(tmp_path / "long.arrow", minutes=1.5, seed=3, flush_interval=0.25)
    rows = assert_same(path)
    assert rows.session["user_audio_s"] > 60 and rows.session["assistant_audio_s"] > 10
    assert all(i["audio_ms"] for i in rows.items if i["role"] == "assistant")


def test_a_cut_recording_gives_the_salvaged_readings_rows(tmp_path: Path) -> None:
    whole = synthetic(tmp_path / "whole.arrow", minutes=0.5, seed=1, flush_interval=0.25)
    data = whole.read_bytes()
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(data[: len(data) // 2])
    rows = assert_same(cut)
    assert rows.session["complete"] is False


def _resident_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages in all), by ``mincore`` over a mapping that
    itself touches nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = path.stat().st_size
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        anchor = ctypes.c_char.from_buffer(mm)
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec):
                pytest.skip(f"mincore failed: {os.strerror(ctypes.get_errno())}")
            return sum(v & 1 for v in vec), pages
        finally:
            del anchor


@pytest.mark.skipif(sys.platform != "linux", reason="page cache residency through Linux mincore")
def test_summarizing_reads_no_audio_page(tmp_path: Path) -> None:
    # One record batch: each column's values lie together, so the audio bytes fill whole pages
    # that a reading of the other columns has no reason to touch.
    path = synthetic(tmp_path / "one.arrow", minutes=1.0, seed=2, flush_interval=3600)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    before, pages = _resident_pages(path)
    if before > pages // 10:
        pytest.skip("this file system keeps the file in memory (tmpfs?): nothing to measure")
    sent, received = audio_bytes(Recording.open(path).table)
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    summarize(path, "key")
    read, _ = _resident_pages(path)
    audio_pages = (sent + received) // mmap.PAGESIZE
    assert audio_pages > pages * 0.9  # the audio is the file, nearly
    # Read-ahead brings a few neighbours of each page touched; the audio is ~10x more.
    assert read - before < (pages - audio_pages) * 4 + 64, (read, before, pages, audio_pages)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_worker_start_method_gives_the_same_tables(
    method: str, base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from realtime_nb.corpus import Corpus
    from realtime_nb.corpus.corpus import START_METHOD_ENV

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    one = Corpus(f"{base_dir}/**/*.arrow", cache=False, workers=1)
    monkeypatch.setenv(START_METHOD_ENV, method)
    two = Corpus(f"{base_dir}/**/*.arrow", cache=False, workers=2)
    for name in ("sessions", "turns", "items"):
        assert two.table(name).equals(one.table(name))
