"""End to end: a real JupyterLab, Debian's chromium with a fake microphone, the local server.

Run: ``pytest -m browser tests/widget/test_browser_e2e.py`` (about a minute). The screenshot goes
to the test's temporary folder; ``REALTIME_NB_UPDATE_DOCS=1`` also copies it to ``docs/widget.png``
(the documented way to refresh the README's picture; the suite never changes a tracked file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import lab as L

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEY = "sk-e2e-" + "Zq7" * 12  # a fake key the local server requires; it must never reach the page
LONG_TEXT = (
    "Please repeat this long sentence slowly: the quick brown fox jumps over the lazy dog, "
    "then runs across the wide green meadow, past the old mill and the river, over the hills "
    "and far away into the evening light, where the stars come out one by one above the town."
)

NOTEBOOK = [
    """\
import os
from realtime_nb import Session
from realtime_nb.local.server import LocalServer

# The key comes from the environment so that even the notebook file does not hold it.
KEY = os.environ["RTNB_E2E_KEY"]
srv = LocalServer(fast=False, api_key=KEY).start()
session = Session(
    url=srv.url, api_key=KEY, record=os.environ["RTNB_E2E_RECORDING"],
    turn_detection={"type": "server_vad"},
)
w = session.widget()
# Raw microphone: the test compares the captured audio with the WAV the fake device plays.
w.mic_options = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
w
"""
]


def _skip_reason() -> str | None:
    return L.missing()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Drive the whole scenario once; the tests below assert on what it left behind."""
    reason = _skip_reason()
    if reason:
        L.unavailable(reason)
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("e2e")
    rec_path = tmp / "session.arrow"
    env = {"RTNB_E2E_KEY": KEY, "RTNB_E2E_RECORDING": str(rec_path)}
    out: dict[str, Any] = {"tmp": tmp}
    console: list[str] = []
    with L.jupyterlab(tmp, NOTEBOOK, env) as lab, sync_playwright() as pw:
        tap = L.WsTap()
        browser, page = L.open_notebook(pw, lab, tap)
        page.on("console", lambda m: console.append(m.text))
        try:
            _scenario(page, lab, out)
        finally:
            out["html"] = page.content()
            browser.close()
    out["frames"] = tap.frames
    out["console"] = console
    from realtime_nb.storage.recording import Recording

    out["rec"] = Recording.open(rec_path)
    return out


def _played(page: Any, reason: str, index: int = -1) -> tuple[str, float]:
    sel = f'.rtnb-assistant[data-played-reason="{reason}"]'
    page.wait_for_selector(sel, timeout=40_000)
    nodes = page.query_selector_all(sel)
    node = nodes[index]
    return node.get_attribute("data-item"), float(node.get_attribute("data-played"))


def _progress_ms(page: Any) -> float:
    text = page.inner_text(".rtnb-playing") or ""
    m = re.search(r"([\d.]+) s", text)
    return float(m.group(1)) * 1000 if m else 0.0


