"""``realtime-nb``: serve the local backend, run the demo, inspect/diff/export/replay/check
recordings.

Every error is one clear line on stderr, never a traceback. Exit codes: 2 for a bad argument (an
unknown option, a value out of range, a missing file, a file that is not a recording, an output
that exists), 1 for anything else that went wrong (a damaged recording, a port already taken).
``diff`` follows diff(1): 0 same, 1 different, 2 trouble. ``check`` exits 0 for a whole recording,
1 for a damaged or unclosed one, 2 when it cannot check (no such file, not a recording).
"""

from __future__ import annotations

import argparse
import codecs
import math
import re
import sys
import typing
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["main"]


class CliError(Exception):
    """An error to print as one line (exit code 1)."""


class CliUsageError(CliError):
    """A bad argument (a missing file, a file that is not a recording, ...): one line, exit 2."""


#: Exit code of a bad argument, as argparse's own.
USAGE_EXIT: Final = 2
#: The highest TCP port number.
MAX_PORT: Final = 65535
#: Export formats; a ``.json`` output is written as JSON lines too.
EXPORT_FORMATS: Final = ("wav", "jsonl", "arrow")
#: realtime_nb.local.responders.RESPONDER_NAMES, not imported: --help must not load the server.
RESPONDERS: Final = ("echo", "rules", "tools", "chat")
#: Bytes read to tell what a file is: enough for any magic number and a cassette's first keys.
_SNIFF_BYTES: Final = 4096
_ACCEPTED_FILES: Final = (
    "accepted: .arrow recordings, YAML cassettes ({version, interactions: [...]}), JSONL event logs"
)
#: Magic numbers of files people mistake for recordings, and what to call them.
_MAGIC: Final = (
    (b"ID3", "an MP3 audio file"),
    (b"\xff\xfb", "an MP3 audio file"),
    (b"\xff\xf3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip archive"),
)
#: Text files that are never a log or cassette, whatever their first character.
_TEXT_KINDS: Final = {
    ".md": "a Markdown text file",
    ".rst": "a reStructuredText file",
    ".toml": "a TOML file",
    ".ini": "an INI file",
    ".cfg": "an INI file",
    ".py": "a Python source file",
    ".csv": "a CSV table",
    ".html": "an HTML page",
    ".ipynb": "a Jupyter notebook",
}
_CASSETTE_RE: Final = re.compile(r"^interactions\s*:", re.MULTILINE)


def _not_a_recording(p: Path) -> str | None:
    """What ``p`` is when it cannot be a recording, a cassette or a JSONL log; ``None`` when it
    may be one (the importer then decides, and says what is wrong inside)."""
    if p.is_dir():
        return "a folder"
    with open(p, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        return "an empty file"
    if head[:4] == b"\xff\xff\xff\xff" or head[:6] == b"ARROW1":
        return None  # an Arrow IPC stream (or file)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "a WAV audio file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    try:  # incremental: a character cut at the end of the head is not an error
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return "a binary file"
    if "\x00" in text:
        return "a binary file"
    suffix = p.suffix.lower()
    if suffix in _TEXT_KINDS:
        return _TEXT_KINDS[suffix]
    if suffix == ".arrow":
        return "a text file despite its .arrow suffix"
    if text.lstrip()[:1] in ("{", "["):
        return None  # JSON: the importer reads many shapes of logs, and says what it cannot
    if suffix in (".yaml", ".yml") or _CASSETTE_RE.search(text):
        return None  # YAML: the importer says when it is not a cassette
    return "a text file"


def _open(path: str) -> Any:
    """The recording, cassette or log at ``path``; salvage warnings are printed.

    Raises:
        CliUsageError: no such file, or a file that is not a recording (says what it is).
        ValueError: a damaged recording, cassette or log (the importer's message).
    """
    p = Path(path)
    if not p.exists():
        raise CliUsageError(f"no such file: {p}")
    what = _not_a_recording(p)
    if what is not None:
        hint = (
            " (to speak a WAV file to a session: realtime-nb demo --wav FILE)"
            if "WAV" in what
            else ""
        )
        raise CliUsageError(f"{p} is {what}, not a recording; {_ACCEPTED_FILES}{hint}")

    from ..storage.recording import Recording, RecordingFormatError, RecordingSalvageWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordingSalvageWarning)
        try:
            rec = Recording.import_file(p)
        except RecordingFormatError as exc:  # none of the accepted formats: a bad argument
            raise CliUsageError(str(exc)) from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return rec


