"""``realtime-nb``: help on every command, outputs, and one-line errors with non-zero exit codes
(2 for a bad argument, 1 for anything else; ``diff`` as diff(1))."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest

import realtime_nb
from realtime_nb.frontdoor.cli import RESPONDERS, main
from realtime_nb.storage.recording import Recording

from ..conftest import SESSIONS, WEATHER_WAV
from .conftest import DEMO_RECORDING, REPO
from .test_demo import offline_env

README = REPO / "README.md"
ACCEPTED = (
    "accepted: .arrow recordings, YAML cassettes ({version, interactions: [...]}), JSONL event logs"
)
TOOL_ROUND = SESSIONS / "test_openai_ws" / "test_tool_call_round.yaml"
TEXT_TURN = SESSIONS / "test_openai_ws" / "test_text_in_audio_out_turn.yaml"

COMMANDS = ("serve", "demo", "inspect", "diff", "export", "replay")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: realtime-nb {command}")
    assert err == ""


def test_demo_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "demo", "--help")
    for option in ("--wav", "--record-dir", "--realtime"):
        assert option in out


def test_inspect_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "inspect", str(DEMO_RECORDING))
    assert code == 0, err
    assert out.strip() == Recording.open(DEMO_RECORDING).describe().strip()
    assert "get_weather" in out


def test_inspect_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "inspect", "--json", str(DEMO_RECORDING))
    assert code == 0
    summary = json.loads(out)
    assert summary == json.loads(json.dumps(Recording.open(DEMO_RECORDING).summary(), default=str))


def test_export_wav_and_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav_path = tmp_path / "demo.wav"
    code, out, _ = cli(capsys, "export", str(DEMO_RECORDING), str(wav_path))
    assert (code, out.strip()) == (0, f"wrote {wav_path}")
    with wave.open(str(wav_path)) as w:
        assert w.getnchannels() == 2
        assert w.getframerate() == 24_000
        assert w.getnframes() / 24_000 > 5
    jsonl = tmp_path / "demo.jsonl"
    code, _, _ = cli(capsys, "export", str(DEMO_RECORDING), str(jsonl))
    assert code == 0
    again = Recording.import_file(jsonl)
    assert [i.text for i in again.items] == [i.text for i in Recording.open(DEMO_RECORDING).items]
    # The exported log is itself inspectable.
    code, out, _ = cli(capsys, "inspect", str(jsonl))
    assert code == 0
    assert "get_weather" in out


def test_replay_prints_the_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "replay", "--no-wait", str(DEMO_RECORDING))
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert "user:" in lines[0]
    assert "get_weather" in lines[1]


def test_diff_of_a_recording_with_itself(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("realtime_nb.debugging.diff")
    code, out, err = cli(capsys, "diff", str(DEMO_RECORDING), str(DEMO_RECORDING))
    assert code == 0, err
    assert out.strip()


def test_inspect_and_diff_print_the_latency_of_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """One definition: the latency inspect and diff print is the one rec.metrics() computes."""
    from realtime_nb.debugging.metrics import metrics

    (turn,) = metrics(Recording.open(DEMO_RECORDING)).turns
    assert turn.latency_ms is not None
    ms = f"{turn.latency_ms:.0f}"
    code, out, _ = cli(capsys, "inspect", str(DEMO_RECORDING))
    assert code == 0
    assert f"; latency {ms} ms" in out
    assert f"latency {ms:>6} ms" in out  # the turn's row
    code, out, _ = cli(capsys, "diff", str(DEMO_RECORDING), str(DEMO_RECORDING))
    assert code == 0
    assert f"latency {ms} -> {ms} ms (+0 ms)" in out
    code, out, _ = cli(capsys, "inspect", "--json", str(DEMO_RECORDING))
    assert json.loads(out)["turn_latency_ms"] == [round(turn.latency_ms, 1)]


def test_diff_exit_status_is_that_of_diff1(capsys: pytest.CaptureFixture[str]) -> None:
    """0 when the conversations are the same, 1 when turns differ (the report is printed
    either way), 2 for trouble."""
    code, out, err = cli(capsys, "diff", str(TOOL_ROUND), str(TOOL_ROUND))
    assert (code, err) == (0, "")
    assert "0 of 1 turns changed" in out
    code, out, err = cli(capsys, "diff", str(TEXT_TURN), str(TOOL_ROUND))
    assert (code, err) == (1, "")
    assert "1 of 1 turns changed" in out
    code, out, err = cli(capsys, "diff", str(TOOL_ROUND), str(README))
    assert (code, out) == (2, "")
    assert err.startswith("realtime-nb diff: error: ")


def test_inspect_reads_a_cassette(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "inspect", str(TOOL_ROUND))
    assert (code, err) == (0, "")
    assert "get_weather" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--version")
    assert (code, out, err) == (0, f"realtime-nb {realtime_nb.__version__}\n", "")


def test_serve_help_shows_defaults_and_explains_responders(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from realtime_nb.local.responders import RESPONDER_NAMES

    assert RESPONDERS == RESPONDER_NAMES  # the CLI's copy (its --help must not load the server)
    code, out, _ = cli(capsys, "serve", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for default in ("(default: 127.0.0.1)", "(default: 8765)", "(default: tools)",
                    "(default: accept any key)", "(default: local-model)", "(default: none)",
                    "(default: at real-time pace)"):  # fmt: skip
        assert default in flat
    for name in RESPONDERS:  # each responder has a line saying what it answers
        assert f"\n  {name} " in out
    assert "The tool said" in out and "You said" in out and "--chat-url" in out


def test_export_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_path = tmp_path / "demo.jsonl"
    out_path.write_text("keep me")
    code, out, err = cli(capsys, "export", str(DEMO_RECORDING), str(out_path))
    assert (code, out) == (2, "")
    assert err == f"realtime-nb export: error: {out_path} exists; pass --force to overwrite it\n"
    assert out_path.read_text() == "keep me"
    code, out, err = cli(capsys, "export", str(DEMO_RECORDING), str(out_path), "--force")
    assert (code, out.strip(), err) == (0, f"wrote {out_path}", "")
    assert Recording.import_file(out_path).items


def test_not_a_recording_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.arrow"
    bogus.write_text("hello")
    code, _, err = cli(capsys, "inspect", str(bogus))
    assert code == 2
    assert err == (
        f"realtime-nb inspect: error: {bogus} is a text file despite its .arrow suffix, not a "
        f"recording; {ACCEPTED}\n"
    )


#: Every kind of bad argument: (argv, the start of the one line on stderr). Run in a subprocess,
#: as a user runs them: exit code 2, one line, no traceback.
BAD_ARGUMENTS = [
    (["replay", "--speed", "0", str(DEMO_RECORDING)],
     "realtime-nb replay: error: argument --speed: '0' is not a speed; accepted: a number above 0"),
    (["replay", "--speed", "-2", str(DEMO_RECORDING)],
     "realtime-nb replay: error: argument --speed: '-2' is not a speed"),
    (["replay", "--speed", "fast", str(DEMO_RECORDING)],
     "realtime-nb replay: error: argument --speed: 'fast' is not a speed"),
    (["serve", "--port", "99999"],
     "realtime-nb serve: error: argument --port: '99999' is not a port; accepted: 0-65535 "
     "(0 = any free port)"),
    (["serve", "--port", "-1"], "realtime-nb serve: error: argument --port: '-1' is not a port"),
    (["serve", "--port", "http"], "realtime-nb serve: error: argument --port: 'http' is not a port"),
    (["serve", "--responder", "oracle"], "realtime-nb serve: error: argument --responder: invalid "
                                         "choice: 'oracle'"),
    (["serve", "--responder", "chat"], "realtime-nb serve: error: --responder chat needs --chat-url"),
    (["serve", "--chat-url", "http://127.0.0.1:1/v1"],
     "realtime-nb serve: error: --chat-url is used only with --responder chat"),
    (["inspect", str(README)],
     f"realtime-nb inspect: error: {README} is a Markdown text file, not a recording; {ACCEPTED}"),
    (["inspect", str(REPO / "pyproject.toml")], "realtime-nb inspect: error: "
                                                f"{REPO / 'pyproject.toml'} is a TOML file"),
    (["inspect", str(WEATHER_WAV)],
     f"realtime-nb inspect: error: {WEATHER_WAV} is a WAV audio file, not a recording; {ACCEPTED}"),
    (["inspect", str(REPO / "recordings")], "realtime-nb inspect: error: "
                                            f"{REPO / 'recordings'} is a folder"),
    (["inspect", "no/such.arrow"], "realtime-nb inspect: error: no such file: no/such.arrow"),
    (["inspect", "--json", str(README)], f"realtime-nb inspect: error: {README} is a Markdown"),
    (["replay", "no/such.arrow"], "realtime-nb replay: error: no such file: no/such.arrow"),
    (["replay", "--no-wait", str(WEATHER_WAV)], "realtime-nb replay: error: "
                                                f"{WEATHER_WAV} is a WAV audio file"),
    (["diff", "no/a.arrow", "no/b.arrow"], "realtime-nb diff: error: no such file: no/a.arrow"),
    (["diff", str(DEMO_RECORDING), str(README)], f"realtime-nb diff: error: {README} is a Markdown"),
    (["export", "no/such.arrow", "x.wav"], "realtime-nb export: error: no such file: no/such.arrow"),
    (["export", str(DEMO_RECORDING), "out.mp3"], "realtime-nb export: error: cannot export to "
                                                 "'mp3'; accepted: wav, jsonl, arrow"),
    (["export", str(DEMO_RECORDING), str(DEMO_RECORDING), "--force"],
     f"realtime-nb export: error: {DEMO_RECORDING} is the file being exported"),
    (["export", str(DEMO_RECORDING), "no/such/dir/x.wav"],
     "realtime-nb export: error: no such folder: no/such/dir"),
    (["export", str(README), "x.wav"], f"realtime-nb export: error: {README} is a Markdown"),
    (["demo", "--wav", "no/such.wav"], "realtime-nb demo: error: no such WAV file: no/such.wav"),
    ([], "realtime-nb: error: the following arguments are required: COMMAND"),
    (["fly"], "realtime-nb: error: argument COMMAND: invalid choice: 'fly'"),
    (["--bogus"], "realtime-nb: error: "),
    (["inspect"], "realtime-nb inspect: error: the following arguments are required: file"),
]  # fmt: skip


def _argv_id(argv: list[str]) -> str:
    return " ".join(Path(a).name if a.startswith("/") else a for a in argv) or "(nothing)"


@pytest.mark.parametrize(
    ("argv", "message"), BAD_ARGUMENTS, ids=[_argv_id(argv) for argv, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "realtime_nb.frontdoor.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing was written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["inspect"], "the following arguments are required: file"),
        (["serve", "--responder", "oracle"], "invalid choice: 'oracle'"),
        (["export", str(DEMO_RECORDING), "x", "--format", "ogg"], "invalid choice: 'ogg'"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2
    (line,) = err.splitlines()  # argparse's usage is left to --help
    assert line.startswith("realtime-nb")
    assert "error:" in line
    assert message in line
    assert line.endswith("--help)")


def test_entry_point_module_runs(tmp_path: Path) -> None:
    """``python -m realtime_nb.frontdoor.cli`` is what the ``realtime-nb`` script runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "realtime_nb.frontdoor.cli", "inspect", str(DEMO_RECORDING)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "get_weather" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "realtime_nb.frontdoor.cli", "inspect", "missing.arrow"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert bad.returncode == 2
    assert bad.stderr == "realtime-nb inspect: error: no such file: missing.arrow\n"
