"""The scripted caller: text lines spoken by the local TTS into a recording that re-drives."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_nb.corpus import Corpus, Line, scripted_call
from realtime_nb.debugging.redrive import plan_turns

pytestmark = pytest.mark.slow


def test_lines_with_a_pause_and_a_barge_in(tmp_path: Path) -> None:
    rec = scripted_call(
        [
            "Please tell me a long story about the weather.",
            Line("Stop, thank you.", barge_in_ms=200),
            Line("Goodbye.", pause_ms=600),
        ],
        record=tmp_path / "call.arrow",
    )
    st = rec.state
    assert rec.meta["scripted"]["lines"][1]["barge_in_ms"] == 200
    turns = plan_turns(st)
    assert [t.kind for t in turns] == ["audio", "audio", "audio"]
    # Each user turn holds the synthesised speech (about a second or more of it).
    assert all(len(t.audio or b"") > 24_000 for t in turns)
    # The second line was said while the first answer was playing: that answer was cut.
    statuses = [r.status for r in st.responses.values()]
    assert statuses[0] == "cancelled" and statuses[-1] == "completed"
    c = Corpus([tmp_path / "call.arrow"], cache=False)
    assert c.turns.column("interrupted").to_pylist()[0] is True
    # It re-drives like any recording.
    new = c.redrive(instructions="Be brief.", record=tmp_path / "out", progress=False)
    assert new.report is not None and not new.report.failed
    assert new.sessions.column("turns").to_pylist() == [3]


def test_bad_scripts_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one line"):
        scripted_call([], record=tmp_path / "x.arrow")
    with pytest.raises(TypeError, match="line 1 is a int; a script is a list of str or Line"):
        scripted_call(["hi", 3], record=tmp_path / "x.arrow")  # type: ignore[list-item]  # the error is the point
    with pytest.raises(ValueError, match="pause_ms must be a non-negative integer"):
        Line("hi", pause_ms=-5)
    with pytest.raises(ValueError, match="needs some text"):
        Line("  ")