def cmd_serve(args: argparse.Namespace) -> int:
    if args.responder == "chat" and not args.chat_url:
        raise CliUsageError(
            "--responder chat needs --chat-url (an OpenAI-compatible URL, e.g. "
            "http://127.0.0.1:8080/v1)"
        )
    if args.responder != "chat" and (args.chat_url or args.chat_model):
        given = "--chat-url" if args.chat_url else "--chat-model"
        raise CliUsageError(
            f"{given} is used only with --responder chat, got --responder {args.responder}"
        )
    from ..local.server import serve_forever

    serve_forever(
        args.host, args.port, responder=args.responder, fast=args.fast, api_key=args.api_key,
        chat_url=args.chat_url, chat_model=args.chat_model,
    )  # fmt: skip
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    rec = _open(args.file)
    if args.json:
        print(json.dumps(rec.summary(), indent=2, default=str))
    else:
        print(rec.describe())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".").lower()
    fmt = "jsonl" if fmt == "json" else fmt
    if fmt not in EXPORT_FORMATS:
        raise CliUsageError(
            f"cannot export to {fmt!r}; accepted: {', '.join(EXPORT_FORMATS)} (from the suffix "
            "or --format)"
        )
    src = Path(args.file)
    if not src.exists():
        raise CliUsageError(f"no such file: {src}")
    if out.exists() and out.resolve() == src.resolve():
        raise CliUsageError(f"{out} is the file being exported; give another output")
    if out.is_dir():
        raise CliUsageError(f"{out} is a folder; give an output file")
    if out.exists() and not args.force:
        raise CliUsageError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise CliUsageError(f"no such folder: {out.parent}")
    rec = _open(args.file)
    if fmt == "wav":
        rec.export_wav(out, heard=not args.received)
    elif fmt == "jsonl":
        rec.export_jsonl(out)
    elif fmt == "arrow":
        from ..storage.recording import Recording

        Recording.from_events(rec.events, meta=rec.meta, path=out)
    print(f"wrote {out}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Print the report; like diff(1), 0 when the conversations are the same (settings and
    turns), 1 when they differ (errors exit 2: see ``main``)."""
    try:
        from ..debugging.diff import diff
    except ImportError as exc:  # pragma: no cover - diff ships with the package
        raise CliError(f"diff is unavailable: {exc}") from None
    report = diff(_open(args.a), _open(args.b))
    print(report.text())
    return 0 if report.identical else 1


def cmd_replay(args: argparse.Namespace) -> int:
    """Play a recording's conversation in the terminal: the transcript at the recorded pace."""
    import time

    rec = _open(args.file)
    st = rec.state
    items = sorted(st.items, key=lambda i: i.added_t_ns or 0)
    start = time.monotonic()
    for item in items:
        t = (item.added_t_ns or 0) / 1e9 / args.speed
        if not args.no_wait:
            time.sleep(max(0.0, t - (time.monotonic() - start)))
        who = item.role or item.type
        flag = " [truncated]" if item.truncated else ""
        print(f"[{(item.added_t_ns or 0) / 1e9:7.2f}s] {who:>10}: {item.text}{flag}", flush=True)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Print a recording's integrity: batches, events, checksums, gaps, damage with offsets.

    Returns 0 for a whole recording, 1 for a damaged or unclosed one.

    Raises:
        CliUsageError: no such file, not a recording, or one of a newer format.
    """
    from ..storage.recording import (
        Recording,
        RecordingDamagedError,
        RecordingFormatError,
        RecordingSalvageWarning,
    )

    p = Path(args.file)
    if not p.exists():
        raise CliUsageError(f"no such file: {p}")
    if p.is_dir():
        raise CliUsageError(f"{p} is a folder, not a recording")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecordingSalvageWarning)  # the report says it all
            rec = Recording.open(p)
    except RecordingDamagedError as exc:
        print(f"{p}: DAMAGED: {str(exc).removeprefix(f'{p}: ')}")
        return 1
    except RecordingFormatError as exc:
        # Asked only now: a recording whose first bytes are damaged is not "a binary file".
        what = _not_a_recording(p)
        raise CliUsageError(f"{p} is {what}, not a recording" if what else str(exc)) from None
    report = rec.integrity
    if report is None:
        print(f"{p}: DAMAGED: it ends inside its header ({p.stat().st_size} bytes)")
        return 1
    written = (
        f"format version {rec.meta.get('format_version')}, written by realtime_nb "
        f"{rec.meta.get('package_version', '?')}"
    )
    print(report.report(str(p), written))
    return 0 if report.whole else 1


def cmd_demo(args: argparse.Namespace) -> int:
    if args.wav is not None and not Path(args.wav).is_file():
        raise CliUsageError(f"no such WAV file: {args.wav}")
    try:
        from .demo import run_demo
    except ImportError as exc:
        raise CliError(
            f"the demo needs the local backend: pip install 'realtime-nb[local]' ({exc})"
        ) from None
    return int(run_demo(wav=args.wav, record_dir=args.record_dir, realtime=args.realtime))


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    """``--port``: a TCP port number, 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port; accepted: 0-{MAX_PORT} (0 = any free port)"
        )
    return port


