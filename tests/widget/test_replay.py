"""The kernel half of the replay view (no browser): the message catalogue of replay.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime_nb.storage.recording import Recording
from realtime_nb.widget import ReplayWidget
from realtime_nb.widget.replay import MAX_REQUEST_S

from . import lab as L


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    path = tmp_path_factory.mktemp("replay") / "synthetic.arrow"
    return Recording.open(L.synthetic_recording(path, 3.0, truncate_every=2))


class Capture:
    """Stands in for the comm: what the widget sends, JSON-checked."""

    def __init__(self, w: ReplayWidget) -> None:
        self.msgs: list[tuple[dict[str, Any], list[bytes]]] = []
        self.cond = threading.Condition()
        w.send = self.send  # type: ignore[method-assign]  # capturing what the widget sends

    def send(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        json.dumps(msg)  # everything but the buffers must be JSON
        with self.cond:
            self.msgs.append((msg, list(buffers or [])))
            self.cond.notify_all()

    def wait(
        self, mtype: str, n: int = 1, timeout: float = 20
    ) -> list[tuple[dict[str, Any], list[bytes]]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for m in self.msgs if m[0]["type"] == mtype]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{n} {mtype!r} messages, got {len(got)}")
                self.cond.wait(left)


def _widget(rec: Recording) -> tuple[ReplayWidget, Capture]:
    w = ReplayWidget(rec)
    return w, Capture(w)


def _msg(w: ReplayWidget, **content: Any) -> None:
    w._on_msg(w, {"view": "v1", **content}, None)


def test_requests_before_the_recording_is_read_wait_for_it(rec: Recording) -> None:
    w, cap = _widget(rec)
    try:
        # Sent at once, before the worker has read anything: answered in order once it has.
        _msg(w, type="ready", bins=500)
        _msg(w, type="get_state", req=1, t=12.0, events=True, full=True)
        _msg(w, type="get_state", req=2, t=40.0, events=True, full=False)
        ((ov, bufs),) = cap.wait("overview")
        states = cap.wait("state")
        assert w.status == "ready"
        assert ov["bins"] == 500 and len(bufs) == 4
        assert all(len(b) == 500 * 4 for b in bufs)
        peaks = [np.frombuffer(b, "<f4") for b in bufs]
        want = w.data.overview(500)
        assert np.array_equal(peaks[0], want.user_min) and np.array_equal(
            peaks[3], want.assistant_max
        )
        assert ov["duration_s"] == pytest.approx(w.data.duration_s)
        assert [m["item_id"] for m in ({"item_id": t[1]} for t in ov["truncations"])] == [
            m.item_id for m in w.data.truncations()
        ]
        assert len(ov["vad"]) == len(w.data.vad_segments())
        # The first seek may be skipped as superseded; the last one is always answered.
        assert states[-1][0]["req"] == 2
    finally:
        w.close()


def test_state_is_the_reducer_state_at_t_and_diffs_per_view(rec: Recording) -> None:
    w, cap = _widget(rec)
    try:
        w.data  # noqa: B018  # wait until read
        data = w.data
        for req, t in enumerate([95.0, 30.5, 170.2], start=1):
            _msg(w, type="get_state", req=req, t=t, events=False, full=req == 1)
        states = [m for m, _ in cap.wait("state", 3)]
        shown: dict[str, dict[str, Any]] = {}
        for msg, t in zip(states, [95.0, 30.5, 170.2], strict=True):
            if msg["full"]:
                shown = {}
            shown.update({d["id"]: d for d in msg["items"]})
            want = data.state_at(t)
            assert msg["order"] == [it.id for it in want.items]
            assert [shown[i]["text"] for i in msg["order"]] == [it.text for it in want.items]
            assert [bool(shown[i].get("truncated")) for i in msg["order"]] == [
                it.truncated for it in want.items
            ]
            assert msg["turns"] == len(want.turns)
        assert not states[1]["full"] and len(states[1]["items"]) < len(states[1]["order"]) + 1
        # A truncated item carries what was heard, for the view to mark the rest.
        cut = next(d for d in shown.values() if d.get("truncated"))
        assert cut["text"].startswith(cut["heard_text"]) and cut["heard_text"] != cut["text"]
    finally:
        w.close()


def test_event_window_and_event_detail(rec: Recording) -> None:
    w, cap = _widget(rec)
    try:
        data = w.data
        _msg(w, type="get_state", req=1, t=60.0, events=True, full=True)
        ((msg, _),) = cap.wait("state")
        ev = msg["events"]
        rows = ev["rows"]
        want = data.event_rows(ev["from_s"], ev["to_s"])
        assert [r[0] for r in rows] == [r.seq for r in want]
        assert ev["from_s"] <= 60.0 <= ev["to_s"]
        assert not any(
            r[3] in ("input_audio_buffer.append", "response.output_audio.delta") for r in rows
        )
        seq = rows[len(rows) // 2][0]
        _msg(w, type="get_event", req=2, seq=seq)
        ((detail, _),) = cap.wait("event")
        assert detail["seq"] == seq and detail["req"] == 2
        assert detail["data"]["type"] == rows[len(rows) // 2][3]
    finally:
        w.close()


def test_audio_windows_are_binary_and_bounded(rec: Recording) -> None:
    w, cap = _widget(rec)
    try:
        data = w.data
        _msg(w, type="get_audio", req=1, start_s=48.0, duration_s=4.0)
        _msg(w, type="get_audio", req=2, start_s=0.0, duration_s=10_000.0)
        (a, abufs), (b, bbufs) = cap.wait("audio", 2)
        assert a["req"] == 1 and a["rate"] == 24_000
        assert abufs == [
            data.audio_window("user", 48.0, 4.0),
            data.audio_window("assistant", 48.0, 4.0),
        ]
        assert b["duration_s"] == MAX_REQUEST_S
        assert len(bbufs[0]) == int(MAX_REQUEST_S * 24_000 * 2)
        assert w.sent_stats["audio_bytes"] == sum(map(len, abufs + bbufs))
    finally:
        w.close()


def test_bad_requests_are_reported_not_fatal(rec: Recording, tmp_path: Path) -> None:
    w, cap = _widget(rec)
    try:
        w.data  # noqa: B018
        w._on_msg(w, "not an object", None)
        _msg(w, type="launch_rockets")
        _msg(w, type="get_event", req=7, seq=10**9)
        ((err, _),) = cap.wait("error")
        assert err["req"] == 7 and "no event with seq" in err["text"]
        assert [e["level"] for e in w.frontend_log] == ["warning", "warning"]
        assert "launch_rockets" in w.frontend_log[1]["message"]
        _msg(w, type="get_state", req=8, t=1.0, events=False, full=True)
        cap.wait("state")  # still answering
    finally:
        w.close()
    broken = tmp_path / "broken.arrow"
    broken.write_bytes(b"not arrow at all")
    w2 = ReplayWidget(broken)
    try:
        # The status traits say it (a view rendered later reads them; one already rendered
        # also gets an ``error`` message).
        with pytest.raises(RuntimeError, match="could not be read"):
            w2.data  # noqa: B018
        assert w2.status == "error"
        assert "not a realtime_nb recording" in w2.status_text
    finally:
        w2.close()


def test_recording_play_returns_the_replay_widget(rec: Recording) -> None:
    w = rec.play()
    try:
        assert isinstance(w, ReplayWidget)
        assert w.data.duration_s == pytest.approx(rec.replay_data().duration_s)
        assert w.duration_s == pytest.approx(w.data.duration_s)
    finally:
        w.close()


# --- timeline markers, speeds, "(speaking...)" ---------------------------------------------------

DEMO = Path(__file__).resolve().parents[2] / "recordings" / "demo.arrow"


def test_markers_label_items_tool_calls_responses_and_truncations(rec: Recording) -> None:
    from realtime_nb.widget.replay import MARKER_KINDS, markers

    demo = Recording.open(DEMO).replay_data()
    ms = markers(demo)
    assert [m[0] for m in ms] == sorted(m[0] for m in ms)
    assert {m[1] for m in ms} <= set(MARKER_KINDS)
    by_kind = {k: [m for m in ms if m[1] == k] for k in MARKER_KINDS}
    st = demo.state
    # Every message of both speakers, numbered per speaker; the user's where the speech starts.
    users = [it for it in st.items if it.type == "message" and it.role == "user"]
    assistants = [it for it in st.items if it.type == "message" and it.role == "assistant"]
    assert [m[3] for m in by_kind["user"]] == [it.id for it in users]
    assert [m[2] for m in by_kind["user"]] == [f"user {i}" for i in range(1, len(users) + 1)]
    assert [m[3] for m in by_kind["assistant"]] == [it.id for it in assistants]
    speech = {s.item_id: s.start_s for s in demo.vad_segments()}
    assert by_kind["user"][0][0] == pytest.approx(speech[users[0].id], abs=1e-3)
    starts = demo.item_starts_s()
    assert by_kind["assistant"][0][0] == pytest.approx(starts[assistants[0].id], abs=1e-3)
    # The tool call by name, each response once.
    calls = [it for it in st.items if it.type == "function_call"]
    assert calls and [m[2] for m in by_kind["tool"]] == [f"{c.name}()" for c in calls]
    assert len(by_kind["response"]) == len(st.responses) >= 2
    # Truncations (the synthetic session cuts every second answer 1.2 s in): where and how much.
    data = rec.replay_data()
    cuts = [m for m in markers(data) if m[1] == "truncation"]
    assert len(cuts) == len(data.truncations()) > 0
    for m, t in zip(cuts, data.truncations(), strict=True):
        assert m[2] == "✂ 1.20 s" and m[3] == t.item_id
        assert m[0] == pytest.approx(t.t_s, abs=1e-3)


def test_overview_carries_the_markers(rec: Recording) -> None:
    from realtime_nb.widget.replay import markers

    w, cap = _widget(rec)
    try:
        _msg(w, type="ready", bins=300)
        ((ov, _),) = cap.wait("overview")
        assert ov["markers"] == markers(w.data)
    finally:
        w.close()


def test_speeds_are_the_four_offered_and_others_are_refused(rec: Recording) -> None:
    import traitlets

    from realtime_nb.widget.replay import SPEEDS

    assert SPEEDS == (0.5, 1.0, 1.5, 2.0)
    w = ReplayWidget(rec)
    try:
        for s in SPEEDS:
            w.speed = s
            assert w.speed == s
        with pytest.raises(traitlets.TraitError, match=r"0\.5, 1, 1\.5, 2.*got 3"):
            w.speed = 3.0
        assert w.speed == 2.0
    finally:
        w.close()


def test_state_says_when_the_user_is_speaking_before_the_item_exists(rec: Recording) -> None:
    w, cap = _widget(rec)
    try:
        seg = w.data.vad_segments()[0]
        assert seg.end_s is not None
        _msg(w, type="get_state", req=1, t=seg.start_s - 1.0, full=True)
        _msg(w, type="get_state", req=2, t=seg.start_s + 0.5, full=True)
        # After the turn is over the item holds the speech: no more "speaking".
        _msg(w, type="get_state", req=3, t=seg.end_s + 5.0, full=True)
        states = {m["req"]: m for m, _ in cap.wait("state", 3)}
        assert [states[r]["speaking"] for r in (1, 2, 3)] == [False, True, False]
        assert seg.item_id in states[3]["order"]
    finally:
        w.close()


def test_items_are_pending_while_their_words_are_to_come() -> None:
    w = ReplayWidget(DEMO)
    cap = Capture(w)
    try:
        data = w.data
        asst = next(it for it in data.state.items if it.role == "assistant")
        first_audio = data.item_starts_s()[asst.id]
        _msg(w, type="get_state", req=1, t=first_audio + 0.05, full=True)
        _msg(w, type="get_state", req=2, t=data.duration_s, full=True)
        states = {m["req"]: m for m, _ in cap.wait("state", 2)}
        during = {d["id"]: d for d in states[1]["items"]}
        after = {d["id"]: d for d in states[2]["items"]}
        assert during[asst.id]["pending"] is True
        assert after[asst.id]["pending"] is False
        assert all(d["pending"] is False for d in after.values())
    finally:
        w.close()
