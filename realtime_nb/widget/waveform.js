// @ts-check
// The replay timeline's picture: both tracks' peaks, the VAD segments behind the user's, the
// truncation marks on the assistant's, a ruler; and the playhead over it.

import { clock } from "./format.js";

/**
 * What the kernel's `overview` message says of the whole recording.
 * @typedef {{bins: number, peaks: Float32Array[], vad: [number, number | null][],
 *   truncations: [number | null, ...any[]][], items: any[],
 *   markers: import("./timeline.js").Marker[]}} Overview
 */

/** Vertical layout in CSS pixels (the canvas is 96 px high). */
const LANE = { ruler: 14, user: [16, 54], assistant: [56, 94] };
const HEIGHT = 96;
/** Ruler steps (s); the first at least 70 px apart is used. */
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

/**
 * Draw the static picture on an offscreen canvas (the playhead is drawn over a copy of it).
 * @param {Overview} overview
 * @param {number} duration s
 * @param {number} w width in CSS pixels
 * @param {number} dpr device pixels per CSS pixel
 * @param {(cssVar: string) => string} color the colour a CSS variable holds
 * @returns {HTMLCanvasElement}
 */
export function drawWaveform(overview, duration, w, dpr, color) {
  const off = document.createElement("canvas");
  off.width = Math.round(w * dpr);
  off.height = Math.round(HEIGHT * dpr);
  const g = /** @type {CanvasRenderingContext2D} */ (off.getContext("2d"));
  g.scale(dpr, dpr);
  const x = (/** @type {number} */ t) => (duration ? (t / duration) * w : 0);
  // VAD segments: bands behind the user lane.
  g.fillStyle = color("--rtnb-user");
  for (const [a, b] of overview.vad) {
    const x0 = x(a);
    const x1 = x(b == null ? duration : b);
    g.fillRect(x0, LANE.user[0], Math.max(1, x1 - x0), LANE.user[1] - LANE.user[0]);
  }
  /** @param {Float32Array} lo @param {Float32Array} hi @param {number[]} lane @param {string} fill */
  const peaks = (lo, hi, lane, fill) => {
    const mid = (lane[0] + lane[1]) / 2;
    const half = (lane[1] - lane[0]) / 2;
    g.fillStyle = fill;
    const n = lo.length;
    for (let i = 0; i < n; i++) {
      const px = (i / n) * w;
      const y0 = mid - Math.min(1, hi[i]) * half;
      const y1 = mid - Math.max(-1, lo[i]) * half;
      g.fillRect(px, y0, Math.max(1, w / n), Math.max(1, y1 - y0));
    }
  };
  const [umin, umax, amin, amax] = overview.peaks;
  peaks(umin, umax, LANE.user, color("--rtnb-accent"));
  peaks(amin, amax, LANE.assistant, color("--rtnb-ok"));
  // Truncations: where the listener stopped hearing an assistant item.
  g.fillStyle = color("--rtnb-err");
  for (const [t] of overview.truncations) {
    if (t == null) continue;
    g.fillRect(x(t) - 1, LANE.assistant[0] - 2, 2, LANE.assistant[1] - LANE.assistant[0] + 4);
    g.beginPath();
    g.moveTo(x(t) - 4, LANE.assistant[0] - 3);
    g.lineTo(x(t) + 4, LANE.assistant[0] - 3);
    g.lineTo(x(t), LANE.assistant[0] + 3);
    g.fill();
  }
  // Ruler: a tick every "nice" interval.
  g.fillStyle = color("--rtnb-fg2");
  g.font = "10px sans-serif";
  const step = STEPS.find((s) => (s / Math.max(duration, 1)) * w >= 70) || 3600;
  for (let t = 0; t <= duration; t += step) {
    g.fillRect(x(t), 0, 1, 4);
    g.fillText(clock(t).replace(/\.\d$/, ""), x(t) + 2, 11);
  }
  return off;
}

/**
 * Copy the picture onto the visible canvas and draw the playhead at `position`.
 * @param {HTMLCanvasElement} canvas @param {HTMLCanvasElement | null} picture
 * @param {number} position s @param {number} duration s @param {string} fill
 */
export function drawPlayhead(canvas, picture, position, duration, fill) {
  const g = canvas.getContext("2d");
  if (!g) return;
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (picture) g.drawImage(picture, 0, 0);
  if (!duration) return;
  const px = (position / duration) * canvas.width;
  g.fillStyle = fill;
  g.fillRect(Math.round(px) - 1, 0, 2, canvas.height);
}
