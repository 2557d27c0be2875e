"""The widget's WebRTC bridge, kernel half (realtime_nb/widget/_webrtc.py): the clock offset
estimate and the bridge's handling of malformed messages. The bridge with a real session, page
and server is tests/widget/test_browser_webrtc.py."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from realtime_nb.widget._webrtc import ClockSync, WebRTCBridge


def test_clock_sync_keeps_the_shortest_round_trip() -> None:
    c = ClockSync()
    assert c.to_kernel_ns(1000.0) is None
    # Kernel clock = page clock - 5000 ms; legs of 10 + 10 ms, then 30 + 2 ms, then 1 + 1 ms.
    assert c.add(1000.0, round((1010.0 - 5000) * 1e6), 1020.0)
    assert c.best is not None and c.best.offset_ms == pytest.approx(-5000.0)
    assert not c.add(2000.0, round((2030.0 - 5000) * 1e6), 2032.0)  # longer: ignored
    assert c.add(3000.0, round((3001.0 - 5000) * 1e6), 3002.0)
    assert c.best.rtt_ms == pytest.approx(2.0)
    assert c.to_kernel_ns(4000.0) == round((4000.0 - 5000) * 1e6)
    assert c.samples == 3


def test_clock_sync_error_is_within_half_the_round_trip() -> None:
    c = ClockSync()
    # Asymmetric legs: 2 ms there, 18 ms back. The estimate is off by (18 - 2) / 2 = 8 ms,
    # inside the bound of half the 20 ms round trip.
    c.add(0.0, round((2.0 + 100.0) * 1e6), 20.0)
    assert c.best is not None
    error = c.best.offset_ms - 100.0
    assert error == pytest.approx(-8.0)
    assert abs(error) <= c.best.rtt_ms / 2


@pytest.mark.parametrize(
    ("sent", "back", "match"),
    [(10.0, 5.0, "ends before it starts"), (math.nan, 5.0, "finite"), (0.0, math.inf, "finite")],
)
def test_clock_sync_refuses_bad_samples(sent: float, back: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClockSync().add(sent, 0, back)


class _Page:
    """What the page would receive, and the problems the widget would log."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.logged: list[tuple[str, str]] = []
        self.got = threading.Event()

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)
        self.got.set()

    def log(self, level: str, message: str) -> None:
        self.logged.append((level, message))


def test_bad_messages_are_logged_not_raised() -> None:
    page = _Page()
    bridge = WebRTCBridge(session=None, send=page.send, log=page.log)
    assert bridge.handle({"type": "clock.ping"}, [])
    assert bridge.handle(
        {"type": "clock.sync", "t_page_ms": 5, "t_back_ms": 1, "t_kernel_ns": 0}, []
    )
    assert bridge.handle({"type": "webrtc.event", "event": "nope"}, [])
    assert bridge.handle({"type": "webrtc.track", "track": "left", "t_page_ms": 1}, [b"\0\0"])
    assert not bridge.handle({"type": "something.else"}, [])
    assert len(page.logged) == 4, page.logged
    assert bridge.handle({"type": "webrtc.offer", "sdp": "hello"}, [])
    assert page.sent == [
        {
            "type": "webrtc.error",
            "message": "the page's offer is not an SDP (it must start with 'v=0')",
        }
    ]
