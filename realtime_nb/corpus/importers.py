"""Importers for voice platforms' call exports: Vapi and Retell calls become recordings.

Both take the call object as the platform's API returns it (the JSON as a dict, or the object of
the official SDK: ``vapi.types.Call`` from ``vapi_server_sdk``, ``retell.types.WebCallResponse``
or ``PhoneCallResponse`` from ``retell-sdk``) and, optionally, the call's recording as a WAV
file (the platforms give URLs; download it yourself: realtime_nb never fetches anything).

What is kept: every user and agent utterance with its timing, as a user turn and the response
answering it; tool calls (name, arguments, call id) and their results, in order; the call's id,
platform, start time and cost in the metadata (``meta["imported"]``). With a **stereo**
recording, the user channel becomes the input audio (time-aligned, each user turn holding its
speech) and the agent channel each answer's audio, so the result re-drives its real audio.

What is lost: tokens and per-response usage (the platforms report cost, not Realtime usage); the
platform's own latency figures (the importer's latency is the gap between the user's last word
and the agent's first, from the transcript); system prompts and model settings (not in a call
object); interruptions (an utterance cut short is just a shorter utterance); a mono recording's
audio (the two voices cannot be told apart: the turns stay text, and the audio is not stored);
Retell's node transitions, DTMF and SMS entries, Vapi's system messages (kept in the metadata
only).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..core.audio import AudioFormat, b64encode_audio, encode_from_float, resample
from ..storage.recording import Recording, make_meta
from ._summary import utc_time

__all__ = ["import_retell", "import_vapi"]

JSON = dict[str, Any]

#: Imported audio is sent as chunks of this many ms, as a microphone would (40-100 ms is usual).
CHUNK_MS: Final = 100
#: The recording format of an import: PCM16 at 24 kHz, the Realtime API's default.
_FORMAT: Final = AudioFormat()


@dataclass
class _Utterance:
    role: str  # "user" | "agent"
    text: str
    start_s: float
    end_s: float


@dataclass
class _ToolCall:
    call_id: str
    name: str
    arguments: str
    t_s: float
    result: str | None = None
    result_t_s: float | None = None


def _as_dict(call: Any, what: str) -> JSON:
    if isinstance(call, Mapping):
        return dict(call)
    for method in ("to_dict", "dict", "model_dump"):
        fn = getattr(call, method, None)
        if callable(fn):
            try:
                out = fn(by_alias=True) if method != "to_dict" else fn()
            except TypeError:
                out = fn()
            if isinstance(out, Mapping):
                # Through JSON: datetimes become ISO text, as in the API's own JSON.
                return dict(json.loads(json.dumps(out, default=str)))
    raise TypeError(
        f"{what} takes the call as a dict (the API's JSON) or the SDK's call object, got {type(call).__name__}"
    )


def _read_stereo(path: str | Path, channels: Sequence[str]) -> dict[str, bytes] | None:
    """``{"user": pcm, "agent": pcm}`` in :data:`_FORMAT` from a stereo WAV; ``None`` if mono."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[1] < 2:
        return None
    if sorted(channels) != ["agent", "user"]:
        raise ValueError(f"channels must name 'user' and 'agent' once each, got {list(channels)}")
    return {
        role: encode_from_float(resample(data[:, k], int(rate), _FORMAT.rate), _FORMAT)
        for k, role in enumerate(channels[:2])
    }


