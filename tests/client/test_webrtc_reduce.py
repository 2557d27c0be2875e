"""A WebRTC call's protocol and reduction, sans I/O, with plain lists of events: the sideband's
handshake without ``session.created``, deduplication of the page's copies, the page's tapped
tracks placed (the input track as the input timeline the VAD times refer to, the output track
as the audio of the reply playing), ``heard`` as what was played, and the same state from a
recording read back (bulk path, checkpoints) as live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from realtime_nb.client._calls import EventDedup, OutputPlayback
from realtime_nb.client.protocol import ClientProtocol
from realtime_nb.core.events import Event
from realtime_nb.core.protocol import Source
from realtime_nb.core.reducer import Checkpointer, Reducer
from realtime_nb.storage.recording import Recorder, Recording

JSON = dict[str, Any]
MS = 1_000_000  # ns


def _chunk(value: int, ms: int = 100) -> bytes:
    return np.full(ms * 24, value, "<i2").tobytes()


class Call:
    """A protocol in WebRTC mode fed as the session feeds it, through a real recorder."""

    def __init__(self, path: Path | None = None) -> None:
        self.proto = ClientProtocol({"type": "realtime", "instructions": "Be brief."},
                                    transport="webrtc")  # fmt: skip
        self.rec = Recorder(path, clock=lambda: 0)
        self.events: list[Event] = []
        self.sent: list[JSON] = []

    def _apply(self, ev: Event) -> None:
        self.events.append(ev)
        self.proto.receive(ev)
        for data in self.proto.events_to_record():
            self._apply(self.rec.append(Source.LOCAL, data, t_ns=ev.t_ns))
        for data, _ in self.proto.events_to_send():
            self.sent.append(data)
            self._apply(self.rec.append(Source.CLIENT, data, t_ns=ev.t_ns))

    def server(self, t_ms: float, etype: str, **fields: Any) -> None:
        data = {"type": etype, "event_id": f"event_{len(self.events)}", **fields}
        self._apply(self.rec.append(Source.SERVER, data, t_ns=int(t_ms * MS)))

    def track(self, t_ms: float, track: str, pcm: bytes, at_ms: float | None = None) -> JSON:
        """A chunk recorded at ``t_ms`` whose first sample was at ``at_ms`` (default the same)."""
        t_ns = int((t_ms if at_ms is None else at_ms) * MS)
        data = self.proto.track_event(track, pcm, 24000, t_ns)
        self._apply(self.rec.append(Source.LOCAL, data, audio=pcm, t_ns=int(t_ms * MS)))
        return data

    def connect(self) -> None:
        self.proto.connection_made([], now=0.0)
        for data in self.proto.events_to_record():
            self._apply(self.rec.append(Source.LOCAL, data, t_ns=0))
        for data, _ in self.proto.events_to_send():
            self.sent.append(data)
            self._apply(self.rec.append(Source.CLIENT, data, t_ns=0))

    @property
    def state(self) -> Any:
        return self.proto.state


def test_the_sideband_is_configured_without_waiting_for_session_created() -> None:
    call = Call()
    call.connect()
    # At once, with no server event: the configuration, whose answer is the handshake.
    assert [e["type"] for e in call.sent] == ["session.update"]
    assert call.sent[0]["session"]["instructions"] == "Be brief."
    assert call.proto.phase == "setup" and call.state.connection == "connecting"
    call.server(5, "session.updated", session={"type": "realtime", "instructions": "Be brief."})
    assert call.proto.ready and call.state.connection == "connected"
    # A new sideband re-attaches to the same call: nothing is seeded again.
    assert call.proto.reconnecting() == []


def test_the_first_copy_of_each_event_wins() -> None:
    call = Call()
    ev = {"type": "response.created", "event_id": "event_1"}
    assert call.proto.first_sighting(ev, from_peer=True) is True
    assert call.proto.first_sighting(ev, from_peer=False) is False  # the sideband's copy
    assert call.proto.first_sighting(ev, from_peer=True) is False
    # Without an event_id the page's copy cannot be matched: the sideband's is kept.
    assert call.proto.first_sighting({"type": "x"}, from_peer=True) is False
    assert call.proto.first_sighting({"type": "x"}, from_peer=False) is True
    dedup = EventDedup(window=2)
    for k in range(3):
        assert dedup.first_sighting({"event_id": f"e{k}"})
    assert dedup.first_sighting({"event_id": "e0"})  # forgotten: beyond the window
    # A WebSocket session takes every event as it comes.
    assert ClientProtocol().first_sighting(ev, from_peer=False) is True


#: The user item of a spoken turn, as ``conversation.item.added`` carries it.
USER_ITEM: JSON = {"id": "u1", "type": "message", "role": "user",
                   "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip


def _a_second_of_mic() -> tuple[Call, bytes]:
    """A connected call whose page tapped 1 s of mic audio (chunk k holding the value k, each
    recorded 30 ms after its capture), and that timeline."""
    call = Call()
    call.connect()
    call.server(1, "session.updated", session={"type": "realtime"})
    for k in range(10):
        call.track(100 * k + 30, "input", _chunk(k), at_ms=100 * k)
    return call, b"".join(_chunk(k) for k in range(10))


def test_user_items_get_the_input_track_cut_at_the_vad_times() -> None:
    call, timeline = _a_second_of_mic()
    call.server(1000, "input_audio_buffer.speech_started", audio_start_ms=250, item_id="u1")
    call.server(1010, "input_audio_buffer.speech_stopped", audio_end_ms=730, item_id="u1")
    call.server(1020, "input_audio_buffer.committed", item_id="u1", previous_item_id=None)
    call.server(1030, "conversation.item.added", item=USER_ITEM, previous_item_id=None)
    st = call.state
    assert st.input_audio == timeline
    assert st.item_audio("u1") == timeline[250 * 48 : 730 * 48]
    # Each chunk is on the timeline at its capture time, not when it reached the kernel.
    assert st.input_chunk_times[:2] == [(0, 0), (100 * MS, 4800)]


def test_vad_times_recorded_after_the_commit_still_cut_the_item() -> None:
    """Two copies of a stream merged out of order (``speech_stopped`` after ``committed``, as a
    tool that merges the data channel and the sideband may write it): the item is still the
    VAD's segment, and ``speech_started``'s time is not replaced by the buffer's start."""
    call, timeline = _a_second_of_mic()
    call.server(1000, "input_audio_buffer.speech_started", audio_start_ms=250, item_id="u1")
    call.server(1010, "input_audio_buffer.committed", item_id="u1", previous_item_id=None)
    call.server(1011, "conversation.item.added", item=USER_ITEM, previous_item_id=None)
    st = call.state
    # Until the stop is known: from where speech started to the end of the buffer.
    assert st.item_audio("u1") == timeline[250 * 48 :]
    assert (st.item("u1").audio_start_ms, st.item("u1").audio_end_ms) == (250, 1000)
    call.server(1012, "input_audio_buffer.speech_stopped", audio_end_ms=730, item_id="u1")
    it = st.item("u1")
    assert (it.audio_start_ms, it.audio_end_ms) == (250, 730)
    assert st.item_audio("u1") == timeline[250 * 48 : 730 * 48]
    assert len(st.item_audio("u1")) == (it.audio_end_ms - it.audio_start_ms) * 48


