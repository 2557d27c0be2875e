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
