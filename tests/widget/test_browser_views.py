"""What a person sees of the debugging views, in a real JupyterLab and Debian's chromium.

One notebook shows ``rt.diff(a, b)`` of two recorded OpenAI sessions whose costs differ, the demo
recording's output (``rec``), its replay (``rec.play()``) and the live widget of an offline
session; the tests assert on what the page shows, not on the HTML strings:

- the diff: the dollar amounts as text (MathJax typeset none of it), the diff lines left-aligned
  and in monospace (computed styles);
- the recording: its cell output under 100 KB, no audio inlined, text left-aligned;
- the replay: labelled markers for items, the tool call, responses; 0.5x plays at half speed;
  "(speaking…)" while the user speaks and the turn's item is not there yet;
- the live widget: "● recording to FILE" and the offline backend in the header, no ``null`` in
  the Events tab, microphone and speakers selectors listing Chromium's fake devices, a mic
  switched mid-session that keeps streaming without a gap, choices remembered by the browser.

Screenshots of each view go to the test's temporary folder, and to ``docs/`` with
``REALTIME_NB_UPDATE_DOCS=1`` (the README's "What you see"):

``pytest -m browser tests/widget/test_browser_views.py`` (about a minute).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from . import lab as L

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSIONS = L.REPO / "tests" / "fixtures" / "sessions" / "test_openai_ws"
#: Two recorded OpenAI sessions: different instructions (a text diff), different costs.
REC_A = SESSIONS / "test_text_in_audio_out_turn.yaml"
REC_B = SESSIONS / "test_tool_call_round.yaml"
DEMO = L.REPO / "recordings" / "demo.arrow"
#: The issue's bound on a recording's cell output (the 9.7 s demo was 0.55 MB with audio inlined).
MAX_RECORDING_OUTPUT = 100_000
#: The views' screenshots: file name in docs/ -> what it shows.
SHOTS = {
    "diff.png": "rt.diff(a, b)",
    "recording.png": "a recording's output",
    "replay.png": "rec.play(): the timeline with its markers",
    "widget-events.png": "the live widget: header, devices, Events tab",
}
ALIGNED_LEFT = ("left", "start")
MONOSPACE = re.compile(r"mono|courier|consolas|menlo", re.I)

CELLS = [
    """\
import os
os.environ.pop("OPENAI_API_KEY", None)  # no key: the embedded local backend, offline
import realtime_nb as rt
a = rt.Recording.import_file(os.environ["RTNB_VIEWS_A"])
b = rt.Recording.import_file(os.environ["RTNB_VIEWS_B"])
demo = rt.Recording.open(os.environ["RTNB_VIEWS_DEMO"])
""",
    "rt.diff(a, b)",
    "demo",
    "demo.play()",
    """\
