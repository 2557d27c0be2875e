"""The kernel half of the widget: comm handshake, batching, mic sequencing, interruption."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from realtime_nb.core.audio import AudioFormat
from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source
from realtime_nb.core.reducer import ConversationState, Reducer
from realtime_nb.storage.recording import Recording
from realtime_nb.widget import RealtimeWidget, redact, worklet_source
from realtime_nb.widget._viewmodel import conversation_view
from realtime_nb.widget.widget import AUDIO_BATCH_S, UI_UPDATE_S
from tests.conftest import SESSIONS

SECRET = "sk-test-widget-" + "s3cr3t" * 5


@dataclass
class FakeSession:
    """The Session interface the widget uses, recording every call. Its conversation is a real
    reducer's state, fed by :meth:`emit` as the session's I/O thread feeds it: the event is
    applied, then every subscriber is called, on the emitting thread."""

    input_format: AudioFormat = field(default_factory=AudioFormat)
    output_format: AudioFormat = field(default_factory=AudioFormat)
    status: str = "connected"
    backend: str = "fake backend"
    recording_path: Path | None = None
    cost: float = 0.0
    settings: dict[str, Any] = field(
        default_factory=lambda: {"instructions": "hi", "voice": "alloy", "turn_detection": None}
    )
    calls: list[tuple[str, Any]] = field(default_factory=list)
    subs: list[Callable[[Event], None]] = field(default_factory=list)
    seq: int = 0
    reducer: Reducer = field(default_factory=Reducer)
    #: Names of the threads that read the live conversation.
    readers: set[str] = field(default_factory=set)

    @property
    def conversation(self) -> ConversationState:
        self.readers.add(threading.current_thread().name)
        return self.reducer.state

    def snapshot(self) -> ConversationState:
        return self.reducer.state.snapshot()

    def on(self, event_type: str, cb: Callable[[Event], None]) -> Callable[[], None]:
        self.subs.append(cb)
        return lambda: self.subs.remove(cb)

    def emit(
        self, source: Source, data: dict[str, Any], audio: bytes | None = None, **ids: Any
    ) -> None:
        ev = Event(self.seq, self.seq * 1000, source, data["type"], data=data, audio=audio, **ids)
        self.seq += 1
        self.replay(ev)

    def replay(self, ev: Event) -> None:
        """Apply a recorded event and tell the subscribers, as the session does."""
        self.reducer.apply(ev)
        for cb in list(self.subs):
            cb(ev)

    def __getattr__(self, name: str) -> Any:
        if name in {"append_audio", "commit", "respond", "cancel", "clear", "send_text", "update",
                    "truncate", "log_local"}:  # fmt: skip
            return lambda *a, **k: self.calls.append((name, (a, k)))
        raise AttributeError(name)


class Capture:
    def __init__(self, w: RealtimeWidget) -> None:
        self.msgs: list[tuple[dict[str, Any], list[bytes]]] = []
        self.lock = threading.Lock()
        w.send = self.send  # the comm is a dummy outside a kernel

    def send(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        json.dumps(msg)  # everything must be JSON
        with self.lock:
            self.msgs.append((msg, list(buffers or [])))

    def of(self, t: str) -> list[tuple[dict[str, Any], list[bytes]]]:
        with self.lock:
            return [m for m in self.msgs if m[0]["type"] == t]

    def wait(
        self, t: str, n: int = 1, timeout: float = 3.0
    ) -> list[tuple[dict[str, Any], list[bytes]]]:
        deadline = time.monotonic() + timeout
        while len(self.of(t)) < n:
            assert time.monotonic() < deadline, (
                f"no {t!r} message; got {[m[0]['type'] for m in self.msgs]}"
            )
            time.sleep(0.01)
        return self.of(t)


@pytest.fixture
def w_s() -> Any:
    s = FakeSession()
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    cap = Capture(w)
    yield w, s, cap
    w.close()


def msg(w: RealtimeWidget, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
    w._on_msg(w, {"view": "v1", **content}, buffers or [])


def test_worklet_source_is_one_module_without_exports() -> None:
    src = worklet_source()
    assert "\nexport " not in src
    assert not src.startswith("export")
    assert "class PlaybackQueue" in src
    assert 'registerProcessor("rtnb-capture"' in src


def test_redact_blanks_keys() -> None:
    out = redact({"error": {"message": f"bad key {SECRET}"}, "authorization": "Bearer abc"})
    assert SECRET not in json.dumps(out)
    assert out["authorization"] != "Bearer abc"


def test_nothing_is_sent_before_ready_then_a_snapshot_first(w_s: Any) -> None:
    w, s, cap = w_s
    s.emit(Source.SERVER, {"type": "session.created"})
    time.sleep(0.2)
    assert cap.msgs == []
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    assert cap.msgs[0][0]["type"] == "snapshot"
    assert [e["type"] for e in cap.msgs[0][0]["events"]] == ["session.created"]


def test_audio_is_batched_under_the_iopub_limit(w_s: Any) -> None:
    w, s, cap = w_s
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    # 1000 deltas of 1 ms each in ~0.5 s: far more than 1000 messages/s if forwarded one by one.
    pcm = bytes(range(48)) * 1
    t0 = time.monotonic()
    for _ in range(1000):
        s.emit(
            Source.SERVER,
            {"type": "response.output_audio.delta", "item_id": "it"},
            pcm,
            item_id="it",
        )
        time.sleep(0.0005)
    elapsed = time.monotonic() - t0
    time.sleep(0.3)
    audio = cap.of("audio")
    assert b"".join(b[0] for _, b in audio) == pcm * 1000, "all audio, in order"
    assert len(audio) <= elapsed / AUDIO_BATCH_S + 3
    rate = len(cap.msgs) / (elapsed + 0.3)
    assert rate < 100, f"{rate:.0f} messages/s"
    assert all(m["view"] == "v1" and m["item_id"] == "it" for m, _ in audio)


def test_view_updates_are_coalesced_but_audio_is_not(w_s: Any) -> None:
    """A reply's stream of events reaches the page as a few events/items/stats messages (each
    one costs the page's main thread, where the mic chunks wait), every event still in them and
    the first one not held back; audio keeps its own 50 ms pace."""
    w, s, cap = w_s
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    time.sleep(UI_UPDATE_S)  # the snapshot counts as an update
    s.emit(Source.SERVER, {"type": "response.created", "response": {"id": "r1"}})
    first = time.monotonic()
    cap.wait("events")
    assert time.monotonic() - first < UI_UPDATE_S, "the first update after a quiet spell waits"
    pcm = bytes(96)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.0:
        s.emit(Source.SERVER, {"type": "response.output_audio_transcript.delta",
                               "item_id": "it", "response_id": "r1", "delta": "la "},
               item_id="it", response_id="r1")  # fmt: skip
        s.emit(Source.SERVER, {"type": "response.output_audio.delta", "item_id": "it"}, pcm,
               item_id="it")  # fmt: skip
        n += 2
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    time.sleep(2 * UI_UPDATE_S)
    sent = [e["seq"] for m, _ in cap.of("events") for e in m["events"]]
    assert sent == list(range(sent[0], sent[0] + n + 1)), "every event, once, in order"
    for kind in ("events", "items", "stats"):
        assert len(cap.of(kind)) <= elapsed / UI_UPDATE_S + 3, kind
    audio = cap.of("audio")
    assert len(audio) > elapsed / UI_UPDATE_S + 3, "audio is not held to the view's pace"


def test_mic_chunks_in_order_duplicates_dropped_gaps_counted(w_s: Any) -> None:
    w, s, _ = w_s
    chunks = [bytes([i]) * 2400 for i in range(6)]
    for seq in (0, 1, 1, 2, 0, 4, 5):
        msg(w, {"type": "mic", "seq": seq, "t": time.time() * 1000}, [chunks[seq]])

    def appended() -> list[bytes]:
        return [a[0][0] for name, a in s.calls if name == "append_audio"]

    assert appended() == [chunks[i] for i in (0, 1, 2)]  # 4 and 5 wait for 3
    assert w.mic_stats.duplicates == 2
    msg(w, {"type": "mic_state", "state": "on"})
    msg(w, {"type": "mic_state", "state": "off"})  # nothing more is coming: 3 is lost
    assert appended() == [chunks[i] for i in (0, 1, 2, 4, 5)]
    assert w.mic_stats.gaps == 1
    # Another view has its own sequence.
    w._on_msg(w, {"type": "mic", "view": "v2", "seq": 0}, [chunks[0]])
    assert w.mic_stats.duplicates == 2


def test_chunks_sent_again_after_the_lane_closed_fill_the_hole_quietly(w_s: Any) -> None:
    """The mic lane closed with chunk 2 in flight: the page sends 0..2 again over the comm,
    marked ``resend``; 2 fills the hole (3 and 4 waited for it), 0 and 1 are dropped quietly."""
    w, s, _ = w_s
    chunks = [bytes([i]) * 2400 for i in range(5)]
    for seq in (0, 1, 3, 4):
        msg(w, {"type": "mic", "seq": seq}, [chunks[seq]])
    for seq in (0, 1, 2):
        msg(w, {"type": "mic", "seq": seq, "resend": True}, [chunks[seq]])
    appended = [a[0][0] for name, a in s.calls if name == "append_audio"]
    assert appended == chunks
    st = w.mic_stats
    assert (st.resent, st.duplicates, st.gaps, st.chunks) == (2, 0, 0, 5)


def test_mic_chunks_that_overtake_are_put_back_in_order(w_s: Any) -> None:
    from realtime_nb.widget.widget import MAX_REORDER_CHUNKS

    w, s, _ = w_s
    chunks = [i.to_bytes(2, "little") * 1200 for i in range(MAX_REORDER_CHUNKS + 10)]
    for seq in (0, 2, 1, 4, 3, 5):  # as a kernel handling comm messages on two threads may
        msg(w, {"type": "mic", "seq": seq}, [chunks[seq]])
    appended = [a[0][0] for name, a in s.calls if name == "append_audio"]
    assert appended == chunks[:6]
    assert (w.mic_stats.gaps, w.mic_stats.duplicates) == (0, 0)
    # A chunk that never comes is given up once MAX_REORDER_CHUNKS later ones are waiting.
    for seq in range(7, 7 + MAX_REORDER_CHUNKS + 1):
        msg(w, {"type": "mic", "seq": seq}, [chunks[seq]])
    appended = [a[0][0] for name, a in s.calls if name == "append_audio"]
    assert appended == chunks[:6] + chunks[7 : 7 + MAX_REORDER_CHUNKS + 1]
    assert w.mic_stats.gaps == 1


def test_mic_g711_is_encoded_for_the_session() -> None:
    s = FakeSession(input_format=AudioFormat("audio/pcmu", 8000))
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    try:
        assert w.input_rate == 8000
        msg(w, {"type": "mic", "seq": 0}, [b"\x00\x00" * 400])
        (payload,) = [a[0][0] for name, a in s.calls if name == "append_audio"]
        assert len(payload) == 400  # one mu-law byte per sample
    finally:
        w.close()


def test_speech_started_flushes_and_drops_the_rest_of_the_item(w_s: Any) -> None:
    w, s, cap = w_s
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    delta = {"type": "response.output_audio.delta", "item_id": "a"}
    s.emit(Source.SERVER, delta, b"\x01\x00" * 2400, item_id="a")
    cap.wait("audio")
    s.emit(Source.SERVER, {"type": "input_audio_buffer.speech_started"})
    s.emit(Source.SERVER, delta, b"\x01\x00" * 2400, item_id="a")  # still in flight
    cap.wait("flush")
    time.sleep(0.2)
    assert len(cap.of("audio")) == 1
    assert cap.of("flush")[0][0] == {"type": "flush", "view": "v1", "reason": "speech_started"}
    # The view reports what it played; the session is told (and truncates by itself).
    msg(w, {"type": "played", "item_id": "a", "played_ms": 37.5, "reason": "interrupted"})
    assert ("log_local", (("local.playback.played",
            {"item_id": "a", "played_ms": 37.5, "reason": "interrupted"}), {})) in s.calls  # fmt: skip
    assert not any(name == "truncate" for name, _ in s.calls)


def test_on_a_call_speech_started_flushes_nothing() -> None:
    """WebRTC: the server stops its own track and the page shows output_audio_buffer.cleared
    as "interrupted"; a relay flush (nothing was relayed) would only wipe that."""
    s = FakeSession()
    s.transport = "webrtc"  # type: ignore[attr-defined]  # what Session(transport="webrtc") has
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    cap = Capture(w)
    try:
        assert w.transport == "webrtc"
        msg(w, {"type": "ready"})
        cap.wait("snapshot")
        s.emit(Source.SERVER, {"type": "input_audio_buffer.speech_started"})
        s.emit(Source.SERVER, {"type": "output_audio_buffer.cleared", "response_id": "r"})
        cap.wait("events")
        time.sleep(0.3)
        assert cap.of("flush") == []
    finally:
        w.close()


def test_push_to_talk(w_s: Any) -> None:
    w, s, cap = w_s
    msg(w, {"type": "ready"})
    msg(w, {"type": "ptt", "action": "start"})
    msg(w, {"type": "mic", "seq": 0}, [b"\x00\x00" * 1200])  # 50 ms: too short to commit
    msg(w, {"type": "ptt", "action": "end"})
    assert "commit" not in [n for n, _ in s.calls]
    assert "only 50 ms" in cap.wait("notice")[0][0]["text"]
    s.calls.clear()
    msg(w, {"type": "ptt", "action": "start"})
    for i in range(1, 4):
        msg(w, {"type": "mic", "seq": i}, [b"\x00\x00" * 1200])
    msg(w, {"type": "ptt", "action": "end"})
    names = [n for n, _ in s.calls]
    assert names[:2] == ["cancel", "clear"]
    assert names[-2:] == ["commit", "respond"]


def test_settings_mode_text_stop_and_unknown(w_s: Any) -> None:
    w, s, _ = w_s
    msg(w, {"type": "update", "instructions": "be brief", "voice": "marin", "mode": "push_to_talk"})
    assert ("update", ((), {"instructions": "be brief", "voice": "marin",
            "turn_detection": None})) in s.calls  # fmt: skip
    msg(w, {"type": "update", "mode": "semantic_vad"})
    assert s.calls[-1] == ("update", ((), {"turn_detection": {"type": "semantic_vad"}}))
    msg(w, {"type": "text", "text": " hello "})
    assert s.calls[-1] == ("send_text", (("hello",), {"respond": True}))
    msg(w, {"type": "stop"})
    assert s.calls[-1][0] == "cancel"
    msg(w, {"type": "bogus"})
    assert "bogus" in w.frontend_log[-1]["message"]
    assert w.mode == "push_to_talk"  # from the session's settings (turn_detection None)


def test_mic_state_logs_local_events(w_s: Any) -> None:
    w, s, _ = w_s
    msg(w, {"type": "mic_state", "state": "on"})
    msg(w, {"type": "mic_state", "state": "off"})
    assert [a[0][0] for n, a in s.calls if n == "log_local"] == [
        "local.mic.started",
        "local.mic.stopped",
    ]
    assert w.mic == "off"


def test_instance_state_is_not_shared() -> None:
    a, b = RealtimeWidget(FakeSession()), RealtimeWidget(FakeSession())  # type: ignore[arg-type]  # fakes with the Session's interface
    try:
        assert a._pacer is not b._pacer
        assert a.mic_stats is not b.mic_stats
        assert a.frontend_log is not b.frontend_log
    finally:
        a.close()
        b.close()


TOOL_ROUND = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"


def _shown(cap: Capture) -> list[dict[str, Any]]:
    """The items a view shows after every snapshot/items message so far (as items.js applies
    them: changed items replace theirs, and items no longer in the order go)."""
    items: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with cap.lock:
        msgs = [m for m, _ in cap.msgs if m["type"] in ("snapshot", "items")]
    for m in msgs:
        if m["type"] == "snapshot":
            items = {}
        items.update({d["id"]: d for d in m["items"]})
        order = m["order"]
        items = {i: d for i, d in items.items() if i in order}
    return [items[i] for i in order]


def _wait_shown(cap: Capture, expected: list[dict[str, Any]], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while _shown(cap) != expected:
        assert time.monotonic() < deadline, f"shown {_shown(cap)!r}, expected {expected!r}"
        time.sleep(0.01)


def test_the_transcript_is_what_the_reducer_says(w_s: Any) -> None:
    w, s, cap = w_s
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    for ev in Recording.import_file(TOOL_ROUND).events:
        s.replay(ev)
    view = conversation_view(s.conversation, 0.0)
    _wait_shown(cap, [view.items[i] for i in view.order])
    types = [d["type"] for d in _shown(cap)]
    assert types == ["message", "function_call", "function_call_output", "message"]
    assert cap.wait("stats")[-1][0]["tokens"] == view.stats["tokens"]
    # A view rendered now gets it all in one snapshot; the live state is never read by the
    # flusher thread, only where the events are applied (here: this thread).
    msg(w, {"type": "ready"})
    snap = cap.wait("snapshot", 2)[-1][0]
    assert snap["order"] == list(view.order)
    assert "realtime_nb-widget-flusher" not in s.readers


def test_a_widget_made_mid_session_starts_from_the_state_so_far() -> None:
    s = FakeSession()
    for ev in Recording.import_file(TOOL_ROUND).events:
        s.replay(ev)
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    cap = Capture(w)
    try:
        msg(w, {"type": "ready"})
        snap = cap.wait("snapshot")[0][0]
        assert snap["items"] == list(conversation_view(s.conversation, 0.0).items.values())
        assert len(snap["items"]) == 4
    finally:
        w.close()


def _user_item(item_id: str, text: str) -> dict[str, Any]:
    item = {"id": item_id, "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]}  # fmt: skip
    return {"type": "conversation.item.added", "item": item}


def test_a_failing_view_keeps_the_last_good_one_and_says_so_once(
    w_s: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import realtime_nb.widget._viewmodel as vm

    w, s, cap = w_s
    msg(w, {"type": "ready"})
    cap.wait("snapshot")
    s.emit(Source.SERVER, _user_item("u0", "hello"), item_id="u0")
    _wait_shown(cap, [vm.item_view(s.conversation.item("u0"))])

    def broken(item: Any, transcribing: bool = False) -> Any:
        raise RuntimeError("boom")

    real = vm.item_view
    monkeypatch.setattr(vm, "item_view", broken)
    for i in range(1, 7):  # more than the old flusher's five retries
        s.emit(Source.SERVER, _user_item(f"u{i}", f"line {i}"), item_id=f"u{i}")
    time.sleep(5 * AUDIO_BATCH_S)
    notices = [m["text"] for m, _ in cap.of("notice")]
    assert len(notices) == 1 and "RuntimeError: boom" in notices[0]
    assert [d["id"] for d in _shown(cap)] == ["u0"], "the last good view stays"
    assert all(m["order"] for m, _ in cap.of("items")), "never an empty order"
    # Once it works again, the items the failed events touched are all there.
    monkeypatch.setattr(vm, "item_view", real)
    s.emit(Source.SERVER, _user_item("u7", "back"), item_id="u7")
    _wait_shown(cap, [real(it) for it in s.conversation.items])
    assert len(_shown(cap)) == 8
    assert len(cap.of("notice")) == 1


@pytest.mark.slow
def test_real_session_and_local_server_never_send_the_key() -> None:
    from realtime_nb.client.session import Session
    from realtime_nb.local.server import LocalServer

    with LocalServer(fast=True, api_key=SECRET) as srv:
        s = Session(url=srv.url, api_key=SECRET, record=False)
        w = s.widget()
        cap = Capture(w)
        try:
            msg(w, {"type": "ready"})
            msg(w, {"type": "text", "text": "hello there"})
            cap.wait("audio_done", timeout=20)
            time.sleep(0.3)
            assert sum(len(b[0]) for _, b in cap.of("audio")) > 4800
            blob = json.dumps([m for m, _ in cap.msgs]) + json.dumps(w.get_state(), default=str)
            assert SECRET not in blob
            assert not any(SECRET.encode() in b for _, bs in cap.msgs for b in bs)
            item_msgs = cap.of("items") + cap.of("snapshot")
            texts = [i["text"] for m, _ in item_msgs for i in m["items"]]
            assert any("hello there" in (t or "") for t in texts)
        finally:
            w.close()
            s.close()


def test_the_header_knows_the_recording_file_and_the_backend(tmp_path: Path) -> None:
    path = tmp_path / "talk.arrow"
    s = FakeSession(recording_path=path, backend="embedded local backend (offline stand-in model)")
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    try:
        assert w.recording == str(path)
        assert w.backend == "embedded local backend (offline stand-in model)"
    finally:
        w.close()
    w = RealtimeWidget(FakeSession())  # type: ignore[arg-type]  # record=False: no indicator
    try:
        assert w.recording == ""
    finally:
        w.close()
