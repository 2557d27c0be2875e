"""Compare two recorded conversations turn by turn: ``realtime_nb.diff(a, b)``.

The result, :class:`ConversationDiff`, is a structured object for tests (``d.turns[i]
.assistant_changed``, ``d.turns[i].user_changed``, ``d.settings``), plain text (:meth:`text`,
what ``realtime-nb diff A B`` prints) and rich HTML in a notebook (``_repr_html_``).

Alignment: user turns are aligned on what the user said (typed text; for audio, the audio itself,
else its transcript) with :class:`difflib.SequenceMatcher`; turns the matcher pairs are compared
side by side, turns only one side has appear with the other side empty. Pure: it reads reduced
states, never files or sockets (a path is opened with :meth:`Recording.import_file`).
"""

from __future__ import annotations

import difflib
import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..core._html import CSS, ROOT_CLASSES, pretty
from ..core.metrics import SessionMetrics, TurnView, turn_views
from ..core.pricing import LOCAL_MODEL
from ..core.reducer import ConversationState, Item, Usage
from ..storage.recording import Recording
from .metrics import metrics

__all__ = ["ConversationDiff", "SettingDiff", "ToolCallDiff", "TurnDiff", "WordOp", "diff"]

JSON = dict[str, Any]

#: Session settings compared, as (label, path in the GA session object). Server-only fields
#: (ids, expiry) are left out: they always differ and say nothing about behaviour.
SETTINGS: Final = (
    ("model", ("model",)),
    ("instructions", ("instructions",)),
    ("voice", ("audio", "output", "voice")),
    ("speed", ("audio", "output", "speed")),
    ("turn_detection", ("audio", "input", "turn_detection")),
    ("transcription", ("audio", "input", "transcription")),
    ("noise_reduction", ("audio", "input", "noise_reduction")),
    ("tools", ("tools",)),
    ("tool_choice", ("tool_choice",)),
    ("output_modalities", ("output_modalities",)),
    ("max_output_tokens", ("max_output_tokens",)),
)
#: Characters of an answer shown per side in the plain-text report before eliding.
TEXT_WIDTH: Final = 400
#: Root classes of the HTML report (``realtime-nb-diff`` kept for pages that styled it before).
DIFF_CLASS: Final = "rtnb-diff realtime-nb-diff"
#: Settings a re-drive sets for its own mechanism (manual commits of the recorded audio), unless
#: the caller passed them: shown as the re-drive's mode, not as a change the user made.
REDRIVE_MECHANISM: Final = ("turn_detection",)


@dataclass(frozen=True)
class WordOp:
    """One step of a word-level diff: ``equal``, ``delete`` (only in a), ``insert`` (only in b)."""

    op: str
    text: str


@dataclass(frozen=True)
class SettingDiff:
    """A session setting that differs. ``text_diff``: unified diff lines (instructions)."""

    name: str
    a: Any
    b: Any
    text_diff: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolCall:
    name: str | None
    arguments: str | None
    output: str | None


@dataclass(frozen=True)
class ToolCallDiff:
    """The i-th tool call of a turn on each side (``None``: that side made fewer calls)."""

    a: ToolCall | None
    b: ToolCall | None

    @property
    def changed(self) -> bool:
        return self.a != self.b

    def changed_fields(self) -> list[str]:
        if self.a is None or self.b is None:
            return ["call"] if self.a != self.b else []
        return [
            f for f in ("name", "arguments", "output") if getattr(self.a, f) != getattr(self.b, f)
        ]