def _events(
    utterances: list[_Utterance],
    calls: list[_ToolCall],
    audio: dict[str, bytes] | None,
    platform: str,
) -> list[JSON]:
    """The call as Realtime events (server VAD turns with audio, text turns without)."""
    ev: list[JSON] = []
    ids = iter(range(1, 1_000_000))

    def add(source: str, t_s: float, event: JSON) -> None:
        ev.append({"source": source, "t_ns": max(int(t_s * 1e9), 0), "event": event})

    def new_id(prefix: str) -> str:
        return f"{prefix}_{platform}{next(ids):06d}"

    add(
        "server",
        0.0,
        {
            "type": "session.created",
            "session": {"type": "realtime", "model": platform, "output_modalities": ["audio"]},
        },
    )
    if audio is not None:
        user = audio["user"]
        step = _FORMAT.bytes_for_ms(CHUNK_MS)
        for k in range(0, len(user), step):
            add(
                "client",
                k / _FORMAT.bytes_per_ms / 1000.0,
                {"type": "input_audio_buffer.append", "audio": b64encode_audio(user[k : k + step])},
            )
    timeline: list[tuple[float, int, Any]] = [(u.start_s, 0, u) for u in utterances]
    timeline += [(c.t_s, 1, c) for c in calls]
    timeline.sort(key=lambda x: (x[0], x[1]))
    for _t, _kind, what in timeline:
        if isinstance(what, _ToolCall):
            rid, iid = new_id("resp"), new_id("item")
            item: JSON = {
                "id": iid,
                "type": "function_call",
                "status": "completed",
                "name": what.name,
                "call_id": what.call_id,
                "arguments": what.arguments,
            }
            add(
                "server",
                what.t_s,
                {
                    "type": "response.created",
                    "response": {"id": rid, "status": "in_progress", "output": []},
                },
            )
            add(
                "server",
                what.t_s,
                {
                    "type": "response.output_item.added",
                    "response_id": rid,
                    "output_index": 0,
                    "item": {**item, "status": "in_progress", "arguments": ""},
                },
            )
            add(
                "server",
                what.t_s,
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": rid,
                    "item_id": iid,
                    "output_index": 0,
                    "call_id": what.call_id,
                    "name": what.name,
                    "arguments": what.arguments,
                },
            )
            add(
                "server",
                what.t_s,
                {
                    "type": "response.output_item.done",
                    "response_id": rid,
                    "output_index": 0,
                    "item": item,
                },
            )
            add(
                "server",
                what.t_s,
                {
                    "type": "response.done",
                    "response": {"id": rid, "status": "completed", "output": [item]},
                },
            )
            if what.result is not None:
                t = what.result_t_s if what.result_t_s is not None else what.t_s
                out = {
                    "id": new_id("item"),
                    "type": "function_call_output",
                    "call_id": what.call_id,
                    "output": what.result,
                }
                add("client", t, {"type": "conversation.item.create", "item": out})
                add("server", t, {"type": "conversation.item.added", "item": out})
                add("server", t, {"type": "conversation.item.done", "item": out})
            continue
        u = what
        if u.role == "user":
            iid = new_id("item")
            if audio is not None:
                start_ms, end_ms = int(u.start_s * 1000), int(u.end_s * 1000)
                add(
                    "server",
                    u.start_s,
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": start_ms,
                        "item_id": iid,
                    },
                )
                add(
                    "server",
                    u.end_s,
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": end_ms,
                        "item_id": iid,
                    },
                )
                add("server", u.end_s, {"type": "input_audio_buffer.committed", "item_id": iid})
                item = {
                    "id": iid,
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": [{"type": "input_audio", "transcript": None}],
                }
                add("server", u.end_s, {"type": "conversation.item.added", "item": item})
                add("server", u.end_s, {"type": "conversation.item.done", "item": item})
                add(
                    "server",
                    u.end_s,
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": iid,
                        "content_index": 0,
                        "transcript": u.text,
                    },
                )
            else:
                item = {
                    "id": iid,
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": [{"type": "input_text", "text": u.text}],
                }
                add("server", u.end_s, {"type": "conversation.item.added", "item": item})
                add("server", u.end_s, {"type": "conversation.item.done", "item": item})
            continue
        rid, iid = new_id("resp"), new_id("item")
        add(
            "server",
            u.start_s,
            {
                "type": "response.created",
                "response": {"id": rid, "status": "in_progress", "output": []},
            },
        )
        add(
            "server",
            u.start_s,
            {
                "type": "response.output_item.added",
                "response_id": rid,
                "output_index": 0,
                "item": {
                    "id": iid,
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                },
            },
        )
        add(
            "server",
            u.start_s,
            {
                "type": "response.content_part.added",
                "response_id": rid,
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "audio", "transcript": ""},
            },
        )
        if audio is not None:
            agent = audio["agent"]
            a = _FORMAT.bytes_for_ms(u.start_s * 1000)
            b = min(_FORMAT.bytes_for_ms(u.end_s * 1000), len(agent))
            step = _FORMAT.bytes_for_ms(CHUNK_MS)
            for k in range(a, b, step):
                add(
                    "server",
                    k / _FORMAT.bytes_per_ms / 1000.0,
                    {
                        "type": "response.output_audio.delta",
                        "response_id": rid,
                        "item_id": iid,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": b64encode_audio(agent[k : min(k + step, b)]),
                    },
                )
        # The words as they are said (one delta at the first word): the answer's first output.
        add(
            "server",
            u.start_s,
            {
                "type": "response.output_audio_transcript.delta",
                "response_id": rid,
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
                "delta": u.text,
            },
        )
        add(
            "server",
            u.end_s,
            {
                "type": "response.output_audio_transcript.done",
                "response_id": rid,
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
                "transcript": u.text,
            },
        )
        done = {
            "id": iid,
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_audio", "transcript": u.text}],
        }
        add(
            "server",
            u.end_s,
            {
                "type": "response.output_item.done",
                "response_id": rid,
                "output_index": 0,
                "item": done,
            },
        )
        add(
            "server",
            u.end_s,
            {
                "type": "response.done",
                "response": {"id": rid, "status": "completed", "output": [done]},
            },
        )
    ev.sort(key=lambda e: e["t_ns"])  # stable: same-time events keep their order
    return ev


