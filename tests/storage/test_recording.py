"""The recorder and reader: crash safety, salvage, exactness, secrets, export and import."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source
from realtime_nb.core.reducer import Reducer
from realtime_nb.storage.recording import (
    FLUSH_INTERVAL_S,
    META_KEY,
    Recorder,
    Recording,
    RecordingFormatError,
    RecordingSalvageWarning,
    make_meta,
)
from realtime_nb.testing.synthetic import synthetic_session
from tests.conftest import REPO, TEST_API_KEY, TEST_EPHEMERAL_KEY, WEATHER_WAV


def _record_synthetic(path: Path, minutes: float = 0.5) -> list:  # type: ignore[type-arg]  # a list of Event, left bare in a test helper
    frames = list(synthetic_session(minutes))
    with Recorder(path, meta=make_meta(model="gpt-realtime")) as rec:
        for f in frames:
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    return frames


def test_audio_roundtrips_byte_exact(tmp_path: Path) -> None:
    frames = _record_synthetic(tmp_path / "a.arrow")
    rec = Recording.open(tmp_path / "a.arrow")
    assert rec.complete
    assert [e.wire() for e in rec.events] == [f.data for f in frames]
    assert rec.table.column("audio").type == pa.binary()
    audio = [e.audio for e in rec.events if e.audio]
    assert audio
    assert all(isinstance(a, bytes) for a in audio)
    # The payload column has the audio emptied, not base64 in JSON.
    append_payload = rec.table.column("payload")[1].as_py()
    assert json.loads(append_payload)["audio"] == ""


def test_bulk_reduce_equals_event_by_event(tmp_path: Path) -> None:
    _record_synthetic(tmp_path / "a.arrow", minutes=1.5)
    rec = Recording.open(tmp_path / "a.arrow")
    bulk = rec.state
    one_by_one = Reducer().apply_all(rec.events)
    assert bytes(bulk.input_audio) == bytes(one_by_one.input_audio)
    assert bulk.input_chunk_times == one_by_one.input_chunk_times
    assert bulk.items_by_id.keys() == one_by_one.items_by_id.keys()
    assert [i.text for i in bulk.items] == [i.text for i in one_by_one.items]
    assert bulk.turns == one_by_one.turns
    assert bulk.counts == one_by_one.counts
    assert bulk.event_count == one_by_one.event_count
    assert bulk.usage == one_by_one.usage
    assert bulk.last_t_ns == one_by_one.last_t_ns
    assert len(bulk.turns) == 5
    assert bulk.items[1].transcript.startswith("sure here is")


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from realtime_nb.storage.recording import Recorder, make_meta
    from realtime_nb.testing.synthetic import synthetic_session
    rec = Recorder({path!r}, meta=make_meta(model="gpt-realtime"))
    for i, f in enumerate(synthetic_session(10)):
        rec.append(f.source, f.data, raw=f.raw)
        print(i, flush=True)
        time.sleep(0.002)
    """
)


def test_sigkill_mid_session_loses_only_the_unflushed_tail(tmp_path: Path) -> None:
    path = tmp_path / "killed.arrow"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO), path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    appended_at: list[float] = []
    deadline = time.monotonic() + 60
    while len(appended_at) < 400 and time.monotonic() < deadline:
        line = child.stdout.readline()
        assert line, "the recording subprocess died early"
        appended_at.append(time.monotonic())
    os.kill(child.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    child.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingSalvageWarning)
        rec = Recording.open(path)
    assert not rec.complete
    # Every event appended more than one flush interval (plus scheduling slack) before the kill
    # is in the file, and what is there is an exact prefix.
    must_have = sum(1 for t in appended_at if t < killed_at - FLUSH_INTERVAL_S - 0.25)
    assert must_have > 100
    assert len(rec) >= must_have
    assert rec.table.column("seq").to_pylist() == list(range(len(rec)))
    assert rec.events[0].type == "session.created"
    assert rec.state.input_chunk_times  # still reduces