@dataclass
class TurnDiff:
    """One aligned user turn. ``a_index``/``b_index``: the turn's index on each side (``None``:
    only the other side has it)."""

    index: int
    a_index: int | None
    b_index: int | None
    user_a: str | None
    user_b: str | None
    user_changed: bool
    assistant_a: str | None
    assistant_b: str | None
    assistant_changed: bool
    words: list[WordOp]
    tool_calls: list[ToolCallDiff]
    status_a: str | None
    status_b: str | None
    truncated_a: bool
    truncated_b: bool
    latency_a_ms: float | None
    latency_b_ms: float | None
    usage_a: Usage = field(default_factory=Usage)
    usage_b: Usage = field(default_factory=Usage)
    cost_a: float | None = None
    cost_b: float | None = None

    @property
    def tools_changed(self) -> bool:
        return any(t.changed for t in self.tool_calls)

    @property
    def status_changed(self) -> bool:
        return self.status_a != self.status_b or self.truncated_a != self.truncated_b

    @property
    def changed(self) -> bool:
        return (
            self.user_changed or self.assistant_changed or self.tools_changed or self.status_changed
        )

    @property
    def latency_delta_ms(self) -> float | None:
        if self.latency_a_ms is None or self.latency_b_ms is None:
            return None
        return self.latency_b_ms - self.latency_a_ms

    @property
    def tokens_delta(self) -> int:
        return self.usage_b.total_tokens - self.usage_a.total_tokens

    @property
    def cost_delta(self) -> float | None:
        if self.cost_a is None or self.cost_b is None:
            return None
        return self.cost_b - self.cost_a


