// @ts-check
// The Events tabs. Live (EventLogView): what eventlog.js keeps, one row per group, a JSON detail
// under a row that was clicked, filtered by type and source, scrolled to the newest while the
// user is at the bottom. Replay (EventWindowView): the rows of a window of the recording around
// the playhead, the one at the playhead marked, details fetched from the kernel on click.

import { EventLog, detailText, matches } from "./eventlog.js";
import { clock, fmtSeconds, pretty } from "./format.js";
import { lastRowAt } from "./timeline.js";
import { eventCells, h } from "./ui.js";

/** @typedef {import("./types.js").LogEvent} LogEvent */
/** @typedef {import("./eventlog.js").EventGroup} EventGroup */

export class EventLogView {
  /**
   * @param {HTMLElement} list the rows' container
   * @param {HTMLElement} count where "n events" goes
   * @param {() => {type: string, source: string}} filters the filter inputs' current values
   * @param {number} [max] events kept
   * @param {() => boolean} [shown] whether the rows can be seen (their tab is open)
   */
  constructor(list, count, filters, max, shown = () => true) {
    this.list = list;
    this.count = count;
    this.filters = filters;
    this.shown = shown;
    this.log = new EventLog(max);
    /** @type {WeakMap<EventGroup, {row: HTMLElement, detail: HTMLElement | null}>} */
    this._dom = new WeakMap();
    // Changes the DOM has not caught up with yet. The log itself is always current (it is
    // cheap); its rows are drawn at most once per frame, and not at all while the tab is closed:
    // the page's main thread also relays the mic's chunks, which must not wait behind rows
    // nobody sees. Both are bounded by the log's size.
    /** @type {Set<EventGroup>} groups without a row yet, in arrival order */
    this._toAdd = new Set();
    /** @type {Set<EventGroup>} groups whose row must be redrawn */
    this._toDraw = new Set();
    this._frame = false;
  }

  /** @param {LogEvent[]} events */
  add(events) {
    const { added, updated, removed } = this.log.add(events);
    for (const g of removed) this._remove(g);
    for (const g of updated) if (!this._toAdd.has(g)) this._toDraw.add(g);
    for (const g of added) this._toAdd.add(g);
    if (!this.shown() || this._frame) return;
    this._frame = true;
    requestAnimationFrame(() => {
      this._frame = false;
      if (this.shown()) this.flush();
    });
  }

  /** Draw what changed since the last call (the tab was opened, or a frame is due). */
  flush() {
    const l = this.list;
    const stick = l.scrollHeight - l.scrollTop - l.clientHeight < 40;
    for (const g of this._toDraw) this._draw(g);
    this._toDraw.clear();
    const rows = [];
    for (const g of this._toAdd) {
      const row = h("div", { class: "rtnb-event" });
      const dom = { row, detail: /** @type {HTMLElement | null} */ (null) };
      this._dom.set(g, dom);
      row.addEventListener("click", () => {
        if (dom.detail) {
          dom.detail.remove();
          dom.detail = null;
        } else {
          dom.detail = h("pre", { class: "rtnb-json" }, detailText(g));
          row.after(dom.detail);
        }
      });
      this._draw(g);
      row.hidden = !this._visible(g);
      rows.push(row);
    }
    this._toAdd.clear();
    l.append(...rows);
    this.count.textContent = `${this.log.total} events`;
    if (stick) l.scrollTop = l.scrollHeight;
  }

  /** Drop every row (a snapshot follows). */
  clear() {
    for (const g of this.log.clear()) this._remove(g);
    this._toAdd.clear();
    this._toDraw.clear();
  }

  /** Apply the filters again (they changed). */
  refilter() {
    for (const g of this.log.groups) {
      const dom = this._dom.get(g);
      if (!dom) continue;
      dom.row.hidden = !this._visible(g);
      if (dom.detail) dom.detail.hidden = dom.row.hidden;
    }
  }

  /** @param {EventGroup} g */
  _visible(g) {
    const f = this.filters();
    return matches(g, f.type, f.source);
  }

  /** @param {EventGroup} g */
  _draw(g) {
    const dom = this._dom.get(g);
    if (!dom) return;
    const last = g.events[g.events.length - 1];
    dom.row.replaceChildren(...eventCells({
      source: g.source,
      time: fmtSeconds(g.events[0].t_ms),
      type: g.type,
      count: g.events.length,
      itemId: last.item_id,
    }).filter((c) => c !== null));
    if (dom.detail) dom.detail.textContent = detailText(g);
  }

