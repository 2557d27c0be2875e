"""``realtime-nb``: help on every command, outputs, and one-line errors with non-zero exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from realtime_nb.cli import main
from realtime_nb.recording import Recording

from .conftest import DEMO_RECORDING
from .test_demo import offline_env

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
    pytest.importorskip("realtime_nb.diff")
    code, out, err = cli(capsys, "diff", str(DEMO_RECORDING), str(DEMO_RECORDING))
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "no/such.arrow"], "realtime-nb inspect: error: no such file: no/such.arrow"),
        (["replay", "no/such.arrow"], "realtime-nb replay: error: no such file: no/such.arrow"),
        (["diff", "no/a.arrow", "no/b.arrow"], "realtime-nb diff: error: no such file: no/a.arrow"),
        (["export", "no/such.arrow", "x.wav"], "realtime-nb export: error: no such file"),
        (["export", str(DEMO_RECORDING), "out.mp3"], "realtime-nb export: error: cannot export to "
                                                     "'mp3'; accepted: wav, jsonl, arrow"),
        (["demo", "--wav", "no/such.wav"], "realtime-nb demo: error: no such WAV file: no/such.wav"),
    ],
)  # fmt: skip
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = cli(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith(message)
    assert "Traceback" not in err


def test_not_a_recording_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.arrow"
    bogus.write_text("hello")
    code, _, err = cli(capsys, "inspect", str(bogus))
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("realtime-nb inspect: error: ")


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
    *usage, last = err.strip().splitlines()
    assert last.startswith("realtime-nb")
    assert "error:" in last
    assert message in last
    assert all(line.startswith(("usage:", " ")) for line in usage)


def test_entry_point_module_runs(tmp_path: Path) -> None:
    """``python -m realtime_nb.cli`` is what the ``realtime-nb`` script runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "realtime_nb.cli", "inspect", str(DEMO_RECORDING)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "get_weather" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "realtime_nb.cli", "inspect", "missing.arrow"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=offline_env(),
    )
    assert bad.returncode == 1
    assert bad.stderr == "realtime-nb inspect: error: no such file: missing.arrow\n"