def _speed(text: str) -> float:
    """``--speed``: a positive, finite playback speed factor."""
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and speed > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed; accepted: a number above 0 (1 = as recorded, 2 = twice "
            "as fast)"
        )
    return speed


_SERVE_DESCRIPTION: Final = """\
Run the offline local Realtime server: WebRTC VAD for turns, PocketSphinx for transcripts,
eSpeak NG for speech, and a responder standing in for the model. Connect to the URL it
prints with Session(url=URL) or %realtime --url URL.

responders (--responder):
  tools  call a tool the session offers when the user names it ("weather in Paris" ->
         get_weather(city="Paris")), else echo; after the tool's output: "The tool said: ..."
  echo   "You said: <what the user said>"; after a tool's output: "The tool said: ..."
  rules  deterministic regex rules -> replies or tool calls, set from Python
         (LocalServer(rules=...)); from here, with no rules, it echoes
  chat   any OpenAI-compatible Chat Completions server (--chat-url, --chat-model): a local LLM
The echo, rules and tools answers start with the phrase of a 'Start every answer with "..."'
in the instructions, so different instructions give different answers.
"""


def _parser() -> argparse.ArgumentParser:
    from ..core._version import __version__

    p = _Parser(
        prog="realtime-nb",
        description="Realtime voice sessions: local backend, demo, and recording tools.",
    )
    p.add_argument("--version", action="version", version=f"realtime-nb {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser(
        "serve",
        help="run the offline local Realtime server",
        description=_SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    s.add_argument(
        "--port",
        type=_port,
        default=8765,
        help=f"port to listen on, 0-{MAX_PORT}; 0 = any free port (default: %(default)s)",
    )
    s.add_argument(
        "--responder",
        default="tools",
        choices=RESPONDERS,
        help="what answers in place of the model, see above (default: %(default)s)",
    )
    s.add_argument(
        "--fast",
        action="store_true",
        help="send answer audio as fast as synthesised (default: at real-time pace)",
    )
    s.add_argument("--api-key", help="require this bearer token (default: accept any key)")
    s.add_argument(
        "--chat-url",
        help="OpenAI-compatible Chat Completions URL, e.g. http://127.0.0.1:8080/v1; needed by, "
        "and only used with, --responder chat (default: none)",
    )
    s.add_argument("--chat-model", help="model name for --chat-url (default: local-model)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="a spoken conversation with a tool call on the local backend")
    d.add_argument("--wav", help="what the user says (default: the bundled weather question)")
    d.add_argument(
        "--record-dir",
        default="recordings",
        help="where the recording goes (default: %(default)s)",
    )
    d.add_argument("--realtime", action="store_true", help="send the audio at real-time pace")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("inspect", help="summarize a recording (or a JSONL/YAML session log)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=cmd_inspect)

    f = sub.add_parser(
        "diff",
        help="compare two recordings turn by turn",
        epilog="exit status (as diff(1)): 0 same settings and turns, 1 different, 2 trouble",
    )
    f.add_argument("a")
    f.add_argument("b")
    f.set_defaults(func=cmd_diff)

    e = sub.add_parser("export", help="export a recording to WAV (stereo) or JSONL")
    e.add_argument("file")
    e.add_argument("output")
    e.add_argument("--format", choices=EXPORT_FORMATS, help="default: from the output's suffix")
    e.add_argument("--force", action="store_true", help="overwrite an existing output")
    e.add_argument(
        "--received", action="store_true", help="WAV: all audio received, not just what was heard"
    )
    e.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "check",
        help="verify a recording: checksums, lost events, damage and where it is",
        epilog="exit status: 0 whole, 1 damaged or not closed by its writer, 2 cannot check",
    )
    c.add_argument("file")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("replay", help="print a recording's conversation at its recorded pace")
    r.add_argument("file")
    r.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="pace factor above 0: 2 = twice as fast (default: %(default)s)",
    )
    r.add_argument("--no-wait", action="store_true", help="print at once")
    r.set_defaults(func=cmd_replay)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``realtime-nb``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, OSError, ValueError, KeyError) as exc:
        message = re.sub(r"\s*\n\s*", " ", str(exc).strip())  # one line, whatever it holds
        print(f"realtime-nb {args.command}: error: {message}", file=sys.stderr)
        # diff(1): 1 means "different", so its errors exit 2.
        return USAGE_EXIT if isinstance(exc, CliUsageError) or args.command == "diff" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