@dataclass
class ConversationDiff:
    """Two conversations compared: settings that differ and aligned turns.

    ``settings`` holds what differs by choice; ``mode`` what the re-drive mechanism itself set
    when ``b`` (or ``a``) is a re-drive (its commit mode and turn detection): shown as the
    re-drive's mode, not as a change, and not counted by :attr:`identical`. ``notes`` say what a
    reader needs to read the numbers right (a side answered by the local backend's stand-in).
    """

    a_name: str
    b_name: str
    settings: list[SettingDiff]
    turns: list[TurnDiff]
    usage_a: Usage
    usage_b: Usage
    cost_a: float | None
    cost_b: float | None
    mode: list[SettingDiff] = field(default_factory=list)
    redrive: str | None = None  # the re-drive's mode, in words (None: neither side is one)
    notes: list[str] = field(default_factory=list)

    @property
    def setting_names(self) -> list[str]:
        return [s.name for s in self.settings]

    def setting(self, name: str) -> SettingDiff | None:
        return next((s for s in self.settings if s.name == name), None)

    @property
    def changed_turns(self) -> list[TurnDiff]:
        return [t for t in self.turns if t.changed]

    @property
    def identical(self) -> bool:
        return not self.settings and not self.changed_turns

    def verdict(self) -> str:
        """One line: what differs (settings by name, turns counted)."""
        n = len(self.settings)
        settings = (
            "settings identical"
            if not n
            else f"{n} setting{'s' * (n != 1)} differ{'s' * (n == 1)} ({', '.join(self.setting_names)})"
        )
        changed = len(self.changed_turns)
        return f"{settings}; answers: {changed} of {len(self.turns)} turns changed"

    # -- plain text ------------------------------------------------------------------------------

    def text(self) -> str:
        """The report as plain text (``realtime-nb diff A B``)."""
        out = [f"--- a: {self.a_name}", f"+++ b: {self.b_name}"]
        if self.redrive:
            out.append(f"re-drive mode: {self.redrive}")
        if not self.settings:
            out.append("settings: identical")
        for s in self.settings:
            if s.text_diff:
                out.append(f"setting {s.name}:")
                out += [f"    {line}" for line in s.text_diff]
            else:
                out.append(f"setting {s.name}: {_short(s.a)} -> {_short(s.b)}")
        for t in self.turns:
            mark = "*" if t.changed else " "
            out.append(f"{mark} turn {t.index} (a #{_i(t.a_index)}, b #{_i(t.b_index)})")
            if t.user_changed:
                out.append(f"    user  a: {_clip(t.user_a)}")
                out.append(f"    user  b: {_clip(t.user_b)}")
            else:
                out.append(f"    user:    {_clip(t.user_a)}")
            if t.assistant_changed:
                out.append(f"    answer a: {_clip(t.assistant_a)}")
                out.append(f"    answer b: {_clip(t.assistant_b)}")
                out.append(f"    words:    {_words_text(t.words)}")
            else:
                out.append(f"    answer:   {_clip(t.assistant_a)}")
            for k, c in enumerate(t.tool_calls):
                if c.changed:
                    out.append(f"    tool call {k} differs ({', '.join(c.changed_fields())}):")
                    out.append(f"      a: {_call_text(c.a)}")
                    out.append(f"      b: {_call_text(c.b)}")
            if t.status_changed:
                out.append(
                    f"    status: {t.status_a}{' (truncated)' if t.truncated_a else ''} -> "
                    f"{t.status_b}{' (truncated)' if t.truncated_b else ''}"
                )
            out.append(
                f"    latency {_ms(t.latency_a_ms)} -> {_ms(t.latency_b_ms)} ms "
                f"({_signed(t.latency_delta_ms, ' ms')}); tokens {t.usage_a.total_tokens} -> "
                f"{t.usage_b.total_tokens} ({t.tokens_delta:+d}); cost {_usd(t.cost_a)} -> "
                f"{_usd(t.cost_b)}"
            )
        out.append(
            f"total: tokens {self.usage_a.total_tokens} -> {self.usage_b.total_tokens} "
            f"({self.usage_b.total_tokens - self.usage_a.total_tokens:+d}); cost "
            f"{_usd(self.cost_a)} -> {_usd(self.cost_b)}; {self.verdict()}"
        )
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        pretty(self, p, cycle)

    # -- HTML ------------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        e = html.escape
        parts = [
            f"{CSS}<div class='{ROOT_CLASSES} {DIFF_CLASS}'>",
            f"<div><b>a</b>: <span class='rtnb-mono'>{e(self.a_name)}</span> &nbsp; <b>b</b>: "
            f"<span class='rtnb-mono'>{e(self.b_name)}</span></div>",
        ]
        if self.redrive:
            parts.append(f"<div class='rtnb-muted'>re-drive mode: {e(self.redrive)}</div>")
        if self.settings:
            parts.append("<h4>Settings that differ</h4><table><tbody>")
            for s in self.settings:
                if s.text_diff:
                    body = "".join(_diff_line_html(line) for line in s.text_diff)
                    cell = f"<pre class='rtnb-textdiff'>{body}</pre>"
                else:
                    cell = (
                        f"<del class='rtnb-mono'>{e(_short(s.a))}</del> &rarr; "
                        f"<ins class='rtnb-mono'>{e(_short(s.b))}</ins>"
                    )
                parts.append(f"<tr><th>{e(s.name)}</th><td>{cell}</td></tr>")
            parts.append("</tbody></table>")
        else:
            parts.append("<div>Settings: identical</div>")
        parts.append(
            "<h4>Turns</h4><table><thead><tr><th>#</th><th>user</th><th>a</th><th>b</th>"
            "<th>latency ms</th><th>tokens</th><th>cost</th></tr></thead><tbody>"
        )
        for t in self.turns:
            cls = " class='rtnb-changed'" if t.changed else ""
            user = (
                e(t.user_a or "")
                if not t.user_changed
                else (f"<del>{e(t.user_a or '')}</del><br><ins>{e(t.user_b or '')}</ins>")
            )
            if t.assistant_changed:
                a_cell = "".join(
                    f"<del>{e(w.text)}</del> " if w.op == "delete" else (e(w.text) + " ")
                    for w in t.words
                    if w.op != "insert"
                )
                b_cell = "".join(
                    f"<ins>{e(w.text)}</ins> " if w.op == "insert" else (e(w.text) + " ")
                    for w in t.words
                    if w.op != "delete"
                )
            else:
                a_cell = b_cell = e(t.assistant_a or "")
            for k, c in enumerate(t.tool_calls):
                if c.changed:
                    a_cell += f"<br><code>tool {k}: {e(_call_text(c.a))}</code>"
                    b_cell += f"<br><code>tool {k}: {e(_call_text(c.b))}</code>"
            if t.status_changed:
                a_cell += f"<br><i>{e(str(t.status_a))}{' truncated' if t.truncated_a else ''}</i>"
                b_cell += f"<br><i>{e(str(t.status_b))}{' truncated' if t.truncated_b else ''}</i>"
            parts.append(
                f"<tr{cls}><td class='rtnb-num'>{t.index}</td><td>{user}</td><td>{a_cell}</td>"
                f"<td>{b_cell}</td>"
                f"<td class='rtnb-num'>{_ms(t.latency_a_ms)} &rarr; {_ms(t.latency_b_ms)}</td>"
                f"<td class='rtnb-num'>{t.usage_a.total_tokens} &rarr; {t.usage_b.total_tokens}</td>"
                f"<td class='rtnb-num'>{_usd(t.cost_a)} &rarr; {_usd(t.cost_b)}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.append(
            f"<div>{e(self.verdict())}; tokens {self.usage_a.total_tokens} &rarr; "
            f"{self.usage_b.total_tokens}; cost {_usd(self.cost_a)} &rarr; {_usd(self.cost_b)}"
            "</div>"
        )
        parts += [f"<div class='rtnb-muted'>note: {e(n)}</div>" for n in self.notes]
        parts.append("</div>")
        return "".join(parts)


