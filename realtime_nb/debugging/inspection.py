"""Summaries of a recording: a dict, plain text for the terminal, HTML for notebooks.

Latency, tokens and cost come from :mod:`realtime_nb.core.metrics` (the numbers ``rec.metrics()``,
``diff`` and the widget show). The HTML never carries audio: each item with audio gets a player
placeholder (``button.rtnb-clip`` with the item id and its duration), which the notebook's
:class:`~realtime_nb.widget.clip.RecordingView` turns into a player that fetches the audio when
pressed; without a kernel (an exported page) it reads as the clip's duration.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Final

from ..core._html import CSS, ROOT_CLASSES
from ..core.metrics import SessionMetrics
from ..core.reducer import Item

if TYPE_CHECKING:
    from ..storage.recording import Recording

__all__ = [
    "ITEM_CLASS",
    "RECORDING_CLASS",
    "audio_seconds",
    "item_html",
    "recording_html",
    "summarize",
    "summary_text",
]

#: Characters of an item's text shown in tables before it is cut with an ellipsis.
TEXT_PREVIEW: Final = 160
#: Root classes of the recording and item views (the browser test looks for them).
RECORDING_CLASS: Final = "rtnb-rec"
ITEM_CLASS: Final = "rtnb-itemview"


def _metrics(rec: Recording) -> SessionMetrics:
    from .metrics import metrics

    return metrics(rec)


def summarize(rec: Recording) -> dict[str, Any]:
    """Duration, counts, tokens, cost, errors and latency of a recording, as plain values.

    ``latency_ms`` holds the percentiles of :attr:`realtime_nb.core.metrics.TurnMetrics.latency_ms`
    (end of the user's speech to the first audio, tool rounds included) and ``turn_latency_ms``
    each turn's value; ``latency_ms_median`` is their p50.
    """
    st = rec.state
    m = _metrics(rec)
    lat = m.latency
    cancelled = [r for r in st.responses.values() if r.status == "cancelled"]
    return {
        "file": str(rec.path) if rec.path else None,
        "model": m.model,
        "started_at": rec.meta.get("started_at"),
        "duration_s": round(rec.duration_s, 3),
        "events": len(rec),
        "events_by_source": _by_source(rec),
        "items": len(st.items),
        "turns": len(st.turns),
        "responses": len(st.responses),
        "cancelled_responses": len(cancelled),
        "truncated_items": sum(1 for i in st.items if i.truncated),
        "tokens": st.usage.as_dict(),
        "cost_usd": None if m.cost_usd is None else round(m.cost_usd, 6),
        "errors": [str(e) for e in st.errors],
        "input_audio_s": round(st.input_ms / 1000, 3),
        "output_audio_s": round(
            sum(
                st.output_format.duration_ms(p.audio_bytes)
                for i in st.items
                for p in i.content
                if p.type == "output_audio"
            )
            / 1000,
            3,
        ),
        "latency_ms_median": None if lat.p50 is None else round(lat.p50, 1),
        "latency_ms": {k: (None if v is None else round(v, 1)) for k, v in lat.to_dict().items()},
        "turn_latency_ms": [
            None if t.latency_ms is None else round(t.latency_ms, 1) for t in m.turns
        ],
        "unknown_event_types": dict(st.unknown_types),
        "unknown_fields": dict(st.unknown_fields),
        "complete": rec.complete,
    }


def _by_source(rec: Recording) -> dict[str, int]:
    import pyarrow.compute as pc

    if not len(rec):
        return {}
    counts = pc.value_counts(rec.table.column("source")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def _preview(text: str, n: int = TEXT_PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _item_label(item: Item) -> str:
    if item.type == "message":
        return item.role or "?"
    return item.type


def _cost(v: float | None) -> str:
    return "unknown" if v is None else f"${v:.4f}"


def _latency_text(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    if not lat["n"]:
        return ""
    if lat["n"] == 1:
        return f"latency {lat['p50']:.0f} ms"
    return (
        f"latency p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, max {lat['max']:.0f} ms "
        f"over {lat['n']} turns"
    )


def summary_text(rec: Recording) -> str:
    """The terminal summary printed by ``realtime-nb inspect``."""
    s = summarize(rec)
    st = rec.state
    latency = _latency_text(s)
    lines = [
        f"{s['file'] or 'recording (in memory)'}",
        f"  model {s['model']}  started {s['started_at']}  duration {s['duration_s']:.1f} s"
        + ("" if s["complete"] else "  (not closed cleanly)"),
        f"  {s['events']} events {s['events_by_source']}, {s['items']} items, {s['turns']} turns, "
        f"{s['responses']} responses ({s['cancelled_responses']} cancelled), "
        f"{s['truncated_items']} truncated",
        f"  audio in {s['input_audio_s']:.1f} s, out {s['output_audio_s']:.1f} s; tokens "
        f"{s['tokens']['total_tokens']} (in {s['tokens']['input_tokens']}, "
        f"out {s['tokens']['output_tokens']}); cost {_cost(s['cost_usd'])}"
        + (f"; {latency}" if latency else ""),
    ]
    if s["unknown_event_types"] or s["unknown_fields"]:
        lines.append(
            f"  kept unknown: types {s['unknown_event_types']} fields {s['unknown_fields']}"
        )
    if s["turns"]:
        lines.append("")
        lines.append("  turns (ms from the end of speech: latency to the first audio):")
        for t in _metrics(rec).turns:
            lat = "-" if t.latency_ms is None else f"{t.latency_ms:.0f}"
            tools = f", {t.tool_rounds} tool round(s)" if t.tool_rounds else ""
            lines.append(
                f"  {t.index:3d} {t.kind:<6} latency {lat:>6} ms  tokens {t.usage.total_tokens:>6}"
                f"  cost {_cost(t.cost_usd)}  {t.status or '-'}{tools}"
            )
    lines.append("")
    lines.append("  items:")
    for n, item in enumerate(st.items):
        flag = " [truncated]" if item.truncated else ""
        status = f" ({item.status})" if item.status and item.status != "completed" else ""
        lines.append(f"  {n:3d} {_item_label(item):<22} {_preview(item.text, 90)}{flag}{status}")
    if s["errors"]:
        lines.append("")
        lines.append("  errors:")
        lines.extend(f"    {e}" for e in s["errors"])
    return "\n".join(lines)


def audio_seconds(rec: Recording, item: Item) -> float:
    """Seconds of audio an item holds (0: none), from the reducer's byte count and format."""
    part = item.audio_part()
    if part is None or not part.audio_bytes:
        return 0.0
    st = rec.state
    fmt = st.input_format if part.type == "input_audio" else st.output_format
    return fmt.duration_ms(part.audio_bytes) / 1000


def _clock(seconds: float) -> str:
    """``m:ss.s``, rounded to tenths first (59.96 s is 1:00.0), as the player shows it."""
    m, s = divmod(round(max(seconds, 0.0), 1), 60)
    return f"{int(m)}:{s:04.1f}"


def _player(rec: Recording, item: Item) -> str:
    """A player placeholder: the clip's duration; the notebook widget makes it play."""
    seconds = audio_seconds(rec, item)
    if not seconds:
        return ""
    e = html.escape(item.id, quote=True)
    return (
        f"<button class='rtnb-clip' data-item='{e}' data-duration='{seconds:.3f}' disabled "
        f"title='audio of {e}: plays in a running notebook (rec.item_audio(\"{e}\"))'>"
        f"▶ {_clock(seconds)}</button>"
    )


def _item_text(item: Item) -> str:
    esc = html.escape
    if not item.truncated:
        return esc(_preview(item.text))
    heard = item.heard_text()
    rest = item.text[len(heard) :]
    return (
        f"{esc(_preview(heard))}<del class='rtnb-muted' title='not heard: cut at "
        f"{(item.truncated_ms or 0) / 1000:.2f} s'>{esc(_preview(rest, 60))}</del>"
    )


def recording_html(rec: Recording) -> str:
    """The notebook rendering of a recording: summary, then the items with players (audio is
    fetched when a player is pressed, never embedded)."""
    s = summarize(rec)
    st = rec.state
    esc = html.escape
    latency = _latency_text(s)
    head = (
        f"<b>{esc(str(s['file'] or 'Recording'))}</b> · {esc(str(s['model']))} · "
        f"{s['duration_s']:.1f} s · {s['turns']} turns · {s['responses']} responses · "
        f"{s['tokens']['total_tokens']} tokens · cost {esc(_cost(s['cost_usd']))}"
        + (f" · {esc(latency)}" if latency else "")
        + (f' · <span class="rtnb-err">{len(s["errors"])} errors</span>' if s["errors"] else "")
    )
    rows = []
    for n, item in enumerate(st.items):
        flag = " <span class='rtnb-muted'>[truncated]</span>" if item.truncated else ""
        code = " class='rtnb-mono'" if item.type != "message" else ""
        rows.append(
            f"<tr><td class='rtnb-num'>{n}</td><td>{esc(_item_label(item))}</td>"
            f"<td{code}>{_item_text(item)}{flag}</td><td>{esc(item.status or '')}</td>"
            f"<td>{_player(rec, item)}</td></tr>"
        )
    errors = "".join(f'<li class="rtnb-err">{esc(e)}</li>' for e in s["errors"])
    return (
        f"{CSS}<div class='{ROOT_CLASSES} {RECORDING_CLASS}'><div>{head}</div>"
        "<table><thead><tr><th>#</th><th>who</th><th>text</th><th>status</th><th>audio</th>"
        "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + (f"<ul>{errors}</ul>" if errors else "")
        + "</div>"
    )


def item_html(rec: Recording, item: Item) -> str:
    """One item: who, status, text (what was not heard struck out), and a player."""
    esc = html.escape
    body = esc(item.text)
    if item.truncated:
        heard = item.heard_text()
        body = f"{esc(heard)}<del class='rtnb-muted'>{esc(item.text[len(heard) :])}</del>"
    code = " class='rtnb-mono'" if item.type != "message" else ""
    return (
        f"{CSS}<div class='{ROOT_CLASSES} {RECORDING_CLASS} {ITEM_CLASS}'>"
        f"<b>{esc(_item_label(item))}</b> "
        f"<span class='rtnb-muted rtnb-mono'>{esc(item.id)}</span> "
        f"<span class='rtnb-muted'>{esc(item.status or '')}</span>"
        f"<p{code}>{body}</p>{_player(rec, item)}</div>"
    )
