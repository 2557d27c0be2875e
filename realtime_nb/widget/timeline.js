// @ts-check
// The replay view's arithmetic: audio windows, scheduling on the audio clock, the event-list
// window, pixels to seconds. Pure, no DOM (node --test tests/js/ checks it).

/** Audio windows kept in memory: ~16 x 4 s x 2 tracks of Float32 is 12 MB at most. */
export const MAX_CACHED_WINDOWS = 16;
/** Windows fetched ahead of the playhead while playing (the one under it, plus this many). */
export const PREFETCH_WINDOWS = 2;
/** Seconds before the event-list window's edge at which a new one is asked for. */
export const EVENT_MARGIN_S = 5;

/** Index of the audio window holding time t. @param {number} t @param {number} windowS */
export function windowIndex(t, windowS) {
  return Math.max(0, Math.floor(t / windowS + 1e-9));
}

/**
 * Window indices to have in memory for a playhead at t: the one under it, then `ahead` more
 * (none past the end).
 * @param {number} t @param {number} windowS @param {number} duration @param {number} ahead
 * @returns {number[]}
 */
export function windowsFor(t, windowS, duration, ahead) {
  const first = windowIndex(t, windowS);
  const last = Math.max(first, Math.ceil(duration / windowS) - 1);
  const out = [];
  for (let k = first; k <= Math.min(first + ahead, last); k++) out.push(k);
  return out;
}

/**
 * Cached windows to drop so that at most `max` remain: the farthest from the playhead's window
 * first, never one that is scheduled to play.
 * @param {Iterable<number>} cached @param {number} here the playhead's window
 * @param {(k: number) => boolean} busy @param {number} [max]
 * @returns {number[]}
 */
export function windowsToEvict(cached, here, busy, max = MAX_CACHED_WINDOWS) {
  const all = [...cached];
  let size = all.length;
  /** @type {number[]} */
  const out = [];
  if (size <= max) return out;
  const far = all.sort((a, b) => Math.abs(b - here) - Math.abs(a - here));
  for (const k of far) {
    if (size <= max) break;
    if (busy(k)) continue;
    out.push(k);
    size--;
  }
  return out;
}

/**
 * When and from where to start a window's buffer so it lines up with the playhead clock.
 * The playhead is at `origin` (timeline s) at context time `startCtx` and moves `speed` timeline
 * seconds per context second. Returns null when the window is already over.
 * @param {number} windowStart timeline s @param {number} windowLen s
 * @param {number} origin @param {number} startCtx @param {number} speed @param {number} now context time
 * @returns {{when: number, offset: number} | null}
 */
export function scheduleWindow(windowStart, windowLen, origin, startCtx, speed, now) {
  const due = startCtx + (windowStart - origin) / speed; // context time the window should start
  const when = Math.max(due, now);
  const offset = origin + (when - startCtx) * speed - windowStart;
  if (offset >= windowLen) return null;
  return { when, offset: Math.max(0, offset) };
}

/** Timeline seconds under x pixels of a width-px timeline. @param {number} x @param {number} width @param {number} duration */
export function timeAtX(x, width, duration) {
  if (!(width > 0)) return 0;
  return Math.min(duration, Math.max(0, (x / width) * duration));
}

/**
 * Index of the last row at or before t (rows sorted by time; -1 when none).
 * @param {{1: number}[]} rows @param {number} t
 */
export function lastRowAt(rows, t) {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid][1] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * Whether an event-list window [from, to] holds time t with a margin to spare (none at the
 * recording's ends: there is nothing more to fetch).
 * @param {number} from @param {number} to @param {number} t @param {number} duration
 */
export function eventsCover(from, to, t, duration) {
  const lo = from <= 0 ? from : from + EVENT_MARGIN_S;
  const hi = to >= duration ? to : to - EVENT_MARGIN_S;
  return t >= lo && t <= hi;
}

/** Rows of labels under the timeline: enough for a tool call, its response and the answer that
 *  start within a few pixels of each other, few enough to keep the strip short. */
export const MARKER_ROWS = 3;
/** Pixels a label takes per character (the strip's 10-11 px font) and around it. */
const CHAR_PX = 6.5;
const LABEL_PAD_PX = 12;

/**
 * A marker of the replay timeline as the kernel sends it: [t_s, kind, label, item_id].
 * @typedef {[number, string, string, string | null]} Marker
 */

/** Which labels stay when there is no room for all: the speakers, then tool calls and cuts, then
 *  responses (which start a few ms before the answer they make anyway). */
const MARKER_PRIORITY = ["user", "assistant", "tool", "truncation", "response"];

/**
 * Where each marker's label goes in a strip `width` px wide: its x, a row (the first where it
 * overlaps no label already placed), or no label (`row` -1: the tick and its tooltip only) when
 * every row is taken there. Labels are placed by kind (MARKER_PRIORITY), then in time order, so
 * a crowded moment keeps the speakers' and the tool calls' labels. `flip`: the label is drawn
 * leftwards from its tick (near the right edge).
 * @param {Marker[]} markers in time order
 * @param {number} width px @param {number} duration s @param {number} [rows]
 * @returns {{x: number, row: number, flip: boolean}[]}
 */
export function layoutMarkers(markers, width, duration, rows = MARKER_ROWS) {
  /** @type {[number, number][][]} per row, the spans taken */
  const taken = Array.from({ length: rows }, () => []);
  const rank = (/** @type {string} */ kind) => {
    const r = MARKER_PRIORITY.indexOf(kind);
    return r < 0 ? MARKER_PRIORITY.length : r;
  };
  const order = markers.map((_, i) => i).sort((a, b) => rank(markers[a][1]) - rank(markers[b][1]) || a - b);
  /** @type {{x: number, row: number, flip: boolean}[]} */
  const out = new Array(markers.length);
  for (const i of order) {
    const [t, , label] = markers[i];
    const x = duration > 0 ? Math.min(width, Math.max(0, (t / duration) * width)) : 0;
    const w = label.length * CHAR_PX + LABEL_PAD_PX;
    // A label near the right edge is drawn leftwards from its tick.
    const start = x + w > width ? x - w : x;
    const end = start + w;
    const row = taken.findIndex((spans) => spans.every(([a, b]) => b <= start || end <= a));
    if (row >= 0) taken[row].push([start, end]);
    out[i] = { x, row, flip: start < x };
  }
  return out;
}
