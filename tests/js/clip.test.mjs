// The recording view's pure helpers (realtime_nb/widget/clip.js): durations as the players show
// them, and the kernel's PCM16 as samples.
import { test } from "node:test";
import assert from "node:assert/strict";

import { clock, pcm16ToFloat } from "../../realtime_nb/widget/clip.js";

test("clock shows minutes and tenths", () => {
  assert.equal(clock(0), "0:00.0");
  assert.equal(clock(3.25), "0:03.3");
  assert.equal(clock(59.96), "1:00.0");
  assert.equal(clock(125.4), "2:05.4");
  assert.equal(clock(-1), "0:00.0");
});

test("pcm16ToFloat reads little-endian samples in [-1, 1)", () => {
  const bytes = new Uint8Array([0x00, 0x80, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x40, 0x01]);
  const x = pcm16ToFloat(bytes.buffer);
  assert.equal(x.length, 4); // the odd last byte is not a sample
  assert.deepEqual(Array.from(x), [-1, 32767 / 32768, 0, 0.5]);
  const view = new DataView(bytes.buffer, 2, 2);
  assert.deepEqual(Array.from(pcm16ToFloat(view)), [32767 / 32768]);
});
