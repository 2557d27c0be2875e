"""The mic lane's server (realtime_nb/widget/_miclane.py) with a real WebSocket client on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from realtime_nb.widget._miclane import HEADER, MicLane

JUPYTER = Origin("http://localhost:8888")


class Sink:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, dict[str, Any], bytes]] = []
        self.got = threading.Condition()

    def __call__(self, view: str, content: Mapping[str, Any], pcm: bytes) -> None:
        with self.got:
            self.chunks.append((view, dict(content), pcm))
            self.got.notify_all()

    def wait(self, n: int) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.chunks) >= n, timeout=5), self.chunks


@pytest.fixture
def lane() -> Iterator[tuple[MicLane, Sink]]:
    sink = Sink()
    ml = MicLane(sink).start()
    yield ml, sink
    ml.close()


def test_chunks_arrive_with_their_numbers_times_and_audio(lane: tuple[MicLane, Sink]) -> None:
    ml, sink = lane
    with connect(ml.url, origin=JUPYTER) as ws:
        ws.send(json.dumps({"view": "v1"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "ready", "lane": ml.lane_id}
        pcm = (b"\x01\x00\xff\x7f") * 600  # 50 ms at 24 kHz
        for seq in (3, 4):
            ws.send(HEADER.pack(seq, 0, 1000.5 + seq, 999.25) + pcm)
        sink.wait(2)
    assert [(v, c["seq"], c["t"], c["tw"], p == pcm) for v, c, p in sink.chunks] == [
        ("v1", 3, 1003.5, 999.25, True),
        ("v1", 4, 1004.5, 999.25, True),
    ]
    assert ml.counts == {"connections": 1, "chunks": 2, "refused": 0, "malformed": 0}


@pytest.mark.parametrize(
    ("origin", "path", "status"),
    [
        (None, None, 403),  # not a browser page
        ("https://evil.example", None, 403),  # another site in the same browser
        (JUPYTER, "/mic/0000000000000000", 404),  # another widget's lane
    ],
)
def test_who_may_not_feed_the_lane(
    lane: tuple[MicLane, Sink], origin: str | None, path: str | None, status: int
) -> None:
    ml, sink = lane
    url = ml.url if path is None else f"ws://127.0.0.1:{ml.port}{path}"
    with pytest.raises(InvalidStatus) as err:
        connect(url, origin=None if origin is None else Origin(origin))
    assert err.value.response.status_code == status
    assert ml.counts["refused"] == 1 and sink.chunks == []


def test_an_announced_origin_may_connect(lane: tuple[MicLane, Sink]) -> None:
    ml, _ = lane
    origin = Origin("https://hub.example.org")
    assert not ml.origin_allowed(origin)
    ml.allow_origin(origin + "/")
    assert ml.origin_allowed(origin)
    with connect(ml.url, origin=origin) as ws:
        ws.send(json.dumps({"view": "v2"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"


def test_malformed_messages_are_counted_not_passed_on(lane: tuple[MicLane, Sink]) -> None:
    ml, sink = lane
    with connect(ml.url, origin=JUPYTER) as ws:
        ws.send("not json")
        with pytest.raises(ConnectionClosed) as closed:  # no view named first
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    with connect(ml.url, origin=JUPYTER) as ws:
        ws.send(json.dumps({"view": "v1"}))
        ws.recv(timeout=5)
        ws.send(b"short")  # less than a header
        ws.send("text after the hello")
        ws.send(HEADER.pack(0, 0, 1.0, 1.0) + b"\x00\x00")
        sink.wait(1)
    assert ml.counts["malformed"] == 3
    assert [c["seq"] for _, c, _ in sink.chunks] == [0]


def test_close_stops_the_thread_and_frees_the_port() -> None:
    ml = MicLane(Sink()).start()
    url = ml.url
    assert ml._runner is not None
    thread = ml._runner.thread
    assert thread.name == "realtime_nb-mic-lane" and thread.is_alive()
    ml.close()
    assert ml.url == ""
    assert not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        connect(url, origin=JUPYTER, open_timeout=2)
    ml.close()  # twice is fine
