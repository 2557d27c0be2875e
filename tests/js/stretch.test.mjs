// Time-stretching for the replay's speeds (stretch.js): lengths, pitch and loudness kept.
// `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { stretch } from "../../realtime_nb/widget/stretch.js";

const RATE = 24000;

/** A 200 Hz voice-like tone with a harmonic, `s` seconds. */
function tone(s, f = 200) {
  const x = new Float32Array(Math.round(RATE * s));
  for (let i = 0; i < x.length; i++) {
    x[i] = 0.5 * Math.sin((2 * Math.PI * f * i) / RATE) + 0.2 * Math.sin((2 * Math.PI * 2.6 * f * i) / RATE);
  }
  return x;
}
/** Upward zero crossings per second (the fundamental, for these tones). */
function pitch(y) {
  let c = 0;
  for (let i = 1; i < y.length; i++) if (y[i - 1] < 0 && y[i] >= 0) c++;
  return c / (y.length / RATE);
}
const rms = (y) => Math.sqrt(y.reduce((a, v) => a + v * v, 0) / y.length);
/** Leave out the faded ends. */
const inner = (y) => y.subarray(1200, y.length - 1200);

test("1x is the input itself", () => {
  const x = tone(1);
  assert.equal(stretch(x, RATE, 1), x);
});

test("every speed lasts length / speed and keeps the pitch and the loudness", () => {
  const x = tone(4);
  for (const speed of [0.5, 1.5, 2]) {
    const y = stretch(x, RATE, speed);
    assert.equal(y.length, Math.round(x.length / speed), `length at ${speed}x`);
    const p = pitch(inner(y));
    // Plain resampling (playbackRate) would put it at 200 * speed.
    assert.ok(Math.abs(p - 200) < 6, `pitch at ${speed}x: ${p} Hz`);
    const loud = rms(inner(y)) / rms(x);
    assert.ok(loud > 0.9 && loud < 1.1, `loudness at ${speed}x: ${loud}`);
  }
});

test("a low voice and a high one both keep their pitch at 0.5x", () => {
  for (const f of [90, 320]) {
    const p = pitch(inner(stretch(tone(2, f), RATE, 0.5)));
    assert.ok(Math.abs(p - f) < f * 0.03, `${f} Hz came out at ${p} Hz`);
  }
});

test("silence stays silence; a window too short to stretch is still the right length", () => {
  const y = stretch(new Float32Array(RATE), RATE, 0.5);
  assert.equal(y.length, 2 * RATE);
  assert.ok(y.every((v) => v === 0));
  const short = stretch(tone(0.01), RATE, 2);
  assert.equal(short.length, Math.round((RATE * 0.01) / 2));
});

test("the audio that follows a window carries its last frames (no fade into silence)", () => {
  const x = tone(4);
  const next = tone(1);
  const alone = stretch(x, RATE, 0.5);
  const joined = stretch(x, RATE, 0.5, next);
  // The last 20 ms before the edge fade: quieter without the next window than with it.
  const tail = (y) => rms(y.subarray(y.length - 72 - 480, y.length - 72));
  assert.ok(tail(joined) > 0.9 * rms(x), `with next: ${tail(joined)}`);
  assert.ok(tail(alone) < tail(joined));
});

test("bad speeds are refused", () => {
  for (const s of [0, -1, NaN, Infinity]) assert.throws(() => stretch(tone(0.1), RATE, s), RangeError);
});
