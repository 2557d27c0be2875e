"""The beta Realtime protocol (``OpenAI-Beta: realtime=v1``), translated at the edge. Pure.

The state machine in :mod:`._state` speaks GA only. A connection that asks for the beta protocol
gets a :class:`BetaDialect`: each beta client event becomes its GA equivalent before the state
machine sees it (:meth:`BetaDialect.client_event`), and each GA server event becomes the event a
beta client expects, or nothing where the beta protocol has no such event
(:meth:`BetaDialect.server_event`). The beta shapes are those of
``openai.types.beta.realtime`` and the ``RealtimeBeta*`` / ``RealtimeSession`` schemas of the
published spec.

Server events, GA -> beta::

    conversation.item.added               conversation.item.created
    conversation.item.done                (dropped: beta announces an item once, when created)
    input_audio_buffer.timeout_triggered  (dropped: no beta event; the commit and item follow)
    response.output_text.delta / .done    response.text.delta / .done
    response.output_audio.delta / .done   response.audio.delta / .done
    response.output_audio_transcript.*    response.audio_transcript.*
    response.function_call_arguments.done the same without ``name``
    session.created / session.updated     ``session`` as a flat beta session (fields below)
    response.created / response.done      ``response`` with ``modalities``, ``voice``,
                                          ``output_audio_format`` and ``temperature``
    every ``item`` (and response output)  ``"object": "realtime.item"``; part types
                                          ``output_text`` -> ``text``, ``output_audio`` -> ``audio``
    response.content_part.added / .done   part types as for items
    error                                 ``param`` (and the message) name the beta field
    anything else                         unchanged (the names are shared)

Client events, beta -> GA: ``session.update`` (fields below; ``type: "realtime"`` is implied),
``response.create`` (``modalities``, ``voice``, ``output_audio_format``,
``max_response_output_tokens``, ``temperature``, and ``input`` items as below), and
``conversation.item.create`` (part types ``text`` -> ``output_text``, ``audio`` ->
``output_audio``); every other client event is the same in both.

Session fields, beta <-> GA::

    modalities ["text", "audio"] / ["text"]   output_modalities ["audio"] / ["text"]
    voice, speed                              audio.output.voice, audio.output.speed
    input_audio_format, output_audio_format   audio.input.format, audio.output.format
      "pcm16" / "g711_ulaw" / "g711_alaw"       {"type": "audio/pcm", "rate": 24000} /
                                                {"type": "audio/pcmu"} / {"type": "audio/pcma"}
    input_audio_transcription                 audio.input.transcription
    input_audio_noise_reduction               audio.input.noise_reduction
    turn_detection                            audio.input.turn_detection
    max_response_output_tokens                max_output_tokens
    temperature                               (none: kept here, 0.6-1.2, default 0.8)
    (none)                                    type, truncation (accepted, never shown)

GA-shaped fields sent on a beta connection pass through (lenient, as clients mix them).
``temperature`` is validated and reported back but changes nothing (nothing samples locally); a
``response.create`` temperature is validated and ignored: responses report the session's.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from realtime_nb.core.protocol import BETA_EVENT_ALIASES, BETA_PART_ALIASES, canonical_part_type

from ._config import ClientError, _check_enum, _check_range, _check_type

__all__ = ["BETA_SERVER_EVENT_TYPES", "BetaDialect", "session_update_to_ga"]

JSON = dict[str, Any]

#: The beta server event types (``openai.types.beta.realtime.RealtimeServerEvent``) this server
#: can send; a GA event whose beta name is not here has no beta counterpart and is dropped.
BETA_SERVER_EVENT_TYPES: Final = frozenset(
    {
        "error",
        "session.created",
        "session.updated",
        "conversation.created",
        "conversation.item.created",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "response.created",
        "response.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.text.delta",
        "response.text.done",
        "response.audio.delta",
        "response.audio.done",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "rate_limits.updated",
    }
)
#: GA event names -> beta names (the inverse of the protocol's beta alias table).
_GA_TO_BETA_EVENT: Final = {ga: beta for beta, ga in BETA_EVENT_ALIASES.items()}
_GA_TO_BETA_PART: Final = {ga: beta for beta, ga in BETA_PART_ALIASES.items()}

#: The session's default (and the beta API's): "0.8 is highly recommended" for audio models.
DEFAULT_TEMPERATURE: Final = 0.8
#: The beta API limits temperature to [0.6, 1.2].
TEMPERATURE_RANGE: Final = (0.6, 1.2)

BETA_FORMATS: Final[dict[str, JSON]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_GA_FORMAT_NAMES: Final = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "g711_ulaw",
    "audio/pcma": "g711_alaw",
}

_SESSION_BETA_KEYS: Final = frozenset(
    {
        "modalities", "voice", "speed", "input_audio_format", "output_audio_format",
        "input_audio_transcription", "input_audio_noise_reduction", "turn_detection",
        "temperature", "max_response_output_tokens",
    }
)  # fmt: skip
_RESPONSE_BETA_KEYS: Final = frozenset(
    {"modalities", "voice", "output_audio_format", "temperature", "max_response_output_tokens"}
)
#: GA parameter paths in error events -> the beta field the client sent (longest first).
_BETA_PARAMS: Final = (
    ("session.audio.input.transcription", "session.input_audio_transcription"),
    ("session.audio.input.noise_reduction", "session.input_audio_noise_reduction"),
    ("session.audio.input.turn_detection", "session.turn_detection"),
    ("session.audio.input.format", "session.input_audio_format"),
    ("session.audio.output.format", "session.output_audio_format"),
    ("session.audio.output.voice", "session.voice"),
    ("session.audio.output.speed", "session.speed"),
    ("session.output_modalities", "session.modalities"),
    ("session.max_output_tokens", "session.max_response_output_tokens"),
    ("response.audio.output.format", "response.output_audio_format"),
    ("response.audio.output.voice", "response.voice"),
    ("response.output_modalities", "response.modalities"),
)


def _modalities_to_ga(value: Any, param: str) -> list[str]:
    _check_type(value, (list,), param)
    for i, m in enumerate(value):
        _check_enum(m, ("text", "audio"), f"{param}[{i}]")
    if not value:
        raise ClientError(
            "invalid_value",
            f"Invalid '{param}': expected ['text'] or ['text', 'audio'], got [].",
            param,
        )
    return ["audio"] if "audio" in value else ["text"]


def _format_to_ga(value: Any, param: str) -> Any:
    if isinstance(value, dict):
        return value  # GA-shaped: validated by the session code
    _check_type(value, (str,), param)
    _check_enum(value, tuple(BETA_FORMATS), param)
    return dict(BETA_FORMATS[value])


def _format_name(fmt: Any) -> Any:
    if isinstance(fmt, dict):
        return _GA_FORMAT_NAMES.get(str(fmt.get("type")), fmt)
    return fmt


def _check_temperature(value: Any, param: str) -> float:
    _check_type(value, (int, float), param)
    _check_range(value, TEMPERATURE_RANGE[0], TEMPERATURE_RANGE[1], param, decimal=True)
    return float(value)


def _merge_audio(ga: JSON, audio_in: JSON, audio_out: JSON) -> None:
    if not audio_in and not audio_out:
        return
    audio = ga.get("audio")
    merged: JSON = copy.deepcopy(audio) if isinstance(audio, dict) else {}
    for key, fields in (("input", audio_in), ("output", audio_out)):
        if fields:
            side = merged.get(key)
            merged[key] = {**(side if isinstance(side, dict) else {}), **fields}
    ga["audio"] = merged


def session_update_to_ga(update: Any) -> tuple[Any, float | None]:
    """A beta ``session`` (flat fields) as a GA one, and the ``temperature`` it set (or ``None``).

    Raises:
        ClientError: a beta-only field is invalid (named by its beta path).
    """
    if not isinstance(update, dict):
        return update, None
    ga: JSON = {k: v for k, v in update.items() if k not in _SESSION_BETA_KEYS}
    ga.setdefault("type", "realtime")
    audio_in: JSON = {}
    audio_out: JSON = {}
    if "modalities" in update:
        ga["output_modalities"] = _modalities_to_ga(update["modalities"], "session.modalities")
    for beta, target, ga_key in (
        ("voice", audio_out, "voice"),
        ("speed", audio_out, "speed"),
        ("input_audio_transcription", audio_in, "transcription"),
        ("input_audio_noise_reduction", audio_in, "noise_reduction"),
        ("turn_detection", audio_in, "turn_detection"),
    ):
        if beta in update:
            target[ga_key] = update[beta]
    if "input_audio_format" in update:
        audio_in["format"] = _format_to_ga(
            update["input_audio_format"], "session.input_audio_format"
        )
    if "output_audio_format" in update:
        audio_out["format"] = _format_to_ga(
            update["output_audio_format"], "session.output_audio_format"
        )
    if "max_response_output_tokens" in update:
        ga["max_output_tokens"] = update["max_response_output_tokens"]
    temperature = None
    if "temperature" in update:
        temperature = _check_temperature(update["temperature"], "session.temperature")
    _merge_audio(ga, audio_in, audio_out)
    return ga, temperature


def item_to_ga(item: Any) -> Any:
    """A beta item with GA content part types (``text`` -> ``output_text`` ...)."""
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        return item
    out = dict(item)
    out["content"] = [
        {**part, "type": canonical_part_type(part.get("type"))}
        if isinstance(part, dict) and isinstance(part.get("type"), str)
        else part
        for part in item["content"]
    ]
    return out


def response_params_to_ga(params: Any) -> Any:
    """A beta ``response.create`` body as a GA one.

    Raises:
        ClientError: a beta-only field is invalid (named by its beta path).
    """
    if not isinstance(params, dict):
        return params
    ga: JSON = {k: v for k, v in params.items() if k not in _RESPONSE_BETA_KEYS}
    if "modalities" in params:
        ga["output_modalities"] = _modalities_to_ga(params["modalities"], "response.modalities")
    if "max_response_output_tokens" in params:
        ga["max_output_tokens"] = params["max_response_output_tokens"]
    if "temperature" in params:
        _check_temperature(params["temperature"], "response.temperature")
    audio_out: JSON = {}
    if "voice" in params:
        audio_out["voice"] = params["voice"]
    if "output_audio_format" in params:
        audio_out["format"] = _format_to_ga(
            params["output_audio_format"], "response.output_audio_format"
        )
    _merge_audio(ga, {}, audio_out)
    if isinstance(params.get("input"), list):
        ga["input"] = [item_to_ga(entry) for entry in params["input"]]
    return ga


def item_to_beta(item: Any) -> Any:
    """A GA item as a beta one: ``object: "realtime.item"``, beta content part types."""
    if not isinstance(item, dict):
        return item
    out: JSON = {}
    for key, value in item.items():
        if key == "content" and isinstance(value, list):
            value = [part_to_beta(p) for p in value]
        out[key] = value
        if key == "id":
            out["object"] = "realtime.item"
    out.setdefault("object", "realtime.item")
    return out


def part_to_beta(part: Any) -> Any:
    if isinstance(part, dict) and part.get("type") in _GA_TO_BETA_PART:
        return {**part, "type": _GA_TO_BETA_PART[part["type"]]}
    return part


def _beta_prefix(param: str) -> tuple[str, str] | None:
    """The (GA, beta) path prefixes that ``param`` starts with, if it names a renamed field."""
    for ga, beta in _BETA_PARAMS:
        if param == ga or param.startswith((ga + ".", ga + "[")):
            return ga, beta
    return None


class BetaDialect:
    """One beta connection's translator (it remembers the session's ``temperature``)."""

    def __init__(self) -> None:
        self.temperature = DEFAULT_TEMPERATURE
        self._undo_temperature = self.temperature

    # -- client -> state machine --

    def client_event(self, event: JSON) -> JSON:
        """The GA client event for a beta one (a new dict when anything changes).

        Call :meth:`rejected` if the state machine then refuses the event.

        Raises:
            ClientError: a beta-only field is invalid; the event is refused.
        """
        self._undo_temperature = self.temperature
        etype = event.get("type")
        if etype == "session.update" and "session" in event:
            session, temperature = session_update_to_ga(event["session"])
            if temperature is not None:
                self.temperature = temperature
            return {**event, "session": session}
        if etype == "response.create" and "response" in event:
            return {**event, "response": response_params_to_ga(event["response"])}
        if etype == "conversation.item.create" and "item" in event:
            return {**event, "item": item_to_ga(event["item"])}
        return event

    def rejected(self) -> None:
        """The last client event was refused: a session.update is applied whole or not at all."""
        self.temperature = self._undo_temperature

    # -- state machine -> client --

    def server_event(self, event: JSON) -> JSON | None:
        """The beta server event for a GA one, or ``None`` when beta has no such event."""
        etype = str(event.get("type"))
        btype = _GA_TO_BETA_EVENT.get(etype, etype)
        if btype not in BETA_SERVER_EVENT_TYPES or etype == "conversation.item.done":
            return None
        out: JSON = {}
        for key, value in event.items():
            if key == "type":
                value = btype
            elif key == "session" and etype in ("session.created", "session.updated"):
                value = self.session_to_beta(value)
            elif key == "response" and etype in ("response.created", "response.done"):
                value = self.response_to_beta(value)
            elif key == "item":
                value = item_to_beta(value)
            elif key == "part":
                value = part_to_beta(value)
            elif key == "name" and etype == "response.function_call_arguments.done":
                continue
            elif key == "error" and etype == "error" and isinstance(value, dict):
                value = self._error_to_beta(value)
            out[key] = value
        return out

    def session_to_beta(self, ga: JSON) -> JSON:
        """A GA session object as the flat beta one, in the published schema's field order."""
        audio = ga.get("audio") or {}
        audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
        return {
            "id": ga.get("id"),
            "object": "realtime.session",
            "modalities": (
                ["text", "audio"] if "audio" in (ga.get("output_modalities") or []) else ["text"]
            ),
            "model": ga.get("model"),
            "instructions": ga.get("instructions"),
            "voice": audio_out.get("voice"),
            "input_audio_format": _format_name(audio_in.get("format")),
            "output_audio_format": _format_name(audio_out.get("format")),
            "input_audio_transcription": copy.deepcopy(audio_in.get("transcription")),
            "turn_detection": copy.deepcopy(audio_in.get("turn_detection")),
            "input_audio_noise_reduction": copy.deepcopy(audio_in.get("noise_reduction")),
            "speed": audio_out.get("speed"),
            "tracing": copy.deepcopy(ga.get("tracing")),
            "tools": copy.deepcopy(ga.get("tools")),
            "tool_choice": copy.deepcopy(ga.get("tool_choice")),
            "temperature": self.temperature,
            "max_response_output_tokens": ga.get("max_output_tokens"),
            "expires_at": ga.get("expires_at"),
            "prompt": copy.deepcopy(ga.get("prompt")),
            "include": copy.deepcopy(ga.get("include")),
        }

    def response_to_beta(self, ga: JSON) -> JSON:
        """A GA response object as the beta one."""
        out_cfg = (ga.get("audio") or {}).get("output") or {}
        return {
            "object": "realtime.response",
            "id": ga.get("id"),
            "status": ga.get("status"),
            "status_details": copy.deepcopy(ga.get("status_details")),
            "output": [item_to_beta(item) for item in ga.get("output") or []],
            "conversation_id": ga.get("conversation_id"),
            "modalities": (
                ["text", "audio"] if "audio" in (ga.get("output_modalities") or []) else ["text"]
            ),
            "voice": out_cfg.get("voice"),
            "output_audio_format": _format_name(out_cfg.get("format")),
            "temperature": self.temperature,
            "max_output_tokens": ga.get("max_output_tokens"),
            "usage": copy.deepcopy(ga.get("usage")),
            "metadata": copy.deepcopy(ga.get("metadata")),
        }

    @staticmethod
    def _error_to_beta(error: JSON) -> JSON:
        param = error.get("param")
        prefixes = _beta_prefix(param) if isinstance(param, str) else None
        if prefixes is None:
            return error
        ga, beta = prefixes
        out = dict(error)
        out["param"] = str(param).replace(ga, beta, 1)
        if isinstance(out.get("message"), str):
            out["message"] = out["message"].replace(ga, beta)
        return out