def test_replies_get_what_the_page_played_and_heard_is_what_it_played() -> None:
    call = Call()
    call.connect()
    call.server(1, "session.updated", session={"type": "realtime"})
    call.server(10, "response.created", response={"id": "r1", "status": "in_progress",
                                                   "conversation_id": "c1", "output": []})  # fmt: skip
    msg = {"id": "a1", "type": "message", "role": "assistant", "content": []}
    call.server(11, "response.output_item.added", response_id="r1", item=msg)
    call.track(500, "output", bytes(4800), at_ms=400)  # silence before the reply: no item's
    call.server(1000, "output_audio_buffer.started", response_id="r1")
    assert call.proto.heard_pending(1000 * MS, 0) == ["r1"]  # wait_until_heard waits for it
    played = [_chunk(100 + k) for k in range(4)]
    marks = [call.track(1100 + 100 * k, "output", c, at_ms=1020 + 100 * k) for k, c in enumerate(played)]  # fmt: skip
    call.server(
        1330, "conversation.item.truncated", item_id="a1", content_index=0, audio_end_ms=250
    )
    call.server(1331, "output_audio_buffer.cleared", response_id="r1")
    assert call.proto.heard_pending(1331 * MS, 0) == []
    # Played out of the page's buffer after the clear (late: a slow page): still the reply's...
    late = call.track(1800, "output", _chunk(700), at_ms=1720)
    # ...unless it is the silence after it.
    quiet = call.track(1900, "output", _chunk(3), at_ms=1820)
    after = call.track(5000, "output", _chunk(9), at_ms=4900)
    assert [m["item_id"] for m in marks] == ["a1"] * 4
    assert late["item_id"] == "a1" and late["response_id"] == "r1"
    assert quiet["item_id"] is None and quiet["response_id"] is None
    assert after["item_id"] is None and after["response_id"] is None
    st = call.state
    # The page paused 300 ms between the last chunk and the late one: heard as silence.
    audio = b"".join([*played, bytes(300 * 48), _chunk(700)])
    assert st.item_audio("a1", heard=True) == audio  # what the page played, all of it
    assert st.item_audio("a1", heard=False) == audio
    a1 = st.item("a1")
    assert a1.truncated_ms == 250 and a1.played_ms == pytest.approx(800.0)
    assert a1.audio_end_ms_heard == pytest.approx(800.0)
    assert a1.first_audio_t_ns == 1020 * MS
    assert (1020 * MS, "local.playback.started", {"item_id": "a1", "track": "output"}) in (
        st.local_events
    )
    # The response's first audio is when the server started streaming it.
    assert st.responses["r1"].first_audio_t_ns == 1000 * MS