# -- helpers (pure) -------------------------------------------------------------------------------


def _i(v: int | None) -> str:
    return "-" if v is None else str(v)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _usd(v: float | None) -> str:
    return "?" if v is None else f"${v:.4f}"


def _signed(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:+.0f}{unit}"


def _short(v: Any, limit: int = 160) -> str:
    text = (
        v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str | None) -> str:
    if text is None:
        return "(no such turn)"
    return repr(text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 3] + "...")


def _words_text(ops: list[WordOp]) -> str:
    return " ".join(
        f"[-{w.text}-]" if w.op == "delete" else f"{{+{w.text}+}}" if w.op == "insert" else w.text
        for w in ops
    )


def _diff_line_html(line: str) -> str:
    e = html.escape(line)
    if line.startswith("+") and not line.startswith("+++"):
        return f"<span class='rtnb-ins'>{e}</span>\n"
    if line.startswith("-") and not line.startswith("---"):
        return f"<span class='rtnb-del'>{e}</span>\n"
    return e + "\n"


def _call_text(c: ToolCall | None) -> str:
    if c is None:
        return "(no call)"
    return f"{c.name}({c.arguments or ''}) -> {c.output!r}"


def word_diff(a: str, b: str) -> list[WordOp]:
    """Word-level diff of two texts (split on whitespace)."""
    wa, wb = a.split(), b.split()
    ops: list[WordOp] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(WordOp("equal", " ".join(wa[i1:i2])))
            continue
        if i2 > i1:
            ops.append(WordOp("delete", " ".join(wa[i1:i2])))
        if j2 > j1:
            ops.append(WordOp("insert", " ".join(wb[j1:j2])))
    return ops


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _settings(state: ConversationState, meta: JSON) -> JSON:
    """The effective session: what the server said it uses, else what the client asked for."""
    merged = dict(state.requested_session)
    merged.update({k: v for k, v in state.session.items() if v is not None})
    if meta.get("model") and not merged.get("model"):
        merged["model"] = meta["model"]
    return merged


def _tool_summary(tools: Any) -> Any:
    if not isinstance(tools, list):
        return tools
    return sorted((t for t in tools if isinstance(t, dict)), key=lambda t: str(t.get("name", "")))


