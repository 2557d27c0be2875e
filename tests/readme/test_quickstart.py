"""The README's quickstart runs as written (on the embedded local backend)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO


def _quickstart() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    return code


def test_quickstart_is_short_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _quickstart()
    assert len(code.splitlines()) < 15
    monkeypatch.chdir(tmp_path)  # recordings/ goes here
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ns: dict[str, object] = {}
    exec(compile(code, "README quickstart", "exec"), ns)
    s = ns["s"]
    s.close()  # type: ignore[attr-defined]  # ns values are typed object
    rec = __import__("realtime_nb").Recording.open(s.recording_path)  # type: ignore[attr-defined]  # ns values are typed object
    assert rec.complete
    call = next(i for i in rec.state.items if i.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    outputs = [i.output for i in rec.state.items if i.type == "function_call_output"]
    assert outputs and "It is sunny in Paris" in outputs[0]
    assert rec.state.items[-1].role == "assistant" and "sunny" in rec.state.items[-1].text
    assert str(s.recording_path).startswith("recordings")
