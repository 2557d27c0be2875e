"""``Session`` arguments as GA JSON, sans I/O: the ``session`` object of a ``session.update`` and
the ``response`` object of a ``response.create``, with the Python tools they declare."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..core._sentinel import UNSET
from ..core.audio import KNOWN_FORMAT_TYPES, AudioFormat
from ..core.protocol import deep_merge
from ..core.tools import Tool, as_tool

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "build_response",
    "build_session_config",
    "tool_definitions",
]

JSON = dict[str, Any]

#: Transcription model used for ``transcription=True``: the API's cheapest transcriber.
DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-4o-mini-transcribe"

_SESSION_KWARGS: Final = (
    "instructions",
    "voice",
    "tools",
    "tool_choice",
    "turn_detection",
    "transcription",
    "output_modalities",
    "input_format",
    "output_format",
    "noise_reduction",
    "speed",
    "max_output_tokens",
    "tracing",
    "truncation",
    "prompt",
    "include",
    "audio",
)

_RESPONSE_KWARGS: Final = (
    "instructions",
    "tools",
    "tool_choice",
    "voice",
    "output_modalities",
    "conversation",
    "metadata",
    "input",
    "max_output_tokens",
    "prompt",
    "audio",
)


def _format_obj(fmt: AudioFormat | str | Mapping[str, Any]) -> JSON:
    if isinstance(fmt, AudioFormat):
        f = fmt
    elif isinstance(fmt, (str, Mapping)):
        parsed = AudioFormat.parse(dict(fmt) if isinstance(fmt, Mapping) else fmt)
        if parsed is None:
            raise ValueError(
                f"audio format {fmt!r} is not accepted; use 'audio/pcm', 'audio/pcmu' or "
                "'audio/pcma' (or {'type': 'audio/pcm', 'rate': 24000})"
            )
        f = parsed
    else:
        raise TypeError(
            f"audio format must be an AudioFormat, 'audio/pcm', 'audio/pcmu', 'audio/pcma' or a"
            f" {{'type': ..., 'rate': ...}} dict, got {fmt!r}"
        )
    if f.type not in KNOWN_FORMAT_TYPES:
        raise ValueError(
            f"audio format type {f.type!r} is not accepted; use 'audio/pcm', 'audio/pcmu' or "
            "'audio/pcma'"
        )
    return {"type": f.type, "rate": f.rate} if f.type == "audio/pcm" else {"type": f.type}


def _turn_detection_obj(value: Any) -> JSON | None:
    if value is None or value is False or value in ("none", "manual", "push_to_talk"):
        return None
    if value in ("server_vad", "semantic_vad"):
        return {"type": value}
    if isinstance(value, Mapping) and value.get("type") in ("server_vad", "semantic_vad"):
        return dict(value)
    raise ValueError(
        f"turn_detection={value!r} is not accepted; use 'server_vad', 'semantic_vad', a dict with"
        " that 'type' (and threshold, silence_duration_ms, ...), or None for push-to-talk"
    )


def _transcription_obj(value: Any) -> JSON | None:
    if value is None or value is False:
        return None
    if value is True:
        return {"model": DEFAULT_TRANSCRIPTION_MODEL}
    if isinstance(value, str):
        return {"model": value}
    if isinstance(value, Mapping):
        return dict(value)
    raise ValueError(
        f"transcription={value!r} is not accepted; use True, a model name such as "
        f"'{DEFAULT_TRANSCRIPTION_MODEL}', a dict {{'model': ..., 'language': ...}}, or None"
    )


def _modalities(value: Any) -> list[str]:
    mods = [value] if isinstance(value, str) else list(value)
    if not mods or any(m not in ("audio", "text") for m in mods):
        raise ValueError(
            f"output_modalities={value!r} is not accepted; use 'audio' or 'text' (or a list of one)"
        )
    return mods


def tool_definitions(tools: Iterable[Any]) -> tuple[list[JSON], dict[str, Tool]]:
    defs: list[JSON] = []
    callables: dict[str, Tool] = {}
    for t in tools:
        obj = as_tool(t)
        if isinstance(obj, Tool):
            if obj.name in callables:
                raise ValueError(f"two tools are named {obj.name!r}; tool names must be unique")
            callables[obj.name] = obj
            defs.append(obj.definition())
        else:
            defs.append(obj)
    return defs, callables


def build_session_config(**fields: Any) -> tuple[JSON, dict[str, Tool]]:
    """The GA ``session`` object for ``session.update`` from ``Session``-style arguments, and the
    Python tools it declares (by name).

    Only the fields given are included (``UNSET`` = leave the server's value). ``turn_detection``
    takes ``'server_vad'``, ``'semantic_vad'``, a dict, or ``None`` (push-to-talk);
    ``transcription`` takes ``True``, a model name, a dict or ``None``; ``tools`` takes ``@tool``
    functions, plain functions or raw definition dicts; ``audio`` (a raw GA dict) is merged last.

    Raises:
        TypeError: an argument that is not a session field (the accepted ones are listed).
        ValueError: a value that is not accepted (the message says which ones are).
    """
    unknown = set(fields) - set(_SESSION_KWARGS)
    if unknown:
        raise TypeError(
            f"unknown session field(s) {sorted(unknown)}; accepted: {', '.join(_SESSION_KWARGS)}"
        )
    f = {k: v for k, v in fields.items() if v is not UNSET}
    cfg: JSON = {"type": "realtime"}
    tools: dict[str, Tool] = {}
    if "instructions" in f:
        if not isinstance(f["instructions"], str):
            raise TypeError(f"instructions must be a str, got {type(f['instructions']).__name__}")
        cfg["instructions"] = f["instructions"]
    if "output_modalities" in f:
        cfg["output_modalities"] = _modalities(f["output_modalities"])
    audio_in: JSON = {}
    audio_out: JSON = {}
    if "input_format" in f:
        audio_in["format"] = _format_obj(f["input_format"])
    if "turn_detection" in f:
        audio_in["turn_detection"] = _turn_detection_obj(f["turn_detection"])
    if "transcription" in f:
        audio_in["transcription"] = _transcription_obj(f["transcription"])
    if "noise_reduction" in f:
        nr = f["noise_reduction"]
        audio_in["noise_reduction"] = {"type": nr} if isinstance(nr, str) else nr
    if "output_format" in f:
        audio_out["format"] = _format_obj(f["output_format"])
    if "voice" in f:
        audio_out["voice"] = f["voice"]
    if "speed" in f:
        audio_out["speed"] = f["speed"]
    audio: JSON = {}
    if audio_in:
        audio["input"] = audio_in
    if audio_out:
        audio["output"] = audio_out
    if "audio" in f:
        audio = deep_merge(audio, f["audio"])
    if audio:
        cfg["audio"] = audio
    if "tools" in f:
        defs, tools = tool_definitions(f["tools"] or ())
        cfg["tools"] = defs
    for k in ("tool_choice", "max_output_tokens", "tracing", "truncation", "prompt", "include"):
        if k in f:
            cfg[k] = f[k]
    return cfg, tools


def build_response(**overrides: Any) -> tuple[JSON, dict[str, Tool]]:
    """The ``response`` object of a ``response.create`` from :meth:`Session.respond` overrides.

    Raises:
        TypeError: an override that is not a response field (the accepted ones are listed).
    """
    unknown = set(overrides) - set(_RESPONSE_KWARGS)
    if unknown:
        raise TypeError(
            f"unknown response field(s) {sorted(unknown)}; accepted: {', '.join(_RESPONSE_KWARGS)}"
        )
    resp: JSON = {}
    tools: dict[str, Tool] = {}
    for k, v in overrides.items():
        if v is UNSET:
            continue
        if k == "tools":
            resp["tools"], tools = tool_definitions(v or ())
        elif k == "voice":
            resp["audio"] = deep_merge(resp.get("audio", {}), {"output": {"voice": v}})
        elif k == "audio":
            resp["audio"] = deep_merge(resp.get("audio", {}), v)
        elif k == "output_modalities":
            resp[k] = _modalities(v)
        else:
            resp[k] = v
    return resp, tools