def settings_diff(a: JSON, b: JSON) -> list[SettingDiff]:
    """The compared :data:`SETTINGS` that differ between two effective session objects."""
    out = []
    for name, path in SETTINGS:
        va, vb = _get(a, path), _get(b, path)
        if name == "tools":
            va, vb = _tool_summary(va or []), _tool_summary(vb or [])
        if va == vb:
            continue
        text: tuple[str, ...] = ()
        if name == "instructions":
            text = tuple(
                difflib.unified_diff(
                    str(va or "").splitlines(),
                    str(vb or "").splitlines(),
                    "a",
                    "b",
                    lineterm="",
                )
            )
        out.append(SettingDiff(name, va, vb, text))
    return out


def _user_key(view: TurnView, state: ConversationState) -> str:
    """What identifies a user turn: its text, else a digest of its audio, else its transcript."""
    item = view.user_item
    if item is None:
        return f"<turn {view.turn.index} without an item>"
    if any(p.type == "input_text" for p in item.content):
        return "text:" + item.text
    audio = state.item_audio(item.id) if item.audio_part() is not None else b""
    if audio:
        return "audio:" + hashlib.sha1(audio).hexdigest()
    return "transcript:" + item.transcript


def _calls(view: TurnView) -> list[ToolCall]:
    out = []
    for it in view.outputs:
        if it.type == "function_call":
            result = view.tool_outputs.get(it.call_id or "")
            out.append(ToolCall(it.name, it.arguments, result.output if result else None))
    return out


def _truncated(view: TurnView) -> bool:
    return any(it.truncated for it in view.outputs)


def _user_text(view: TurnView, state: ConversationState) -> str:
    item: Item | None = view.user_item
    if item is None:
        return ""
    text = item.text
    if text:
        return text
    part = item.audio_part()
    if part is not None:
        return f"<audio {state.input_format.duration_ms(part.audio_bytes):.0f} ms, not transcribed>"
    return ""


def _load(x: Recording | str | Path) -> Recording:
    if isinstance(x, Recording):
        return x
    if isinstance(x, (str, Path)):
        return Recording.import_file(x)
    raise TypeError(
        f"diff() compares Recordings or recording paths (.arrow, .jsonl, .yaml), got {type(x).__name__}"
    )


def _name(rec: Recording) -> str:
    if rec.path is not None:
        return rec.path.name
    return str(rec.meta.get("imported_from") or rec.meta.get("started_at") or "in memory")


def _is_local(rec: Recording, model: str | None) -> bool:
    return model == LOCAL_MODEL or str(rec.meta.get("backend") or "").startswith("local")


def _redrive_of(rec: Recording) -> JSON | None:
    lineage = rec.meta.get("redrive")
    return lineage if isinstance(lineage, dict) else None


def _mode_names(lineage: JSON) -> set[str]:
    """Settings the re-drive set for its own mechanism (older re-drives did not record their
    mode: then turn detection, unless the caller changed it)."""
    mode = lineage.get("mode")
    if isinstance(mode, dict) and isinstance(mode.get("settings"), list):
        return {str(x) for x in mode["settings"]}
    changed = lineage.get("changed")
    changed = changed if isinstance(changed, dict) else {}
    return {n for n in REDRIVE_MECHANISM if n not in changed}


def _mode_text(lineage: JSON) -> str:
    mode = lineage.get("mode")
    if isinstance(mode, dict) and isinstance(mode.get("description"), str):
        return str(mode["description"])
    return "each recorded turn sent as its exact audio and committed by hand (turn detection off)"


def _notes(
    ra: Recording,
    rb: Recording,
    ma: SessionMetrics,
    mb: SessionMetrics,
    settings: list[SettingDiff],
) -> list[str]:
    if "instructions" not in {s.name for s in settings}:
        return []
    local = [side for side, rec, m in (("a", ra, ma), ("b", rb, mb)) if _is_local(rec, m.model)]
    if not local:
        return []
    who = " and ".join(local) + (" were" if len(local) > 1 else " was")
    return [
        f"{who} answered by the local backend, whose stand-in replies follow only instructions "
        "like 'Start every answer with \"...\"'; other instructions do not change its answers "
        "(use a real model, or that phrase, to see an effect)"
    ]


