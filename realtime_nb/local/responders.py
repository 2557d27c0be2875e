"""Responders: what the local server's "model" says.

A :class:`Responder` receives a :class:`ResponseRequest` (session instructions, the conversation
items with transcripts filled in, the tools) and returns a list of outputs: :class:`TextReply`
(spoken or written, depending on the output modality) and :class:`FunctionCall`. Three ship:

- :class:`EchoResponder` (``"echo"``, the default): "You said: <last user text>", and after a tool
  output "The tool said: <output>";
- :class:`RulesResponder` (``"rules"``): deterministic regex rules mapping the user's words to a
  reply or a function call, for tests of tool flows;
- :class:`ChatResponder` (``"chat"``): any OpenAI-compatible Chat Completions endpoint (a local
  LLM server, say); tool calls come back as Realtime function calls.

Replies depend on the instructions so that sessions with different instructions answer
differently: when the instructions contain ``Start every answer with "..."`` (also "each",
"reply", "response"; straight or curly quotes), the echo and rules responders begin their spoken
answers with that phrase.

Responders run on a worker thread (the chat one blocks on HTTP); they must not touch the event loop.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ChatResponder",
    "EchoResponder",
    "FunctionCall",
    "Output",
    "ResponderError",
    "ResponseRequest",
    "Rule",
    "RulesResponder",
    "TextReply",
    "ToolWordsResponder",
    "instruction_prefix",
    "item_text",
    "make_responder",
]

JSON = dict[str, Any]

#: Chat Completions timeout: a local LLM on a CPU can take a while for a first token.
CHAT_TIMEOUT_S: Final = 60.0
#: ``Start every answer with "..."`` in the instructions, with straight or curly quotes.
_PREFIX_RE: Final = re.compile(
    r"start\s+(?:every|each|all|your)?\s*(?:answers?|repl(?:y|ies)|responses?)\s+with\s*"
    r"[\"“'‘](?P<phrase>[^\"”'’]+)[\"”'’]",
    re.IGNORECASE,
)


class ResponderError(RuntimeError):
    """The responder could not produce an answer; the response fails with this message."""


@dataclass(frozen=True)
class ResponseRequest:
    """What a responder sees. ``items`` are GA conversation items (plain dicts) in order."""

    instructions: str = ""
    items: tuple[JSON, ...] = ()
    tools: tuple[JSON, ...] = ()
    tool_choice: Any = "auto"
    output_modalities: tuple[str, ...] = ("audio",)
    metadata: JSON | None = None


@dataclass(frozen=True)
class TextReply:
    text: str


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str = "{}"
    call_id: str | None = None


Output = TextReply | FunctionCall


def item_text(item: Mapping[str, Any]) -> str:
    """The text of a message item: its text parts and transcripts, joined."""
    parts = []
    for part in item.get("content") or []:
        if not isinstance(part, Mapping):
            continue
        text = part.get("text")
        if text is None:
            text = part.get("transcript")
        if isinstance(text, str) and text:
            parts.append(text)
    return " ".join(parts).strip()


def instruction_prefix(instructions: str) -> str:
    """The phrase of a ``Start every answer with "..."`` instruction, or ``""``."""
    m = _PREFIX_RE.search(instructions or "")
    return m.group("phrase").strip() if m else ""


def _with_prefix(text: str, instructions: str) -> str:
    prefix = instruction_prefix(instructions)
    return f"{prefix} {text}" if prefix else text


def _last_turn(items: Sequence[JSON]) -> JSON | None:
    """The last item the model should answer: a user message or a function call output."""
    for item in reversed(items):
        kind = item.get("type")
        if kind == "function_call_output":
            return item
        if kind == "message" and item.get("role") == "user":
            return item
    return None


def _last_user_text(items: Sequence[JSON]) -> str:
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return item_text(item)
    return ""


class Responder(ABC):
    """Decides the outputs of one response. Subclass and pass an instance to ``LocalServer``."""

    name: str = "custom"

    @abstractmethod
    def respond(self, request: ResponseRequest) -> list[Output]:
        """The outputs, in order.

        Raises:
            ResponderError: no answer can be produced (the response ends with status "failed").
        """


class EchoResponder(Responder):
    """Repeats the user: "You said: ..."; after a tool output: "The tool said: ..."."""

    name = "echo"

    def respond(self, request: ResponseRequest) -> list[Output]:
        last = _last_turn(request.items)
        if last is not None and last.get("type") == "function_call_output":
            text = f"The tool said: {last.get('output', '')}"
        else:
            heard = item_text(last) if last is not None else ""
            text = f"You said: {heard}" if heard else "I did not hear anything."
        return [TextReply(_with_prefix(text, request.instructions))]


class _SafeFormat(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, values: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_SafeFormat(values))
    except (ValueError, IndexError, AttributeError):  # stray braces: use the template as written
        return template


def _fill_json(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, Mapping):
        return {k: _fill_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, values) for v in value]
    return value


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a regex, searched case-insensitively in the last user text) -> an answer.

    Exactly one of ``reply`` (a template) or ``call`` (a function name, with ``arguments``: a
    dict or JSON string whose strings are templates) should be set. Templates see ``{text}`` (the
    user's words), the match's groups by number (``{1}``) and by name (``{city}``), and in
    ``then`` (spoken after the function's output comes back) also ``{output}``. ``instructions``,
    if set, is a regex the session instructions must match for the rule to apply.
    """

    pattern: str
    reply: str | None = None
    call: str | None = None
    arguments: Mapping[str, Any] | str | None = None
    then: str = "The tool said: {output}"
    instructions: str | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"rule pattern {self.pattern!r} is not a valid regex: {exc}") from None
        if (self.reply is None) == (self.call is None):
            raise ValueError(
                f"rule {self.pattern!r} needs exactly one of reply=... or call=..., "
                f"got reply={self.reply!r}, call={self.call!r}"
            )

    def match(self, text: str, instructions: str) -> dict[str, Any] | None:
        if self.instructions is not None and not re.search(
            self.instructions, instructions or "", re.IGNORECASE
        ):
            return None
        m = self._regex.search(text)
        if m is None:
            return None
        values: dict[str, Any] = {"text": text, "0": m.group(0)}
        values.update({str(i): g or "" for i, g in enumerate(m.groups(), start=1)})
        values.update({k: v or "" for k, v in m.groupdict().items()})
        return values


