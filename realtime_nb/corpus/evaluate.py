"""``corpus.evaluate(checks, against=baseline)``: checks over every turn of every recording, each
re-driven recording compared turn by turn with its parent in the baseline.

The result, :class:`Evaluation`, is a table (one row per recording, check and turn: pass, fail or
skip, why, and what differs from the parent's turn) with an HTML report: the pass/fail matrix,
the failing turns' diffs (:func:`realtime_nb.debugging.diff.diff`, the one turn-by-turn
comparison), and the latency and cost distributions before and after.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from ..core.metrics import percentiles
from .checks import Check, CheckResult, TurnRecord

if TYPE_CHECKING:
    from ..debugging.diff import ConversationDiff, TurnDiff
    from .corpus import Corpus

__all__ = ["RESULTS_SCHEMA", "Evaluation", "evaluate"]

JSON = dict[str, Any]

RESULTS_SCHEMA: Final = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("parent", pa.string()),
        pa.field("turn", pa.int32()),
        pa.field("check", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("passed", pa.bool_(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("differs", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("baseline_latency_ms", pa.float64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("baseline_cost_usd", pa.float64()),
    ]
)
#: Width and bar height of the distribution plots in the report, in CSS pixels.
_PLOT_W: Final = 420
_BAR_H: Final = 18


def _checks(checks: Check | Sequence[Check] | Mapping[str, Check]) -> dict[str, Check]:
    if isinstance(checks, Check):
        items: list[tuple[str, Check]] = [(checks.name, checks)]
    elif isinstance(checks, Mapping):
        items = [(str(k), v) for k, v in checks.items()]
    else:
        items = [(c.name if isinstance(c, Check) else "?", c) for c in checks]
    out: dict[str, Check] = {}
    for name, c in items:
        if not isinstance(c, Check):
            raise TypeError(
                f"evaluate() takes checks (said, tool_called, check(fn), ...), got "
                f"{type(c).__name__}; wrap a function with realtime_nb.corpus.check(fn)"
            )
        unique, n = name, 2
        while unique in out:
            unique, n = f"{name} #{n}", n + 1
        out[unique] = c
    if not out:
        raise ValueError("evaluate() needs at least one check")
    return out


def _turn_records(corpus: Corpus) -> dict[str, list[TurnRecord]]:
    by_key: dict[str, list[TurnRecord]] = {
        k: [] for k in corpus.sessions.column("recording").to_pylist()
    }
    for row in corpus.turns.to_pylist():
        by_key.setdefault(row["recording"], []).append(TurnRecord.from_row(row))
    return by_key


def _differs(td: TurnDiff | None) -> str:
    if td is None:
        return ""
    what = []
    if td.a_index is None:
        return "new turn (not in the parent)"
    if td.b_index is None:
        return "turn missing (only in the parent)"
    if td.user_changed:
        what.append("user input")
    if td.assistant_changed:
        what.append("answer")
    for k, c in enumerate(td.tool_calls):
        if c.changed:
            what.append(f"tool call {k} ({', '.join(c.changed_fields())})")
    if td.status_changed:
        cut_a = " (truncated)" if td.truncated_a else ""
        cut_b = " (truncated)" if td.truncated_b else ""
        what.append(f"status {td.status_a}{cut_a} -> {td.status_b}{cut_b}")
    return ", ".join(what)


def _turn_diff_text(td: TurnDiff) -> str:
    lines = [f"user (parent): {td.user_a or ''}", f"user (new):    {td.user_b or ''}"]
    lines.append(f"answer (parent): {td.assistant_a or ''}")
    lines.append(f"answer (new):    {td.assistant_b or ''}")
    for k, c in enumerate(td.tool_calls):
        a = f"{c.a.name}({c.a.arguments}) -> {c.a.output}" if c.a else "none"
        b = f"{c.b.name}({c.b.arguments}) -> {c.b.output}" if c.b else "none"
        mark = "*" if c.changed else " "
        lines.append(f"{mark} tool call {k}: {a}  |  {b}")
    la = "-" if td.latency_a_ms is None else f"{td.latency_a_ms:.0f}"
    lb = "-" if td.latency_b_ms is None else f"{td.latency_b_ms:.0f}"
    lines.append(f"latency: {la} -> {lb} ms")
    return "\n".join(lines)


@dataclass
class Evaluation:
    """Checks run over a corpus: :attr:`table`, the report (``_repr_html_``, :meth:`save_html`)."""

    table: pa.Table
    checks: list[str]
    #: (recording, turn) -> the turn diff against the parent, as text (failing turns only).
    diffs: dict[tuple[str, int], str] = field(default_factory=dict)
    #: Per turn latency (ms) and per recording cost (USD), before (parents) and after.
    latency_before: list[float] = field(default_factory=list)
    latency_after: list[float] = field(default_factory=list)
    cost_before: list[float] = field(default_factory=list)
    cost_after: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No check failed (skips do not fail)."""
        return all(self.table.column("passed").to_pylist())

    @property
    def failures(self) -> list[JSON]:
        """The failing rows."""
        return [r for r in self.table.to_pylist() if r["status"] == "fail"]

    def counts(self) -> dict[str, int]:
        statuses = self.table.column("status").to_pylist()
        return {s: statuses.count(s) for s in ("pass", "fail", "skip")}

    def to_pandas(self) -> Any:
        return self.table.to_pandas()

    def to_polars(self) -> Any:
        import polars as pl

        return pl.from_arrow(self.table)

    def recording_failures(self, recording: str) -> list[JSON]:
        return [r for r in self.failures if r["recording"] == recording]

    def text(self, recording: str | None = None) -> str:
        """The failures (of one recording) with their turn diffs, as plain text."""
        rows = self.failures if recording is None else self.recording_failures(recording)
        if not rows:
            return "all checks passed"
        out = []
        shown: set[tuple[str, int]] = set()
        for r in rows:
            where = f"turn {r['turn']}" if r["turn"] is not None else "the call"
            out.append(f"FAIL {r['recording']} {where}: {r['check']}: {r['detail']}")
            key = (r["recording"], r["turn"])
            if r["turn"] is not None and key in self.diffs and key not in shown:
                shown.add(key)
                out.extend("    " + line for line in self.diffs[key].splitlines())
        return "\n".join(out)

    __str__ = text

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"<Evaluation: {len(set(self.table.column('recording').to_pylist()))} recordings, "
            f"{len(self.checks)} checks: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip>"
        )

    # -- HTML ------------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        return self.html()

    def save_html(self, path: str | Path) -> Path:
        """Write the report as a standalone HTML page."""
        p = Path(path)
        p.write_text(
            "<!doctype html><meta charset='utf-8'><title>realtime_nb evaluation</title>"
            + self.html(),
            encoding="utf-8",
        )
        return p

    def html(self) -> str:
        e = html.escape
        c = self.counts()
        rows = self.table.to_pylist()
        parts = [
            "<div class='rtnb-eval tex2jax_ignore mathjax_ignore'>",
            _STYLE,
            f"<h3>Evaluation: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip</h3>",
            "<h4>Pass/fail matrix</h4><table><thead><tr><th>recording</th><th>turn</th>",
        ]
        parts += [f"<th>{e(name)}</th>" for name in self.checks]
        parts.append("</tr></thead><tbody>")
        grid: dict[tuple[str, int | None], dict[str, JSON]] = {}
        for r in rows:
            grid.setdefault((r["recording"], r["turn"]), {})[r["check"]] = r
        order = sorted(grid, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
        for rec, turn in order:
            cells = grid[(rec, turn)]
            parts.append(f"<tr><td>{e(rec)}</td><td>{'call' if turn is None else turn}</td>")
            for name in self.checks:
                r = cells.get(name)
                if r is None:
                    parts.append("<td></td>")
                    continue
                mark = {"pass": "✓ pass", "fail": "✗ fail", "skip": "– skip"}[r["status"]]
                parts.append(
                    f"<td class='rtnb-{r['status']}' title='{e(r['detail'] or '')}'>{mark}</td>"
                )
            parts.append("</tr>")
        parts.append("</tbody></table>")
        fails = self.failures
        parts.append("<h4>Failing turns</h4>")
        if not fails:
            parts.append("<p>None: every check passed.</p>")
        for r in fails:
            where = f"turn {r['turn']}" if r["turn"] is not None else "the call"
            parts.append(
                f"<div class='rtnb-failure'><b>{e(r['recording'])}</b> {where}: "
                f"<code>{e(r['check'])}</code>: {e(r['detail'] or '')}"
            )
            if r["differs"]:
                parts.append(f"<br>differs from the parent: {e(r['differs'])}")
            diff = self.diffs.get((r["recording"], r["turn"]))
            if diff:
                parts.append(f"<pre>{e(diff)}</pre>")
            parts.append("</div>")
        parts.append("<h4>Latency per turn (ms) and cost per call (USD), before and after</h4>")
        parts.append(
            _distributions("latency (ms)", self.latency_before, self.latency_after, "{:.0f}")
        )
        parts.append(_distributions("cost (USD)", self.cost_before, self.cost_after, "{:.4f}"))
        parts.append("</div>")
        return "".join(parts)


_STYLE: Final = """<style>
.rtnb-eval { text-align: left; font-family: var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #222); font-size: var(--jp-ui-font-size1, 13px); }
.rtnb-eval h3, .rtnb-eval h4 { text-align: left; margin: 0.6em 0 0.3em 0; }
.rtnb-eval table { border-collapse: collapse; margin: 0; }
.rtnb-eval th, .rtnb-eval td { text-align: left; padding: 2px 8px;
  border: 1px solid var(--jp-border-color2, #ddd); }
.rtnb-eval .rtnb-pass { color: var(--jp-success-color1, #2e7d32); }
.rtnb-eval .rtnb-fail { color: var(--jp-error-color1, #c62828); font-weight: bold; }
.rtnb-eval .rtnb-skip { color: var(--jp-ui-font-color2, #777); }
.rtnb-eval pre { text-align: left; background: var(--jp-layout-color2, #f5f5f5);
  color: var(--jp-content-font-color1, #222); padding: 4px 8px; white-space: pre-wrap; }
.rtnb-eval .rtnb-failure { margin: 0.4em 0; }
.rtnb-eval svg text { fill: var(--jp-ui-font-color1, #222); font-size: 11px; }
.rtnb-eval .rtnb-box-before { fill: var(--jp-layout-color3, #bbb); }
.rtnb-eval .rtnb-box-after { fill: var(--jp-brand-color1, #1976d2); }
.rtnb-eval svg line { stroke: var(--jp-ui-font-color2, #555); }
</style>"""


def _distributions(label: str, before: list[float], after: list[float], fmt: str) -> str:
    """Two box plots (p5..p95 whiskers, quartile box, median) on one scale, with p50/p90/max."""
    e = html.escape
    values = [v for v in (*before, *after) if v is not None]
    if not values:
        return f"<p>{e(label)}: no values.</p>"
    lo, hi = min(0.0, min(values)), max(values) or 1.0
    span = (hi - lo) or 1.0
    left = 70

    def x(v: float) -> float:
        return left + (v - lo) / span * (_PLOT_W - left - 10)

    def quant(xs: list[float], q: float) -> float:
        s = sorted(xs)
        k = (len(s) - 1) * q
        i = int(k)
        j = min(i + 1, len(s) - 1)
        return s[i] + (s[j] - s[i]) * (k - i)

    svg = [f"<svg width='{_PLOT_W}' height='{3 * _BAR_H + 24}' role='img'>"]
    stats = []
    for row, (name, xs, cls) in enumerate(
        (("before", before, "rtnb-box-before"), ("after", after, "rtnb-box-after"))
    ):
        y = 6 + row * (_BAR_H + 8)
        svg.append(f"<text x='0' y='{y + _BAR_H - 5}'>{name}</text>")
        if not xs:
            svg.append(f"<text x='{left}' y='{y + _BAR_H - 5}'>no values</text>")
            stats.append(f"{name}: none")
            continue
        p5, q1, med, q3, p95 = (quant(xs, q) for q in (0.05, 0.25, 0.5, 0.75, 0.95))
        mid = y + _BAR_H / 2
        svg.append(f"<line x1='{x(p5):.1f}' x2='{x(p95):.1f}' y1='{mid}' y2='{mid}'/>")
        svg.append(
            f"<rect class='{cls}' x='{x(q1):.1f}' y='{y}' width='{max(x(q3) - x(q1), 1):.1f}' "
            f"height='{_BAR_H}'/>"
        )
        svg.append(f"<line x1='{x(med):.1f}' x2='{x(med):.1f}' y1='{y}' y2='{y + _BAR_H}'/>")
        p = percentiles(xs)
        stats.append(
            f"{name}: n {p.n}, p50 {fmt.format(p.p50)}, p90 {fmt.format(p.p90)}, "
            f"max {fmt.format(p.max)}"
        )
    axis_y = 2 * (_BAR_H + 8) + 16
    svg.append(f"<text x='{left}' y='{axis_y}'>{fmt.format(lo)}</text>")
    svg.append(f"<text x='{_PLOT_W - 60}' y='{axis_y}'>{fmt.format(hi)}</text>")
    svg.append("</svg>")
    return f"<div><b>{e(label)}</b><br>{''.join(svg)}<br><span>{e('; '.join(stats))}</span></div>"


def _baseline_index(against: Corpus | None) -> dict[str, str]:
    """Resolved path -> key, for the baseline corpus."""
    if against is None:
        return {}
    s = against.sessions
    return dict(zip(s.column("path").to_pylist(), s.column("recording").to_pylist(), strict=True))


def evaluate(
    corpus: Corpus,
    checks: Check | Sequence[Check] | Mapping[str, Check],
    *,
    against: Corpus | None = None,
) -> Evaluation:
    """Run ``checks`` over every turn of every recording of ``corpus``; with ``against`` (the
    corpus of the parents), compare each recording whose parent is there turn by turn.

    Raises:
        TypeError: something in ``checks`` that is not a check.
        ValueError: no checks.
    """
    from ..debugging.diff import diff

    named = _checks(checks)
    records = _turn_records(corpus)
    parents = corpus.parents()
    base_index = _baseline_index(against)
    base_records = _turn_records(against) if against is not None else {}
    rows: list[JSON] = []
    diffs: dict[tuple[str, int], str] = {}
    lat_before: list[float] = []
    lat_after: list[float] = []
    cost_before: list[float] = []
    cost_after: list[float] = []
    used_parents: set[str] = set()
    for key, turns in records.items():
        parent_path = parents.get(key)
        parent_key = base_index.get(parent_path) if parent_path else None
        by_b: dict[int, TurnDiff] = {}
        cd: ConversationDiff | None = None
        if parent_key is not None and against is not None:
            used_parents.add(parent_key)
            cd = diff(against.path(parent_key), corpus.path(key))
            by_b = {t.b_index: t for t in cd.turns if t.b_index is not None}
        after_costs = [t.cost_usd for t in turns]
        lat_after += [t.latency_ms for t in turns if t.latency_ms is not None]
        if after_costs and all(c is not None for c in after_costs):
            cost_after.append(sum(c or 0.0 for c in after_costs))
        base_turns = {t.turn: t for t in base_records.get(parent_key or "", [])}
        for name, c in named.items():
            results: list[tuple[int | None, CheckResult]] = c.run(turns)
            for turn, result in results:
                td = by_b.get(turn) if turn is not None else None
                mine = next((t for t in turns if t.turn == turn), None)
                theirs = (
                    base_turns.get(td.a_index)
                    if td is not None and td.a_index is not None
                    else None
                )
                rows.append(
                    {
                        "recording": key,
                        "parent": parent_key,
                        "turn": turn,
                        "check": name,
                        "status": result.status,
                        "passed": result.passed,
                        "detail": result.detail,
                        "differs": _differs(td) if cd is not None and turn is not None else None,
                        "latency_ms": mine.latency_ms if mine else None,
                        "baseline_latency_ms": theirs.latency_ms if theirs else None,
                        "cost_usd": mine.cost_usd if mine else None,
                        "baseline_cost_usd": theirs.cost_usd if theirs else None,
                    }
                )
                if result.status == "fail" and td is not None and turn is not None:
                    diffs[(key, turn)] = _turn_diff_text(td)
    # Before = the parents of what was evaluated; a baseline of unrelated calls: all of it.
    for parent_key in sorted(used_parents or base_records):
        turns = base_records.get(parent_key, [])
        lat_before += [t.latency_ms for t in turns if t.latency_ms is not None]
        costs = [t.cost_usd for t in turns]
        if costs and all(c is not None for c in costs):
            cost_before.append(sum(c or 0.0 for c in costs))
    table = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)
    return Evaluation(table, list(named), diffs, lat_before, lat_after, cost_before, cost_after)
