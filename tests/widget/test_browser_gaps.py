"""The live widget's paths the end-to-end test does not take, in a real JupyterLab and chromium.

- push-to-talk, with the button held and with the Space key held: commit and respond on release;
- settings edited on the page (instructions, voice, turn detection) -> ``session.update``;
- a ``@tool`` called through the local server's rules responder: the Tools tab shows the name,
  the arguments and the result; the Turns tab the turns with their latency;
- an insecure context (JupyterLab opened at ``http://rtnb.test:PORT``): no microphone API, the
  widget says so and why, and text input still gets a reply.

``pytest -m browser tests/widget/test_browser_gaps.py`` (about 40 s).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from . import lab as L

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NEW_INSTRUCTIONS = 'Start every answer with "Ahoy". Be brief.'
NEW_VOICE = "verse"

MAIN = [
    """\
import os
from realtime_nb import Session, tool
from realtime_nb.local.server import LocalServer

@tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.

    Args:
        city: the city.
    \"\"\"
    return f"foggy in {city}"

RULES = [{"pattern": r"weather in (?P<city>[A-Za-z]+)", "call": "get_weather",
          "arguments": {"city": "{city}"}}]
srv = LocalServer("rules", rules=RULES, fast=True).start()
session = Session(url=srv.url, record=os.environ["RTNB_GAPS_RECORDING"], tools=[get_weather],
                  turn_detection=None, voice="alloy")
# The mic over the comm (no lane): the path a page on another machine than the kernel takes.
from realtime_nb.widget import RealtimeWidget
w = RealtimeWidget(session, lane=False)
w
"""
]
INSECURE = [
    """\
