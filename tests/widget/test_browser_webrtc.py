"""The widget over WebRTC, end to end: a real JupyterLab, Debian's chromium with the fake mic, the
local server's calls endpoint (aiortc), no network.

The page holds the peer connection (its mic track, the ``oai-events`` data channel, the remote
track it plays); the kernel posts the offer with the key and records the sideband; the page taps
both tracks and forwards the data channel. One spoken conversation: a VAD turn that calls a tool,
then a long reply the fake mic talks over (a barge-in the server handles itself).

Run: ``pytest -m browser tests/widget/test_browser_webrtc.py`` (about a minute).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import lab as L

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
]

#: A fake key the local server requires; it must never reach the page.
KEY = "sk-webrtc-" + "Qx9" * 12
LONG_TEXT = (
    "Please repeat this long sentence slowly: the quick brown fox jumps over the lazy dog, "
    "then runs across the wide green meadow, past the old mill and the river, over the hills "
    "and far away into the evening light, where the stars come out one by one above the town."
)
#: The page's clock and the kernel's are one machine's here, so the recording's placement of the
#: tracks can be checked against the truth: the issue's bound.
ALIGN_MS = 50
#: Longest delay from the server starting a reply's audio to the page playing its first sound
#: that the sanity check accepts (jitter buffer, decoder, output latency, and a loaded machine).
MAX_PLAYOUT_DELAY_MS = 2000

NOTEBOOK = [
    """\
import os, time
import realtime_nb
from realtime_nb import Session

@realtime_nb.tool
def get_weather(city: str = "Paris") -> str:
    \"\"\"Today's weather.\"\"\"
    return f"sunny in {city}"

# The key comes from the environment so that even the notebook file does not hold it; the
# server runs in the test's process, as a remote API would (not competing for this kernel's GIL).
KEY, URL = os.environ["RTNB_E2E_KEY"], os.environ["RTNB_E2E_URL"]
session = Session(
    url=URL, api_key=KEY, transport="webrtc", record=os.environ["RTNB_E2E_RECORDING"],
    turn_detection={"type": "server_vad"}, tools=[get_weather], transcription=True,
)
w = session.widget()
# The fake mic is a file, not a room: there is no echo to cancel, and the browser's echo
# canceller and noise suppressor, fed the reply as their reference, can damp the looped question
# while the reply plays (no barge-in). The relay's browser test takes the raw mic too.
w.mic_options = {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False}
w
"""
]


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Drive the whole conversation once; the tests below assert on what it left behind."""
    reason = L.missing()
    if reason:
        L.unavailable(reason)
    try:
        import aiortc  # noqa: F401
    except ImportError:
        L.unavailable("aiortc is not installed (pip install 'realtime-nb[webrtc]')")
    from playwright.sync_api import sync_playwright

    from realtime_nb.local.responders import ToolWordsResponder
    from realtime_nb.local.server import LocalServer

    tmp = tmp_path_factory.mktemp("webrtc")
    srv = LocalServer(ToolWordsResponder(), fast=False, api_key=KEY).start()
    rec_path = tmp / "session.arrow"
    env = {
        "RTNB_E2E_KEY": KEY,
        "RTNB_E2E_RECORDING": str(rec_path),
        "RTNB_E2E_WAV": str(L.FAKE_WAV),  # what the fake mic says, for the WebSocket comparison
        "RTNB_E2E_URL": srv.url,
    }
    out: dict[str, Any] = {"tmp": tmp}
    console: list[str] = []
    with srv, L.jupyterlab(tmp, NOTEBOOK, env) as lab, sync_playwright() as pw:
        tap = L.WsTap()
        browser, page = L.open_notebook(
            pw, lab, tap, extra_args=L.WEBRTC_ARGS, fake_wav=_spaced_question(tmp)
        )
        page.on("console", lambda m: console.append(m.text))
        try:
            _scenario(page, lab, out)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{_diagnosis(page, lab, console)}") from exc
        finally:
            out["html"] = page.content()
            browser.close()
    out["frames"] = tap.frames
    out["sent"] = [f for f, r in zip(tap.frames, tap.received, strict=True) if not r]
    out["console"] = console
    from realtime_nb.storage.recording import Recording

    out["rec"] = Recording.open(rec_path)
    return out