def _save(events: list[JSON], meta: JSON, save_to: str | Path | None) -> Recording:
    return Recording.from_events(events, meta=meta, path=save_to)


def _iso(value: Any) -> str | None:
    """An ISO 8601 UTC time from the API's text (or an SDK's datetime turned to text)."""
    when = utc_time(value)
    return None if when is None else when.isoformat(timespec="milliseconds")


def _iso_from_ms(ms: Any) -> str | None:
    if not isinstance(ms, (int, float)):
        return None
    return _dt.datetime.fromtimestamp(ms / 1000.0, _dt.timezone.utc).isoformat(
        timespec="milliseconds"
    )


# -- Vapi -----------------------------------------------------------------------------------------


def import_vapi(
    call: Any,
    *,
    recording: str | Path | None = None,
    channels: Sequence[str] = ("user", "agent"),
    save_to: str | Path | None = None,
) -> Recording:
    """A Vapi call (``GET /call/{id}``: a dict of its JSON or a ``vapi.types.Call``) as a
    recording. ``recording``: its stereo WAV (``artifact.stereoRecordingUrl``, downloaded),
    whose ``channels`` are in this order (Vapi: customer left, assistant right).

    Raises:
        TypeError: ``call`` is neither a dict nor an SDK object.
        ValueError: the call has no messages with timings (nothing to import).
    """
    c = _as_dict(call, "import_vapi")
    artifact = c.get("artifact") or {}
    messages = artifact.get("messages") or c.get("messages") or []
    if not messages:
        raise ValueError("this Vapi call has no messages (artifact.messages): nothing to import")
    utterances: list[_Utterance] = []
    calls: dict[str, _ToolCall] = {}
    system: list[str] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        start = m.get("secondsFromStart")
        if not isinstance(start, (int, float)):
            raise ValueError(
                f"Vapi message {i} has no secondsFromStart; accepted: Vapi's call JSON"
            )
        if role in ("user", "bot", "assistant"):
            if isinstance(m.get("endTime"), (int, float)) and isinstance(
                m.get("time"), (int, float)
            ):
                end = start + (m["endTime"] - m["time"]) / 1000.0
            else:
                end = start + float(m.get("duration") or 0.0)
            utterances.append(
                _Utterance(
                    "user" if role == "user" else "agent",
                    str(m.get("message") or ""),
                    float(start),
                    end,
                )
            )
        elif role == "tool_calls":
            for tc in m.get("toolCalls") or []:
                fn = tc.get("function") or {}
                args = fn.get("arguments")
                calls[str(tc.get("id"))] = _ToolCall(
                    str(tc.get("id")),
                    str(fn.get("name") or ""),
                    args if isinstance(args, str) else json.dumps(args or {}),
                    float(start),
                )
        elif role == "tool_call_result":
            found = calls.get(str(m.get("toolCallId")))
            if found is not None:
                found.result = str(m.get("result") if m.get("result") is not None else "")
                found.result_t_s = float(start)
        elif role == "system":
            system.append(str(m.get("message") or ""))
    audio = _read_stereo(recording, channels) if recording is not None else None
    meta = make_meta(
        model="vapi",
        started_at=_iso(c.get("startedAt") or c.get("createdAt")),
        imported={
            "platform": "vapi",
            "call_id": c.get("id"),
            "cost_usd": c.get("cost"),
            "ended_reason": c.get("endedReason"),
            "system": system,
            "audio": audio is not None,
        },
    )
    return _save(_events(utterances, list(calls.values()), audio, "vapi"), meta, save_to)


