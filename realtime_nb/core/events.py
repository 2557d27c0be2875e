"""One event of a session, as the recorder, the reducer and every view see it (pure).

An :class:`Event` is one row of a recording: where it came from, when, its wire type, its JSON
payload *without* the audio field, and the audio as raw bytes. Audio never travels as base64 inside
realtime_nb; :meth:`Event.wire` re-creates the exact wire dict when one is needed (to resend it).

:func:`split_audio` is the one place that turns a wire event into ``(payload_text, audio)``. It
works on the frame text the session already holds, so recording never serializes an event twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import orjson

from ._redact import needs_redaction, redact_text
from .audio import b64decode_audio, b64encode_audio
from .protocol import AUDIO_FIELDS, Source

__all__ = ["Event", "extract_ids", "split_audio"]

JSON = dict[str, Any]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
# Payloads are parsed with orjson: 2.4x faster than the standard library's raw_decode on a
# recording's events (60 minutes' 6,700 non-audio payloads: 0.010 s against 0.023 s). What it
# refuses and ``json`` takes (NaN, integers past 64 bits, lone surrogates) goes through json.
_fast_loads = orjson.loads

#: Value left in place of the audio field in a payload: keeps the key (and its position) visible.
AUDIO_PLACEHOLDER: Final = ""


class Event:
    """A recorded event. Cheap to create; ``data`` is parsed from the payload text only on access.

    Attributes:
        seq: position in the session (0, 1, 2, ...).
        t_ns: monotonic nanoseconds since the session started.
        source: :class:`~realtime_nb.core.protocol.Source` (client = sent, server = received, local).
        type: the event type exactly as on the wire (beta names are *not* rewritten here).
        audio: the decoded audio of an audio event, or ``None``.
        event_id, item_id, response_id: ids found in the event (top level or nested item/response).
    """

    __slots__ = (
        "_data",
        "_payload",
        "_unchecked",
        "audio",
        "event_id",
        "item_id",
        "response_id",
        "seq",
        "source",
        "t_ns",
        "type",
    )

    def __init__(
        self,
        seq: int,
        t_ns: int,
        source: Source,
        type: str,
        *,
        data: JSON | None = None,
        payload: str | None = None,
        audio: bytes | None = None,
        event_id: str | None = None,
        item_id: str | None = None,
        response_id: str | None = None,
    ) -> None:
        if data is None and payload is None:
            raise ValueError("an Event needs its data or its payload text")
        self.seq = seq
        self.t_ns = t_ns
        self.source = source
        self.type = type
        self._data = data
        self._payload = payload
        # The known secrets while ``_payload`` (frame text) is not yet checked for them: the
        # check, and the redaction when one is needed, runs on the first read of data or
        # payload. The recorder makes such events (storage.recording.Recorder.append) and
        # checks what it writes a batch at a time: an event nobody reads costs nothing more.
        self._unchecked: tuple[str, ...] | None = None
        self.audio = audio
        self.event_id = event_id
        self.item_id = item_id
        self.response_id = response_id

    def _check(self) -> None:
        secrets = self._unchecked
        text = self._payload
        if secrets is not None and text is not None and needs_redaction(text, secrets):
            red = redact_text(text, secrets)
            if red is not text:
                self._payload, self._data = red, None
        self._unchecked = None

    @property
    def data(self) -> JSON:
        """The event as a dict, with its audio field (if any) set to ``""``. Do not mutate."""
        if self._unchecked is not None:
            self._check()
        if self._data is None:
            payload = self._payload
            assert payload is not None
            parsed: Any
            try:
                parsed = _fast_loads(payload)
            except ValueError:  # orjson.JSONDecodeError
                try:
                    parsed = _loads(payload)
                except ValueError:
                    parsed = {"type": self.type, "_unparsed": payload}
            self._data = (
                parsed if isinstance(parsed, dict) else {"type": self.type, "_value": parsed}
            )
        return self._data

    @property
    def payload(self) -> str:
        """The JSON text of :attr:`data` (as recorded)."""
        if self._unchecked is not None:
            self._check()
        if self._payload is None:
            assert self._data is not None
            self._payload = _dumps(self._data)
        return self._payload

    def wire(self) -> JSON:
        """The event as it was (or would be) on the wire: audio put back as base64."""
        data = self.data
        field = AUDIO_FIELDS.get(self.type)
        if field is None or self.audio is None:
            return dict(data)
        out = dict(data)
        out[field] = b64encode_audio(self.audio)
        return out

    def to_dict(self) -> JSON:
        """A JSON-ready record: seq, t_ns, source, and the wire event."""
        return {
            "seq": self.seq,
            "t_ns": self.t_ns,
            "source": self.source.value,
            "event": self.wire(),
        }

    def __repr__(self) -> str:
        extra = f", {len(self.audio)} audio bytes" if self.audio else ""
        arrow = {"client": "->", "server": "<-", "local": "::"}[self.source.value]
        return f"<Event #{self.seq} {self.t_ns / 1e9:.3f}s {arrow} {self.type}{extra}>"


def extract_ids(data: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(event_id, item_id, response_id)`` of an event, looking into nested item/response."""
    event_id = data.get("event_id")
    item_id = data.get("item_id")
    response_id = data.get("response_id")
    if item_id is None:
        item = data.get("item")
        if isinstance(item, dict):
            item_id = item.get("id")
    if response_id is None:
        resp = data.get("response")
        if isinstance(resp, dict):
            response_id = resp.get("id")
    return (
        event_id if isinstance(event_id, str) else None,
        item_id if isinstance(item_id, str) else None,
        response_id if isinstance(response_id, str) else None,
    )