#: Silence after the question in the fake mic's loop: long enough for the answer through the
#: tool to be heard before the question comes again, shorter than the long reply (~15 s), which
#: the next question therefore interrupts.
QUESTION_GAP_S = 9.0


def _spaced_question(tmp: Path) -> Path:
    """The fake mic's WAV: the question, then :data:`QUESTION_GAP_S` of silence (the device
    loops its file; back to back, each question would interrupt the answer to the last)."""
    import soundfile as sf

    x, rate = sf.read(str(L.FAKE_WAV), dtype="int16")
    out = tmp / "question_then_silence.wav"
    sf.write(str(out), np.concatenate([x, np.zeros(int(QUESTION_GAP_S * rate), np.int16)]), rate)
    return out


#: Long replies said before giving up on the fake mic's loop interrupting one.
BARGE_IN_ATTEMPTS = 3


def _diagnosis(page: Any, lab: L.Lab, console: list[str]) -> str:
    """What the widget and the kernel said, for a scenario that went wrong."""
    parts = []
    try:
        root = page.query_selector(".rtnb-root")
        parts.append(f"rtc state: {root.get_attribute('data-rtc-state')}")
        parts.append(f"notice: {page.inner_text('.rtnb-root .rtnb-notice')!r}")
    except Exception as exc:  # the page may be gone
        parts.append(f"page: {exc!r}")
    try:
        kc = lab.kernel_client()
        code = "print(w.frontend_log, session.status, w._webrtc.states, w._webrtc.counts)"
        parts.append(f"kernel: {L.run(kc, code, timeout=10)}")
    except Exception as exc:
        parts.append(f"kernel: {exc!r}")
    parts.append("console: " + " | ".join(console[-15:]))
    return "\n".join(parts)


def _playing(page: Any) -> str:
    return str(page.inner_text(".rtnb-playing") or "")


