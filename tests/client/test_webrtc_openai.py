"""A WebRTC call's kernel side against a stand-in of OpenAI built from a recorded call: the
multipart offer (the session JSON a valid ``RealtimeSessionCreateRequest``, the bearer key), the
answer and ``Location``, the sideband attached with ``?call_id=`` (it starts with the client's
``session.update``: no ``session.created`` is waited for), the recorded script replayed on it,
the page's copies of events deduplicated, tapped audio reduced, the hang-up, and the recording's
metadata, events and items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter

from realtime_nb.client import calls_url
from realtime_nb.client.session import Session, SessionClosedError, SessionError
from realtime_nb.core.protocol import Source
from realtime_nb.storage.recording import Recording

from .session_constants import FIXTURES, KEY
from .webrtc_standin import CallStandIn

VALIDATOR: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SESSIONS = FIXTURES / "sessions"
CALLS = [
    (
        SESSIONS / "test_openai_ws" / f"{name}.yaml",
        SESSIONS / "test_openai_ws_sideband" / f"{name}.yaml",
    )
    for name in ("test_webrtc_sideband_audio_turn", "test_webrtc_sideband_text_turn")
]


def _session(standin: CallStandIn, tmp_path: Path, **kwargs: Any) -> Session:
    """A Session configured as the recorded client was (its arguments read from the recording)."""
    rec = standin.recorded_session
    a_in = rec["audio"]["input"]
    return Session(
        rec["model"],
        transport="webrtc",
        url=standin.ws_url,
        api_key=KEY,
        instructions=rec["instructions"],
        output_modalities=rec["output_modalities"][0],
        input_format="audio/pcm",
        output_format="audio/pcm",
        turn_detection=a_in["turn_detection"],
        transcription=a_in["transcription"]["model"],
        record=tmp_path / "call.arrow",
        reconnect=False,
        **kwargs,
    )


def _tone(ms: int, hz: float = 440.0) -> bytes:
    t = np.arange(ms * 24) / 24000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype("<i2").tobytes()


def test_calls_url_from_session_urls() -> None:
    assert calls_url("wss://api.openai.com/v1/realtime?model=gpt-realtime") == (
        "https://api.openai.com/v1/realtime/calls"
    )
    assert calls_url("https://api.openai.com/v1") == "https://api.openai.com/v1/realtime/calls"
    assert calls_url("ws://127.0.0.1:8765/v1/realtime") == "http://127.0.0.1:8765/v1/realtime/calls"
    assert calls_url("wss://x.openai.azure.com/openai/v1/realtime?model=dep") == (
        "https://x.openai.azure.com/openai/v1/realtime/calls"
    )
    assert calls_url("http://127.0.0.1:9") == "http://127.0.0.1:9/v1/realtime/calls"
    with pytest.raises(ValueError, match="ws://, wss://, http:// or https://"):
        calls_url("ftp://example.com")


@pytest.mark.parametrize(("setup", "sideband"), CALLS, ids=lambda p: p.stem)
def test_a_recorded_openai_call_replays_through_the_kernel(
    setup: Path, sideband: Path, tmp_path: Path
) -> None:
    with CallStandIn(setup, sideband, KEY) as standin:
        session = _session(standin, tmp_path)
        assert session.transport == "webrtc"
        assert session.status == "connecting"  # nothing connects before the offer
        answer = session.accept_offer(standin.recorded_fields["sdp"], timeout=10)
        assert answer == standin.recorded_response["body"]["string"]
        assert session.call_id == standin.call_id
        assert session.status == "connected"
        # The key went in the request's header, once per request, and nowhere else.
        (call,) = standin.calls
        assert call["headers"]["authorization"] == f"Bearer {KEY}"
        assert call["headers"]["content-type"].startswith("multipart/form-data; boundary=")
        (attach,) = standin.sidebands
        assert attach["path"] == f"/v1/realtime?call_id={standin.call_id}"
        assert attach["authorization"] == f"Bearer {KEY}"

        # The page's data channel sees the call's events too; its copy of the user item's
        # conversation.item.added arrives before the sideband's, which is then dropped.
        recorded_server = [e.wire() for e in Recording.import_file(sideband).events
                           if e.source is Source.SERVER]  # fmt: skip
        user_added = next(e for e in recorded_server if e["type"] == "conversation.item.added")
        t_page = session.clock_ns()
        assert session.feed_peer_event(user_added, t_ns=t_page) is True
        assert session.feed_peer_event(user_added, t_ns=t_page) is False
        session.send_text("Say hello.")
        session.wait_for("response.done", timeout=10)
        session.wait_until_idle(timeout=10)
        # The sideband's copies came first for everything else.
        assert all(session.feed_peer_event(e) is False for e in recorded_server)

        started = next(
            (e for e in session.recording().events if e.type == "output_audio_buffer.started"),
            None,
        )
        assert (started is not None) == ("audio" in setup.stem)
        played = []
        if started is not None:  # the audio turn: the page played its reply
            played = [_tone(100, 440 + 100 * k) for k in range(3)]
            for k, chunk in enumerate(played):
                session.record_track("output", chunk, started.t_ns + 40_000_000 + k * 100_000_000)
            # Long after output_audio_buffer.stopped: silence between replies, no item's.
            session.record_track("output", bytes(4800), started.t_ns + 5_000_000_000)
        session.hangup()
    assert standin.problems == []
    assert standin.mismatches == []
    assert standin.replays[0].finished  # the client sent exactly what the recorded client sent
    assert standin.hangups == [standin.call_id]

    rec = Recording.open(tmp_path / "call.arrow")
    assert rec.meta["transport"] == "webrtc"
    assert rec.meta["call_id"] == standin.call_id
    raw = (tmp_path / "call.arrow").read_bytes()
    assert KEY.encode() not in raw and b"Bearer" not in raw
    http = [e for e in rec.events if e.type == "local.http"]
    assert [(e.data["uri"], e.data["status"]) for e in http] == [
        (f"http://127.0.0.1:{standin.port}/v1/realtime/calls", 201),
        (f"http://127.0.0.1:{standin.port}/v1/realtime/calls/{standin.call_id}/hangup", 200),
    ]
    assert standin.recorded_fields["sdp"] in http[0].data["request_body"]
    assert http[0].data["response_body"] == answer
    assert http[0].data["response_headers"]["location"] == standin.location
    # Every server event of the call once, whichever copy came first.
    ids = [e.event_id for e in rec.events if e.source is Source.SERVER]
    assert sorted(ids) == sorted(e["event_id"] for e in recorded_server)
    # Every client event sent is a valid GA client event.
    for e in rec.events:
        if e.source is Source.CLIENT:
            VALIDATOR.validate_python(e.wire())
    # The same items as the recorded WebSocket reading of the call.
    ref = Recording.import_file(sideband).state
    assert [(i.id, i.type, i.role, i.text) for i in rec.state.items] == [
        (i.id, i.type, i.role, i.text) for i in ref.items
    ]
    if played:
        reply = rec.state.items[-1]
        assert rec.state.item_audio(reply.id, heard=True) == b"".join(played)
        assert rec.state.item_audio(reply.id, heard=False) == b"".join(played)
        assert reply.played_ms == pytest.approx(300.0)
        track = rec.audio("assistant")
        at = round((started.t_ns + 40_000_000) / 1e9 * 24000)
        first = np.flatnonzero(np.abs(track) > 1e-3)[0]
        assert abs(first - at) <= 24  # within 1 ms of when the page played it
        m = rec.metrics()
        assert m.turns[0].first_audio_s == pytest.approx(started.t_ns / 1e9)
        assert m.turns[0].heard_s == pytest.approx((started.t_ns + 40_000_000) / 1e9)


@pytest.mark.parametrize(("setup", "sideband"), CALLS[1:], ids=["text"])
def test_the_pages_copies_keep_the_servers_order(
    setup: Path, sideband: Path, tmp_path: Path
) -> None:
    """The page sees an event first, but the sideband's reader, already past its copy, gets a
    later one before the page's copy is recorded: the page's copy is still recorded first
    (the reducer needs ``speech_stopped`` before ``committed``)."""
    with CallStandIn(setup, sideband, KEY) as standin:
        session = _session(standin, tmp_path)
        session.accept_offer(standin.recorded_fields["sdp"], timeout=10)
        stopped = {"type": "input_audio_buffer.speech_stopped", "event_id": "event_s",
                   "audio_end_ms": 700, "item_id": "item_u"}  # fmt: skip
        committed = {"type": "input_audio_buffer.committed", "event_id": "event_c",
                     "previous_item_id": None, "item_id": "item_u"}  # fmt: skip

        async def on_the_io_thread() -> None:
            # As when the page's copy arrives while the reader handles buffered frames.
            assert session.feed_peer_event(stopped) is True
            session._on_frame(json.dumps(stopped))  # the sideband's copy: a duplicate
            session._on_frame(json.dumps(committed))

        session._runner.run(on_the_io_thread(), 10)
        session.wait_until_idle(timeout=10)
        types = [e.type for e in session.recording().events if e.source is Source.SERVER]
        assert types.count("input_audio_buffer.speech_stopped") == 1
        assert types.index("input_audio_buffer.speech_stopped") < types.index(
            "input_audio_buffer.committed"
        )
        session.hangup()


def test_a_refused_key_is_the_servers_message_without_the_key(tmp_path: Path) -> None:
    setup, sideband = CALLS[1]
    with CallStandIn(setup, sideband, "sk-the-right-one-" + "X" * 20) as standin:
        session = _session(standin, tmp_path)
        with pytest.raises(SessionError, match="HTTP 401: Incorrect API key provided") as info:
            session.accept_offer(standin.recorded_fields["sdp"], timeout=10)
        assert KEY not in str(info.value)
        assert session.call_id is None
        session.close()
    assert standin.sidebands == []


def test_a_sideband_that_cannot_attach_hangs_the_call_up(tmp_path: Path) -> None:
    setup, sideband = CALLS[1]
    with CallStandIn(setup, sideband, KEY, call_id="rtc_another_call") as standin:
        session = _session(standin, tmp_path)
        with pytest.raises(SessionClosedError, match=r"HTTP 404.*call_id_not_found"):
            session.accept_offer(standin.recorded_fields["sdp"], timeout=10)
        session.close()
    assert standin.hangups == [standin.call_id]  # the answered call is not left running
    rec = Recording.open(tmp_path / "call.arrow")
    failed = [e for e in rec.events if e.type == "local.connection.failed"]
    assert failed and "call_id_not_found" in failed[0].data["message"]


@pytest.mark.parametrize(
    ("offer", "error", "match"),
    [
        (b"v=0", TypeError, "offer_sdp must be a str"),
        ("hello", ValueError, "is not an SDP offer"),
        ("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", ValueError, "no audio"),
    ],
)
def test_bad_offers_are_refused_before_anything_is_sent(
    offer: Any, error: type[Exception], match: str, tmp_path: Path
) -> None:
    setup, sideband = CALLS[1]
    with CallStandIn(setup, sideband, KEY) as standin:
        session = _session(standin, tmp_path)
        with pytest.raises(error, match=match):
            session.accept_offer(offer)
        session.close()
    assert standin.calls == []


def test_webrtc_only_methods_and_arguments(tmp_path: Path) -> None:
    setup, sideband = CALLS[1]
    with CallStandIn(setup, sideband, KEY) as standin:
        with pytest.raises(ValueError, match="does not apply to transport='webrtc'"):
            Session(
                transport="webrtc", url=standin.ws_url, output_format="audio/pcmu", record=False
            )
        with pytest.raises(ValueError, match="transport='carrier-pigeon' is not accepted"):
            Session(transport="carrier-pigeon", url=standin.ws_url, record=False)
        session = _session(standin, tmp_path)
        with pytest.raises(ValueError, match="track='mic' is not accepted"):
            session.record_track("mic", b"\0\0", 0)  # type: ignore[arg-type]  # the mistake tested
        with pytest.raises(ValueError, match="2 bytes per sample"):
            session.record_track("input", b"\0", 0)
        with pytest.raises(ValueError, match="is a client event"):
            session.feed_peer_event({"type": "response.create", "event_id": "e1"})
        session.record_track("input", bytes(480), 0)  # no call yet: nothing the server heard
        session.close()
    rec = Recording.open(tmp_path / "call.arrow") if (tmp_path / "call.arrow").exists() else None
    assert rec is None  # no call was set up: the call's file was never made
    assert json.dumps(standin.calls) == "[]"
