"""Latency, tokens and cost of a recorded session, as text, HTML and plots: ``rec.metrics()``.

The numbers are :mod:`realtime_nb.core.metrics`' (the one definition the summary, ``inspect``,
``diff`` and the widget read too); this module reads a recording's extra marks, renders them and
draws the plots. The plots are matplotlib figures built without pyplot (no global figure state:
a notebook shows each chart once, with no ``<Axes ...>`` line); matplotlib is imported lazily.
"""

from __future__ import annotations

import html
import io
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from ..core import metrics as core
from ..core._html import CSS, ROOT_CLASSES, pretty
from ..core.metrics import (
    STAGE_LABELS,
    Percentiles,
    ResponseMetrics,
    TurnMetrics,
    TurnView,
    percentiles,
    turn_views,
)
from ..core.pricing import ModelPrice
from ..core.reducer import ConversationState
from ..storage.recording import Recording

__all__ = [
    "Percentiles",
    "ResponseMetrics",
    "SessionMetrics",
    "TurnMetrics",
    "TurnView",
    "metrics",
    "percentiles",
    "plot_latency",
    "plot_timeline",
    "transcript_times",
    "turn_views",
]

#: Colours of the stages in the latency plot (colour-blind-safe Okabe-Ito palette), by stage.
STAGE_COLORS: Final = {
    "speech_stopped": "#999999",
    "committed": "#56B4E9",
    "transcript": "#F0E442",
    "response_created": "#0072B2",
    "answer_created": "#CC79A7",
    "first_audio": "#009E73",
    "first_output": "#44AA99",
    "answer": "#E69F00",
    "heard": "#882255",
    "done": "#D55E00",
}
#: Figure sizes in inches: wide enough for a dozen turns, short enough to sit under a cell.
LATENCY_SIZE: Final = (8.0, 3.2)
TIMELINE_SIZE: Final = (9.0, 3.2)
#: Resolution of the PNG a notebook shows (retina-sharp at the sizes above, ~50 KB).
PNG_DPI: Final = 110
#: Characters of an answer's transcript written on its bar in the timeline.
TIMELINE_TEXT: Final = 40


class SessionMetrics(core.SessionMetrics):
    """:class:`realtime_nb.core.metrics.SessionMetrics` with its text, HTML and plots."""

    @classmethod
    def of(cls, m: core.SessionMetrics) -> SessionMetrics:
        return cls(**{f.name: getattr(m, f.name) for f in fields(m)})

    def text(self) -> str:
        """A plain-text table of the turns, then percentiles and totals."""
        lines = [
            f"{'turn':>4}  {'kind':<6} {'latency':>8} {'heard':>7} {'answer':>7} {'done':>7}"
            f"  {'tokens':>6} {'cost':>8}  status"
        ]
        for t in self.turns:
            lines.append(
                f"{t.index:>4}  {t.kind:<6} {_ms(t.latency_ms):>8} {_ms(t.heard_ms):>7} "
                f"{_ms(t.answer_ms):>7} {_ms(t.done_ms):>7}  {t.usage.total_tokens:>6} "
                f"{_usd(t.cost_usd):>8}  {t.status or '-'}"
                + (
                    f" ({t.tool_rounds} tool round{'s' * (t.tool_rounds != 1)})"
                    if t.tool_rounds
                    else ""
                )
            )
        lines.append("(ms from the end of the user's speech or text; latency: to the first audio)")
        for name, p in (("latency", self.latency), ("heard", self.heard)):
            if p.n:
                lines.append(
                    f"{name} ms over {p.n} turns: p50 {_ms(p.p50)}  p90 {_ms(p.p90)}  "
                    f"p95 {_ms(p.p95)}  max {_ms(p.max)}"
                )
        u = self.usage
        lines.append(
            f"tokens: in {u.input_tokens} (text {u.input_text_tokens}, audio "
            f"{u.input_audio_tokens}, cached {u.cached_tokens}), out {u.output_tokens} (text "
            f"{u.output_text_tokens}, audio {u.output_audio_tokens}); cost {self.cost_text()}"
        )
        return "\n".join(lines)

    def cost_text(self) -> str:
        if self.cost_usd is None:
            return f"unknown (no price for model {self.model!r})"
        return f"${self.cost_usd:.4f} ({self.model})"

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td>{t.index}</td><td>{e(t.kind)}</td><td class='rtnb-num'>{_ms(t.latency_ms)}"
            f"</td><td class='rtnb-num'>{_ms(t.heard_ms)}</td><td class='rtnb-num'>"
            f"{_ms(t.answer_ms)}</td><td class='rtnb-num'>{_ms(t.done_ms)}</td>"
            f"<td class='rtnb-num'>{t.usage.total_tokens}</td><td class='rtnb-num'>"
            f"{_usd(t.cost_usd)}</td><td>{e(t.status or '-')}"
            + (
                f" · {t.tool_rounds} tool round{'s' * (t.tool_rounds != 1)}"
                if t.tool_rounds
                else ""
            )
            + "</td></tr>"
            for t in self.turns
        )
        p = self.latency
        pct = (
            f"latency p50 {_ms(p.p50)} · p90 {_ms(p.p90)} · p95 {_ms(p.p95)} · max {_ms(p.max)} ms"
            if p.n
            else "no turn with a latency"
        )
        u = self.usage
        return (
            f"{CSS}<div class='{ROOT_CLASSES} rtnb-metrics'>"
            f"<div><b>Metrics</b> · {e(str(self.model))} · {len(self.turns)} turns · {pct}</div>"
            "<table><thead><tr><th>turn</th><th>kind</th><th>latency ms</th><th>heard ms</th>"
            "<th>answer ms</th><th>done ms</th><th>tokens</th><th>cost</th><th>status</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            "<div class='rtnb-muted'>ms from the end of the user's speech (or text): latency to "
            "the first audio, heard when playback started, answer after tool rounds.</div>"
            f"<div>tokens in {u.input_tokens} · out {u.output_tokens} · total "
            f"{u.total_tokens} · cost {e(self.cost_text())}</div></div>"
        )

    def plot_latency(self, ax: Any = None) -> Any:
        """A bar per turn, its stages stacked (see :func:`plot_latency`)."""
        return plot_latency(self, ax)

    def plot_timeline(self, ax: Any = None) -> Any:
        """Both speakers, responses, tool calls and truncations (see :func:`plot_timeline`)."""
        return plot_timeline(self, ax)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _usd(v: float | None) -> str:
    return "?" if v is None else f"${v:.4f}"