def diff(a: Recording | str | Path, b: Recording | str | Path) -> ConversationDiff:
    """Compare two recorded conversations turn by turn (see the module docstring).

    Latency, tokens and cost are :mod:`realtime_nb.core.metrics`' (the numbers of
    ``rec.metrics()`` and the summary).

    Raises:
        TypeError: an argument that is neither a Recording nor a path.
        FileNotFoundError: a path that does not exist.
    """
    ra, rb = _load(a), _load(b)
    sa, sb = ra.state, rb.state
    ma, mb = metrics(ra), metrics(rb)
    va, vb = turn_views(sa), turn_views(sb)
    ka = [_user_key(v, sa) for v in va]
    kb = [_user_key(v, sb) for v in vb]
    pairs: list[tuple[int | None, int | None]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=ka, b=kb, autojunk=False).get_opcodes():
        if tag == "equal" or tag == "replace":
            n = max(i2 - i1, j2 - j1)
            for k in range(n):
                pairs.append((i1 + k if i1 + k < i2 else None, j1 + k if j1 + k < j2 else None))
        elif tag == "delete":
            pairs += [(i, None) for i in range(i1, i2)]
        else:
            pairs += [(None, j) for j in range(j1, j2)]
    turns = []
    for n, (i, j) in enumerate(pairs):
        ta = va[i] if i is not None else None
        tb = vb[j] if j is not None else None
        mta = ma.turns[i] if i is not None else None
        mtb = mb.turns[j] if j is not None else None
        ans_a = ta.assistant_text if ta else None
        ans_b = tb.assistant_text if tb else None
        calls_a = _calls(ta) if ta else []
        calls_b = _calls(tb) if tb else []
        calls = [
            ToolCallDiff(
                calls_a[k] if k < len(calls_a) else None, calls_b[k] if k < len(calls_b) else None
            )
            for k in range(max(len(calls_a), len(calls_b)))
        ]
        turns.append(
            TurnDiff(
                index=n,
                a_index=i,
                b_index=j,
                user_a=_user_text(ta, sa) if ta else None,
                user_b=_user_text(tb, sb) if tb else None,
                user_changed=(i is None or j is None or ka[i] != kb[j]),
                assistant_a=ans_a,
                assistant_b=ans_b,
                assistant_changed=ans_a != ans_b,
                words=word_diff(ans_a or "", ans_b or ""),
                tool_calls=calls,
                status_a=mta.status if mta else None,
                status_b=mtb.status if mtb else None,
                truncated_a=_truncated(ta) if ta else False,
                truncated_b=_truncated(tb) if tb else False,
                latency_a_ms=mta.latency_ms if mta else None,
                latency_b_ms=mtb.latency_ms if mtb else None,
                usage_a=mta.usage if mta else Usage(),
                usage_b=mtb.usage if mtb else Usage(),
                cost_a=mta.cost_usd if mta else None,
                cost_b=mtb.cost_usd if mtb else None,
            )
        )
    settings = settings_diff(_settings(sa, ra.meta), _settings(sb, rb.meta))
    mode: list[SettingDiff] = []
    redrive_text = None
    for rec in (rb, ra):
        lineage = _redrive_of(rec)
        if lineage is not None:
            names = _mode_names(lineage)
            mode = [x for x in settings if x.name in names]
            settings = [x for x in settings if x.name not in names]
            redrive_text = _mode_text(lineage)
            break
    return ConversationDiff(
        a_name=_name(ra),
        b_name=_name(rb),
        settings=settings,
        turns=turns,
        usage_a=ma.usage,
        usage_b=mb.usage,
        cost_a=ma.cost_usd,
        cost_b=mb.cost_usd,
        mode=mode,
        redrive=redrive_text,
        notes=_notes(ra, rb, ma, mb, settings),
    )
