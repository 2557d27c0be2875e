"""The Realtime protocol, sans I/O: event catalogue, beta-to-GA names, client-event builders.

Nothing here touches a socket. Builders return plain ``dict`` events ready for ``json.dumps``;
:func:`canonical_type` maps beta-era names onto GA names so that every consumer (the reducer, the
views, the diff) reasons in GA terms while the events themselves are kept exactly as received.
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

__all__ = [
    "AUDIO_FIELDS",
    "BETA_EVENT_ALIASES",
    "CLIENT_EVENT_TYPES",
    "LOCAL_EVENT_TYPES",
    "SERVER_EVENT_TYPES",
    "ProtocolError",
    "Source",
    "canonical_part_type",
    "canonical_type",
    "client",
    "is_known_type",
    "new_event_id",
    "source_of_type",
    "validate_client_event",
]

JSON = dict[str, Any]


class Source(str, Enum):
    """Where an event came from, from the kernel's point of view."""

    CLIENT = "client"  #: sent by us to the server
    SERVER = "server"  #: received from the server
    LOCAL = "local"  #: happened in the kernel or the browser (mic on, N ms played, ...)

    @classmethod
    def parse(cls, value: str | Source) -> Source:
        """Accept ``Source`` members, their values, and the cassette words ``sent``/``received``.

        Raises:
            ValueError: names the value and the accepted ones.
        """
        if isinstance(value, Source):
            return value
        key = str(value).lower()
        key = _SOURCE_ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            accepted = ", ".join(repr(s.value) for s in cls) + ", 'sent', 'received'"
            raise ValueError(f"unknown event source {value!r}; accepted: {accepted}") from None


_SOURCE_ALIASES: Final = {
    "sent": "client",
    "send": "client",
    "outgoing": "client",
    "out": "client",
    "received": "server",
    "recv": "server",
    "incoming": "server",
    "in": "server",
}


class ProtocolError(ValueError):
    """An event that cannot be built or understood; the message says what and what is accepted."""


#: The 11 GA client event types (``openai.types.realtime.RealtimeClientEvent``).
CLIENT_EVENT_TYPES: Final = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)

#: The 46 GA server event types (``openai.types.realtime.RealtimeServerEvent``).
SERVER_EVENT_TYPES: Final = frozenset(
    {
        "error",
        "session.created",
        "session.updated",
        "conversation.created",
        "conversation.item.created",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.dtmf_event_received",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "response.created",
        "response.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "rate_limits.updated",
    }
)

#: Beta-era (``OpenAI-Beta: realtime=v1``) names still spoken by some servers, mapped to GA.
BETA_EVENT_ALIASES: Final = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}

#: Beta content-part type names mapped to GA.
BETA_PART_ALIASES: Final = {"audio": "output_audio", "text": "output_text"}

#: Events built by realtime_nb itself for things that happened in the kernel or browser.
LOCAL_EVENT_TYPES: Final = frozenset(
    {
        "local.mic.started",
        "local.mic.stopped",
        # {state: "open" | "down", reason}: the widget's mic lane (chunks off the Jupyter comm)
        "local.mic.lane",
        # {view}: a player (a widget view that plays the reply audio) is ready on a page
        "local.player.ready",
        "local.playback.started",  # {item_id}: the first sample of an item reached the speakers
        "local.playback.played",  # {item_id, played_ms, reason}: playback of an item stopped
        "local.connection.opened",  # {url, backend}
        "local.connection.failed",  # {url, backend, message}: no connection (refused, timed out)
        # {code, reason, initiated_by, clean, message}; from a cassette's close: {code, reason, ok}
        "local.connection.closed",
        # {attempt, attempts, delay_s, cause, url, backend}: a new connection will be tried in
        # delay_s seconds (cause: session_expired, rollover, dropped, connect_failed)
        "local.connection.reconnecting",
        "local.session.closed",  # {}: the user closed the session; nothing follows
        "local.tool.started",  # {call_id, name, arguments}
        "local.tool.finished",  # {call_id, name, output, error, duration_ms}; error: str | None
        # {call_id, name, sent_chars, total_chars}: the output was cut to MAX_TOOL_OUTPUT_CHARS
        "local.tool.output_cut",
        # {event_type, event_id, seq, field, problem, value, message}: a server event whose
        # fields have the wrong types was ignored (reported once per event type and problem)
        "local.protocol.invalid_event",
        "local.note",  # {text}
        "local.http",  # a non-WebSocket exchange kept from an imported log (e.g. WebRTC SDP)
        # {audio, rate, t_ns}: microphone audio a WebRTC page tapped (PCM16 mono, the audio in
        # the recording's audio column); t_ns: the session time of its first sample
        "local.track.input",
        # {audio, rate, t_ns, response_id, item_id}: remote-track audio as the page played it;
        # the response and item playing then (null between replies)
        "local.track.output",
    }
)

