"""``%realtime`` and ``%%realtime``: a session and its widget from one line of a notebook.

::

    %load_ext realtime_nb
    %realtime                        # a session (bound to ``rt``) and its widget
    %realtime --vad off --voice marin --no-record --name bot
    %realtime --transport webrtc     # the browser's own peer connection carries the audio
    %realtime --help
    %%realtime --voice coral         # the cell body is the instructions; re-run = update
    %realtime inspect recordings/demo.arrow
    %realtime replay recordings/demo.arrow
    %realtime diff a.arrow b.arrow
    %realtime tools                  # the @realtime_nb.tool functions of this notebook
    %config RealtimeMagics.vad = "semantic"

Without ``OPENAI_API_KEY`` (or with ``--local``) sessions run on the embedded local backend
(:func:`realtime_nb.frontdoor.demo.local_backend`), whose stand-in model calls a notebook tool when the
user names it; the widget says so. ``@realtime_nb.tool`` functions in the notebook are offered to
the sessions the magic opened, including ones defined or redefined later (after each cell).

The session goes to the variable ``rt`` (``%config RealtimeMagics.variable``) unless that name
already holds something else (``import realtime_nb as rt``): then to the first free one of
``rt2``, ``rt3``, ..., said in one printed line. ``--name NAME`` chooses the variable; it may hold
a session (which it then replaces), never anything else. A name the magic bound before is its own
to rebind: re-running the cell replaces (``%realtime``) or updates (``%%realtime``) its session.

Heavy modules (the session, the widget, the local server) are imported on first use.
"""

from __future__ import annotations

import difflib
import enum
import keyword
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Unicode, validate

if TYPE_CHECKING:  # pragma: no cover - import-time only, for type checkers
    from ..client.session import Session
    from ..core.tools import Tool

__all__ = [
    "Command",
    "RealtimeMagics",
    "Vad",
    "Voice",
    "load_ipython_extension",
    "parse_choice",
    "unload_ipython_extension",
]

#: What the widget's header says when the magic chose the local backend for lack of a key.
LOCAL_NO_KEY_LABEL: Final = "embedded local backend (no OPENAI_API_KEY; offline stand-in model)"
LOCAL_FORCED_LABEL: Final = "embedded local backend (--local; offline stand-in model)"
#: URL schemes a Realtime endpoint can have (http(s) is turned into ws(s) by the session).
URL_SCHEMES: Final = ("ws://", "wss://", "http://", "https://")


class Vad(str, enum.Enum):
    """``--vad``: who decides when the user's turn ends."""

    SERVER = "server"  # server VAD: silence ends the turn
    SEMANTIC = "semantic"  # semantic VAD: the model judges the user finished
    OFF = "off"  # push-to-talk: the widget's button commits the turn

    @property
    def turn_detection(self) -> str | None:
        """The ``Session(turn_detection=...)`` value."""
        return {"server": "server_vad", "semantic": "semantic_vad", "off": None}[self.value]


class Transport(str, enum.Enum):
    """``--transport``: how the widget's audio travels."""

    WEBSOCKET = "websocket"  # the kernel relays PCM over the notebook's comm (works everywhere)
    WEBRTC = "webrtc"  # the page's own peer connection (browser echo cancellation, no relay)


class Voice(str, enum.Enum):
    """``--voice``: the voices the Realtime API (and the local backend) accept."""

    ALLOY = "alloy"
    ASH = "ash"
    BALLAD = "ballad"
    CEDAR = "cedar"
    CORAL = "coral"
    ECHO = "echo"
    MARIN = "marin"
    SAGE = "sage"
    SHIMMER = "shimmer"
    VERSE = "verse"


class Command(str, enum.Enum):
    """``%realtime COMMAND ...``: what to do instead of opening a session."""

    REPLAY = "replay"
    INSPECT = "inspect"
    DIFF = "diff"
    TOOLS = "tools"

    @property
    def operands(self) -> tuple[str, ...]:
        """The names of the command's operands (their count is enforced)."""
        return {"replay": ("FILE",), "inspect": ("FILE",), "diff": ("A", "B"), "tools": ()}[
            self.value
        ]


