"""``realtime-nb``: serve the local backend, run the demo, inspect/diff/export/replay recordings.

Every error is one clear line on stderr and a non-zero exit code (2 for usage, 1 otherwise).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


class CliError(Exception):
    """An error to print as one line (exit code 1)."""


def _open(path: str) -> Any:
    from .recording import Recording, RecordingSalvageWarning

    p = Path(path)
    if not p.exists():
        raise CliError(f"no such file: {p}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordingSalvageWarning)
        rec = Recording.import_file(p)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return rec


def cmd_serve(args: argparse.Namespace) -> int:
    from .local.server import serve_forever

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
    rec = _open(args.file)
    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".").lower()
    if fmt == "wav":
        rec.export_wav(out, heard=not args.received)
    elif fmt in ("jsonl", "json"):
        rec.export_jsonl(out)
    elif fmt == "arrow":
        from .recording import Recording

        Recording.from_events(rec.events, meta=rec.meta, path=out)
    else:
        raise CliError(
            f"cannot export to {fmt!r}; accepted: wav, jsonl, arrow (from the suffix or --format)"
        )
    print(f"wrote {out}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        from .diff import diff
    except ImportError as exc:  # pragma: no cover - diff ships with the package
        raise CliError(f"diff is unavailable: {exc}") from None
    print(diff(_open(args.a), _open(args.b)).text())
    return 0


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


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .demo import run_demo
    except ImportError as exc:
        raise CliError(
            f"the demo needs the local backend: pip install 'realtime-nb[local]' ({exc})"
        ) from None
    return int(run_demo(wav=args.wav, record_dir=args.record_dir, realtime=args.realtime))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realtime-nb",
        description="Realtime voice sessions: local backend, demo, and recording tools.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run the offline local Realtime server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--responder", default="tools", choices=["echo", "rules", "tools", "chat"])
    s.add_argument("--fast", action="store_true", help="send audio as fast as synthesised")
    s.add_argument("--api-key", help="require this bearer token (default: accept any)")
    s.add_argument("--chat-url", help="OpenAI-compatible Chat Completions URL (responder=chat)")
    s.add_argument("--chat-model", help="model name for --chat-url")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="a spoken conversation with a tool call on the local backend")
    d.add_argument("--wav", help="what the user says (default: the bundled weather question)")
    d.add_argument("--record-dir", default="recordings", help="where the recording goes")
    d.add_argument("--realtime", action="store_true", help="send the audio at real-time pace")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("inspect", help="summarize a recording (or a JSONL/YAML session log)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=cmd_inspect)

    f = sub.add_parser("diff", help="compare two recordings turn by turn")
    f.add_argument("a")
    f.add_argument("b")
    f.set_defaults(func=cmd_diff)

    e = sub.add_parser("export", help="export a recording to WAV (stereo) or JSONL")
    e.add_argument("file")
    e.add_argument("output")
    e.add_argument("--format", choices=["wav", "jsonl", "arrow"])
    e.add_argument(
        "--received", action="store_true", help="WAV: all audio received, not just what was heard"
    )
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("replay", help="print a recording's conversation at its recorded pace")
    r.add_argument("file")
    r.add_argument("--speed", type=float, default=1.0)
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
        print(f"realtime-nb {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
