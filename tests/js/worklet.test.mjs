// The AudioWorklet module as _sources.py assembles it (audio.js without `export`, then worklet.js),
// run in a Node vm context with a minimal AudioWorkletGlobalScope.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const dir = new URL("../../realtime_nb/widget/", import.meta.url);
/** Same transformation as realtime_nb.widget._sources.worklet_source(). */
export function assemble() {
  const audio = readFileSync(new URL("audio.js", dir), "utf8").replace(/^export\s+/gm, "");
  return `${audio}\n${readFileSync(new URL("worklet.js", dir), "utf8")}`;
}

function load(sampleRate) {
  const processors = new Map();
  class FakePort {
    constructor() {
      this.sent = [];
      this.onmessage = null;
    }
    postMessage(data) {
      this.sent.push(data);
    }
    deliver(data) {
      this.onmessage({ data });
    }
  }
  class AudioWorkletProcessor {
    constructor() {
      this.port = new FakePort();
    }
  }
  const ctx = vm.createContext({
    sampleRate,
    AudioWorkletProcessor,
    registerProcessor: (name, cls) => processors.set(name, cls),
    Math,
    Float32Array,
    Int16Array,
    DataView,
    ArrayBuffer,
    Map,
    RangeError,
    Error,
  });
  vm.runInContext(assemble(), ctx, { filename: "worklet(assembled).js" });
  return processors;
}

test("assembled module registers both processors and contains no export", () => {
  assert.ok(!/^export\s/m.test(assemble()));
  const p = load(48000);
  assert.deepEqual([...p.keys()].sort(), ["rtnb-capture", "rtnb-playback"]);
});

test("capture: 48 kHz in -> 24 kHz PCM16 chunks of 50 ms, gated, with a partial tail on stop", () => {
  const Capture = load(48000).get("rtnb-capture");
  const proc = new Capture({ processorOptions: { inputRate: 24000, chunkMs: 50 } });
  const block = new Float32Array(128).fill(0.5);
  for (let i = 0; i < 40; i++) proc.process([[block]]);
  assert.ok(proc.port.sent.every((m) => m.type === "level"), "nothing sent while the gate is closed");
  proc.port.sent = [];
  proc.port.deliver({ cmd: "start" });
  for (let i = 0; i < 100; i++) proc.process([[block]]); // 12800 frames = 266.7 ms
  proc.port.deliver({ cmd: "stop" });
  const chunks = proc.port.sent.filter((m) => m.type === "chunk");
  assert.equal(proc.port.sent.at(-1).type, "stopped");
  const sizes = chunks.map((c) => c.pcm.byteLength / 2);
  assert.deepEqual(sizes.slice(0, 5), [1200, 1200, 1200, 1200, 1200]);
  const total = sizes.reduce((a, b) => a + b, 0);
  assert.equal(total, 6400); // exactly half the input frames, the tail included
  const pcm = new Int16Array(chunks[2].pcm);
  assert.ok(pcm.every((v) => Math.abs(v - 16384) < 40), "DC level preserved");
  assert.ok(chunks[2].rms > 0.49 && chunks[2].rms < 0.51);
});

test("playback: 24 kHz items at a 48 kHz context, started/finished, flush reports played ms", () => {
  const Playback = load(48000).get("rtnb-playback");
  const proc = new Playback({ processorOptions: { outputRate: 24000, prebufferMs: 0 } });
  const pcm = new Int16Array(24000).fill(8192); // 1 s at 24 kHz
  proc.port.deliver({ cmd: "push", itemId: "item_a", pcm: pcm.buffer.slice(0) });
  const out = [new Float32Array(128), new Float32Array(128)];
  for (let i = 0; i < 150; i++) proc.process([], [out]); // 19200 frames = 400 ms
  assert.ok(Math.abs(out[1][5] - 0.25) < 1e-3, "both channels carry the signal");
  proc.port.deliver({ cmd: "flush", token: 7 });
  const flushed = proc.port.sent.find((m) => m.type === "flushed");
  assert.equal(flushed.token, 7);
  assert.equal(flushed.items.length, 1);
  assert.equal(flushed.items[0].itemId, "item_a");
  assert.equal(flushed.items[0].playedMs, 400);
  assert.ok(proc.port.sent.some((m) => m.type === "started" && m.itemId === "item_a"));
  assert.ok(proc.port.sent.some((m) => m.type === "progress"));
  // A short item that ends plays out completely, resampler tail included.
  proc.port.sent = [];
  proc.port.deliver({ cmd: "push", itemId: "item_b", pcm: new Int16Array(2400).fill(100).buffer });
  proc.port.deliver({ cmd: "end", itemId: "item_b" });
  for (let i = 0; i < 60; i++) proc.process([], [out]);
  const fin = proc.port.sent.find((m) => m.type === "finished");
  assert.ok(fin && fin.itemId === "item_b" && Math.abs(fin.playedMs - 100) < 1, JSON.stringify(fin));
  proc.port.deliver({ cmd: "bogus" });
  assert.equal(proc.port.sent.at(-1).type, "error");
});

test("capture: chunks numbered from the start's seq, to the mic lane when it has one, muted as zeros", () => {
  const Capture = load(48000).get("rtnb-capture");
  const proc = new Capture({ processorOptions: { inputRate: 24000, chunkMs: 50 } });
  const lane = { sent: [], postMessage(m) { this.sent.push(m); } };
  const block = new Float32Array(128).fill(0.5);
  proc.port.deliver({ cmd: "start", seq: 7 });
  for (let i = 0; i < 40; i++) proc.process([[block]]); // 2 whole chunks on the main port
  proc.port.deliver({ cmd: "lane", port: lane });
  proc.port.deliver({ cmd: "muted", value: true });
  for (let i = 0; i < 40; i++) proc.process([[block]]);
  proc.port.deliver({ cmd: "stop" });
  const onMain = proc.port.sent.filter((m) => m.type === "chunk");
  const onLane = lane.sent.filter((m) => m.type === "chunk");
  assert.deepEqual(onMain.map((c) => c.seq), [7, 8]);
  assert.ok(onLane.length >= 2, "chunks went to the lane once it was set");
  assert.deepEqual(onLane.map((c) => c.seq), onLane.map((_, i) => 9 + i), "numbers continue on the lane");
  // The main thread still sees a level per lane chunk (the meter), and the next number on stop.
  assert.equal(proc.port.sent.filter((m) => m.type === "level").length, onLane.length);
  assert.deepEqual({ ...proc.port.sent.at(-1) }, { type: "stopped", seq: 9 + onLane.length });
  // Muted: silence on the wire, the real level on the meter.
  assert.ok(onLane.every((c) => new Int16Array(c.pcm).every((v) => v === 0)));
  assert.ok(onLane.every((c) => c.rms > 0.49));
  // Taking the lane away tells it the stream ended there.
  proc.port.deliver({ cmd: "lane", port: null });
  assert.deepEqual({ ...lane.sent.at(-1) }, { type: "end" });
});
