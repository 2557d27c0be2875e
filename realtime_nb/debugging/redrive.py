"""Re-drive a recorded session: send its user turns to a live server with changed settings.

``redrive(rec, instructions="...")`` opens a new :class:`~realtime_nb.client.session.Session` with the
recorded session's settings, overridden by the ones given, sends each recorded user turn (its
audio exactly as committed, or its text), waits for the answer (tool calls and follow-ups
included) before the next turn, and returns the new recording, whose metadata names its parent
(``meta["parent"]``) and what was changed (``meta["redrive"]``). Compare both with
:func:`realtime_nb.debugging.diff.diff`.

Audio turns are sent with turn detection off and committed by hand, so the new user items hold
exactly the recorded audio whatever the VAD would decide; pass ``turn_detection=...`` to let the
server's VAD cut the turns instead (each turn's audio is then followed by
:data:`TRAILING_SILENCE_MS` of silence). That commit mode is the re-drive's own mechanism, not a
change of settings: it is recorded as ``meta["redrive"]["mode"]``, and ``diff`` shows it as the
re-drive's mode.

Timing (``pace``): by default (:attr:`Pace.RECORDED`) each turn's audio is sent in the pieces and
at the moments the recording sent it (a microphone's chunks at the speed of speech, a file sent at
once stays at once), then committed after the delay the recorded turn had between the end of its
speech and its commit (the VAD's silence wait, or the push-to-talk release). The latencies of the
new recording (from the end of speech, :mod:`realtime_nb.core.metrics`) then compare with the
recorded ones. :attr:`Pace.FAST` sends everything at once: quicker, but its latencies mean little.

:func:`plan_turns` (pure) says what will be sent; :func:`redrive` is the I/O shell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

from ..core._sentinel import UNSET
from ..core.audio import AudioFormat
from ..core.metrics import compute
from ..core.reducer import ConversationState
from ..core.tools import Tool
from ..storage.recording import DEFAULT_DIR, Recording, default_path

__all__ = [
    "TRAILING_SILENCE_MS",
    "Pace",
    "UserTurn",
    "plan_turns",
    "redrive",
    "redrive_batch",
    "settings_changes",
]

JSON = dict[str, Any]

#: Seconds to wait for a turn's answer (its responses, tools and follow-ups) before giving up.
TURN_TIMEOUT_S: Final = 60.0
#: Silence sent after each audio turn when the server's VAD cuts turns: longer than the default
#: ``silence_duration_ms`` (500 ms server VAD; semantic VAD waits up to ~1 s at "auto").
TRAILING_SILENCE_MS: Final = 1200
#: Longest wait before a commit taken over from a recording: a turn whose commit came later than
#: this after its speech (a push-to-talk button held in silence) is not worth waiting for again.
MAX_COMMIT_DELAY_S: Final = 3.0
#: Session settings taken over from the recording (GA session fields the client may set).
_COPIED: Final = (
    "instructions",
    "output_modalities",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "truncation",
    "prompt",
    "include",
    "tracing",
)


class Pace(str, Enum):
    """How a re-drive times the user's audio (see the module docstring)."""

    #: At the speed of speech, each commit after the recorded delay: latencies compare.
    RECORDED = "recorded"
    #: All at once, committed at once: quicker; latencies are not comparable.
    FAST = "fast"

    @classmethod
    def parse(cls, value: Any) -> Pace:
        """Raises ``ValueError`` naming the value and the accepted ones."""
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(repr(p.value) for p in cls)
            raise ValueError(f"pace must be one of {accepted}, got {value!r}") from None


@dataclass(frozen=True)
class UserTurn:
    """One recorded user turn to send again: text, or audio bytes in ``input_format``.

    ``schedule``: how the recording sent that audio, as ``(seconds after the first piece, start
    byte, end byte)`` of ``audio`` (empty: unknown, send it at once). ``commit_delay_s``: how long
    after the end of its speech the recorded turn was committed (``None``: unknown). A re-drive
    at :attr:`Pace.RECORDED` follows both.
    """

    index: int
    kind: str  # "text" | "audio"
    text: str | None = None
    audio: bytes | None = None
    input_format: AudioFormat | None = None
    schedule: tuple[tuple[float, int, int], ...] = ()
    commit_delay_s: float | None = None


