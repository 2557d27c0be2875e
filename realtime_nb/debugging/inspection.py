"""Summaries of a recording: a dict, plain text for the terminal, HTML for notebooks."""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ..core.audio import b64encode_audio
from ..core.reducer import Item

if TYPE_CHECKING:
    from ..storage.recording import Recording

__all__ = ["item_html", "recording_html", "summarize", "summary_text"]

#: Audio embedded in a notebook's HTML is base64 WAV; past this many seconds in one rendering the
#: players are left out (a 60-minute session would otherwise put ~230 MB into the notebook).
MAX_EMBEDDED_AUDIO_S: Final = 300.0
#: Characters of an item's text shown in tables before it is cut with an ellipsis.
TEXT_PREVIEW: Final = 160


def summarize(rec: Recording) -> dict[str, Any]:
    """Duration, counts, tokens, errors and latency of a recording, as plain values."""
    st = rec.state
    lat = [t.latency_ms for t in st.turns if t.latency_ms is not None]
    cancelled = [r for r in st.responses.values() if r.status == "cancelled"]
    return {
        "file": str(rec.path) if rec.path else None,
        "model": rec.meta.get("model") or st.session.get("model"),
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
        "latency_ms_median": round(float(np.median(lat)), 1) if lat else None,
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


def summary_text(rec: Recording) -> str:
    """The terminal summary printed by ``realtime-nb inspect``."""
    s = summarize(rec)
    st = rec.state
    lines = [
        f"{s['file'] or 'recording (in memory)'}",
        f"  model {s['model']}  started {s['started_at']}  duration {s['duration_s']:.1f} s"
        + ("" if s["complete"] else "  (not closed cleanly)"),
        f"  {s['events']} events {s['events_by_source']}, {s['items']} items, {s['turns']} turns, "
        f"{s['responses']} responses ({s['cancelled_responses']} cancelled), "
        f"{s['truncated_items']} truncated",
        f"  audio in {s['input_audio_s']:.1f} s, out {s['output_audio_s']:.1f} s; tokens "
        f"{s['tokens']['total_tokens']} (in {s['tokens']['input_tokens']}, "
        f"out {s['tokens']['output_tokens']})"
        + (f"; median latency {s['latency_ms_median']:.0f} ms" if s["latency_ms_median"] else ""),
    ]
    if s["unknown_event_types"] or s["unknown_fields"]:
        lines.append(
            f"  kept unknown: types {s['unknown_event_types']} fields {s['unknown_fields']}"
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


def _wav_data_uri(samples: np.ndarray, rate: int) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + b64encode_audio(buf.getbuffer())


def _audio_player(rec: Recording, item: Item, budget: list[float]) -> str:
    part = item.audio_part()
    if part is None or not part.audio_bytes:
        return ""
    st = rec.state
    fmt = st.input_format if part.type == "input_audio" else st.output_format
    seconds = fmt.duration_ms(part.audio_bytes) / 1000
    if seconds > budget[0]:
        return f'<span class="rtnb-muted">{seconds:.1f} s (rec.item_audio("{item.id}"))</span>'
    budget[0] -= seconds
    x = rec.item_audio(item.id)
    return f'<audio controls preload="none" src="{_wav_data_uri(x, fmt.rate)}"></audio>'


_CSS: Final = """<style>
.rtnb-rec{font-family:var(--jp-ui-font-family,system-ui);font-size:13px}
.rtnb-rec table{border-collapse:collapse;margin:4px 0}
.rtnb-rec td,.rtnb-rec th{padding:2px 8px;text-align:left;vertical-align:top;
 border-bottom:1px solid var(--jp-border-color2,#ddd)}
.rtnb-rec .rtnb-muted{color:var(--jp-ui-font-color2,#777)}
.rtnb-rec .rtnb-err{color:var(--jp-error-color1,#c00)}
.rtnb-rec audio{height:28px;max-width:260px}
</style>"""


def recording_html(rec: Recording) -> str:
    """The notebook rendering of a recording: summary, then the items with players."""
    s = summarize(rec)
    st = rec.state
    esc = html.escape
    head = (
        f"<b>{esc(str(s['file'] or 'Recording'))}</b> · {esc(str(s['model']))} · "
        f"{s['duration_s']:.1f} s · {s['turns']} turns · {s['responses']} responses · "
        f"{s['tokens']['total_tokens']} tokens"
        + (f" · median latency {s['latency_ms_median']:.0f} ms" if s["latency_ms_median"] else "")
        + (f' · <span class="rtnb-err">{len(s["errors"])} errors</span>' if s["errors"] else "")
    )
    budget = [MAX_EMBEDDED_AUDIO_S]
    rows = []
    for n, item in enumerate(st.items):
        flag = ' <span class="rtnb-muted">[truncated]</span>' if item.truncated else ""
        rows.append(
            f"<tr><td>{n}</td><td>{esc(_item_label(item))}</td>"
            f"<td>{esc(_preview(item.text))}{flag}</td><td>{esc(item.status or '')}</td>"
            f"<td>{_audio_player(rec, item, budget)}</td></tr>"
        )
    errors = "".join(f'<li class="rtnb-err">{esc(e)}</li>' for e in s["errors"])
    return (
        f'{_CSS}<div class="rtnb-rec"><div>{head}</div>'
        "<table><tr><th>#</th><th>who</th><th>text</th><th>status</th><th>audio</th></tr>"
        + "".join(rows)
        + "</table>"
        + (f"<ul>{errors}</ul>" if errors else "")
        + "</div>"
    )


def item_html(rec: Recording, item: Item) -> str:
    """One item: who, status, text, and an audio player."""
    esc = html.escape
    body = esc(item.text)
    if item.truncated:
        heard = esc(item.heard_text())
        body = f"{heard}<s class='rtnb-muted'>{esc(item.text[len(item.heard_text()) :])}</s>"
    return (
        f'{_CSS}<div class="rtnb-rec"><b>{esc(_item_label(item))}</b> '
        f'<span class="rtnb-muted">{esc(item.id)} · {esc(item.status or "")}</span>'
        f"<p>{body}</p>{_audio_player(rec, item, [MAX_EMBEDDED_AUDIO_S])}</div>"
    )
