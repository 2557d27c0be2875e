"""``%realtime`` / ``%%realtime`` through a real IPython shell, against the embedded local backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from realtime_nb.frontdoor.demo import DEMO_WAV, say
from realtime_nb.frontdoor.magic import LOCAL_NO_KEY_LABEL, RealtimeMagics

from .conftest import DEMO_RECORDING, REPO

WEATHER_TOOL = '''
import realtime_nb

@realtime_nb.tool
def get_weather(city: str = "Paris") -> str:
    """Today's weather."""
    return f"sunny in {city}"
'''


OPTIONS = ("model", "voice", "vad", "record", "url", "local", "fast", "transcribe", "variable")


def options(ip: Any) -> dict[str, Any]:
    return {name: getattr(magics(ip), name) for name in OPTIONS}


def magics(ip: Any) -> RealtimeMagics:
    m = ip.magics_manager.registry["RealtimeMagics"]
    assert isinstance(m, RealtimeMagics)
    return m


def run(ip: Any, code: str) -> None:
    result = ip.run_cell(code)
    result.raise_error()


def is_answer(ev: Any) -> bool:
    return any(o.get("type") == "message" for o in ev.data["response"].get("output") or [])


def ask(session: Any, text: str) -> str:
    """Send ``text``; the text of the final assistant message (after any tool call)."""
    session.send_text(text)
    session.wait_for("response.done", timeout=30, where=is_answer)
    session.wait_until_idle(timeout=30)
    assistant = [i for i in session.conversation.items if i.role == "assistant"]
    return str(assistant[-1].text)


# --- loading ---------------------------------------------------------------------------------------


def test_load_registers_magics_and_config(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    mm = ip.magics_manager
    assert "realtime" in mm.magics["line"]
    assert "realtime" in mm.magics["cell"]
    ip.run_line_magic("config", "")
    assert "RealtimeMagics" in capsys.readouterr().out
    ip.run_line_magic("config", "RealtimeMagics")
    help_text = capsys.readouterr().out
    for option in ("model", "voice", "vad", "record", "url", "local", "fast", "variable"):
        assert f"RealtimeMagics.{option}" in help_text


def test_unload_closes_sessions_and_removes_magics(ip: Any) -> None:
    ip.run_line_magic("realtime", "")
    session = ip.user_ns["rt"]
    assert session.status == "connected"
    ip.run_line_magic("unload_ext", "realtime_nb")
    assert session.status == "closed"
    assert "realtime" not in ip.magics_manager.magics["line"]
    assert "realtime" not in ip.magics_manager.magics["cell"]
    assert not any(isinstance(c, RealtimeMagics) for c in ip.configurables)
    ip.run_line_magic("load_ext", "realtime_nb")  # the fixture unloads it again


# --- opening a session -----------------------------------------------------------------------------


def test_line_magic_opens_local_session_with_widget_and_notebook_tools(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, WEATHER_TOOL)
    ip.run_line_magic("realtime", "")
    session = ip.user_ns["rt"]
    assert session.status == "connected"
    assert set(session.tools) == {"get_weather"}
    assert session.recording_path is not None
    assert session.recording_path.parent == tmp_path / "rec"
    live = magics(ip)._live["rt"]
    assert live.widget.backend == LOCAL_NO_KEY_LABEL  # the widget says it is the local backend
    # The offline notice is information (stdout), not a pink stderr box in Jupyter.
    out, err = capsys.readouterr()
    assert "no OPENAI_API_KEY" in out
    assert "no OPENAI_API_KEY" not in err
    answer = ask(session, "What is the weather in Oslo?")
    assert answer == "The tool said: sunny in Oslo"
    calls = [i for i in session.conversation.items if i.type == "function_call"]
    assert [c.text for c in calls] == ['get_weather({"city": "Oslo"})']


def test_spoken_turn_calls_notebook_tool(ip: Any) -> None:
    """Real speech through server VAD, STT, the stand-in model, the tool and TTS."""
    run(ip, WEATHER_TOOL)
    ip.run_line_magic("realtime", "--vad server")
    session = ip.user_ns["rt"]
    say(session, DEMO_WAV)
    items = session.snapshot().items
    kinds = [i.type for i in items]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert "weather" in items[0].text.lower()
    assert items[2].text.startswith("sunny in ")
    assert items[3].role == "assistant"


def test_options_reach_the_session(ip: Any, tmp_path: Path) -> None:
    ip.run_line_magic("realtime", "--voice marin --vad off --no-record --as talk")
    session = ip.user_ns["talk"]
    assert "rt" not in ip.user_ns
    assert session.recording_path is None
    session.wait_for("session.updated", timeout=10)
    st = session.snapshot().session
    assert st["audio"]["output"]["voice"] == "marin"
    assert st["audio"]["input"]["turn_detection"] is None


def test_line_magic_rerun_replaces_the_session(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("realtime", "")
    first = ip.user_ns["rt"]
    ip.run_line_magic("realtime", "")
    second = ip.user_ns["rt"]
    assert second is not first
    assert first.status == "closed"
    assert second.status == "connected"
    assert "closed the previous session rt" in capsys.readouterr().out


def test_local_flag_and_url_option(ip: Any) -> None:
    from realtime_nb.frontdoor.demo import local_backend

    ip.run_line_magic("realtime", "--local --no-record")
    assert "local" in magics(ip)._live["rt"].widget.backend
    url = local_backend(fast=True).url
    ip.run_line_magic("realtime", f"--url {url} --no-record --as other")
    other = ip.user_ns["other"]
    assert other.status == "connected"
    assert other.backend.startswith("local server at 127.0.0.1")
    assert not magics(ip)._live["other"].local


# --- the variable the session is bound to ---------------------------------------------------------


def test_a_name_the_user_has_is_never_overwritten(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's ``import realtime_nb as rt``, then ``%realtime``: ``rt`` stays the module."""
    import realtime_nb

    run(ip, "import realtime_nb as rt")
    ip.run_line_magic("realtime", "--no-record")
    assert ip.user_ns["rt"] is realtime_nb
    session = ip.user_ns["rt2"]
    assert session.status == "connected"
    out = capsys.readouterr().out
    assert (
        "session bound to rt2 (rt holds the module realtime_nb; --name NAME chooses another)" in out
    )
    run(ip, f"rec = rt.Recording.open({str(DEMO_RECORDING)!r})")  # the README's next line
    # Re-running rebinds the magic's own session, not a third name.
    ip.run_line_magic("realtime", "--no-record")
    assert ip.user_ns["rt"] is realtime_nb
    assert ip.user_ns["rt2"] is not session
    assert session.status == "closed"
    assert "rt3" not in ip.user_ns
    assert "closed the previous session rt2" in capsys.readouterr().out


def test_free_name_is_bound_and_said(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("realtime", "--no-record")
    assert "session bound to rt\n" in capsys.readouterr().out


def test_cell_magic_rerun_updates_when_rt_is_taken(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "rt = 'mine'")
    ip.run_cell_magic("realtime", "--no-record", "Be brief.")
    session = ip.user_ns["rt2"]
    ip.run_cell_magic("realtime", "--no-record", "Be briefer.")
    assert ip.user_ns["rt2"] is session
    assert ip.user_ns["rt"] == "mine"
    assert "rt2: updated the live session" in capsys.readouterr().out


def test_name_option_chooses_the_variable(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("realtime", "--no-record --name bot")
    first = ip.user_ns["bot"]
    assert "rt" not in ip.user_ns
    assert "session bound to bot\n" in capsys.readouterr().out
    ip.run_line_magic("realtime", "--no-record --name bot")  # its own session: replaced
    assert ip.user_ns["bot"] is not first
    assert first.status == "closed"


def test_name_option_replaces_a_session_the_user_opened(ip: Any) -> None:
    run(ip, "import realtime_nb\nmine = realtime_nb.Session(record=False)")
    theirs = ip.user_ns["mine"]
    try:
        ip.run_line_magic("realtime", "--no-record --name mine")
        assert ip.user_ns["mine"] is not theirs
        assert theirs.status == "connected"  # not the magic's to close
    finally:
        theirs.close()


@pytest.mark.parametrize(
    ("setup", "line", "expected"),
    [
        ("import realtime_nb as rt", "--name rt", "--name 'rt' holds the module realtime_nb, not "
         "a realtime_nb Session; accepted: a free name, or one holding a Session (which is "
         "replaced)"),
        ("data = [1, 2]", "--as data", "--as 'data' holds a list, not a realtime_nb Session"),
        ("data = [1, 2]", "--name data", "--name 'data' holds a list, not a realtime_nb Session"),
    ],
)  # fmt: skip
def test_name_option_refuses_a_variable_holding_something_else(
    ip: Any, setup: str, line: str, expected: str
) -> None:
    run(ip, setup)
    before = dict(ip.user_ns)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("realtime", line)
    assert expected in str(info.value)
    assert magics(ip).live_sessions() == {}
    assert {k: v for k, v in ip.user_ns.items() if k in before} == before


# --- help and typos --------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["--help", "-h", "--vad off --help"])
def test_help_prints_the_usage(ip: Any, capsys: pytest.CaptureFixture[str], line: str) -> None:
    ip.run_line_magic("realtime", line)
    out = capsys.readouterr().out
    assert out.lstrip().startswith("%realtime [--model MODEL]")
    for option in ("--model", "--voice", "--vad", "--record", "--no-record", "--url", "--local",
                   "--fast", "--name", "--help", "replay FILE | inspect FILE | diff A B | tools",
                   "%config RealtimeMagics"):  # fmt: skip
        assert option in out
    assert magics(ip).live_sessions() == {}
    assert "rt" not in ip.user_ns


def test_cell_magic_help(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("realtime", "--help", "Be brief.")
    assert "%realtime [--model MODEL]" in capsys.readouterr().out
    assert magics(ip).live_sessions() == {}


ACCEPTED_OPTIONS = (
    "accepted options: --model/-m, --voice, --vad, --record, --no-record, --url, --local, "
    "--fast, --transport, --name, --as, --help/-h"
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--voic marin", "unrecognized arguments: --voic (did you mean --voice?); "),
        ("--no-recrod", "unrecognized arguments: --no-recrod (did you mean --no-record?); "),
        ("--modle gpt-realtime", "unrecognized arguments: --modle (did you mean --model?); "),
        ("--loc", "unrecognized arguments: --loc (did you mean --local?); "),
        ("--zzz", "unrecognized arguments: --zzz; "),
    ],
)
def test_unknown_option_lists_the_accepted_ones(ip: Any, line: str, expected: str) -> None:
    """A prefix is not taken for the option (argparse would): ``--voic`` is a typo."""
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("realtime", line)
    assert str(info.value) == expected + ACCEPTED_OPTIONS
    assert magics(ip).live_sessions() == {}


# --- %%realtime ------------------------------------------------------------------------------------


def test_cell_magic_rerun_updates_the_live_session(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, WEATHER_TOOL)
    ip.run_cell_magic("realtime", "", 'Start every answer with "Ahoy".\n')
    session = ip.user_ns["rt"]
    widget = magics(ip)._live["rt"].widget
    assert ask(session, "hello there") == "Ahoy You said: hello there"

    ip.run_cell_magic("realtime", "", 'Start every answer with "Bonjour".\n')
    assert ip.user_ns["rt"] is session  # the same session, not a second one
    assert magics(ip)._live["rt"].widget is widget
    assert session.status == "connected"
    assert "rt: updated the live session (instructions, turn_detection)" in capsys.readouterr().out
    assert ask(session, "hello again") == "Bonjour You said: hello again"
    assert len(magics(ip).live_sessions()) == 1

    # The same session still calls the notebook's tool after the update.
    assert ask(session, "weather in Rome") == "Bonjour The tool said: sunny in Rome"


def test_cell_magic_rerun_with_new_voice_and_vad(ip: Any) -> None:
    ip.run_cell_magic("realtime", "--no-record", "Be brief.")
    session = ip.user_ns["rt"]
    ip.run_cell_magic("realtime", "--no-record --vad semantic --voice coral", "Be briefer.")
    assert ip.user_ns["rt"] is session
    session.wait_for(
        "session.updated",
        timeout=10,
        where=lambda ev: ev.data["session"].get("instructions") == "Be briefer.",
    )
    st = session.snapshot().session
    assert st["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert st["audio"]["output"]["voice"] == "coral"


def test_cell_magic_with_another_model_opens_a_new_session(ip: Any) -> None:
    ip.run_cell_magic("realtime", "--no-record", "Be brief.")
    first = ip.user_ns["rt"]
    ip.run_cell_magic("realtime", "--no-record --model gpt-realtime-mini", "Be brief.")
    second = ip.user_ns["rt"]
    assert second is not first
    assert first.status == "closed"
    assert second.model == "gpt-realtime-mini"


def test_cell_magic_reopens_a_closed_session(ip: Any) -> None:
    ip.run_cell_magic("realtime", "--no-record", "Be brief.")
    first = ip.user_ns["rt"]
    first.close()
    ip.run_cell_magic("realtime", "--no-record", "Be brief.")
    assert ip.user_ns["rt"] is not first
    assert ip.user_ns["rt"].status == "connected"


# --- tools picked up from the notebook -------------------------------------------------------------


def test_tools_defined_later_are_offered_and_withdrawn(ip: Any) -> None:
    ip.run_line_magic("realtime", "--no-record")
    session = ip.user_ns["rt"]
    assert session.tools == {}
    run(ip, WEATHER_TOOL)  # post_run_cell offers it to the live session
    assert set(session.tools) == {"get_weather"}
    assert ask(session, "weather in Lima") == "The tool said: sunny in Lima"

    run(ip, WEATHER_TOOL.replace("sunny in", "rainy in"))  # redefined: the new one is used
    assert ask(session, "weather in Lima") == "The tool said: rainy in Lima"

    run(ip, "del get_weather")
    assert session.tools == {}
    assert ask(session, "weather in Lima") == "You said: weather in Lima"


def test_tools_command_lists_notebook_tools(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("realtime", "tools")
    assert "no tools yet" in capsys.readouterr().out
    run(ip, WEATHER_TOOL)
    run(ip, "_private = realtime_nb.tool(lambda: 1, name='hidden', description='not listed')")
    ip.run_line_magic("realtime", "--no-record")
    capsys.readouterr()
    ip.run_line_magic("realtime", "tools")
    out = capsys.readouterr().out
    assert "get_weather(city?)  [offered to rt]" in out
    assert "Today's weather." in out
    assert "hidden" not in out


# --- %config defaults ------------------------------------------------------------------------------


def test_config_defaults_apply_to_new_sessions(ip: Any) -> None:
    ip.run_line_magic("config", "RealtimeMagics.vad = 'off'")
    ip.run_line_magic("config", "RealtimeMagics.voice = 'sage'")
    ip.run_line_magic("config", "RealtimeMagics.variable = 'voicebot'")
    ip.run_line_magic("config", "RealtimeMagics.record = ''")
    ip.run_line_magic("config", "RealtimeMagics.model = 'gpt-realtime-mini'")
    ip.run_line_magic("realtime", "")
    session = ip.user_ns["voicebot"]
    assert session.model == "gpt-realtime-mini"
    assert session.recording_path is None
    session.wait_for("session.updated", timeout=10)
    st = session.snapshot().session
    assert st["audio"]["input"]["turn_detection"] is None
    assert st["audio"]["output"]["voice"] == "sage"
    # An option given on the line wins over the configured default.
    ip.run_line_magic("realtime", "--vad server --as second")
    ip.user_ns["second"].wait_for("session.updated", timeout=10)
    td = ip.user_ns["second"].snapshot().session["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("RealtimeMagics.vad = 'loud'", "RealtimeMagics.vad 'loud' is not accepted; accepted: "
                                        "server, semantic, off"),
        ("RealtimeMagics.voice = 'robot'", "RealtimeMagics.voice 'robot' is not accepted; "
                                           "accepted: alloy, ash, ballad, cedar, coral, echo, "
                                           "marin, sage, shimmer, verse"),
        ("RealtimeMagics.url = 'ftp://x'", "RealtimeMagics.url 'ftp://x' is not accepted; "
                                           "accepted: a URL starting with ws://, wss://"),
        ("RealtimeMagics.variable = '1x'", "RealtimeMagics.variable '1x' is not accepted; "
                                           "accepted: a Python name"),
        ("RealtimeMagics.variable = 'class'", "RealtimeMagics.variable 'class' is not accepted"),
        ("RealtimeMagics.model = ''", "RealtimeMagics.model '' is not accepted"),
    ],
)  # fmt: skip
def test_config_rejects_bad_defaults(
    ip: Any, capsys: pytest.CaptureFixture[str], statement: str, expected: str
) -> None:
    before = options(ip)
    ip.run_line_magic("config", statement)
    assert expected in capsys.readouterr().err
    assert options(ip) == before
    # The shell stays usable: more %config, a session, and reloading the extension all work.
    ip.run_line_magic("config", "RealtimeMagics.fast = True")
    ip.run_line_magic("realtime", "--no-record")
    assert ip.user_ns["rt"].status == "connected"
    ip.run_line_magic("reload_ext", "realtime_nb")
    assert options(ip)["vad"] == "server"


# --- every UsageError path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--vad loud", "--vad 'loud' is not accepted; accepted: server, semantic, off"),
        ("--transport udp", "--transport 'udp' is not accepted; accepted: websocket, webrtc"),
        ("--voice robot", "--voice 'robot' is not accepted; accepted: alloy, ash, ballad, cedar, "
                          "coral, echo, marin, sage, shimmer, verse"),
        ("--url ftp://example.com", "--url 'ftp://example.com' is not accepted; accepted: a URL "
                                    "starting with ws://, wss://, http://, https://"),
        ("--local --url ws://127.0.0.1:1", "--local and --url 'ws://127.0.0.1:1' contradict"),
        ("--record somewhere --no-record", "--record 'somewhere' and --no-record contradict"),
        ("--record ''", "--record '' is not accepted; accepted: a folder"),
        ("--model ''", "--model '' is not accepted; accepted: a model name"),
        ("--as 2fast", "--as '2fast' is not accepted; accepted: a Python variable name"),
        ("--name 2fast", "--name '2fast' is not accepted; accepted: a Python variable name"),
        ("--name class", "--name 'class' is not accepted; accepted: a Python variable name"),
        ("--name a --as b", "--name 'a' and --as 'b' contradict each other; give one"),
        ("--bogus", "unrecognized arguments: --bogus"),
        ("--bogus", ACCEPTED_OPTIONS),
        ("--vad", "argument --vad: expected one argument"),
        ("play x.arrow", "%realtime 'play' is not a command; accepted: replay, inspect, diff, "
                         "tools"),
        ("inspect", "%realtime inspect takes 1 operand (inspect FILE), got 0: none"),
        ("replay a.arrow b.arrow", "%realtime replay takes 1 operand (replay FILE), got 2: "
                                   "'a.arrow' 'b.arrow'"),
        ("diff a.arrow", "%realtime diff takes 2 operands (diff A B), got 1: 'a.arrow'"),
        ("tools extra", "%realtime tools takes no operands (tools), got 1: 'extra'"),
        ("inspect x.arrow --model m", "%realtime inspect takes no session options, got --model"),
        ("inspect x.arrow --name n", "%realtime inspect takes no session options, got --name"),
        (f"inspect {REPO / 'README.md'}", f"%realtime inspect: {REPO / 'README.md'}"),
        ("tools --no-record --local", "%realtime tools takes no session options, got "
                                      "--no-record, --local"),
        ("inspect no/such/file.arrow", "%realtime inspect: no such file 'no/such/file.arrow'"),
        ("replay no/such/file.arrow", "%realtime replay: no such file 'no/such/file.arrow'"),
        ("diff no/such/a.arrow b", "%realtime diff: no such file 'no/such/a.arrow'"),
    ],
)  # fmt: skip
def test_line_magic_usage_errors(ip: Any, line: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("realtime", line)
    assert expected in str(info.value)
    assert magics(ip).live_sessions() == {}  # nothing was opened


def test_record_option_rejects_a_file(ip: Any, tmp_path: Path) -> None:
    f = tmp_path / "x.arrow"
    f.write_bytes(b"")
    with pytest.raises(UsageError, match=r"--record '.*x\.arrow' is a file; accepted: a folder"):
        ip.run_line_magic("realtime", f"--record {f}")


@pytest.mark.parametrize(
    ("line", "cell", "expected"),
    [
        ("", "   \n", "the %%realtime cell is empty"),
        ("inspect x.arrow", "Be brief.", "%%realtime takes session options, not the command "
                                         "'inspect'"),
        ("--vad loud", "Be brief.", "--vad 'loud' is not accepted; accepted: server, semantic, "
                                    "off"),
    ],
)  # fmt: skip
def test_cell_magic_usage_errors(ip: Any, line: str, cell: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("realtime", line, cell)
    assert expected in str(info.value)
    assert magics(ip).live_sessions() == {}


def test_usage_error_in_a_cell_shows_one_line(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """In a notebook a UsageError is shown as one line, not a traceback."""
    result = ip.run_cell("%realtime --vad loud")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err
    assert "UsageError: --vad 'loud' is not accepted; accepted: server, semantic, off" in err
    assert "Traceback" not in err


# --- recordings ------------------------------------------------------------------------------------


def test_inspect_prints_the_summary(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from realtime_nb.storage.recording import Recording

    ip.run_line_magic("realtime", f"inspect {DEMO_RECORDING}")
    assert capsys.readouterr().out.strip() == Recording.open(DEMO_RECORDING).describe().strip()


def test_replay_shows_the_replay_widget_and_conversation(ip: Any) -> None:
    shown: list[Any] = []
    ip.display_pub.publish = lambda data, **kw: shown.append(data)
    try:
        ip.run_line_magic("realtime", f"replay {DEMO_RECORDING}")
    finally:
        del ip.display_pub.publish
    assert "application/vnd.jupyter.widget-view+json" in shown[0]
    assert "ReplayWidget" in shown[0]["text/plain"]
    conversation = shown[-1]["text/html"]
    assert "get_weather" in conversation
    assert "class='rtnb-clip'" in conversation  # players, the audio fetched when pressed


def test_inspect_accepts_a_jsonl_log(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from realtime_nb.storage.recording import Recording

    log = Recording.open(DEMO_RECORDING).export_jsonl(tmp_path / "demo.jsonl")
    ip.run_line_magic("realtime", f"inspect {log}")
    assert "get_weather" in capsys.readouterr().out


def test_diff_of_two_runs(ip: Any) -> None:
    pytest.importorskip(
        "realtime_nb.debugging.diff", reason="realtime_nb.debugging.diff is not written yet"
    )
    shown: list[Any] = []
    ip.display_pub.publish = lambda data, **kw: shown.append(data)
    try:
        ip.run_line_magic("realtime", f"diff {DEMO_RECORDING} {DEMO_RECORDING}")
    finally:
        del ip.display_pub.publish
    assert shown


def test_quoted_paths_with_spaces(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    spaced = tmp_path / "my runs" / "demo copy.arrow"
    spaced.parent.mkdir()
    shutil.copy(DEMO_RECORDING, spaced)
    ip.run_line_magic("realtime", f'inspect "{spaced}"')
    assert "get_weather" in capsys.readouterr().out
    ip.run_line_magic("realtime", f"--record '{tmp_path / 'my runs'}' --as spaced")
    assert ip.user_ns["spaced"].recording_path.parent == spaced.parent
