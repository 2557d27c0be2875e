"""diff, re-drive and metrics on real sessions against the local server (echo responder: an
instruction 'Start every answer with "X"' makes every answer start with X)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime_nb.core.pricing import LOCAL_MODEL
from realtime_nb.debugging.diff import diff
from realtime_nb.debugging.metrics import metrics
from realtime_nb.debugging.redrive import Pace, plan_turns, redrive, redrive_batch
from realtime_nb.storage.recording import Recording

from ..conftest import WEATHER_WAV

TIMEOUT = 20.0
AHOY = 'Start every answer with "Ahoy".'
HOWDY = 'Start every answer with "Howdy".'


def _record(url: str, path: Path, instructions: str) -> Recording:
    from realtime_nb.client.session import Session

    s = Session(url=url, instructions=instructions, record=path, turn_detection="server_vad",
                transcription=True)  # fmt: skip
    try:
        s.send_text("hello there")
        s.wait_for("response.done", TIMEOUT)
        s.wait_until_idle(TIMEOUT)
        s.send_audio(WEATHER_WAV)
        s.send_audio(np.zeros(24 * 1200, np.float32), sample_rate=24_000)
        s.wait_for("response.done", TIMEOUT)
        s.wait_until_idle(TIMEOUT)
        s.send_text("thanks")
        s.wait_for("response.done", TIMEOUT)
        s.wait_until_idle(TIMEOUT)
    finally:
        s.close()
    return Recording.open(path)


@pytest.fixture(scope="module")
def pair(local_srv: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Recording]:
    d = tmp_path_factory.mktemp("diff")
    return _record(local_srv.url, d / "a.arrow", AHOY), _record(local_srv.url, d / "b.arrow", HOWDY)


def test_diff_of_two_instructions(pair: tuple[Recording, Recording]) -> None:
    a, b = pair
    d = diff(a, b)
    assert d.setting_names == ["instructions"]
    instr = d.setting("instructions")
    assert instr is not None
    assert f"-{AHOY}" in instr.text_diff
    assert f"+{HOWDY}" in instr.text_diff
    assert len(d.turns) == 3
    for t in d.turns:
        assert not t.user_changed
        assert t.assistant_changed
        assert t.assistant_a is not None
        assert t.assistant_a.startswith("Ahoy You said:")
        assert t.assistant_b is not None
        assert t.assistant_b.startswith("Howdy You said:")
        assert [w.op for w in t.words][:2] == ["delete", "insert"]
        assert t.latency_a_ms is not None
        assert t.latency_b_ms is not None
        # The local backend reports its own model label, priced at zero: nothing is billed.
        assert t.cost_a == 0.0
    assert d.turns[0].user_a == "hello there"
    assert d.turns[2].user_b == "thanks"
    text = d.text()
    assert "[-Ahoy-] {+Howdy+}" in text
    assert "1 setting differs (instructions); answers: 3 of 3 turns changed" in text
    html = d._repr_html_()
    assert "<del>Ahoy</del>" in html
    assert "<ins>Howdy</ins>" in html
    same = diff(a, a)
    assert same.identical
    assert not same.settings


def test_redrive_with_new_instructions(
    pair: tuple[Recording, Recording], local_srv: Any, tmp_path: Path
) -> None:
    a, _ = pair
    c = redrive(a, instructions=HOWDY, url=local_srv.url, record=tmp_path / "c.arrow",
                progress=False)  # fmt: skip
    assert c.meta["parent"]["path"] == str(a.path)
    assert c.meta["redrive"]["changed"] == {"instructions": HOWDY}
    d = diff(a, c)
    assert [t.user_changed for t in d.turns] == [False, False, False]
    # The audio turn was sent as the exact bytes the parent committed.
    ua, uc = plan_turns(a.state), plan_turns(c.state)
    assert [(t.kind, t.text, t.audio) for t in ua] == [(t.kind, t.text, t.audio) for t in uc]
    assert all(t.assistant_changed for t in d.turns)
    assert all((t.assistant_b or "").startswith("Howdy You said:") for t in d.turns)
    assert d.setting("instructions") is not None
    # Turning the recorded VAD off is the re-drive's own mechanism: its mode, not a change.
    assert d.setting_names == ["instructions"]
    assert [x.name for x in d.mode] == ["turn_detection"]
    assert c.meta["redrive"]["mode"]["pace"] == "recorded"
    assert "re-drive mode: each recorded turn's exact audio, committed by hand" in d.text()
    assert "re-drive mode" in d._repr_html_()


def test_pace_is_checked() -> None:
    with pytest.raises(ValueError, match="pace must be one of 'recorded', 'fast', got 'slow'"):
        Pace.parse("slow")


def test_redrive_batch(pair: tuple[Recording, Recording], local_srv: Any, tmp_path: Path) -> None:
    a, _ = pair
    out = redrive_batch(
        a,
        {"yo": {"instructions": 'Start every answer with "Yo".'}, "same": {}},
        url=local_srv.url,
        record=tmp_path,
        progress=False,
    )
    assert set(out) == {"yo", "same"}
    assert out["yo"].meta["redrive"]["name"] == "yo"
    assert all(t.assistant_text.startswith("Yo ") for t in _views(out["yo"]))
    assert [t.assistant_text for t in _views(out["same"])] == [t.assistant_text for t in _views(a)]


def _views(rec: Recording) -> list[Any]:
    from realtime_nb.debugging.metrics import turn_views

    return turn_views(rec.state)


def test_metrics_and_plots(pair: tuple[Recording, Recording]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    m = metrics(pair[0])
    assert [t.kind for t in m.turns] == ["text", "vad", "text"]
    assert all(t.latency_ms is not None and t.latency_ms >= 0 for t in m.turns)
    assert all(t.status == "completed" for t in m.turns)
    assert m.model == LOCAL_MODEL
    assert m.cost_usd == 0.0
    r = m.responses[0]
    assert r.usage.output_audio_tokens > 0
    assert r.cost_usd == 0.0
    assert "tokens: in" in m.text()
    fig = m.plot_latency()
    (ax,) = fig.axes
    assert sorted(p.get_gid() for p in ax.patches if p.get_gid()) == ["turn-0", "turn-1", "turn-2"]
    assert m.plot_timeline()._repr_png_().startswith(b"\x89PNG")


def test_metrics_heard_latency_from_playback_events() -> None:
    events = [
        {"source": "client", "t": 0.0, "event": {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}},
        {"source": "server", "t": 0.1, "event": {"type": "conversation.item.added", "item": {
            "id": "u1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}},
        {"source": "server", "t": 0.2, "event": {"type": "response.created", "response": {"id": "r1", "conversation_id": "c"}}},
        {"source": "server", "t": 0.2, "event": {"type": "response.output_item.added", "response_id": "r1",
         "item": {"id": "a1", "type": "message", "role": "assistant", "content": []}}},
        {"source": "server", "t": 0.5, "event": {"type": "response.output_audio.delta", "response_id": "r1",
         "item_id": "a1", "delta": "AAAA"}},
        {"source": "local", "t": 0.7, "event": {"type": "local.playback.started", "item_id": "a1"}},
        {"source": "server", "t": 0.9, "event": {"type": "response.done", "response": {"id": "r1", "status": "completed"}}},
    ]  # fmt: skip
    m = metrics(Recording.from_events(events))
    assert m.turns[0].latency_ms == pytest.approx(400.0)
    assert m.turns[0].heard_ms == pytest.approx(600.0)


#: How far the re-driven turns' timing may stray from the recorded (ms). Measured on the demo
#: recording: speech 2599.4 vs 2597.8 ms, end of speech to commit 333.1 vs 336.6 ms; the margin is
#: for a loaded 2-core CI machine (a fast re-drive is off by the whole 2.6 s of speech).
TIMING_TOLERANCE_MS = 150.0


def test_readme_redrive_offline_reproduces_the_turn_timing_and_says_why_answers_stay(
    tmp_path: Path,
) -> None:
    """The README's example, offline: the recorded tool outputs answer the tool calls, the
    audio goes out as it was recorded, and the diff explains why the answers did not change."""
    from realtime_nb.debugging.redrive import recorded_tools
    from realtime_nb.local import LocalServer
    from tests.conftest import REPO

    parent = Recording.open(REPO / "recordings" / "demo.arrow")
    recorded = [i.output for i in parent.state.items if i.type == "function_call_output"]
    assert recorded
    (stand_in,) = recorded_tools(parent)
    assert stand_in.name == "get_weather"
    with LocalServer("tools", fast=True) as srv:
        new = parent.redrive(
            instructions="Answer in one short sentence.",
            url=srv.url,
            record=tmp_path / "r.arrow",
            progress=False,
        )
    outputs = [i.output for i in new.state.items if i.type == "function_call_output"]
    assert outputs == recorded
    assert not new.state.errors
    # Timing: the speech takes as long and is committed as late after its end as recorded.
    ma, mb = metrics(parent), metrics(new)
    (ta,), (tb,) = ma.turns, mb.turns
    (sa,), (sb,) = ma.user_speech, mb.user_speech
    assert ta.speech_end_s is not None and tb.speech_end_s is not None
    assert ta.committed_s is not None and tb.committed_s is not None
    speech_a, speech_b = (sa.end_s - sa.start_s) * 1e3, (sb.end_s - sb.start_s) * 1e3
    assert speech_a > 2000
    assert abs(speech_b - speech_a) < TIMING_TOLERANCE_MS
    wait_a = (ta.committed_s - ta.speech_end_s) * 1e3
    wait_b = (tb.committed_s - tb.speech_end_s) * 1e3
    assert abs(wait_b - wait_a) < TIMING_TOLERANCE_MS
    # The stand-in does not follow "Answer in one short sentence.": the diff says so.
    d = diff(parent, new)
    # (A demo recorded before the local backend named itself says model gpt-realtime: then the
    # model differs too, truly.)
    same_model = parent.state.session.get("model") == LOCAL_MODEL
    assert d.setting_names == (["instructions"] if same_model else ["model", "instructions"])
    assert f"({', '.join(d.setting_names)}); answers: " in d.text()
    # (whether the answer changed is up to the local recogniser; "0 of 1" no longer reads as
    # "the instructions changed nothing" without the settings and the note beside it)
    assert any("local backend" in n and "Start every answer with" in n for n in d.notes)
    assert d.turns[0].latency_a_ms == ta.latency_ms
    assert d.turns[0].latency_b_ms == tb.latency_ms