def test_cut_files_never_raise_but_the_documented_warning(tmp_path: Path) -> None:
    src = tmp_path / "full.arrow"
    frames = list(synthetic_session(0.4))
    with Recorder(src, meta=make_meta(model="m")) as rec:
        for i, f in enumerate(frames):
            rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
            if i % 50 == 49:
                rec.flush()  # many batches, so cuts fall everywhere
    data = src.read_bytes()
    full = Recording.open(src)
    n_full = len(full)
    rng = random.Random(7)
    offsets = sorted(
        {0, 1, 7, 8, 100, len(data) - 1, len(data) - 8}
        | {rng.randrange(len(data)) for _ in range(300)}
    )
    cut = tmp_path / "cut.arrow"
    previous = 0
    for off in offsets:
        cut.write_bytes(data[:off])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = Recording.open(cut)
            state = rec.state
        assert all(issubclass(w.category, RecordingSalvageWarning) for w in caught), off
        assert len(rec) <= n_full
        assert len(rec) >= previous
        assert rec.table.column("seq").to_pylist() == list(range(len(rec)))
        assert state.event_count == len(rec)
        previous = len(rec)
    assert previous == n_full


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    meta = make_meta(model="m") | {"format_version": 99, "package_version": "9.0"}
    path = tmp_path / "future.arrow"
    with Recorder(path, meta=meta) as rec:
        rec.append("server", {"type": "session.created", "session": {}})
    with pytest.raises(
        RecordingFormatError, match=r"version 99.*reads versions up to 1.*pip install -U"
    ):
        Recording.open(path)


def test_not_a_recording_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"type": "a"}\n')
    with pytest.raises(RecordingFormatError, match="looks like JSON lines"):
        Recording.open(tmp_path / "x.jsonl")
    with pytest.raises(FileNotFoundError, match="no recording at"):
        Recording.open(tmp_path / "missing.arrow")
    sink = pa.OSFile(str(tmp_path / "plain.arrow"), "wb")
    with pa.ipc.new_stream(sink, pa.schema([("a", pa.int8())])) as w:
        w.write_batch(pa.record_batch([pa.array([1], pa.int8())], names=["a"]))
    with pytest.raises(RecordingFormatError, match="not a realtime_nb recording"):
        Recording.open(tmp_path / "plain.arrow")


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    custom_key = "my-azure-key-0123456789"
    meta = make_meta(
        model="m", url=f"wss://x.openai.azure.com/openai/realtime?api-key={custom_key}&deployment=d"
    )
    with Recorder(path, meta=meta, secrets=[TEST_API_KEY, custom_key]) as rec:
        rec.append(
            "server",
            {
                "type": "session.created",
                "session": {"client_secret": {"value": TEST_EPHEMERAL_KEY, "expires_at": 1}},
            },
        )
        rec.append(
            "client",
            {"type": "session.update", "session": {"instructions": f"key is {TEST_API_KEY}"}},
        )
        rec.append("local", {"type": "local.note", "text": f"Authorization: Bearer {custom_key}"})
        rec.append(
            "local", {"type": "local.http", "headers": {"Authorization": "Bearer abcdefghijkl"}}
        )
        rec.append(
            "client",
            {"type": "input_audio_buffer.append", "audio": "AAAA"},
            raw='{"type":"input_audio_buffer.append","audio":"AAAA","note":"' + TEST_API_KEY + '"}',
        )
    data = path.read_bytes()
    for secret in (TEST_API_KEY, TEST_EPHEMERAL_KEY, custom_key, "abcdefghijkl"):
        assert secret.encode() not in data
    rec2 = Recording.open(path)
    assert (
        rec2.meta["url"]
        == "wss://x.openai.azure.com/openai/realtime?api-key=[REDACTED]&deployment=d"
    )
    assert rec2.events[0].data["session"]["client_secret"]["value"] == "[REDACTED]"
    assert rec2.events[4].audio == b"\x00\x00\x00"  # audio kept, secret gone


