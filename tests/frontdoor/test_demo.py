"""``realtime-nb demo``, the demo recording, and the stand-in model that makes tools get called."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_nb.frontdoor.demo import DEMO_WAV, ToolWordsResponder, run_demo
from realtime_nb.local.responders import FunctionCall, ResponseRequest, TextReply
from realtime_nb.storage.recording import Recording

from .conftest import DEMO_RECORDING, KEY_VARIABLES, REPO

#: The recording the replay notebook uses must stay small enough to ship in the repository.
MAX_DEMO_BYTES = 2_000_000


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# --- the stand-in model ----------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": []},
}
BOOK = {
    "type": "function",
    "name": "book_table",
    "parameters": {
        "type": "object",
        "properties": {"guests": {"type": "integer"}, "time": {"type": "string"}},
        "required": ["guests"],
    },
}


def user(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("What's the weather in Paris?", FunctionCall("get_weather", '{"city": "Paris"}')),
        ("weather like in sentences to california.", FunctionCall("get_weather", '{"city": "california"}')),
        ("Any weather news", FunctionCall("get_weather", "{}")),
        ("WEATHERS in Oslo, please", FunctionCall("get_weather", '{"city": "Oslo"}')),
    ],
)  # fmt: skip
def test_tool_words_responder_calls_named_tools(text: str, call: FunctionCall) -> None:
    out = ToolWordsResponder().respond(ResponseRequest(items=(user(text),), tools=(WEATHER,)))
    assert out == [call]


def test_tool_words_responder_otherwise_echoes() -> None:
    r = ToolWordsResponder()
    # Not named, not offered, tool_choice none, or a required non-string argument: words instead.
    assert r.respond(ResponseRequest(items=(user("hello"),), tools=(WEATHER,))) == [
        TextReply("You said: hello")
    ]
    assert r.respond(ResponseRequest(items=(user("weather in Oslo"),))) == [
        TextReply("You said: weather in Oslo")
    ]
    assert r.respond(
        ResponseRequest(items=(user("weather in Oslo"),), tools=(WEATHER,), tool_choice="none")
    ) == [TextReply("You said: weather in Oslo")]
    assert r.respond(ResponseRequest(items=(user("book a table at 8"),), tools=(BOOK,))) == [
        TextReply("You said: book a table at 8")
    ]
    after = (
        user("weather in Oslo"),
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    )
    assert r.respond(
        ResponseRequest(items=after, tools=(WEATHER,), instructions='Start every answer with "Hi"')
    ) == [TextReply("Hi The tool said: sunny")]


# --- the demo --------------------------------------------------------------------------------------


def test_run_demo_has_a_spoken_tool_conversation(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(record_dir=tmp_path, out=out) == 0
    text = out.getvalue()
    assert "local backend (offline, no API key needed)" in text
    assert "tool call: get_weather(" in text
    assert "tool said: {" in text
    (path,) = tmp_path.glob("*.arrow")
    rec = Recording.open(path)
    assert rec.complete
    assert rec.describe() in text  # the inspection summary is printed
    kinds = [i.type for i in rec.items]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert rec.items[0].role == "user"
    assert "weather" in rec.items[0].text.lower()
    assert json.loads(rec.items[2].text)["forecast"] == "sunny"
    assert len(rec.audio("user")) > 3 * 24_000  # the real speech was sent
    assert len(rec.audio("assistant")) > 24_000  # and an answer was spoken


def test_run_demo_missing_wav_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo(wav=tmp_path / "nope.wav", record_dir=tmp_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("realtime-nb demo: error: no such WAV file: ")
    assert not list(tmp_path.glob("*.arrow"))


@pytest.mark.slow
def test_cli_demo_offline(tmp_path: Path) -> None:
    """``realtime-nb demo`` in a fresh process with no key: the README's "run it" command."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "realtime_nb.frontdoor.cli",
            "demo",
            "--record-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "tool call: get_weather(" in proc.stdout
    assert "items:" in proc.stdout
    assert "function_call_output" in proc.stdout
    assert len(list((tmp_path / "r").glob("*.arrow"))) == 1


@pytest.mark.slow
def test_make_demo_recording_command(tmp_path: Path) -> None:
    """The command in recordings/README.md regenerates a recording like the shipped one."""
    target = tmp_path / "demo.arrow"
    cmd = [sys.executable, "-m", "realtime_nb.frontdoor.demo", "--make-demo-recording", str(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=offline_env())
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {target}" in proc.stdout
    made = Recording.open(target)
    shipped = Recording.open(DEMO_RECORDING)
    assert [i.type for i in made.items] == [i.type for i in shipped.items]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=offline_env())
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert again.stderr.count("\n") == 1


def test_shipped_demo_recording() -> None:
    assert DEMO_RECORDING.stat().st_size < MAX_DEMO_BYTES
    rec = Recording.open(DEMO_RECORDING)
    assert rec.complete
    assert rec.meta["url"].startswith("ws://127.0.0.1:")  # made with the local backend
    assert [i.type for i in rec.items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert rec.items[1].text.startswith("get_weather(")
    assert rec.duration_s > 5  # recorded at real-time pace: a call's timeline
    readme = (REPO / "recordings" / "README.md").read_text()
    assert (
        "python -m realtime_nb.frontdoor.demo --make-demo-recording recordings/demo.arrow" in readme
    )


def test_bundled_wav_and_its_license() -> None:
    import wave

    with wave.open(str(DEMO_WAV)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24_000, 1, 2)
    note = (DEMO_WAV.parent / "README.md").read_text()
    assert "MIT License" in note
    assert "openai/openai-dotnet" in note