# -- Retell ---------------------------------------------------------------------------------------


def _words_span(entry: Mapping[str, Any]) -> tuple[float, float] | None:
    words = [w for w in entry.get("words") or [] if isinstance(w, Mapping)]
    starts = [w["start"] for w in words if isinstance(w.get("start"), (int, float))]
    ends = [w["end"] for w in words if isinstance(w.get("end"), (int, float))]
    if not starts or not ends:
        return None
    return float(min(starts)), float(max(ends))


def import_retell(
    call: Any,
    *,
    recording: str | Path | None = None,
    channels: Sequence[str] = ("user", "agent"),
    save_to: str | Path | None = None,
) -> Recording:
    """A Retell call (``GET /v2/get-call/{id}``: a dict of its JSON or a ``retell.types``
    ``WebCallResponse``/``PhoneCallResponse``) as a recording. ``transcript_with_tool_calls``
    is used when present (it has the tool calls), else ``transcript_object``; utterance times
    come from their words. ``recording``: the multi-channel WAV
    (``recording_multi_channel_url``, downloaded), its ``channels`` in this order.

    Raises:
        TypeError: ``call`` is neither a dict nor an SDK object.
        ValueError: the call has no transcript with word timings.
    """
    c = _as_dict(call, "import_retell")
    entries = c.get("transcript_with_tool_calls") or c.get("transcript_object") or []
    if not entries:
        raise ValueError(
            "this Retell call has no transcript_object nor transcript_with_tool_calls: nothing to import"
        )
    utterances: list[_Utterance] = []
    calls: dict[str, _ToolCall] = {}
    other: list[str] = []
    last_t = 0.0
    for i, e in enumerate(entries):
        role = e.get("role")
        if role in ("user", "agent"):
            span = _words_span(e)
            if span is None:
                raise ValueError(f"Retell utterance {i} has no word timings (words[].start/end)")
            utterances.append(_Utterance(role, str(e.get("content") or ""), *span))
            last_t = span[1]
        elif role == "tool_call_invocation":
            # No timing of its own: it happened after the utterance before it.
            calls[str(e.get("tool_call_id"))] = _ToolCall(
                str(e.get("tool_call_id")),
                str(e.get("name") or ""),
                str(e.get("arguments") or "{}"),
                last_t,
            )
        elif role == "tool_call_result":
            found = calls.get(str(e.get("tool_call_id")))
            if found is not None:
                found.result = str(e.get("content") or "")
                found.result_t_s = last_t
        else:
            other.append(str(role))
    audio = _read_stereo(recording, channels) if recording is not None else None
    cost = (c.get("call_cost") or {}).get("combined_cost")
    meta = make_meta(
        model="retell",
        started_at=_iso_from_ms(c.get("start_timestamp")),
        imported={
            "platform": "retell",
            "call_id": c.get("call_id"),
            "agent_id": c.get("agent_id"),
            # Retell reports cents.
            "cost_usd": cost / 100.0 if isinstance(cost, (int, float)) else None,
            "disconnection_reason": c.get("disconnection_reason"),
            "dropped_entries": other,
            "audio": audio is not None,
        },
    )
    return _save(_events(utterances, list(calls.values()), audio, "retell"), meta, save_to)