session = rt.Session(record=os.environ["RTNB_VIEWS_RECORDING"])
w = session.widget()
w
""",
    "w  # a second view of the same widget, shown later",
]
DIFF, RECORDING, REPLAY, LIVE, LIVE_AGAIN = 1, 2, 3, 4, 5


def _output(page: Any, cell: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-OutputArea")


def _shot(locator: Any, name: str, out: dict[str, Any]) -> None:
    path = out["tmp"] / name
    locator.screenshot(path=str(path))
    out["shots"][name] = path
    if os.environ.get("REALTIME_NB_UPDATE_DOCS") == "1":
        shutil.copyfile(path, L.REPO / "docs" / name)


#: Per element of an output: its tag, class, start of text, computed text-align and font family.
STYLES_JS = """(root) => [...root.querySelectorAll('pre, td, th, li, p, div, span, ins, del')]
  .filter((e) => e.textContent.trim() && !e.closest('.jp-OutputPrompt'))
  .map((e) => ({tag: e.tagName.toLowerCase(), cls: String(e.className || ''),
                text: e.textContent.trim().slice(0, 80),
                own: [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('').trim(),
                align: getComputedStyle(e).textAlign, font: getComputedStyle(e).fontFamily}))"""
MATHJAX_JS = (
    "(root) => root.querySelectorAll('mjx-container, .MathJax, .MathJax_Preview, "
    'script[type^="math/"]\').length'
)


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reason = L.missing()
    if reason:
        L.unavailable(reason)
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("views")
    env = {
        "RTNB_VIEWS_A": str(REC_A),
        "RTNB_VIEWS_B": str(REC_B),
        # A copy beside the notebook, opened by its name, as a user would (and as it shows).
        "RTNB_VIEWS_DEMO": DEMO.name,
        "RTNB_VIEWS_RECORDING": str(tmp / "views.arrow"),
    }
    out: dict[str, Any] = {"tmp": tmp, "shots": {}, "console": []}
    with L.jupyterlab(tmp, CELLS, env) as lab, sync_playwright() as pw:
        shutil.copyfile(DEMO, lab.root / DEMO.name)
        browser, page = L.open_notebook(pw, lab)
        page.on("console", lambda m: out["console"].append(m.text))
        try:
            kc = lab.kernel_client()
            _diff(page, out)
            _recording(page, out)
            _replay(page, out)
            _live(page, kc, out)
            L.run(kc, "session.close()")
        finally:
            browser.close()
    return out


def _diff(page: Any, out: dict[str, Any]) -> None:
    area = _output(page, DIFF)
    area.locator("text=cost").first.wait_for(timeout=90_000)
    page.wait_for_timeout(1500)  # MathJax typesets asynchronously: give it the time to do harm
    out["diff"] = {
        "text": area.inner_text(),
        "mathjax": area.evaluate(MATHJAX_JS),
        "styles": area.evaluate(STYLES_JS),
    }
    _shot(area, "diff.png", out)


def _recording(page: Any, out: dict[str, Any]) -> None:
    area = _output(page, RECORDING)
    area.locator("table").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    out["recording"] = {
        "html": area.evaluate("e => e.outerHTML"),
        "saved": page.evaluate(
            """(i) => JSON.stringify(window.jupyterapp.shell.currentWidget.content.widgets[i]
                                     .model.toJSON().outputs)""",
            RECORDING,
        ),
        "text": area.inner_text(),
        "mathjax": area.evaluate(MATHJAX_JS),
        "styles": area.evaluate(STYLES_JS),
    }
    _shot(area, "recording.png", out)


def _replay(page: Any, out: dict[str, Any]) -> None:
    root = page.locator(".rtnb-replay")
    page.wait_for_selector('.rtnb-replay[data-status="ready"]', timeout=60_000)
    page.wait_for_selector(".rtnb-replay .rtnb-marker", timeout=10_000)
    r: dict[str, Any] = {
        "markers": root.evaluate(
            """e => [...e.querySelectorAll('.rtnb-marker')].map((m) => ({
                 kind: m.dataset.kind, t: Number(m.dataset.t), label: m.textContent, title: m.title,
                 visible: !!m.querySelector('.rtnb-marker-label')
                          && m.querySelector('.rtnb-marker-label').getBoundingClientRect().width > 0}))"""
        ),
        "speeds": root.evaluate(
            "e => [...e.querySelectorAll('.rtnb-speed')].map((b) => Number(b.dataset.speed))"
        ),
    }
    duration = float(root.evaluate("e => e.querySelector('.rtnb-time').textContent"
                                   ".split('/')[1].trim().split(':').reduce((a, v) => a * 60 + Number(v), 0)"))  # fmt: skip
    from realtime_nb.debugging.replay import ReplayData

    data = ReplayData(DEMO)
    speech = data.vad_segments()[0]
    r["speech"] = (speech.start_s, speech.end_s)

    def seek(t: float) -> None:
        n = int(root.evaluate("e => e.dataset.seeks || 0"))
        root.locator("canvas").scroll_into_view_if_needed()
        box = root.locator("canvas").bounding_box()
        page.mouse.click(box["x"] + box["width"] * t / duration, box["y"] + box["height"] / 2)
        page.wait_for_function(
            f"() => Number(document.querySelector('.rtnb-replay').dataset.seeks || 0) > {n}",
            timeout=10_000,
        )

    # In the middle of the user's first question: not an item yet, "(speaking…)".
    assert speech.end_s is not None
    seek((speech.start_s + speech.end_s) / 2)
    page.wait_for_timeout(300)
    r["speaking_mid_speech"] = root.locator(".rtnb-speaking").first.is_visible()
    r["speaking_text"] = root.locator(".rtnb-transcript, .rtnb-pane-transcript").first.inner_text()
    # 0.5x: half the timeline per second. Both clocks are read in the page at once: on a loaded
    # machine the replies to the test take a while, and the test's own clock would count that.
    root.locator(".rtnb-speed[data-speed='0.5']").click()
    root.locator(".rtnb-play").click()
    page.wait_for_function("() => document.querySelector('.rtnb-replay').dataset.playing === '1'")
    clocks = "e => [performance.now() / 1000, Number(e.dataset.position)]"
    page.wait_for_timeout(300)
    w0, p0 = root.evaluate(clocks)
    page.wait_for_timeout(2000)
    w1, p1 = root.evaluate(clocks)
    root.locator(".rtnb-play").click()
    r["rate_half"] = (p1 - p0) / (w1 - w0)
    r["speed_ds"] = root.evaluate("e => e.dataset.speed")
    # Show the whole conversation for the picture.
    seek(duration - 0.05)
    page.wait_for_timeout(500)
    r["final_text"] = root.locator(".rtnb-transcript").inner_text()
    out["replay"] = r
    _shot(root, "replay.png", out)


def _live(page: Any, kc: Any, out: dict[str, Any]) -> None:
    live = page.locator(".rtnb-root:not(.rtnb-replay)").first
    page.wait_for_selector(".rtnb-root:not(.rtnb-replay) .rtnb-dot.rtnb-connected", timeout=60_000)
    # Labels appear once the microphone is allowed (granted to this origin): wait for them.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rtnb-device-input option')]"
        ".some((o) => o.textContent === 'Fake Audio Input 1')",
        timeout=10_000,
    )
    options = "(s) => [...s.options].map((o) => [o.value, o.textContent])"
    r: dict[str, Any] = {
        "recording": live.locator(".rtnb-recording").inner_text(),
        "recording_title": live.locator(".rtnb-recording").get_attribute("title"),
        "backend": live.locator(".rtnb-backend").inner_text(),
        "backend_class": live.locator(".rtnb-backend").get_attribute("class"),
        "inputs": live.locator(".rtnb-device-input").evaluate(options),
        "outputs": live.locator(".rtnb-device-output").evaluate(options),
        "output_enabled": live.locator(".rtnb-device-output").is_enabled(),
    }
    # A text turn, so that the log holds item events beside the session's.
    live.locator(".rtnb-textinput").fill("Hello there, how are you?")
    live.locator(".rtnb-textinput").press("Enter")
    live.locator(".rtnb-item.rtnb-assistant").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    live.locator(".rtnb-tab:has-text('Events')").click()
    page.wait_for_timeout(300)
    r["event_rows"] = live.locator(".rtnb-event").evaluate_all(
        "rows => rows.map((e) => e.innerText.replace(/\\s+/g, ' ').trim())"
    )
    _shot(live, "widget-events.png", out)

    # The mic on, then moved to another device mid-session: chunks keep coming, none missing.
    def stats() -> dict[str, Any]:
        got: dict[str, Any] = json.loads(
            L.run(
                kc,
                "import json, dataclasses; print(json.dumps({'mic': dataclasses.asdict(w.mic_stats),"
                " 'frontend': w.frontend_log}, default=str))",
            )
        )
        return got

    live.locator(".rtnb-mute").click()  # muted: zeros flow (no turns to wait for), still chunks
    live.locator(".rtnb-mic").click()
    page.wait_for_function(
        "() => document.querySelector('.rtnb-root:not(.rtnb-replay)').dataset.micDevice !== undefined",
        timeout=15_000,
    )
    page.wait_for_timeout(1500)
    before = stats()
    wanted_in = next(v for v, label in r["inputs"] if label == "Fake Audio Input 1")
    live.locator(".rtnb-device-input").select_option(value=wanted_in)
    page.wait_for_function(
        f"() => document.querySelector('.rtnb-root:not(.rtnb-replay)').dataset.micDevice === {json.dumps(wanted_in)}",
        timeout=10_000,
    )
    t0 = time.monotonic()
    page.wait_for_timeout(2000)
    after = stats()
    r["mic"] = {"before": before["mic"], "after": after["mic"], "s": time.monotonic() - t0,
                "frontend": after["frontend"]}  # fmt: skip
    wanted_out = next(v for v, label in r["outputs"] if label == "Fake Audio Output 1")
    live.locator(".rtnb-device-output").select_option(value=wanted_out)
    page.wait_for_function(
        f"() => document.querySelector('.rtnb-root:not(.rtnb-replay)').dataset.sinkId === {json.dumps(wanted_out)}",
        timeout=10_000,
    )
    live.locator(".rtnb-mic").click()  # off
    r["wanted"] = (wanted_in, wanted_out)
    r["stored"] = page.evaluate(
        "() => [localStorage.getItem('realtime_nb.device.audioinput'),"
        " localStorage.getItem('realtime_nb.device.audiooutput')]"
    )
    # A new view of the widget (as after reopening the notebook in this browser) starts with them.
    L.run_cell(page, LIVE_AGAIN)
    second = page.locator(".rtnb-root:not(.rtnb-replay)").nth(1)
    second.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => { const r = document.querySelectorAll('.rtnb-root:not(.rtnb-replay)')[1];"
        " return r && r.dataset.sinkId !== undefined; }",
        timeout=15_000,
    )
    r["second"] = {
        "input": second.locator(".rtnb-device-input").input_value(),
        "output": second.locator(".rtnb-device-output").input_value(),
        "sink": second.evaluate("e => e.dataset.sinkId"),
    }
    r["frontend"] = stats()["frontend"]
    out["live"] = r


# --- the diff ------------------------------------------------------------------------------------


def test_diff_shows_the_dollar_amounts_as_text(views: dict[str, Any]) -> None:
    from realtime_nb.storage.recording import Recording

    costs = [f"${Recording.import_file(p).summary()['cost_usd']:.4f}" for p in (REC_A, REC_B)]
    assert costs[0] != costs[1], f"the two recordings must cost differently: {costs}"
    d = views["diff"]
    assert d["mathjax"] == 0, "MathJax typeset part of the diff"
    for amount in costs:
        assert amount in d["text"], f"{amount} is not on the page: {d['text'][:600]!r}"


def test_diff_lines_are_left_aligned_and_monospace(views: dict[str, Any]) -> None:
    styles = views["diff"]["styles"]
    # The unified diff of the instructions: the line removed and the line added.
    for line in ("Answer in two or three words.", "Use the get_weather tool"):
        holders = [s for s in styles if line in s["own"]] or [
            s for s in styles if line in s["text"]
        ]
        assert holders, f"the diff line {line!r} is not on the page"
        innermost = holders[-1]
        assert innermost["align"] in ALIGNED_LEFT, innermost
        assert MONOSPACE.search(innermost["font"]), innermost
    # Every table cell and block of text reads from the left (numbers may align right).
    cells = [s for s in styles if s["tag"] in ("td", "th", "pre", "li", "p")]
    assert cells
    wrong = [s for s in cells if s["align"] not in ALIGNED_LEFT and "num" not in s["cls"]]
    assert not wrong, wrong[:5]


# --- the recording -------------------------------------------------------------------------------


def test_recording_output_is_small_with_no_audio_inlined(views: dict[str, Any]) -> None:
    rec = views["recording"]
    print(f"recording output: {len(rec['html'])} B on the page, {len(rec['saved'])} B saved")
    assert len(rec["html"]) < MAX_RECORDING_OUTPUT
    assert len(rec["saved"]) < MAX_RECORDING_OUTPUT
    assert "data:audio" not in rec["html"] and "data:audio" not in rec["saved"]
    assert rec["mathjax"] == 0


def test_recording_table_reads_from_the_left(views: dict[str, Any]) -> None:
    cells = [s for s in views["recording"]["styles"] if s["tag"] in ("td", "th", "pre")]
    assert cells
    wrong = [s for s in cells if s["align"] not in ALIGNED_LEFT and "num" not in s["cls"]]
    assert not wrong, wrong[:5]


# --- the replay ----------------------------------------------------------------------------------


def test_replay_timeline_has_labelled_markers(views: dict[str, Any]) -> None:
    from realtime_nb.debugging.replay import ReplayData
    from realtime_nb.widget.replay import markers

    r = views["replay"]
    want = markers(ReplayData(DEMO))
    # Every marker is on the strip, with its label (or, in a crowd, in its tooltip).
    assert [(m["kind"], m["title"].split(" at ")[0]) for m in r["markers"]] == [
        (k, lab) for _, k, lab, _ in want
    ]
    labels = {m["label"] for m in r["markers"] if m["visible"]}
    for label in ("user 1", "assistant 1", "get_weather()", "response 1"):
        assert label in labels, f"{label!r} is not readable on the timeline ({labels})"


def test_replay_plays_at_half_speed_and_says_who_is_speaking(views: dict[str, Any]) -> None:
    r = views["replay"]
    assert r["speeds"] == [0.5, 1, 1.5, 2]
    print("0.5x: timeline s per wall s", r["rate_half"])
    assert r["speed_ds"] == "0.5"
    assert 0.35 < r["rate_half"] < 0.65
    assert r["speaking_mid_speech"], r["speaking_text"]
    assert "(speaking…)" in r["speaking_text"]
    assert "(speaking…)" not in r["final_text"]


# --- the live widget -----------------------------------------------------------------------------


def test_header_shows_the_recording_file_and_the_offline_backend(views: dict[str, Any]) -> None:
    live = views["live"]
    assert live["recording"] == "● recording to views.arrow"
    assert live["recording_title"].endswith("views.arrow")
    assert "local" in live["backend"] and "rtnb-offline" in live["backend_class"]


def test_events_tab_has_no_null(views: dict[str, Any]) -> None:
    rows = views["live"]["event_rows"]
    assert len(rows) >= 5
    assert any("response.created" in r for r in rows), rows
    assert any("item_" in r for r in rows), f"no row carries an item id: {rows}"
    bad = [r for r in rows if re.search(r"null|undefined", r)]
    assert not bad, bad[:5]


def test_device_selectors_list_the_fake_devices(views: dict[str, Any]) -> None:
    live = views["live"]
    inputs = [label for _, label in live["inputs"]]
    outputs = [label for _, label in live["outputs"]]
    assert inputs == ["Fake Default Audio Input", "Fake Audio Input 1", "Fake Audio Input 2"]
    assert outputs[:2] == ["Fake Default Audio Output", "Fake Audio Output 1"]
    assert live["output_enabled"], "chromium can choose the output (AudioContext.setSinkId)"


def test_switching_the_mic_mid_session_keeps_the_stream_whole(views: dict[str, Any]) -> None:
    mic = views["live"]["mic"]
    got = mic["after"]["chunks"] - mic["before"]["chunks"]
    print("mic chunks in", round(mic["s"], 2), "s after the switch:", got)
    # 50 ms chunks: ~40 in 2 s; a loaded machine may deliver fewer, never none.
    assert got >= 10
    assert mic["after"]["gaps"] == 0 and mic["after"]["duplicates"] == 0
    assert mic["frontend"] == []


def test_device_choices_are_remembered_by_the_browser(views: dict[str, Any]) -> None:
    live = views["live"]
    wanted_in, wanted_out = live["wanted"]
    stored = [json.loads(s) for s in live["stored"]]
    assert stored == [
        {"id": wanted_in, "label": "Fake Audio Input 1"},
        {"id": wanted_out, "label": "Fake Audio Output 1"},
    ]
    assert live["second"] == {"input": wanted_in, "output": wanted_out, "sink": wanted_out}
    assert live["frontend"] == []


def test_screenshots_of_each_view(views: dict[str, Any]) -> None:
    for name in SHOTS:
        path: Path = views["shots"][name]
        assert path.stat().st_size > 5_000, name
    assert not [c for c in views["console"] if "realtime_nb" in c and "warn" in c.lower()]