def _schedule(
    state: ConversationState, rng: tuple[int, int] | None
) -> tuple[tuple[float, int, int], ...]:
    """The recorded input chunks that overlap ``rng`` of the input timeline, as pieces of the
    turn's audio with their send times relative to the first (cut at whole samples)."""
    if rng is None or not state.input_chunk_times:
        return ()
    a, b = rng
    step = state.input_format.bytes_per_sample
    chunks = state.input_chunk_times
    out: list[tuple[float, int, int]] = []
    t_first: int | None = None
    n = len(chunks)
    # From the chunk holding byte a to the last one starting before b (offsets only grow): a
    # turn costs its own chunks, not the whole session's.
    for k in range(max(chunks.index_at(a), 0), n):
        t_ns, off = chunks[k]
        if off >= b:
            break
        end = chunks[k + 1][1] if k + 1 < n else len(state.input_audio)
        lo, hi = max(a, off), min(b, end)
        if hi <= lo:
            continue
        if t_first is None:
            t_first = t_ns
        lo, hi = (lo - a) // step * step, (hi - a) // step * step
        if hi > lo:
            out.append(((t_ns - t_first) / 1e9, lo, hi))
    return tuple(out)


def plan_turns(state: ConversationState) -> list[UserTurn]:
    """The recorded user turns, in order, as what to send (turns with no item are skipped)."""
    out: list[UserTurn] = []
    timings = {t.index: t for t in compute(state).turns}
    for turn in state.turns:
        item = state.items_by_id.get(turn.item_id) if turn.item_id else None
        if item is None or item.role != "user":
            continue
        if turn.kind == "text" or any(p.type == "input_text" for p in item.content):
            out.append(UserTurn(len(out), "text", text=item.text))
            continue
        audio = state.item_audio(item.id)
        if audio:
            m = timings.get(turn.index)
            delay = None
            if m is not None and m.speech_end_s is not None and m.committed_s is not None:
                delay = min(max(m.committed_s - m.speech_end_s, 0.0), MAX_COMMIT_DELAY_S)
            part = item.audio_part()
            rng = part.input_range if part is not None and part.inline_audio is None else None
            out.append(
                UserTurn(
                    len(out),
                    "audio",
                    audio=audio,
                    input_format=state.input_format,
                    schedule=_schedule(state, rng),
                    commit_delay_s=delay,
                )
            )
    return out


def settings_changes(
    session_fields: Mapping[str, Any], *, instructions: Any, tools: Any, voice: Any
) -> JSON:
    """The session settings a re-drive changes: ``session_fields`` plus each of instructions,
    tools and voice that is not :data:`~realtime_nb.core._sentinel.UNSET`."""
    changed: JSON = dict(session_fields)
    for name, value in (("instructions", instructions), ("tools", tools), ("voice", voice)):
        if value is not UNSET:
            changed[name] = value
    return changed


def _recorded_settings(rec: Recording) -> JSON:
    req = rec.state.requested_session
    out: JSON = {k: req[k] for k in _COPIED if k in req}
    audio = req.get("audio")
    if isinstance(audio, dict):
        out["audio"] = json.loads(json.dumps(audio))  # a deep copy we may edit
    return out


def recorded_tools(rec: Recording) -> list[Tool]:
    """Stand-ins for the recording's function tools that answer with the recorded outputs.

    A call with the same name and arguments as a recorded one gets that call's output; a call
    with new arguments gets the first recorded output of that tool (the closest thing to what the
    tool said); a tool never called in the recording raises :class:`LookupError`, which the
    session sends back to the model as an error output. Pass ``tools=`` to run real functions.
    """
    st = rec.state
    outputs: dict[str, str] = {}
    for item in st.items_by_id.values():
        if item.type == "function_call_output" and item.call_id and item.output is not None:
            outputs[item.call_id] = item.output
    by_call: dict[tuple[str, str], str] = {}
    by_name: dict[str, str] = {}
    for item in st.items_by_id.values():
        if item.type == "function_call" and item.name and item.call_id in outputs:
            out = outputs[item.call_id or ""]
            by_call.setdefault((item.name, _canonical_args(item.arguments)), out)
            by_name.setdefault(item.name, out)
    stand_ins: list[Tool] = []
    for definition in _recorded_settings(rec).get("tools") or []:
        if not isinstance(definition, dict) or definition.get("type", "function") != "function":
            continue
        name = str(definition.get("name") or "")
        if not name:
            continue

        def replay(_name: str = name, **kwargs: Any) -> str:
            key = (_name, _canonical_args(json.dumps(kwargs)))
            if key in by_call:
                return by_call[key]
            if _name in by_name:
                return by_name[_name]
            raise LookupError(f"the recording has no output of {_name}; pass tools= to run it")

        stand_ins.append(
            Tool(
                func=replay,
                name=name,
                description=str(definition.get("description") or ""),
                parameters=dict(definition.get("parameters") or {"type": "object"}),
            )
        )
    return stand_ins


