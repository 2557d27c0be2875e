// Tests of the widget's pure audio logic: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  StreamingResampler,
  floatToPcm16,
  pcm16ToFloat,
  bytesToPcm16,
  levels,
  meterPosition,
  PcmChunker,
  PlaybackQueue,
} from "../../realtime_nb/widget/audio.js";

/** @param {number} freq @param {number} rate @param {number} n */
function sine(freq, rate, n, amp = 0.5) {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amp * Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

/** Concatenate float arrays. @param {Float32Array[]} parts */
function concat(parts) {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Amplitude of `freq` in `x` (single-bin DFT). */
function amplitude(x, freq, rate) {
  let re = 0;
  let im = 0;
  for (let i = 0; i < x.length; i++) {
    re += x[i] * Math.cos((2 * Math.PI * freq * i) / rate);
    im += x[i] * Math.sin((2 * Math.PI * freq * i) / rate);
  }
  return (2 * Math.hypot(re, im)) / x.length;
}

for (const [src, dst] of [
  [48000, 24000],
  [44100, 24000],
  [24000, 48000],
  [16000, 24000],
  [48000, 8000],
  [24000, 44100],
]) {
  test(`resampler ${src} -> ${dst}: length, pass band, stop band, chunking`, () => {
    const n = src; // one second
    const tone = 1000;
    const x = sine(tone, src, n);
    const whole = new StreamingResampler(src, dst);
    const y = concat([whole.process(x), whole.flush()]);
    assert.equal(y.length, Math.ceil((n * dst) / src));
    // Steady-state pass band: the tone keeps its amplitude.
    const mid = y.subarray(Math.floor(dst * 0.1), Math.floor(dst * 0.9));
    assert.ok(Math.abs(amplitude(mid, tone, dst) - 0.5) < 0.01, `amp ${amplitude(mid, tone, dst)}`);
    // Odd chunk sizes give the identical stream.
    const r = new StreamingResampler(src, dst);
    const parts = [];
    for (let i = 0, k = 1; i < n; k = (k * 7 + 3) % 389) {
      parts.push(r.process(x.subarray(i, i + k + 1)));
      i += k + 1;
    }
    parts.push(r.flush());
    const z = concat(parts);
    assert.equal(z.length, y.length);
    let maxDiff = 0;
    for (let i = 0; i < y.length; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - z[i]));
    assert.ok(maxDiff < 1e-6, `chunked differs by ${maxDiff}`);
  });
}

test("resampler rejects a tone above the output Nyquist (anti-aliasing)", () => {
  const src = 48000;
  const dst = 24000;
  const x = sine(15000, src, src, 0.5); // would alias to 9 kHz
  const r = new StreamingResampler(src, dst);
  const y = r.process(x);
  const mid = y.subarray(2400, y.length - 2400);
  assert.ok(amplitude(mid, 9000, dst) < 0.5 * 10 ** (-50 / 20), `alias ${amplitude(mid, 9000, dst)}`);
});

test("resampler: equal rates pass through, reset forgets history", () => {
  const r = new StreamingResampler(24000, 24000);
  const x = sine(440, 24000, 100);
  assert.deepEqual(r.process(x), x);
  const d = new StreamingResampler(48000, 24000);
  const a = d.process(sine(440, 48000, 4800));
  d.reset();
  const b = d.process(sine(440, 48000, 4800));
  assert.deepEqual(a, b);
});

test("float <-> PCM16 round trip, clamping, NaN", () => {
  const f = new Float32Array([0, 1, -1, 0.5, -0.5, 2, -3, NaN, 1e-6]);
  const p = floatToPcm16(f);
  assert.deepEqual(Array.from(p), [0, 32767, -32768, 16384, -16384, 32767, -32768, 0, 0]);
  const back = pcm16ToFloat(p);
  assert.equal(back[2], -1);
  assert.ok(Math.abs(back[3] - 0.5) < 1e-4);
  const rnd = new Int16Array(1000).map((_, i) => ((i * 7919) % 65536) - 32768);
  assert.deepEqual(floatToPcm16(pcm16ToFloat(rnd)), rnd);
});

test("bytesToPcm16 reads little-endian at odd offsets and drops an odd byte", () => {
  const bytes = new Uint8Array([9, 0x34, 0x12, 0xff, 0xff, 0x00, 0x80, 7]);
  const view = new DataView(bytes.buffer, 1, 6 + 1); // odd offset, odd length
  assert.deepEqual(Array.from(bytesToPcm16(view)), [0x1234, -1, -32768]);
  assert.deepEqual(Array.from(bytesToPcm16(new Uint8Array([1, 0, 2]).buffer)), [1]);
});

test("levels and meter", () => {
  const { rms, peak } = levels(sine(100, 8000, 8000, 0.5));
  assert.ok(Math.abs(rms - 0.5 / Math.SQRT2) < 1e-3);
  assert.ok(Math.abs(peak - 0.5) < 1e-3);
  assert.deepEqual(levels(new Int16Array([-32768, 0])), { rms: Math.sqrt(0.5), peak: 1 });
  assert.equal(meterPosition(0), 0);
  assert.equal(meterPosition(1), 1);
  assert.ok(Math.abs(meterPosition(0.001) - 0) < 1e-9);
  assert.ok(Math.abs(meterPosition(10 ** (-30 / 20)) - 0.5) < 1e-9);
});

test("chunker cuts exact chunks and flushes the remainder", () => {
  const c = new PcmChunker(1200);
  const chunks = [];
  for (let i = 0; i < 30; i++) chunks.push(...c.push(new Float32Array(128).fill(0.25)));
  assert.equal(chunks.length, Math.floor((30 * 128) / 1200));
  for (const ch of chunks) assert.equal(ch.length, 1200);
  const rest = c.flush();
  assert.equal(rest?.length, (30 * 128) % 1200);
  assert.equal(c.flush(), null);
  assert.equal(chunks[0][0], 8192);
});

/** Render `ms` of output in 128-frame quanta; return all events and the rendered samples. */
function run(q, ms) {
  const events = [];
  const out = [];
  const quanta = Math.round((ms * q.rate) / 1000 / 128);
  for (let i = 0; i < quanta; i++) {
    const block = new Float32Array(128);
    events.push(...q.render(block));
    out.push(block);
  }
  return { events, samples: concat(out) };
}

test("playback queue: pre-buffer, order, started/finished and played ms", () => {
  const rate = 48000;
  const q = new PlaybackQueue(rate, { prebufferMs: 60 });
  q.push("a", new Float32Array(480).fill(0.1)); // 10 ms: below the pre-buffer
  let r = run(q, 20);
  assert.equal(r.events.length, 0);
  assert.ok(r.samples.every((v) => v === 0));
  q.push("a", new Float32Array(4800).fill(0.1)); // now 110 ms queued
  q.push("b", new Float32Array(2400).fill(0.2));
  q.end("a");
  r = run(q, 40);
  assert.deepEqual(r.events, [{ type: "started", itemId: "a" }]);
  assert.ok(r.samples.every((v) => Math.abs(v - 0.1) < 1e-7));
  assert.ok(Math.abs(q.playedMs("a") - (r.samples.length * 1000) / rate) < 1e-9);
  r = run(q, 200);
  assert.deepEqual(r.events[0], { type: "finished", itemId: "a", playedMs: 110 });
  // b is not ended: it starts once its own pre-buffer (60 ms of it, or 60 ms of waiting) is met.
  assert.equal(r.events[1].type, "started");
  assert.equal(r.events[1].itemId, "b");
  assert.equal(q.queuedMs, 0);
  assert.equal(q.playedMs("b"), 50);
  q.end("b"); // after everything rendered: finished on the next render
  r = run(q, 5);
  assert.deepEqual(r.events, [{ type: "finished", itemId: "b", playedMs: 50 }]);
});

test("playback queue: a partly buffered item starts after waiting the pre-buffer time", () => {
  const q = new PlaybackQueue(24000, { prebufferMs: 60 });
  q.push("a", new Float32Array(240).fill(0.3)); // 10 ms, never more
  const r = run(q, 100);
  assert.deepEqual(r.events, [{ type: "started", itemId: "a" }]);
  assert.equal(q.playedMs("a"), 10);
  const firstNonZero = r.samples.findIndex((v) => v !== 0);
  assert.ok(firstNonZero >= 0.06 * 24000 && firstNonZero <= 0.06 * 24000 + 128, `${firstNonZero}`);
});

test("playback queue: flush stops at once and reports exactly what was rendered", () => {
  const rate = 24000;
  const q = new PlaybackQueue(rate, { prebufferMs: 0 });
  q.push("a", new Float32Array(24000).fill(0.5)); // 1 s
  q.push("b", new Float32Array(2400).fill(0.5));
  run(q, 640); // 120 quanta of 128 = 15360 samples = 640 ms
  const flushed = q.flush();
  assert.deepEqual(flushed, [
    { itemId: "a", playedMs: 640, queuedMs: 360, started: true },
    { itemId: "b", playedMs: 0, queuedMs: 100, started: false },
  ]);
  assert.equal(q.queuedMs, 0);
  const r = run(q, 50);
  assert.deepEqual(r.events, []);
  assert.ok(r.samples.every((v) => v === 0));
  // The queue is usable again afterwards.
  q.push("c", new Float32Array(128).fill(0.1));
  q.end("c");
  assert.deepEqual(run(q, 6).events.map((e) => e.type), ["started", "finished"]);
});

test("playback queue: an underrun mid-item waits again and counts only real samples", () => {
  const q = new PlaybackQueue(24000, { prebufferMs: 20 });
  q.push("a", new Float32Array(480).fill(0.1)); // 20 ms
  run(q, 64);
  assert.equal(q.playedMs("a"), 20);
  assert.equal(q.playing, false);
  q.push("a", new Float32Array(480).fill(0.1));
  run(q, 64);
  assert.equal(q.playedMs("a"), 40);
});
