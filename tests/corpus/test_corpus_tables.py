"""The corpus tables: what they hold, that they match the per-recording readers, SQL, the cache."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pyarrow.compute as pc
import pytest

import realtime_nb.corpus.corpus as corpus_module
from realtime_nb.core.metrics import compute
from realtime_nb.corpus import Corpus, CorpusWarning
from realtime_nb.storage.recording import Recording


def test_sessions_turns_items_match_each_recording(base: Corpus) -> None:
    assert len(base) == 4
    sessions = {r["recording"]: r for r in base.sessions.to_pylist()}
    assert set(sessions) == set(base.keys)
    assert {"openai_tool.arrow", "xai_tool.arrow", "scripted.arrow"} <= set(sessions)
    for key in base.keys:
        rec = Recording.open(base.path(key))
        m = compute(rec.state, meta=rec.meta)
        row = sessions[key]
        assert row["events"] == rec.table.num_rows
        assert row["turns"] == len(m.turns)
        assert row["total_tokens"] == m.usage.total_tokens
        assert row["duration_s"] == pytest.approx(rec.state.last_t_ns / 1e9)
        assert row["complete"] is True
        turns = [t for t in base.turns.to_pylist() if t["recording"] == key]
        assert [t["turn"] for t in turns] == [t.index for t in m.turns]
        # Read without the audio, the latencies are the full reading's to the nanosecond.
        assert [t["latency_ms"] for t in turns] == [t.latency_ms for t in m.turns]
        items = [i for i in base.items.to_pylist() if i["recording"] == key]
        assert [i["item_id"] for i in items] == [i.id for i in rec.state.items]


def test_tool_calls_and_texts_are_in_the_turns(base: Corpus) -> None:
    turns = {
        t["recording"]: t for t in base.turns.to_pylist() if t["recording"] == "openai_tool.arrow"
    }
    turn = turns["openai_tool.arrow"]
    assert "London" in turn["user_text"]
    assert turn["assistant_text"]
    [call] = turn["tool_calls"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "London"}
    assert call["output"]
    s = {r["recording"]: r for r in base.sessions.to_pylist()}
    assert s["openai_tool.arrow"]["tool_calls"] == 1
    assert s["openai_tool.arrow"]["cost_usd"] is not None  # a priced model
    demo = next(k for k in base.keys if k.startswith("demo/"))
    assert s[demo]["user_audio_s"] > 1.0 and s[demo]["assistant_audio_s"] > 0.5


def test_sql_over_every_table_and_the_streamed_events(base: Corpus) -> None:
    counts = base.sql(
        "select recording, count(*) as n from events group by recording order by recording"
    ).to_pylist()
    assert counts == [
        {"recording": k, "n": Recording.open(base.path(k)).table.num_rows}
        for k in sorted(base.keys)
    ]
    joined = base.sql(
        "select s.recording, s.model, count(t.turn) as turns from sessions s "
        "join turns t using (recording) group by all order by 1"
    )
    assert joined.num_rows == 4
    # The events carry their audio's length, not the audio (unless asked for).
    ev = base.events().read_all()
    assert "audio" not in ev.column_names
    demo = next(k for k in base.keys if k.startswith("demo/"))
    audio = base.events(audio=True, recordings=[demo]).read_all()
    total = pc.sum(audio.column("audio_bytes")).as_py()
    assert total > 0
    assert total == sum(len(a) for a in audio.column("audio").to_pylist() if a)
    assert base.to_polars("turns").height == base.turns.num_rows
    assert len(base.to_pandas("sessions")) == 4
    with pytest.raises(ValueError, match="unknown table 'calls'; the corpus has sessions"):
        base.table("calls")
    with pytest.raises(KeyError, match="not in this corpus: nope"):
        base.events(recordings=["nope"])


def test_reopening_reduces_only_new_or_changed_files(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "recs"
    shutil.copytree(base_dir, folder)
    calls: list[str] = []
    real = corpus_module.summarize_or_error

    def counting(path: Path, key: str):  # type: ignore[no-untyped-def]  # a spy on the real one
        calls.append(key)
        return real(path, key)

    monkeypatch.setattr(corpus_module, "summarize_or_error", counting)
    cache = tmp_path / "cache"
    first = Corpus(folder, cache_dir=cache, workers=1).turns
    assert len(calls) == 4
    calls.clear()
    again = Corpus(folder, cache_dir=cache).turns
    assert calls == []
    assert again.equals(first)
    shutil.copy(folder / "openai_tool.arrow", folder / "copy.arrow")
    touched = folder / "xai_tool.arrow"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    c = Corpus(folder, cache_dir=cache)
    assert len(c.sessions) == 5
    assert sorted(calls) == ["copy.arrow", "xai_tool.arrow"]
    calls.clear()
    (folder / "copy.arrow").unlink()
    assert Corpus(folder, cache_dir=cache).sessions.num_rows == 4
    assert calls == []


def test_an_unreadable_file_is_left_out_and_reported(base_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(base_dir / "openai_tool.arrow", folder / "good.arrow")
    (folder / "bad.arrow").write_text('{"type": "session.created"}\n')
    c = Corpus(folder, cache=False)
    with pytest.warns(CorpusWarning, match="1 file"):
        assert c.sessions.column("recording").to_pylist() == ["good.arrow"]
    assert "JSON lines" in c.unreadable["bad.arrow"]


def test_a_cut_recording_is_salvaged(base_dir: Path, tmp_path: Path) -> None:
    whole = next((base_dir / "demo").glob("*.arrow"))  # written live: many batches
    data = whole.read_bytes()
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(data[: len(data) * 2 // 3])
    c = Corpus([cut], cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = c.sessions.to_pylist()[0]
    assert row["complete"] is False
    assert 0 < row["events"] < Recording.open(whole).table.num_rows


def test_bad_sources_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="give a glob pattern"):
        Corpus(tmp_path / "nothing-here")
    assert len(Corpus(f"{tmp_path}/**/*.arrow")) == 0


def test_worker_processes_give_the_same_tables(base_dir: Path) -> None:
    one = Corpus(f"{base_dir}/**/*.arrow", cache=False, workers=1)
    two = Corpus(f"{base_dir}/**/*.arrow", cache=False, workers=2)
    for name in ("sessions", "turns", "items"):
        assert two.table(name).equals(one.table(name))
