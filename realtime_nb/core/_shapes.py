"""The shape each server event type promises, for the fields realtime_nb reads (pure).

A server may send valid JSON of the wrong shape: ``{"type": "error", "error": "rate limited"}``,
a ``response.created`` whose ``response`` is a string, an ``audio_end_ms`` of ``NaN``. The
:class:`~realtime_nb.core.reducer.Reducer` asks :func:`shape_problem` about every server event
before it acts on one, and ignores an event that breaks its type's promise (the recording keeps
it; the client reports it once as ``local.protocol.invalid_event``).

This is deliberately not the published schema: :data:`SERVER_SHAPES` lists only the fields the
reducer and the client's policies read, with their JSON types, so the check costs a few
``isinstance`` calls per event (deltas included), one pass over a list of items the event
carries, and a walk of the objects the reducer keeps whole (their nesting is bounded by
:data:`MAX_DEPTH`): work bounded by the event's own size. A field that is absent or ``null`` is not a problem (providers omit fields the
API always sends, xAI sends ``null`` ids); a field that is present with another type is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["MAX_DEPTH", "SERVER_SHAPES", "ShapeProblem", "shape_problem"]

#: ``str``, ``object``, ``list``, a non-negative ``integer`` (an index), a finite non-negative
#: ``number`` (milliseconds).
Kind = Literal["str", "obj", "list", "index", "ms"]
#: One field: its key, its kind, and for an object (or a list of objects) the fields inside it.
Rule = tuple[str, Kind, "tuple[Rule, ...]"]

_EXPECTED: Final[dict[str, str]] = {
    "str": "a string",
    "obj": "an object",
    "list": "an array",
    "index": "a non-negative integer",
    "ms": "a finite non-negative number",
}
#: How much of a wrong scalar value a problem quotes (enough to recognise ``"rate limited"``).
_EXCERPT_CHARS: Final = 80
#: Deepest nesting kept from a server event. The deepest event the API documents (a session
#: with a tool whose JSON schema nests objects in arrays) is ~15 levels; 64 leaves room for real
#: schemas and stays far below the interpreter's recursion limit, which ``copy.deepcopy`` of the
#: state (``Session.snapshot()``, the widget's view) and ``json.dumps`` reach at a few frames per
#: level (the local server refuses client frames past the same depth).
MAX_DEPTH: Final = 64


@dataclass(frozen=True)
class ShapeProblem:
    """What is wrong with an event: ``field`` (a path, ``[]`` for any list element) should be
    ``expected`` but is ``got``; ``value`` quotes a wrong scalar (``""`` for objects, lists)."""

    field: str
    expected: str
    got: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.field} should be {self.expected}, not {self.got}"


def _f(key: str, kind: Kind, *inner: Rule) -> Rule:
    return (key, kind, inner)


_ITEM: Final = (
    _f("id", "str"), _f("type", "str"), _f("role", "str"), _f("status", "str"),
    _f("name", "str"), _f("call_id", "str"), _f("arguments", "str"), _f("output", "str"),
    _f("content", "list"),
)  # fmt: skip
#: Not ``status_details``: xAI sends a string there ("unimplemented"), which the reducer reads
#: as "no details"; nothing is decided from it.
_RESPONSE: Final = (
    _f("id", "str"), _f("status", "str"), _f("conversation_id", "str"),
    _f("output", "list", *_ITEM), _f("output_modalities", "list"), _f("modalities", "list"),
    _f("metadata", "obj"), _f("usage", "obj"),
)  # fmt: skip
_ERROR: Final = (
    _f("type", "str"), _f("code", "str"), _f("message", "str"), _f("param", "str"),
    _f("event_id", "str"),
)  # fmt: skip
_PART: Final = (_f("type", "str"), _f("text", "str"), _f("transcript", "str"))
#: Where an output event points: its item, its response, its place in them.
_AT: Final = (
    _f("item_id", "str"), _f("response_id", "str"), _f("output_index", "index"),
    _f("content_index", "index"),
)  # fmt: skip
_ITEM_EVENT: Final = (_f("item", "obj", *_ITEM), _f("previous_item_id", "str"))
_TRANSCRIPTION: Final = (_f("item_id", "str"), _f("content_index", "index"))
_MCP: Final = (_f("item_id", "str"), _f("error", "obj"))
_SESSION: Final = (
    _f(
        "session",
        "obj",
        _f("audio", "obj", _f("input", "obj"), _f("output", "obj")),
        _f("expires_at", "ms"),  # epoch seconds: when the connection's rollover is due
    ),
)

#: Per GA server event type (beta names are mapped to GA first), the fields realtime_nb reads.
#: A type not listed here is only counted; ``response.output_audio.delta`` is listed for frames
#: whose audio could not be split off (the usual ones take the reducer's hot path, which reads
#: only the recorded ids and audio).
SERVER_SHAPES: Final[dict[str, tuple[Rule, ...]]] = {
    "error": (_f("error", "obj", *_ERROR),),
    "session.created": _SESSION,
    "session.updated": _SESSION,
    "conversation.created": (_f("conversation", "obj", _f("id", "str")),),
    "conversation.item.added": _ITEM_EVENT,
    "conversation.item.done": _ITEM_EVENT,
    "conversation.item.retrieved": _ITEM_EVENT,
    "conversation.item.truncated": (
        _f("item_id", "str"),
        _f("audio_end_ms", "ms"),
        _f("content_index", "index"),
    ),
    "conversation.item.deleted": (_f("item_id", "str"),),
    "conversation.item.input_audio_transcription.delta": (*_TRANSCRIPTION, _f("delta", "str")),
    "conversation.item.input_audio_transcription.completed": (
        *_TRANSCRIPTION,
        _f("transcript", "str"),
        _f("status", "str"),
    ),
    "conversation.item.input_audio_transcription.updated": (
        *_TRANSCRIPTION,
        _f("transcript", "str"),
    ),
    "conversation.item.input_audio_transcription.failed": (*_TRANSCRIPTION, _f("error", "obj")),
    "conversation.item.input_audio_transcription.segment": (
        *_TRANSCRIPTION,
        _f("id", "str"),
        _f("text", "str"),
        _f("speaker", "str"),
        _f("start", "ms"),  # seconds, kept with the segment
        _f("end", "ms"),
    ),
    "input_audio_buffer.speech_started": (_f("item_id", "str"), _f("audio_start_ms", "ms")),
    "input_audio_buffer.speech_stopped": (_f("item_id", "str"), _f("audio_end_ms", "ms")),
    "input_audio_buffer.committed": (_f("item_id", "str"), _f("previous_item_id", "str")),
    "response.created": (_f("response", "obj", *_RESPONSE),),
    "response.done": (_f("response", "obj", *_RESPONSE), _f("usage", "obj")),
    "response.output_item.added": (
        _f("item", "obj", *_ITEM),
        _f("response_id", "str"),
        _f("output_index", "index"),
    ),
    "response.output_item.done": (
        _f("item", "obj", *_ITEM),
        _f("response_id", "str"),
        _f("output_index", "index"),
    ),
    "response.content_part.added": (*_AT, _f("part", "obj", *_PART)),
    "response.content_part.done": (*_AT, _f("part", "obj", *_PART)),
    "response.output_text.delta": (*_AT, _f("delta", "str")),
    "response.output_text.done": (*_AT, _f("text", "str")),
    "response.output_audio.delta": (*_AT, _f("delta", "str")),
    "response.output_audio_transcript.delta": (*_AT, _f("delta", "str")),
    "response.output_audio_transcript.done": (*_AT, _f("transcript", "str")),
    "response.function_call_arguments.delta": (*_AT, _f("call_id", "str"), _f("delta", "str")),
    "response.function_call_arguments.done": (
        *_AT,
        _f("call_id", "str"),
        _f("name", "str"),
        _f("arguments", "str"),
    ),
    "response.mcp_call_arguments.delta": (*_AT, _f("delta", "str")),
    "response.mcp_call_arguments.done": (*_AT, _f("arguments", "str")),
    "response.mcp_call.in_progress": _MCP,
    "response.mcp_call.completed": _MCP,
    "response.mcp_call.failed": _MCP,
    "mcp_list_tools.failed": _MCP,
}


#: Per type, the fields the reducer keeps whole (objects, arrays): the only ones whose depth
#: matters, so a delta (no such field) costs nothing more.
_KEPT: Final = {
    etype: tuple(key for key, kind, _ in rules if kind in ("obj", "list"))
    for etype, rules in SERVER_SHAPES.items()
}


def _got(v: Any) -> tuple[str, str]:
    """How to name a wrong value, and a short quote of it (scalars only: quoting a container
    would cost as much as the container)."""
    if isinstance(v, bool):
        return "a boolean", repr(v)
    if isinstance(v, str):
        return "a string", repr(v[:_EXCERPT_CHARS])
    if isinstance(v, (int, float)):
        text = repr(v)
        return "a number", text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."
    if isinstance(v, Mapping):
        return "an object", ""
    if isinstance(v, list):
        return "an array", ""
    return type(v).__name__, ""


def _ok(kind: Kind, v: Any) -> bool:
    if kind == "str":
        return isinstance(v, str)
    if kind == "obj":
        return isinstance(v, Mapping)
    if kind == "list":
        return isinstance(v, list)
    if isinstance(v, bool):
        return False
    if kind == "index":
        return isinstance(v, int) and v >= 0
    # "ms": JSON integers and finite floats; NaN fails the comparison
    return (isinstance(v, int) and v >= 0) or (isinstance(v, float) and 0 <= v < math.inf)


def _check(rules: tuple[Rule, ...], obj: Mapping[str, Any], path: str) -> ShapeProblem | None:
    get = obj.get
    for key, kind, inner in rules:
        v = get(key)
        if v is None:
            continue
        t = type(v)  # the common, right cases first: no call (deltas are a session's bulk)
        if t is str:
            ok = kind == "str"
        elif t is int:
            ok = kind != "str" and kind != "obj" and kind != "list" and v >= 0
        elif t is dict:
            ok = kind == "obj"
        else:
            ok = _ok(kind, v)
        if not ok:
            got, value = _got(v)
            return ShapeProblem(path + key, _EXPECTED[kind], got, value)
        if inner:
            if kind == "obj":
                problem = _check(inner, v, f"{path}{key}.")
            else:  # a list of objects: each element once, so the work is the event's size
                problem = None
                for element in v:
                    if not isinstance(element, Mapping):
                        got, value = _got(element)
                        return ShapeProblem(f"{path}{key}[]", "an object", got, value)
                    problem = _check(inner, element, f"{path}{key}[].")
                    if problem is not None:
                        break
            if problem is not None:
                return problem
    return None


def _too_deep(data: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The key of ``keys`` under which ``data`` nests deeper than :data:`MAX_DEPTH`, if any. Each
    container is visited once (no recursion)."""
    for key in keys:
        value = data.get(key)
        if not isinstance(value, (dict, list)):
            continue
        stack: list[tuple[Any, int]] = [(value, 2)]  # the event itself is level 1
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                return str(key)
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
    return None


def shape_problem(event_type: str, data: Mapping[str, Any]) -> ShapeProblem | None:
    """What is wrong with a server event of (GA) type ``event_type``, or ``None`` when the fields
    realtime_nb reads have the types the protocol promises and nothing in it nests deeper than
    :data:`MAX_DEPTH` (or the type is not one realtime_nb reads)."""
    rules = SERVER_SHAPES.get(event_type)
    if rules is None:
        return None
    problem = _check(rules, data, "")
    kept = _KEPT[event_type]
    if problem is None and kept:  # deltas keep nothing whole: nothing to walk
        deep = _too_deep(data, kept)
        if deep is not None:
            problem = ShapeProblem(deep, f"nested at most {MAX_DEPTH} levels deep", "deeper")
    return problem