RuleSpec = Rule | Mapping[str, Any] | tuple[str, str]


def _as_rules(rules: Iterable[RuleSpec] | Mapping[str, Any] | None) -> list[Rule]:
    if rules is None:
        return []
    if isinstance(rules, Mapping) and "pattern" not in rules:
        specs: list[Any] = [
            (pattern, answer) if isinstance(answer, str) else {"pattern": pattern, **answer}
            for pattern, answer in rules.items()
        ]
    else:
        specs = list(rules)
    out: list[Rule] = []
    for spec in specs:
        if isinstance(spec, Rule):
            out.append(spec)
        elif isinstance(spec, Mapping):
            out.append(Rule(**spec))
        elif isinstance(spec, tuple) and len(spec) == 2:
            out.append(Rule(spec[0], reply=spec[1]))
        else:
            raise TypeError(
                f"a rule must be a Rule, a dict of Rule fields or a (pattern, reply) tuple, "
                f"got {spec!r}"
            )
    return out


class RulesResponder(Responder):
    """Deterministic answers from :class:`Rule` s; the first matching rule wins.

    A rule with ``call`` applies only when the session (or response) offers a tool of that name
    and ``tool_choice`` is not ``"none"``, as a real model would. With no match, ``fallback`` (a
    template; ``None`` to fall back to echoing) is spoken.
    """

    name = "rules"

    def __init__(
        self,
        rules: Iterable[RuleSpec] | Mapping[str, Any] | None = None,
        fallback: str | None = None,
    ) -> None:
        self.rules = _as_rules(rules)
        self.fallback = fallback

    def respond(self, request: ResponseRequest) -> list[Output]:
        last = _last_turn(request.items)
        user_text = _last_user_text(request.items)
        tool_names = {t.get("name") for t in request.tools if isinstance(t, Mapping)}
        tools_allowed = request.tool_choice != "none"
        if last is not None and last.get("type") == "function_call_output":
            name = self._call_name(request.items, str(last.get("call_id", "")))
            output = str(last.get("output", ""))
            for rule in self.rules:
                if rule.call is not None and rule.call == name:
                    matched = rule.match(user_text, request.instructions) or {"text": user_text}
                    text = _fill(rule.then, {**matched, "output": output})
                    return [TextReply(_with_prefix(text, request.instructions))]
            return [TextReply(_with_prefix(f"The tool said: {output}", request.instructions))]
        for rule in self.rules:
            values = rule.match(user_text, request.instructions)
            if values is None:
                continue
            if rule.call is not None:
                if rule.call not in tool_names or not tools_allowed:
                    continue
                args = _fill_json(rule.arguments if rule.arguments is not None else {}, values)
                arguments = args if isinstance(args, str) else json.dumps(args)
                return [FunctionCall(rule.call, arguments)]
            assert rule.reply is not None
            return [TextReply(_with_prefix(_fill(rule.reply, values), request.instructions))]
        if self.fallback is not None:
            text = _fill(self.fallback, {"text": user_text})
        else:
            text = f"You said: {user_text}" if user_text else "I did not hear anything."
        return [TextReply(_with_prefix(text, request.instructions))]

    @staticmethod
    def _call_name(items: Sequence[JSON], call_id: str) -> str | None:
        for item in items:
            if item.get("type") == "function_call" and item.get("call_id") == call_id:
                return str(item.get("name"))
        return None