def _load(recording: Recording | str | Path) -> Recording:
    if isinstance(recording, Recording):
        return recording
    if isinstance(recording, (str, Path)):
        return Recording.import_file(recording)
    raise TypeError(
        "metrics() takes a Recording, a recording path or a ConversationState, got "
        f"{type(recording).__name__}"
    )


def transcript_times(rec: Recording) -> dict[str, int]:
    """User item id -> when its input transcription completed (the first final ``completed``
    event), read from the events table: a moment the reduced state does not keep."""
    import pyarrow.compute as pc

    table = rec.table
    if not table.num_rows:
        return {}
    mask = pc.equal(table.column("type"), "conversation.item.input_audio_transcription.completed")
    sub = table.filter(mask)
    out: dict[str, int] = {}
    for item_id, t_ns, payload in zip(
        sub.column("item_id").to_pylist(),
        sub.column("t_ns").to_pylist(),
        sub.column("payload").to_pylist(),
        strict=True,
    ):
        # xAI's interim "completed" events say status "in_progress": not the transcript's end.
        if item_id and '"in_progress"' not in (payload or ""):
            out.setdefault(item_id, t_ns)
    return out


def metrics(
    recording: Recording | str | Path | ConversationState,
    *,
    model: str | None = None,
    price: ModelPrice | None = None,
) -> SessionMetrics:
    """Per-turn stages and latencies, per-turn and per-response tokens and cost, percentiles.

    ``model`` defaults to the one the session reports (else the recording's metadata); ``price``
    to :func:`realtime_nb.core.pricing.price_for` of it.

    Raises:
        TypeError: not a Recording, a path or a ConversationState.
    """
    if isinstance(recording, ConversationState):
        return SessionMetrics.of(core.compute(recording, model=model, price=price))
    rec = _load(recording)
    m = core.compute(
        rec.state,
        model=model,
        meta=rec.meta,
        price=price,
        transcript_t_ns=transcript_times(rec),
    )
    return SessionMetrics.of(m)


# -- plots ----------------------------------------------------------------------------------------


_FIGURE_CLASS: list[type] = []