def _wait_progress(page: Any, at_least_ms: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _progress_ms(page) < at_least_ms:
        if time.monotonic() > deadline:
            raise TimeoutError(f"playback never reached {at_least_ms} ms")
        page.wait_for_timeout(50)


def _say(page: Any, text: str) -> None:
    page.fill(".rtnb-textinput", text)
    page.press(".rtnb-textinput", "Enter")


def _scenario(page: Any, lab: L.Lab, out: dict[str, Any]) -> None:
    page.wait_for_selector(".rtnb-root", timeout=90_000)
    page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=30_000)
    kc = lab.kernel_client()

    # 1. Hands-free: the fake mic says "what's the weather"; mute once the turn is committed
    #    (the fake device loops the file) and let the whole reply play.
    page.click(".rtnb-mic")
    page.wait_for_selector(".rtnb-item.rtnb-user", timeout=30_000)
    page.click(".rtnb-mute")
    out["finished"] = _played(page, "finished")

    # 2. Stop button in the middle of a long reply.
    _say(page, LONG_TEXT)
    _wait_progress(page, 1200)
    page.click(".rtnb-stop")
    out["stopped"] = _played(page, "stopped")

    # 3. The user speaks over a long reply: unmute, the fake mic's next loop interrupts it.
    _say(page, LONG_TEXT)
    _wait_progress(page, 600)
    page.click(".rtnb-mute")
    out["interrupted"] = _played(page, "interrupted")
    page.click(".rtnb-mute")  # muted again: zeros keep flowing, with sequence numbers

    # 4. A cell blocks the kernel's shell for 3 s while a reply plays: playback must go on
    #    (the session thread sends), mic chunks must arrive late but complete and in order.
    page.wait_for_timeout(500)
    L.run(kc, "session.cancel()")
    page.wait_for_timeout(500)
    _say(page, LONG_TEXT)
    _wait_progress(page, 300)
    before = _progress_ms(page)
    msg_id = kc.execute("import time; time.sleep(3)")  # the shell is busy: comm messages queue
    page.wait_for_timeout(2500)
    out["progress_during_block"] = _progress_ms(page) - before
    while True:  # the sleep has really run (and finished) before we look at the mic stats
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    page.wait_for_timeout(500)
    stats = json.loads(
        L.run(
            kc,
            "import json, dataclasses; print(json.dumps({'mic': dataclasses.asdict(w.mic_stats), "
            "'sent': w.messages_sent, 'frontend': w.frontend_log, 'state': w.get_state(), "
            "'lane': dict(w._lane.counts), "
            "'mic_to_kernel_max': max(w.timings.mic_to_kernel), 'lat': [round(v) for v in w.timings.mic_to_kernel[-120:]]}, "
            "default=str))",
        )
    )
    out["kernel"] = stats

    # 4b. The mic lane goes away while the mic streams (muted: zeros): the chunks go on over the
    #     comm, none lost or repeated.
    L.run(kc, "chunks_before = w.mic_stats.chunks; w._lane.close()")
    page.wait_for_timeout(1500)
    out["after_lane"] = json.loads(
        L.run(
            kc,
            "import json, dataclasses; print(json.dumps({'mic': dataclasses.asdict(w.mic_stats), "
            "'more': w.mic_stats.chunks - chunks_before, 'frontend': w.frontend_log}))",
        )
    )
    page.click(".rtnb-stop")

    # 5. Screenshot for the docs (the widget only, transcript tab).
    page.wait_for_timeout(500)
    shot = out["tmp"] / "widget.png"
    page.locator(".rtnb-root").screenshot(path=str(shot))
    out["screenshot"] = shot
    if os.environ.get("REALTIME_NB_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, L.REPO / "docs" / "widget.png")

    L.run(kc, "session.close(); srv.stop()")


# --- assertions --------------------------------------------------------------------------------


def _events(rec: Any, etype: str, source: str | None = None) -> list[Any]:
    return [
        e
        for e in rec.events
        if e.type == etype
        and (source is None or str(getattr(e.source, "value", e.source)) == source)
    ]


def test_input_audio_matches_the_wav(e2e: dict[str, Any]) -> None:
    import soundfile as sf

    wav, rate = sf.read(str(L.FAKE_WAV), dtype="float32")
    assert rate == 24_000
    rec = e2e["rec"]
    pcm = b"".join(e.audio or b"" for e in _events(rec, "input_audio_buffer.append", "client"))
    x = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    # Where the fake device's first pass of the file sits in what the kernel received. Chrome
    # resamples the file to the device rate and the worklet back to 24 kHz, so samples are not
    # bit-exact: compare 20 ms energy envelopes (timing and loudness), and the total energy.
    head = x[: 8 * rate]
    corr = np.correlate(head, wav, mode="valid")
    lag = int(np.argmax(np.abs(corr)))
    seg = head[lag : lag + len(wav)]
    assert len(seg) == len(wav), "the whole file (3.27 s) arrived"

    def envelope(a: np.ndarray) -> np.ndarray:
        frames = a[: len(a) // 480 * 480].reshape(-1, 480)
        return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)

    env_r = _blockwise_envelope_r(envelope(seg), envelope(wav))
    energy_db = 10 * np.log10(np.mean(seg**2) / np.mean(wav**2))
    # Unloaded runs give r >= 0.99. When the machine is starved, Chromium's fake capture device
    # slips (it inserts or skips a few tens of ms: seen at r = 0.74 for one global alignment in a
    # full-suite run on two cores), so each 200 ms block is aligned on its own within +-100 ms;
    # other speech scores about 0.4 this way. The mic path's own order is checked by the kernel's
    # sequence numbers (test_blocked_kernel); duration and energy are checked strictly below.
    mic = e2e["kernel"]["mic"]
    assert env_r > 0.85, f"captured audio does not follow the WAV (envelope r={env_r:.3f}; {mic})"
    assert abs(energy_db) < 1.5, f"energy differs by {energy_db:.2f} dB"
    # Nothing lost or repeated: the speech lasts as long as in the file (within a chunk).
    voiced = envelope(seg) > -50
    assert abs(int(voiced.sum()) - int((envelope(wav) > -50).sum())) <= 3


def _blockwise_envelope_r(
    captured: np.ndarray, reference: np.ndarray, block: int = 10, slack: int = 5
) -> float:
    """Correlation of two 20 ms energy envelopes, each ``block`` of the reference aligned on its
    own within ``slack`` frames of the captured one (tolerates capture slips, not other audio)."""
    aligned = []
    for start in range(0, len(reference) - block + 1, block):
        ref = reference[start : start + block]
        best: tuple[float, np.ndarray] | None = None
        for lo in range(max(start - slack, 0), min(start + slack, len(captured) - block) + 1):
            cand = captured[lo : lo + block]
            r = float(np.corrcoef(cand, ref)[0, 1]) if np.std(cand) > 0 and np.std(ref) > 0 else -1
            if best is None or r > best[0]:
                best = (r, cand)
        aligned.append(best[1] if best is not None else np.full(block, -100.0))
    n = len(aligned) * block
    return float(np.corrcoef(np.concatenate(aligned), reference[:n])[0, 1])


def test_conversation_items(e2e: dict[str, Any]) -> None:
    state = e2e["rec"].state
    users = [i for i in state.items if i.type == "message" and i.role == "user"]
    assistants = [i for i in state.items if i.type == "message" and i.role == "assistant"]
    assert users
    assert users[0].audio_part() is not None
    assert len(assistants) >= 3
    first = state.item(e2e["finished"][0])
    assert first.audio_part() is not None
    assert first.output_audio_ms > 500


def test_played_events(e2e: dict[str, Any]) -> None:
    rec = e2e["rec"]
    played = [e.data for e in _events(rec, "local.playback.played", "local")]
    by_reason = {p["reason"]: p for p in played}
    assert {"finished", "stopped", "interrupted"} <= set(by_reason)
    item_id, page_ms = e2e["finished"]
    fin = next(p for p in played if p["item_id"] == item_id)
    assert fin["played_ms"] == page_ms
    total = rec.state.item(item_id).output_audio_ms
    assert abs(fin["played_ms"] - total) < 50, (fin, total)
    assert _events(rec, "local.playback.started", "local")
    assert _events(rec, "local.mic.started", "local")


@pytest.mark.parametrize("reason", ["stopped", "interrupted"])
def test_truncation_matches_what_the_page_played(e2e: dict[str, Any], reason: str) -> None:
    item_id, page_ms = e2e[reason]
    truncs = [
        e.data
        for e in _events(e2e["rec"], "conversation.item.truncate", "client")
        if e.data.get("item_id") == item_id
    ]
    assert len(truncs) == 1, truncs
    assert abs(truncs[0]["audio_end_ms"] - page_ms) <= 150, (truncs[0], page_ms)
    assert e2e["rec"].state.item(item_id).truncated


def test_blocked_kernel(e2e: dict[str, Any]) -> None:
    assert e2e["progress_during_block"] > 2000, "playback stalled while the shell was blocked"
    mic = e2e["kernel"]["mic"]
    assert mic["gaps"] == 0
    assert mic["duplicates"] == 0
    # Chunks sent during the 3 s block arrive late (when the kernel queues comm messages behind
    # the cell; with JupyterLab 4.6 + ipykernel 7 they are sometimes handled on a subshell and
    # arrive on time), but always complete and in order: no gap, no duplicate (asserted above).
    print("mic chunk -> kernel, last 120 chunks (ms):", e2e["kernel"]["lat"])
    assert e2e["kernel"]["frontend"] == []


def test_mic_chunks_go_on_the_lane_and_fall_back_to_the_comm(e2e: dict[str, Any]) -> None:
    lane = e2e["kernel"]["lane"]
    mic = e2e["kernel"]["mic"]
    # Every chunk but the few sent while the lane connected came on it.
    assert lane["connections"] >= 1 and lane["refused"] == 0 and lane["malformed"] == 0, lane
    assert lane["chunks"] >= mic["chunks"] - 20, (lane, mic)
    states = [e.data.get("state") for e in _events(e2e["rec"], "local.mic.lane", "local")]
    assert states[:1] == ["open"], states
    assert states[-1] == "down", states  # 4b closed it
    after = e2e["after_lane"]
    assert after["more"] >= 15, after  # 1.5 s of 50 ms chunks kept coming, over the comm
    assert after["mic"]["gaps"] == 0 and after["mic"]["duplicates"] == 0, after
    assert any("mic lane unavailable" in f["message"] for f in after["frontend"]), after


def test_api_key_never_reaches_the_browser(e2e: dict[str, Any]) -> None:
    assert len(e2e["frames"]) > 100
    assert not any(KEY.encode() in f for f in e2e["frames"])
    assert KEY not in e2e["html"]
    assert not any(KEY in c for c in e2e["console"])
    assert KEY not in json.dumps(e2e["kernel"]["state"], default=str)


def test_screenshot(e2e: dict[str, Any]) -> None:
    shot: Path = e2e["screenshot"]
    assert shot.exists()
    assert shot.stat().st_size > 5000
