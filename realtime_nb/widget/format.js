// @ts-check
// Text formatting shared by the live widget and the replay view: pure, no DOM.

/** Arrows of the event log's source column: what the client sent, the server sent, we noted. */
export const ARROWS = /** @type {Readonly<Record<string, string>>} */ (
  Object.freeze({ client: "→", server: "←", local: "•" })
);

/** "1.23 s" under ten seconds, "12.3 s" from there. @param {number} ms */
export function fmtSeconds(ms) {
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

/** "mm:ss.s" (or "h:mm:ss.s"). @param {number} s */
export function clock(s) {
  const t = Math.max(0, s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = (t % 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${String(m).padStart(2, "0")}:${sec}`;
}

/**
 * Indented JSON; a string that holds JSON (tool arguments, outputs) is parsed first, any other
 * string is returned as it is.
 * @param {unknown} v
 * @returns {string}
 */
export function pretty(v) {
  if (typeof v === "string") {
    try {
      return JSON.stringify(JSON.parse(v), null, 2);
    } catch (_) {
      return v;
    }
  }
  return JSON.stringify(v, null, 2);
}
