"""The kernel-side Realtime session: a WebSocket on its own thread, always recorded.

Layout of this module, pure first:

- :func:`build_session_config`, :func:`build_response`: ``Session`` arguments -> GA JSON;
- :class:`ResponseGate`: queues ``response.create`` while a response is active;
- :class:`PlaybackModel`: the truncation to send on an interruption, decided from the reducer's
  state (what was received of each assistant item, and when);
- :func:`seed_items`: a conversation re-created as text for :meth:`Session.reconnect`;
- :class:`Session`: the I/O shell. Its WebSocket runs on a daemon thread with its own asyncio
  loop, so events keep arriving, being recorded and reaching callbacks while a notebook cell
  blocks. Every public method is thread-safe and has an ``a``-prefixed ``async`` twin.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import fnmatch
import functools
import json
import logging
import math
import os
import sys
import threading
import time
import wave
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ..core._endpoints import Endpoint, resolve_endpoint
from ..core._redact import redact_text
from ..core.audio import (
    KNOWN_FORMAT_TYPES,
    AudioFormat,
    encode_from_float,
    pcm16_to_float32,
    resample,
)
from ..core.events import Event
from ..core.pricing import Cost, ModelPrice, session_cost
from ..core.protocol import AUDIO_FIELDS, Source, canonical_type, client, deep_merge
from ..core.reducer import ConversationState, ErrorRecord, Item, Reducer, Usage
from ..core.tools import (
    StartCall,
    Tool,
    ToolCall,
    ToolCallTracker,
    as_tool,
    encode_error,
    encode_result,
)
from ..storage.recording import DEFAULT_DIR, Recorder, Recording, make_meta

__all__ = [
    "PlaybackModel",
    "ResponseGate",
    "Session",
    "SessionClosedError",
    "SessionError",
    "SessionUsage",
    "build_response",
    "build_session_config",
    "seed_items",
]

JSON = dict[str, Any]
logger = logging.getLogger("realtime_nb.client.session")

# --- constants -----------------------------------------------------------------------------------

#: Seconds to wait for the WebSocket handshake and ``session.created``: a cold TLS handshake to a
#: far region plus the server's session setup stays well under this; a hung proxy does not.
CONNECT_TIMEOUT_S: Final = 15.0
#: Audio sent per ``input_audio_buffer.append``: 100 ms is ~6.4 kB of base64 PCM16 at 24 kHz,
#: far below the API's 15 MiB event limit and fine-grained enough for server VAD to react in time.
CHUNK_MS: Final = 100
#: Largest frame accepted from the server. ``response.done`` of a long turn or ``session.created``
#: with long instructions exceed websockets' 1 MiB default; 64 MiB still bounds a runaway frame.
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
#: Recent non-audio events kept for :meth:`Session.wait_for` to find events that arrived before it
#: was called; audio deltas are excluded so this stays small (a few MB at most).
HISTORY_EVENTS: Final = 10_000
#: Transcription model used for ``transcription=True``: the API's cheapest transcriber.
DEFAULT_TRANSCRIPTION_MODEL: Final = "gpt-4o-mini-transcribe"
#: Playback stop reasons (from the widget's ``local.playback.played``) that mean the listener did
#: not hear the rest, so the item must be truncated to what was played.
INTERRUPT_REASONS: Final = frozenset(
    {"interrupted", "interruption", "barge_in", "speech_started", "stopped", "cancelled", "cleared"}
)
#: WebSocket keepalive: the API closes idle sockets; a 20 s ping keeps NATs open and notices a
#: dead peer within ping + timeout.
PING_INTERVAL_S: Final = 20.0
PING_TIMEOUT_S: Final = 20.0
#: Seconds close() waits for the server's close frame before dropping the TCP connection.
CLOSE_TIMEOUT_S: Final = 2.0

Status = Literal["connecting", "connected", "closed", "error"]

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


class SessionError(RuntimeError):
    """The server refused something (the message is the server's, with the request named)."""


class SessionClosedError(ConnectionError):
    """The session is closed, or its connection was lost (``reconnect()`` starts a new one)."""


# --- pure: session and response configuration ----------------------------------------------------


class _Unset:
    def __repr__(self) -> str:
        return "<server default>"


UNSET: Final = _Unset()


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


def _tool_definitions(tools: Iterable[Any]) -> tuple[list[JSON], dict[str, Tool]]:
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
        defs, tools = _tool_definitions(f["tools"] or ())
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
            resp["tools"], tools = _tool_definitions(v or ())
        elif k == "voice":
            resp["audio"] = deep_merge(resp.get("audio", {}), {"output": {"voice": v}})
        elif k == "audio":
            resp["audio"] = deep_merge(resp.get("audio", {}), v)
        elif k == "output_modalities":
            resp[k] = _modalities(v)
        else:
            resp[k] = v
    return resp, tools


# --- pure: response queueing ---------------------------------------------------------------------


class ResponseGate:
    """Holds ``response.create`` requests while a response is active (or one is on its way).

    The API refuses a second response with ``conversation_already_has_active_response``; this
    gate sends one request at a time and the next when ``response.done`` arrives. A request the
    server refused for that reason anyway (a server-VAD response overtook it) is queued again.
    """

    #: Requests remembered by event id to re-queue them if the server refuses them as "busy".
    _REMEMBER: Final = 32

    def __init__(self) -> None:
        self.queue: deque[JSON] = deque()
        self.in_flight: JSON | None = None
        self.active: str | None = None
        self._sent: dict[str, JSON] = {}

    @property
    def busy(self) -> bool:
        return self.in_flight is not None or self.active is not None

    def request(self, event: JSON) -> list[JSON]:
        """A ``response.create`` to send: returns it if it may go now, else queues it."""
        if self.busy:
            self.queue.append(event)
            return []
        return [self._send(event)]

    def _send(self, event: JSON) -> JSON:
        self.in_flight = event
        eid = event.get("event_id")
        if isinstance(eid, str):
            self._sent[eid] = event
            while len(self._sent) > self._REMEMBER:
                self._sent.pop(next(iter(self._sent)))
        return event

    def _release(self) -> list[JSON]:
        if self.busy or not self.queue:
            return []
        return [self._send(self.queue.popleft())]

    def on_server_event(self, data: Mapping[str, Any]) -> list[JSON]:
        """Update with a server event; returns queued requests that may be sent now."""
        t = data.get("type")
        if t == "response.created":
            resp = data.get("response") or {}
            self.in_flight = None
            self.active = resp.get("id") if isinstance(resp.get("id"), str) else "?"
            return []
        if t == "response.done":
            resp = data.get("response") or {}
            rid = resp.get("id")
            if self.active in (rid, "?") or self.active is None:
                self.active = None
            return self._release()
        if t == "error":
            err = data.get("error") or {}
            eid = err.get("event_id")
            request = self._sent.pop(eid, None) if isinstance(eid, str) else None
            if request is None:
                return []
            if self.in_flight is request:
                self.in_flight = None
            if err.get("code") == "conversation_already_has_active_response":
                self.queue.appendleft(request)
                if self.active is None:
                    self.active = "?"  # a response we did not see start is running
            return self._release()
        return []

    def drop_queued(self) -> int:
        """Forget queued requests (after :meth:`Session.cancel`); returns how many."""
        n = len(self.queue)
        self.queue.clear()
        return n

    def reset(self) -> None:
        """A new connection: nothing is active or in flight, nothing is queued."""
        self.queue.clear()
        self.in_flight = None
        self.active = None
        self._sent.clear()


# --- pure: playback and truncation ---------------------------------------------------------------


class PlaybackModel:
    """Decides the truncation to send on an interruption, from the reducer's state.

    What was received of each assistant item and when its audio began come from the
    :class:`~realtime_nb.core.reducer.ConversationState` (the same fold the views and replay use); this
    class keeps only what no event says: whether a player reports playback, and which items it
    already decided to truncate. Without a player reporting ``local.playback.*`` events (a
    notebook with no widget), audio is assumed to play in real time from its first delta, so an
    interruption at time ``t`` heard ``t - first_delta`` ms of it. Once a player reports, its
    ``played_ms`` is used instead.
    """

    def __init__(self) -> None:
        self.player_reports = False
        self._decided: set[str] = set()

    @staticmethod
    def received_ms(state: ConversationState, item_id: str) -> float | None:
        """Milliseconds of output audio received for ``item_id`` (``None``: none at all)."""
        item = state.items_by_id.get(item_id)
        part = item.audio_part() if item is not None else None
        if part is None or part.type != "output_audio" or not part.audio_chunks:
            return None
        return state.output_format.duration_ms(part.audio_bytes)

    def clamp(self, state: ConversationState, item_id: str, audio_end_ms: float) -> int:
        """``audio_end_ms`` floored to an integer and clamped to ``[0, received]``.

        Raises:
            ValueError: no audio was received for ``item_id`` (items with audio are named), or
                ``audio_end_ms`` is not a finite number.
        """
        if not isinstance(audio_end_ms, (int, float)) or not math.isfinite(audio_end_ms):
            raise ValueError(f"audio_end_ms must be a finite number, got {audio_end_ms!r}")
        received = self.received_ms(state, item_id)
        if received is None:
            with_audio = [i for i in state.items_by_id if self.received_ms(state, i) is not None]
            known = ", ".join(with_audio[-5:]) or "none yet"
            raise ValueError(
                f"no audio was received for item {item_id!r}; items with audio: {known}"
            )
        return max(0, min(math.floor(audio_end_ms), math.floor(received)))

    def on_event(self, ev: Event, state: ConversationState) -> tuple[str, int] | None:
        """Given an event already applied to ``state``, ``(item_id, audio_end_ms)`` to truncate."""
        t = ev.type
        if t.startswith("local.playback."):
            self.player_reports = True
            if t != "local.playback.played":
                return None
            data = ev.data
            item_id, played = data.get("item_id"), data.get("played_ms")
            if data.get("reason") not in INTERRUPT_REASONS:
                return None
            if not isinstance(item_id, str) or not isinstance(played, (int, float)):
                return None
            return self._decide(state, item_id, float(played))
        if t == "input_audio_buffer.speech_started" and not self.player_reports:
            playing = [
                i for i in state.items_by_id.values()
                if i.first_audio_t_ns is not None and i.first_audio_t_ns <= ev.t_ns
            ]  # fmt: skip
            if not playing:
                return None
            last = max(playing, key=lambda i: i.first_audio_t_ns or 0)
            assert last.first_audio_t_ns is not None
            return self._decide(state, last.id, (ev.t_ns - last.first_audio_t_ns) / 1e6)
        return None

    def _decide(
        self, state: ConversationState, item_id: str, played_ms: float
    ) -> tuple[str, int] | None:
        item = state.items_by_id.get(item_id)
        if item is None or item_id in self._decided:
            return None
        if item.truncated or item.truncate_requested_ms is not None:
            return None  # already cut (by the user, the widget or an earlier decision)
        received = self.received_ms(state, item_id)
        if received is None or played_ms >= received:
            return None  # everything received was heard: nothing to cut
        self._decided.add(item_id)
        return item_id, self.clamp(state, item_id, played_ms)


# --- pure: seeding a new connection --------------------------------------------------------------


def seed_items(items: Iterable[Item]) -> list[JSON]:
    """Items to ``conversation.item.create`` on a new connection so it knows the conversation.

    Messages become text (user audio -> its transcript, assistant audio -> what was heard of its
    transcript); function calls and outputs are re-created as they were. Each keeps its original
    id. Items with nothing to say (audio never transcribed) are left out.
    """
    out: list[JSON] = []
    for it in items:
        if it.type == "function_call" and it.call_id:
            out.append({
                "id": it.id, "type": "function_call", "call_id": it.call_id,
                "name": it.name or "", "arguments": it.arguments or "{}",
            })  # fmt: skip
        elif it.type == "function_call_output" and it.call_id:
            out.append(
                {"id": it.id, **client.function_call_output_item(it.call_id, it.output or "")}
            )
        elif it.type == "message" and it.role in ("user", "assistant", "system"):
            text = it.heard_text() if it.role == "assistant" else it.text
            if not text.strip():
                continue
            out.append({"id": it.id, **client.text_message_item(it.role, text)})
    return out


# --- audio input ---------------------------------------------------------------------------------


def _read_audio_file(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """Mono float32 samples and the sample rate of an audio file (WAV, or what soundfile reads).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a format neither ``wave`` nor ``soundfile`` can read.
    """
    if not path.exists():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
        if width == 2:
            x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
        elif width == 1:
            x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif width == 4:
            x = np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2.0**31
        elif width == 3:
            b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
            x = v.astype(np.float32) / 2.0**23
        else:
            raise ValueError(f"{path}: {8 * width}-bit WAV is not supported")
        if channels > 1:
            x = x.reshape(-1, channels).mean(axis=1)
        return x.astype(np.float32), rate
    except wave.Error:
        pass
    try:
        import soundfile
    except ImportError:
        raise ValueError(
            f"{path} is not a PCM WAV file; install soundfile to read FLAC, OGG and others"
        ) from None
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise ValueError(f"cannot read audio from {path}: {exc}") from None
    return np.asarray(data.mean(axis=1), dtype=np.float32), int(rate)


def _to_float_mono(x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if x.ndim == 2:
        # (frames, channels) as soundfile returns, or (channels, frames) as librosa does.
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    elif x.ndim != 1:
        raise ValueError(f"audio arrays must be 1-D (mono) or 2-D, got shape {x.shape}")
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return x.astype(np.float32) / 2.0**31
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise ValueError(f"audio array dtype {x.dtype} is not supported; use float, int16 or int32")


def prepare_audio(
    audio: npt.NDArray[Any] | bytes | bytearray | memoryview | str | os.PathLike[str],
    fmt: AudioFormat,
    sample_rate: int | None = None,
) -> bytes:
    """Any audio as bytes in ``fmt`` (resampled, mixed to mono, encoded).

    ``bytes`` are taken as already in ``fmt`` unless ``sample_rate`` is given, in which case they
    are PCM16 at that rate. Arrays are at ``sample_rate`` (default: ``fmt.rate``). Paths are read
    (WAV, or anything ``soundfile`` reads).

    Raises:
        TypeError: ``audio`` is none of those types.
        ValueError: unreadable file, odd-length PCM16 bytes, or an unsupported array.
    """
    if isinstance(audio, (str, os.PathLike)):
        x, rate = _read_audio_file(Path(audio))
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        raw = bytes(audio)
        if sample_rate is None or (sample_rate == fmt.rate and fmt.type == "audio/pcm"):
            if fmt.type == "audio/pcm" and len(raw) % 2:
                raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(raw)}")
            return raw
        if len(raw) % 2:
            raise ValueError(f"PCM16 audio must have an even number of bytes, got {len(raw)}")
        x, rate = pcm16_to_float32(raw), int(sample_rate)
    elif isinstance(audio, np.ndarray):
        x, rate = _to_float_mono(audio), int(sample_rate or fmt.rate)
    else:
        raise TypeError(
            "send_audio takes a numpy array, PCM bytes in the session's input format, or a path;"
            f" got {type(audio).__name__}"
        )
    if rate != fmt.rate:
        x = resample(x, rate, fmt.rate)
    return encode_from_float(x, fmt)


_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_data_url(image: bytes | bytearray | str | os.PathLike[str]) -> str:
    """A ``data:`` URL for an image given as bytes or a path (PNG, JPEG, GIF, WebP).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the bytes are not one of the accepted image formats.
    """
    if isinstance(image, str) and image.startswith(("data:", "http://", "https://")):
        return image
    data = Path(image).read_bytes() if isinstance(image, (str, os.PathLike)) else bytes(image)
    mime = next((m for magic, m in _IMAGE_MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        raise ValueError("image must be PNG, JPEG, GIF or WebP (checked by its first bytes)")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --- usage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionUsage:
    """Token usage: the session total and each response's (from ``response.done``)."""

    total: Usage
    responses: Mapping[str, Usage] = field(default_factory=dict)


# --- the local default backend -------------------------------------------------------------------

_local_lock = threading.Lock()
_local_server: Any = None
_local_notice_shown = False


def _local_url(model: str) -> str:
    """The URL of this process's embedded local server (started on first use)."""
    global _local_server, _local_notice_shown
    with _local_lock:
        if _local_server is None:
            from ..local import LocalServer

            # The "tools" responder echoes, and calls a tool the user names ("weather" ->
            # get_weather): tool flows work offline out of the box.
            srv = LocalServer("tools")
            srv.__enter__()
            atexit.register(srv.__exit__, None, None, None)
            _local_server = srv
        if not _local_notice_shown:
            _local_notice_shown = True
            print(
                "realtime_nb: no API key and no url given: using the embedded local server "
                "(offline; its voice, VAD and replies are simple stand-ins for a real model). "
                "Set OPENAI_API_KEY or pass url=... to use a real one.",
                file=sys.stderr,
            )
        return f"{_local_server.url.split('?')[0]}?model={model}"


# --- logging without secrets ---------------------------------------------------------------------


class _RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs request headers at DEBUG, ``Authorization`` included: redact them."""

    def __init__(self, base: logging.Logger, secrets: Sequence[str]) -> None:
        super().__init__(base, {})
        self._secrets = [s for s in secrets if s]

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, redact_text(text, self._secrets), **kwargs)


# --- the session ---------------------------------------------------------------------------------

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
_live_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # flush recordings of sessions left open when the kernel exits
    for s in list(_live_sessions):
        with contextlib.suppress(Exception):
            s.close(timeout=1.0)


Callback = Callable[[Event], Any]


@dataclass(eq=False)
class _Waiter:
    pattern: str
    where: Callable[[Event], bool] | None
    future: concurrent.futures.Future[Event]


def _matches(pattern: str, etype: str) -> bool:
    if pattern == "*" or pattern == etype:
        return True
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(etype, pattern)
    return canonical_type(etype) == pattern


class Session:
    """A Realtime session, recorded; its WebSocket runs on a daemon thread of its own.

    Args:
        model: the model (``gpt-realtime``, ``gpt-realtime-mini``, an Azure deployment...).
        instructions, voice, tools, tool_choice, turn_detection, transcription, output_modalities,
        input_format, output_format: session fields (see :func:`build_session_config`); left
            out = the server's default. ``tools`` is a list, or one function, ``@tool`` or
            definition dict.
        record: ``True`` (a new file under ``recordings/``), a folder or ``.arrow`` path, or
            ``False`` (nothing written; the live state is kept all the same).
        url: any Realtime WebSocket URL (a gateway, a local server). With ``api_key`` the key
            goes in ``Authorization: Bearer`` (``api-key`` for Azure hosts).
        api_key: the key; default ``OPENAI_API_KEY``, then ``AZURE_OPENAI_API_KEY``.
        azure_endpoint, azure_deployment, api_version: Azure OpenAI (default from
            ``AZURE_OPENAI_ENDPOINT``, ``AZURE_OPENAI_DEPLOYMENT``, ``AZURE_OPENAI_API_VERSION``).
        pricing: prices for :attr:`cost` (default: :data:`realtime_nb.core.pricing.PRICES`).
        auto_truncate: on an interruption, truncate the assistant's audio item to what was heard.
        wait: block until connected (``session.created``, and ``session.updated`` if fields were
            given). ``False`` returns at once (``async with`` waits in ``__aenter__``).

    With no key and no URL the embedded local server is started in this process (said once).

    Raises:
        SessionClosedError: could not connect (refused, unreachable, bad key) within the timeout.
        SessionError: the server refused the initial ``session.update``.
        TypeError, ValueError: a bad argument (the message lists what is accepted).
    """

    def __init__(
        self,
        model: str = "gpt-realtime",
        *,
        instructions: str | _Unset = UNSET,
        voice: str | _Unset = UNSET,
        tools: Sequence[Any] | Tool | Callable[..., Any] | Mapping[str, Any] | _Unset = UNSET,
        tool_choice: Any = UNSET,
        turn_detection: Any = UNSET,
        transcription: Any = UNSET,
        output_modalities: Any = UNSET,
        input_format: Any = UNSET,
        output_format: Any = UNSET,
        record: bool | str | os.PathLike[str] = True,
        url: str | None = None,
        api_key: str | None = None,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
        pricing: ModelPrice | None = None,
        auto_truncate: bool = True,
        wait: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        meta: Mapping[str, Any] | None = None,
        **session_fields: Any,
    ) -> None:
        self.model = model
        if callable(tools) or isinstance(tools, Mapping):
            # One function, @tool or definition dict: Session(tools=get_weather) reads naturally,
            # and iterating a function (or a dict's keys) would fail obscurely.
            tools = [tools]
        fields = {
            "instructions": instructions,
            "voice": voice,
            "tools": tools,
            "tool_choice": tool_choice,
            "turn_detection": turn_detection,
            "transcription": transcription,
            "output_modalities": output_modalities,
            "input_format": input_format,
            "output_format": output_format,
            **session_fields,
        }
        self._config, self._tools = build_session_config(**fields)
        self._response_tools: dict[str, Tool] = {}
        endpoint = resolve_endpoint(
            model,
            url=url,
            api_key=api_key,
            azure_endpoint=azure_endpoint,
            azure_deployment=azure_deployment,
            api_version=api_version,
        )
        if endpoint is None:
            endpoint = Endpoint("local", _local_url(model), "local backend (no API key)", {}, (),
                                model)  # fmt: skip
        self._endpoint = endpoint
        self._secrets = endpoint.secrets
        self._pricing = pricing
        self._auto_truncate = auto_truncate
        self._connect_timeout = connect_timeout

        in_fmt = AudioFormat.from_config(self._config.get("audio", {}).get("input", {}).get(
            "format"))  # fmt: skip
        out_fmt = AudioFormat.from_config(self._config.get("audio", {}).get("output", {}).get(
            "format"))  # fmt: skip
        meta = make_meta(
            model=model,
            url=endpoint.display_url,
            input_format=in_fmt,
            output_format=out_fmt,
            backend=endpoint.label,
            **dict(meta or {}),
        )
        if record is False or record is None:
            rec_path: str | Path | None = None
        elif record is True:
            rec_path = DEFAULT_DIR
        else:
            rec_path = Path(record)
        self._recorder = Recorder(rec_path, meta=meta, secrets=self._secrets)

        self._lock = threading.RLock()
        self._reducer = Reducer()
        self._gate = ResponseGate()
        self._calls = ToolCallTracker()
        self._playback = PlaybackModel()
        self._subs: dict[str, list[Callback]] = {}
        self._waiters: list[_Waiter] = []
        self._history: deque[Event] = deque(maxlen=HISTORY_EVENTS)
        self._local_errors: list[ErrorRecord] = []
        self._status: Status = "connecting"
        self._close_info: JSON | None = None
        self._closed = False
        self._mark = -1  # seq of the last event when the user last acted (for wait_for)
        self._pending_ops = 0
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._undelivered: list[tuple[str, str]] = []  # tool outputs waiting for a connection

        self._loop = asyncio.new_event_loop()
        self._outbox: deque[tuple[JSON, bytes | None]] = deque()
        self._wake: asyncio.Event | None = None
        self._ws: Any = None
        self._io_tasks: list[asyncio.Task[Any]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="realtime_nb-tool"
        )
        self._thread = threading.Thread(
            target=self._run_loop, name=f"realtime_nb-session-{id(self):x}", daemon=True
        )
        self._thread.start()
        _live_sessions.add(self)
        self._connect_future = asyncio.run_coroutine_threadsafe(self._open(seed=()), self._loop)
        if wait:
            self._wait_connected()

    # -- the I/O thread --------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        # Finish what close() scheduled, then release the loop's resources.
        pending = asyncio.all_tasks(self._loop)
        for t in pending:
            t.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _wait_connected(self) -> None:
        try:
            self._connect_future.result(timeout=self._connect_timeout + 1.0)
        except concurrent.futures.TimeoutError:
            self.close()
            raise SessionClosedError(
                f"could not connect to {self._endpoint.label} within {self._connect_timeout} s"
            ) from None
        except BaseException:
            self.close()
            raise

    async def _open(self, seed: Sequence[JSON]) -> None:
        """Connect, wait for ``session.created``, send the configuration and ``seed`` items.

        On cancellation the half-open connection is closed and the cancellation propagates.

        Raises:
            SessionClosedError: the handshake failed or the server closed during setup.
            SessionError: the server answered the configuration with an ``error``.
        """
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        self._set_status("connecting")
        ep = self._endpoint
        self._wake = asyncio.Event()
        created = self._loop.create_future()
        self._created_future: asyncio.Future[Event] | None = created
        try:
            ws = await asyncio.wait_for(
                connect(
                    ep.url,
                    additional_headers=dict(ep.headers),
                    max_size=MAX_FRAME_BYTES,
                    compression=None,  # base64 audio barely compresses; deflate only costs CPU
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    close_timeout=CLOSE_TIMEOUT_S,
                    open_timeout=self._connect_timeout,
                    logger=_RedactingLogger(logging.getLogger("websockets.client"), self._secrets),
                    user_agent_header="realtime_nb (websockets)",
                ),
                self._connect_timeout,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace")[:300] if exc.response.body else ""
            msg = f"{ep.label} refused the connection: HTTP {exc.response.status_code}"
            if body:
                msg += f": {redact_text(body, self._secrets)}"
            self._fail_connect(msg)
            raise SessionClosedError(msg) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            msg = f"could not connect to {ep.label} ({ep.display_url}): " + redact_text(
                f"{type(exc).__name__}: {exc}", self._secrets
            )
            self._fail_connect(msg)
            raise SessionClosedError(msg) from None
        self._ws = ws
        self._record_local("local.connection.opened", {"url": ep.display_url, "backend": ep.label})
        reader = self._loop.create_task(self._reader(ws), name="realtime_nb-reader")
        self._io_tasks = [reader]
        try:
            await asyncio.wait_for(asyncio.shield(created), self._connect_timeout)
        except TimeoutError:
            await ws.close()
            msg = f"{ep.label} sent no session.created within {self._connect_timeout} s"
            self._fail_connect(msg)
            raise SessionClosedError(msg) from None
        if created.exception() is not None:
            raise created.exception()  # type: ignore[misc]
        # Configuration, then the seeded conversation, then whatever the user queued meanwhile.
        waits: list[asyncio.Future[Event]] = []
        if len(self._config) > 1 or self._tools:
            update = client.session_update(self._config)
            waits.append(self._expect(update, "session.updated"))
            await self._send_now(update)
        for item in seed:
            ev = client.conversation_item_create(item)
            waits.append(self._expect(ev, "conversation.item.added", item_id=item.get("id")))
            await self._send_now(ev)
        if waits:
            done = await asyncio.wait_for(asyncio.gather(*waits), self._connect_timeout)
            errors = [e for e in done if e.type == "error"]
            if errors:
                err = errors[0].data.get("error") or {}
                raise SessionError(
                    f"{ep.label} refused the session setup: {err.get('message') or err}"
                )
        self._set_status("connected")
        for call_id, output in self._undelivered:
            self._enqueue(client.conversation_item_create(
                client.function_call_output_item(call_id, output)))  # fmt: skip
        if self._undelivered:
            self._undelivered.clear()
            self._request_response(client.response_create())
        self._io_tasks.append(self._loop.create_task(self._writer(ws), name="realtime_nb-writer"))

    def _fail_connect(self, msg: str) -> None:
        self._set_status("error")
        self._add_local_error("connection_failed", msg)

    def _expect(self, sent: JSON, etype: str, item_id: Any = None) -> asyncio.Future[Event]:
        """A future for the server's answer to ``sent``: ``etype`` or an ``error`` naming it."""
        fut: asyncio.Future[Event] = self._loop.create_future()
        eid = sent["event_id"]

        def check(ev: Event) -> bool:
            if ev.source is not Source.SERVER:
                return False
            if ev.type == "error":
                return bool((ev.data.get("error") or {}).get("event_id") == eid)
            return ev.type == etype and (item_id is None or ev.item_id == item_id)

        w = _Waiter("*", check, concurrent.futures.Future())

        def relay(f: concurrent.futures.Future[Event]) -> None:  # runs on the I/O thread
            if fut.done():
                return
            if f.cancelled():
                fut.cancel()
            elif (exc := f.exception()) is not None:
                fut.set_exception(exc)
                fut.exception()  # whoever awaits it sees it; no "never retrieved" noise otherwise
            else:
                fut.set_result(f.result())

        w.future.add_done_callback(relay)
        with self._lock:
            self._waiters.append(w)
        return fut

    async def _reader(self, ws: Any) -> None:
        """Receive frames until the connection ends, then record how it ended.

        Cancelled by close()/reconnect(): returns without recording a drop.
        """
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", "replace")
                self._on_frame(raw)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in our handling must not kill the connection silently
            logger.exception("realtime_nb: error while handling a server event")
        if self._ws is ws and not self._closed:
            self._on_connection_lost(ws)

    def _on_connection_lost(self, ws: Any) -> None:
        code = ws.close_code if ws.close_code is not None else 1006
        reason = ws.close_reason or ""
        rcvd = ws.protocol.close_rcvd
        info = {
            "code": code,
            "reason": reason,
            "initiated_by": "server" if rcvd is not None else "network",
            "clean": rcvd is not None,
        }
        self._close_info = info
        self._ws = None
        self._record_local("local.connection.closed", info)
        hint = " (the session reached its time limit)" if "expire" in reason else ""
        msg = f"connection to {self._endpoint.label} lost: code {code}{hint}"
        if reason:
            msg += f", reason {reason!r}"
        msg += "; call session.reconnect() to continue this conversation on a new connection"
        self._add_local_error("connection_closed", msg)
        logger.warning("realtime_nb: %s", msg)
        self._set_status("error")
        self._outbox.clear()
        self._gate.reset()
        self._calls.reset()
        self._fail_waiters(SessionClosedError(msg))

    async def _writer(self, ws: Any) -> None:
        """Send queued events in order. Cancelled by close()/reconnect(); unsent events stay."""
        from websockets.exceptions import ConnectionClosed

        assert self._wake is not None
        try:
            while True:
                while not self._outbox:
                    self._wake.clear()
                    await self._wake.wait()
                data, audio = self._outbox[0]
                await self._send_now(data, audio, ws)
                if self._outbox:
                    self._outbox.popleft()
        except ConnectionClosed:
            pass  # the reader records how the connection ended

    async def _send_now(self, data: JSON, audio: bytes | None = None, ws: Any = None) -> None:
        raw = _dumps(data)
        await (ws or self._ws).send(raw)
        self._dispatch(self._recorder.append(Source.CLIENT, data, raw=raw, audio=audio))

    def _on_frame(self, raw: str) -> None:
        try:
            data = _loads(raw)
        except ValueError:
            data = {"type": "<invalid json>", "text": raw[:1000]}
            raw = None  # type: ignore[assignment]
        if not isinstance(data, dict):
            data = {"type": "<not an object>", "value": data}
            raw = None  # type: ignore[assignment]
        ev = self._recorder.append(Source.SERVER, data, raw=raw)
        t = ev.type
        if t == "session.created" and getattr(self, "_created_future", None) is not None:
            fut = self._created_future
            self._created_future = None
            if fut is not None and not fut.done():
                fut.set_result(ev)
        self._dispatch(ev, data)

    def _dispatch(self, ev: Event, data: JSON | None = None) -> None:
        """Apply an event everywhere: state, policies, waiters, subscribers (I/O thread)."""
        t = ev.type
        with self._lock:
            self._reducer.apply(ev)
            if t not in AUDIO_FIELDS:
                self._history.append(ev)
            waiters = [w for w in self._waiters if _matches(w.pattern, t)]
        if ev.source is Source.SERVER:
            d = data if data is not None else ev.data
            if t in ("response.created", "response.done", "error"):
                for req in self._gate.on_server_event(d):
                    self._enqueue(req)
            if t in ("response.function_call_arguments.done", "response.output_item.done",
                     "response.done"):  # fmt: skip
                starts, due = self._calls.on_server_event(d)
                for s in starts:
                    self._start_call(s)
                if due:
                    self._request_response(client.response_create())
            if t == "error":
                err = d.get("error") or {}
                logger.warning(
                    "realtime_nb: server error %s: %s",
                    err.get("code") or err.get("type"),
                    redact_text(str(err.get("message")), self._secrets),
                )
        if t == "input_audio_buffer.speech_started" or t.startswith("local.playback."):
            with self._lock:
                decision = self._playback.on_event(ev, self._reducer.state)
            if decision is not None and self._auto_truncate and self._ws is not None:
                self._enqueue(client.conversation_item_truncate(decision[0], decision[1]))
        for w in waiters:
            if w.future.done():
                continue
            try:
                ok = w.where is None or w.where(ev)
            except Exception as exc:
                w.future.set_exception(exc)
                ok = False
            if ok and not w.future.done():
                w.future.set_result(ev)
        if waiters:
            with self._lock:
                self._waiters = [w for w in self._waiters if not w.future.done()]
        subs = self._subs
        for key in (t, "*") if t in subs or "*" in subs else ():
            for cb in list(subs.get(key, ())):
                self._call(cb, ev)
        if "__patterns__" in subs:
            for cb in list(subs["__patterns__"]):
                pattern = getattr(cb, "_rt_pattern", "*")
                if _matches(pattern, t):
                    self._call(cb, ev)

    def _call(self, cb: Callback, ev: Event) -> None:
        try:
            result = cb(ev)
            if asyncio.iscoroutine(result):
                self._loop.create_task(result)
        except Exception:
            logger.exception("realtime_nb: callback %r failed on %s", cb, ev.type)

    def _set_status(self, status: Status) -> None:
        self._status = status

    def _record_local(self, etype: str, data: Mapping[str, Any]) -> Event:
        ev = self._recorder.append(Source.LOCAL, {"type": etype, **data})
        self._dispatch(ev)
        return ev

    def _add_local_error(self, kind: str, message: str) -> None:
        with self._lock:
            self._local_errors.append(
                ErrorRecord(self._recorder.elapsed_ns, "local", kind, kind, message)
            )

    def _fail_waiters(self, exc: BaseException) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.future.done():
                w.future.set_exception(exc)
        fut = getattr(self, "_created_future", None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)
            fut.exception()  # _open() may no longer be waiting for it

    # -- operations scheduled onto the I/O thread ------------------------------------------------

    def _enqueue(self, data: JSON, audio: bytes | None = None) -> None:
        """Queue an event for the writer (I/O thread only)."""
        self._outbox.append((data, audio))
        if self._wake is not None:
            self._wake.set()

    def _request_response(self, event: JSON) -> None:
        for ev in self._gate.request(event):
            self._enqueue(ev)

    def _check_usable(self) -> None:
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        if self._status == "error":
            info = self._close_info or {}
            raise SessionClosedError(
                f"the connection to {self._endpoint.label} was lost (code {info.get('code')}); "
                "call session.reconnect() to continue on a new connection"
            )

    def _submit(self, op: Callable[[], None]) -> None:
        """Run ``op`` on the I/O thread, in submission order (any thread)."""
        self._check_usable()
        with self._lock:
            self._pending_ops += 1
            self._mark = self._recorder.count - 1

        def run() -> None:
            try:
                op()
            except Exception:
                logger.exception("realtime_nb: could not send")
            finally:
                with self._lock:
                    self._pending_ops -= 1

        self._loop.call_soon_threadsafe(run)

    # -- tools -----------------------------------------------------------------------------------

    def _tool_named(self, name: str) -> Tool | None:
        return self._tools.get(name) or self._response_tools.get(name)

    def _start_call(self, start: StartCall) -> None:
        call = start.call
        self._record_local("local.tool.started", {
            "call_id": call.call_id, "name": call.name, "arguments": call.arguments,
        })  # fmt: skip
        task = self._loop.create_task(self._run_call(call), name=f"realtime_nb-tool-{call.name}")
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_tasks.discard)

    async def _run_call(self, call: ToolCall) -> None:
        """Run one tool call and send its output (or its error) and the follow-up response.

        Cancelled by close(): the call's output is not sent.
        """
        t0 = time.perf_counter()
        error: str | None = None
        tool = self._tool_named(call.name)
        try:
            if tool is None:
                known = ", ".join(sorted({*self._tools, *self._response_tools})) or "none"
                raise LookupError(f"no tool named {call.name!r} (tools: {known})")
            kwargs = tool.parse_arguments(call.arguments)
            if tool.is_async:
                work: Awaitable[Any] = tool.func(**kwargs)
            else:
                work = self._loop.run_in_executor(
                    self._executor, functools.partial(tool.func, **kwargs)
                )
            try:
                result = await asyncio.wait_for(work, tool.timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{call.name} did not finish within {tool.timeout:g} s"
                ) from None
            output = encode_result(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            output = encode_error(exc, secrets=self._secrets)
            error = json.loads(output)["error"]
            logger.warning("realtime_nb: tool %s failed: %s", call.name, error)
            self._add_local_error("tool_error", f"{call.name}: {error}")
        duration_ms = (time.perf_counter() - t0) * 1000.0
        self._record_local("local.tool.finished", {
            "call_id": call.call_id, "name": call.name, "output": output, "error": error,
            "duration_ms": round(duration_ms, 3),
        })  # fmt: skip
        if self._ws is None or self._status != "connected":
            self._undelivered.append((call.call_id, output))
            return
        self._enqueue(
            client.conversation_item_create(client.function_call_output_item(call.call_id, output))
        )
        if self._calls.finish(call.call_id):
            self._request_response(client.response_create())

    def add_tool(self, *tools: Any) -> None:
        """Declare more tools (``@tool`` functions, functions or definition dicts) mid-session.

        Raises:
            ToolDefinitionError: a function cannot be described as a tool.
        """
        defs, new = _tool_definitions(tools)
        with self._lock:
            current = [d for d in self._config.get("tools", [])
                       if d.get("name") not in {x.get("name") for x in defs}]  # fmt: skip
            self._tools.update(new)
            self._config["tools"] = current + defs
            tool_defs = list(self._config["tools"])
        self._submit(lambda: self._enqueue(client.session_update({"tools": tool_defs})))

    def remove_tool(self, name: str) -> None:
        """Stop offering the tool ``name`` (calls already running finish).

        Raises:
            KeyError: no tool of that name (the declared ones are named).
        """
        with self._lock:
            defs = self._config.get("tools", [])
            if not any(d.get("name") == name for d in defs):
                known = ", ".join(str(d.get("name")) for d in defs) or "none"
                raise KeyError(f"no tool named {name!r} (tools: {known})")
            self._config["tools"] = [d for d in defs if d.get("name") != name]
            self._tools.pop(name, None)
            tool_defs = list(self._config["tools"])
        self._submit(lambda: self._enqueue(client.session_update({"tools": tool_defs})))

    @property
    def tools(self) -> dict[str, Tool]:
        """The Python tools declared on the session, by name."""
        return dict(self._tools)

    # -- public: sending -------------------------------------------------------------------------

    def update(self, **session_fields: Any) -> str:
        """Send ``session.update`` with these fields (same names as the constructor's, plus raw
        GA fields such as ``max_output_tokens``). Returns the event id.

        Raises:
            TypeError, ValueError: an unknown field or a bad value (accepted ones listed).
            SessionClosedError: the session is closed or its connection lost.
        """
        cfg, tools = build_session_config(**session_fields)
        with self._lock:
            if "tools" in cfg:
                self._tools = tools
            self._config = deep_merge(self._config, cfg)
            if "tools" in cfg:
                self._config["tools"] = cfg["tools"]
        ev = client.session_update(cfg)
        self._submit(lambda: self._enqueue(ev))
        return str(ev["event_id"])

    def send_text(self, text: str, respond: bool = True) -> str:
        """Add a user text message; with ``respond`` also ask for a response (queued while one is
        active). Returns the item event's id.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is empty or only whitespace.
            SessionClosedError: the session is closed or its connection lost.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            # An empty message is a caller's slip (a blank input, an unfilled template).
            raise ValueError(
                f"text is empty ({text!r}); accepted: a message with words in it "
                "(respond() asks for a response without adding one)"
            )
        ev = client.conversation_item_create(client.user_text_item(text))
        resp = client.response_create() if respond else None

        def op() -> None:
            self._enqueue(ev)
            if resp is not None:
                self._request_response(resp)

        self._submit(op)
        return str(ev["event_id"])

    def send_image(
        self, image: bytes | str | os.PathLike[str], text: str | None = None, respond: bool = False
    ) -> str:
        """Add a user message with an image (PNG/JPEG/GIF/WebP bytes, a path or a data URL) and
        optional text. Returns the event id.

        Raises:
            ValueError: not an accepted image format. FileNotFoundError: no such file.
            SessionClosedError: the session is closed or its connection lost.
        """
        ev = client.conversation_item_create(client.user_image_item(image_data_url(image), text))
        resp = client.response_create() if respond else None

        def op() -> None:
            self._enqueue(ev)
            if resp is not None:
                self._request_response(resp)

        self._submit(op)
        return str(ev["event_id"])

    def _chunks(self, pcm: bytes) -> list[bytes]:
        step = max(self.input_format.bytes_for_ms(CHUNK_MS), 2)
        return [pcm[i : i + step] for i in range(0, len(pcm), step)]

    def send_audio(
        self,
        audio: npt.NDArray[Any] | bytes | str | os.PathLike[str],
        sample_rate: int | None = None,
        realtime: bool = False,
    ) -> float:
        """Append audio to the input buffer: any array, bytes or file, resampled to the session's
        input format and sent in :data:`CHUNK_MS` chunks. With ``realtime=True`` chunks are paced
        at the speed of speech and this call returns when the last one is sent. Returns the
        duration sent, in ms.

        Raises:
            TypeError, ValueError: audio that cannot be read or converted (see
                :func:`prepare_audio`). SessionClosedError: session closed or connection lost.
        """
        pcm = prepare_audio(audio, self.input_format, sample_rate)
        if not realtime:
            chunks = self._chunks(pcm)

            def op() -> None:
                for c in chunks:
                    self._enqueue_audio(c)

            self._submit(op)
        else:
            self._check_usable()
            fut = asyncio.run_coroutine_threadsafe(self._paced(pcm), self._loop)
            fut.result()
        return self.input_format.duration_ms(len(pcm))

    async def asend_audio(
        self,
        audio: npt.NDArray[Any] | bytes | str | os.PathLike[str],
        sample_rate: int | None = None,
        realtime: bool = False,
    ) -> float:
        """:meth:`send_audio` for ``async`` code. Cancelling it stops sending the rest."""
        if not realtime:
            return self.send_audio(audio, sample_rate, realtime=False)
        pcm = prepare_audio(audio, self.input_format, sample_rate)
        self._check_usable()
        fut = asyncio.run_coroutine_threadsafe(self._paced(pcm), self._loop)
        try:
            await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        return self.input_format.duration_ms(len(pcm))

    async def _paced(self, pcm: bytes) -> None:
        """Send ``pcm`` chunk by chunk at real time (I/O loop). Cancelled: stops sending."""
        t0 = self._loop.time()
        sent_ms = 0.0
        for c in self._chunks(pcm):
            self._enqueue_audio(c)
            sent_ms += self.input_format.duration_ms(len(c))
            delay = t0 + sent_ms / 1000.0 - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def _enqueue_audio(self, pcm: bytes) -> None:
        self._enqueue(client.input_audio_buffer_append(base64.b64encode(pcm).decode("ascii")), pcm)

    def append_audio(self, pcm: bytes) -> None:
        """Append bytes already in the input format (the widget's microphone). Thread-safe,
        non-blocking, order-preserving; silently ignored when the connection is down."""
        if self._closed or self._status != "connected":
            return
        data = bytes(pcm)
        self._loop.call_soon_threadsafe(self._enqueue_audio, data)

    def commit(self) -> str:
        """Commit the input audio buffer as a user turn (push-to-talk). Returns the event id.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """
        ev = client.input_audio_buffer_commit()
        self._submit(lambda: self._enqueue(ev))
        return str(ev["event_id"])

    def clear(self) -> str:
        """Discard the uncommitted input audio. Returns the event id.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """
        ev = client.input_audio_buffer_clear()
        self._submit(lambda: self._enqueue(ev))
        return str(ev["event_id"])

    def respond(self, **response_overrides: Any) -> str:
        """Ask for a response (``response.create``), queued while another is active. Overrides:
        ``instructions``, ``tools`` (``@tool`` functions run like session tools), ``tool_choice``,
        ``voice``, ``output_modalities``, ``conversation``, ``metadata``, ``input``,
        ``max_output_tokens``, ``prompt``, ``audio``. Returns the event id.

        Raises:
            TypeError: an unknown override (accepted ones listed).
            SessionClosedError: the session is closed or its connection lost.
        """
        resp, tools = build_response(**response_overrides)
        with self._lock:
            self._response_tools.update(tools)
        ev = client.response_create(resp or None)
        self._submit(lambda: self._request_response(ev))
        return str(ev["event_id"])

    def cancel(self) -> None:
        """Cancel the active response (if any) and drop queued response requests.

        Raises:
            SessionClosedError: the session is closed or its connection lost.
        """

        def op() -> None:
            self._gate.drop_queued()
            if self._gate.active is not None or self._gate.in_flight is not None:
                rid = self._gate.active if self._gate.active not in (None, "?") else None
                self._enqueue(client.response_cancel(rid))

        self._submit(op)

    def truncate(self, item_id: str, audio_end_ms: float, content_index: int = 0) -> int:
        """Truncate an assistant audio item to what was heard. ``audio_end_ms`` is floored to an
        integer and clamped to the audio received for the item. Returns the value sent.

        Raises:
            ValueError: no audio was received for ``item_id``, or a non-finite value.
            SessionClosedError: the session is closed or its connection lost.
        """
        with self._lock:
            ms = self._playback.clamp(self._reducer.state, item_id, audio_end_ms)
        ev = client.conversation_item_truncate(item_id, ms, content_index)
        self._submit(lambda: self._enqueue(ev))
        return ms

    def log_local(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Record a ``local`` event (``local.playback.played`` {item_id, played_ms, reason}, ...)
        and let it act (an interrupted playback truncates). Thread-safe, non-blocking.

        Raises:
            ValueError: ``type`` does not start with ``local.``.
        """
        if not isinstance(type, str) or not type.startswith("local."):
            raise ValueError(f"local event types start with 'local.', got {type!r}")
        if self._closed:
            return
        payload = dict(data or {})
        self._loop.call_soon_threadsafe(self._record_local, type, payload)

    # -- async twins -----------------------------------------------------------------------------
    # Sending only queues work for the I/O thread, so the async forms never block the caller's
    # loop; they exist so that async code reads naturally and for symmetry with await_for().

    async def aupdate(self, **session_fields: Any) -> str:
        """:meth:`update`, for ``async`` code."""
        return self.update(**session_fields)

    async def asend_text(self, text: str, respond: bool = True) -> str:
        """:meth:`send_text`, for ``async`` code."""
        return self.send_text(text, respond)

    async def asend_image(
        self, image: bytes | str | os.PathLike[str], text: str | None = None, respond: bool = False
    ) -> str:
        """:meth:`send_image`, for ``async`` code."""
        return self.send_image(image, text, respond)

    async def acommit(self) -> str:
        """:meth:`commit`, for ``async`` code."""
        return self.commit()

    async def aclear(self) -> str:
        """:meth:`clear`, for ``async`` code."""
        return self.clear()

    async def arespond(self, **response_overrides: Any) -> str:
        """:meth:`respond`, for ``async`` code."""
        return self.respond(**response_overrides)

    async def acancel(self) -> None:
        """:meth:`cancel`, for ``async`` code."""
        self.cancel()

    async def atruncate(self, item_id: str, audio_end_ms: float, content_index: int = 0) -> int:
        """:meth:`truncate`, for ``async`` code."""
        return self.truncate(item_id, audio_end_ms, content_index)

    # -- waiting ---------------------------------------------------------------------------------

    def _make_waiter(
        self, event_type: str, where: Callable[[Event], bool] | None, after: int | None
    ) -> _Waiter:
        w = _Waiter(event_type, where, concurrent.futures.Future())
        with self._lock:
            mark = self._mark if after is None else after
            for ev in self._history:
                if ev.seq > mark and _matches(event_type, ev.type) and (where is None or where(ev)):
                    w.future.set_result(ev)
                    return w
            if self._status in ("error", "closed") and not event_type.startswith("local."):
                w.future.set_exception(SessionClosedError(
                    f"session is {self._status}; no {event_type} will arrive"))  # fmt: skip
                return w
            self._waiters.append(w)
        return w

    def _timeout_error(self, event_type: str, timeout: float | None) -> TimeoutError:
        with self._lock:
            last = [e.type for e in list(self._history)[-5:]]
        return TimeoutError(
            f"no {event_type} within {timeout} s (status {self._status}; last events: "
            f"{', '.join(last) or 'none'})"
        )

    def wait_for(
        self,
        event_type: str,
        timeout: float | None = 30.0,
        *,
        where: Callable[[Event], bool] | None = None,
        after: int | None = None,
    ) -> Event:
        """Block until an event of ``event_type`` (exact, beta alias, ``*`` or a glob like
        ``response.*``) arrives, optionally matching ``where``. Events that arrived since your
        last send/respond/... count, so ``send_text(); wait_for("response.done")`` cannot miss
        a fast answer; ``after=seq`` sets that point explicitly.

        Raises:
            TimeoutError: nothing matched in time (the last events are named).
            SessionClosedError: the connection ended first.
        """
        w = self._make_waiter(event_type, where, after)
        try:
            return w.future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timeout_error(event_type, timeout) from None
        finally:
            w.future.cancel()
            with self._lock:
                if w in self._waiters:
                    self._waiters.remove(w)

    async def await_for(
        self,
        event_type: str,
        timeout: float | None = 30.0,
        *,
        where: Callable[[Event], bool] | None = None,
        after: int | None = None,
    ) -> Event:
        """:meth:`wait_for` for ``async`` code; cancelling it stops waiting (nothing else)."""
        w = self._make_waiter(event_type, where, after)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(w.future), timeout)
        except TimeoutError:
            raise self._timeout_error(event_type, timeout) from None
        finally:
            w.future.cancel()
            with self._lock:
                if w in self._waiters:
                    self._waiters.remove(w)

    @property
    def idle(self) -> bool:
        """No response active, in flight or queued, no tool running, nothing left to send."""
        with self._lock:
            return (
                self._pending_ops == 0
                and not self._gate.busy
                and not self._gate.queue
                and not self._tool_tasks
                and self._calls.running == 0
                and not self._outbox
            )

    def wait_until_idle(self, timeout: float | None = 30.0, settle_s: float = 0.05) -> None:
        """Block until :attr:`idle` holds for ``settle_s`` (a whole turn, tool calls and their
        follow-up responses included, is over).

        Raises:
            TimeoutError: still busy after ``timeout`` seconds.
            SessionClosedError: the connection ended first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        since: float | None = None
        while True:
            self._check_usable()
            now = time.monotonic()
            if self.idle:
                since = now if since is None else since
                if now - since >= settle_s:
                    return
            else:
                since = None
            if deadline is not None and now > deadline:
                raise self._timeout_error("idle state", timeout)
            time.sleep(0.005)

    # -- subscriptions ---------------------------------------------------------------------------

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` on the I/O thread for each matching event (client, server and
        local; ``"*"`` = all; globs like ``"response.*"``). ``async`` callbacks are scheduled on
        the session's loop. Returns a function that unsubscribes.

        Callbacks must be quick: they run on the I/O thread between frames.
        """
        if ("*" in event_type and event_type != "*") or "?" in event_type:
            key = "__patterns__"

            def cb(ev: Event) -> Any:
                return callback(ev)

            cb._rt_pattern = event_type  # type: ignore[attr-defined]
            entry: Callback = cb
        else:
            key, entry = event_type, callback
        with self._lock:
            subs = {k: list(v) for k, v in self._subs.items()}
            subs.setdefault(key, []).append(entry)
            self._subs = subs

        def unsubscribe() -> None:
            with self._lock:
                subs = {k: list(v) for k, v in self._subs.items()}
                if entry in subs.get(key, []):
                    subs[key].remove(entry)
                    if not subs[key]:
                        del subs[key]
                self._subs = subs

        return unsubscribe

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Every event (client, server, local) from now on, until the session closes.
        Breaking out or cancelling unsubscribes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def push(ev: Event | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        unsubscribe = self.on("*", push)
        end = self.on("local.session.closed", lambda ev: push(None))
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            unsubscribe()
            end()

    # -- state -----------------------------------------------------------------------------------

    @property
    def conversation(self) -> ConversationState:
        """The live conversation state (items, responses, turns, usage, errors). It changes as
        events arrive; take ``.snapshot()`` for a copy that does not."""
        return self._reducer.state

    def snapshot(self) -> ConversationState:
        """A consistent deep copy of :attr:`conversation`."""
        with self._lock:
            return self._reducer.state.snapshot()

    @property
    def usage(self) -> SessionUsage:
        """Token usage, total and per response."""
        with self._lock:
            st = self._reducer.state
            per = {rid: r.usage for rid, r in st.responses.items() if r.usage is not None}
            return SessionUsage(st.usage, per)

    @property
    def cost(self) -> Cost:
        """USD so far, total and per response, priced for the server-reported model."""
        with self._lock:
            # Priced from the reducer's responses, exactly as a replay of the recording is.
            usages = [
                (rid, r.usage_raw)
                for rid, r in self._reducer.state.responses.items()
                if r.usage_raw is not None
            ]
            model = self._reducer.state.session.get("model") or self.model
        return session_cost(str(model), usages, self._pricing)

    @property
    def errors(self) -> list[ErrorRecord]:
        """Server ``error`` events, tool failures and connection losses, in time order."""
        with self._lock:
            return sorted([*self._reducer.state.errors, *self._local_errors],
                          key=lambda e: e.t_ns)  # fmt: skip

    @property
    def status(self) -> Status:
        """``connecting``, ``connected``, ``closed`` (by you) or ``error`` (connection lost)."""
        return self._status

    @property
    def backend(self) -> str:
        """A short label for where this session is connected."""
        return self._endpoint.label

    @property
    def url(self) -> str:
        """The WebSocket URL, without credentials."""
        return self._endpoint.display_url

    @property
    def input_format(self) -> AudioFormat:
        """The input audio format the server confirmed (or that was requested)."""
        st = self._reducer.state
        if st.session:
            return st.input_format
        return AudioFormat.from_config(self._config.get("audio", {}).get("input", {}).get("format"))

    @property
    def output_format(self) -> AudioFormat:
        """The output audio format the server confirmed (or that was requested)."""
        st = self._reducer.state
        if st.session:
            return st.output_format
        return AudioFormat.from_config(
            self._config.get("audio", {}).get("output", {}).get("format")
        )

    @property
    def settings(self) -> JSON:
        """``instructions``, ``voice`` and ``turn_detection`` in effect (server's view first)."""
        with self._lock:
            sess = deep_merge(self._config, self._reducer.state.session)
        audio = sess.get("audio") or {}
        return {
            "instructions": sess.get("instructions"),
            "voice": (audio.get("output") or {}).get("voice"),
            "turn_detection": (audio.get("input") or {}).get("turn_detection"),
            "output_modalities": sess.get("output_modalities"),
        }

    @property
    def recording_path(self) -> Path | None:
        """The recording file, or ``None`` with ``record=False``."""
        return self._recorder.path

    def recording(self) -> Recording:
        """The recording so far, read back from disk (pending events are flushed first): the
        same view a saved session gets, with its summary, items and audio players.

        Raises:
            ValueError: the session was created with ``record=False``.
        """
        path = self._recorder.path
        if path is None:
            raise ValueError("this session is not recorded (record=False); nothing to open")
        if not self._recorder.closed:
            self._recorder.flush()
        return Recording.open(path)

    @property
    def close_info(self) -> JSON | None:
        """How the last connection ended (code, reason, initiated_by), if it ended."""
        return self._close_info

    def widget(self) -> Any:
        """A :class:`realtime_nb.widget.RealtimeWidget` for this session (mic, speaker, log)."""
        from ..widget import RealtimeWidget

        return RealtimeWidget(self)

    # -- reconnect and close ---------------------------------------------------------------------

    def reconnect(self, timeout: float | None = None) -> None:
        """Open a new connection seeded with the conversation so far (items re-created as text
        and transcripts, with their ids); the recording continues in the same file.

        Raises:
            SessionClosedError: the session was closed, or the new connection failed.
            SessionError: the server refused the configuration or a seeded item.
        """
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        fut = asyncio.run_coroutine_threadsafe(self._reconnect(), self._loop)
        fut.result(timeout or self._connect_timeout * 3)

    async def areconnect(self) -> None:
        """:meth:`reconnect` for ``async`` code. Cancelling it leaves the session disconnected
        (status ``error``); call it again."""
        if self._closed:
            raise SessionClosedError("this session is closed; start a new Session")
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._reconnect(), self._loop))

    async def _reconnect(self) -> None:
        await self._drop_connection(code=1000, reason="reconnect")
        with self._lock:
            seed = seed_items(self._reducer.state.items)
        self._gate.reset()
        self._calls.reset()
        self._outbox.clear()
        self._record_local("local.note", {"text": f"reconnecting with {len(seed)} items"})
        await self._open(seed)

    async def _drop_connection(self, code: int, reason: str) -> None:
        ws, self._ws = self._ws, None
        for t in self._io_tasks:
            t.cancel()
        if self._io_tasks:
            await asyncio.gather(*self._io_tasks, return_exceptions=True)
        self._io_tasks = []
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(code, reason)
            info = {"code": code, "reason": reason, "initiated_by": "client", "clean": True}
            self._close_info = info
            self._record_local("local.connection.closed", info)

    async def _shutdown(self) -> None:
        for t in list(self._tool_tasks):
            t.cancel()
        if self._tool_tasks:
            await asyncio.gather(*self._tool_tasks, return_exceptions=True)
        await self._drop_connection(code=1000, reason="closed by user")
        self._set_status("closed")
        self._record_local("local.session.closed", {})
        self._fail_waiters(SessionClosedError("the session was closed"))

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection, stop the I/O thread and finish the recording. Idempotent; safe
        from any thread (from a callback on the I/O thread it completes asynchronously)."""
        if self._closed:
            return
        self._closed = True
        _live_sessions.discard(self)
        if threading.current_thread() is self._thread:
            task = self._loop.create_task(self._shutdown())
            task.add_done_callback(lambda _: self._finish_close())
            return
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(timeout)
        self._finish_close()
        self._thread.join(timeout)

    def _finish_close(self) -> None:
        self._status = "closed"
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._recorder.close()

    async def aclose(self) -> None:
        """:meth:`close` for ``async`` code (runs it in a worker thread)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        await asyncio.wrap_future(self._connect_future)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        n = len(self._reducer.state.order)
        return f"<Session {self.backend} {self._status}: {n} items, {self.cost}>"
