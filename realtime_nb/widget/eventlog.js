// @ts-check
// The live event log's bookkeeping: pure, no DOM (eventview.js draws it; node --test covers this).
//
// Consecutive events of one source and one streaming type (`*.delta`, `input_audio_buffer.append`)
// collapse into one group, so a reply's hundreds of deltas are one row; the log keeps at most
// `max` events, dropping whole groups from the oldest end.

/** @typedef {import("./types.js").LogEvent} LogEvent */

/** Events the log keeps; older ones go (the kernel keeps the full recording). */
export const MAX_EVENTS = 3000;
/** Event types whose consecutive runs collapse into one group. */
export const COLLAPSIBLE = /(\.delta$|^input_audio_buffer\.append$)/;

/**
 * A run of events shown as one row.
 * @typedef {{key: string, source: string, type: string, events: LogEvent[]}} EventGroup
 */

/**
 * What one `add()` changed, for the view to apply: groups to draw, groups to redraw (their count
 * or last event changed), groups to remove. A group appears in at most one of the three.
 * @typedef {{added: EventGroup[], updated: EventGroup[], removed: EventGroup[]}} LogChange
 */

export class EventLog {
  /** @param {number} [max] events kept */
  constructor(max = MAX_EVENTS) {
    this.max = max;
    /** @type {EventGroup[]} oldest first */
    this.groups = [];
    /** events in `groups` */
    this.total = 0;
  }

  /**
   * Append events (in arrival order), then trim to `max`.
   * @param {LogEvent[]} events
   * @returns {LogChange}
   */
  add(events) {
    /** @type {Set<EventGroup>} */
    const added = new Set();
    /** @type {Set<EventGroup>} */
    const updated = new Set();
    for (const ev of events) {
      const key = `${ev.source} ${ev.type}`;
      const last = this.groups[this.groups.length - 1];
      if (last && last.key === key && COLLAPSIBLE.test(ev.type)) {
        last.events.push(ev);
        if (!added.has(last)) updated.add(last);
      } else {
        const g = { key, source: ev.source, type: ev.type, events: [ev] };
        this.groups.push(g);
        added.add(g);
      }
      this.total++;
    }
    /** @type {EventGroup[]} */
    const removed = [];
    while (this.total > this.max && this.groups.length > 1) {
      const g = /** @type {EventGroup} */ (this.groups.shift());
      this.total -= g.events.length;
      if (added.delete(g)) continue; // came and went in this batch: the view never sees it
      updated.delete(g);
      removed.push(g);
    }
    return { added: [...added], updated: [...updated], removed };
  }

  /** Forget everything (a snapshot replaces the log). @returns {EventGroup[]} the groups dropped */
  clear() {
    const removed = this.groups;
    this.groups = [];
    this.total = 0;
    return removed;
  }
}

/**
 * Whether a group passes the log's filters.
 * @param {{source: string, type: string}} g
 * @param {string} typeFilter case-insensitive substring of the type ("" for any)
 * @param {string} source "client" | "server" | "local" ("" for any)
 */
export function matches(g, typeFilter, source) {
  const f = typeFilter.trim().toLowerCase();
  return (!f || g.type.toLowerCase().includes(f)) && (!source || g.source === source);
}

/**
 * The detail shown when a row is opened: a header comment, then the (last) event as JSON.
 * @param {EventGroup} g
 */
export function detailText(g) {
  const last = g.events[g.events.length - 1];
  const head = g.events.length > 1
    ? `// ${g.events.length} events, seq ${g.events[0].seq}–${last.seq}; the last one:\n`
    : `// seq ${last.seq}, t ${last.t_ms} ms\n`;
  return head + JSON.stringify(last.data, null, 2);
}
