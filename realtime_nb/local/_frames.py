"""Client WebSocket frames -> JSON objects, refusing what JSON or the API does not allow. Pure.

Python's :mod:`json` is more lenient than the API's parser in two ways that matter to a server:
it reads ``NaN``, ``Infinity`` and ``-Infinity`` (and turns ``1e400`` into ``inf``), which then
pass every ``<``/``>`` range check and break arithmetic later; and it recurses once per nesting
level, so a 2 KB frame of ``[[[[...`` raises ``RecursionError`` instead of a parse error. Here
nesting is bounded *before* parsing (a scan of the brackets outside strings, done only when the
frame has enough brackets to matter) and non-finite numbers are caught while parsing and named by
their path after it, so the client learns which field was wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from ._config import ClientError

__all__ = ["MAX_EVENT_BYTES", "MAX_JSON_DEPTH", "find_non_finite", "parse_frame"]

JSON = dict[str, Any]

#: Largest client frame parsed: the API documents 15 MiB for an append; JSON around it is small.
MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
#: Deepest nesting accepted. The deepest event the API documents (a session.update with a tool
#: whose JSON schema nests objects in arrays) is ~15 levels; 64 leaves room for real schemas and
#: stays far below the interpreter's recursion limit, which ``json``, ``copy.deepcopy`` and
#: ``json.dumps`` of the event (each a few frames per level) must never reach.
MAX_JSON_DEPTH: Final = 64
#: Characters of a bad frame quoted back in an error message.
QUOTE_CHARS: Final = 80

#: A JSON string (skipped whole) or one bracket: enough to measure nesting without parsing.
_TOKEN_RE: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def quote(text: str) -> str:
    """``text`` cut to :data:`QUOTE_CHARS` characters for an error message."""
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def _too_deep(text: str) -> bool:
    # Nesting deeper than MAX_JSON_DEPTH needs more brackets than that: most frames (audio
    # appends, small events) stop at this C-speed count and are never scanned.
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for m in _TOKEN_RE.finditer(text):
        token = m.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


class _Numbers:
    """``json.loads`` hooks that note a non-finite number (the path is found afterwards)."""

    def __init__(self) -> None:
        self.non_finite = False

    def constant(self, token: str) -> float:  # "NaN", "Infinity", "-Infinity"
        self.non_finite = True
        return float(token.replace("Infinity", "inf"))

    def float_(self, token: str) -> float:
        value = float(token)
        if not math.isfinite(value):  # 1e400 and the like overflow to inf
            self.non_finite = True
        return value


def parse_frame(frame: str | bytes) -> tuple[JSON, bool]:
    """The client event in ``frame``, and whether it holds a non-finite number somewhere (find it
    with :func:`find_non_finite` once the event's ``event_id`` is known).

    Raises:
        ClientError: the frame is binary, too large, not JSON, nested deeper than
            :data:`MAX_JSON_DEPTH`, or not a JSON object.
    """
    if isinstance(frame, bytes):
        # The API reads events from text frames only; raw audio in a binary frame is a common
        # mistake, so the message says where audio goes instead.
        raise ClientError(
            "invalid_json",
            f"The server failed to parse the event: got a binary WebSocket frame "
            f"({len(frame)} bytes). Send every event as a JSON text frame; audio goes "
            f"base64-encoded in input_audio_buffer.append.",
        )
    if len(frame) > MAX_EVENT_BYTES:
        raise ClientError(
            "event_too_large",
            f"The event is {len(frame)} bytes; the server accepts events up to "
            f"{MAX_EVENT_BYTES} bytes. Split audio into several input_audio_buffer.append "
            f"events.",
        )
    if _too_deep(frame):
        raise ClientError(
            "invalid_json",
            f"The server failed to parse the event: JSON nested more than {MAX_JSON_DEPTH} "
            f"levels deep: {quote(frame)!r}",
        )
    numbers = _Numbers()
    try:
        event = json.loads(frame, parse_constant=numbers.constant, parse_float=numbers.float_)
    except json.JSONDecodeError as exc:
        raise ClientError(
            "invalid_json",
            f"The server failed to parse the event as JSON ({exc.msg} at character "
            f"{exc.pos}): {quote(frame)!r}",
        ) from None
    except ValueError:  # an integer beyond Python's 4300-digit conversion limit
        raise ClientError(
            "invalid_json",
            "The server failed to parse the event as JSON: a number has too many digits.",
        ) from None
    except RecursionError:  # unreachable after _too_deep; kept so that nesting never escapes
        raise ClientError(
            "invalid_json",
            f"The server failed to parse the event: JSON nested more than {MAX_JSON_DEPTH} "
            f"levels deep.",
        ) from None
    if not isinstance(event, dict):
        raise ClientError(
            "invalid_event",
            f"An event must be a JSON object, got {type(event).__name__}: {quote(frame)!r}",
        )
    return event, numbers.non_finite


def find_non_finite(event: JSON) -> ClientError | None:
    """The error for the first NaN/Infinity in ``event`` (depth first), naming its path."""
    stack: list[tuple[Any, str]] = [(event, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key in reversed(list(value)):
                stack.append((value[key], f"{path}.{key}" if path else str(key)))
        elif isinstance(value, list):
            for i in reversed(range(len(value))):
                stack.append((value[i], f"{path}[{i}]"))
        elif isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return ClientError(
                "invalid_json",
                f"Invalid '{path}': {shown} is not a JSON number (JSON numbers are finite; a "
                f"number too large for a 64-bit float counts as infinite).",
                path,
            )
    return None
