"""Replay in a real JupyterLab and chromium: ``rec.play()`` on a 10-minute synthetic recording.

Seeks by clicking the timeline and checks the transcript shown against ``state_at(t)`` of the
same reducer, truncations marked, audio arriving as binary windows and far less of it than the
recording holds, play at 1x and 2x, pause. ``pytest -m browser tests/widget/test_replay_browser.py``
(about 25 s).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from . import lab as L

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MINUTES = 10.0
NOTEBOOK = [
    """\
import os
from realtime_nb.storage.recording import Recording
rec = Recording.open(os.environ["RTNB_REPLAY_RECORDING"])
w = rec.play()
w
"""
]
AUDIO_MSG = re.compile(rb'"type":\s*"audio"')
#: Where to click, as fractions of the timeline (one lands just after a truncation, see below).
SEEKS = (0.37, 0.83, 0.12, 0.55)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reason = L.missing()
    if reason:
        L.unavailable(reason)
    from playwright.sync_api import sync_playwright

    from realtime_nb.storage.recording import Recording

    tmp = tmp_path_factory.mktemp("replay")
    path = L.synthetic_recording(tmp / "synthetic.arrow", MINUTES, truncate_every=3)
    data = Recording.open(path).replay_data()
    out: dict[str, Any] = {"data": data, "seeks": [], "console": []}
    tap = L.WsTap()
    with (
        L.jupyterlab(tmp, NOTEBOOK, {"RTNB_REPLAY_RECORDING": str(path)}) as lab,
        sync_playwright() as pw,
    ):
        browser, page = L.open_notebook(pw, lab, tap)
        page.on("console", lambda m: out["console"].append(m.text))
        try:
            _scenario(page, lab, data, out)
        finally:
            browser.close()
    out["bytes_received"] = tap.bytes_received()
    out["frames"] = tap
    return out


def _ds(page: Any, key: str) -> str | None:
    return page.eval_on_selector(".rtnb-replay", f"e => e.dataset.{key} ?? null")


def _shown(page: Any) -> list[tuple[str, str, bool, bool]]:
    """(item id, text, has cut mark, has unheard part) of each transcript entry shown."""
    return [
        tuple(r)
        for r in page.eval_on_selector_all(
            ".rtnb-replay .rtnb-transcript .rtnb-item",
            """ns => ns.map(n => [n.dataset.item, n.querySelector('.rtnb-text').textContent,
                                 !!n.querySelector('.rtnb-cut'), !!n.querySelector('.rtnb-unheard')])""",
        )
    ]


def _clocks(page: Any) -> tuple[float, float]:
    """The page's clock (s) and the playhead, read together."""
    w, p = page.eval_on_selector(
        ".rtnb-replay", "e => [performance.now() / 1000, Number(e.dataset.position || 0)]"
    )
    return float(w), float(p)