def _decode_canonical(b64: str) -> bytes | None:
    """Decode base64 only if re-encoding gives the same text back, else ``None``.

    Non-canonical input (whitespace, odd padding bits, invalid characters) is left in the payload
    untouched, so that what was received can always be reproduced exactly.
    """
    try:
        audio = b64decode_audio(b64)
    except ValueError:
        return None
    n = len(audio)
    if len(b64) != 4 * ((n + 2) // 3):
        return None
    if b64[-1] != "=":  # no padding: validated text of whole groups is canonical
        return audio
    # Only the last 4-character group can hide non-canonical bits: check just that one.
    tail_start = ((n - 1) // 3) * 3 if n else 0
    tail = b64encode_audio(audio[tail_start:])
    if not b64.endswith(tail):
        return None
    return audio


_QUOTED_KEYS: Final = {f: f'"{f}"' for f in set(AUDIO_FIELDS.values())}
_WS: Final = " \t\r\n"


def _cut_value(raw: str, field: str, value: str) -> str | None:
    """``raw`` with the string ``value`` of key ``field`` emptied, or ``None`` if not found.

    Looks for the key (a short search near the start of the frame) and then compares the value
    in place, instead of searching for the long base64 text itself.
    """
    key = _QUOTED_KEYS.get(field) or f'"{field}"'
    n = len(raw)
    i = raw.find(key)
    while i != -1:
        j = i + len(key)
        while j < n and raw[j] in _WS:
            j += 1
        if j < n and raw[j] == ":":
            j += 1
            while j < n and raw[j] in _WS:
                j += 1
            end = j + 1 + len(value)
            if (
                j < n
                and raw[j] == '"'
                and raw.startswith(value, j + 1)
                and end < n
                and raw[end] == '"'
            ):
                return raw[: j + 1] + raw[end:]
        i = raw.find(key, i + 1)
    return None


def split_audio(
    event_type: str, data: JSON, raw: str | None = None, audio: bytes | None = None
) -> tuple[str | None, JSON | None, bytes | None]:
    """Separate an event's audio from the rest: ``(payload_text, payload_dict, audio)``.

    Exactly one of ``payload_text`` and ``payload_dict`` is not ``None`` (whichever was cheaper to
    produce); both describe the event with its audio field set to ``""``.

    - ``raw`` is the frame text as sent/received; when given, the payload is cut from it (the base64
      text removed) instead of re-serializing the event.
    - ``audio`` is the already-decoded audio, when the caller has it (the session sending PCM),
      which skips decoding.
    """
    field = AUDIO_FIELDS.get(event_type)
    b64 = data.get(field) if field is not None else None
    if not isinstance(b64, str) or not b64:
        return (raw, None, None) if raw is not None else (None, data, None)
    assert field is not None
    if audio is None:
        audio = _decode_canonical(b64)
        if audio is None:  # keep what cannot be reproduced byte-exact as it was
            return (raw, None, None) if raw is not None else (None, data, None)
    if raw is not None:
        cut = _cut_value(raw, field, b64)
        if cut is not None:
            return cut, None, audio
    out = dict(data)
    out[field] = AUDIO_PLACEHOLDER
    return None, out, audio
