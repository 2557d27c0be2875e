"""An independent oracle: what a recorded cassette says, derived straight from its raw events.

Written from the protocol (GA and beta event names, and the xAI dialect described in
tests/fixtures/README.md) without importing or copying anything from ``realtime_nb``: the point is
a second, separately reasoned reading of each session to check the reducer against.

The rules it applies, each from what the events themselves mean:

- Position: only ``conversation.item.added`` (GA) / ``conversation.item.created`` (beta) announce
  where an item enters the conversation. A string ``previous_item_id`` puts the item right after
  that item (``"root"``: first); ``null`` or missing gives no position, so the item goes at the end
  (which is also "first" when the conversation is empty). ``conversation.item.done`` and the
  ``response.output_item.*`` events only describe an item (OpenAI sends ``previous_item_id: null``
  on ``conversation.item.done`` for items that are not first); an item seen there first is placed
  at the end until an announcing event says where it goes.
- User transcript: the last ``...input_audio_transcription.completed`` that is not
  ``status: "in_progress"`` (xAI sends interim ones, plus ``...transcription.updated``); failing
  that the transcription deltas joined; typed text from ``input_text`` parts.
- Assistant text: ``response.output_audio_transcript.done`` / ``response.output_text.done`` (beta
  ``response.audio_transcript.done`` / ``response.text.done``), else the item as last received
  complete, else the deltas joined.
- Usage: summed over ``response.done``, from ``response.usage`` or, when that carries no tokens,
  from ``usage`` at the event's top level (xAI).
- Output audio: base64 deltas decoded and counted per item; its format is the server session's
  nested ``audio.output.format`` when given, else a recognised flat ``output_audio_format``.
- A ``{kind: close}`` interaction ends one connection; what follows continues the same
  conversation unless the new ``conversation.created`` names a different conversation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

JSON = dict[str, Any]

#: Events that announce an item's place in the conversation.
ANNOUNCING = {"conversation.item.added", "conversation.item.created"}
#: Events that carry a full item object without announcing its place.
DESCRIBING = {
    "conversation.item.done",
    "conversation.item.retrieved",
    "response.output_item.added",
    "response.output_item.done",
}
ASSISTANT_TEXT_DONE = {
    "response.output_audio_transcript.done": "transcript",
    "response.audio_transcript.done": "transcript",
    "response.output_text.done": "text",
    "response.text.done": "text",
}
ASSISTANT_TEXT_DELTA = {
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
    "response.output_text.delta",
    "response.text.delta",
}
AUDIO_DELTA = {"response.output_audio.delta", "response.audio.delta"}
TEXT_PARTS = {"input_text", "output_text", "text"}
AUDIO_PARTS = {"input_audio", "output_audio", "audio"}
#: Bytes per millisecond of each output format: PCM16 at its rate, G.711 at 8 kHz, 1 byte/sample.
G711 = {"audio/pcmu", "audio/pcma"}
FLAT_FORMATS = {"pcm16": ("audio/pcm", 24000), "g711_ulaw": ("audio/pcmu", 8000)}
FLAT_FORMATS["g711_alaw"] = ("audio/pcma", 8000)
USAGE_KEYS = ("total_tokens", "input_tokens", "output_tokens")


@dataclass
class Part:
    final: str | None = None  # from a *.done / final completed event
    snapshot: str | None = None  # from the latest full item object that carried a value
    deltas: str = ""
    interim: str | None = None  # xAI: in_progress completed / transcription.updated

    def value(self) -> str:
        for v in (self.final, self.snapshot):
            if v is not None:
                return v
        return self.deltas or self.interim or ""


@dataclass
class ExpectedItem:
    id: str
    type: str = "message"
    role: str | None = None
    parts: dict[int, Part] = field(default_factory=dict)
    name: str | None = None
    call_id: str | None = None
    arguments_final: str | None = None
    arguments_snapshot: str | None = None
    arguments_deltas: str = ""
    output: str | None = None
    audio_bytes: int = 0
    audio_deltas: int = 0

    def part(self, index: Any) -> Part:
        return self.parts.setdefault(index if isinstance(index, int) else 0, Part())

    @property
    def text(self) -> str:
        return "".join(self.parts[i].value() for i in sorted(self.parts))

    @property
    def arguments(self) -> str:
        for v in (self.arguments_final, self.arguments_snapshot):
            if v:
                return v
        return self.arguments_deltas


@dataclass
class Expected:
    order: list[str] = field(default_factory=list)
    items: dict[str, ExpectedItem] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))
    #: Per response.done, the usage object that was counted (for the xAI usage test).
    usage_events: list[JSON] = field(default_factory=list)
    output_format: tuple[str, int] = ("audio/pcm", 24000)
    #: response id -> the user message it answers (last user message when it was created).
    answers: dict[str, str | None] = field(default_factory=dict)
    connections: int = 1

    @property
    def bytes_per_ms(self) -> float:
        ftype, rate = self.output_format
        return rate / 1000.0 if ftype in G711 else 2 * rate / 1000.0

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / self.bytes_per_ms

    def conversation(self) -> list[ExpectedItem]:
        return [self.items[i] for i in self.order]


def interactions(path: Path) -> list[JSON]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return list(doc["interactions"])


def _has_tokens(usage: Any) -> TypeGuard[JSON]:
    return isinstance(usage, dict) and any(isinstance(usage.get(k), int) for k in USAGE_KEYS)


def _format_of(session: JSON) -> tuple[str, int] | None:
    nested = ((session.get("audio") or {}).get("output") or {}).get("format")
    if isinstance(nested, dict) and nested.get("type") in {"audio/pcm", *G711}:
        ftype = nested["type"]
        rate = nested.get("rate")
        if ftype in G711:
            return ftype, 8000
        return ftype, rate if isinstance(rate, int) and rate > 0 else 24000
    flat = session.get("output_audio_format")
    return FLAT_FORMATS.get(flat) if isinstance(flat, str) else None


def derive(path: Path) -> Expected:
    exp = Expected()
    conversation_id: str | None = None
    after_close = False

    def item(item_id: str) -> ExpectedItem:
        return exp.items.setdefault(item_id, ExpectedItem(item_id))

    def place(item_id: str, prev: Any, announcing: bool) -> None:
        order = exp.order
        if item_id in order:
            if not (announcing and isinstance(prev, str) and prev != item_id):
                return
            if prev != "root" and prev not in order:
                return
            order.remove(item_id)
        if announcing and prev == "root":
            order.insert(0, item_id)
        elif announcing and isinstance(prev, str) and prev in order:
            order.insert(order.index(prev) + 1, item_id)
        else:
            order.append(item_id)

    def describe(obj: Any) -> str | None:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return None
        it = item(obj["id"])
        if isinstance(obj.get("type"), str):
            it.type = obj["type"]
        if isinstance(obj.get("role"), str):
            it.role = obj["role"]
        for key in ("name", "call_id", "output"):
            if isinstance(obj.get(key), str):
                setattr(it, key, obj[key])
        if isinstance(obj.get("arguments"), str) and obj["arguments"]:
            it.arguments_snapshot = obj["arguments"]
        for i, p in enumerate(obj.get("content") or []):
            if not isinstance(p, dict):
                continue
            key = "text" if p.get("type") in TEXT_PARTS else "transcript"
            v = p.get(key)
            part = it.part(i)
            # An empty transcript in an item announced before it is spoken is a placeholder.
            if isinstance(v, str) and (v or p.get("type") in TEXT_PARTS):
                part.snapshot = v
        return it.id

    for inter in interactions(path):
        if inter.get("kind") == "close":
            after_close = True
            continue
        if "data" not in inter or inter.get("direction") != "received":
            continue
        ev: JSON = inter["data"]
        t = ev.get("type")
        if t == "conversation.created":
            cid = (ev.get("conversation") or {}).get("id")
            if after_close:
                exp.connections += 1
                if cid != conversation_id:  # the server says this is another conversation
                    exp.order.clear()
            conversation_id, after_close = cid, False
        elif t in ("session.created", "session.updated"):
            fmt = _format_of(ev.get("session") or {})
            if fmt is not None:
                exp.output_format = fmt
        elif t in ANNOUNCING or t in DESCRIBING:
            item_id = describe(ev.get("item"))
            if item_id is not None:
                place(item_id, ev.get("previous_item_id"), t in ANNOUNCING)
        elif t == "conversation.item.deleted" and ev.get("item_id") in exp.order:
            exp.order.remove(ev["item_id"])
        elif t == "conversation.item.input_audio_transcription.completed":
            part = item(ev["item_id"]).part(ev.get("content_index"))
            if ev.get("status") == "in_progress":
                part.interim = ev.get("transcript") or ""
            else:
                part.final = ev.get("transcript") or ""
        elif t == "conversation.item.input_audio_transcription.updated":
            item(ev["item_id"]).part(ev.get("content_index")).interim = ev.get("transcript") or ""
        elif t == "conversation.item.input_audio_transcription.delta":
            item(ev["item_id"]).part(ev.get("content_index")).deltas += ev.get("delta") or ""
        elif t in ASSISTANT_TEXT_DONE:
            value = ev.get(ASSISTANT_TEXT_DONE[t])
            item(ev["item_id"]).part(ev.get("content_index")).final = value or ""
        elif t in ASSISTANT_TEXT_DELTA:
            item(ev["item_id"]).part(ev.get("content_index")).deltas += ev.get("delta") or ""
        elif t in AUDIO_DELTA:
            it = item(ev["item_id"])
            it.audio_bytes += len(base64.b64decode(ev.get("delta") or ""))
            it.audio_deltas += 1
        elif t == "response.function_call_arguments.delta":
            item(ev["item_id"]).arguments_deltas += ev.get("delta") or ""
        elif t == "response.function_call_arguments.done":
            it = item(ev["item_id"])
            it.arguments_final = ev.get("arguments")
            if isinstance(ev.get("name"), str):
                it.name = ev["name"]
            if isinstance(ev.get("call_id"), str):
                it.call_id = ev["call_id"]
        elif t in ("response.created", "response.done"):
            resp: JSON = ev.get("response") or {}
            rid = resp.get("id")
            if not isinstance(rid, str):
                continue
            if rid not in exp.responses:
                exp.responses.append(rid)
            if t == "response.created":
                users = [
                    i
                    for i in exp.order
                    if exp.items[i].type == "message" and exp.items[i].role == "user"
                ]
                exp.answers[rid] = users[-1] if users else None
            else:
                for out in resp.get("output") or []:
                    out_id = describe(out)
                    if out_id is not None and out_id not in exp.order:
                        place(out_id, None, False)
                usage: JSON = {}
                for candidate in (resp.get("usage"), ev.get("usage")):
                    if _has_tokens(candidate):
                        usage = candidate
                        break
                exp.usage_events.append(usage)
                for k in USAGE_KEYS:
                    v = usage.get(k)
                    exp.usage[k] += v if isinstance(v, int) else 0
    return exp


def parsed_arguments(arguments: str | None) -> Any:
    """Call arguments as JSON, or the raw string when they do not parse."""
    try:
        return json.loads(arguments or "")
    except ValueError:
        return arguments