E = TypeVar("E", bound=enum.Enum)
F = TypeVar("F", bound=Callable[..., Any])

# IPython's decorators and display functions are untyped in IPython 8 and partly typed in 9:
# these wrappers are the only places that call them, through ``Any`` so that the same code
# checks under both, and mypy --strict checks everything else.
_ipy_ma: Any = _ma


def magic_arguments() -> Callable[[F], F]:
    return cast("Callable[[F], F]", _ipy_ma.magic_arguments())


def argument(*names: str, **kwargs: Any) -> Callable[[F], F]:
    return cast("Callable[[F], F]", _ipy_ma.argument(*names, **kwargs))


def line_and_cell_magic(func: F) -> F:
    deco: Any = line_cell_magic
    return cast(F, deco(func))


def _display(*objs: Any) -> None:
    import IPython.display

    ipd: Any = IPython.display
    ipd.display(*objs)


def _audio(samples: Any, rate: int) -> Any:
    import IPython.display

    ipd: Any = IPython.display
    return ipd.Audio(samples, rate=rate, normalize=False)


def _accepted(enum_cls: type[enum.Enum]) -> str:
    return ", ".join(str(m.value) for m in enum_cls)


def parse_choice(enum_cls: type[E], value: str, option: str) -> E:
    """``value`` as a member of ``enum_cls``.

    Raises:
        UsageError: not one of the values; the message names ``option``, the value given and
            the values accepted.
    """
    try:
        return enum_cls(value)
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not accepted; accepted: {_accepted(enum_cls)}"
        ) from None


@dataclass(eq=False)
class _Live:
    """A session the magic opened, with what it was opened with."""

    session: Session
    widget: Any
    key: tuple[Any, ...]  # what cannot change on a live session: model, endpoint, recording
    local: bool
    tools: dict[str, Tool] = field(default_factory=dict)  # the notebook tools it was given


