"""One text turn against the real OpenAI endpoint; skipped without OPENAI_API_KEY."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realtime_nb.client.session import Session
from realtime_nb.storage.recording import Recording

pytestmark = pytest.mark.network


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY")
def test_text_turn_against_openai(tmp_path: Path) -> None:
    key = os.environ["OPENAI_API_KEY"]
    with Session(
        instructions="Answer in two words.",
        output_modalities="text",
        record=tmp_path / "openai.arrow",
    ) as s:
        assert s.backend == "OpenAI gpt-realtime"
        s.send_text("Say hello.")
        done = s.wait_for("response.done", 60)
        assert done.data["response"]["status"] == "completed"
        assert s.cost.total is not None
        path = s.recording_path
    assert path is not None
    assert key.encode() not in path.read_bytes()
    assert Recording.open(path).state.responses