def _canonical_args(arguments: str | None) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True)
    except ValueError:
        return arguments or ""


def redrive(
    recording: Recording | str | Path,
    *,
    instructions: Any = UNSET,
    tools: Any = UNSET,
    voice: Any = UNSET,
    url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    record: str | Path | None = None,
    turn_timeout: float = TURN_TIMEOUT_S,
    progress: bool = True,
    name: str | None = None,
    pace: Pace | str = Pace.RECORDED,
    **session_fields: Any,
) -> Recording:
    """Send ``recording``'s user turns to a live server with changed settings; return the new
    recording.

    Args:
        recording: the parent (a Recording or a path).
        instructions, tools, voice, **session_fields: settings that replace the recorded ones
            (any :class:`~realtime_nb.client.session.Session` field, e.g. ``turn_detection``).
            ``tools`` left out keeps the recorded tools, answered with their recorded outputs
            (:func:`recorded_tools`); pass ``@tool`` functions to run real code.
        url, api_key, model: where to connect (``model`` defaults to the recorded one; with no
            ``url`` and no key, :class:`Session` starts its embedded local server).
        record: the new ``.arrow`` file or a folder (default: ``recordings/``).
        turn_timeout: seconds to wait for each turn's answer.
        progress: show a tqdm progress bar over the turns (when tqdm is installed).
        name: a label stored in ``meta["redrive"]["name"]`` (batch variants use their key).
        pace: ``"recorded"`` (default: audio at the speed of speech, each commit after the
            recorded delay, so latencies compare) or ``"fast"`` (see :class:`Pace`).

    Raises:
        ValueError: the recording has no user turns to send, or an unknown ``pace``.
        TimeoutError: a turn got no complete answer within ``turn_timeout``.
        SessionClosedError: the connection failed or was lost.
    """
    from ..client.session import Session

    the_pace = Pace.parse(pace)
    paced = the_pace is Pace.RECORDED
    parent = recording if isinstance(recording, Recording) else Recording.import_file(recording)
    turns = plan_turns(parent.state)
    if not turns:
        raise ValueError(
            "this recording has no user turns to re-drive (no committed audio nor text items)"
        )
    changed = settings_changes(session_fields, instructions=instructions, tools=tools, voice=voice)
    fields = _recorded_settings(parent)
    audio_cfg = fields.get("audio") or {}
    vad_given = "turn_detection" in changed
    # Manual turns unless asked otherwise: the new items hold exactly the recorded audio.
    if not vad_given:
        changed_audio = dict(audio_cfg)
        inp = dict(changed_audio.get("input") or {})
        inp["turn_detection"] = None
        changed_audio["input"] = inp
        audio_cfg = changed_audio
    else:
        inp = dict(audio_cfg.get("input") or {})
        inp.pop("turn_detection", None)
        audio_cfg = {**audio_cfg, "input": inp}
    if voice is not UNSET:
        out = dict(audio_cfg.get("output") or {})
        out.pop("voice", None)
        audio_cfg = {**audio_cfg, "output": out}
    fields["audio"] = audio_cfg
    fields.update(changed)
    if "tools" not in changed and fields.get("tools"):
        fields["tools"] = recorded_tools(parent)

    target = Path(record) if record is not None else DEFAULT_DIR
    the_model = model or parent.meta.get("model") or "gpt-realtime"
    if target.is_dir() or not target.suffix:
        target = default_path(f"{the_model}-redrive", target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; recordings are never overwritten")

    bar: Any = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(turns), desc=f"re-driving {name or 'session'}", unit="turn")
        except ImportError:  # tqdm is optional: no bar
            bar = None
    parent_meta: JSON = {
        "path": str(parent.path) if parent.path is not None else None,
        "started_at": parent.meta.get("started_at"),
        "model": parent.meta.get("model"),
    }
    lineage = {
        "parent": parent_meta,
        "redrive": {
            "name": name,
            "changed": _jsonable(changed),
            "turns": len(turns),
            "mode": _mode(
                vad_given and changed.get("turn_detection") is not None, the_pace, vad_given
            ),
        },
    }
    session = Session(the_model, url=url, api_key=api_key, record=target, meta=lineage, **fields)
    try:
        for turn in turns:
            if turn.kind == "text":
                if not (turn.text or "").strip():
                    continue  # nothing to say (an image-only message, say): send_text refuses it
                session.send_text(turn.text or "")
            else:
                assert turn.audio is not None
                if paced and turn.schedule:
                    _send_as_recorded(session, turn)
                else:
                    session.send_audio(turn.audio)
                if vad_given and changed.get("turn_detection") is not None:
                    silence = b"\x00" * session.input_format.bytes_for_ms(TRAILING_SILENCE_MS)
                    session.send_audio(silence, realtime=paced)
                else:
                    if paced and turn.commit_delay_s:
                        time.sleep(turn.commit_delay_s)  # the recorded end-of-turn wait
                    session.commit()
                    session.respond()
            session.wait_for("response.done", turn_timeout)
            session.wait_until_idle(turn_timeout)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        session.close()
    return Recording.open(target)


