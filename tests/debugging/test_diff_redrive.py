"""diff, re-drive and metrics on real sessions against the local server (echo responder: an
instruction 'Start every answer with "X"' makes every answer start with X)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime_nb.debugging.diff import diff
from realtime_nb.debugging.metrics import metrics
from realtime_nb.debugging.redrive import plan_turns, redrive, redrive_batch
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
        assert t.cost_a is not None
        assert t.cost_a > 0
    assert d.turns[0].user_a == "hello there"
    assert d.turns[2].user_b == "thanks"
    text = d.text()
    assert "[-Ahoy-] {+Howdy+}" in text
    assert "3 of 3 turns changed" in text
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
    assert all(t.first_audio_ms is not None and t.first_audio_ms >= 0 for t in m.turns)
    assert all(t.status == "completed" for t in m.turns)
    assert m.cost_usd is not None
    assert m.cost_usd > 0
    r = m.responses[0]
    assert r.usage.output_audio_tokens > 0
    assert r.cost_usd is not None
    assert "tokens: in" in m.text()
    assert m.plot_latency() is not None
    assert m.plot_timeline() is not None


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
    assert m.turns[0].first_audio_ms == pytest.approx(400.0)
    assert m.turns[0].first_heard_ms == pytest.approx(600.0)


def test_redrive_answers_recorded_tool_calls_with_their_recorded_outputs(tmp_path: Path) -> None:
    from realtime_nb.debugging.redrive import recorded_tools
    from realtime_nb.local import LocalServer
    from realtime_nb.storage.recording import Recording
    from tests.conftest import REPO

    parent = Recording.open(REPO / "recordings" / "demo.arrow")
    recorded = [i.output for i in parent.state.items if i.type == "function_call_output"]
    assert recorded
    (stand_in,) = recorded_tools(parent)
    assert stand_in.name == "get_weather"
    with LocalServer("tools", fast=True) as srv:
        new = parent.redrive(url=srv.url, record=tmp_path / "r.arrow", progress=False)
    outputs = [i.output for i in new.state.items if i.type == "function_call_output"]
    assert outputs == recorded
    assert not new.state.errors