import os
from realtime_nb import Session
from realtime_nb.local.server import LocalServer
srv = LocalServer(fast=True).start()
session = Session(url=srv.url, record=os.environ["RTNB_GAPS_RECORDING_2"])
w = session.widget()
w
"""
]


@pytest.fixture(scope="module")
def gaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reason = L.missing()
    if reason:
        L.unavailable(reason)
    from playwright.sync_api import sync_playwright

    from realtime_nb.storage.recording import Recording

    tmp = tmp_path_factory.mktemp("gaps")
    rec1, rec2 = tmp / "main.arrow", tmp / "insecure.arrow"
    env = {"RTNB_GAPS_RECORDING": str(rec1), "RTNB_GAPS_RECORDING_2": str(rec2)}
    out: dict[str, Any] = {}
    with (
        L.jupyterlab(tmp, MAIN, env, notebooks={"insecure.ipynb": INSECURE}) as lab,
        sync_playwright() as pw,
    ):
        browser, page = L.open_notebook(pw, lab)
        try:
            _main_scenario(page, lab, out)
        finally:
            out["screenshot"] = tmp / "gaps.png"
            page.locator(".rtnb-root").screenshot(path=str(out["screenshot"]))
            browser.close()
        browser, page = L.open_notebook(pw, lab, name="insecure.ipynb", insecure=True)
        try:
            _insecure_scenario(page, out)
        finally:
            browser.close()
    out["rec"] = Recording.open(rec1)
    out["rec2"] = Recording.open(rec2)
    return out


def _count(page: Any, selector: str) -> int:
    return int(page.eval_on_selector_all(selector, "ns => ns.length"))


def _wait_assistant_done(page: Any, at_least: int, timeout: float = 30_000) -> None:
    """Wait until ``at_least`` assistant items are shown and none is still in progress."""
    page.wait_for_function(
        f"""() => {{
            const ns = [...document.querySelectorAll('.rtnb-root .rtnb-item.rtnb-assistant')];
            return ns.length >= {at_least} && ns.every(n => !n.textContent.endsWith('…'));
        }}""",
        timeout=timeout,
    )


def _main_scenario(page: Any, lab: L.Lab, out: dict[str, Any]) -> None:
    page.wait_for_selector(".rtnb-root", timeout=90_000)
    page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=30_000)
    page.wait_for_selector(".rtnb-root.rtnb-ptt", timeout=10_000)
    out["ptt_label"] = page.inner_text(".rtnb-mic")
    kc = lab.kernel_client()

    # 0. Settings edited on the page before anyone spoke: instructions and voice.
    page.click(".rtnb-tab:has-text('Settings')")
    page.fill(".rtnb-instructions", NEW_INSTRUCTIONS)
    page.select_option(".rtnb-voice", NEW_VOICE)
    page.click(".rtnb-apply")
    page.wait_for_function(
        f"() => document.querySelector('.rtnb-voice').value === '{NEW_VOICE}'"
        " && document.querySelector('.rtnb-instructions').value.startsWith('Start every')",
        timeout=15_000,
    )
    out["settings_1"] = json.loads(
        L.run(
            kc,
            "import json, time\n"
            f"for _ in range(100):\n    if w.settings.get('voice') == '{NEW_VOICE}': break\n"
            "    time.sleep(0.1)\nprint(json.dumps(w.settings))",
        )
    )
    page.click(".rtnb-tab:has-text('Transcript')")

    # 1. Push-to-talk with the button: hold it 2 s (the fake mic says "what's the weather").
    box = page.locator(".rtnb-mic").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.wait_for_selector(".rtnb-mic.rtnb-live", timeout=10_000)
    out["label_while_held"] = page.inner_text(".rtnb-mic")
    page.wait_for_timeout(2000)
    page.mouse.up()
    page.wait_for_selector(".rtnb-item.rtnb-user", timeout=30_000)
    _wait_assistant_done(page, 1)
    out["after_button"] = json.loads(
        L.run(
            kc,
            "import json; print(json.dumps({'commits': sum(1 for e in list(w._event_log) "
            "if e['type'] == 'input_audio_buffer.commit')}))",
        )
    )

    # 2. Push-to-talk with the Space key held on the widget.
    page.focus(".rtnb-root")
    page.keyboard.down("Space")
    page.wait_for_selector(".rtnb-mic.rtnb-live", timeout=10_000)
    page.wait_for_timeout(1500)
    page.keyboard.up("Space")
    page.wait_for_function(
        "() => document.querySelectorAll('.rtnb-root .rtnb-item.rtnb-user').length >= 2",
        timeout=30_000,
    )
    _wait_assistant_done(page, 2)

    # 3. A tool call: typed, matched by the rules responder, run in the kernel, answered.
    page.fill(".rtnb-textinput", "what is the weather in Paris")
    page.press(".rtnb-textinput", "Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rtnb-root .rtnb-item.rtnb-assistant')]"
        ".some(n => n.textContent.includes('foggy in Paris'))",
        timeout=30_000,
    )
    page.click(".rtnb-tab:has-text('Tools')")
    page.wait_for_selector(".rtnb-toolcard", timeout=10_000)
    card = page.locator(".rtnb-toolcard").first
    out["tool_name"] = card.locator(".rtnb-toolname").inner_text()
    pres = card.locator("pre").all_inner_texts()
    out["tool_pres"] = pres
    page.click(".rtnb-tab:has-text('Turns')")
    out["turn_rows"] = page.eval_on_selector_all(
        ".rtnb-turns tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
    )

    # 4. Settings again, after the assistant spoke: hands-free with semantic VAD (the voice is
    #    left alone, so it is not sent), then a new voice, which the API refuses now.
    page.click(".rtnb-tab:has-text('Settings')")
    page.select_option(".rtnb-vad", "semantic_vad")
    page.click(".rtnb-apply")
    page.wait_for_function(
        "() => document.querySelector('.rtnb-mode').value === 'semantic_vad'", timeout=15_000
    )
    out["mode_trait"] = L.run(kc, "print(w.mode)").strip()
    out["mic_label_after"] = page.inner_text(".rtnb-mic")
    page.select_option(".rtnb-voice", "sage")
    page.click(".rtnb-apply")
    page.wait_for_function(
        "() => document.querySelector('.rtnb-notice').textContent.includes('voice cannot change')",
        timeout=15_000,
    )
    out["voice_notice"] = page.inner_text(".rtnb-notice")
    # And the next answer follows the instructions set in step 0.
    page.click(".rtnb-tab:has-text('Transcript')")
    page.fill(".rtnb-textinput", "hello again")
    page.press(".rtnb-textinput", "Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rtnb-root .rtnb-item.rtnb-assistant')]"
        ".some(n => n.textContent.includes('Ahoy You said: hello again'))",
        timeout=30_000,
    )
    out["frontend_log"] = json.loads(L.run(kc, "import json; print(json.dumps(w.frontend_log))"))
    L.run(kc, "session.close(); srv.stop()")


def _insecure_scenario(page: Any, out: dict[str, Any]) -> None:
    page.wait_for_selector(".rtnb-root", timeout=90_000)
    page.wait_for_selector(".rtnb-dot.rtnb-connected", timeout=30_000)
    out["secure_context"] = page.evaluate("() => window.isSecureContext")
    out["has_media_devices"] = page.evaluate(
        "() => !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)"
    )
    out["insecure_notice"] = page.inner_text(".rtnb-notice")
    out["insecure_mic_disabled"] = page.eval_on_selector(".rtnb-mic", "b => b.disabled")
    out["insecure_mic_label"] = page.inner_text(".rtnb-mic")
    page.fill(".rtnb-textinput", "hello from far away")
    page.press(".rtnb-textinput", "Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.rtnb-root .rtnb-item.rtnb-assistant')]"
        ".some(n => n.textContent.includes('You said: hello from far away'))",
        timeout=30_000,
    )
    out["insecure_reply"] = True


# --- assertions --------------------------------------------------------------------------------


def _client(rec: Any, etype: str) -> list[Any]:
    return [
        e
        for e in rec.events
        if e.type == etype and str(getattr(e.source, "value", e.source)) == "client"
    ]


def test_push_to_talk_commits_and_responds_on_release(gaps: dict[str, Any]) -> None:
    rec = gaps["rec"]
    assert gaps["ptt_label"].strip().endswith("Hold to talk")
    assert "Talking" in gaps["label_while_held"]
    assert gaps["after_button"]["commits"] == 1, "the button press alone committed once"
    commits = _client(rec, "input_audio_buffer.commit")
    assert len(commits) == 2, "one commit per press (button, then Space)"
    creates = _client(rec, "response.create")
    # Each release: the commit, then a response.create right after it (before any other commit).
    for c in commits:
        nxt = [
            e
            for e in rec.events
            if e.seq > c.seq and e.type in ("response.create", "input_audio_buffer.commit")
        ]
        assert nxt and nxt[0].type == "response.create", c.seq
    assert len(creates) >= 2
    # Audio went up only while held: each commit came after appends of at least ~1 s of audio.
    appends = _client(rec, "input_audio_buffer.append")
    before_first = sum(len(e.audio or b"") for e in appends if e.seq < commits[0].seq)
    assert before_first >= 24_000 * 2 * 1.0
    # Both presses got an answer: two user audio items, each followed by an assistant reply.
    users = [i for i in rec.state.items if i.role == "user" and i.audio_part() is not None]
    assert len(users) == 2
    replies = [i for i in rec.state.items if i.role == "assistant" and i.text]
    assert len(replies) >= 2
    assert gaps["frontend_log"] == []


def test_settings_edits_send_session_update(gaps: dict[str, Any]) -> None:
    updates = [e.data["session"] for e in _client(gaps["rec"], "session.update")]
    # The first update is the session's own configuration; then one per Apply, each with only
    # what was changed on the page.
    first, second, third = updates[1:]
    assert first["instructions"] == NEW_INSTRUCTIONS
    assert first["audio"]["output"]["voice"] == NEW_VOICE
    assert "turn_detection" not in first.get("audio", {}).get("input", {})
    assert gaps["settings_1"]["voice"] == NEW_VOICE
    assert gaps["settings_1"]["instructions"] == NEW_INSTRUCTIONS
    assert second["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    assert "voice" not in second["audio"].get("output", {}) and "instructions" not in second
    assert gaps["mode_trait"] == "semantic_vad"
    assert "Hold" not in gaps["mic_label_after"], "hands-free now: the button toggles the mic"
    assert third["audio"]["output"]["voice"] == "sage"
    errors = [e.data["error"]["code"] for e in gaps["rec"].events if e.type == "error"]
    # Typing a message cancels the answer in progress; when that answer ends just as the cancel
    # leaves, the server says there was none (the protocol's own race, kept in the recording).
    errors = [c for c in errors if c != "response_cancel_not_active"]
    assert errors == ["cannot_update_voice"]
    assert "voice cannot change once the assistant has spoken" in gaps["voice_notice"]


def test_tools_tab_shows_name_arguments_and_result(gaps: dict[str, Any]) -> None:
    assert gaps["tool_name"].startswith("get_weather")
    args, result = gaps["tool_pres"][0], gaps["tool_pres"][1]
    assert json.loads(args) == {"city": "Paris"}
    assert "The weather in a city" not in result
    assert "foggy in Paris" in result
    finished = [e.data for e in gaps["rec"].events if e.type == "local.tool.finished"]
    assert [f["name"] for f in finished] == ["get_weather"]


def test_turns_tab_lists_turns_with_latency(gaps: dict[str, Any]) -> None:
    rows = gaps["turn_rows"]
    assert rows[0][0] == "turn"
    body = rows[1:]
    assert len(body) >= 2
    assert any(r[1].endswith(" ms") for r in body), body


def test_insecure_context_says_why_and_text_still_works(gaps: dict[str, Any]) -> None:
    assert gaps["secure_context"] is False
    assert gaps["has_media_devices"] is False
    notice = gaps["insecure_notice"]
    assert "Microphone unavailable" in notice
    assert "not a secure context" in notice and "https://" in notice
    assert "Text input still works" in notice
    assert gaps["insecure_mic_disabled"] is True
    assert "No mic" in gaps["insecure_mic_label"]
    assert gaps["insecure_reply"]
    texts = [i.text for i in gaps["rec2"].state.items if i.role == "user"]
    assert texts == ["hello from far away"]