def _send_as_recorded(session: Any, turn: UserTurn) -> None:
    """Send a turn's audio in the recorded pieces, each at its recorded moment."""
    assert turn.audio is not None
    t0 = time.monotonic()
    for rel_s, a, b in turn.schedule:
        wait = t0 + rel_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        session.send_audio(turn.audio[a:b])


def _mode(vad: bool, pace: Pace, caller_set: bool) -> JSON:
    """What the re-drive's own mechanism set (``meta["redrive"]["mode"]``); ``settings`` names
    the session settings it set itself (none when the caller chose turn detection)."""
    if vad:
        how = "the server's VAD cuts the turns (turn detection as given)"
    else:
        how = "each recorded turn's exact audio, committed by hand (turn detection off)"
    timing = (
        "sent as the recording sent it, each commit after the recorded delay"
        if pace is Pace.RECORDED
        else "sent at once (fast: latencies are not comparable)"
    )
    return {
        "commit": "vad" if vad else "manual",
        "pace": pace.value,
        "settings": [] if caller_set else ["turn_detection"],
        "description": f"{how}; {timing}",
    }


def _jsonable(value: Any) -> Any:
    """Settings as JSON for the metadata (``@tool`` functions become their definitions)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    definition = getattr(value, "definition", None)
    if callable(definition):
        return _jsonable(definition())
    return repr(value)


def redrive_batch(
    recording: Recording | str | Path,
    variants: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    *,
    record: str | Path | None = None,
    **common: Any,
) -> dict[str, Recording]:
    """Re-drive once per variant of settings; returns ``{variant name: new recording}``.

    ``variants`` is ``{"terse": {"instructions": ...}, ...}`` or a list of settings dicts (named
    ``"0"``, ``"1"``, ...). ``common`` goes to every :func:`redrive` call; ``record`` is a folder.

    Raises:
        TypeError: a variant that is not a mapping of settings.
    """
    named: Iterable[tuple[str, Mapping[str, Any]]]
    named = (
        variants.items()
        if isinstance(variants, Mapping)
        else ((str(i), v) for i, v in enumerate(variants))
    )
    parent = recording if isinstance(recording, Recording) else Recording.import_file(recording)
    folder = Path(record) if record is not None else DEFAULT_DIR
    out: dict[str, Recording] = {}
    for key, settings in named:
        if not isinstance(settings, Mapping):
            raise TypeError(
                f"variant {key!r} must be a mapping of settings, got {type(settings).__name__}"
            )
        out[key] = redrive(parent, record=folder, name=key, **{**common, **settings})
    return out