  /** @param {EventGroup} g */
  _remove(g) {
    this._toAdd.delete(g);
    this._toDraw.delete(g);
    const dom = this._dom.get(g);
    if (!dom) return;
    dom.row.remove();
    dom.detail?.remove();
    this._dom.delete(g);
  }
}

/** A replay event row as the kernel sends it: [seq, t_s, source, type, item_id]. @typedef {[number, number, string, string, string | null]} EventRow */

export class EventWindowView {
  /**
   * @param {{list: HTMLElement, count: HTMLElement, pane: HTMLElement, filter: HTMLInputElement}} dom
   * @param {(seq: number) => void} askDetail fetch an event's JSON; `showDetail` receives it
   */
  constructor(dom, askDetail) {
    this.dom = dom;
    this.askDetail = askDetail;
    /** @type {EventRow[]} */
    this.rows = [];
    this.from = Infinity;
    this.to = -Infinity;
    this.duration = 0;
    /** @type {HTMLElement[]} */
    this._els = [];
    this._current = -2; // -2: not marked yet
    this._built = false;
  }

  /**
   * A new window of rows; drawn at once if the tab shows.
   * @param {{from_s: number, to_s: number, rows: EventRow[]}} ev @param {number} position
   */
  set(ev, position) {
    this.rows = ev.rows;
    this.from = ev.from_s;
    this.to = ev.to_s;
    this._built = false;
    this.build(position);
  }

  /**
   * Make the rows' elements, only while the tab shows (seeking with it hidden is cheaper).
   * @param {number} position
   */
  build(position) {
    if (this._built || this.dom.pane.hidden) return;
    this._built = true;
    this._els = this.rows.map(([seq, t, source, type, itemId]) => {
      const row = h("div", { class: "rtnb-event", "data-seq": seq },
        ...eventCells({ source, time: clock(t), type, itemId }));
      row.addEventListener("click", () => this._toggle(row, seq));
      return row;
    });
    this.dom.list.replaceChildren(...this._els);
    this._current = -2;
    this.refilter();
    this.sync(position);
  }

  /** @param {HTMLElement} row @param {number} seq */
  _toggle(row, seq) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("rtnb-json")) {
      next.remove();
      return;
    }
    row.after(h("pre", { class: "rtnb-json", "data-seq": seq }, "…"));
    this.askDetail(seq);
  }

  /** The JSON of an event whose detail is open. @param {number | string} seq @param {unknown} data */
  showDetail(seq, data) {
    const pre = this.dom.list.querySelector(`pre.rtnb-json[data-seq="${seq}"]`);
    if (pre) pre.textContent = pretty(data);
  }

  refilter() {
    if (!this._built) return;
    const f = this.dom.filter.value.trim().toLowerCase();
    let shown = 0;
    this.rows.forEach((r, i) => {
      const hide = !!f && !String(r[3]).toLowerCase().includes(f);
      this._els[i].hidden = hide;
      if (!hide) shown++;
    });
    this.dom.count.textContent = `${shown} events from ${clock(Math.max(0, this.from))} to ${clock(Math.min(this.duration, this.to))} (audio events on the timeline)`;
  }

  /** Mark past, current and future rows for the playhead; scroll the current one into view. @param {number} position */
  sync(position) {
    if (!this._built) return;
    const els = this._els;
    const cur = lastRowAt(this.rows, position);
    if (cur === this._current) return;
    const lo = Math.min(cur, this._current);
    const hi = Math.max(cur, this._current);
    const from = this._current === -2 ? 0 : Math.max(0, lo);
    const to = this._current === -2 ? els.length - 1 : hi;
    for (let i = from; i <= to && i < els.length; i++) {
      els[i].classList.toggle("rtnb-future", i > cur);
      els[i].classList.toggle("rtnb-current", i === cur);
    }
    this._current = cur;
    const r = els[Math.max(0, cur)];
    const list = this.dom.list;
    if (r && !this.dom.pane.hidden) {
      list.scrollTop = Math.max(0, r.offsetTop - list.offsetTop - list.clientHeight / 2);
    }
  }
}
