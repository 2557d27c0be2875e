"""Output audio pacing: small messages, at most a bounded lead ahead of real time (sans I/O)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from realtime_nb.core.protocol import Source
from realtime_nb.widget import RealtimeWidget
from realtime_nb.widget._pacing import MAX_AUDIO_MESSAGE_MS, MAX_LEAD_MS, AudioOut, AudioPacer
from tests.widget.test_widget import Capture, FakeSession, msg

RATE = 24_000
BYTES_PER_MS = RATE * 2 // 1000
MAX_MESSAGE_BYTES = MAX_AUDIO_MESSAGE_MS * BYTES_PER_MS


def speech(ms: int, seed: int = 0) -> bytes:
    """PCM16 that differs from sample to sample, so any reordering or loss shows."""
    return bytes((seed + i * 7) % 251 for i in range(ms * BYTES_PER_MS))


def audio_of(out: list[AudioOut], item: str) -> bytes:
    return b"".join(o.pcm for o in out if o.kind == "audio" and o.item_id == item)


def test_a_burst_goes_out_in_small_messages_no_further_ahead_than_the_lead() -> None:
    p = AudioPacer(RATE)
    reply = speech(20_000)  # a 20 s answer, arrived at once as the API sends it
    for k in range(0, len(reply), 4800 * 5):  # in 500 ms deltas
        p.push("a", "r", reply[k : k + 4800 * 5])
    p.end("a")
    first = p.take(100.0)
    assert first, "the start of the reply goes out at once"
    assert max(len(o.pcm) for o in first) <= MAX_MESSAGE_BYTES
    sent = len(audio_of(first, "a"))
    assert MAX_LEAD_MS * BYTES_PER_MS <= sent <= (MAX_LEAD_MS + MAX_AUDIO_MESSAGE_MS) * BYTES_PER_MS
    assert not p.can_send(100.0) and p.take(100.0) == [], "nothing more until time passes"

    # The flusher looks every 50 ms: each time, about 50 ms more, never a burst.
    out = list(first)
    now = 100.0
    while p.has_pending:
        now += 0.05
        batch = p.take(now)
        assert all(len(o.pcm) <= MAX_MESSAGE_BYTES for o in batch)
        assert sum(len(o.pcm) for o in batch) <= 2 * MAX_MESSAGE_BYTES
        out += batch
        ahead_ms = len(audio_of(out, "a")) / BYTES_PER_MS - (now - 100.0) * 1000
        assert ahead_ms <= MAX_LEAD_MS + MAX_AUDIO_MESSAGE_MS
        assert now < 125, "the reply never finished"
    assert now == pytest.approx(100 + (20_000 - MAX_LEAD_MS) / 1000, abs=0.2), "real-time pace"
    assert audio_of(out, "a") == reply, "all of it, in order"
    assert out[-1] == AudioOut("done", "a", "r"), "the end follows the last audio"
    assert sum(o.kind == "done" for o in out) == 1


def test_unpaced_sends_the_burst_as_it_came_the_benchmark_baseline() -> None:
    p = AudioPacer(RATE, paced=False)
    reply = speech(20_000)
    p.push("a", "r", reply)
    p.end("a")
    out = p.take(0.0)
    assert [o.kind for o in out] == ["audio", "done"]
    assert out[0].pcm == reply
    assert p.max_message_bytes == len(reply) > 100 * MAX_MESSAGE_BYTES


def test_items_go_out_in_order_and_a_later_one_waits_for_the_earlier_end() -> None:
    p = AudioPacer(RATE, lead_ms=10_000)
    p.push("a", "r1", speech(300, 1))
    out = p.take(0.0)
    p.end("b")  # b's end known before a's (b has no audio yet): b waits for a
    assert not p.can_send(0.0)
    p.push("a", "r1", speech(100, 3))
    p.end("a")
    p.push("b", "r2", speech(300, 2))
    out += p.take(0.0)
    kinds = [(o.kind, o.item_id) for o in out]
    assert kinds.index(("done", "a")) < kinds.index(("audio", "b"))
    assert audio_of(out, "a") == speech(300, 1) + speech(100, 3)
    assert audio_of(out, "b") == speech(300, 2)
    assert out[0].response_id == "r1" and out[-1].response_id == "r2"


def test_the_lead_counts_every_item_the_page_still_has_queued() -> None:
    p = AudioPacer(RATE)
    p.push("a", "r", speech(700))
    p.end("a")
    p.take(0.0)
    p.push("b", "r", speech(3_000))
    out = p.take(0.0)
    assert len(audio_of(out, "b")) == 300 * BYTES_PER_MS, "a's 700 ms and this fill the lead"
    out = p.take(0.5)  # a is 500 ms into its playback
    assert len(audio_of(out, "b")) == 500 * BYTES_PER_MS
    p.take(10.0)
    assert "a" not in p._items, "played out by the clock: forgotten, with no report needed"
    p.finished("b")  # b still has audio to send: kept
    assert p.has_pending


def test_an_item_whose_end_never_comes_does_not_hold_back_the_next() -> None:
    p = AudioPacer(RATE)
    p.push("cancelled", "r1", speech(200, 1))  # its response was cancelled: no audio_done
    p.take(0.0)
    p.push("next", "r2", speech(200, 2))
    out = p.take(0.0)
    assert out[0] == AudioOut("done", "cancelled", "r1")
    assert audio_of(out, "next") == speech(200, 2)


def test_an_interruption_drops_what_was_not_sent() -> None:
    p = AudioPacer(RATE)
    p.push("a", "r", speech(5_000))
    p.end("a")
    p.take(0.0)
    p.drop()
    assert not p.has_pending and p.take(0.0) == [] and p.lead_ms_at(0.0) == 0
    p.push("b", "r2", speech(200))  # the next answer starts with a full lead
    assert audio_of(p.take(0.0), "b") == speech(200)


def test_a_new_page_starts_with_a_full_lead_and_nothing_is_resent() -> None:
    p = AudioPacer(RATE)
    reply = speech(3_000)
    p.push("a", "r", reply)
    out = p.take(0.0)
    assert not p.can_send(0.0)
    p.restart()
    out += p.take(0.0)
    assert audio_of(out, "a") == reply[: len(audio_of(out, "a"))], "no audio twice"
    assert len(audio_of(out, "a")) >= 2 * MAX_LEAD_MS * BYTES_PER_MS


def test_trim_keeps_the_newest_audio_while_no_page_is_there() -> None:
    p = AudioPacer(RATE, paced=False)
    p.push("a", "r", speech(1_000, 1))
    p.push("b", "r", speech(1_000, 2))
    p.trim(1_500 * BYTES_PER_MS)
    assert p.pending_bytes == 1_500 * BYTES_PER_MS
    p.end("a")
    out = p.take(0.0)
    assert audio_of(out, "a") == speech(1_000, 1)[500 * BYTES_PER_MS :]
    assert audio_of(out, "b") == speech(1_000, 2)


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0}, {"rate": RATE, "max_message_ms": 0}, {"rate": RATE, "lead_ms": -1}]
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, Any]) -> None:
    rate = kwargs.pop("rate")
    with pytest.raises(ValueError, match="positive rate, message size and lead"):
        AudioPacer(rate, **kwargs)


def _reply(s: FakeSession, ms: int) -> bytes:
    reply = speech(ms)
    delta = {"type": "response.output_audio.delta", "item_id": "it", "response_id": "r"}
    for k in range(0, len(reply), 24_000):  # 500 ms deltas, all at once
        s.emit(Source.SERVER, delta, reply[k : k + 24_000], item_id="it", response_id="r")
    done = {"type": "response.output_audio.done", "item_id": "it", "response_id": "r"}
    s.emit(Source.SERVER, done, item_id="it", response_id="r")
    return reply


def test_the_widget_never_puts_a_burst_on_the_comm() -> None:
    """The shell: a 3 s reply arriving at once goes out as the lead in small messages, the
    rest at real-time pace, then the end."""
    s = FakeSession()
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    cap = Capture(w)
    try:
        msg(w, {"type": "ready"})
        cap.wait("snapshot")
        t0 = time.monotonic()
        reply = _reply(s, 3_000)
        time.sleep(0.2)
        early = b"".join(b[0] for _, b in cap.of("audio"))
        ahead_ms = len(early) / BYTES_PER_MS - (time.monotonic() - t0) * 1000
        assert len(early) > 0 and ahead_ms <= MAX_LEAD_MS + MAX_AUDIO_MESSAGE_MS
        assert not cap.of("audio_done")
        cap.wait("audio_done", timeout=5)
        elapsed = time.monotonic() - t0
        assert elapsed >= (3_000 - MAX_LEAD_MS - MAX_AUDIO_MESSAGE_MS) / 1000, "real-time pace"
        assert b"".join(b[0] for _, b in cap.of("audio")) == reply
        assert max(len(b[0]) for _, b in cap.of("audio")) <= MAX_MESSAGE_BYTES
        assert w.max_audio_message_bytes <= MAX_MESSAGE_BYTES
    finally:
        w.close()


def test_unpaced_widget_sends_the_burst_whole() -> None:
    """The benchmark's baseline switch really is the old behaviour."""
    s = FakeSession()
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    w.pace_audio = False
    cap = Capture(w)
    try:
        msg(w, {"type": "ready"})
        cap.wait("snapshot")
        reply = _reply(s, 3_000)
        cap.wait("audio_done", timeout=2)
        assert b"".join(b[0] for _, b in cap.of("audio")) == reply
        assert w.max_audio_message_bytes > 10 * MAX_MESSAGE_BYTES
    finally:
        w.close()


def test_an_interruption_mid_reply_sends_nothing_more_of_it() -> None:
    s = FakeSession()
    w = RealtimeWidget(s)  # type: ignore[arg-type]  # a fake with the Session's interface
    cap = Capture(w)
    try:
        msg(w, {"type": "ready"})
        cap.wait("snapshot")
        _reply(s, 5_000)
        time.sleep(0.2)
        s.emit(Source.SERVER, {"type": "input_audio_buffer.speech_started"})
        cap.wait("flush")
        time.sleep(0.1)
        n = len(cap.of("audio"))
        time.sleep(0.5)
        assert len(cap.of("audio")) == n, "the held-back rest of the reply was dropped"
        assert not cap.of("audio_done")
        flush_at = [m["type"] for m, _ in cap.msgs].index("flush")
        assert all(m["type"] != "audio" for m, _ in cap.msgs[flush_at:])
    finally:
        w.close()
