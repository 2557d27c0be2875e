"""What a tool can do to the session, bounded: a synchronous tool that never returns does not keep
Python from exiting, and an output too long for the model is cut, with a note the model reads and
a warning the user sees."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from realtime_nb.client.protocol import ClientProtocol
from realtime_nb.core.protocol import Source
from realtime_nb.core.tools import MAX_TOOL_OUTPUT_CHARS, ToolCall, cap_output, tool
from realtime_nb.storage.recording import Recording
from tests.conftest import REPO

from .session_constants import KEY

TIMEOUT = 20.0
#: The note the model reads after a cut output.
NOTE = "\n[output cut: {kept} of {total} characters]"


def test_cap_output_keeps_short_outputs_and_cuts_long_ones_with_a_note() -> None:
    exact = "x" * MAX_TOOL_OUTPUT_CHARS
    assert cap_output(exact) is exact
    assert cap_output("") == ""
    long = "y" * (MAX_TOOL_OUTPUT_CHARS + 1)
    assert cap_output(long) == "y" * MAX_TOOL_OUTPUT_CHARS + NOTE.format(
        kept=MAX_TOOL_OUTPUT_CHARS, total=MAX_TOOL_OUTPUT_CHARS + 1
    )
    assert cap_output("abcdef", limit=4) == "abcd" + NOTE.format(kept=4, total=6)


def test_the_protocol_sends_and_records_the_cut_output_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proto = ClientProtocol()
    call = ToolCall(call_id="call_1", name="dump", arguments="{}", item_id=None, response_id=None)
    proto.tool_done(call, "z" * 100_000, 12.0)
    records = proto.events_to_record()
    assert [r["type"] for r in records] == ["local.tool.output_cut", "local.tool.finished"]
    assert records[0] == {"type": "local.tool.output_cut", "call_id": "call_1", "name": "dump",
                          "sent_chars": MAX_TOOL_OUTPUT_CHARS, "total_chars": 100_000}  # fmt: skip
    output = records[1]["output"]
    assert output.endswith(NOTE.format(kept=MAX_TOOL_OUTPUT_CHARS, total=100_000))
    assert len(output) < MAX_TOOL_OUTPUT_CHARS + 100
    assert "tool dump returned 100000 characters" in caplog.text
    call2 = ToolCall(call_id="call_2", name="dump", arguments="{}", item_id=None, response_id=None)
    proto.tool_done(call2, "short", 1.0)
    assert [r["type"] for r in proto.events_to_record()] == ["local.tool.finished"]


def test_a_huge_output_reaches_the_model_cut(
    local_server: Callable[..., Any],
    session: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = 20_000_000

    @tool
    def dump() -> str:
        """Returns 20 MB of text."""
        return "x" * total

    srv = local_server(
        responder="rules", rules=[{"pattern": "dump", "call": "dump", "arguments": {}}]
    )
    s = session(srv, tools=[dump], output_modalities="text")
    s.send_text("dump it")
    s.wait_until_idle(TIMEOUT)
    assert s.status == "connected"
    sent = "x" * MAX_TOOL_OUTPUT_CHARS + NOTE.format(kept=MAX_TOOL_OUTPUT_CHARS, total=total)
    # The model side: the server's copy of the item, and the answer its model gave from it.
    assert s.conversation.items[-1].text == f"The tool said: {sent}"
    assert f"tool dump returned {total} characters" in caplog.text
    path = s.recording_path
    s.close()
    rec = Recording.open(path)
    server_copy = [
        e.data["item"]["output"]
        for e in rec.events
        if e.source is Source.SERVER
        and e.type == "conversation.item.added"
        and e.data["item"]["type"] == "function_call_output"
    ]
    assert server_copy == [sent]
    (cut,) = [e.data for e in rec.events if e.type == "local.tool.output_cut"]
    assert (cut["sent_chars"], cut["total_chars"]) == (MAX_TOOL_OUTPUT_CHARS, total)
    (finished,) = [e.data for e in rec.events if e.type == "local.tool.finished"]
    assert finished["output"] == sent and finished["error"] is None


_SCRIPT = textwrap.dedent(
    """
    import time

    from realtime_nb.client.session import Session
    from realtime_nb.core.tools import tool
    from realtime_nb.local import LocalServer

    @tool(timeout=0.5)
    def slow() -> str:
        \"\"\"Sleeps far longer than its timeout.\"\"\"
        time.sleep(30)
        return "late"

    rules = [{"pattern": "slow", "call": "slow", "arguments": {}}]
    with LocalServer(fast=True, api_key=KEY, responder="rules", rules=rules) as srv:
        s = Session(url=srv.url, api_key=KEY, tools=[slow], output_modalities="text",
                    record=False)
        s.send_text("be slow")
        s.wait_until_idle(20)
        assert any("did not finish within 0.5 s" in e.message for e in s.errors), s.errors
        s.close()
    print(time.time(), flush=True)
    """
)


@pytest.mark.parametrize("close", [True, False], ids=["closed", "left-open"])
def test_a_timed_out_sync_tool_does_not_hold_the_process_at_exit(close: bool) -> None:
    script = f"KEY = {KEY!r}\n" + _SCRIPT
    if not close:  # the session is left for the atexit handler to close
        script = script.replace("        s.close()\n", "")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    exited = time.time()
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = float(proc.stdout.strip().splitlines()[-1])
    # The tool still sleeps for ~29 s when the script ends: the interpreter must not wait.
    assert exited - done < 5.0, f"the process took {exited - done:.1f} s to exit"


def test_sync_tools_run_on_daemon_threads(
    local_server: Callable[..., Any], session: Callable[..., Any]
) -> None:
    seen: list[threading.Thread] = []

    @tool
    def where() -> str:
        """Reports its thread."""
        seen.append(threading.current_thread())
        return "here"

    srv = local_server(
        responder="rules", rules=[{"pattern": "where", "call": "where", "arguments": {}}]
    )
    s = session(srv, tools=[where], output_modalities="text")
    s.send_text("where are you")
    s.wait_until_idle(TIMEOUT)
    (thread,) = seen
    assert thread.daemon and thread.name == "realtime_nb-tool-where"