#: Which field of an event carries base64 audio (the recorder stores it as raw bytes).
AUDIO_FIELDS: Final = {
    "input_audio_buffer.append": "audio",
    "response.output_audio.delta": "delta",
    "response.audio.delta": "delta",
    "local.track.input": "audio",
    "local.track.output": "audio",
}


def canonical_type(event_type: str) -> str:
    """The GA name of an event type (beta aliases mapped; anything else returned unchanged)."""
    return BETA_EVENT_ALIASES.get(event_type, event_type)


def canonical_part_type(part_type: str | None) -> str | None:
    """The GA name of a content part type (``audio`` -> ``output_audio``, ``text`` -> ...)."""
    if part_type is None:
        return None
    return BETA_PART_ALIASES.get(part_type, part_type)


def is_known_type(event_type: str) -> bool:
    """Whether ``event_type`` (after alias mapping) is a GA client, server or local event."""
    t = canonical_type(event_type)
    return t in CLIENT_EVENT_TYPES or t in SERVER_EVENT_TYPES or t in LOCAL_EVENT_TYPES


def source_of_type(event_type: str) -> Source | None:
    """Who sends events of this type: ``CLIENT`` for the client event types, ``SERVER`` for the
    server ones (beta names included), ``LOCAL`` for ``local.*``; ``None`` for a type known to
    neither side (a vendor extension such as xAI's ``ping``)."""
    t = canonical_type(event_type)
    if t in CLIENT_EVENT_TYPES:
        return Source.CLIENT
    if t in SERVER_EVENT_TYPES:
        return Source.SERVER
    if t.startswith("local."):
        return Source.LOCAL
    return None


_ID_ALPHABET: Final = string.ascii_letters + string.digits
_counter = itertools.count()


def new_event_id(prefix: str = "evt_") -> str:
    """A fresh client event id (<= 32 characters, as the API requires), unique in this process."""
    return f"{prefix}{secrets.token_hex(6)}{next(_counter):x}"[:32]