def _wait(page: Any, what: str, cond: Any, timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        page.wait_for_timeout(50)


def _kinds(kc: Any) -> list[str]:
    return list(json.loads(L.run(kc, KINDS)))


#: The conversation's item types and whether the last assistant message after a tool output is
#: complete, as JSON (run in the kernel).
KINDS = "import json; print(json.dumps([i.type for i in session.conversation.items]))"
ANSWERED = (
    "import json\n"
    "_items = session.conversation.items\n"
    "_k = max((n for n, i in enumerate(_items) if i.type == 'function_call_output'), default=-1)\n"
    "print(json.dumps(_k >= 0 and any(i.role == 'assistant' and i.status == 'completed'"
    " for i in _items[_k:])))"
)


def _answered(kc: Any) -> bool:
    return bool(json.loads(L.run(kc, ANSWERED)))


def _say(page: Any, text: str) -> None:
    page.fill(".rtnb-textinput", text)
    page.press(".rtnb-textinput", "Enter")


def _scenario(page: Any, lab: L.Lab, out: dict[str, Any]) -> None:
    page.wait_for_selector('.rtnb-root[data-transport="webrtc"]', timeout=90_000)
    kc = lab.kernel_client()

    # 1. The mic button starts the call; the fake mic asks "what's the weather" every ~12 s
    #    (the first time maybe from mid-sentence). The model calls the tool and says its output.
    page.click(".rtnb-mic")
    page.wait_for_selector('.rtnb-root[data-rtc-state="connected"]', timeout=30_000)
    _wait(page, "a tool call", lambda: "function_call" in _kinds(kc), 90)
    _wait(page, "the answer about the tool's output", lambda: _answered(kc), 60)
    _wait(page, "the answer to finish playing", lambda: "speaking" not in _playing(page), 60)

    # 2. Barge-in: a reply longer than the loop's silence; the question comes again over it.
    #    The loop's question may fall in a gap (between replies, or while the reply is still
    #    being synthesised); then the reply plays out and it is asked again, up to 3 times.
    for attempt in range(BARGE_IN_ATTEMPTS):
        _say(page, LONG_TEXT)
        _wait(page, "the long reply to start playing", lambda: "speaking" in _playing(page))
        deadline = time.monotonic() + 60
        while "interrupted" not in _playing(page) and "speaking" in _playing(page):
            if time.monotonic() > deadline:
                raise TimeoutError("waited 60 s for the server to clear the output")
            page.wait_for_timeout(50)
        if "interrupted" in _playing(page):
            out["barge_in_attempts"] = attempt + 1
            break
    else:
        raise TimeoutError(f"no barge-in in {BARGE_IN_ATTEMPTS} long replies")
    page.click(".rtnb-mute")  # no more questions
    page.wait_for_timeout(2000)

    # What the page reports, and the truth about the two clocks (one machine: the page's epoch
    # milliseconds and the kernel's time.time_ns() are the same clock).
    root = page.query_selector(".rtnb-root")
    out["onsets"] = {
        "input": json.loads(root.get_attribute("data-rtc-onsets-input") or "[]"),
        "output": json.loads(root.get_attribute("data-rtc-onsets-output") or "[]"),
    }
    out["kernel"] = json.loads(
        L.run(
            kc,
            "import json, time\n"
            "_a = session.clock_ns(); _e = time.time_ns(); _b = session.clock_ns()\n"
            "print(json.dumps({'epoch_minus_clock_ms': (_e - (_a + _b) / 2) / 1e6,"
            " 'counts': w._webrtc.counts, 'states': w._webrtc.states,"
            " 'clock': vars(w._webrtc.clock.best), 'frontend': w.frontend_log,"
            " 'state': w.get_state(), 'transport': w.transport}, default=str))",
        )
    )
    # 3. The same spoken turn over the WebSocket path, for the reduction to compare with.
    after = json.loads(
        L.run(
            kc,
            "from realtime_nb.frontdoor.demo import say\n"
            "session.hangup()\n"
            "_ws = Session(url=URL, api_key=KEY, record=False, "
            "turn_detection={'type': 'server_vad'}, tools=[get_weather], transcription=True)\n"
            "say(_ws, os.environ['RTNB_E2E_WAV'])\n"
            "print(json.dumps({'items': [{'type': i.type, 'role': i.role, 'text': i.text} "
            "for i in _ws.conversation.items], 'counts': w._webrtc.counts}))\n"
            "_ws.close()",
            timeout=120,
        )
    )
    out["websocket_items"] = after["items"]
    out["counts_after_hangup"] = after["counts"]


# --- helpers over the recording ------------------------------------------------------------------


def _src(e: Any) -> str:
    return str(getattr(e.source, "value", e.source))


def _track(rec: Any, track: str) -> list[tuple[int, bytes, int]]:
    """(t_ns of the first sample, pcm16, rate) of each tapped chunk of ``track``."""
    out = []
    for e in rec.events:
        if e.type == f"local.track.{track}" and e.audio:
            out.append((int(e.data["t_ns"]), bytes(e.audio), int(e.data.get("rate", 24_000))))
    # In time order: the kernel may handle comm messages on more than one thread.
    return sorted(out, key=lambda c: c[0])


def _recorded_onsets(chunks: list[tuple[int, bytes, int]]) -> list[float]:
    """Onsets (kernel ms) in the recorded chunks, by the page's rule (rtcstate.js OnsetDetector:
    the first sample above 0.01 full scale after 300 ms below it)."""
    limit, gap_ms = 0.01 * 32768, 300.0
    last_loud = -np.inf
    onsets: list[float] = []
    for t_ns, pcm, rate in chunks:
        x = np.frombuffer(pcm, "<i2").astype(np.int32)
        loud = np.flatnonzero(np.abs(x) > limit)
        if not len(loud):
            continue
        times = t_ns / 1e6 + loud * 1000.0 / rate
        if times[0] - last_loud >= gap_ms:
            onsets.append(float(times[0]))
        # later onsets inside the same chunk (a gap within 50 ms cannot be >= 300 ms)
        last_loud = float(times[-1])
    return onsets


#: A spoken question answered through a tool, as the items of a conversation show it.
TOOL_TURN = [
    ("message", "user"),
    ("function_call", None),
    ("function_call_output", None),
    ("message", "assistant"),
]


def _tool_turn(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first four items shaped like :data:`TOOL_TURN` (the call may start mid-sentence:
    the fake mic plays from when the page opened it, the call connects a moment later, so the
    first turn may be the tail of the sentence, answered without a tool)."""
    shape = [(i["type"], i["role"]) for i in items]
    for k in range(len(items) - 3):
        if shape[k : k + 4] == TOOL_TURN:
            return items[k : k + 4]
    raise AssertionError(f"no spoken turn answered through the tool in {shape}")


# --- assertions ----------------------------------------------------------------------------------


def test_the_call_went_over_webrtc(call: dict[str, Any]) -> None:
    k = call["kernel"]
    assert k["transport"] == "webrtc"
    assert "connected" in k["states"]
    meta = call["rec"].meta
    assert meta.get("transport") == "webrtc"
    assert str(meta.get("call_id", "")).startswith("rtc_")
    # No audio crossed the comm as the relay's messages: no mic chunks, no output audio deltas.
    rec = call["rec"]
    assert not [e for e in rec.events if e.type == "input_audio_buffer.append"]
    assert not [e for e in rec.events if e.type == "response.output_audio.delta"]
    assert k["frontend"] == [], k["frontend"]


def test_vad_turn_tool_call_and_barge_in(call: dict[str, Any]) -> None:
    rec = call["rec"]
    types = [e.type for e in rec.events if _src(e) == "server"]
    assert "input_audio_buffer.speech_started" in types
    assert "output_audio_buffer.started" in types
    assert "output_audio_buffer.cleared" in types, "the barge-in did not clear the output"
    assert "conversation.item.truncated" in types
    items = rec.state.items
    turn = _tool_turn([{"type": i.type, "role": i.role, "text": i.text} for i in items])
    assert turn[2]["text"].startswith("sunny in ")
    # The answer may have been cut by the next loop of the fake mic: what was said is a prefix.
    answer = turn[3]["text"] or ""
    full = "The tool said: " + turn[2]["text"]
    assert answer and full.startswith(answer), (answer, full)
    cut = [i for i in items if i.type == "message" and i.role == "assistant" and i.truncated]
    assert cut, "the interrupted reply is not marked truncated"


def test_every_sideband_and_data_channel_event_recorded_once(call: dict[str, Any]) -> None:
    rec = call["rec"]
    server = [e for e in rec.events if _src(e) == "server"]
    ids = [str(e.data.get("event_id")) for e in server if e.data.get("event_id")]
    assert len(ids) == len(set(ids)), "an event was recorded twice"
    # The page's own witness: every event it forwarded from the data channel is in the recording.
    seen: set[str] = set()
    for f in call["sent"]:
        if b"webrtc.event" in f:
            seen |= {m.decode() for m in re.findall(rb'"event_id":\s*"([^"]+)"', f)}
    assert len(seen) > 20, f"the page forwarded only {len(seen)} data-channel events"
    missing = seen - set(ids)
    assert not missing, f"{len(missing)} data-channel events are not in the recording"
    counts = call["counts_after_hangup"]
    assert counts["events"] + counts["duplicates"] >= len(seen)


@pytest.mark.parametrize("track", ["input", "output"])
def test_tracks_aligned_with_what_the_page_reports(call: dict[str, Any], track: str) -> None:
    chunks = _track(call["rec"], track)
    assert chunks, f"no {track} track recorded"
    audio_s = sum(len(p) // 2 / r for _, p, r in chunks)
    assert audio_s > 3, f"only {audio_s:.1f} s of {track} audio recorded"
    # Kernel clock -> epoch with the truth measured in the kernel, compared with the page's own
    # epoch times of the same onsets: this checks the measured clock offset and the placement.
    shift = call["kernel"]["epoch_minus_clock_ms"]
    recorded = [t + shift for t in _recorded_onsets(chunks)]
    # The page taps its mic from the moment it opens it; the call (and its recording) starts a
    # moment later, once the kernel has the answer: onsets before that are not the call's.
    start = chunks[0][0] / 1e6 + shift
    page = [t for t in call["onsets"][track] if t >= start]
    assert page, f"the page saw no onset on the {track} track"
    errors = [min(abs(p - r) for r in recorded) for p in page]
    assert max(errors) <= ALIGN_MS, (track, errors, call["kernel"]["clock"])


def test_output_track_follows_the_servers_playback_events(call: dict[str, Any]) -> None:
    """Physical sanity: the played audio starts after the server says it started sending, and
    within the path's delay (jitter buffer, decoder, output latency)."""
    rec = call["rec"]
    started = [e.t_ns / 1e6 for e in rec.events if e.type == "output_audio_buffer.started"]
    onsets = _recorded_onsets(_track(rec, "output"))
    assert started and onsets
    # Each reply's first sound: the first onset after each started event.
    delays = []
    for t in started:
        after = [o - t for o in onsets if o >= t - ALIGN_MS]
        if after and after[0] < 2000:
            delays.append(after[0])
    assert delays, (started, onsets)
    # Not before the server sent it; after at most the path's delay (tens of ms idle, over a
    # second seen on a loaded 2-core machine, with the server's speech synthesis competing).
    assert all(-ALIGN_MS <= d <= MAX_PLAYOUT_DELAY_MS for d in delays), delays


def test_reduces_to_the_same_items_as_the_websocket_path(call: dict[str, Any]) -> None:
    ws = _tool_turn(call["websocket_items"])
    items = call["rec"].state.items
    rtc = _tool_turn([{"type": i.type, "role": i.role, "text": i.text} for i in items])
    # The same turn, item for item; the words recognized may differ (Opus-coded speech through
    # the browser's processing is not the WAV's samples), so the city the tool got may too.
    assert "weather" in (rtc[0]["text"] or "").lower(), rtc[0]
    assert "weather" in (ws[0]["text"] or "").lower(), ws[0]
    assert rtc[1]["text"].split("(")[0] == ws[1]["text"].split("(")[0] == "get_weather"
    assert rtc[2]["text"].split(" in ")[0] == ws[2]["text"].split(" in ")[0] == "sunny"
    # The spoken answer about it (cut short on the WebRTC side if the mic's loop barged in).
    assert ws[3]["text"].startswith("The tool said: sunny in ")
    assert ("The tool said: " + rtc[2]["text"]).startswith(rtc[3]["text"] or "-")
    # Every user item carries its audio, cut from the input track at the server's VAD marks.
    users = [i for i in items if i.type == "message" and i.role == "user" and not i.text]
    spoken = [i for i in items if i.type == "message" and i.role == "user"
              and not (i.text or "").startswith("Please repeat")]  # fmt: skip
    assert spoken and all(i.audio_part() is not None for i in spoken), users


def test_export_wav_of_the_call(call: dict[str, Any]) -> None:
    import soundfile as sf

    out = call["tmp"] / "call.wav"
    call["rec"].export_wav(out)
    x, rate = sf.read(str(out))
    assert len(x) / rate > 3


def test_no_secret_reaches_the_page(call: dict[str, Any]) -> None:
    frames = call["frames"]
    assert len(frames) > 100
    # Long enough not to occur by chance in the binary audio frames.
    for needle in (KEY, "Bearer ", "client_secret"):
        assert not any(needle.encode() in f for f in frames), needle
        assert needle not in call["html"], needle
        assert not any(needle in c for c in call["console"]), needle
    assert KEY not in json.dumps(call["kernel"]["state"], default=str)


def test_degrades_clearly_where_webrtc_cannot_work(tmp_path: Path) -> None:
    """Served over plain http from a name that is not localhost, the page is not a secure
    context: no microphone, no WebRTC audio. The widget says so, offers the relay, and sends no
    offer."""
    reason = L.missing()
    if reason:
        L.unavailable(reason)
    from playwright.sync_api import sync_playwright

    cells = [
        "from realtime_nb import Session\n"
        "session = Session(url='ws://127.0.0.1:9/v1/realtime', record=False, transport='webrtc')\n"
        "w = session.widget()\n"
        "w\n"
    ]
    with L.jupyterlab(tmp_path, cells, {}) as lab, sync_playwright() as pw:
        tap = L.WsTap()
        browser, page = L.open_notebook(pw, lab, tap, insecure=True, extra_args=L.WEBRTC_ARGS)
        try:
            page.wait_for_selector('.rtnb-root[data-rtc-state="unavailable"]', timeout=90_000)
            text = page.inner_text(".rtnb-root .rtnb-notice")
            page.click(".rtnb-mic", force=True)  # disabled: nothing may happen
            page.wait_for_timeout(1000)
        finally:
            browser.close()
    assert "WebRTC unavailable" in text and "not a secure context" in text, text
    assert 'transport="websocket"' in text and "--transport websocket" in text, text
    sent = [f for f, r in zip(tap.frames, tap.received, strict=True) if not r]
    assert sent, "the page sent nothing at all"
    assert not any(b"webrtc.offer" in f for f in sent)