def test_output_playback_windows() -> None:
    out = OutputPlayback()
    out.on_server_event("output_audio_buffer.started", {"response_id": "r1"}, 1000 * MS)
    assert out.owner(900 * MS) is None  # before the reply (beyond the early margin)
    assert out.owner(980 * MS) == "r1"  # the RTP path beat the event by a little
    out.on_server_event("output_audio_buffer.stopped", {"response_id": "r1"}, 2000 * MS)
    out.on_server_event("output_audio_buffer.started", {"response_id": "r2"}, 2100 * MS)
    assert out.owner(2020 * MS) == "r1"  # the first reply's play-out
    assert out.owner(2150 * MS) == "r2"  # the next reply's, once it started
    assert out.place(1500 * MS) == ("r1", False)
    assert out.place(2020 * MS) == ("r1", True)  # after its end: its audio only if it is sound


def test_a_recording_read_back_reduces_as_the_live_call(tmp_path: Path) -> None:
    path = tmp_path / "call.arrow"
    call = Call(path)
    call.connect()
    call.server(1, "session.updated", session={"type": "realtime"})
    for k in range(6):
        call.track(100 * k + 30, "input", _chunk(k), at_ms=100 * k)
    call.server(600, "input_audio_buffer.speech_started", audio_start_ms=100, item_id="u1")
    call.server(610, "input_audio_buffer.speech_stopped", audio_end_ms=400, item_id="u1")
    call.server(620, "input_audio_buffer.committed", item_id="u1", previous_item_id=None)
    call.server(630, "response.created", response={"id": "r1", "status": "in_progress",
                                                   "conversation_id": "c1", "output": []})  # fmt: skip
    msg = {"id": "a1", "type": "message", "role": "assistant", "content": []}
    call.server(631, "response.output_item.added", response_id="r1", item=msg)
    call.server(700, "output_audio_buffer.started", response_id="r1")
    for k in range(3):
        call.track(800 + 100 * k, "output", _chunk(50 + k), at_ms=720 + 100 * k)
    call.server(1100, "output_audio_buffer.stopped", response_id="r1")
    call.rec.close()
    live = call.state
    rec = Recording.open(path)
    assert [e.type for e in rec.events] == [e.type for e in call.events]
    back = rec.state
    assert back.input_audio == live.input_audio
    assert back.input_chunk_times == live.input_chunk_times
    assert (
        back.item_audio("a1") == live.item_audio("a1") == b"".join(_chunk(50 + k) for k in range(3))
    )
    assert back.local_events == live.local_events
    # Checkpoints taken between track events restore to the same state.
    r = Reducer()
    cp = Checkpointer(r)
    snaps = []
    for ev in rec.events:
        r.apply(ev)
        snaps.append(cp.take())
    restored = snaps[len(snaps) // 2].restore()
    for ev in list(rec.events)[len(snaps) // 2 + 1 :]:
        restored.apply(ev)
    assert restored.state.item_audio("a1") == live.item_audio("a1")
    assert restored.state.input_audio == live.input_audio
    # The export has both tracks where they were captured and played.
    x = rec.audio("assistant")
    assert np.flatnonzero(x)[0] == 720 * 24


def test_cancel_on_a_call_also_stops_the_audio_still_streaming() -> None:
    """Stop on a call: the reply is often generated already (nothing to cancel) while seconds
    of it are still to play; the server's output buffer is cleared (after the cancel, if any)."""
    from openai.types.realtime import RealtimeClientEvent
    from pydantic import TypeAdapter

    valid: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
    call = Call()
    call.connect()
    call.server(1, "session.updated", session={"type": "realtime"})
    # Nothing plays: a cancel sends nothing.
    call.sent.clear()
    assert call.proto.cancel_response() is False
    call._apply(call.rec.append(Source.LOCAL, {"type": "local.noop"}, t_ns=2 * MS))
    assert call.sent == []
    # A reply generated and done, its audio still streaming on the track.
    call.server(10, "response.created", response={"id": "r1", "status": "in_progress"})
    call.server(20, "output_audio_buffer.started", response_id="r1")
    call.server(30, "response.done", response={"id": "r1", "status": "completed", "output": []})
    assert call.proto.cancel_response() is False  # nothing left to cancel
    call._apply(call.rec.append(Source.LOCAL, {"type": "local.noop"}, t_ns=40 * MS))
    assert [e["type"] for e in call.sent] == ["output_audio_buffer.clear"]
    for e in call.sent:
        valid.validate_python(e)
    call.server(50, "output_audio_buffer.cleared", response_id="r1")
    # A reply still being generated and playing: the cancel first, then the clear.
    call.sent.clear()
    call.server(60, "response.created", response={"id": "r2", "status": "in_progress"})
    call.server(70, "output_audio_buffer.started", response_id="r2")
    assert call.proto.cancel_response() is True
    call._apply(call.rec.append(Source.LOCAL, {"type": "local.noop"}, t_ns=80 * MS))
    assert [e["type"] for e in call.sent] == ["response.cancel", "output_audio_buffer.clear"]
    assert call.sent[0]["response_id"] == "r2"