def new_item_id(prefix: str = "item_") -> str:
    """A fresh item id in the API's style (``item_`` + 21 alphanumerics), at most 32 chars."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


# --- client event builders -----------------------------------------------------------------------


class client:
    """Builders for the 11 GA client events. Each returns a ``dict`` with a fresh ``event_id``."""

    @staticmethod
    def _event(event_type: str, event_id: str | None = None, **fields: Any) -> JSON:
        ev: JSON = {"type": event_type, "event_id": event_id or new_event_id()}
        ev.update({k: v for k, v in fields.items() if v is not None})
        return ev

    @staticmethod
    def session_update(session: Mapping[str, Any], event_id: str | None = None) -> JSON:
        body = dict(session)
        body.setdefault("type", "realtime")
        return client._event("session.update", event_id, session=body)

    @staticmethod
    def input_audio_buffer_append(audio_b64: str, event_id: str | None = None) -> JSON:
        return client._event("input_audio_buffer.append", event_id, audio=audio_b64)

    @staticmethod
    def input_audio_buffer_commit(event_id: str | None = None) -> JSON:
        return client._event("input_audio_buffer.commit", event_id)

    @staticmethod
    def input_audio_buffer_clear(event_id: str | None = None) -> JSON:
        return client._event("input_audio_buffer.clear", event_id)

    @staticmethod
    def output_audio_buffer_clear(event_id: str | None = None) -> JSON:
        return client._event("output_audio_buffer.clear", event_id)

    @staticmethod
    def conversation_item_create(
        item: Mapping[str, Any],
        previous_item_id: str | None = None,
        event_id: str | None = None,
    ) -> JSON:
        return client._event(
            "conversation.item.create", event_id, item=dict(item), previous_item_id=previous_item_id
        )

    @staticmethod
    def conversation_item_retrieve(item_id: str, event_id: str | None = None) -> JSON:
        return client._event("conversation.item.retrieve", event_id, item_id=item_id)

    @staticmethod
    def conversation_item_delete(item_id: str, event_id: str | None = None) -> JSON:
        return client._event("conversation.item.delete", event_id, item_id=item_id)

    @staticmethod
    def conversation_item_truncate(
        item_id: str, audio_end_ms: int, content_index: int = 0, event_id: str | None = None
    ) -> JSON:
        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            raise ProtocolError(
                f"audio_end_ms must be a non-negative integer of milliseconds, got {audio_end_ms!r}"
            )
        return client._event(
            "conversation.item.truncate",
            event_id,
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    @staticmethod
    def response_create(
        response: Mapping[str, Any] | None = None, event_id: str | None = None
    ) -> JSON:
        return client._event(
            "response.create", event_id, response=dict(response) if response else None
        )

    @staticmethod
    def response_cancel(response_id: str | None = None, event_id: str | None = None) -> JSON:
        return client._event("response.cancel", event_id, response_id=response_id)

    # -- items -----------------------------------------------------------------------------------

    @staticmethod
    def user_text_item(text: str) -> JSON:
        return {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }

    @staticmethod
    def user_audio_item(audio_b64: str, transcript: str | None = None) -> JSON:
        part: JSON = {"type": "input_audio", "audio": audio_b64}
        if transcript is not None:
            part["transcript"] = transcript
        return {"type": "message", "role": "user", "content": [part]}

    @staticmethod
    def user_image_item(image_url: str, text: str | None = None) -> JSON:
        content: list[JSON] = [{"type": "input_image", "image_url": image_url}]
        if text:
            content.append({"type": "input_text", "text": text})
        return {"type": "message", "role": "user", "content": content}

    @staticmethod
    def text_message_item(role: str, text: str) -> JSON:
        """A message item for seeding history: ``user``/``system`` take input_text, ``assistant``
        takes output_text (the API refuses other combinations)."""
        if role not in ("user", "system", "assistant"):
            raise ProtocolError(f"role must be 'user', 'system' or 'assistant', got {role!r}")
        part_type = "output_text" if role == "assistant" else "input_text"
        return {"type": "message", "role": role, "content": [{"type": part_type, "text": text}]}

    @staticmethod
    def function_call_output_item(call_id: str, output: str) -> JSON:
        return {"type": "function_call_output", "call_id": call_id, "output": output}


#: Required fields and their JSON types for each client event (from the published schemas).
_CLIENT_REQUIRED: Final[dict[str, dict[str, type | tuple[type, ...]]]] = {
    "session.update": {"session": dict},
    "input_audio_buffer.append": {"audio": str},
    "conversation.item.create": {"item": dict},
    "conversation.item.retrieve": {"item_id": str},
    "conversation.item.delete": {"item_id": str},
    "conversation.item.truncate": {"item_id": str, "content_index": int, "audio_end_ms": int},
}
#: Optional fields whose type is checked when present.
_CLIENT_OPTIONAL: Final[dict[str, dict[str, type | tuple[type, ...]]]] = {
    "conversation.item.create": {"previous_item_id": (str, type(None))},
    "response.create": {"response": dict},
    "response.cancel": {"response_id": str},
}
#: Longest client ``event_id`` the API accepts.
MAX_EVENT_ID: Final = 32


def validate_client_event(event: Mapping[str, Any]) -> None:
    """Check a client event before it is sent: its type, required fields and their types.

    This catches what the server would refuse with an ``invalid_request_error`` (and what real
    clients get wrong: a float ``audio_end_ms``, a missing ``item``) before it leaves the kernel.
    Fields the schema does not know are allowed (servers of other providers accept extensions).

    Raises:
        ProtocolError: names the event type, the field, what was given and what is accepted.
    """
    from . import _schema_fields

    etype = event.get("type")
    if not isinstance(etype, str):
        raise ProtocolError(f"a client event needs a string 'type'; got {etype!r}")
    if etype not in CLIENT_EVENT_TYPES:
        accepted = ", ".join(sorted(CLIENT_EVENT_TYPES))
        raise ProtocolError(f"unknown client event type {etype!r}; accepted: {accepted}")
    event_id = event.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID):
        raise ProtocolError(
            f"{etype}: event_id must be a string of at most {MAX_EVENT_ID} characters, got {event_id!r}"
        )
    known = _schema_fields.CLIENT.get(etype, frozenset())
    for name, typ in _CLIENT_REQUIRED.get(etype, {}).items():
        if name not in event:
            raise ProtocolError(
                f"{etype}: missing required field {name!r} (fields: {', '.join(sorted(known))})"
            )
        _check_type(etype, name, event[name], typ)
    for name, typ in _CLIENT_OPTIONAL.get(etype, {}).items():
        if name in event:
            _check_type(etype, name, event[name], typ)


def _check_type(etype: str, name: str, value: Any, typ: type | tuple[type, ...]) -> None:
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ProtocolError(f"{etype}: field {name!r} must be {names}, got {value!r}")
    if name == "audio_end_ms" and value < 0:
        raise ProtocolError(f"{etype}: audio_end_ms must be >= 0, got {value}")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> JSON:
    """``base`` updated with ``over``, nested objects merged key by key (how ``session.update``
    combines with the session it updates). Neither argument is modified."""
    out = dict(base)
    for k, v in over.items():
        prev = out.get(k)
        if isinstance(v, Mapping) and isinstance(prev, Mapping):
            out[k] = deep_merge(prev, v)
        else:
            out[k] = v
    return out