def _figure(size: tuple[float, float]) -> Any:
    """A matplotlib Figure outside pyplot whose notebook rendering is one PNG."""
    if not _FIGURE_CLASS:
        from matplotlib.figure import Figure

        class MetricsFigure(Figure):
            """A Figure that renders itself in a notebook (no pyplot, no inline backend)."""

            def _repr_png_(self) -> bytes:
                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight")
                return buf.getvalue()

        _FIGURE_CLASS.append(MetricsFigure)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _FIGURE_CLASS[0](figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_latency(m: core.SessionMetrics, ax: Any = None) -> Any:
    """A bar per turn from the end of the user's speech (0 ms): its stages stacked in time order
    (speech_stopped, committed, response.created, the tool rounds, first audio or first output,
    the answer after tool rounds, playback started), each segment ending when its stage happened; the number above the bar is the latency
    to the first audio, and when the last response was done.

    Returns a matplotlib Figure (drawn without pyplot), or ``ax`` when one is given.
    """
    own = ax is None
    fig = _figure(LATENCY_SIZE) if own else None
    ax = fig.add_subplot() if fig is not None else ax
    drawn: dict[str, Any] = {}
    for t in m.turns:
        for stage, start, end in t.stages("heard"):
            if end <= start:
                continue
            drawn[stage] = ax.bar(
                t.index, end - start, 0.6, bottom=start, color=STAGE_COLORS[stage]
            )
        # One outlined bar per turn, whatever its stages: the turn's extent (zero when the
        # events carry no times, as in a cassette), found by its gid.
        top = max([t.latency_ms or 0.0] + [end for _, _, end in t.stages("heard")])
        ax.bar(t.index, top, 0.6, fill=False, edgecolor="#444444", linewidth=0.6,
               gid=f"turn-{t.index}")  # fmt: skip
        if t.latency_ms is not None:
            done = f"\ndone +{t.done_ms / 1000:.1f} s" if t.done_ms is not None else ""
            ax.annotate(
                f"{t.latency_ms:.0f} ms{done}",
                (t.index, top),
                xytext=(0, 3),
                textcoords="offset points",
                fontsize="x-small",
                ha="center",
                va="bottom",
            )
    if drawn:
        order = [s for s in STAGE_LABELS if s in drawn][::-1]  # the legend reads like the stack
        ax.legend(
            [drawn[s] for s in order],
            [STAGE_LABELS[s] for s in order],
            loc="upper left",
            fontsize="x-small",
            bbox_to_anchor=(1.01, 1.0),
        )
    ax.margins(y=0.2)
    ax.set_xticks([t.index for t in m.turns], [f"{t.index}\n{t.kind}" for t in m.turns])
    ax.set_xlim(-0.7, max(len(m.turns), 1) - 0.3)
    ax.set_xlabel("turn")
    ax.set_ylabel("ms after the end of speech")
    ax.set_title("Latency per turn: end of speech → first audio, by stage")
    if not m.turns:
        ax.text(0.5, 0.5, "no turns", transform=ax.transAxes, ha="center")
    return fig if own else ax


def plot_timeline(m: core.SessionMetrics, ax: Any = None) -> Any:
    """The session on one time axis: user speech, assistant audio as heard, responses (by
    status), tool calls, truncations; each labelled.

    Returns a matplotlib Figure (drawn without pyplot), or ``ax`` when one is given.
    """
    own = ax is None
    fig = _figure(TIMELINE_SIZE) if own else None
    ax = fig.add_subplot() if fig is not None else ax
    rows = {"tools": 0.0, "responses": 1.0, "assistant": 2.0, "user": 3.0}
    h = 0.7
    min_w = 0.04  # seconds: a zero-length span (a text message) stays visible

    def bar(row: str, a: float, b: float, color: str, label: str | None, dy: float = 0) -> None:
        y = rows[row] - h / 2
        ax.broken_barh(
            [(a, max(b - a, min_w))], (y, h), facecolor=color, edgecolor="white", alpha=0.85
        )
        if label:
            ax.text(a, rows[row] + dy, " " + label, va="center", fontsize="x-small", clip_on=True)

    for s in m.user_speech:
        bar("user", s.start_s, s.end_s, "#0072B2", s.label)
    for s in m.assistant_audio:
        bar("assistant", s.start_s, s.end_s, "#D55E00" if s.label == "cut" else "#009E73",
            s.text[:TIMELINE_TEXT] if s.text else None)  # fmt: skip
    status_color = {"completed": "#009E73", "cancelled": "#D55E00", "incomplete": "#E69F00"}
    for k, r in enumerate(m.responses):
        if r.created_s is None:
            continue
        end = r.done_s if r.done_s is not None else r.created_s
        what = f"r{k}" + (f" {r.status}" if r.status and r.status != "completed" else "")
        if r.tool_calls:
            what += " → " + ", ".join(r.tool_calls)
        dy = 0.18 if k % 2 else -0.18  # neighbours' labels do not overlap
        bar("responses", r.created_s, end, status_color.get(r.status or "", "#999999"), what, dy)
    for s in m.tool_calls:
        bar("tools", s.start_s, s.end_s, "#CC79A7", f"{s.label}()")
    for mark in m.truncations:
        ax.axvline(mark.t_s, color="#D55E00", linestyle="--", linewidth=1)
        ax.text(
            mark.t_s,
            rows["assistant"] + h / 2 + 0.05,
            mark.label,
            color="#D55E00",
            fontsize="x-small",
            ha="center",
        )
    for t in m.turns:
        if t.end_s is not None and t.first_audio_s is not None:
            ax.annotate(
                "",
                xy=(t.first_audio_s, rows["assistant"] + h / 2),
                xytext=(t.end_s, rows["user"] - h / 2),
                arrowprops={"arrowstyle": "->", "color": "#555555", "linewidth": 0.8},
            )
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_ylim(-0.6, 3.8)
    ax.set_xlabel("session time (s)")
    ax.set_title("Session timeline (arrows: end of speech → first audio)")
    ax.grid(axis="x", alpha=0.3)
    return fig if own else ax