class ChatResponder(Responder):
    """Answers with an OpenAI-compatible Chat Completions endpoint (non-streaming).

    ``url`` is the server's base URL (``http://127.0.0.1:8080/v1``) or the full
    ``.../chat/completions`` URL. The conversation goes as text (audio items as their
    transcripts), the session instructions as the system message, the session tools as
    ``tools``; ``tool_calls`` in the answer become Realtime function calls.
    """

    name = "chat"

    def __init__(
        self,
        url: str,
        model: str = "local-model",
        api_key: str | None = None,
        timeout: float = CHAT_TIMEOUT_S,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"chat_url must be an http(s) URL, got {url!r}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})

    def build_body(self, request: ResponseRequest) -> JSON:
        """The Chat Completions request body for ``request`` (exposed for tests and debugging)."""
        messages: list[JSON] = []
        if request.instructions:
            messages.append({"role": "system", "content": request.instructions})
        for item in request.items:
            kind = item.get("type")
            if kind == "message":
                role = item.get("role", "user")
                messages.append({"role": role, "content": item_text(item)})
            elif kind == "function_call":
                call = {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
                }
                if (
                    messages
                    and messages[-1]["role"] == "assistant"
                    and "tool_calls" in messages[-1]
                ):
                    messages[-1]["tool_calls"].append(call)
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif kind == "function_call_output":
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": item.get("call_id"),
                        "content": str(item.get("output", "")),
                    }
                )
        body: JSON = {"model": self.model, "messages": messages}
        tools = [
            {
                "type": "function",
                "function": {
                    k: v for k, v in t.items() if k in ("name", "description", "parameters")
                },
            }
            for t in request.tools
            if t.get("type", "function") == "function"
        ]
        if tools and request.tool_choice != "none":
            body["tools"] = tools
            choice = request.tool_choice
            if isinstance(choice, Mapping) and choice.get("name"):
                body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
            elif choice in ("auto", "required"):
                body["tool_choice"] = choice
        body.update(self.extra_body)
        return body

    def respond(self, request: ResponseRequest) -> list[Output]:
        body = json.dumps(self.build_body(request)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        http_request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as resp:
                answer = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise ResponderError(
                f"chat completions at {self.url} answered HTTP {exc.code}: {detail}"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ResponderError(f"chat completions at {self.url} unreachable: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ResponderError(
                f"chat completions at {self.url} sent invalid JSON: {exc}"
            ) from None
        try:
            message = answer["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise ResponderError(
                f"chat completions at {self.url} sent no choices[0].message: {str(answer)[:300]}"
            ) from None
        outputs: list[Output] = []
        content = message.get("content")
        if isinstance(content, str) and content.strip():
            outputs.append(TextReply(content.strip()))
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            args = fn.get("arguments", "{}")
            outputs.append(
                FunctionCall(
                    str(fn.get("name", "")),
                    args if isinstance(args, str) else json.dumps(args),
                    call.get("id"),
                )
            )
        if not outputs:
            outputs.append(TextReply(""))
        return outputs


#: Responder names accepted by ``LocalServer(responder=...)`` and ``realtime-nb serve``.
RESPONDER_NAMES: Final = ("echo", "rules", "tools", "chat")


#: Words that say what a tool does, not what it is about: ``get_weather`` is about "weather".
_VERBS: Final = frozenset(
    {"get", "set", "fetch", "lookup", "look", "up", "find", "search", "do", "make", "run", "call",
     "list", "show", "add", "create", "the", "a", "an", "of", "for", "to", "tool", "current", "my"}
)  # fmt: skip
#: Prepositions whose object is taken as the tool's first string argument ("weather in Paris").
_PREP_RE: Final = re.compile(r"\b(?:in|for|about|at|near|on|to|of)\s+", re.IGNORECASE)


def _keywords(name: str) -> list[str]:
    words = [w.lower() for w in re.split(r"[_\-\s]+|(?<=[a-z])(?=[A-Z])", name) if w]
    return [w for w in words if w not in _VERBS] or [name.lower()]


def _call_for(tool_def: Mapping[str, Any], text: str) -> FunctionCall | None:
    """A call of ``tool_def`` if ``text`` names it and its required arguments can be filled."""
    name = str(tool_def.get("name") or "")
    if tool_def.get("type", "function") != "function" or not name:
        return None
    hit = None
    for word in _keywords(name):
        hit = re.search(rf"\b{re.escape(word)}s?\b", text, re.IGNORECASE)
        if hit:
            break
    if hit is None:
        return None
    params = tool_def.get("parameters") or {}
    props: Mapping[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or ())
    # The object of the last preposition after the keyword: "weather like in ... to california".
    rest = re.split(r"[.?!,;]", text[hit.end() :])[0]
    preps = list(_PREP_RE.finditer(rest))
    phrase = rest[preps[-1].end() :].strip() if preps else ""
    args: dict[str, Any] = {}
    for pname, schema in props.items():
        is_str = isinstance(schema, Mapping) and schema.get("type") == "string"
        if is_str and phrase and "enum" not in schema:
            args[pname] = phrase
            phrase = ""  # only the first string parameter gets it
        elif pname in required:
            return None  # a required argument we cannot guess: answer in words instead
    return FunctionCall(name, json.dumps(args))


class ToolWordsResponder(RulesResponder):
    """Calls an offered tool when the user names it, else behaves like :class:`RulesResponder`.

    A tool is named by the words of its name other than verbs (``get_weather`` -> "weather").
    Its first string parameter gets the words after the last preposition ("weather in Paris" ->
    ``"Paris"``); a tool with a required parameter that cannot be filled that way is not called.
    After the tool's output comes back, the answer is "The tool said: <output>". Explicit
    ``rules`` still come first. Deterministic, like every local responder.
    """

    name = "tools"

    def respond(self, request: ResponseRequest) -> list[Output]:
        last = next(
            (
                i
                for i in reversed(request.items)
                if i.get("type") == "function_call_output"
                or (i.get("type") == "message" and i.get("role") == "user")
            ),
            None,
        )
        if (
            last is not None
            and last.get("type") == "message"
            and request.tool_choice != "none"
            and not any(r.match(item_text(last), request.instructions) for r in self.rules)
        ):
            text = item_text(last)
            for tool_def in request.tools:
                if isinstance(tool_def, Mapping):
                    call = _call_for(tool_def, text)
                    if call is not None:
                        return [call]
        return super().respond(request)


def make_responder(
    spec: str | Responder = "echo",
    *,
    rules: Iterable[RuleSpec] | Mapping[str, Any] | None = None,
    chat_url: str | None = None,
    chat_model: str | None = None,
    chat_api_key: str | None = None,
) -> Responder:
    """A responder from a name or an instance.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or ``"chat"`` without
            ``chat_url``.
    """
    if isinstance(spec, Responder):
        return spec
    if spec == "echo":
        return EchoResponder()
    if spec == "rules":
        return RulesResponder(rules)
    if spec == "tools":
        return ToolWordsResponder(rules)
    if spec == "chat":
        if not chat_url:
            raise ValueError("responder='chat' needs chat_url='http://host:port/v1'")
        return ChatResponder(chat_url, chat_model or "local-model", chat_api_key)
    raise ValueError(
        f"unknown responder {spec!r}; valid: {', '.join(map(repr, RESPONDER_NAMES))} "
        f"or a Responder instance"
    )