def test_export_wav_is_stereo_time_aligned_and_cut_at_truncation(tmp_path: Path) -> None:
    speech, rate = sf.read(WEATHER_WAV, dtype="int16")
    chunk = rate // 25  # 40 ms
    evs: list[tuple[str, dict, int]] = []  # type: ignore[type-arg]  # event payloads of any shape
    t = 0
    for i in range(0, len(speech), chunk):
        evs.append(
            (
                "client",
                {"type": "input_audio_buffer.append", "audio": _b64(speech[i : i + chunk])},
                t,
            )
        )
        t += 40_000_000
    tone = (np.sin(np.arange(rate * 2) * 2 * np.pi * 440 / rate) * 8000).astype("<i2")
    base = t
    evs.append(
        (
            "server",
            {
                "type": "response.created",
                "response": {"id": "resp_1", "conversation_id": "c", "status": "in_progress"},
            },
            base,
        )
    )
    evs.append(
        (
            "server",
            {
                "type": "conversation.item.added",
                "previous_item_id": None,
                "item": {"id": "item_a", "type": "message", "role": "assistant", "content": []},
            },
            base,
        )
    )
    for k in range(0, len(tone), rate // 10):
        evs.append(
            (
                "server",
                {
                    "type": "response.output_audio.delta",
                    "response_id": "resp_1",
                    "item_id": "item_a",
                    "content_index": 0,
                    "delta": _b64(tone[k : k + rate // 10]),
                },
                base + 1000,
            )
        )
    evs.append(
        (
            "client",
            {
                "type": "conversation.item.truncate",
                "item_id": "item_a",
                "content_index": 0,
                "audio_end_ms": 500,
            },
            base + 500_000_000,
        )
    )
    evs.append(
        (
            "server",
            {
                "type": "conversation.item.truncated",
                "item_id": "item_a",
                "content_index": 0,
                "audio_end_ms": 500,
            },
            base + 510_000_000,
        )
    )
    rec = Recording.from_events(
        [{"source": s, "event": e, "t_ns": tt} for s, e, tt in evs], path=tmp_path / "w.arrow"
    )
    out = rec.export_wav(tmp_path / "w.wav")
    data, r = sf.read(out, dtype="int16")
    assert r == 24000
    assert data.shape[1] == 2
    left, right = data[:, 0], data[:, 1]
    assert np.array_equal(left[: len(speech)], speech)  # byte-exact user audio, at t=0
    nz = np.flatnonzero(right)
    assert abs(nz[0] - base * 24000 // 10**9) <= 1  # assistant starts when its audio arrived
    assert abs(len(nz) - 12000) < 200 or abs((nz[-1] - nz[0]) - 12000) < 200  # 500 ms heard
    full = Recording.open(tmp_path / "w.arrow").audio("assistant", heard=False)
    assert np.count_nonzero(full) > 40000  # heard=False keeps the whole 2 s


def _b64(x: np.ndarray) -> str:
    import base64

    return base64.b64encode(x.astype("<i2").tobytes()).decode()


def test_jsonl_export_import_roundtrip(tmp_path: Path) -> None:
    _record_synthetic(tmp_path / "a.arrow", minutes=0.3)
    rec = Recording.open(tmp_path / "a.arrow")
    rec.export_jsonl(tmp_path / "a.jsonl")
    back = Recording.import_jsonl(tmp_path / "a.jsonl")
    assert [e.wire() for e in back.events] == [e.wire() for e in rec.events]
    assert [e.t_ns for e in back.events] == [e.t_ns for e in rec.events]
    assert back.meta["model"] == "gpt-realtime"


def test_import_jsonl_of_another_tool(tmp_path: Path) -> None:
    lines = [
        {"direction": "sent", "timestamp": 0.5, "message": {"type": "response.create"}},
        {
            "direction": "received",
            "timestamp": 0.75,
            "message": {"type": "response.created", "response": {"id": "r1"}},
        },
        {"dir": "in", "data": {"type": "vendor.custom_event", "x": 1}},
    ]
    p = tmp_path / "other.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    rec = Recording.import_file(p)
    assert [e.source for e in rec.events] == [Source.CLIENT, Source.SERVER, Source.SERVER]
    assert [e.t_ns for e in rec.events] == [500_000_000, 750_000_000, 750_000_000]
    assert rec.state.unknown_types["vendor.custom_event"] == 1
    assert rec.events[2].data == {"type": "vendor.custom_event", "x": 1}


def test_bad_event_shapes_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"event 1 has an unknown shape \(int\); accepted: an Event"
    ):
        Recording.from_events([("client", {"type": "a"}), 5])
    with pytest.raises(ValueError, match="unknown event source 'sideways'; accepted: 'client'"):
        Recording.from_events([("sideways", {"type": "a"})])
    p = tmp_path / "bad.jsonl"
    p.write_text('{"direction": "sent", "event": {"type": "a"}}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        Recording.import_jsonl(p)


def test_recorder_is_thread_safe_and_flushes_on_its_own(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "t.arrow"
    rec = Recorder(path)

    def worker(k: int) -> None:
        for i in range(500):
            rec.append("local", {"type": "local.note", "text": f"{k}:{i}"})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    time.sleep(FLUSH_INTERVAL_S * 3)
    mid = Recording.open(path)  # readable while open, everything already flushed
    assert len(mid) == 2000
    assert not mid.complete
    rec.close()
    done = Recording.open(path)
    assert done.complete
    assert done.table.column("seq").to_pylist() == list(range(2000))
    per_thread = {
        k: [e.data["text"] for e in done.events if e.data["text"].startswith(f"{k}:")]
        for k in range(4)
    }
    assert all(v == [f"{k}:{i}" for i in range(500)] for k, v in per_thread.items())
    with pytest.raises(ValueError, match="closed"):
        rec.append("local", {"type": "local.note"})
    with pytest.raises(FileExistsError):
        Recorder(path)


def test_tables_for_pandas_polars_and_metadata(tmp_path: Path) -> None:
    _record_synthetic(tmp_path / "a.arrow", minutes=0.2)
    rec = Recording.open(tmp_path / "a.arrow")
    df = rec.to_pandas()
    assert list(df.columns) == [
        "seq",
        "t_ns",
        "source",
        "type",
        "event_id",
        "item_id",
        "response_id",
        "payload",
        "audio",
    ]
    pl = rec.to_polars()
    assert pl.height == len(rec)
    meta = json.loads(
        pa.ipc.open_stream(pa.memory_map(str(tmp_path / "a.arrow"))).schema.metadata[META_KEY]
    )
    assert meta["format_version"] == 1
    assert meta["model"] == "gpt-realtime"
    assert {"package_version", "url", "input_format", "output_format", "started_at"} <= meta.keys()


def test_html_and_text_inspection(tmp_path: Path) -> None:
    _record_synthetic(tmp_path / "a.arrow", minutes=0.5)
    rec = Recording.open(tmp_path / "a.arrow")
    html = rec._repr_html_()
    assert "class='rtnb-clip'" in html  # a player that fetches its audio when pressed
    assert "data:audio" not in html  # never inlined
    assert "what is the weather like today" in html
    text = rec.describe()
    assert "2 turns" in text
    assert "assistant" in text
    assert "tokens 840" in text
    assert rec.summary()["responses"] == 2


def test_event_repr_and_local_events() -> None:
    rec = Recorder(None)
    ev = rec.log_local("local.playback.played", {"item_id": "item_x", "played_ms": 1240})
    assert isinstance(ev, Event)
    assert ev.source is Source.LOCAL
    assert "local.playback.played" in repr(ev)
    r = Reducer()
    r.apply(ev)
    assert r.state.items_by_id["item_x"].played_ms == 1240


def test_item_view_renders_with_audio_and_timeline_position(tmp_path: Path) -> None:
    _record_synthetic(tmp_path / "a.arrow", minutes=0.5)
    rec = Recording.open(tmp_path / "a.arrow")
    bot = rec.state.items[1]
    view = rec.item(bot.id)
    assert view.role == "assistant"
    assert "class='rtnb-clip'" in view._repr_html_()
    assert len(view.audio()) == rec.state.item_audio(bot.id).__len__() // 2
    assert rec.item_start_s(bot.id) == pytest.approx(8.83, abs=0.01)
    user = rec.state.items[0]
    assert rec.item_start_s(user.id) == pytest.approx(5.0, abs=0.05)
    with pytest.raises(KeyError, match="no item 'nope'"):
        rec.item("nope")