def _click_at(page: Any, t: float, duration: float) -> None:
    box = page.locator(".rtnb-replay canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * t / duration, box["y"] + box["height"] / 2)


def _seek(page: Any, t: float, duration: float) -> dict[str, Any]:
    n = int(_ds(page, "seeks") or 0)
    _click_at(page, t, duration)
    page.wait_for_function(
        f"() => Number(document.querySelector('.rtnb-replay').dataset.seeks || 0) > {n}",
        timeout=10_000,
    )
    return {
        "t": float(_ds(page, "seekT") or "nan"),
        "state_t": float(_ds(page, "stateT") or "nan"),
        "ms": float(_ds(page, "seekMs") or "nan"),
        "shown": _shown(page),
    }


def _scenario(page: Any, lab: L.Lab, data: Any, out: dict[str, Any]) -> None:
    page.wait_for_selector('.rtnb-replay[data-status="ready"]', timeout=60_000)
    out["overview_ms"] = float(_ds(page, "overviewMs") or "nan")
    duration = float(data.duration_s)
    # Seek around, including just after the first truncation (the item must be marked cut) and
    # just before it (not yet cut: the state at t, not the final state).
    cut = data.truncations()[0]
    for t in [*(f * duration for f in SEEKS), cut.event_s + 1.5, cut.event_s - 1.5]:
        out["seeks"].append(_seek(page, t, duration))
    out["cut"] = cut

    # Events tab: rows around the playhead, the current one at or before it.
    page.click(".rtnb-replay .rtnb-tab:has-text('Events')")
    page.wait_for_selector(".rtnb-replay .rtnb-event.rtnb-current", timeout=5000)
    cur = page.eval_on_selector(".rtnb-replay .rtnb-event.rtnb-current", "e => e.dataset.seq")
    out["current_event_seq"] = int(cur)
    out["events_shown"] = page.eval_on_selector_all(".rtnb-replay .rtnb-event", "ns => ns.length")
    page.click(".rtnb-replay .rtnb-event.rtnb-current")
    page.wait_for_function(
        "() => { const p = document.querySelector('.rtnb-replay pre.rtnb-json');"
        " return p && p.textContent.startsWith('{'); }",
        timeout=5000,
    )
    out["event_detail"] = json.loads(page.inner_text(".rtnb-replay pre.rtnb-json"))
    page.click(".rtnb-replay .rtnb-tab:has-text('Transcript')")

    # Play at 1x, then 2x, then pause. Both clocks are read in the page at once: on a loaded
    # machine the replies to the test take a while, and the test's own clock would count that.
    msgs0 = int(_ds(page, "audioMsgs") or 0)
    p_start = float(_ds(page, "position") or 0)
    page.click(".rtnb-replay .rtnb-play")
    page.wait_for_function("() => document.querySelector('.rtnb-replay').dataset.playing === '1'")
    page.wait_for_timeout(300)
    w0, p0 = _clocks(page)
    page.wait_for_timeout(2000)
    w1, p1 = _clocks(page)
    page.click(".rtnb-replay .rtnb-speed[data-speed='2']")
    page.wait_for_timeout(300)
    w2, p2 = _clocks(page)
    page.wait_for_timeout(1500)
    w3, p3 = _clocks(page)
    page.click(".rtnb-replay .rtnb-play")  # pause
    page.wait_for_timeout(300)
    p4 = float(_ds(page, "position") or 0)
    page.wait_for_timeout(700)
    p5 = float(_ds(page, "position") or 0)
    out["play"] = {"rate_1x": (p1 - p0) / (w1 - w0), "rate_2x": (p3 - p2) / (w3 - w2),
                   "paused_drift": p5 - p4, "played_s": p4 - p_start,
                   "audio_msgs_while_playing": int(_ds(page, "audioMsgs") or 0) - msgs0}  # fmt: skip
    # The transcript followed the playhead while playing.
    out["state_t_after_play"] = float(_ds(page, "stateT") or "nan")
    out["paused_at"] = p4
    out["audio_bytes"] = int(_ds(page, "audioBytes") or 0)
    out["audio_msgs"] = int(_ds(page, "audioMsgs") or 0)
    kc = lab.kernel_client()
    out["kernel"] = json.loads(
        L.run(
            kc,
            "import json; print(json.dumps({'sent': w.sent_stats, 'frontend': w.frontend_log,"
            " 'position': w.position_s, 'speed': w.speed, 'load_s': w.load_s}))",
        )
    )


# --- assertions --------------------------------------------------------------------------------


def test_opens_and_draws_the_overview(replay: dict[str, Any]) -> None:
    assert replay["overview_ms"] < 10_000
    assert replay["kernel"]["frontend"] == []
    assert not [c for c in replay["console"] if "realtime_nb" in c]


def test_transcript_at_the_playhead_is_the_reducer_state(replay: dict[str, Any]) -> None:
    data = replay["data"]
    for seek in replay["seeks"]:
        t = seek["state_t"]
        assert abs(t - seek["t"]) < 1e-9, "the state shown is the one for the seek"
        want = data.state_at(t)
        shown = seek["shown"]
        assert [s[0] for s in shown] == [it.id for it in want.items], t
        for (item_id, text, has_cut, _), it in zip(shown, want.items, strict=True):
            if it.text:
                assert text == it.text, (t, item_id)
            assert has_cut == it.truncated, (t, item_id)


def test_truncations_are_marked_only_once_they_happened(replay: dict[str, Any]) -> None:
    cut = replay["cut"]
    after, before = replay["seeks"][-2], replay["seeks"][-1]
    after_item = next(s for s in after["shown"] if s[0] == cut.item_id)
    assert after_item[2], "cut mark after the truncation"
    assert after_item[3], "the part never heard is marked"
    before_item = next((s for s in before["shown"] if s[0] == cut.item_id), None)
    assert before_item is None or not before_item[2]


def test_seeks_are_fast(replay: dict[str, Any]) -> None:
    ms = sorted(s["ms"] for s in replay["seeks"])
    print("seek (click -> state shown and audio ready), ms:", ms)
    # The benchmark holds the 100 ms budget on a 60-minute recording; here only a sanity bound
    # (a loaded 2-core CI machine runs the whole suite in parallel with this).
    assert ms[len(ms) // 2] < 500


def test_audio_arrives_as_binary_windows_and_stays_small(replay: dict[str, Any]) -> None:
    data = replay["data"]
    rec_audio = sum(len(e.audio or b"") for e in data.recording.events)
    window = int(2 * 2 * 24_000 * 4.0)  # both tracks, PCM16, WINDOW_S
    sent = replay["kernel"]["sent"]
    assert replay["audio_msgs"] >= len(replay["seeks"])
    # Every window reached the page as two binary buffers of exactly the window's PCM bytes.
    assert replay["audio_bytes"] == replay["audio_msgs"] * window
    assert sent["audio_bytes"] >= replay["audio_bytes"]
    # The frames carrying them hold the raw PCM, not base64 text (which would be 4/3 larger).
    audio_frames = [f for f in replay["frames"].frames if AUDIO_MSG.search(f) and len(f) > window]
    assert audio_frames and all(len(f) < window * 1.1 for f in audio_frames)
    # Everything the page received (overview, states, events, audio) is a small part of the audio
    # the recording holds.
    print(
        f"page received {replay['bytes_received'] / 1e6:.1f} MB; recording audio {rec_audio / 1e6:.1f} MB"
    )
    assert replay["bytes_received"] < rec_audio / 5


def test_play_pause_and_speed(replay: dict[str, Any]) -> None:
    play = replay["play"]
    print("play:", play)
    assert 0.7 < play["rate_1x"] < 1.3
    assert 1.5 < play["rate_2x"] < 2.5
    assert abs(play["paused_drift"]) < 1e-6
    assert play["audio_msgs_while_playing"] >= 1, "the next window was fetched while playing"
    # The transcript followed the playhead, and the kernel knows where the user paused.
    assert abs(replay["state_t_after_play"] - replay["paused_at"]) < 0.5
    assert abs(replay["kernel"]["position"] - replay["paused_at"]) < 1e-6
    assert replay["kernel"]["speed"] == 2.0


def test_event_list_follows_the_playhead(replay: dict[str, Any]) -> None:
    data = replay["data"]
    t = replay["seeks"][-1]["state_t"]
    rows = data.event_rows(None, t)
    assert replay["events_shown"] > 0
    assert replay["current_event_seq"] == rows[-1].seq
    assert replay["event_detail"]["type"] == rows[-1].type
