// @ts-check
// Time-stretching for the replay's speeds (0.5x to 2x) that keeps the voices' pitch: WSOLA
// (waveform-similarity overlap-add). Pure, no DOM (node --test covers it).
//
// Why not `playbackRate`: on an AudioBufferSourceNode it resamples, so 0.5x is an octave down
// and 2x an octave up, and speech at 0.5x is hard to follow, which is when one slows down. The
// audio is PCM in 4-s windows scheduled on an AudioContext (not an <audio> element, whose
// `preservesPitch` would do this), so the windows are stretched here before they are scheduled.

/** Analysis frame: 30 ms holds two or more pitch periods of any voice (80 Hz and up). */
export const FRAME_MS = 30;
/** How far (either way) a frame may move to continue the waveform it follows: over half of the
 *  longest pitch period (12.5 ms at 80 Hz). */
export const SEEK_MS = 8;
/** Fade at each end of a stretched window (ms): windows are stretched apart, and a short fade
 *  where two meet is inaudible where a step in the waveform would click. */
export const EDGE_FADE_MS = 3;
/** Frames quieter than this mean square are silence: copied without a search. */
const SILENCE = 1e-7;

/**
 * `x` played `speed` times as fast with its pitch kept: `round(x.length / speed)` samples.
 *
 * Each output frame (hop: half a frame) is taken from around where the input is at that moment
 * (`speed` input samples per output sample), moved within ±`SEEK_MS` to where it best continues
 * the waveform already written (normalised cross-correlation), and overlap-added with a Hann
 * window. `next` (the start of the audio that follows `x`, when known) lets the last frames read
 * past the end of `x` instead of into silence.
 * @param {Float32Array} x mono samples
 * @param {number} rate Hz
 * @param {number} speed > 0 (1 returns `x` itself)
 * @param {Float32Array | null} [next] the samples that follow `x`
 * @returns {Float32Array}
 * @throws {RangeError} `speed` is not a positive finite number
 */
export function stretch(x, rate, speed, next = null) {
  if (!(speed > 0) || !Number.isFinite(speed)) throw new RangeError(`speed must be a positive number, got ${speed}`);
  if (speed === 1) return x;
  const outLen = Math.round(x.length / speed);
  const half = Math.max(2, Math.round((FRAME_MS * rate) / 2000));
  const n = 2 * half;
  const seek = Math.max(1, Math.round((SEEK_MS * rate) / 1000));
  const out = new Float32Array(outLen + n);
  if (x.length < 2 * n) {
    // Too short to find a period in: nearest-sample resampling (a few ms, at a window's end).
    for (let i = 0; i < outLen; i++) out[i] = x[Math.min(x.length - 1, Math.floor(i * speed))] || 0;
    return fade(out.slice(0, outLen), rate);
  }
  // The input, followed by what comes next (or silence), so frames near the end can be read.
  const pad = n + seek + Math.ceil(half * speed);
  const src = new Float32Array(x.length + pad);
  src.set(x);
  if (next) src.set(next.subarray(0, Math.min(next.length, pad)), x.length);
  const win = new Float32Array(n);
  for (let i = 0; i < n; i++) win[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n); // periodic Hann: halves sum to 1
  const last = x.length + pad - n; // the last frame start that stays inside src
  let prev = 0;
  for (let k = 0; k * half < outLen; k++) {
    const outPos = k * half;
    let pos = 0;
    if (k > 0) {
      const nominal = Math.round((outPos + half) * speed - half); // frame centres line up
      const target = prev + half; // where the previous frame's waveform naturally goes on
      pos = Math.min(last, Math.max(0, nominal));
      let energy = 0;
      for (let i = 0; i < half; i++) energy += src[target + i] * src[target + i];
      if (energy / half > SILENCE) pos = bestMatch(src, target, half, Math.max(0, nominal - seek), Math.min(last, nominal + seek), pos);
    }
    if (k === 0) {
      // Nothing before the first frame to overlap with: its first half at full gain.
      for (let i = 0; i < n; i++) out[i] += src[i] * (i < half ? 1 : win[i]);
    } else {
      for (let i = 0; i < n; i++) out[outPos + i] += src[pos + i] * win[i];
    }
    prev = pos;
  }
  return fade(out.slice(0, outLen), rate);
}

/**
 * The frame start in [lo, hi] whose first `len` samples look most like src[target...]
 * (normalised cross-correlation; every second candidate, then its neighbours).
 * @param {Float32Array} src @param {number} target @param {number} len
 * @param {number} lo @param {number} hi @param {number} fallback
 */
function bestMatch(src, target, len, lo, hi, fallback) {
  /** @param {number} p */
  const score = (p) => {
    let c = 0;
    let e = 0;
    for (let i = 0; i < len; i += 2) {
      const v = src[p + i];
      c += v * src[target + i];
      e += v * v;
    }
    return e > 0 ? c / Math.sqrt(e) : -Infinity;
  };
  let best = fallback;
  let bestScore = -Infinity;
  for (let p = lo; p <= hi; p += 2) {
    const s = score(p);
    if (s > bestScore) {
      bestScore = s;
      best = p;
    }
  }
  for (const p of [best - 1, best + 1]) {
    if (p >= lo && p <= hi) {
      const s = score(p);
      if (s > bestScore) {
        bestScore = s;
        best = p;
      }
    }
  }
  return best;
}

/** Fade both ends in place over EDGE_FADE_MS. @param {Float32Array} y @param {number} rate */
function fade(y, rate) {
  const m = Math.min(Math.floor(y.length / 2), Math.round((EDGE_FADE_MS * rate) / 1000));
  for (let i = 0; i < m; i++) {
    const g = 0.5 - 0.5 * Math.cos((Math.PI * i) / m);
    y[i] *= g;
    y[y.length - 1 - i] *= g;
  }
  return y;
}
