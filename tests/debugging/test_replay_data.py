"""ReplayData: the state at the playhead equals the reducer's; audio windows equal the tracks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime_nb.debugging.replay import AUDIO_EVENT_TYPES, RATE, ReplayData
from realtime_nb.storage.recording import Recorder, Recording, make_meta
from realtime_nb.testing.synthetic import synthetic_session

from ..conftest import SESSIONS

MINUTES = 2.0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    path = tmp_path_factory.mktemp("replay") / "synthetic.arrow"
    rec = Recorder(path, meta=make_meta(model="gpt-realtime"))
    for f in synthetic_session(MINUTES):
        rec.append(f.source, f.data, raw=f.raw, t_ns=f.t_ns)
    rec.close()
    return Recording.open(path)


def canonical(state: Any) -> Any:
    """Everything the state holds, as plain data (audio as bytes)."""
    out = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if f.name == "input_audio":
            v = bytes(v.tobytes())
        elif dataclasses.is_dataclass(v) or isinstance(v, (dict, list)):
            v = _plain(v)
        out[f.name] = v
    return out


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def test_state_at_equals_the_reducer_at_that_time(synthetic: Recording) -> None:
    data = ReplayData(synthetic, checkpoint_every_s=7.0)
    times = [0.0, 5.049, 5.05, 7.0, 20.0, 28.51, 33.3, 61.0, 95.55, MINUTES * 60, 1e6]
    rng = np.random.default_rng(1)
    times += list(rng.uniform(0, MINUTES * 60, 8))
    for t in times:
        assert canonical(data.state_at(t)) == canonical(synthetic.state_at(t)), t
    # Seeking backwards after forwards gives the same again (checkpoints are not mutated).
    assert canonical(data.state_at(33.3)) == canonical(synthetic.state_at(33.3))


def test_audio_windows_equal_the_recording_tracks(synthetic: Recording) -> None:
    data = ReplayData(synthetic)
    for track in ("user", "assistant"):
        full = synthetic.audio(track, RATE)
        pcm = (np.clip(full, -1, 1) * 32768.0).round().clip(-32768, 32767).astype(np.int16)
        for start in (0.0, 4.9, 27.3, 61.0):
            w = np.frombuffer(data.audio_window(track, start, 2.0), np.int16)
            a = round(start * RATE)
            expect = np.zeros(2 * RATE, np.int16)
            seg = pcm[a : a + 2 * RATE]
            expect[: len(seg)] = seg
            assert np.abs(w.astype(np.int32) - expect).max() <= 1, (track, start)
    # The replies are the array output_arrays() made for them, not a second copy of it.
    replies = data._track("assistant")
    assert not replies.src.flags.owndata and len(replies.length) > 1
    assert replies.src.nbytes == 2 * int(replies.length.sum())
    before = np.frombuffer(data.audio_window("user", -1.0, 2.0), np.int16)
    assert len(before) == 2 * RATE
    assert not before[:RATE].any()
    with pytest.raises(ValueError, match="accepted: 'user', 'assistant'"):
        data.audio_window("bot", 0, 1)
    with pytest.raises(ValueError, match="duration_s must be between"):
        data.audio_window("user", 0, 1e4)


def test_overview_marks_and_events(synthetic: Recording) -> None:
    data = ReplayData(synthetic)
    ov = data.overview(400)
    assert ov.bins == 400
    assert len(ov.user_max) == 400
    assert len(ov.assistant_min) == 400
    assert ov.user_max.max() > 0
    assert ov.assistant_max.max() > 0
    assert (ov.user_min <= ov.user_max).all()
    segs = data.vad_segments()
    assert len(segs) == len(synthetic.state.turns)
    assert all(s.end_s is not None and s.end_s > s.start_s for s in segs)
    rows = data.event_rows()
    assert rows
    assert not {r.type for r in rows} & AUDIO_EVENT_TYPES
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    window = data.event_rows(20.0, 45.0, types=["response.done"])
    assert window
    assert all(r.type == "response.done" and 20 <= r.t_s <= 45 for r in window)
    assert data.truncations() == []
    with pytest.raises(ValueError, match="bins must be an integer"):
        data.overview(0)


def test_cassettes_without_times_and_truncations(tmp_path: Path) -> None:
    rec = Recording.import_file(
        SESSIONS
        / "test_openai_ws"
        / "test_input_audio_retention_segments_three_server_vad_turns.yaml"
    )
    data = ReplayData(rec)
    assert canonical(data.state_at(0.0)) == canonical(rec.state_at(0.0))
    assert len(data.vad_segments()) == 3
    events = [
        ("server", {"type": "session.created", "session": {}}),
        (
            "server",
            {"type": "response.created", "response": {"id": "r1", "conversation_id": "c"}},
        ),
        (
            "server",
            {
                "type": "response.output_audio.delta",
                "response_id": "r1",
                "item_id": "i1",
                "delta": "AAAAAAAAAAAA",
            },
        ),
        ("server", {"type": "conversation.item.truncated", "item_id": "i1", "audio_end_ms": 0}),
    ]
    rec2 = Recording.from_events(
        [{"source": s, "event": e, "t": i * 0.5} for i, (s, e) in enumerate(events)]
    )
    marks = ReplayData(rec2).truncations()
    assert [(m.item_id, m.audio_end_ms, m.event_s) for m in marks] == [("i1", 0, 1.5)]
    assert marks[0].t_s == pytest.approx(1.0)