@magics_class
class RealtimeMagics(Magics):
    """``%realtime`` / ``%%realtime``. Defaults: ``%config RealtimeMagics.<option> = ...``."""

    model = Unicode("gpt-realtime", help="Model (or Azure deployment) of new sessions.").tag(
        config=True
    )
    voice = Unicode("", help=f"Voice of new sessions ('' = the server's): {_accepted(Voice)}.").tag(
        config=True
    )
    vad = Unicode("server", help=f"Turn detection: {_accepted(Vad)}.").tag(config=True)
    record = Unicode(
        "recordings", help="Folder for recordings of new sessions ('' = do not record)."
    ).tag(config=True)
    url = Unicode("", help="Realtime WebSocket URL ('' = OpenAI, or local without a key).").tag(
        config=True
    )
    local = Bool(False, help="Always use the embedded local backend, even with a key.").tag(
        config=True
    )
    fast = Bool(
        False, help="Local backend: send answer audio as fast as it is made, not in real time."
    ).tag(config=True)
    transport = Unicode(
        "websocket", help=f"How the widget's audio travels: {_accepted(Transport)}."
    ).tag(config=True)
    transcribe = Bool(True, help="Transcribe what the user says (shown in the widget).").tag(
        config=True
    )
    variable = Unicode(
        "rt",
        help="The notebook variable new sessions are bound to (when it holds something else, "
        "the first free one of rt2, rt3, ...).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        init: Any = super().__init__  # untyped in IPython 8, typed in 9
        init(shell=shell, **kwargs)
        self._live: dict[str, _Live] = {}

    # -- configuration validation ----------------------------------------------------------------
    # A bad value is refused with a message and the previous value kept, rather than raised:
    # %config merges the statement into the shell's config before the trait sees it, so a raised
    # TraitError would leave the bad value there and break every later %config and %load_ext.

    def _good(self) -> dict[str, str]:
        # The last accepted value of each validated option. Validators run from inside
        # Configurable.__init__, before __init__ could set this up, hence created on first use.
        good: dict[str, str] = self.__dict__.setdefault("_good_values", {})
        return good

    def _accept(self, proposal: Mapping[str, Any], value: str) -> str:
        self._good()[proposal["trait"].name] = value
        return value

    def _refuse(self, proposal: Mapping[str, Any], accepted: str) -> str:
        name = proposal["trait"].name
        kept = self._good().get(name, str(proposal["trait"].default_value))
        print(
            f"RealtimeMagics.{name} {proposal['value']!r} is not accepted; accepted: {accepted}"
            f" (keeping {kept!r})",
            file=sys.stderr,
        )
        return kept

    @validate("voice")
    def _check_voice(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if value and value not in {v.value for v in Voice}:
            return self._refuse(proposal, f"{_accepted(Voice)} or '' (the server's default)")
        return self._accept(proposal, value)

    @validate("vad")
    def _check_vad(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if value not in {v.value for v in Vad}:
            return self._refuse(proposal, _accepted(Vad))
        return self._accept(proposal, value)

    @validate("transport")
    def _check_transport(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if value not in {t.value for t in Transport}:
            return self._refuse(proposal, _accepted(Transport))
        return self._accept(proposal, value)

    @validate("url")
    def _check_url(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if value and not value.startswith(URL_SCHEMES):
            return self._refuse(
                proposal,
                f"a URL starting with {', '.join(URL_SCHEMES)} or '' (OpenAI, or local without a"
                " key)",
            )
        return self._accept(proposal, value)

    @validate("model")
    def _check_model(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        return (
            self._accept(proposal, value)
            if value.strip()
            else self._refuse(proposal, "a model name")
        )

    @validate("variable")
    def _check_variable(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"])
        if not _is_variable(value):
            return self._refuse(proposal, "a Python name")
        return self._accept(proposal, value)

    # -- the magic -------------------------------------------------------------------------------

    @magic_arguments()
    @argument(
        "command",
        nargs="*",
        help="replay FILE | inspect FILE | diff A B | tools; none: open a session and show it",
    )
    @argument("--model", "-m", help="model or Azure deployment (default: gpt-realtime)")
    @argument("--voice", help=f"one of: {_accepted(Voice)}")
    @argument("--vad", help=f"turn detection: {_accepted(Vad)} (off = push-to-talk)")
    @argument("--record", metavar="DIR", help="record into this folder (default: recordings)")
    @argument("--no-record", action="store_true", help="do not record this session")
    @argument("--url", help="any Realtime WebSocket URL (a gateway, `realtime-nb serve`)")
    @argument("--local", action="store_true", help="use the embedded local backend")
    @argument("--fast", action="store_true", help="local backend: answers as fast as made")
    @argument(
        "--transport",
        help=f"how the widget's audio travels: {_accepted(Transport)} (webrtc: the browser's "
        "own peer connection; the key stays in the kernel)",
    )
    @argument(
        "--name",
        metavar="NAME",
        help="bind the session to NAME (free, or holding a session it replaces; default: rt, "
        "or rt2, rt3... when rt holds something else)",
    )
    @argument("--as", dest="as_name", metavar="NAME", help="the same as --name")
    @argument("-h", "--help", action="store_true", help="show this help and do nothing else")
    @line_and_cell_magic
    def realtime(self, line: str, cell: str | None = None) -> None:
        """Open a Realtime session and show its widget, or inspect/replay/diff recordings.

        ``%%realtime [options]`` takes the cell body as the session's instructions; running the
        cell again updates that live session (instructions, voice, turn detection, tools) rather
        than opening another. Without OPENAI_API_KEY the embedded local backend is used.
        Defaults: ``%config RealtimeMagics``.
        """
        args = _parse(line)
        if args.help:
            print(_parser().format_help().removeprefix("::\n\n"))  # IPython's reST marker
            return
        # IPython splits magic lines without removing quotes: 'a b' arrives as "'a b'".
        for name in ("model", "voice", "vad", "record", "url", "name", "as_name", "transport"):
            setattr(args, name, _unquote(getattr(args, name)))
        args.command = [_unquote(word) for word in args.command]
        if args.command:
            if cell is not None:
                raise UsageError(
                    f"%%realtime takes session options, not the command {args.command[0]!r}; "
                    f"use %realtime {args.command[0]} ..."
                )
            self._run_command(args)
            return
        options = self._session_options(args)
        options["name"], options["name_note"] = self._variable(options)
        if cell is not None:
            instructions = cell.strip()
            if not instructions:
                raise UsageError(
                    "the %%realtime cell is empty: write the session's instructions in it "
                    "(or use the line magic %realtime)"
                )
            options["instructions"] = instructions
            self._open_or_update(options)
        else:
            self._open(options, replacing=True)

    # -- session options -------------------------------------------------------------------------

    def _session_options(self, args: Any) -> dict[str, Any]:
        """The validated session options: the magic's arguments over the configured defaults.

        Raises:
            UsageError: a bad value or a contradiction (each message names the value given and
                the values accepted).
        """
        model = self.model if args.model is None else args.model
        if not model.strip():
            raise UsageError(f"--model {model!r} is not accepted; accepted: a model name")
        voice_text = self.voice if args.voice is None else args.voice
        voice = parse_choice(Voice, voice_text, "--voice").value if voice_text else None
        vad = parse_choice(Vad, self.vad if args.vad is None else args.vad, "--vad")
        transport = parse_choice(
            Transport, self.transport if args.transport is None else args.transport, "--transport"
        )
        if args.record is not None and args.no_record:
            raise UsageError(
                f"--record {args.record!r} and --no-record contradict each other; give one"
            )
        if args.record is not None and not args.record.strip():
            raise UsageError(f"--record {args.record!r} is not accepted; accepted: a folder")
        record: str | None = None if args.no_record else (args.record or self.record or None)
        if record is not None and Path(record).is_file():
            raise UsageError(
                f"--record {record!r} is a file; accepted: a folder (each session gets a new file)"
            )
        url = self.url if args.url is None else args.url
        if url and not url.startswith(URL_SCHEMES):
            raise UsageError(
                f"--url {url!r} is not accepted; accepted: a URL starting with "
                f"{', '.join(URL_SCHEMES)}"
            )
        forced_local = bool(args.local or self.local)
        if forced_local and args.url:
            raise UsageError(
                f"--local and --url {args.url!r} contradict each other; give one "
                "(--local is the embedded backend, --url any other server)"
            )
        if forced_local:
            url = ""
        name_option, given_name = _name_argument(args)
        name = self.variable if given_name is None else given_name
        if not _is_variable(name):
            raise UsageError(
                f"{name_option} {name!r} is not accepted; accepted: a Python variable name"
            )
        return {
            "model": model,
            "voice": voice,
            "vad": vad,
            "transport": transport,
            "record": record,
            "url": url,
            "local": forced_local or (not url and not _has_key(model)),
            "forced_local": forced_local,
            "fast": bool(args.fast or self.fast),
            "name": name,
            "name_option": name_option if given_name is not None else None,
        }

    def _variable(self, options: Mapping[str, Any]) -> tuple[str, str]:
        """The variable the session goes to, and what to say about it when it is not the one
        asked for (see the module docstring).

        Raises:
            UsageError: ``--name`` names a variable holding something other than a Session.
        """
        from ..client.session import Session

        ns: dict[str, Any] = self.shell.user_ns if self.shell is not None else {}
        name: str = options["name"]
        option = options["name_option"]
        if option is not None:
            if name in ns and not isinstance(ns[name], Session):
                raise UsageError(
                    f"{option} {name!r} holds {_describe(ns[name])}, not a realtime_nb Session; "
                    "accepted: a free name, or one holding a Session (which is replaced)"
                )
            return name, ""
        for n in range(1, len(ns) + 2):  # one of these is free
            candidate = name if n == 1 else f"{name}{n}"
            live = self._live.get(candidate)
            if candidate not in ns or (live is not None and ns[candidate] is live.session):
                break
        if candidate == name:
            return name, ""
        return candidate, f" ({name} holds {_describe(ns[name])}; --name NAME chooses another)"

    def notebook_tools(self) -> dict[str, Tool]:
        """The ``@realtime_nb.tool`` functions in the notebook's namespace, by tool name."""
        from ..core.tools import Tool

        found: dict[str, Tool] = {}
        ns = self.shell.user_ns if self.shell is not None else {}
        for var, value in list(ns.items()):
            if isinstance(value, Tool) and not var.startswith("_"):
                found[value.name] = value
        return found

    # -- opening and updating --------------------------------------------------------------------

    def _open(self, options: dict[str, Any], replacing: bool) -> _Live:
        from ..client.session import Session

        name = options["name"]
        old = self._live.pop(name, None)
        if old is not None:
            _close(old)
            if replacing:
                print(f"closed the previous session {name}")
        url: str | None = options["url"] or None
        if options["local"]:
            from .demo import local_backend

            url = local_backend(fast=options["fast"]).url
        tools = self.notebook_tools()
        fields: dict[str, Any] = {
            "turn_detection": options["vad"].turn_detection,
            "tools": list(tools.values()),
        }
        if options["voice"]:
            fields["voice"] = options["voice"]
        if "instructions" in options:
            fields["instructions"] = options["instructions"]
        if self.transcribe:
            fields["transcription"] = True
        if options["transport"] is Transport.WEBRTC:
            fields["transport"] = Transport.WEBRTC.value  # else the Session's default, the relay
        session = Session(
            options["model"],
            url=url,
            api_key=None,
            record=options["record"] if options["record"] is not None else False,
            **fields,
        )
        widget = session.widget()
        if options["local"]:
            widget.backend = LOCAL_FORCED_LABEL if options["forced_local"] else LOCAL_NO_KEY_LABEL
        live = _Live(session, widget, _key(options), options["local"], dict(tools))
        self._live[name] = live
        if self.shell is not None:
            self.shell.user_ns[name] = session
        print(f"session bound to {name}{options.get('name_note', '')}")
        if options["local"]:
            # Information, not a warning: stdout, so Jupyter does not paint it as an error.
            print(f"{name}: {widget.backend}. Set OPENAI_API_KEY for a real model.")
        _display(widget)
        return live

    def _open_or_update(self, options: dict[str, Any]) -> None:
        name = options["name"]
        live = self._live.get(name)
        if live is None or live.session.status in ("closed", "error"):
            self._open(options, replacing=False)
            return
        if live.key != _key(options):
            print(f"{name}: model, backend, recording or transport changed: opening a new session")
            self._open(options, replacing=False)
            return
        fields: dict[str, Any] = {
            "instructions": options["instructions"],
            "turn_detection": options["vad"].turn_detection,
        }
        if options["voice"]:
            fields["voice"] = options["voice"]
        tools = self.notebook_tools()
        if tools.keys() != live.tools.keys() or any(tools[n] is not live.tools[n] for n in tools):
            fields["tools"] = list(tools.values())
            live.tools = dict(tools)
        live.session.update(**fields)
        if self.shell is not None:
            self.shell.user_ns[name] = live.session
        print(f"{name}: updated the live session ({', '.join(fields)})")
        _display(live.widget)

    def live_sessions(self) -> dict[str, Session]:
        """The sessions the magic opened that are still open, by variable name."""
        return {
            n: live.session
            for n, live in self._live.items()
            if live.session.status not in ("closed", "error")
        }

    def sync_tools(self, *_: Any) -> None:
        """Offer new or redefined notebook tools to the live sessions, withdraw deleted ones
        (an IPython ``post_run_cell`` callback; problems are printed, never raised)."""
        if not self._live:
            return
        try:
            tools = self.notebook_tools()
        except Exception as exc:  # a callback must not break the cell that just ran
            print(f"realtime_nb: could not list notebook tools: {exc}", file=sys.stderr)
            return
        for name, live in list(self._live.items()):
            if live.session.status in ("closed", "error"):
                continue
            changed = [t for n, t in tools.items() if live.tools.get(n) is not t]
            gone = [n for n in live.tools if n not in tools]
            try:
                if changed:
                    live.session.add_tool(*changed)
                for n in gone:
                    live.session.remove_tool(n)
            except Exception as exc:  # closed meanwhile, or a tool that cannot be described
                print(f"realtime_nb: {name}: could not update tools: {exc}", file=sys.stderr)
                continue
            live.tools = dict(tools)

    def close_all(self) -> None:
        """Close every session the magic opened (their recordings are finished)."""
        for live in self._live.values():
            _close(live)
        self._live.clear()

    # -- commands --------------------------------------------------------------------------------

    def _run_command(self, args: Any) -> None:
        command = _parse_command(args.command[0])
        operands = args.command[1:]
        given = [
            opt
            for opt, value in (
                ("--model", args.model),
                ("--voice", args.voice),
                ("--vad", args.vad),
                ("--record", args.record),
                ("--url", args.url),
                ("--name", args.name),
                ("--as", args.as_name),
            )
            if value is not None
        ] + [opt for opt, flag in (("--no-record", args.no_record), ("--local", args.local),
                                   ("--fast", args.fast)) if flag]  # fmt: skip
        if given:
            raise UsageError(
                f"%realtime {command.value} takes no session options, got {', '.join(given)}"
            )
        want = command.operands
        if len(operands) != len(want):
            usage = " ".join([command.value, *want])
            raise UsageError(
                f"%realtime {command.value} takes {len(want) or 'no'} operand"
                f"{'' if len(want) == 1 else 's'} ({usage}), got {len(operands)}: "
                f"{' '.join(map(repr, operands)) or 'none'}"
            )
        run: dict[Command, Callable[[list[str]], None]] = {
            Command.INSPECT: self._inspect,
            Command.REPLAY: self._replay,
            Command.DIFF: self._diff,
            Command.TOOLS: lambda _: self._tools(),
        }
        run[command](operands)

    def _inspect(self, operands: list[str]) -> None:
        print(_open_recording(operands[0], "inspect").describe())

    def _replay(self, operands: list[str]) -> None:
        """The replay widget (timeline, both tracks, transcript at the playhead), then the
        recording's summary and items."""
        rec = _open_recording(operands[0], "replay")
        _display(rec.play())
        _display(rec)

    def _diff(self, operands: list[str]) -> None:
        from ..debugging.diff import diff

        a = _open_recording(operands[0], "diff")
        b = _open_recording(operands[1], "diff")
        _display(diff(a, b))

    def _tools(self) -> None:
        tools = self.notebook_tools()
        if not tools:
            print(
                "no tools yet: decorate a function with @realtime_nb.tool in the notebook and "
                "sessions opened by %realtime will offer it"
            )
            return
        offered = {n: set(live.tools) for n, live in self._live.items()}
        for tname, t in sorted(tools.items()):
            params = ", ".join(
                p + ("" if p in t.parameters.get("required", []) else "?")
                for p in t.parameters.get("properties", {})
            )
            where = [n for n, names in offered.items() if tname in names]
            on = f"  [offered to {', '.join(where)}]" if where else ""
            print(f"{tname}({params}){on}\n    {t.description or '(no description)'}")


def _parser() -> Any:
    """The ``%realtime`` argument parser (built by ``@magic_arguments``)."""
    parser = cast(Any, RealtimeMagics.realtime).parser
    # A prefix of an option is a typo, not that option: ``--voic`` must not pass for ``--voice``.
    parser.allow_abbrev = False
    return parser


def _parse(line: str) -> Any:
    """The magic's arguments.

    Raises:
        UsageError: argparse's message; for an unknown option also the accepted ones (and the
            closest, when one is close).
    """
    try:
        return _parser().parse_argstring(line)
    except UsageError as exc:
        message = str(exc)
        if not message.startswith("unrecognized arguments:"):
            raise
        options = [
            "/".join(sorted(a.option_strings, key=len, reverse=True))
            for a in _parser()._actions  # argparse has no public list of its options
            if a.option_strings
        ]
        longs = [o for a in options for o in a.split("/") if o.startswith("--")]
        words = message.split(":", 1)[1].split()
        near = [
            m for w in words if w.startswith("-") for m in difflib.get_close_matches(w, longs, 1)
        ]
        hint = f" (did you mean {' or '.join(dict.fromkeys(near))}?)" if near else ""
        raise UsageError(f"{message}{hint}; accepted options: {', '.join(options)}") from None


def _name_argument(args: Any) -> tuple[str, str | None]:
    """Which of ``--name`` / ``--as`` was given, and its value (``None``: neither).

    Raises:
        UsageError: both, with different values.
    """
    if args.name is not None and args.as_name is not None and args.name != args.as_name:
        raise UsageError(
            f"--name {args.name!r} and --as {args.as_name!r} contradict each other; give one"
        )
    if args.as_name is not None and args.name is None:
        return "--as", args.as_name
    return "--name", args.name


def _is_variable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _describe(value: Any) -> str:
    """``value`` in a few words, for a message about the variable holding it."""
    if isinstance(value, type(sys)):
        return f"the module {value.__name__}"
    return f"a {type(value).__name__}"


def _unquote(value: str | None) -> str | None:
    if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse_command(word: str) -> Command:
    try:
        return Command(word)
    except ValueError:
        raise UsageError(
            f"%realtime {word!r} is not a command; accepted: {_accepted(Command)} "
            "(or options only, to open a session: see %realtime?)"
        ) from None


def _has_key(model: str) -> bool:
    from ..core._endpoints import resolve_endpoint

    try:
        return resolve_endpoint(model) is not None
    except ValueError:  # half-configured Azure settings: let the session report them
        return True


def _key(options: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        options["model"],
        options["url"],
        options["local"],
        options["fast"],
        options["record"],
        options["transport"],
    )


def _close(live: _Live) -> None:
    try:
        live.widget.close()
    finally:
        live.session.close()


def _open_recording(path: str, command: str) -> Any:
    """A recording (``.arrow``, or a JSONL/YAML session log).

    Raises:
        UsageError: no such file (recordings in ``recordings/`` are suggested), or a file in none
            of the accepted formats (they are listed).
    """
    from ..storage.recording import Recording, RecordingFormatError, recordings_in

    p = Path(path)
    if not p.is_file():
        near = [str(r) for r in recordings_in()[-3:]] if Path("recordings").is_dir() else []
        hint = f"; recordings here: {', '.join(near)}" if near else ""
        raise UsageError(f"%realtime {command}: no such file {path!r}{hint}")
    # A recording still being written may not have its header on disk yet: open() says so,
    # where sniffing the content would take it for a cassette.
    try:
        return Recording.open(p) if p.suffix == ".arrow" else Recording.import_file(p)
    except RecordingFormatError as exc:  # not a recording at all: the user gave the wrong file
        raise UsageError(f"%realtime {command}: {exc}") from None


# -- extension entry points ------------------------------------------------------------------------

_loaded: dict[int, RealtimeMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%realtime`` / ``%%realtime`` and the tool-sync callback on ``ipython``."""
    if id(ipython) in _loaded:
        return
    magics = RealtimeMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("post_run_cell", magics.sync_tools)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Close the magic's sessions and remove ``%realtime`` and its callback from ``ipython``."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    magics.close_all()
    ipython.events.unregister("post_run_cell", magics.sync_tools)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("realtime", None)
    ipython.magics_manager.registry.pop(RealtimeMagics.__name__, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
