"""ReplayServer: recorded sessions replayed exactly; off-script clients get the documented error."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime_nb.storage.recording import Recording
from realtime_nb.testing import AudioMatch, CassetteMatcher, ReplayMismatch, ReplayServer

from ..conftest import SESSIONS

OPENAI_WS = sorted(SESSIONS.glob("test_openai_ws*/*.yaml"))


def _cassette(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    inter = [i for i in doc["interactions"] if "direction" in i]
    sent = [i["data"] for i in inter if i["direction"] == "sent"]
    received = [i["data"] for i in inter if i["direction"] == "received"]
    return sent, received


async def _drive(url: str, sent: list[dict[str, Any]], expect: int) -> list[dict[str, Any]]:
    """Send every event, collect what comes back until ``expect`` events or the server closes."""
    got: list[dict[str, Any]] = []
    async with connect(url, max_size=None) as ws:

        async def reader() -> None:
            async for message in ws:
                got.append(json.loads(message))

        task = asyncio.create_task(reader())
        for ev in sent:
            await ws.send(json.dumps(ev))
        for _ in range(500):
            if len(got) >= expect or task.done():
                break
            await asyncio.sleep(0.01)
        await ws.close()
        await asyncio.gather(task, return_exceptions=True)
    return got


def test_there_are_openai_cassettes() -> None:
    assert len(OPENAI_WS) >= 7


@pytest.mark.parametrize("path", OPENAI_WS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cassette_replays_the_recorded_server_events_exactly(path: Path) -> None:
    sent, received = _cassette(path)
    with ReplayServer(path) as srv:
        got = asyncio.run(_drive(srv.url, sent, len(received)))
        assert srv.finished
    assert got == received  # every field, obfuscation and 33-byte audio included, in order


def test_wrong_client_event_gets_the_documented_mismatch(realtime_replay: Any) -> None:
    path = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"
    sent, _ = _cassette(path)
    wrong = json.loads(json.dumps(sent))
    wrong[1]["item"]["content"][0]["text"] = "What is the weather in Paris?"
    srv = ReplayServer(path).start()
    try:
        got = asyncio.run(_drive(srv.url, wrong, 10_000))
    finally:
        srv.stop()
    error = got[-1]
    assert error["type"] == "error"
    assert error["error"]["code"] == "replay_mismatch"
    message = error["error"]["message"]
    assert "client event #1 (conversation.item.create) does not match" in message
    assert "expected (recorded client event #1)" in message
    assert "What is the weather in London?" in message  # what it expected
    assert "Paris" in message  # what it got
    assert 'item.content.0.text: expected "What is the weather in London?"' in message
    assert "closest recorded client event: #1" in message
    # Nothing of the answer was sent after the mismatch: only session events, then the error.
    assert [e["type"] for e in got] == ["session.created", "session.updated", "error"]
    with pytest.raises(ReplayMismatch) as info:
        srv.check()
    assert info.value.index == 1
    assert info.value.closest is not None
    assert info.value.closest[0] == 1
    with pytest.raises(ReplayMismatch), ReplayServer(path) as srv2:
        asyncio.run(_drive(srv2.url, wrong, 10_000))


def _matcher(path: Path, audio: str = "total") -> CassetteMatcher:
    return CassetteMatcher.from_recording(Recording.import_file(path), audio=audio)


VAD = (
    SESSIONS / "test_openai_ws" / "test_input_audio_retention_segments_three_server_vad_turns.yaml"
)


def test_total_audio_matching_accepts_other_chunking() -> None:
    sent, received = _cassette(VAD)
    m = _matcher(VAD)
    out = m.start()
    out += m.receive(sent[0])  # session.update; every other client event is an append
    audio = b""
    import base64

    for ev in sent[1:]:
        audio += base64.b64decode(ev["audio"])
    # All the audio at once in 3 appends of odd sizes: the same stream comes back.
    cuts = [0, 1000, 2500, len(audio)]
    for a, b in itertools.pairwise(cuts):
        chunk = base64.b64encode(audio[a:b]).decode()
        out += m.receive({"type": "input_audio_buffer.append", "audio": chunk})
    assert out == received
    assert m.finished


def test_total_audio_matching_refuses_extra_audio() -> None:
    sent, _ = _cassette(VAD)
    m = _matcher(VAD)
    m.start()
    m.receive(sent[0])
    import base64

    too_much = base64.b64encode(b"\0" * 100_000).decode()
    with pytest.raises(ReplayMismatch, match="audio beyond the recording"):
        m.receive({"type": "input_audio_buffer.append", "audio": too_much})


def test_length_matching_is_one_append_per_recorded_append() -> None:
    sent, _ = _cassette(VAD)
    m = _matcher(VAD, audio=AudioMatch.LENGTH)
    m.start()
    m.receive(sent[0])
    import base64

    with pytest.raises(ReplayMismatch, match=r"audio: expected \"<33 bytes>\""):
        m.receive(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 34).decode()}
        )


def test_missing_audio_before_an_event_is_named() -> None:
    path = SESSIONS / "test_openai_ws" / "test_audio_in_server_vad_turn.yaml"
    sent, _ = _cassette(path)
    m = _matcher(path)
    m.start()
    m.receive(sent[0])  # session.update
    with pytest.raises(ReplayMismatch, match=r"more bytes of audio \(input_audio_buffer.append\)"):
        m.receive({"type": "response.create"})


def test_extra_client_event_after_the_recording() -> None:
    path = SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml"
    sent, _ = _cassette(path)
    m = _matcher(path)
    m.start()
    for ev in sent:
        m.receive(ev)
    with pytest.raises(ReplayMismatch, match="the recording has no more client events"):
        m.receive({"type": "response.create"})


def test_event_ids_are_ignored_and_more_fields_can_be() -> None:
    path = SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml"
    sent, _ = _cassette(path)
    rec = Recording.import_file(path)
    m = CassetteMatcher.from_recording(rec, ignore=("event_id", "session.instructions"))
    m.start()
    first = {
        **sent[0],
        "event_id": "evt_other",
        "session": {**sent[0]["session"], "instructions": "x"},
    }
    m.receive(first)
    assert m.matched == 1
    with pytest.raises(ValueError, match="accepted: 'exact', 'length', 'total'"):
        CassetteMatcher.from_recording(rec, audio="bytes")


def test_tool_output_sent_late_does_not_deadlock() -> None:
    """The recorded client sent the tool output mid-response; one waiting for response.done
    still gets the whole stream (rule 3 of the matching rules)."""
    path = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"
    sent, received = _cassette(path)
    m = _matcher(path)
    out = m.start()
    out += m.receive(sent[0])
    out += m.receive(sent[1])
    out += m.receive(sent[2])
    assert out[-1]["type"] == "response.done"  # released before the tool output arrives
    for ev in sent[3:]:
        out += m.receive(ev)
    assert out == received


def test_a_realtime_nb_session_is_replayed_offline(
    tmp_path: Path, local_srv: Any, realtime_replay: Any
) -> None:
    """Record an agent against the local server, then run the same code against the cassette."""
    from realtime_nb.client.session import Session

    def agent(url: str, record: Path) -> list[str]:
        s = Session(url=url, instructions="Be brief.", record=record)
        try:
            answers = []
            for text in ("hello", "what time is it"):
                s.send_text(text)
                done = s.wait_for("response.done", 20)
                s.wait_until_idle(20)
                answers.append(done.data["response"]["output"][0]["content"][0]["transcript"])
            return answers
        finally:
            s.close()

    live = agent(local_srv.url, tmp_path / "live.arrow")
    srv = realtime_replay(tmp_path / "live.arrow")
    offline = agent(srv.url, tmp_path / "offline.arrow")
    assert offline == live
    assert srv.finished


DROP = SESSIONS / "test_xai_ws" / "test_session_resumption_after_drop.yaml"


def _connections(path: Path) -> list[tuple[list[Any], list[Any], dict[str, Any] | None]]:
    """``(sent, received, close)`` of each connection of a cassette, split at its closes."""
    out: list[tuple[list[Any], list[Any], dict[str, Any] | None]] = []
    sent: list[Any] = []
    received: list[Any] = []
    for inter in yaml.safe_load(path.read_text(encoding="utf-8"))["interactions"]:
        if inter.get("kind") == "close":
            out.append((sent, received, inter))
            sent, received = [], []
        elif inter.get("kind") == "message":
            (sent if inter["direction"] == "sent" else received).append(inter["data"])
    if sent or received:
        out.append((sent, received, None))
    return out


async def _until_closed(url: str, sent: list[dict[str, Any]]) -> tuple[list[Any], int, str]:
    """Send every event, read until the server closes: ``(events, close code, close reason)``."""
    got: list[dict[str, Any]] = []
    async with connect(url, max_size=None) as ws:
        for ev in sent:
            await ws.send(json.dumps(ev))

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):  # raised for any close but a normal one
                async for message in ws:
                    got.append(json.loads(message))

        await asyncio.wait_for(read(), 20)
        return got, ws.close_code or 0, ws.close_reason or ""


def test_a_dropped_connection_is_closed_and_the_reconnect_gets_the_second_connection() -> None:
    (sent1, received1, close), (sent2, received2, end) = _connections(DROP)
    assert close == {"kind": "close", "code": 1011, "reason": "test reconnect", "ok": False}
    assert end is None and sent1 and sent2

    async def client(url: str) -> None:
        got1, code, reason = await _until_closed(url, sent1)
        assert (code, reason) == (1011, "test reconnect")
        assert got1 == received1  # the whole first connection, then the recorded close
        got2 = await _drive(url, sent2, len(received2))  # the reconnect
        assert got2 == received2  # exactly the second connection's events

    with ReplayServer(DROP) as srv:
        assert [c.close for c in srv.connections] == [
            {
                "type": "local.connection.closed",
                "code": 1011,
                "reason": "test reconnect",
                "ok": False,
            },
            None,
        ]
        asyncio.run(client(srv.url))
        assert srv.finished
        assert [m.finished for m in srv.replays] == [True, True]


def test_a_recorded_abnormal_closure_drops_the_tcp_connection(tmp_path: Path) -> None:
    created = {"type": "session.created", "event_id": "e1", "session": {"id": "s1"}}
    doc = {
        "version": 1,
        "interactions": [
            {"kind": "message", "direction": "received", "data": created},
            {"kind": "close", "code": 1006, "reason": "", "ok": False},
            {"kind": "message", "direction": "received", "data": {**created, "event_id": "e2"}},
        ],
    }
    path = tmp_path / "abnormal.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with ReplayServer(path) as srv:
        got, code, _ = asyncio.run(_until_closed(srv.url, []))
        assert got == [created]
        assert code == 1006  # no close frame: what a dropped network looks like
        got2 = asyncio.run(_drive(srv.url, [], 1))
        assert [e["event_id"] for e in got2] == ["e2"]
        assert srv.finished
